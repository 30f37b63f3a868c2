//! Item 4: idle device sockets held open by the load generator; hub RSS per connection above
//! the hub's own baseline (the same hub, same database, before any device connects).

use std::path::Path;
use std::time::Duration;

use crate::procs::{self, Bins, Load};

pub fn run(bins: &Bins, dir: &Path, devices: usize, hold_s: u64) -> anyhow::Result<()> {
    let (db, tokens) = procs::create_db(dir, "idle", devices, "idle")?;
    let port = procs::free_port()?;
    let hub = procs::start_hub(bins, &db, port, 1000, &dir.join("hub-idle.log"))?;
    std::thread::sleep(Duration::from_secs(2));
    let base = procs::sample(hub.pid())?;
    let load = Load {
        devices,
        rate: 0.0,
        batch: 32,
        window: 1,
        // Past one ping interval (10 s): every socket has been pinged and has answered.
        warmup_s: 12,
        duration_s: hold_s,
        idle: true,
    };
    let run = procs::start_load(bins, port, &tokens, &load)?;
    run.wait_for("LOAD_MEASURE_START", Duration::from_secs(300))?;
    let held = procs::sample(hub.pid())?;
    let gen_held = procs::sample(run.proc.pid())?;
    run.wait_for("LOAD_MEASURE_END", Duration::from_secs(hold_s + 60))?;
    let end = procs::sample(hub.pid())?;
    let result = run.result()?;
    hub.stop(Duration::from_secs(30))?;
    let connected = result["connected"].as_f64().unwrap_or(0.0).max(1.0);
    let per_conn = |s: &procs::ProcSample| (s.rss_kib as f64 - base.rss_kib as f64) / connected;
    println!(
        "idle: {} of {devices} device sockets held {hold_s} s; hub RSS {:.1} MiB before, {:.1} MiB held, {:.1} MiB at the end: \
         {:.2} KiB per connection at the start of the hold, {:.2} KiB at its end (target <= 4 KiB); \
         hub CPU while idle {:.3} cores; load generator {:.2} KiB per connection; {} reconnects [load {}]",
        result["connected"],
        base.rss_kib as f64 / 1024.0,
        held.rss_kib as f64 / 1024.0,
        end.rss_kib as f64 / 1024.0,
        per_conn(&held),
        per_conn(&end),
        (end.cpu_s - held.cpu_s) / hold_s.max(1) as f64,
        gen_held.rss_kib as f64 / connected,
        result["reconnects"],
        procs::load_average()
    );
    Ok(())
}
