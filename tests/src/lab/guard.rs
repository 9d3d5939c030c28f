//! Cleaning up on Ctrl-C: the lab's namespaces (and every process in them)
//! go away when the harness is interrupted, as they do on drop and panic.

use std::sync::{Mutex, OnceLock};

use nix::sys::signal::{SigSet, Signal};

use super::netns;

fn registry() -> &'static Mutex<Vec<String>> {
    static PREFIXES: OnceLock<Mutex<Vec<String>>> = OnceLock::new();
    PREFIXES.get_or_init(|| Mutex::new(Vec::new()))
}

/// Notes a lab's namespace prefix, removed if a signal arrives.
pub(crate) fn register(prefix: &str) {
    if let Ok(mut list) = registry().lock() {
        list.push(prefix.to_owned());
    }
}

/// Forgets a prefix (the lab cleaned up after itself).
pub(crate) fn unregister(prefix: &str) {
    if let Ok(mut list) = registry().lock() {
        list.retain(|p| p != prefix);
    }
}

/// Blocks SIGINT, SIGTERM and SIGHUP in this thread (and so in every thread
/// it starts afterwards) and starts a thread that waits for them, removes
/// every registered lab's namespaces and exits with 130. Call it first thing
/// in `main`, before any other thread exists.
pub fn install_signal_cleanup() -> anyhow::Result<()> {
    let mut set = SigSet::empty();
    for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
        set.add(signal);
    }
    set.thread_block()?;
    std::thread::Builder::new().name("lab-signals".into()).spawn(move || {
        let signal = set.wait().map_or_else(|e| e.to_string(), |s| s.as_str().to_owned());
        let prefixes = registry().lock().map(|l| l.clone()).unwrap_or_default();
        let removed: usize = prefixes.iter().map(|p| netns::clean(p)).sum();
        tracing_free_note(&format!("{signal}: removed {removed} lab namespaces and their processes"));
        std::process::exit(130);
    })?;
    Ok(())
}

fn tracing_free_note(text: &str) {
    use std::io::Write as _;
    let _ = writeln!(std::io::stderr(), "{text}");
}
