//! An API that is safe to expose, with a real agent: beyond loopback it
//! does not start without TLS and a token file; with them, a request
//! without a token or with a wrong one gets 401, a read-only token writing
//! gets 403, too many wrong tokens from one address get 429, the CLI gets
//! in with `--token` and `--tls-fingerprint` (or `--ca-cert`), and no token
//! appears in the agent's log or `/metrics`.
#![allow(clippy::print_stdout)]

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use shoal_node::client::{ApiTarget, Client, ClientError};
use shoal_node::spec::{self, SpecFile};
use shoal_node::tls::{Trust, parse_fingerprint};
use shoal_tests::{Agent, free_tcp, shoal_bin, test_dir, wait_until};

const ADMIN: &str = "admin-token-0123456789abcdef";
const READER: &str = "read-token-0123456789abcdef0";

const SPEC: &str = "name = \"web\"\nreplicas = 0\n[driver]\nkind = \"exec\"\ncommand = \"sleep\"\n";

fn shoal(args: &[&str]) -> anyhow::Result<(bool, String)> {
    let output = Command::new(shoal_bin()).args(args).env_remove("SHOAL_TOKEN").output()?;
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    Ok((output.status.success(), text))
}

#[test]
fn an_exposed_api_without_tls_and_tokens_does_not_start() -> anyhow::Result<()> {
    let dir = test_dir("api-exposed");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("admin {ADMIN}\n"))?;
    let api = format!("0.0.0.0:{}", free_tcp().port());
    let data = dir.join("data").display().to_string();
    let base = ["agent", "--profile", "local", "--bind", "127.0.0.1:0", "--data-dir", &data, "--api", &api];
    let tokens = tokens.display().to_string();
    for (extra, says) in [
        (vec![], "needs TLS and a token file"),
        (vec!["--api-token-file", &tokens], "needs TLS."),
        (vec!["--api-tls-self-signed"], "needs a token file"),
    ] {
        let mut args = base.to_vec();
        args.extend(&extra);
        let (started, text) = shoal(&args)?;
        println!("{extra:?}: {text}");
        assert!(!started, "{extra:?} must not start");
        assert!(text.contains(says) && text.contains("--api 127.0.0.1:"), "{extra:?}: {text}");
    }
    Ok(())
}

#[test]
fn an_exposed_api_checks_every_token() -> anyhow::Result<()> {
    let dir = test_dir("api-auth");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("# who may do what\nadmin {ADMIN} ops\nread {READER} dashboards\n"))?;
    let port = free_tcp().port();
    let mut agent = Agent::prepare(
        &dir,
        "agent-1",
        &["--api-tls-self-signed".to_string(), "--api-token-file".to_string(), tokens.display().to_string()],
    );
    // Beyond loopback, reached through loopback.
    agent.api = format!("0.0.0.0:{port}").parse()?;
    agent.spawn()?;
    let local: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let pin_file = dir.join("agent-1/api-tls/fingerprint");
    wait_until(Duration::from_secs(20), "the agent serves TLS", || {
        pin_file.exists() && std::net::TcpStream::connect(local).is_ok()
    })?;
    let pin = std::fs::read_to_string(&pin_file)?.trim().to_string();
    let log = std::fs::read_to_string(&agent.log)?;
    assert!(log.contains(&pin), "the agent logs its fingerprint:\n{log}");

    let https = format!("https://{local}");
    let target =
        ApiTarget::parse(&https, Some(Trust::Fingerprint(parse_fingerprint(&pin)?))).map_err(anyhow::Error::msg)?;
    let client = |token: Option<&str>| Client::connect(&target, token.map(str::to_string));
    let status = |outcome: Result<(), ClientError>| match outcome {
        Ok(()) => 200,
        Err(ClientError::Refused { status, .. } | ClientError::Status { status, .. }) => status,
        Err(other) => panic!("unexpected failure: {other}"),
    };
    let spec = SpecFile::from_spec(&spec::parse(SPEC).map_err(|e| anyhow::anyhow!("{e}"))?);

    // No token, a wrong one: 401, for reads and writes alike.
    assert_eq!(status(client(None)?.members().map(drop)), 401);
    assert_eq!(status(client(Some("not-the-token-0123456789"))?.members().map(drop)), 401);
    assert_eq!(status(client(None)?.submit(&spec).map(drop)), 401);
    // A read token reads, and cannot write.
    assert_eq!(status(client(Some(READER))?.members().map(drop)), 200);
    assert_eq!(status(client(Some(READER))?.submit(&spec).map(drop)), 403);
    assert_eq!(status(client(Some(READER))?.delete("web")), 403);
    assert_eq!(status(client(Some(READER))?.leave()), 403);
    // An admin token does both.
    assert_eq!(status(client(Some(ADMIN))?.submit(&spec).map(drop)), 200);
    assert_eq!(status(client(Some(ADMIN))?.workload("web").map(drop)), 200);
    // The web view's own files need no token; its data does.
    let plain = ureq::AgentBuilder::new()
        .tls_config(
            shoal_node::tls::client_config(&Trust::Fingerprint(parse_fingerprint(&pin)?))?
                .ok_or_else(|| anyhow::anyhow!("config"))?,
        )
        .build();
    assert_eq!(plain.get(&format!("{https}/ui/")).call()?.status(), 200);
    match plain.get(&format!("{https}/v1/mesh")).call() {
        Err(ureq::Error::Status(401, _)) => {}
        other => panic!("/v1/mesh without a token: {other:?}"),
    }

    // Plain HTTP to the TLS port, and the wrong certificate, fail clearly.
    let wrong_pin = Trust::Fingerprint([7; 32]);
    let wrong =
        Client::connect(&ApiTarget::parse(&https, Some(wrong_pin)).map_err(anyhow::Error::msg)?, Some(ADMIN.into()))?;
    match wrong.members() {
        Err(e @ ClientError::Tls { .. }) => println!("wrong pin: {e}"),
        other => panic!("a wrong fingerprint must fail the handshake: {other:?}"),
    }
    assert!(Client::new(local).members().is_err(), "plain HTTP to a TLS port fails");

    // The CLI: --token with --tls-fingerprint or --ca-cert; without a token it says how.
    let cert = dir.join("agent-1/api-tls/cert.pem").display().to_string();
    let (ok, text) = shoal(&["members", "--api", &https, "--token", ADMIN, "--tls-fingerprint", &pin])?;
    assert!(ok && text.contains("agent-1"), "{text}");
    let (ok, text) = shoal(&["workloads", "--api", &https, "--token", READER, "--ca-cert", &cert])?;
    assert!(ok && text.contains("web"), "{text}");
    let (ok, text) = shoal(&["members", "--api", &https, "--tls-fingerprint", &pin])?;
    assert!(!ok && text.contains("--token") && text.contains("401"), "{text}");
    let (ok, text) = shoal(&["members", "--api", &https, "--token", ADMIN])?;
    assert!(!ok && text.contains("--tls-fingerprint"), "an untrusted self-signed certificate: {text}");
    let (ok, text) = shoal(&["delete", "web", "--api", &https, "--token", READER, "--tls-fingerprint", &pin])?;
    assert!(!ok && text.contains("read-only"), "{text}");

    // Too many wrong tokens from one address: 429, even with the right one.
    let mut limited_after = None;
    for attempt in 1..=20 {
        match client(Some(&format!("guess-{attempt:020}")))?.members() {
            Err(ClientError::Refused { status: 401, .. }) => {}
            Err(ClientError::Refused { status: 429, .. }) => {
                limited_after = Some(attempt);
                break;
            }
            other => panic!("guess {attempt}: {other:?}"),
        }
    }
    println!("wrong tokens refused with 429 from attempt {limited_after:?}");
    assert!(limited_after.is_some_and(|n| n <= 11), "rate limited after the 10th wrong token: {limited_after:?}");
    assert!(matches!(client(Some(ADMIN))?.members(), Err(ClientError::Refused { status: 429, .. })));

    // No token in the log (`/metrics`: the next test).
    let log = std::fs::read_to_string(&agent.log)?;
    for token in [ADMIN, READER] {
        assert!(!log.contains(token), "a token in the log");
    }
    drop(agent);
    Ok(())
}

#[test]
fn metrics_count_refusals_and_never_show_a_token() -> anyhow::Result<()> {
    let dir = test_dir("api-metrics");
    let tokens = dir.join("tokens");
    std::fs::write(&tokens, format!("admin {ADMIN}\nread {READER}\n"))?;
    // Tokens on loopback too, once given.
    let agent = Agent::start(&dir, "agent-1", &["--api-token-file".to_string(), tokens.display().to_string()])?;
    let target = ApiTarget::parse(&agent.api.to_string(), None).map_err(anyhow::Error::msg)?;
    wait_until(Duration::from_secs(20), "the API answers", || {
        Client::connect(&target, Some(READER.into())).is_ok_and(|c| c.members().is_ok())
    })?;
    assert!(matches!(agent.client().members(), Err(ClientError::Refused { status: 401, .. })));
    let wrong = Client::connect(&target, Some("wrong-0123456789abcdef".into()))?;
    assert!(matches!(wrong.members(), Err(ClientError::Refused { status: 401, .. })));
    let metrics = Client::connect(&target, Some(READER.into()))?.metrics()?;
    assert!(metrics.contains("shoal_api_requests_refused_total{reason=\"no_token\"} 1"), "{metrics}");
    assert!(metrics.contains("shoal_api_requests_refused_total{reason=\"wrong_token\"} 1"), "{metrics}");
    let log = std::fs::read_to_string(&agent.log)?;
    for token in [ADMIN, READER, "wrong-0123456789abcdef"] {
        assert!(!metrics.contains(token), "a token in /metrics");
        assert!(!log.contains(token), "a token in the log");
    }
    Ok(())
}

/// A raw HTTP/1.1 request, as a browser would send it: the status code.
fn raw(api: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> anyhow::Result<u16> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(api)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes())?;
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    let status = answer.split_whitespace().nth(1).unwrap_or_default().parse()?;
    Ok(status)
}

#[test]
fn an_open_api_refuses_other_sites_pages() -> anyhow::Result<()> {
    let dir = test_dir("api-sites");
    let mut agent = Agent::start(&dir, "agent-1", &[])?;
    let api = agent.api;
    let host = api.to_string();
    wait_until(Duration::from_secs(20), "the API answers", || agent.members().is_some())?;
    // Another site's page cannot make the agent leave (or submit, or delete).
    let evil = raw(api, "POST", "/v1/leave", &[("Host", &host), ("Origin", "https://evil.example")])?;
    assert_eq!(evil, 403);
    // A DNS name rebound to loopback cannot read an API without tokens.
    assert_eq!(raw(api, "GET", "/v1/members", &[("Host", "evil.example:7947")])?, 403);
    // The agent's own page and the CLI can.
    assert_eq!(raw(api, "GET", "/v1/members", &[("Host", &host)])?, 200);
    assert_eq!(raw(api, "GET", "/ui/", &[("Host", &format!("localhost:{}", api.port()))])?, 200);
    assert!(agent.is_running(), "the agent did not leave");
    let own = raw(api, "POST", "/v1/leave", &[("Host", &host), ("Origin", &format!("http://{host}"))])?;
    assert_eq!(own, 200, "its own page may");
    Ok(())
}
