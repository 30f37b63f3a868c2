//! A real headless Chromium for the dashboard tests, driven over the DevTools protocol (CDP)
//! with the WebSocket client the other tests already use: no WebDriver server, no extra crate.
//!
//! [`Browser::launch`] starts Debian's `chromium` with a fresh profile and
//! `--remote-debugging-port=0`, reads the port it picked from `DevToolsActivePort`, opens one
//! page and listens to it: console errors, uncaught exceptions and failed loads are collected
//! from the first byte on (so "no console errors" covers the page's load, not just what runs
//! after a hook is installed). A missing Chromium is an error that says how to install it,
//! never a skipped test.
//!
//! Also here: [`screenshot_dir`], a raw HTTP/1.0 [`http_get`] (the tests need status and
//! headers, nothing more), and [`CutProxy`], a TCP proxy whose connections can be cut to make
//! the page lose its hub while the hub keeps running.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::Ws;

/// Where Debian puts Chromium; `CHROMIUM=/path` overrides it.
pub const CHROMIUM: &str = "/usr/bin/chromium";
const INSTALL_HINT: &str = "install it with `apt-get update && apt-get install -y chromium chromium-driver` (the README's test command does this), or set CHROMIUM=/path/to/chromium";
/// Page size of every test, so screenshots compare.
pub const VIEWPORT: (u32, u32) = (1400, 900);
/// One CDP command, at most.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// One headless Chromium with one page.
pub struct Browser {
    /// Names this test's screenshots.
    name: String,
    child: Child,
    _profile: tempfile::TempDir,
    sink: tokio::sync::Mutex<SplitSink<Ws, Message>>,
    pending: Pending,
    next_id: AtomicU64,
    session: String,
    errors: Arc<Mutex<Vec<String>>>,
    reader: JoinHandle<()>,
}

impl Browser {
    /// Start Chromium and open a blank page. `name` prefixes the screenshots.
    pub async fn launch(name: &str) -> anyhow::Result<Browser> {
        let binary = std::env::var_os("CHROMIUM")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(CHROMIUM));
        if !binary.exists() {
            bail!("Chromium not found at {}: {INSTALL_HINT}", binary.display());
        }
        let profile = tempfile::tempdir()?;
        let mut command = Command::new(&binary);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-default-apps",
                "--hide-scrollbars",
                "--mute-audio",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--window-size={},{}", VIEWPORT.0, VIEWPORT.1))
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}: {INSTALL_HINT}", binary.display()))?;

        let endpoint = match devtools_endpoint(profile.path(), &mut child).await {
            Ok(e) => e,
            Err(e) => {
                kill_group(&mut child);
                return Err(e);
            }
        };
        let (ws, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .context("connecting to Chromium's DevTools socket")?;
        let (sink, mut stream) = ws.split();
        let pending: Pending = Arc::default();
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let reader = {
            let (pending, errors) = (pending.clone(), errors.clone());
            tokio::spawn(async move {
                while let Some(Ok(msg)) = stream.next().await {
                    let Message::Text(text) = msg else { continue };
                    let Ok(v) = serde_json::from_str::<Value>(text.as_str()) else {
                        continue;
                    };
                    if let Some(id) = v["id"].as_u64() {
                        if let Some(tx) = pending
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&id)
                        {
                            let _ = tx.send(v);
                        }
                    } else if let Some(error) = console_error(&v) {
                        errors.lock().unwrap_or_else(|e| e.into_inner()).push(error);
                    }
                }
            })
        };
        let mut browser = Browser {
            name: name.to_owned(),
            child,
            _profile: profile,
            sink: tokio::sync::Mutex::new(sink),
            pending,
            next_id: AtomicU64::new(1),
            session: String::new(),
            errors,
            reader,
        };
        let target = browser
            .call("Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let target_id = target["targetId"]
            .as_str()
            .context("no targetId")?
            .to_owned();
        let attached = browser
            .call(
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        browser.session = attached["sessionId"]
            .as_str()
            .context("no sessionId")?
            .to_owned();
        for domain in ["Runtime.enable", "Log.enable", "Page.enable"] {
            browser.call(domain, json!({})).await?;
        }
        browser
            .call("Emulation.setDeviceMetricsOverride", json!({ "width": VIEWPORT.0, "height": VIEWPORT.1, "deviceScaleFactor": 1, "mobile": false }))
            .await?;
        Ok(browser)
    }

    /// Send one CDP command (to the page once attached) and return its `result`.
    pub async fn call(&self, method: &str, params: Value) -> anyhow::Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if !self.session.is_empty() {
            msg["sessionId"] = json!(self.session);
        }
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        self.sink
            .lock()
            .await
            .send(Message::Text(msg.to_string().into()))
            .await
            .context("DevTools socket closed")?;
        let answer = tokio::time::timeout(CALL_TIMEOUT, rx)
            .await
            .with_context(|| format!("{method}: no answer in {CALL_TIMEOUT:?}"))?
            .context("DevTools socket closed")?;
        if let Some(error) = answer.get("error") {
            bail!("{method}: {error}");
        }
        Ok(answer["result"].clone())
    }

    /// Load `url` and wait until the document and its modules have loaded.
    pub async fn open(&self, url: &str) -> anyhow::Result<()> {
        let nav = self.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(error) = nav["errorText"].as_str() {
            bail!("loading {url}: {error}");
        }
        self.wait_for(
            "document.readyState === 'complete'",
            Duration::from_secs(10),
        )
        .await?;
        Ok(())
    }

    /// Log in as the test user through the login page at `base` (`http://host:port`), the way
    /// a person does: type the name and password, press the button; wait for the dashboard.
    pub async fn log_in(&self, base: &str) -> anyhow::Result<()> {
        self.open(&format!("{base}/login")).await?;
        self.eval(&format!(
            "document.querySelector('#name').value = '{}'; document.querySelector('#password').value = '{}'; document.querySelector('#login').click(); true",
            crate::TEST_USER,
            crate::TEST_PASSWORD
        ))
        .await?;
        self.wait_for(
            "location.pathname === '/' && document.readyState === 'complete' && !!document.querySelector('#devices')",
            Duration::from_secs(10),
        )
        .await?;
        // Leave the dashboard, so that the next `open` loads a page afresh (opening `/#...`
        // from `/` would only change the fragment).
        self.open("about:blank").await
    }

    /// Log in as the test user (see [`Browser::log_in`]), then open `url`.
    pub async fn open_logged_in(&self, base: &str, url: &str) -> anyhow::Result<()> {
        self.log_in(base).await?;
        self.open(url).await
    }

    /// Evaluate a JavaScript expression in the page (promises are awaited) and return its value.
    pub async fn eval(&self, expression: &str) -> anyhow::Result<Value> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(e) = r.get("exceptionDetails") {
            bail!(
                "{expression}: {}",
                e["exception"]["description"]
                    .as_str()
                    .unwrap_or(&e.to_string())
            );
        }
        Ok(r["result"]["value"].clone())
    }

    /// Poll `expression` until it is truthy; return its value. On timeout, save a screenshot
    /// named `<test>-timeout` and say what was awaited.
    pub async fn wait_for(&self, expression: &str, within: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let last = match self.eval(expression).await {
                Ok(v) if truthy(&v) => return Ok(v),
                Ok(v) => v,
                Err(e) => json!(e.to_string()),
            };
            if Instant::now() >= deadline {
                let shot = self
                    .screenshot("timeout")
                    .await
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|e| format!("(no screenshot: {e})"));
                bail!("waited {within:?} for `{expression}` (last: {last}); screenshot {shot}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Save a PNG of the page as `<screenshot_dir>/<test>-<label>.png` and return its path.
    pub async fn screenshot(&self, label: &str) -> anyhow::Result<PathBuf> {
        let r = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        let png = base64_decode(r["data"].as_str().context("no screenshot data")?)?;
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(format!("{}-{label}.png", self.name));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Console errors, uncaught exceptions and failed loads since launch.
    pub fn console_errors(&self) -> Vec<String> {
        self.errors
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Close Chromium (politely first).
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.call("Browser.close", json!({})),
        )
        .await;
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        kill_group(&mut self.child);
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.reader.abort();
        kill_group(&mut self.child);
    }
}

/// Kill Chromium and its helpers (renderer, GPU, zygote), which share its process group.
fn kill_group(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return;
    }
    #[cfg(unix)]
    {
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", child.id())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Chromium writes `<port>\n<path>` to `DevToolsActivePort` in its profile once it listens.
async fn devtools_endpoint(profile: &Path, child: &mut Child) -> anyhow::Result<String> {
    let file = profile.join("DevToolsActivePort");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(text) = std::fs::read_to_string(&file) {
            let mut lines = text.lines();
            if let (Some(port), Some(path)) = (lines.next(), lines.next()) {
                return Ok(format!("ws://127.0.0.1:{}{}", port.trim(), path.trim()));
            }
        }
        if let Some(status) = child.try_wait()? {
            bail!(
                "Chromium exited at start ({status}); is it installed and working? {INSTALL_HINT}"
            );
        }
        if Instant::now() >= deadline {
            bail!("Chromium did not open its DevTools port within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A console error, an uncaught exception or an error log entry (failed load, CSP), as text.
fn console_error(event: &Value) -> Option<String> {
    let p = &event["params"];
    match event["method"].as_str()? {
        "Runtime.consoleAPICalled" if matches!(p["type"].as_str(), Some("error" | "assert")) => {
            let args: Vec<String> = p["args"]
                .as_array()?
                .iter()
                .map(|a| {
                    a["value"]
                        .as_str()
                        .map(str::to_owned)
                        .unwrap_or_else(|| a["description"].to_string())
                })
                .collect();
            Some(format!("console.error: {}", args.join(" ")))
        }
        "Runtime.exceptionThrown" => {
            let d = &p["exceptionDetails"];
            Some(format!(
                "uncaught: {}",
                d["exception"]["description"]
                    .as_str()
                    .or(d["text"].as_str())
                    .unwrap_or("?")
            ))
        }
        "Log.entryAdded" if p["entry"]["level"] == "error" => Some(format!(
            "log: {} {}",
            p["entry"]["text"].as_str().unwrap_or(""),
            p["entry"]["url"].as_str().unwrap_or("")
        )),
        _ => None,
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

fn base64_decode(text: &str) -> anyhow::Result<Vec<u8>> {
    let value = |c: u8| -> anyhow::Result<u32> {
        Ok(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => bail!("not base64: {:?}", c as char),
        } as u32)
    };
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= value(c)? << (18 - 6 * i);
        }
        let produced = chunk.len() * 6 / 8;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + produced]);
    }
    Ok(out)
}

/// `target/screenshots/`: under `CARGO_TARGET_DIR` when set, else the target folder this test
/// binary was built into (`target/<profile>/deps/<test>`).
pub fn screenshot_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        return workspace.join(dir).join("screenshots");
    }
    let from_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent()?.parent()?.parent().map(Path::to_path_buf));
    from_exe
        .unwrap_or_else(|| workspace.join("target"))
        .join("screenshots")
}

/// A plain HTTP response.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    /// Lower-case names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).with_context(|| format!("not JSON: {}", self.text()))
    }
}

/// `GET path` over HTTP/1.0 (so the body is never chunked), with extra request headers.
pub async fn http_get(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> anyhow::Result<HttpResponse> {
    http_request(addr, "GET", path, headers, b"").await
}

/// A form `POST` (application/x-www-form-urlencoded) over HTTP/1.0.
pub async fn http_post_form(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    form: &str,
) -> anyhow::Result<HttpResponse> {
    let mut all = vec![("Content-Type", "application/x-www-form-urlencoded")];
    all.extend_from_slice(headers);
    http_request(addr, "POST", path, &all, form.as_bytes()).await
}

/// Any request over HTTP/1.0; the answer read to its end.
pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<HttpResponse> {
    let mut stream = TcpStream::connect(addr).await?;
    let mut request = format!("{method} {path} HTTP/1.0\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        request.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).await?;
    stream.write_all(body).await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .context("HTTP answer took over 10 s")??;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| anyhow!("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .context("no status line")?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok(HttpResponse {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    })
}

/// A TCP proxy in front of the hub whose connections the test can cut: the page loses its
/// hub (socket closed, new connections refused) while devices keep writing to the hub.
pub struct CutProxy {
    pub addr: SocketAddr,
    cut: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: JoinHandle<()>,
}

impl CutProxy {
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<CutProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let cut = Arc::new(AtomicBool::new(false));
        let open: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let accept = {
            let (cut, open) = (cut.clone(), open.clone());
            tokio::spawn(async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if cut.load(Ordering::SeqCst) {
                        drop(client); // refused: closed at once
                        continue;
                    }
                    let task = tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(upstream).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    });
                    let mut open = open.lock().unwrap_or_else(|e| e.into_inner());
                    open.retain(|t| !t.is_finished());
                    open.push(task);
                }
            })
        };
        Ok(CutProxy {
            addr,
            cut,
            open,
            accept,
        })
    }

    /// Close every proxied connection and refuse new ones until [`CutProxy::restore`].
    pub fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        for task in self
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decodes_padded_and_unpadded_input() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8h").unwrap(), b"hello!");
        assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
        assert!(base64_decode("a$==").is_err());
    }
}
