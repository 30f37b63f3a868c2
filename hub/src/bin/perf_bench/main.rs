//! `perf_bench`: how close the hub runs to this machine's limits, each figure beside a ceiling
//! measured in the same run (absolute numbers on a shared machine drift; ratios hold).
//!
//! It lives in the hub package because two of its ceilings need the hub's library: the store
//! ceiling drives `hub::store` directly, and the history bench writes its week of data through
//! the same store. The hub itself and the load generator (`simulator --load`) run as separate
//! processes, the binaries built beside this one:
//!
//! ```text
//! cargo build --release -p hub -p firmware --bins
//! target/release/perf_bench ingest   [--devices 10,100,1000,5000] [--seconds 20] [--steady-s 600]
//! target/release/perf_bench idle     [--devices 10000] [--seconds 20]
//! target/release/perf_bench latency  [--seconds 20]
//! target/release/perf_bench history  [--requests 100] [--cold-runs 100]
//! ```
//!
//! Modules: [`procs`] (child processes, `/proc`, login), [`sink`] (the socket ceiling's bare
//! server), [`ingest`] (item 3), [`idle`] (item 4), [`latency`] (item 5), [`history`] (item 6).

mod history;
mod idle;
mod ingest;
mod latency;
mod procs;
mod sink;

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use procs::{Bins, Load};

#[derive(Parser)]
#[command(about = "End-to-end benchmarks of the hub, as ratios to same-run ceilings")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
    /// Scratch directory for databases and logs (removed at the end unless --keep).
    #[arg(long, global = true)]
    dir: Option<PathBuf>,
    #[arg(long, global = true)]
    keep: bool,
}

#[derive(Subcommand)]
enum Cmd {
    /// Item 3: store ceiling, socket ceiling and the hub at each device count; then the steady
    /// run at 1,000 devices x 1 batch/s for bytes written per reading.
    Ingest {
        #[arg(long, value_delimiter = ',', default_value = "10,100,1000,5000")]
        devices: Vec<usize>,
        /// Measured seconds per configuration.
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        /// Length of the steady run (0 skips it).
        #[arg(long, default_value_t = 600)]
        steady_s: u64,
        /// Commit interval of the hub and the store ceiling, ms (the hub's default).
        #[arg(long, default_value_t = 1000)]
        commit_ms: u64,
    },
    /// Item 4: idle device sockets; hub RSS per connection.
    Idle {
        #[arg(long, default_value_t = 10_000)]
        devices: usize,
        #[arg(long, default_value_t = 20)]
        seconds: u64,
    },
    /// Item 5: paced ack latency, send-to-live latency, ingest with and without live clients.
    Latency {
        #[arg(long, default_value_t = 20)]
        seconds: u64,
        #[arg(long, default_value_t = 20)]
        live_clients: usize,
        /// Run only these parts (comma-separated): paced, live, ingest-with-live.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "paced,live,ingest-with-live"
        )]
        parts: Vec<String>,
    },
    /// Item 6: 7 days of 1 Hz history through the HTTP API, warm and cold.
    History {
        #[arg(long, default_value_t = 100)]
        requests: usize,
        #[arg(long, default_value_t = 100)]
        cold_runs: usize,
    },
    /// The socket ceiling's bare server (started by `ingest`).
    #[command(hide = true)]
    Sink {
        #[arg(long)]
        port: u16,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Cmd::Sink { port } = cli.command {
        return tokio::runtime::Runtime::new()?.block_on(sink::run(port));
    }
    let bins = Bins::find()?;
    let dir = cli
        .dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("perf-bench-{}", std::process::id())));
    std::fs::create_dir_all(&dir)?;
    println!(
        "machine: {} cores, {}; load average at start {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        cpu_model(),
        procs::load_average()
    );
    let result = match cli.command {
        Cmd::Ingest {
            devices,
            seconds,
            steady_s,
            commit_ms,
        } => ingest_all(&bins, &dir, &devices, seconds, steady_s, commit_ms),
        Cmd::Idle { devices, seconds } => idle::run(&bins, &dir, devices, seconds),
        Cmd::Latency {
            seconds,
            live_clients,
            parts,
        } => {
            let wants = |part: &str| parts.iter().any(|p| p == part);
            if let Some(unknown) = parts
                .iter()
                .find(|p| !["paced", "live", "ingest-with-live"].contains(&p.as_str()))
            {
                anyhow::bail!("unknown part {unknown:?}: paced, live or ingest-with-live");
            }
            if wants("paced") {
                latency::paced(&bins, &dir, 1000, 10.0, seconds)?;
            }
            if wants("live") {
                latency::live(&bins, &dir, 50, live_clients, seconds)?;
            }
            if wants("ingest-with-live") {
                latency::ingest_with_live(&bins, &dir, 1000, live_clients, seconds)?;
            }
            Ok(())
        }
        Cmd::History {
            requests,
            cold_runs,
        } => history::run(&bins, &dir, requests, cold_runs),
        Cmd::Sink { .. } => unreachable!("handled above"),
    };
    if !cli.keep {
        let _ = std::fs::remove_dir_all(&dir);
    }
    result
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| {
                l.strip_prefix("model name")?
                    .split(':')
                    .nth(1)
                    .map(|v| v.trim().to_owned())
            })
        })
        .unwrap_or_default()
}

fn ingest_all(
    bins: &Bins,
    dir: &std::path::Path,
    devices: &[usize],
    seconds: u64,
    steady_s: u64,
    commit_ms: u64,
) -> anyhow::Result<()> {
    println!(
        "unpaced load: 32-reading batches, up to 64 unacked per device, {seconds} s measured per row, commit every {commit_ms} ms"
    );
    println!(
        "{:>7} {:>12} {:>12} {:>12} {:>7} {:>9} {:>9} {:>9} {:>10} {:>9} {:>14}",
        "devices",
        "store rd/s",
        "socket rd/s",
        "hub rd/s",
        "ratio",
        "hub CPU",
        "sink CPU",
        "peak MiB",
        "written/rd",
        "ack p99",
        "load avg"
    );
    for &n in devices {
        let load = Load {
            devices: n,
            rate: 0.0,
            batch: 32,
            window: 64,
            warmup_s: 5,
            duration_s: seconds,
            idle: false,
        };
        let store = ingest::store_run(dir, &load, commit_ms)?;
        let (socket, sink_cpu) = ingest::socket_run(bins, dir, &load)?;
        let hub = ingest::hub_run(bins, dir, &load, commit_ms, 0)?;
        println!(
            "{:>7} {:>12.0} {:>12.0} {:>12.0} {:>6.1}% {:>9.2} {:>9.2} {:>9.1} {:>10.1} {:>7.0}ms {:>14}",
            n,
            store,
            socket,
            hub.readings_per_s,
            100.0 * hub.readings_per_s / store.min(socket).max(1.0),
            hub.cpu_per_s,
            sink_cpu,
            hub.hwm_mib,
            hub.written_per_reading,
            hub.load["ack_p99_us"].as_f64().unwrap_or(0.0) / 1000.0,
            procs::load_average()
        );
    }
    if steady_s > 0 {
        steady(bins, dir, steady_s)?;
    }
    Ok(())
}

/// 1,000 devices x one 32-reading batch per second at the default commit interval.
fn steady(bins: &Bins, dir: &std::path::Path, seconds: u64) -> anyhow::Result<()> {
    let load = Load {
        devices: 1000,
        rate: 1.0,
        batch: 32,
        window: 64,
        warmup_s: 5,
        duration_s: seconds,
        idle: false,
    };
    let f = ingest::hub_run(bins, dir, &load, 1000, 0)?;
    let db = dir.join("hub-1000.db");
    let stored_total = procs::persisted(&db, 0, i64::MAX / 1000)?;
    println!(
        "steady: 1000 devices x 1 batch/s x 32 readings for {seconds} s: {:.0} readings/s persisted, {:.2} bytes written \
         per reading (target <= 16), {:.2} bytes on disk per reading (target <= 4; {} readings, {:.1} MB), hub CPU {:.3} cores, \
         peak RSS {:.1} MiB, ack p50 {:.0} ms p99 {:.0} ms [load {}]",
        f.readings_per_s,
        f.written_per_reading,
        procs::disk_bytes(&db) as f64 / stored_total.max(1) as f64,
        stored_total,
        procs::disk_bytes(&db) as f64 / 1e6,
        f.cpu_per_s,
        f.hwm_mib,
        f.load["ack_p50_us"].as_f64().unwrap_or(0.0) / 1000.0,
        f.load["ack_p99_us"].as_f64().unwrap_or(0.0) / 1000.0,
        procs::load_average()
    );
    Ok(())
}
