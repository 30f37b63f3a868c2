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
}

impl ServeArgs {
    fn config(self, default_listen: SocketAddr, default_db: &str) -> anyhow::Result<Config> {
        anyhow::ensure!(
            (1..=60_000).contains(&self.commit_ms),
            "--commit-ms must be between 1 and 60000, got {}",
            self.commit_ms
        );
        Ok(Config {
            listen: self.listen.unwrap_or(default_listen),
            db: self.db.unwrap_or_else(|| PathBuf::from(default_db)),
            commit_interval: Duration::from_millis(self.commit_ms),
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
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
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
