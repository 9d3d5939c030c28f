//! `shoal-ui-bench`: what the web view costs with a large mesh.
//!
//! Builds a real protocol `Node` holding N members (zones, capacities spread
//! 8x) and W workloads, takes the web view's snapshot and renders it as the
//! agent does (`ui::mesh`), timing both: that is the agent's cost per
//! refresh. Then serves the page's files and that JSON on loopback, opens it
//! in headless Chromium and reads the page's own timings: the first load
//! (navigation start to the first full render), and each update (a new
//! version: some members change state, some replicas move), from the
//! answer's arrival to the end of layout.
//!
//! ```sh
//! cargo run --release -p shoal-tests --bin shoal-ui-bench -- --members 1000 --workloads 1000
//! ```
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as WallInstant};

use anyhow::Context;
use clap::Parser;
use shoal_node::ui::mesh::{MeshSnapshot, MeshState, snapshot};
use shoal_node::view::{ReplicaPhase, WorkloadState};
use shoal_protocol::{
    Address, Capacity, Config, Driver, Identity, Instant, Metadata, Node, NodeId, Peer, Resources, RestartPolicy,
    State, WorkloadConfig, WorkloadSpec,
};
use shoal_tests::browser::Browser;

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value_t = 1000)]
    members: usize,
    #[arg(long, default_value_t = 1000)]
    workloads: usize,
    /// Updates to measure.
    #[arg(long, default_value_t = 5)]
    updates: usize,
    /// Save a screenshot of the page here.
    #[arg(long)]
    screenshot: Option<std::path::PathBuf>,
}

fn id(i: usize) -> NodeId {
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
    bytes[8..].copy_from_slice(&(i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_le_bytes());
    NodeId(bytes)
}

fn meta(i: usize) -> anyhow::Result<Metadata> {
    let zones = ["eu-west-1", "eu-west-2", "us-east-1", "us-east-2", "us-west-1", "ap-south-1", "ap-east-1", "sa-1"];
    let mut labels = BTreeMap::new();
    labels.insert("zone".to_string(), zones[i % zones.len()].to_string());
    labels.insert("arch".to_string(), if i % 3 == 0 { "arm64" } else { "amd64" }.to_string());
    Ok(Metadata {
        name: format!("edge-{i:04}"),
        addrs: vec![Address::new(format!("10.{}.{}.{}:7946", i / 65536, (i / 256) % 256, i % 256))?],
        capacity: Capacity { cpu_millis: 1000 << (i % 4), memory_bytes: (2u64 << 30) << (i % 4) },
        labels,
    })
}

/// A protocol node with `members` members and `workloads` workloads, placed.
fn build(members: usize, workloads: usize) -> anyhow::Result<(Node, Instant)> {
    let start = Instant::from_micros(1_000_000);
    let me = Identity { id: id(0), generation: 1, meta: meta(0)? };
    let mut membership = Node::new(Config::lan(), WorkloadConfig::lan(), me, 7, start)?;
    let peers =
        (1..members).map(|i| Ok(Peer::new(id(i), 1, 0, Arc::new(meta(i)?))?)).collect::<anyhow::Result<Vec<_>>>()?;
    membership.preload(start, &peers);
    for w in 0..workloads {
        let small = |n: usize| u32::try_from(w % n).unwrap_or(0);
        let spec = WorkloadSpec {
            name: format!("svc-{w:04}"),
            replicas: 1 + small(3),
            resources: Resources { cpu_millis: 100 + 50 * small(5), memory_bytes: 64 << 20 },
            constraints: if w % 97 == 0 {
                [("zone".to_string(), "mars-1".to_string())].into()
            } else {
                BTreeMap::new()
            },
            driver: Driver::Exec {
                command: "sleep".into(),
                args: vec!["3600".into()],
                env: BTreeMap::new(),
                workdir: None,
            },
            restart: RestartPolicy::default(),
        };
        membership.submit(start, spec)?;
    }
    // Past every settle time, so everything is placed.
    Ok((membership, Instant::from_micros(3_600_000_000)))
}

/// Reports most placed replicas running (as their owners would).
fn as_running(mut snap: MeshSnapshot) -> MeshSnapshot {
    for (i, w) in snap.workloads.iter_mut().enumerate() {
        let mut running = 0;
        for r in &mut w.view.placement {
            if r.node.is_some() && (i + r.replica as usize) % 29 != 0 {
                r.state = ReplicaPhase::Running;
                running += 1;
            }
        }
        w.view.running = running;
        if running == w.view.replicas {
            w.view.state = WorkloadState::Running;
        }
    }
    snap
}

/// The n-th update: a few members change state, a few replicas fail.
fn perturb(mut snap: MeshSnapshot, n: usize) -> MeshSnapshot {
    let len = snap.members.len();
    for k in 0..10 {
        let m = &mut snap.members[(n * 37 + k * 101) % len];
        m.state = if m.state == State::Alive { State::Suspect } else { State::Alive };
        m.since = snap.now;
    }
    let wl = snap.workloads.len();
    for k in 0..20 {
        if let Some(r) = snap.workloads[(n * 13 + k * 53) % wl].view.placement.first_mut() {
            r.state = if r.state == ReplicaPhase::Failed { ReplicaPhase::Running } else { ReplicaPhase::Failed };
        }
    }
    snap
}

fn unix_ms() -> u64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Serves the page's files and the current JSON, one request per connection.
fn serve(listener: &TcpListener, body: &Arc<Mutex<(u64, Vec<u8>)>>) {
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        let body = Arc::clone(body);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(match stream.try_clone() {
                Ok(s) => s,
                Err(_) => return,
            });
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                return;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let mut etag_sent = None;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).map_or(true, |n| n == 0) || header.trim().is_empty() {
                    break;
                }
                if let Some(value) = header.to_ascii_lowercase().strip_prefix("if-none-match:") {
                    etag_sent = Some(value.trim().to_string());
                }
            }
            let (status, content_type, payload, etag): (&str, &str, Vec<u8>, String) = if path == "/v1/mesh" {
                let (version, json) = body.lock().map(|b| b.clone()).unwrap_or_default();
                let etag = format!("\"{version}\"");
                if etag_sent.as_deref() == Some(etag.as_str()) {
                    ("304 Not Modified", "application/json", Vec::new(), etag)
                } else {
                    ("200 OK", "application/json", json, etag)
                }
            } else if let Some((content_type, text)) = shoal_node::ui::file(&path) {
                ("200 OK", content_type, text.as_bytes().to_vec(), String::new())
            } else {
                ("404 Not Found", "text/plain", b"not found".to_vec(), String::new())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nETag: {etag}\r\n\
                 Cache-Control: no-cache\r\nContent-Security-Policy: {}\r\nConnection: close\r\n\r\n",
                payload.len(),
                shoal_node::ui::CONTENT_SECURITY_POLICY
            );
            let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&payload));
        });
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let built = WallInstant::now();
    let (membership, now) = build(args.members, args.workloads)?;
    println!("built {} members, {} workloads in {:?}", args.members, args.workloads, built.elapsed());

    // The agent's side: a snapshot in its task, then the watcher's compare and render.
    let _ = membership.workloads().placement();
    let mut times = Vec::new();
    let mut snap = None;
    for _ in 0..5 {
        let t = WallInstant::now();
        snap = Some(snapshot(&membership, now));
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let t = WallInstant::now();
    let _ = membership.workloads().placement();
    let placement_ms = t.elapsed().as_secs_f64() * 1000.0;
    let t = WallInstant::now();
    let _ = shoal_node::workloads::list(&membership);
    let list_ms = t.elapsed().as_secs_f64() * 1000.0;
    println!("  of which: placement (cached) {placement_ms:.2} ms, workloads::list {list_ms:.2} ms");
    let mut prints = Vec::new();
    for _ in 0..5 {
        let t = WallInstant::now();
        let _ = shoal_node::ui::mesh::fingerprint(&membership);
        prints.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    println!("a quiet refresh in the agent's task (fingerprint only): median {:.3} ms", median(prints));
    let snap = as_running(snap.context("a snapshot")?);
    let placed: usize =
        snap.workloads.iter().map(|w| w.view.placement.iter().filter(|r| r.node.is_some()).count()).sum();
    println!("snapshot (agent task): median {:.2} ms ({} replicas placed)", median(times), placed);
    let mut state = MeshState::default();
    let t = WallInstant::now();
    let view = state.update(snap.clone(), unix_ms()).context("first view")?;
    let rendered = t.elapsed();
    let t = WallInstant::now();
    let json = serde_json::to_vec(&view)?;
    println!(
        "view: compare+render {:.2} ms, JSON {:.2} ms, {} KB",
        rendered.as_secs_f64() * 1000.0,
        t.elapsed().as_secs_f64() * 1000.0,
        json.len() / 1024
    );
    let t = WallInstant::now();
    let unchanged = state.update(snap.clone(), unix_ms());
    println!(
        "a quiet refresh (compare only): {:.2} ms (changed: {})",
        t.elapsed().as_secs_f64() * 1000.0,
        unchanged.is_some()
    );

    let body = Arc::new(Mutex::new((view.version, json)));
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let served = Arc::clone(&body);
    std::thread::spawn(move || serve(&listener, &served));

    let mut browser = Browser::launch()?;
    browser.navigate(&format!("http://{addr}/ui/"))?;
    let first = browser.wait_for(Duration::from_secs(30), "the first render", "window.shoalTiming.firstRenderMs")?;
    let load = browser.eval("performance.getEntriesByType('navigation')[0].loadEventEnd")?;
    let first_update = browser.eval("window.shoalTiming.lastUpdateMs")?;
    println!(
        "first load: document loaded at {load} ms, first render done at {first} ms (render of the answer {first_update} ms)"
    );

    let mut updates = Vec::new();
    let mut current = snap;
    for n in 1..=args.updates {
        current = perturb(current, n);
        let t = WallInstant::now();
        let view = state.update(current.clone(), unix_ms()).context("a changed view")?;
        let json = serde_json::to_vec(&view)?;
        let agent_ms = t.elapsed().as_secs_f64() * 1000.0;
        let version = view.version;
        if let Ok(mut b) = body.lock() {
            *b = (version, json);
        }
        browser.wait_for(
            Duration::from_secs(10),
            "the update",
            &format!("window.shoalTiming.lastVersion === {version}"),
        )?;
        let spent = browser.eval("window.shoalTiming.lastUpdateMs")?.as_f64().unwrap_or(0.0);
        let parts = browser.eval(
            "(t => ['parse', 'keys', 'map', 'tables', 'feed', 'layout'].map(k => `${k} ${t[k + 'Ms'].toFixed(1)}`)\
             .join(', '))(window.shoalTiming)",
        )?;
        println!(
            "update {n}: agent {agent_ms:.1} ms (compare, render, JSON), browser {spent:.1} ms ({} ms)",
            parts.as_str().unwrap_or_default()
        );
        updates.push(spent);
    }
    let max = updates.iter().copied().fold(0.0, f64::max);
    println!("updates: median {:.1} ms, max {max:.1} ms of browser time", median(updates));
    if let Some(path) = args.screenshot {
        browser.screenshot(&path, 1600, 1000)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
