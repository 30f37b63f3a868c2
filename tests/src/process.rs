//! The hub as a separate process, for the tests that kill it (`kill -9`) or send it SIGTERM.
//!
//! The child is this very test binary, re-run with `--exact hub_process --ignored`: the test
//! named `hub_process` (defined in each test file by [`hub_process_entry!`]) runs the real hub
//! (`hub::server::run` with its SIGINT/SIGTERM handling) when the `TEST_HUB_DB` variable is set.
//! So the child is the hub's own code in its own process, with no second build to find.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// Defines the `hub_process` test that [`HubProcess::spawn`] runs as the child.
#[macro_export]
macro_rules! hub_process_entry {
    () => {
        #[test]
        #[ignore = "the hub child process of the fault tests; they start it themselves"]
        fn hub_process() {
            $crate::process::child_main();
        }
    };
}

const MARKER: &str = "TEST_HUB_LISTENING ";

/// A hub in a child process.
pub struct HubProcess {
    child: Child,
    pub addr: SocketAddr,
    pub db: PathBuf,
}

/// Settings of a child hub.
#[derive(Clone, Debug)]
pub struct ChildConfig {
    pub db: PathBuf,
    /// `127.0.0.1:0` for any free port; a fixed address to restart on the same port.
    pub listen: SocketAddr,
    pub commit_ms: u64,
    pub ping_ms: u64,
    /// The child's open-file limit, soft and hard (through util-linux's `prlimit`); `None`
    /// inherits this process's.
    pub open_files: Option<u64>,
}

impl ChildConfig {
    pub fn new(db: &Path) -> Self {
        Self {
            db: db.to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            commit_ms: 50,
            ping_ms: 10_000,
            open_files: None,
        }
    }
}

impl HubProcess {
    pub fn spawn(cfg: &ChildConfig) -> anyhow::Result<HubProcess> {
        let exe = std::env::current_exe()?;
        let mut command = match cfg.open_files {
            None => Command::new(exe),
            Some(n) => {
                let mut prlimit = Command::new("prlimit");
                prlimit.arg(format!("--nofile={n}:{n}")).arg("--").arg(exe);
                prlimit
            }
        };
        let mut child = command
            .args([
                "--exact",
                "hub_process",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("TEST_HUB_DB", &cfg.db)
            .env("TEST_HUB_LISTEN", cfg.listen.to_string())
            .env("TEST_HUB_COMMIT_MS", cfg.commit_ms.to_string())
            .env("TEST_HUB_PING_MS", cfg.ping_ms.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("spawning the hub child")?;
        let stdout = child.stdout.take().context("child stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest prints "test hub_process ... " before it on the same line.
                if let Some(at) = line.find(MARKER) {
                    let _ = tx.send(line[at + MARKER.len()..].trim().to_owned());
                }
            }
        });
        let addr = match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(addr) => addr.parse().context("child printed a bad address")?,
            Err(_) => {
                let _ = child.kill();
                bail!("hub child did not start within 30 s: {:?}", child.wait());
            }
        };
        Ok(HubProcess {
            child,
            addr,
            db: cfg.db.clone(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn device_url(&self) -> String {
        format!("ws://{}/ws/device", self.addr)
    }

    pub fn live_url(&self) -> String {
        format!("ws://{}/ws/live", self.addr)
    }

    /// `/ws/live`, logged in as the test user.
    pub async fn connect_live(&self) -> anyhow::Result<crate::Ws> {
        let cookie = crate::login(self.addr, &self.db).await?;
        Ok(crate::connect_live(self.addr, &cookie).await?)
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(mut self) -> anyhow::Result<()> {
        self.child.kill()?;
        self.child.wait()?;
        Ok(())
    }

    /// SIGTERM, then wait up to `within` for the exit.
    pub fn terminate(mut self, within: Duration) -> anyhow::Result<ExitStatus> {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        anyhow::ensure!(status.success(), "kill -TERM failed");
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                bail!("hub did not exit within {within:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for HubProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child's body: run the hub until SIGTERM. Does nothing when not started as a child.
pub fn child_main() {
    let Some(db) = std::env::var_os("TEST_HUB_DB") else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} not set"));
    let ms = |name: &str| Duration::from_millis(var(name).parse().expect("milliseconds"));
    let mut config = hub::config::Config {
        db: PathBuf::from(db),
        listen: var("TEST_HUB_LISTEN").parse().expect("address"),
        commit_interval: ms("TEST_HUB_COMMIT_MS"),
        ping_interval: ms("TEST_HUB_PING_MS"),
        ..hub::config::Config::default()
    };
    config.device.heartbeat_ms = config.ping_interval.as_millis() as u32;
    let runtime = hub::priority::runtime().expect("runtime");
    runtime
        .block_on(async move {
            let listener = tokio::net::TcpListener::bind(config.listen).await?;
            hub::server::run(
                config,
                listener,
                hub::server::shutdown_signal(),
                |running| {
                    println!("{MARKER}{}", running.addr);
                },
            )
            .await
        })
        .expect("hub child failed");
}
