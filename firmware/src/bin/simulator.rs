//! The simulator: runs one to thousands of simulated devices against a hub.
//!
//! ```text
//! simulator --url ws://127.0.0.1:8080/ws/device --token-file tokens.txt --duration-s 60
//! ```
//!
//! One device per token (`--token-file`, one per line, and/or `--token`, repeated);
//! `--devices N` uses the first N. Runs until Ctrl-C or `--duration-s`, then each device
//! delivers what it still holds, closes with 1000, and a summary is printed. The devices
//! themselves live in `firmware::sim`; this file only turns flags into them.
//!
//! With `--load` it is the load generator instead (`firmware::sim::load`): lean devices that
//! send whole batches at `--rate` batches/s each (0: as fast as acks come back, at most
//! `--window` unacked), of `--batch` readings, for `--warmup-s` then a measured `--duration-s`;
//! it prints readings offered and acked, ack latency p50/p99/max and reconnects.
//!
//! ```text
//! simulator --load --token-file tokens.txt --devices 1000 --rate 1 --batch 32 --duration-s 60
//! simulator --load --idle --token-file tokens.txt --devices 10000 --duration-s 30
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Parser;
use firmware::sim::{FleetSummary, LoadConfig, SimDevice, run_fleet, run_load};
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(about = "Simulated sensor devices for the telemetry hub")]
struct Args {
    /// The hub's device endpoint.
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws/device")]
    url: String,
    /// How many devices to run (default: one per token).
    #[arg(long)]
    devices: Option<usize>,
    /// A file of device tokens, one per line (blank lines and `#` comments skipped).
    #[arg(long)]
    token_file: Option<PathBuf>,
    /// A device token; repeat for more devices.
    #[arg(long = "token")]
    tokens: Vec<String>,
    /// Sample interval per sensor, ms. Given: devices keep it whatever the hub configures.
    #[arg(long)]
    sample_ms: Option<u64>,
    /// Readings per batch. Given: devices keep it whatever the hub configures.
    #[arg(long)]
    batch: Option<u16>,
    /// Run this long, then stop; 0 runs until Ctrl-C.
    #[arg(long, default_value_t = 0)]
    duration_s: u64,
    /// Base seed of the simulated sensors (device i uses seed + i).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Devices start with their clock set from the host (as by SNTP) instead of unset.
    #[arg(long)]
    sntp: bool,
    /// For a wss:// URL: the CA certificate (PEM) the devices trust, as a board trusts the CA
    /// in its config image (e.g. the hub's --tls-cert when it is self-signed).
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    /// Load generator mode (see the file header); `--duration-s` is then the measured window
    /// (default 10 s).
    #[arg(long)]
    load: bool,
    /// Load mode: batches per second per device; 0 sends as fast as acks free the window.
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Load mode: unacked batches per device, at most (the hub reads 64 ahead of its acks).
    #[arg(long, default_value_t = 64)]
    window: usize,
    /// Load mode: seconds between the last device connecting and the measured window.
    #[arg(long, default_value_t = 3)]
    warmup_s: u64,
    /// Load mode: connect and hold the sockets, send no batches.
    #[arg(long)]
    idle: bool,
    /// Load mode: seconds to wait for every device to connect before measuring anyway.
    #[arg(long, default_value_t = 120)]
    connect_timeout_s: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    if args.load {
        return load(&args).await;
    }
    let devices = devices(&args)?;
    tracing::info!(devices = devices.len(), url = %args.url, "starting simulated devices");

    let (stop_tx, stop_rx) = watch::channel(false);
    let fleet = tokio::spawn(run_fleet(devices, stop_rx));
    let duration = args.duration_s;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: stopping"),
        _ = tokio::time::sleep(Duration::from_secs(duration)), if duration > 0 => tracing::info!("duration reached: stopping"),
    }
    stop_tx.send_replace(true);
    let reports = fleet.await.context("the fleet task failed")?;
    for r in reports
        .iter()
        .filter(|r| r.error.is_some() || r.revoked || !r.acked_all)
    {
        tracing::warn!(device = %r.name, error = ?r.error, revoked = r.revoked, acked_all = r.acked_all, "device ended badly");
    }
    println!("{}", FleetSummary::of(&reports));
    Ok(())
}

async fn load(args: &Args) -> anyhow::Result<()> {
    if args.url.starts_with("wss://") {
        bail!("--load speaks ws:// only (it measures the hub, not TLS); use a ws:// URL");
    }
    match raise_fd_limit() {
        Ok(n) => tracing::info!(open_files = n, "raised the open-file limit"),
        Err(e) => tracing::warn!("could not raise the open-file limit: {e}"),
    }
    let mut tokens = tokens(args)?;
    let n = args.devices.unwrap_or(tokens.len());
    if n == 0 || n > tokens.len() {
        bail!(
            "--load needs one token per device: {n} devices, {} tokens",
            tokens.len()
        );
    }
    tokens.truncate(n);
    let cfg = LoadConfig {
        url: args.url.clone(),
        tokens,
        rate: args.rate,
        batch: args.batch.unwrap_or(32),
        window: args.window.max(1),
        idle: args.idle,
        duration: Duration::from_secs(if args.duration_s == 0 {
            10
        } else {
            args.duration_s
        }),
        warmup: Duration::from_secs(args.warmup_s),
        connect_timeout: Duration::from_secs(args.connect_timeout_s),
        seed: args.seed,
    };
    let (stop_tx, stop_rx) = watch::channel(false);
    let run = tokio::spawn(run_load(cfg, stop_rx));
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            stop_tx.send_replace(true);
        }
    });
    let report = run.await.context("the load task failed")?;
    println!("{report}");
    println!("LOAD_RESULT {}", report.json());
    Ok(())
}

fn tokens(args: &Args) -> anyhow::Result<Vec<String>> {
    let mut tokens = args.tokens.clone();
    if let Some(path) = &args.token_file {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        tokens.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    Ok(tokens)
}

fn devices(args: &Args) -> anyhow::Result<Vec<SimDevice>> {
    let tokens = tokens(args)?;
    let n = args.devices.unwrap_or(tokens.len());
    if tokens.is_empty() {
        bail!("no device tokens: give --token or --token-file");
    }
    if n > tokens.len() {
        bail!(
            "--devices {n} needs {n} tokens, got {} (each device needs its own token)",
            tokens.len()
        );
    }
    let pinned = args.sample_ms.is_some() || args.batch.is_some();
    let tls = args
        .ca
        .as_deref()
        .map(firmware::sim::link::tls_trusting)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--ca: {e}"))?;
    if args.url.starts_with("wss://") && tls.is_none() {
        bail!("a wss:// URL needs --ca FILE (the CA certificate the hub's certificate chains to)");
    }
    Ok(tokens
        .into_iter()
        .take(n)
        .enumerate()
        .map(|(i, token)| {
            let mut d = SimDevice::new(
                args.url.clone(),
                token,
                format!("sim-{i}"),
                args.seed.wrapping_add(i as u64),
            );
            if let Some(ms) = args.sample_ms {
                d.sample_interval = Duration::from_millis(ms);
            }
            if let Some(b) = args.batch {
                d.batch_max_readings = b;
            }
            d.follow_hub_config = !pinned;
            d.sntp = args.sntp;
            d.tls = tls.clone();
            d
        })
        .collect())
}

/// Raise the soft open-file limit to the hard one: each load device is a socket. (Here, not in
/// the library, which forbids `unsafe`.)
fn raise_fd_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lim.rlim_cur = lim.rlim_max;
        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}
