//! `hub`: the command line. Flags fill a `Config`; each subcommand is one call into the
//! library (`hub::server::run`, `hub::admin`, `hub::demo`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use hub::config::Config;

#[derive(Parser)]
#[command(
    name = "hub",
    version,
    about = "Telemetry hub for ESP32-class sensor devices"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub: device ingest, live dashboard, HTTP API.
    Serve(ServeArgs),
    /// Run the hub with N simulated devices in the same process: data at once, no set-up.
    Demo {
        #[command(flatten)]
        serve: ServeArgs,
        /// Simulated devices to start.
        #[arg(long, default_value_t = 5)]
        devices: u32,
        /// Milliseconds between samples of each simulated sensor.
        #[arg(long, default_value_t = 1000)]
        sample_ms: u32,
    },
    /// Manage device tokens.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
        /// The SQLite database file.
        #[arg(long, default_value = "hub.db", global = true)]
        db: PathBuf,
    },
    /// Manage the people who may open the dashboard and the API.
    User {
        #[command(subcommand)]
        command: UserCommand,
        /// The SQLite database file.
        #[arg(long, default_value = "hub.db", global = true)]
        db: PathBuf,
    },
    /// Write readings as CSV (device,sensor,ts_ms,iso_time,value,time_source).
    Export {
        /// The SQLite database file.
        #[arg(long, default_value = "hub.db")]
        db: PathBuf,
        /// Start of the range: Unix milliseconds or RFC 3339 (default: the beginning).
        #[arg(long)]
        from: Option<String>,
        /// End of the range, exclusive: Unix milliseconds or RFC 3339 (default: now).
        #[arg(long)]
        to: Option<String>,
        /// Only this device.
        #[arg(long)]
        device: Option<String>,
        /// Output file (default: standard output).
        #[arg(long, short)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// Register a device and print its token (shown once; only its hash is stored).
    Add {
        name: String,
        #[command(flatten)]
        board: BoardConfigArgs,
    },
    /// List devices.
    List,
    /// Revoke a device's token: a running hub closes its connection and refuses it from now on.
    Revoke { name: String },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user. The password comes from HUB_PASSWORD, or is asked for on the terminal.
    Add { name: String },
    /// Change a user's password (ends their sessions). Password as for `add`.
    Passwd { name: String },
    /// Remove a user (ends their sessions).
    Remove { name: String },
    /// List users.
    List,
}

/// With `--board-config FILE.bin`: also write the board's config image (Wi-Fi, hub URL, this
/// token), to flash with `espflash write-bin --chip esp32c3 0x3f0000 FILE.bin`.
#[derive(Args)]
struct BoardConfigArgs {
    /// Write the board's config image to this file.
    #[arg(long, requires_all = ["wifi_ssid", "hub_url"])]
    board_config: Option<PathBuf>,
    /// Wi-Fi network the board joins.
    #[arg(long)]
    wifi_ssid: Option<String>,
    /// Its WPA2 passphrase (omit for an open network).
    #[arg(
        long,
        env = "HUB_WIFI_PASSWORD",
        default_value = "",
        hide_env_values = true
    )]
    wifi_password: String,
    /// The hub's device endpoint as the board reaches it, e.g. ws://192.168.1.10:8080/ws/device.
    #[arg(long)]
    hub_url: Option<String>,
    /// CA certificate (PEM or DER) the board trusts for a wss:// hub URL.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Milliseconds between samples until the hub says otherwise.
    #[arg(long, default_value_t = 1000)]
    sample_ms: u32,
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on (default 0.0.0.0:8080; 127.0.0.1:8080 for `demo`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// The SQLite database file (default hub.db; demo.db for `demo`).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Milliseconds the store gathers batches into one commit (acks wait for it).
    #[arg(long, default_value_t = 1000)]
    commit_ms: u64,
    /// Serve https and wss with this certificate chain (PEM, leaf first). Needs --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1). Needs --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// An origin (scheme://host:port) besides the hub's own whose pages may open /ws/live;
    /// repeat for more.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    allowed_origins: Vec<String>,
    /// Serve /metrics without a login (for a Prometheus scraper on the LAN).
    #[arg(long)]
    public_metrics: bool,
    /// Open TCP connections at most (devices, browsers, scripts); more get HTTP 503.
    #[arg(long, default_value_t = Config::default().max_connections)]
    max_connections: usize,
    /// Open TCP connections from one address at most; more get HTTP 503.
    #[arg(long, default_value_t = Config::default().max_connections_per_ip)]
    max_connections_per_ip: usize,
    /// Open /ws/live connections at most; more get HTTP 503.
    #[arg(long, default_value_t = Config::default().max_live_clients)]
    max_live_clients: usize,
    /// Time to finish the TLS handshake and send a request's headers (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    handshake_timeout: Duration,
    /// Time a device has after connecting to send its Hello (e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    hello_timeout: Duration,
    /// Failed logins per minute, per address and per user name, before HTTP 429.
    #[arg(long, default_value_t = Config::default().login_max_failures)]
    login_max_failures: u32,
    /// How long a login lasts (e.g. 7d, 12h).
    #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
    session_ttl: Duration,
    /// Most buckets one history answer may hold.
    #[arg(long, default_value_t = Config::default().max_history_points)]
    max_history_points: usize,
    /// A device may store readings at this multiple of its declared rate before its batches
    /// are rejected RateLimited (backlogs never count against it).
    #[arg(long, default_value_t = Config::default().rate_limit_factor)]
    rate_limit_factor: f64,
    /// Frames per second read from one device socket; faster senders are read later (paced),
    /// never refused.
    #[arg(long, default_value_t = Config::default().device_frames_per_s)]
    max_device_frames_per_s: u32,
}

impl ServeArgs {
    fn config(self, default_listen: SocketAddr, default_db: &str) -> anyhow::Result<Config> {
        anyhow::ensure!(
            (1..=60_000).contains(&self.commit_ms),
            "--commit-ms must be between 1 and 60000, got {}",
            self.commit_ms
        );
        let positive = |name: &str, v: usize| {
            anyhow::ensure!(v >= 1, "--{name} must be at least 1");
            Ok(())
        };
        positive("max-connections", self.max_connections)?;
        positive("max-connections-per-ip", self.max_connections_per_ip)?;
        positive("max-live-clients", self.max_live_clients)?;
        positive("login-max-failures", self.login_max_failures as usize)?;
        positive(
            "max-device-frames-per-s",
            self.max_device_frames_per_s as usize,
        )?;
        anyhow::ensure!(
            (1..=hub::store::read::MAX_HISTORY_POINTS).contains(&self.max_history_points),
            "--max-history-points must be between 1 and {}",
            hub::store::read::MAX_HISTORY_POINTS
        );
        anyhow::ensure!(
            self.rate_limit_factor.is_finite() && self.rate_limit_factor >= 1.0,
            "--rate-limit-factor must be a number of at least 1, got {}",
            self.rate_limit_factor
        );
        for (name, d) in [
            ("handshake-timeout", self.handshake_timeout),
            ("hello-timeout", self.hello_timeout),
            ("session-ttl", self.session_ttl),
        ] {
            anyhow::ensure!(!d.is_zero(), "--{name} must be longer than 0");
        }
        for o in &self.allowed_origins {
            anyhow::ensure!(
                (o.starts_with("http://") || o.starts_with("https://"))
                    && !o[o.find("//").map_or(0, |i| i + 2)..].contains('/'),
                "--allow-origin {o:?} is not an origin: scheme://host[:port], no path"
            );
        }
        let tls = match (self.tls_cert, self.tls_key) {
            (Some(cert), Some(key)) => Some(hub::config::TlsFiles { cert, key }),
            _ => None,
        };
        Ok(Config {
            listen: self.listen.unwrap_or(default_listen),
            db: self.db.unwrap_or_else(|| PathBuf::from(default_db)),
            commit_interval: Duration::from_millis(self.commit_ms),
            tls,
            allowed_origins: self.allowed_origins,
            metrics_public: self.public_metrics,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            max_live_clients: self.max_live_clients,
            handshake_timeout: self.handshake_timeout,
            hello_timeout: self.hello_timeout,
            login_max_failures: self.login_max_failures,
            session_ttl: self.session_ttl,
            max_history_points: self.max_history_points,
            rate_limit_factor: self.rate_limit_factor,
            device_frames_per_s: self.max_device_frames_per_s,
            ..Config::default()
        })
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = hub::priority::runtime().context("starting the async runtime")?;
    match cli.command {
        Command::Serve(args) => {
            let config = args.config(Config::default().listen, "hub.db")?;
            runtime.block_on(hub::serve(config))
        }
        Command::Demo {
            serve,
            devices,
            sample_ms,
        } => {
            anyhow::ensure!(
                (1..=10_000).contains(&devices),
                "--devices must be between 1 and 10000, got {devices}"
            );
            anyhow::ensure!(
                sample_ms >= 10,
                "--sample-ms must be at least 10, got {sample_ms}"
            );
            let config = serve.config(SocketAddr::from(([127, 0, 0, 1], 8080)), "demo.db")?;
            runtime.block_on(hub::demo::run(config, devices, sample_ms))
        }
        Command::Device { command, db } => match command {
            DeviceCommand::Add { name, board } => {
                let ca = board
                    .ca
                    .as_ref()
                    .map(|p| {
                        std::fs::read(p).with_context(|| format!("reading --ca {}", p.display()))
                    })
                    .transpose()?;
                let image = |token: &str| -> anyhow::Result<Vec<u8>> {
                    let (Some(ssid), Some(url)) =
                        (board.wifi_ssid.as_deref(), board.hub_url.as_deref())
                    else {
                        anyhow::bail!("--board-config needs --wifi-ssid and --hub-url")
                    };
                    hub::board_image::build(&hub::board_image::BoardImageArgs {
                        wifi_ssid: ssid,
                        wifi_password: &board.wifi_password,
                        hub_url: url,
                        token,
                        ca: ca.as_deref(),
                        sample_interval_ms: board.sample_ms,
                    })
                };
                // Check the board's inputs before registering, so a typo leaves no device behind.
                if board.board_config.is_some() {
                    image("0")?;
                }
                let token = runtime.block_on(hub::admin::add_device(&db, &name))?;
                println!(
                    "device {name} added. Its token (shown once, store it on the device):\n{token}"
                );
                if let Some(path) = &board.board_config {
                    let bytes = image(&token)?;
                    std::fs::write(path, &bytes)
                        .with_context(|| format!("writing {}", path.display()))?;
                    println!(
                        "board config image ({} bytes) written to {}; flash it with:\n  espflash write-bin --chip esp32c3 {:#x} {}",
                        bytes.len(),
                        path.display(),
                        hub::board_image::DEVCFG_OFFSET,
                        path.display()
                    );
                }
                Ok(())
            }
            DeviceCommand::List => {
                runtime.block_on(hub::admin::list_devices(&db, &mut std::io::stdout().lock()))
            }
            DeviceCommand::Revoke { name } => {
                runtime.block_on(hub::admin::revoke_device(&db, &name))?;
                println!(
                    "device {name} revoked; a running hub closes its connection within seconds"
                );
                Ok(())
            }
        },
        Command::User { command, db } => match command {
            UserCommand::Add { name } => {
                let password = read_password(&name)?;
                runtime.block_on(hub::admin::add_user(&db, &name, &password))?;
                println!("user {name} added; log in at the hub's address");
                Ok(())
            }
            UserCommand::Passwd { name } => {
                let password = read_password(&name)?;
                runtime.block_on(hub::admin::set_password(&db, &name, &password))?;
                println!("password of {name} changed; their sessions are ended");
                Ok(())
            }
            UserCommand::Remove { name } => {
                runtime.block_on(hub::admin::remove_user(&db, &name))?;
                println!("user {name} removed; their sessions are ended");
                Ok(())
            }
            UserCommand::List => {
                runtime.block_on(hub::admin::list_users(&db, &mut std::io::stdout().lock()))
            }
        },
        Command::Export {
            db,
            from,
            to,
            device,
            out,
        } => runtime.block_on(hub::admin::export(
            &db,
            from.as_deref(),
            to.as_deref(),
            device.as_deref(),
            out.as_deref(),
        )),
    }
}

/// The new password: `HUB_PASSWORD`, or one line read from the terminal (asked twice when it
/// is a terminal, to catch typos). Never a flag: flags end up in shell history and `ps`.
fn read_password(name: &str) -> anyhow::Result<String> {
    use std::io::{BufRead, IsTerminal, Write};
    if let Ok(p) = std::env::var("HUB_PASSWORD") {
        hub::auth::password::check_new(&p)?;
        return Ok(p);
    }
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let ask = |prompt: &str| -> anyhow::Result<String> {
        if tty {
            eprint!("{prompt}");
            std::io::stderr().flush().ok();
        }
        let mut line = String::new();
        stdin
            .lock()
            .read_line(&mut line)
            .context("reading the password")?;
        Ok(line.trim_end_matches(['\r', '\n']).to_owned())
    };
    let password = ask(&format!(
        "password for {name} (echoed; or set HUB_PASSWORD): "
    ))?;
    hub::auth::password::check_new(&password)?;
    if tty {
        anyhow::ensure!(ask("again: ")? == password, "the two passwords differ");
    }
    Ok(password)
}
