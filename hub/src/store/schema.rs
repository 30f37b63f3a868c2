//! Opening the database file: check it, set the pragmas, migrate it.
//!
//! The schema version is `PRAGMA user_version`: migration `i` (0-based) brings a file from
//! version `i` to `i + 1`. All pending migrations run in one transaction, so a file is either
//! at its old version or fully migrated. New migrations go at the end; old ones never change.
//!
//! A file that fails its integrity check is refused with [`StoreError::Corrupt`] before any
//! write (the journal mode, a migration) touches it: a damaged history is the user's to
//! rescue, never ours to wipe.

use std::path::Path;

use rusqlite::{Connection, ErrorCode, OpenFlags};

use super::{Durability, IntegrityCheck, StoreConfig, StoreError};

/// The migrations, in order. Column meanings are in `docs/storage.md`.
pub const MIGRATIONS: &[&str] = &[
    // v1: devices, batch rows, the exactly-once cursor.
    r#"
    CREATE TABLE devices (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        token_hash TEXT NOT NULL UNIQUE,     -- hex SHA-256 of the token; the token is never stored
        created_at_ms INTEGER NOT NULL,
        revoked_at_ms INTEGER,
        firmware TEXT,                       -- from the last Hello
        boot_id INTEGER,
        reset_reason TEXT,
        sensors_json TEXT,                   -- [{"id":0,"kind":"temperature","unit":"°C"}, ...]
        last_hello_ms INTEGER
    );
    -- One row per stored batch, appended in arrival order (rowid). Readings are in `payload`
    -- (shared::payload). `bucket` is the receiving second; `late` = 1 when the first reading
    -- was more than LATE_BATCH_MS old on arrival (then also in late_batches).
    CREATE TABLE batches (
        id INTEGER PRIMARY KEY,
        bucket INTEGER NOT NULL,
        device_id INTEGER NOT NULL,
        boot_id INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        time_source INTEGER NOT NULL,        -- 0 sntp, 1 hub, 2 uptime, 3 arrival
        late INTEGER NOT NULL,
        t_first_ms INTEGER NOT NULL,
        t_last_ms INTEGER NOT NULL,
        count INTEGER NOT NULL,
        payload BLOB NOT NULL
    );
    CREATE INDEX batches_by_bucket ON batches (bucket, device_id);
    CREATE TABLE late_batches (
        device_id INTEGER NOT NULL,
        t_first_ms INTEGER NOT NULL,
        batch_id INTEGER NOT NULL,
        t_last_ms INTEGER NOT NULL,
        PRIMARY KEY (device_id, t_first_ms, batch_id)
    ) WITHOUT ROWID;
    -- The exactly-once cursor of each device's current boot and its counters: one small row
    -- per device, updated in the transaction that stores its batches.
    CREATE TABLE cursors (
        device_id INTEGER PRIMARY KEY,
        boot_id INTEGER,
        last_seq INTEGER NOT NULL DEFAULT 0,
        boot_dropped INTEGER NOT NULL DEFAULT 0,
        dropped_before INTEGER NOT NULL DEFAULT 0,
        stored_readings INTEGER NOT NULL DEFAULT 0,
        stored_batches INTEGER NOT NULL DEFAULT 0,
        lost_batches INTEGER NOT NULL DEFAULT 0,
        first_ts_ms INTEGER,
        last_ts_ms INTEGER,
        last_received_ms INTEGER
    );
    -- Cursors of earlier boots, moved here when a device starts a new boot.
    CREATE TABLE boots (
        device_id INTEGER NOT NULL,
        boot_id INTEGER NOT NULL,
        last_seq INTEGER NOT NULL,
        dropped INTEGER NOT NULL,
        PRIMARY KEY (device_id, boot_id)
    ) WITHOUT ROWID;
    "#,
    // v2: roll-ups. Keyed time first, so closing a minute appends its rows at the end.
    r#"
    CREATE TABLE rollup_minute (
        minute_ms INTEGER NOT NULL,
        device_id INTEGER NOT NULL,
        sensor INTEGER NOT NULL,
        min_value REAL NOT NULL,
        max_value REAL NOT NULL,
        sum_value REAL NOT NULL,
        count INTEGER NOT NULL,
        mean_value REAL GENERATED ALWAYS AS (sum_value / count) VIRTUAL,
        PRIMARY KEY (minute_ms, device_id, sensor)
    ) WITHOUT ROWID;
    CREATE TABLE rollup_hour (
        hour_ms INTEGER NOT NULL,
        device_id INTEGER NOT NULL,
        sensor INTEGER NOT NULL,
        min_value REAL NOT NULL,
        max_value REAL NOT NULL,
        sum_value REAL NOT NULL,
        count INTEGER NOT NULL,
        mean_value REAL GENERATED ALWAYS AS (sum_value / count) VIRTUAL,
        PRIMARY KEY (hour_ms, device_id, sensor)
    ) WITHOUT ROWID;
    -- Minutes before minute_watermark_ms (hours before hour_watermark_ms) are complete in the
    -- tables; later ones live in the writer's memory and in the batch rows.
    CREATE TABLE rollup_state (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        minute_watermark_ms INTEGER NOT NULL,
        hour_watermark_ms INTEGER NOT NULL
    );
    INSERT INTO rollup_state VALUES (1, 0, 0);
    "#,
    // v3: people who may open the dashboard, and their login sessions.
    r#"
    CREATE TABLE users (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,         -- argon2id PHC string; the password is never stored
        created_at_ms INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        token_hash TEXT PRIMARY KEY,         -- hex SHA-256 of the cookie value
        user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        created_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX sessions_by_user ON sessions (user_id);
    "#,
];

/// Open the writer's connection: integrity check first, then pragmas and migrations.
pub fn open_writer(cfg: &StoreConfig) -> Result<Connection, StoreError> {
    let path = cfg.path.as_path();
    let conn = Connection::open(path)?;
    conn.busy_timeout(cfg.busy_timeout)?;
    check_integrity(&conn, path, cfg.integrity_check)?;
    // page_size only takes effect on a new file, and must come before WAL mode is set.
    conn.pragma_update(None, "page_size", 4096)?;
    let mode: String =
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Internal(format!(
            "could not switch {} to WAL mode (got {mode})",
            path.display()
        )));
    }
    set_connection_pragmas(&conn, cfg)?;
    // The WAL file is reused from its start after each checkpoint; this caps what it keeps
    // on disk after a burst.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    migrate(&conn, path).map_err(|e| corrupt_or(e, path))?;
    Ok(conn)
}

/// A second writing connection, for short device-management transactions.
pub fn open_admin(cfg: &StoreConfig) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        &cfg.path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(cfg.busy_timeout)?;
    set_connection_pragmas(&conn, cfg)?;
    // Point reads and writes of single rows (a Hello, a device added): a small page cache
    // serves them, and the default (2 MB) would fill with the devices table as every device
    // says Hello, memory that idle connections then seem to cost.
    conn.pragma_update(None, "cache_size", -256)?;
    Ok(conn)
}

/// A read-only connection for queries.
pub fn open_reader(
    path: &Path,
    busy_timeout: std::time::Duration,
) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(busy_timeout)?;
    Ok(conn)
}

fn set_connection_pragmas(conn: &Connection, cfg: &StoreConfig) -> Result<(), StoreError> {
    let synchronous = match cfg.durability {
        Durability::PowerLoss => "FULL",
        Durability::ProcessCrash => "NORMAL",
    };
    conn.pragma_update(None, "synchronous", synchronous)?;
    Ok(())
}

/// Refuse a damaged file before writing anything to it.
fn check_integrity(conn: &Connection, path: &Path, mode: IntegrityCheck) -> Result<(), StoreError> {
    // Reading the schema is the first read of the file: it fails on a file that is not a
    // database at all, whatever the mode.
    let _: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
        .map_err(|e| corrupt_or(e.into(), path))?;
    let pragma = match mode {
        IntegrityCheck::Quick => "quick_check",
        IntegrityCheck::Full => "integrity_check",
        IntegrityCheck::Skip => return Ok(()),
    };
    let mut problems = Vec::new();
    conn.pragma_query(None, pragma, |row| {
        let line: String = row.get(0)?;
        if line != "ok" && problems.len() < 5 {
            problems.push(line);
        }
        Ok(())
    })
    .map_err(|e| corrupt_or(e.into(), path))?;
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Corrupt {
            path: path.to_path_buf(),
            detail: format!("{pragma}: {}", problems.join("; ")),
        })
    }
}

/// SQLite's "this is not a database / it is damaged" errors become [`StoreError::Corrupt`].
fn corrupt_or(e: StoreError, path: &Path) -> StoreError {
    match &e {
        StoreError::Sqlite(err)
            if matches!(
                err.sqlite_error_code(),
                Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt)
            ) =>
        {
            StoreError::Corrupt {
                path: path.to_path_buf(),
                detail: err.to_string(),
            }
        }
        _ => e,
    }
}

/// Bring the file to the newest schema version, in one transaction.
pub fn migrate(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let known = MIGRATIONS.len();
    if version > known as i64 {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found: version,
            known,
        });
    }
    if version == known as i64 {
        return Ok(());
    }
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table'",
        [],
        |r| r.get(0),
    )?;
    if version == 0 && tables > 0 {
        return Err(StoreError::Foreign {
            path: path.to_path_buf(),
        });
    }
    let tx = conn.unchecked_transaction()?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        tx.execute_batch(sql).map_err(|e| {
            StoreError::Internal(format!("migration to schema v{} failed: {e}", i + 1))
        })?;
    }
    tx.pragma_update(None, "user_version", known as i64)?;
    tx.commit()?;
    tracing::info!(path = %path.display(), from = version, to = known, "database schema migrated");
    Ok(())
}

/// The schema version of an open connection.
pub fn user_version(conn: &Connection) -> Result<i64, StoreError> {
    Ok(conn.pragma_query_value(None, "user_version", |r| r.get(0))?)
}
