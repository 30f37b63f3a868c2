//! The SQLite store: batches in, acks out after commit; history, stats and CSV out.
//!
//! It knows nothing of WebSockets. One writer thread owns the only writing connection and does
//! group commit; queries run on a few read-only connections (WAL readers never wait for it).
//! The layout, the schema and the measured bytes written per reading are in `docs/storage.md`.
//!
//! Modules, in the order a batch flows through them:
//! - [`schema`]: opening a file: integrity check, pragmas, migrations by `user_version`.
//! - [`writer`]: [`GroupCommit`](writer::GroupCommit), the writer thread: one transaction per
//!   `commit_interval`, retried until it lands, then every batch in it is answered.
//! - [`ingest`]: what one transaction does with a batch: the exactly-once cursor, the row.
//! - [`rollup`]: per-minute and per-hour aggregates, open buckets in memory, closed ones
//!   written once, rebuilt from the batch rows after a crash.
//! - [`devices`]: device registration, tokens (hashes), Hello info.
//! - [`users`]: people (password hashes) and their login sessions (cookie hashes).
//! - [`read`]: the read-only connections and the queries: history, raw points, stats.
//! - [`export`]: streaming CSV.
//! - [`error`]: [`StoreError`], what went wrong and by how much.

pub mod devices;
pub mod error;
pub mod export;
pub mod ingest;
pub mod read;
pub mod rollup;
pub mod schema;
pub mod users;
pub mod writer;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use shared::payload::Point;
use tokio::sync::{Semaphore, oneshot};

pub use devices::{DeviceRecord, SensorInfo};
pub use error::StoreError;
pub use read::{Bucket, DeviceStats, History, RawPoint, Resolution};

use read::Readers;
use writer::{Command, GroupCommit, Queued};

/// A device's row id in `devices`.
pub type DeviceId = i64;

/// Receive-time bucket width of batch rows: the index `(bucket, device_id)` groups batches by
/// the second they arrived in, so each commit appends to the end of the index.
pub const BATCH_BUCKET_MS: i64 = 1000;

/// A batch whose first reading is older than this when it arrives is *late* (a backlog after a
/// reconnect, a sleepy device); it is also indexed by `(device, first reading time)` in
/// `late_batches`, so queries by reading time find it. Every other batch has its readings
/// within [received - LATE_BATCH_MS, received + MAX_FUTURE_SKEW_MS], which is what lets a
/// query by reading time search a bounded range of receive buckets.
pub const LATE_BATCH_MS: i64 = 2 * 60 * 1000;

/// Where a batch's timestamps come from; stored per batch row as the integer code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum TimeSource {
    /// 0: the device clock, set by SNTP.
    Sntp = 0,
    /// 1: the device clock, set from the hub's time (Welcome/Pong).
    HubSynced = 1,
    /// 2: device uptime, mapped to wall time by the hub with the Hello of the same boot.
    UptimeMapped = 2,
    /// 3: stamped by the hub on arrival (the device had no usable time).
    Arrival = 3,
}

impl TimeSource {
    /// The name used in CSV, JSON and the docs.
    pub fn as_str(self) -> &'static str {
        match self {
            TimeSource::Sntp => "sntp",
            TimeSource::HubSynced => "hub",
            TimeSource::UptimeMapped => "uptime",
            TimeSource::Arrival => "arrival",
        }
    }

    /// The integer stored in `batches.time_source`.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// The source for a stored code; `None` for a code this hub does not know.
    pub fn from_code(code: i64) -> Option<TimeSource> {
        match code {
            0 => Some(TimeSource::Sntp),
            1 => Some(TimeSource::HubSynced),
            2 => Some(TimeSource::UptimeMapped),
            3 => Some(TimeSource::Arrival),
            _ => None,
        }
    }
}

/// How much a commit survives. Both keep the database consistent; they differ in what an
/// acknowledged batch survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `synchronous=FULL`: the WAL is fsynced at every commit, so an ack survives power loss.
    PowerLoss,
    /// `synchronous=NORMAL`: an ack survives the hub being killed, not the box losing power.
    ProcessCrash,
}

/// How thoroughly [`Store::open`] checks the file before using it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntegrityCheck {
    /// `PRAGMA quick_check`: every page and record, not index contents. Reads the whole file.
    Quick,
    /// `PRAGMA integrity_check`: also that every index matches its table. Slower.
    Full,
    /// Only that the file is a SQLite database of this hub (for tools that must start at once).
    Skip,
}

/// The store's settings. `StoreConfig { path, ..StoreConfig::default() }` is the usual start.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// The database file (its `-wal` and `-shm` files sit beside it). Default `hub.db`.
    pub path: PathBuf,
    /// How long the writer gathers batches into one transaction. Default 1 s: every commit
    /// rewrites each page it touches twice (WAL, then checkpoint), so longer groups write fewer
    /// bytes per reading (an SD card lives longer); acks wait for it, live readings do not.
    pub commit_interval: Duration,
    /// Batches submitted and not yet committed, at most. Default 4,096 (four seconds of a
    /// thousand devices at one batch per second each). At the limit `enqueue` waits: that is
    /// how a slow disk stops the hub reading device sockets instead of filling its memory.
    pub queue_batches: usize,
    /// Default [`Durability::PowerLoss`]: "acked means on disk" must hold on a gateway whose
    /// power is pulled; with group commit it costs one fsync per `commit_interval`.
    pub durability: Durability,
    /// Default [`IntegrityCheck::Quick`]: a damaged file is refused before anything is written
    /// to it. It reads the whole file (see `docs/storage.md` for its time per GB).
    pub integrity_check: IntegrityCheck,
    /// How long a connection waits for another one's write lock (`busy_timeout`). Default 5 s:
    /// the writer's commits take milliseconds; a CLI writing at the same time waits for them.
    pub busy_timeout: Duration,
    /// Read-only connections kept for queries; more queries than this wait. Default 4.
    pub readers: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from("hub.db"),
            commit_interval: Duration::from_secs(1),
            queue_batches: 4096,
            durability: Durability::PowerLoss,
            integrity_check: IntegrityCheck::Quick,
            busy_timeout: Duration::from_secs(5),
            readers: 4,
        }
    }
}

/// One batch, as the connection handler hands it over: validated, timestamps absolute.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingBatch {
    pub device_id: DeviceId,
    pub boot_id: u32,
    /// 1, 2, 3... per boot.
    pub seq: u32,
    pub time_source: TimeSource,
    /// Readings this boot has dropped so far, as the device reports it (cumulative).
    pub dropped: u32,
    /// Absolute Unix-ms timestamps, at most `MAX_BATCH_SPAN_MS` apart, none after
    /// `received_ms + MAX_FUTURE_SKEW_MS`. Shared with the live view's event of the batch.
    pub points: Arc<[Point]>,
    /// The hub's clock when the batch arrived.
    pub received_ms: i64,
}

/// What a commit did with a batch. Both mean: ack it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Stored now. `gap` batches of this boot between the last stored one and this one never
    /// arrived; they are counted as lost.
    Stored { gap: u32 },
    /// Already stored (same device, boot, and a seq at or below the cursor): nothing stored.
    Duplicate,
}

/// The answer to a request the writer thread handles: resolves when it is done.
/// A [`CommitTicket`] resolves after the commit that holds its batch.
pub struct Ticket<T> {
    rx: oneshot::Receiver<Result<T, StoreError>>,
}

/// Resolves to what the commit holding the batch did with it.
pub type CommitTicket = Ticket<Committed>;

impl<T> Future for Ticket<T> {
    type Output = Result<T, StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        // A writer that went away without answering did not commit the batch.
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(StoreError::Closed)))
    }
}

/// The writer's state as health checks and `/metrics` see it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Health {
    /// False while commits fail (disk full, locked, I/O error): batches wait, nothing is acked.
    pub writable: bool,
    /// The last commit failure, kept after recovery for the operator.
    pub last_error: Option<String>,
    /// Transactions committed since open.
    pub commits: u64,
    /// Commit attempts that failed since open (each is retried).
    pub failed_commits: u64,
    /// Batches submitted and not yet answered.
    pub queued_batches: usize,
}

/// The handle to an open store. Cheap to clone; every clone talks to the same writer.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    commands: mpsc::Sender<Command>,
    permits: Arc<Semaphore>,
    queue_batches: usize,
    health: Arc<Mutex<Health>>,
    shutting_down: Arc<AtomicBool>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// The writer thread, to wake it when it must not wait for its group's deadline.
    writer_thread: std::thread::Thread,
    /// A group this large commits without waiting for the interval (the writer's own rule).
    max_group: usize,
    /// Short device-management writes (add, revoke, Hello), beside the writer thread.
    admin: Mutex<Connection>,
    readers: Readers,
}

impl Drop for Inner {
    /// The last handle went without `close`: the writer, perhaps asleep until its group's
    /// deadline, is woken to finish (commit what it holds) at once. The channel closes first,
    /// so the woken writer finds it closed rather than going back to sleep.
    fn drop(&mut self) {
        let (closed, _) = mpsc::channel();
        drop(std::mem::replace(&mut self.commands, closed));
        self.writer_thread.unpark();
    }
}

impl Store {
    /// Open (or create) the database: check it, migrate it, rebuild the open roll-up buckets,
    /// start the writer thread. A damaged file is refused, never rewritten.
    pub fn open(cfg: StoreConfig) -> Result<Store, StoreError> {
        let conn = schema::open_writer(&cfg)?;
        let admin = schema::open_admin(&cfg)?;
        let health = Arc::new(Mutex::new(Health {
            writable: true,
            ..Health::default()
        }));
        let permits = Arc::new(Semaphore::new(cfg.queue_batches.max(1)));
        let shutting_down = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let max_group = (cfg.queue_batches.max(1) / 2).max(1);
        let writer = GroupCommit::new(
            max_group,
            conn,
            rx,
            cfg.commit_interval,
            health.clone(),
            shutting_down.clone(),
            permits.clone(),
        );
        let handle = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                // Ahead of the sessions when the CPU is short (crate::priority).
                crate::priority::store();
                writer.run()
            })?;
        Ok(Store {
            inner: Arc::new(Inner {
                writer_thread: handle.thread().clone(),
                max_group,
                commands: tx,
                permits,
                queue_batches: cfg.queue_batches.max(1),
                health,
                shutting_down,
                writer: Mutex::new(Some(handle)),
                admin: Mutex::new(admin),
                readers: Readers::new(cfg.path.clone(), cfg.readers.max(1), cfg.busy_timeout),
            }),
        })
    }

    /// Queue a batch for the next commit. Waits while `queue_batches` batches are in flight
    /// (backpressure); then returns at once with a ticket that resolves after the commit.
    /// A connection can hold several tickets and ack in order.
    pub async fn enqueue(&self, batch: IncomingBatch) -> Result<CommitTicket, StoreError> {
        let batch = ingest::PreparedBatch::new(batch)?;
        let permit = self
            .inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Closed)?;
        let (reply, rx) = oneshot::channel();
        self.inner
            .commands
            .send(Command::Batch(Queued {
                batch,
                reply,
                _permit: permit,
            }))
            .map_err(|_| StoreError::Closed)?;
        // The writer sleeps until its group's deadline unless the group gets this large.
        if self.queued() >= self.inner.max_group {
            self.inner.writer_thread.unpark();
        }
        Ok(Ticket { rx })
    }

    /// Batches submitted and not yet answered.
    fn queued(&self) -> usize {
        self.inner
            .queue_batches
            .saturating_sub(self.inner.permits.available_permits())
    }

    /// Queue a batch and wait for its commit.
    pub async fn submit(&self, batch: IncomingBatch) -> Result<Committed, StoreError> {
        self.enqueue(batch).await?.await
    }

    /// Commit what is queued now instead of at the end of the interval. The request is sent
    /// before this returns; the ticket resolves after the commit.
    pub fn flush(&self) -> Ticket<()> {
        let (reply, rx) = oneshot::channel();
        // A closed writer drops `reply`, and the ticket then says `Closed`.
        let _ = self.inner.commands.send(Command::Flush(reply));
        self.inner.writer_thread.unpark();
        Ticket { rx }
    }

    /// Commit what is queued, write the open roll-up buckets, checkpoint the WAL into the
    /// database file (`wal_checkpoint(TRUNCATE)`) and stop the writer. Batches enqueued through
    /// other clones afterwards get [`StoreError::Closed`].
    ///
    /// Dropping every clone without calling this does the same in the background, unwaited.
    pub async fn close(self) -> Result<(), StoreError> {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        let (reply, rx) = oneshot::channel();
        let result = match self.inner.commands.send(Command::Shutdown(reply)) {
            Ok(()) => {
                self.inner.writer_thread.unpark();
                (Ticket { rx }).await
            }
            Err(_) => Err(StoreError::Closed),
        };
        let handle = self
            .inner
            .writer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(handle) = handle {
            // The writer has answered; it only has its connection left to close.
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
        result
    }

    /// The writer's state now.
    pub fn health(&self) -> Health {
        let mut health = self
            .inner
            .health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        health.queued_batches = self.queued();
        health
    }

    /// Run blocking database work off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| StoreError::Internal(format!("store task failed: {e}")))?
    }
}
