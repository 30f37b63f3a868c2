//! [`GroupCommit`]: the writer thread. It owns the only connection that writes batches.
//!
//! It gathers the batches that arrive within `commit_interval` of the first one, stores them
//! in one transaction, and only then answers each of them (the ack). While it gathers, it
//! sleeps until the group's deadline and batches wait in the channel without waking it (a
//! wake-up per batch cost the hub a futex call and two context switches per batch); the first
//! batch of a group, a group reaching half the queue, a flush and shutdown wake it
//! ([`super::Store`] unparks the thread). A group that reaches half
//! the queue commits at once: waiting longer could not make it much bigger (the queue holds
//! every uncommitted batch) and would only leave devices unread, so under a load above what
//! the queue holds per interval the hub commits more often instead of stalling (measured in
//! `docs/performance.md`). A commit that fails (disk full, database locked by another program,
//! I/O error) is retried with a growing pause and the same batches; meanwhile nothing is acked,
//! nothing is dropped, and the bounded queue in front of the writer fills up, so
//! `Store::enqueue` waits and devices are read no further.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, TransactionBehavior};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use super::ingest::{self, PreparedBatch};
use super::rollup::{OpenRollups, RollupPlan};
use super::{Committed, Health, StoreError};

/// First pause after a failed commit; it doubles up to [`RETRY_MAX_PAUSE`].
const RETRY_FIRST_PAUSE: Duration = Duration::from_millis(10);
/// Longest pause between two attempts of the same commit.
const RETRY_MAX_PAUSE: Duration = Duration::from_secs(2);
/// Attempts of a commit failing with an error that waiting does not cure (a bug, a damaged
/// page) before its batches are answered with an error (not acked; devices resend them).
const PERMANENT_FAILURE_ATTEMPTS: u32 = 3;
/// Attempts of a failing commit once shutdown has begun, before giving up (not acking).
const SHUTDOWN_ATTEMPTS: u32 = 5;

/// What the store's handles send to the writer.
pub enum Command {
    Batch(Queued),
    /// Commit what is gathered now.
    Flush(oneshot::Sender<Result<(), StoreError>>),
    /// Commit, write every open roll-up bucket, checkpoint, stop.
    Shutdown(oneshot::Sender<Result<(), StoreError>>),
}

/// A batch waiting for its commit. Its permit is one place in the bounded queue, given back
/// when the batch has been answered.
pub struct Queued {
    pub batch: PreparedBatch,
    pub reply: oneshot::Sender<Result<Committed, StoreError>>,
    pub _permit: OwnedSemaphorePermit,
}

/// Each batch's answer, in the group's order.
type Answers = Vec<Result<Committed, StoreError>>;

pub struct GroupCommit {
    conn: Connection,
    rx: Receiver<Command>,
    interval: Duration,
    /// Loaded by the first commit that holds batches. A store that never ingests (the CLI
    /// beside a running hub) never owns the open roll-up buckets, so it can neither write
    /// them twice nor move the watermarks under the hub's feet.
    rollups: Option<OpenRollups>,
    health: Arc<Mutex<Health>>,
    shutting_down: Arc<AtomicBool>,
    permits: Arc<Semaphore>,
    /// A group this large commits without waiting for the interval (half the queue).
    max_group: usize,
}

impl GroupCommit {
    pub fn new(
        max_group: usize,
        conn: Connection,
        rx: Receiver<Command>,
        interval: Duration,
        health: Arc<Mutex<Health>>,
        shutting_down: Arc<AtomicBool>,
        permits: Arc<Semaphore>,
    ) -> GroupCommit {
        GroupCommit {
            conn,
            rx,
            interval,
            rollups: None,
            health,
            shutting_down,
            permits,
            max_group,
        }
    }

    /// The thread's body: gather, commit, answer, until shutdown or every handle is gone.
    pub fn run(mut self) {
        let mut group: Vec<Queued> = Vec::new();
        let mut deadline: Option<Instant> = None;
        loop {
            if group.len() >= self.max_group {
                let _ = self.commit(&mut group, false);
                deadline = None;
            }
            // `None`: every handle is gone.
            let received = match deadline {
                // Nothing gathered: block until the first batch (or command) arrives.
                None => self.rx.recv().ok(),
                // Gathering: everything already queued joins the group first (the channel
                // holds at most the queue's permits, so this ends), then the deadline.
                Some(d) => match self.rx.try_recv() {
                    Err(TryRecvError::Empty) => {
                        let now = Instant::now();
                        if now >= d {
                            let _ = self.commit(&mut group, false);
                            deadline = None;
                        } else {
                            // Woken early by `Store` (half the queue, flush, shutdown).
                            std::thread::park_timeout(d - now);
                        }
                        continue;
                    }
                    Ok(command) => Some(command),
                    Err(TryRecvError::Disconnected) => None,
                },
            };
            match received {
                Some(Command::Batch(queued)) => {
                    deadline.get_or_insert_with(|| Instant::now() + self.interval);
                    group.push(queued);
                }
                Some(Command::Flush(reply)) => {
                    let _ = reply.send(self.commit(&mut group, false));
                    deadline = None;
                }
                Some(Command::Shutdown(reply)) => {
                    let _ = reply.send(self.shutdown(&mut group));
                    return;
                }
                None => {
                    // Every handle was dropped without `close`: finish the same way, unwaited
                    // (noticed once everything queued has joined the group).
                    self.shutting_down.store(true, Ordering::SeqCst);
                    if let Err(e) = self.shutdown(&mut group) {
                        tracing::error!(error = %e, "store shutdown after the last handle was dropped failed");
                    }
                    return;
                }
            }
        }
    }

    fn shutdown(&mut self, group: &mut Vec<Queued>) -> Result<(), StoreError> {
        let committed = self.commit(group, true);
        self.permits.close();
        let checkpoint = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            });
        match checkpoint {
            Ok((0, _, _)) => {
                tracing::info!("store closed: WAL checkpointed into the database file")
            }
            Ok((_, log, done)) => tracing::warn!(
                wal_pages = log,
                checkpointed = done,
                "store closed; a reader kept the WAL from being fully checkpointed"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "store closed; WAL checkpoint failed (the WAL is replayed on next open)")
            }
        }
        committed
    }

    /// Commit `group` (and, with `close_all`, every open roll-up bucket), retrying until it
    /// lands or cannot; then answer every batch in it.
    fn commit(&mut self, group: &mut Vec<Queued>, close_all: bool) -> Result<(), StoreError> {
        if group.is_empty() && (!close_all || self.rollups.is_none()) {
            return Ok(());
        }
        let mut attempts = 0u32;
        let mut pause = RETRY_FIRST_PAUSE;
        loop {
            match self.try_commit(group, close_all) {
                Ok((answers, plan)) => {
                    if let (Some(rollups), Some(plan)) = (self.rollups.as_mut(), plan) {
                        rollups.apply(plan);
                    }
                    {
                        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
                        health.commits += 1;
                        health.writable = true;
                    }
                    tracing::trace!(batches = group.len(), "group committed");
                    for (queued, answer) in group.drain(..).zip(answers) {
                        let _ = queued.reply.send(answer);
                    }
                    return Ok(());
                }
                Err(e) => {
                    attempts += 1;
                    let transient = is_transient(&e);
                    {
                        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
                        health.failed_commits += 1;
                        health.writable = false;
                        health.last_error = Some(e.to_string());
                    }
                    tracing::error!(error = %e, attempts, batches = group.len(), transient, "commit failed; its batches wait, unacked");
                    let give_up = if transient {
                        self.shutting_down.load(Ordering::SeqCst) && attempts >= SHUTDOWN_ATTEMPTS
                    } else {
                        attempts >= PERMANENT_FAILURE_ATTEMPTS
                    };
                    if give_up {
                        let message = e.to_string();
                        for queued in group.drain(..) {
                            let _ = queued
                                .reply
                                .send(Err(StoreError::CommitFailed(message.clone())));
                        }
                        return Err(StoreError::CommitFailed(message));
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(RETRY_MAX_PAUSE);
                }
            }
        }
    }

    /// One attempt: everything in one transaction. Nothing in memory changes unless it commits.
    fn try_commit(
        &mut self,
        group: &[Queued],
        close_all: bool,
    ) -> Result<(Answers, Option<RollupPlan>), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if self.rollups.is_none() && !group.is_empty() {
            // Inside the write lock: the state loaded is the state this commit builds on.
            self.rollups = Some(OpenRollups::load(&tx)?);
        }
        let mut answers = Vec::with_capacity(group.len());
        for queued in group {
            answers.push(ingest::store_batch(&tx, &queued.batch)?);
        }
        let plan = match &self.rollups {
            Some(rollups) => {
                let stored = group
                    .iter()
                    .zip(&answers)
                    .filter(|(_, a)| matches!(a, Ok(Committed::Stored { .. })))
                    .map(|(q, _)| &q.batch);
                let max_received = group
                    .iter()
                    .map(|q| q.batch.received_ms)
                    .max()
                    .unwrap_or(i64::MIN);
                let plan = rollups.plan(stored, max_received, close_all);
                rollups.write(&tx, &plan)?;
                Some(plan)
            }
            None => None,
        };
        tx.commit()?;
        Ok((answers, plan))
    }
}

/// Errors that waiting cures: a full disk someone cleans up, a lock someone releases.
fn is_transient(e: &StoreError) -> bool {
    let StoreError::Sqlite(e) = e else {
        return false;
    };
    matches!(
        e.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::SystemIoFailure
                | ErrorCode::OutOfMemory
                | ErrorCode::CannotOpen
        )
    )
}
