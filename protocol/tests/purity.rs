//! `protocol` stays pure: no async runtime, no sockets, no clock, no global
//! rng. This test fails the build the day one sneaks in.

use std::path::Path;
use std::process::Command;

/// Crates that would give the protocol I/O, a runtime or a clock of its own.
const FORBIDDEN_CRATES: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "mio",
    "socket2",
    "libp2p",
    "quinn",
    "quinn-proto",
    "hyper",
    "reqwest",
    "chrono",
    "time",
    "getrandom",
];

/// Source fragments that read the host's clock, randomness or network.
const FORBIDDEN_SOURCE: &[&str] = &[
    "Instant::now",
    "SystemTime",
    "thread_rng",
    "rand::rng()",
    "rand::random",
    "std::net",
    "tokio",
    "from_entropy",
    "from_os_rng",
    "HashMap",
    "HashSet",
];

#[test]
fn protocol_depends_on_no_runtime_socket_or_clock_crate() -> anyhow::Result<()> {
    let output = Command::new(env!("CARGO"))
        .args(["tree", "--offline", "-p", "shoal-protocol", "-e", "normal", "--prefix", "none", "--format", "{p}"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()?;
    anyhow::ensure!(output.status.success(), "cargo tree failed: {}", String::from_utf8_lossy(&output.stderr));
    let tree = String::from_utf8(output.stdout)?;
    let crates: Vec<&str> = tree.lines().filter_map(|line| line.split_whitespace().next()).collect();
    assert!(crates.contains(&"bincode"), "cargo tree output parsed: {crates:?}");
    let forbidden: Vec<&&str> = crates.iter().filter(|name| FORBIDDEN_CRATES.contains(name)).collect();
    assert!(forbidden.is_empty(), "shoal-protocol must stay pure, but depends on {forbidden:?}");
    Ok(())
}

#[test]
fn protocol_source_reads_no_clock_rng_or_network() -> anyhow::Result<()> {
    let mut offences = Vec::new();
    visit(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut |path, text| {
        for (number, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for token in FORBIDDEN_SOURCE {
                if code.contains(token) {
                    offences.push(format!("{}:{}: {token}", path.display(), number + 1));
                }
            }
        }
    })?;
    assert!(offences.is_empty(), "protocol must stay pure:\n{}", offences.join("\n"));
    Ok(())
}

#[test]
fn clippy_config_bans_the_clock_and_global_rng() -> anyhow::Result<()> {
    let clippy = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("clippy.toml"))?;
    for path in
        ["std::time::Instant::now", "std::time::SystemTime::now", "rand::thread_rng", "rand::rng", "rand::random"]
    {
        assert!(clippy.contains(&format!("\"{path}\"")), "protocol/clippy.toml must ban {path}");
    }
    Ok(())
}

fn visit(dir: &Path, check: &mut impl FnMut(&Path, &str)) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            visit(&path, check)?;
        } else if path.extension().is_some_and(|e| e == "rs") {
            check(&path, &std::fs::read_to_string(&path)?);
        }
    }
    Ok(())
}
