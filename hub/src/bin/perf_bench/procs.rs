//! The processes a bench runs and what it reads about them: the hub, the load generator, the
//! bare socket sink; `/proc/PID/{stat,status,io}`; device tokens; the login cookie.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hub::store::{Durability, Store, StoreConfig};

/// The binaries the bench starts: built beside it by
/// `cargo build --release -p hub -p firmware --bins`.
pub struct Bins {
    pub hub: PathBuf,
    pub simulator: PathBuf,
    pub me: PathBuf,
}

impl Bins {
    pub fn find() -> anyhow::Result<Bins> {
        let me = std::env::current_exe()?;
        let dir = me.parent().context("bench binary has no directory")?;
        let bins = Bins {
            hub: dir.join("hub"),
            simulator: dir.join("simulator"),
            me: me.clone(),
        };
        for b in [&bins.hub, &bins.simulator] {
            anyhow::ensure!(
                b.exists(),
                "{} is missing: build with `cargo build --release -p hub -p firmware --bins` first",
                b.display()
            );
        }
        Ok(bins)
    }
}

pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// What `/proc` says about a process at one instant.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcSample {
    pub at: Option<Instant>,
    /// user + system CPU, seconds.
    pub cpu_s: f64,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// Bytes this process caused to be sent to the block layer.
    pub write_bytes: u64,
}

pub fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = &stat[stat.rfind(')').context("bad stat")? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name and state.
    let ticks: f64 = f[11].parse::<f64>()? + f[12].parse::<f64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    };
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let write_bytes = io
        .lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(ProcSample {
        at: Some(Instant::now()),
        cpu_s: ticks / clock_ticks(),
        rss_kib: kib("VmRSS:"),
        hwm_kib: kib("VmHWM:"),
        write_bytes,
    })
}

/// A child process that is killed if the bench stops early.
pub struct Proc {
    pub child: Child,
    pub name: &'static str,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then wait (SIGKILL after `within`).
    pub fn stop(mut self, within: Duration) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + within;
        while self.child.try_wait()?.is_none() {
            if Instant::now() > deadline {
                eprintln!("{} did not stop within {within:?}: killing it", self.name);
                let _ = self.child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.wait();
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The real hub, `hub serve`, on 127.0.0.1:`port`.
pub fn start_hub(
    bins: &Bins,
    db: &Path,
    port: u16,
    commit_ms: u64,
    log: &Path,
) -> anyhow::Result<Proc> {
    let mut cmd = Command::new(&bins.hub);
    cmd.args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .arg("--db")
        .arg(db)
        .args(["--commit-ms", &commit_ms.to_string()]);
    // Every simulated device comes from 127.0.0.1: lift the per-address cap where it exists
    // (older builds, run for comparison, may not have it). The total cap's default (20,000,
    // fitted to the open-file limit) holds the 10,000 idle sockets of the largest run.
    let help = Command::new(&bins.hub).args(["serve", "--help"]).output()?;
    let help = String::from_utf8_lossy(&help.stdout);
    let flag = "--max-connections-per-ip";
    if help.contains(&format!("{flag} ")) || help.contains(&format!("{flag}\n")) {
        cmd.args([flag, "100000"]);
    }
    let log = std::fs::File::create(log)?;
    cmd.stdout(Stdio::null())
        .stderr(log)
        .env("RUST_LOG", "warn");
    let child = cmd.spawn().context("starting the hub")?;
    let proc = Proc { child, name: "hub" };
    wait_listening(port, Duration::from_secs(60))?;
    Ok(proc)
}

pub fn wait_listening(port: u16, within: Duration) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline {
            bail!("nothing listens on port {port} after {within:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// Register `n` devices in a fresh database (set-up, not measured) and write their tokens.
pub fn create_db(
    dir: &Path,
    name: &str,
    n: usize,
    prefix: &str,
) -> anyhow::Result<(PathBuf, PathBuf)> {
    let db = dir.join(format!("{name}.db"));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let tokens = rt.block_on(async {
        let store = Store::open(StoreConfig {
            path: db.clone(),
            durability: Durability::ProcessCrash,
            ..StoreConfig::default()
        })?;
        let mut tokens = Vec::with_capacity(n);
        for i in 0..n {
            let token = hub::auth::generate_token()?;
            store
                .add_device(&format!("{prefix}-{i:05}"), &hub::auth::hash_token(&token))
                .await?;
            tokens.push(token);
        }
        store.close().await?;
        anyhow::Ok(tokens)
    })?;
    let file = dir.join(format!("{name}.tokens"));
    std::fs::write(&file, tokens.join("\n"))?;
    Ok((db, file))
}

/// What the load generator printed.
pub struct LoadRun {
    pub proc: Proc,
    lines: mpsc::Receiver<String>,
}

/// Load generator arguments besides the URL and tokens.
#[derive(Clone, Debug)]
pub struct Load {
    pub devices: usize,
    pub rate: f64,
    pub batch: u16,
    pub window: usize,
    pub warmup_s: u64,
    pub duration_s: u64,
    pub idle: bool,
}

pub fn start_load(bins: &Bins, port: u16, tokens: &Path, load: &Load) -> anyhow::Result<LoadRun> {
    let mut cmd = Command::new(&bins.simulator);
    cmd.args([
        "--load",
        "--url",
        &format!("ws://127.0.0.1:{port}/ws/device"),
    ])
    .arg("--token-file")
    .arg(tokens)
    .args(["--devices", &load.devices.to_string()])
    .args(["--rate", &load.rate.to_string()])
    .args(["--batch", &load.batch.to_string()])
    .args(["--window", &load.window.to_string()])
    .args(["--warmup-s", &load.warmup_s.to_string()])
    .args(["--duration-s", &load.duration_s.to_string()])
    .env("RUST_LOG", "warn")
    .stdout(Stdio::piped())
    .stderr(Stdio::null());
    if load.idle {
        cmd.arg("--idle");
    }
    let mut child = cmd.spawn().context("starting the load generator")?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok(LoadRun {
        proc: Proc {
            child,
            name: "load generator",
        },
        lines: rx,
    })
}

impl LoadRun {
    /// Block until the generator prints `marker` (its other lines are skipped).
    pub fn wait_for(&self, marker: &str, within: Duration) -> anyhow::Result<String> {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.starts_with(marker) => return Ok(line),
                Ok(_) => {}
                Err(_) => bail!("the load generator did not print {marker} within {within:?}"),
            }
        }
    }

    /// Wait for its final report and its exit.
    pub fn result(mut self) -> anyhow::Result<serde_json::Value> {
        let line = self.wait_for("LOAD_RESULT ", Duration::from_secs(120))?;
        let _ = self.proc.child.wait();
        Ok(serde_json::from_str(&line["LOAD_RESULT ".len()..])?)
    }
}

/// A one-shot HTTP/1.1 request; returns status, headers and body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: &str,
) -> anyhow::Result<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_nodelay(true)?;
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no status")?;
    let mut body = raw[split + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        body = dechunk(&body);
    }
    Ok((status, head, body))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 || b.len() < eol + 2 + size {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[(eol + 4 + size).min(b.len())..];
    }
    out
}

/// Headers a dashboard sends: the session cookie (when the hub has logins) and its Origin.
#[derive(Clone, Debug, Default)]
pub struct Session {
    pub cookie: Option<String>,
    pub origin: String,
}

impl Session {
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut h = vec![("Origin", self.origin.clone())];
        if let Some(c) = &self.cookie {
            h.push(("Cookie", c.clone()));
        }
        h
    }
}

/// Create a user with `hub user add` (where the hub has users) in `db`, before the hub starts.
pub fn add_user(bins: &Bins, db: &Path) -> bool {
    Command::new(&bins.hub)
        .args(["user", "add", "bench", "--db"])
        .arg(db)
        .env("HUB_PASSWORD", PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const PASSWORD: &str = "bench-password-not-secret";

/// `POST /login`; without logins in this hub, a session with no cookie.
pub fn login(port: u16, has_user: bool) -> anyhow::Result<Session> {
    let origin = format!("http://127.0.0.1:{port}");
    if !has_user {
        return Ok(Session {
            cookie: None,
            origin,
        });
    }
    let (status, head, _) = http(
        port,
        "POST",
        "/login",
        &[
            (
                "Content-Type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
            ("Origin", origin.clone()),
        ],
        &format!("name=bench&password={PASSWORD}"),
    )?;
    let cookie = head
        .lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("set-cookie").then(|| v.trim())
        })
        .find(|v| v.starts_with("hub_session="))
        .map(|v| v.split(';').next().unwrap_or(v).to_owned());
    anyhow::ensure!(
        cookie.is_some(),
        "POST /login answered {status} without a session cookie"
    );
    Ok(Session { cookie, origin })
}

/// Readings the hub stored in batches it received in `[from_s, to_s)` (receive seconds).
pub fn persisted(db: &Path, from_s: i64, to_s: i64) -> anyhow::Result<u64> {
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let bucket_ms = hub::store::BATCH_BUCKET_MS;
    let n: i64 = conn.query_row(
        "SELECT coalesce(sum(count), 0) FROM batches WHERE bucket >= ?1 AND bucket < ?2",
        [from_s * 1000 / bucket_ms, to_s * 1000 / bucket_ms],
        |r| r.get(0),
    )?;
    Ok(n as u64)
}

/// Bytes of a database and its side files.
pub fn disk_bytes(db: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum()
}

pub fn unix_s_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}
