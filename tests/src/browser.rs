//! Headless Chromium for the web view's tests, driven over the DevTools
//! protocol (CDP) on one WebSocket.
//!
//! The tests need four commands (navigate, evaluate, set the viewport, take
//! a screenshot), so this speaks CDP directly with `tungstenite` rather
//! than through a client crate: headless_chrome and chromiumoxide generate
//! bindings for the whole protocol, which costs minutes of build on a
//! 2-core machine for commands never sent.
//!
//! Chromium is Debian's `chromium` (`.ci/run` installs it); `SHOAL_CHROMIUM`
//! names another binary. Without one, [`Browser::launch`] fails and says
//! how to install it: the browser tests never pass by skipping.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use serde_json::{Value, json};
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

/// One headless Chromium with one page.
pub struct Browser {
    child: Child,
    profile: PathBuf,
    socket: WebSocket<MaybeTlsStream<TcpStream>>,
    next_id: u64,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("pid", &self.child.id()).finish_non_exhaustive()
    }
}

/// The Chromium binary: `SHOAL_CHROMIUM`, else the first of the usual names
/// on the PATH.
pub fn chromium() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("SHOAL_CHROMIUM") {
        return Ok(PathBuf::from(path));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"] {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    bail!(
        "the browser tests need headless Chromium and none was found on the PATH: \
         `apt-get install -y chromium` (.ci/run does), or set SHOAL_CHROMIUM to a Chromium binary"
    )
}

impl Browser {
    /// Starts Chromium with a fresh profile and a 1600x1000 window.
    pub fn launch() -> anyhow::Result<Browser> {
        Browser::launch_with(&[])
    }

    /// [`Browser::launch`] with extra flags (e.g. `--ignore-certificate-errors`).
    pub fn launch_with(flags: &[&str]) -> anyhow::Result<Browser> {
        let exe = chromium()?;
        let profile =
            std::env::temp_dir().join(format!("shoal-chromium-{}-{}", std::process::id(), rand::random::<u32>()));
        std::fs::create_dir_all(&profile)?;
        let mut child = Command::new(&exe)
            .args([
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-extensions",
                "--no-first-run",
                "--no-default-browser-check",
                "--hide-scrollbars",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
                "--window-size=1600,1000",
            ])
            .args(flags)
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("cannot start {}", exe.display()))?;
        // Chromium prints where DevTools listens on stderr; keep reading it
        // after that, so that it never blocks on a full pipe.
        let stderr = child.stderr.take().context("chromium's stderr")?;
        let (found, listening) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("DevTools listening on ").nth(1) {
                    let _ = found.send(url.trim().to_string());
                }
            }
        });
        let browser_url = match listening.recv_timeout(Duration::from_secs(30)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                bail!("{} did not open its DevTools port within 30 s", exe.display());
            }
        };
        let port = browser_url
            .strip_prefix("ws://127.0.0.1:")
            .and_then(|rest| rest.split('/').next())
            .ok_or_else(|| anyhow!("unexpected DevTools address {browser_url}"))?;
        let targets: Value = ureq::get(&format!("http://127.0.0.1:{port}/json/list")).call()?.into_json()?;
        let page = targets
            .as_array()
            .and_then(|t| t.iter().find(|t| t["type"] == "page"))
            .and_then(|t| t["webSocketDebuggerUrl"].as_str())
            .ok_or_else(|| anyhow!("Chromium has no page: {targets}"))?
            .to_string();
        let (socket, _) = tungstenite::connect(&page).context("connect to the page's DevTools socket")?;
        if let MaybeTlsStream::Plain(tcp) = socket.get_ref() {
            tcp.set_read_timeout(Some(Duration::from_secs(60)))?;
        }
        Ok(Browser { child, profile, socket, next_id: 1 })
    }

    /// Sends one CDP command and returns its result (events in between are
    /// dropped).
    pub fn call(&mut self, method: &str, params: &Value) -> anyhow::Result<Value> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({ "id": id, "method": method, "params": params });
        self.socket.send(Message::text(request.to_string()))?;
        loop {
            let message = self.socket.read().with_context(|| format!("no answer to {method}"))?;
            let Message::Text(text) = message else { continue };
            let answer: Value = serde_json::from_str(text.as_str())?;
            if answer["id"] != id {
                continue;
            }
            if let Some(error) = answer.get("error") {
                bail!("{method} failed: {error}");
            }
            return Ok(answer["result"].clone());
        }
    }

    /// Evaluates JavaScript in the page (awaiting a promise) and returns
    /// its value.
    pub fn eval(&mut self, expression: &str) -> anyhow::Result<Value> {
        let result = self.call(
            "Runtime.evaluate",
            &json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
        )?;
        if let Some(exception) = result.get("exceptionDetails") {
            bail!("{expression}: {}", exception["exception"]["description"].as_str().unwrap_or("threw"));
        }
        Ok(result["result"]["value"].clone())
    }

    /// Opens `url` and waits until the document has loaded.
    pub fn navigate(&mut self, url: &str) -> anyhow::Result<()> {
        self.call("Page.navigate", &json!({ "url": url }))?;
        self.wait_for(Duration::from_secs(20), &format!("{url} loaded"), "document.readyState === 'complete'")?;
        Ok(())
    }

    /// Evaluates `predicate` every 100 ms until it is truthy; returns its
    /// value, or fails after `within` naming `what` and the page's last value.
    pub fn wait_for(&mut self, within: Duration, what: &str, predicate: &str) -> anyhow::Result<Value> {
        let start = Instant::now();
        loop {
            let value = self.eval(predicate).unwrap_or(Value::Null);
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|n| n != 0.0),
                Value::String(s) => !s.is_empty(),
                Value::Array(a) => !a.is_empty(),
                Value::Object(_) => true,
            };
            if truthy {
                return Ok(value);
            }
            if start.elapsed() > within {
                bail!("the page did not show {what} within {within:?} (`{predicate}` was {value})");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sets the viewport and saves a PNG of the whole page.
    pub fn screenshot(&mut self, path: &Path, width: u32, height: u32) -> anyhow::Result<()> {
        self.call(
            "Emulation.setDeviceMetricsOverride",
            &json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        )?;
        std::thread::sleep(Duration::from_millis(300));
        let shot = self.call("Page.captureScreenshot", &json!({ "format": "png" }))?;
        let data = shot["data"].as_str().ok_or_else(|| anyhow!("no screenshot data"))?;
        let png = base64::engine::general_purpose::STANDARD.decode(data)?;
        std::fs::write(path, png).with_context(|| format!("cannot write {}", path.display()))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.socket.close(None);
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A JavaScript string literal for `text`.
pub fn js_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into())
}
