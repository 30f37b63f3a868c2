//! `store_bench`: what the store costs per reading, on this machine's disk.
//!
//! Feeds the same batches through `hub::store::Store` that a thousand devices would send
//! (one 32-reading batch per device per simulated second: 4 sensors x 8 samples, realistic
//! values, arrival order, one device every millisecond) and commits every W ms of *simulated*
//! arrival time (`Store::flush`), so a run takes as long as the disk needs, not as long as the
//! simulated time. For W = 10 / 100 / 1000 ms it prints readings/s, bytes written per
//! reading (`/proc/self/io`: `write_bytes` is what reached the block layer, checkpoints and
//! the final `wal_checkpoint(TRUNCATE)` included; `wchar` counts every `write()` call), bytes on
//! disk per reading and payload bytes per reading. Then the same for the baseline layout in the
//! same run: a row per reading keyed (device, sensor, ts), same pragmas, same commits.
//! The default, 5 simulated minutes, lets the tables grow and the roll-ups be written during
//! the run (open minutes close `LATE_BATCH_MS` after the newest arrival); on a quiet 2-core
//! machine it takes about a minute, most of it the 30,000 fsyncs of W = 10 ms, and several
//! times that on a loaded one. `--seconds 180` is the least that still writes roll-ups;
//! `docs/storage.md` quotes a run with `--seconds 600`.
//!
//! ```text
//! cargo run --release -p hub --bin store_bench -- [--seconds 300] [--devices 1000]
//!     [--baseline-seconds 60] [--dir DIR] [--keep]
//! ```

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use hub::store::{
    CommitTicket, Committed, Durability, IncomingBatch, Store, StoreConfig, Ticket, TimeSource,
};
use rusqlite::{Connection, params};
use shared::payload::Point;

/// 2026-01-01T00:00:00Z: the simulated clock starts here.
const T0: i64 = 1_767_225_600_000;
const SENSORS: u8 = 4;
const SAMPLES_PER_SENSOR: i64 = 8;
const READINGS_PER_BATCH: u64 = SENSORS as u64 * SAMPLES_PER_SENSOR as u64;

struct Args {
    seconds: i64,
    devices: i64,
    baseline_seconds: i64,
    dir: PathBuf,
    keep: bool,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        seconds: 300,
        devices: 1000,
        baseline_seconds: 60,
        dir: std::env::temp_dir().join(format!("store-bench-{}", std::process::id())),
        keep: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--seconds" => args.seconds = value()?.parse()?,
            "--devices" => args.devices = value()?.parse()?,
            "--baseline-seconds" => args.baseline_seconds = value()?.parse()?,
            "--dir" => args.dir = PathBuf::from(value()?),
            "--keep" => args.keep = true,
            other => bail!("unknown argument {other}; see the header of src/bin/store_bench.rs"),
        }
    }
    anyhow::ensure!(
        args.seconds > 0 && (1..=1_000_000).contains(&args.devices),
        "--seconds and --devices must be positive"
    );
    Ok(args)
}

/// A device's sensors: random walks quantised like real sensors report them.
struct Device {
    rng: u64,
    temperature: f64,
    humidity: f64,
    pressure: f64,
    battery: f64,
    phase_ms: i64,
}

impl Device {
    fn new(i: i64) -> Device {
        let mut d = Device {
            rng: 0x9E37_79B9_7F4A_7C15 ^ (i as u64 + 1).wrapping_mul(0xD1B5_4A32_D192_ED03),
            temperature: 0.0,
            humidity: 0.0,
            pressure: 0.0,
            battery: 0.0,
            phase_ms: (i * 7) % 125,
        };
        d.temperature = 18.0 + 7.0 * d.uniform();
        d.humidity = 40.0 + 20.0 * d.uniform();
        d.pressure = 1000.0 + 20.0 * d.uniform();
        d.battery = 3.7 + 0.4 * d.uniform();
        d
    }

    /// xorshift64*, in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn noise(&mut self, size: f64) -> f64 {
        (self.uniform() - 0.5) * 2.0 * size
    }

    /// The batch this device sends at `received_ms`: the last second of samples.
    fn batch(&mut self, received_ms: i64) -> Vec<Point> {
        let mut points = Vec::with_capacity(READINGS_PER_BATCH as usize);
        let start = received_ms - 1000 + self.phase_ms;
        for k in 0..SAMPLES_PER_SENSOR {
            // All sensors are read at one instant, a few ms off the schedule.
            let ts_ms = start + k * 125 + (self.uniform() * 7.0) as i64 - 3;
            self.temperature += self.noise(0.02);
            self.humidity = (self.humidity + self.noise(0.05)).clamp(0.0, 100.0);
            self.pressure += self.noise(0.01);
            self.battery -= 0.000_001;
            let battery = self.battery + self.noise(0.002);
            let quantised = [
                (self.temperature, 100.0),
                (self.humidity, 10.0),
                (self.pressure, 100.0),
                (battery, 1000.0),
            ];
            for (sensor, (value, per_unit)) in quantised.into_iter().enumerate() {
                points.push(Point {
                    sensor: sensor as u8,
                    ts_ms,
                    value: ((value * per_unit).round() / per_unit) as f32,
                });
            }
        }
        points
    }
}

#[derive(Clone, Copy)]
struct Io {
    wchar: u64,
    write_bytes: u64,
}

fn io() -> anyhow::Result<Io> {
    let text =
        std::fs::read_to_string("/proc/self/io").context("reading /proc/self/io (Linux only)")?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':')?.trim().parse().ok())
            .unwrap_or(0)
    };
    Ok(Io {
        wchar: field("wchar"),
        write_bytes: field("write_bytes"),
    })
}

struct Figures {
    layout: &'static str,
    window_ms: i64,
    seconds: i64,
    readings: u64,
    elapsed_s: f64,
    written: u64,
    wchar: u64,
    disk: u64,
    payload: Option<u64>,
    commits: u64,
}

impl Figures {
    fn per_reading(&self, bytes: u64) -> f64 {
        bytes as f64 / self.readings as f64
    }

    fn print(&self) {
        let payload = self
            .payload
            .map_or("-".to_owned(), |p| format!("{:.2}", self.per_reading(p)));
        println!(
            "{:<34} {:>5} {:>5} {:>11} {:>8.1} {:>11.0} {:>10.1} {:>9.1} {:>8.2} {:>8} {:>8}",
            self.layout,
            self.window_ms,
            self.seconds,
            self.readings,
            self.elapsed_s,
            self.readings as f64 / self.elapsed_s,
            self.per_reading(self.written),
            self.per_reading(self.wchar),
            self.per_reading(self.disk),
            payload,
            self.commits
        );
    }
}

fn fresh_dir(base: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let dir = base.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Bytes of the database and its side files.
fn disk_bytes(db: &Path) -> u64 {
    ["", "-wal", "-shm"]
        .iter()
        .filter_map(|s| std::fs::metadata(format!("{}{s}", db.display())).ok())
        .map(|m| m.len())
        .sum()
}

async fn run_store(
    args: &Args,
    window_ms: i64,
    durability: Durability,
    layout: &'static str,
) -> anyhow::Result<Figures> {
    let dir = fresh_dir(&args.dir, &format!("store-{window_ms}ms-{durability:?}"))?;
    let path = dir.join("hub.db");
    // Commits happen only when the simulated clock says so (flush), never on the wall clock.
    let cfg = StoreConfig {
        path: path.clone(),
        commit_interval: std::time::Duration::from_secs(3600),
        queue_batches: 16_384,
        durability,
        ..StoreConfig::default()
    };
    // Registration is set-up, not measured: no fsync per device.
    let setup = Store::open(StoreConfig {
        durability: Durability::ProcessCrash,
        ..cfg.clone()
    })?;
    let mut ids = Vec::new();
    for i in 0..args.devices {
        ids.push(
            setup
                .add_device(&format!("device-{i:05}"), &format!("{i:064x}"))
                .await?,
        );
    }
    setup.close().await?;

    let store = Store::open(cfg)?;
    let mut devices: Vec<Device> = (0..args.devices).map(Device::new).collect();
    let commits_before = store.health().commits;
    let before = io()?;
    let started = Instant::now();
    let mut windows: VecDeque<(Ticket<()>, Vec<CommitTicket>)> = VecDeque::new();
    let mut current: Vec<CommitTicket> = Vec::new();
    let mut next_commit_ms = window_ms;
    let mut stored = 0u64;
    for second in 0..args.seconds {
        for (i, device) in devices.iter_mut().enumerate() {
            let arrival_ms = second * 1000 + i as i64 * 1000 / args.devices;
            if arrival_ms >= next_commit_ms {
                windows.push_back((store.flush(), std::mem::take(&mut current)));
                next_commit_ms += window_ms;
                // Two commits in flight: the next window is prepared while the last one syncs.
                while windows.len() > 2 {
                    stored += settle(windows.pop_front()).await?;
                }
            }
            let received_ms = T0 + arrival_ms;
            let batch = IncomingBatch {
                device_id: ids[i],
                boot_id: 1,
                seq: second as u32 + 1,
                time_source: TimeSource::Sntp,
                dropped: 0,
                points: device.batch(received_ms).into(),
                received_ms,
            };
            current.push(store.enqueue(batch).await?);
        }
    }
    windows.push_back((store.flush(), current));
    while let Some(w) = windows.pop_front() {
        stored += settle(Some(w)).await?;
    }
    let commits = store.health().commits - commits_before;
    store.close().await?;
    let elapsed_s = started.elapsed().as_secs_f64();
    let after = io()?;
    let readings = args.seconds as u64 * args.devices as u64 * READINGS_PER_BATCH;
    anyhow::ensure!(
        stored * READINGS_PER_BATCH == readings,
        "only {stored} batches were stored"
    );
    let conn = Connection::open(&path)?;
    let payload: i64 =
        conn.query_row("SELECT sum(length(payload)) FROM batches", [], |r| r.get(0))?;
    let started = Instant::now();
    let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
    let check_s = started.elapsed().as_secs_f64();
    let figures = Figures {
        layout,
        window_ms,
        seconds: args.seconds,
        readings,
        elapsed_s,
        written: after.write_bytes - before.write_bytes,
        wchar: after.wchar - before.wchar,
        disk: disk_bytes(&path),
        payload: Some(payload as u64),
        commits,
    };
    if window_ms == 1000 && durability == Durability::PowerLoss {
        let mb = std::fs::metadata(&path)?.len() as f64 / 1e6;
        eprintln!(
            "  quick_check of the {mb:.0} MB file: {check} in {check_s:.2} s ({:.0} MB/s, page cache warm)",
            mb / check_s
        );
    }
    drop(conn);
    if !args.keep {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(figures)
}

async fn settle(window: Option<(Ticket<()>, Vec<CommitTicket>)>) -> anyhow::Result<u64> {
    let Some((flush, tickets)) = window else {
        return Ok(0);
    };
    flush.await?;
    let mut stored = 0;
    for ticket in tickets {
        if let Committed::Stored { .. } = ticket.await? {
            stored += 1;
        }
    }
    Ok(stored)
}

/// The layout the store replaced: a row per reading, keyed (device, sensor, ts).
fn run_baseline(args: &Args, window_ms: i64) -> anyhow::Result<Figures> {
    let seconds = args.baseline_seconds.min(args.seconds);
    let dir = fresh_dir(&args.dir, &format!("baseline-{window_ms}ms"))?;
    let path = dir.join("rows.db");
    let mut conn = Connection::open(&path)?;
    conn.execute_batch(
        "PRAGMA page_size = 4096; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
         CREATE TABLE readings (device_id INTEGER NOT NULL, sensor INTEGER NOT NULL, ts_ms INTEGER NOT NULL,
             value REAL NOT NULL, time_source INTEGER NOT NULL, PRIMARY KEY (device_id, sensor, ts_ms)) WITHOUT ROWID;",
    )?;
    let mut devices: Vec<Device> = (0..args.devices).map(Device::new).collect();
    let before = io()?;
    let started = Instant::now();
    let mut commits = 0;
    let mut next_commit_ms = window_ms;
    let mut tx = conn.transaction()?;
    for second in 0..seconds {
        for (i, device) in devices.iter_mut().enumerate() {
            let arrival_ms = second * 1000 + i as i64 * 1000 / args.devices;
            if arrival_ms >= next_commit_ms {
                tx.commit()?;
                commits += 1;
                next_commit_ms += window_ms;
                tx = conn.transaction()?;
            }
            let mut insert =
                tx.prepare_cached("INSERT INTO readings VALUES (?1, ?2, ?3, ?4, 0)")?;
            for p in device.batch(T0 + arrival_ms) {
                insert.execute(params![i as i64 + 1, p.sensor, p.ts_ms, f64::from(p.value)])?;
            }
        }
    }
    tx.commit()?;
    commits += 1;
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    drop(conn);
    let elapsed_s = started.elapsed().as_secs_f64();
    let after = io()?;
    let figures = Figures {
        layout: "baseline: a row per reading",
        window_ms,
        seconds,
        readings: seconds as u64 * args.devices as u64 * READINGS_PER_BATCH,
        elapsed_s,
        written: after.write_bytes - before.write_bytes,
        wchar: after.wchar - before.wchar,
        disk: disk_bytes(&path),
        payload: None,
        commits,
    };
    if !args.keep {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(figures)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    std::fs::create_dir_all(&args.dir)?;
    let runtime = tokio::runtime::Runtime::new()?;
    println!(
        "{} devices x {READINGS_PER_BATCH} readings/s, arrival order; commits every W ms of simulated time; files in {}",
        args.devices,
        args.dir.display()
    );
    println!(
        "{:<34} {:>5} {:>5} {:>11} {:>8} {:>11} {:>10} {:>9} {:>8} {:>8} {:>8}",
        "layout",
        "W ms",
        "sim s",
        "readings",
        "wall s",
        "readings/s",
        "written/rd",
        "wchar/rd",
        "disk/rd",
        "payl/rd",
        "commits"
    );
    let mut store_runs = Vec::new();
    for window_ms in [10, 100, 1000] {
        let f = runtime.block_on(run_store(
            &args,
            window_ms,
            Durability::PowerLoss,
            "store: batch rows (sync FULL)",
        ))?;
        f.print();
        store_runs.push(f);
    }
    for window_ms in [10, 1000] {
        runtime
            .block_on(run_store(
                &args,
                window_ms,
                Durability::ProcessCrash,
                "store: batch rows (sync NORMAL)",
            ))?
            .print();
    }
    if args.baseline_seconds > 0 {
        for (window_ms, store) in [10, 100, 1000].into_iter().zip(&store_runs) {
            let base = run_baseline(&args, window_ms)?;
            base.print();
            println!(
                "  W = {window_ms} ms: the store writes {:.0}x fewer bytes per reading than the baseline ({} vs {} simulated s)",
                base.per_reading(base.written)
                    / store.per_reading(store.written).max(f64::MIN_POSITIVE),
                store.seconds,
                base.seconds
            );
        }
    }
    if !args.keep {
        let _ = std::fs::remove_dir(&args.dir);
    }
    Ok(())
}
