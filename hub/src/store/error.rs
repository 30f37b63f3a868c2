//! The store's errors. Each says what went wrong, with the numbers, and where the user has
//! something to do (a damaged file), what.

use std::path::PathBuf;

use thiserror::Error;

use super::DeviceId;

#[derive(Debug, Error)]
pub enum StoreError {
    /// The file is not a healthy SQLite database. Nothing was written to it.
    #[error(
        "database {path} is damaged ({detail}). The hub did not change it and will not start on it. \
         Stop the hub, move the file aside together with its -wal and -shm files (keep them: \
         `sqlite3 {path} .recover` may save most readings), then restore a backup or start with a new file."
    )]
    Corrupt { path: PathBuf, detail: String },

    /// The file was written by a newer hub.
    #[error(
        "database {path} has schema version {found}; this hub knows versions up to {known}: run the newer hub"
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: usize,
    },

    /// The file is a SQLite database of something else.
    #[error(
        "database {path} is not a hub database (it has tables but no hub schema version); pass another --db"
    )]
    Foreign { path: PathBuf },

    /// A batch that breaks the store's rules (the handler's validation keeps these out).
    #[error("invalid batch: {0}")]
    InvalidBatch(&'static str),

    /// A batch or request for a device id that is not registered.
    #[error("unknown device id {0}")]
    UnknownDevice(DeviceId),

    #[error("a device named {0:?} already exists")]
    DuplicateName(String),

    #[error("another device already has this token")]
    DuplicateToken,

    #[error("invalid device name {name:?}: {why}")]
    InvalidName { name: String, why: &'static str },

    #[error("no device named {0:?}")]
    DeviceNotFound(String),

    #[error("a user named {0:?} already exists (change the password with `hub user passwd`)")]
    UserExists(String),

    #[error("no user named {0:?}")]
    UserNotFound(String),

    /// A query beyond a limit (see the constants in `store::read`).
    #[error("query too large: {what} is {requested}, the limit is {max}")]
    QueryTooLarge {
        what: &'static str,
        requested: i64,
        max: i64,
    },

    /// The store was closed; the batch was not committed (the device keeps and resends it).
    #[error("the store is closed")]
    Closed,

    /// A commit failed for good (not a full disk or a lock, which are retried); the batches of
    /// that transaction are not stored and not acked.
    #[error("commit failed: {0}")]
    CommitFailed(String),

    #[error("internal store error: {0}")]
    Internal(String),

    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),

    #[error("unexpected value in the database: {0}")]
    Value(#[from] rusqlite::types::FromSqlError),

    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
