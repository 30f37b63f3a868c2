//! Devices: registration (name and token hash), revocation, what their last Hello said.
//!
//! These writes are rare and small, so they run as short transactions on their own connection
//! beside the writer thread (waiting at most `busy_timeout` for one of its commits) instead of
//! waiting for the next group commit: `add_device` returns the new id at once, and a CLI in
//! another process does exactly the same. Lookups run on the read-only connections.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::{Deserialize, Serialize};

use super::{DeviceId, Inner, Store, StoreError};

/// Longest device name, in bytes.
pub const MAX_DEVICE_NAME_LEN: usize = 64;

/// A registered device as the API and the auth layer see it (never its token hash).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeviceRecord {
    pub id: DeviceId,
    pub name: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    /// `revoked_at_ms.is_some()`: a revoked device is refused at the upgrade.
    pub revoked: bool,
    /// From the last Hello (None before the first).
    pub firmware: Option<String>,
    pub boot_id: Option<u32>,
    pub reset_reason: Option<String>,
    pub sensors: Vec<SensorInfo>,
    /// The later of its last Hello and its last stored batch.
    pub last_seen_ms: Option<i64>,
}

/// A sensor as declared in Hello; stored as JSON in `devices.sensors_json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SensorInfo {
    pub id: u8,
    /// `temperature`, `humidity`, `pressure`, `battery`, `voltage`, `current`, `light`, `co2`, `other`.
    pub kind: String,
    pub unit: String,
}

const SELECT_DEVICE: &str = "SELECT d.id, d.name, d.created_at_ms, d.revoked_at_ms, d.firmware, d.boot_id, d.reset_reason, \
     d.sensors_json, d.last_hello_ms, c.last_received_ms FROM devices d LEFT JOIN cursors c ON c.device_id = d.id";

fn device_from_row(row: &Row<'_>) -> rusqlite::Result<DeviceRecord> {
    let revoked_at_ms: Option<i64> = row.get(3)?;
    let sensors_json: Option<String> = row.get(7)?;
    let last_hello: Option<i64> = row.get(8)?;
    let last_batch: Option<i64> = row.get(9)?;
    Ok(DeviceRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        created_at_ms: row.get(2)?,
        revoked_at_ms,
        revoked: revoked_at_ms.is_some(),
        firmware: row.get(4)?,
        boot_id: row.get(5)?,
        reset_reason: row.get(6)?,
        sensors: sensors_json
            .and_then(|j| serde_json::from_str(&j).ok())
            .unwrap_or_default(),
        last_seen_ms: last_hello.max(last_batch),
    })
}

/// `PowerOn` -> `power_on`: enum names as the JSON and CSV spell them.
fn snake_case(debug_name: &str) -> String {
    let mut out = String::with_capacity(debug_name.len() + 4);
    for (i, c) in debug_name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

fn check_name(name: &str) -> Result<(), StoreError> {
    let why = if name.trim().is_empty() {
        "it is empty"
    } else if name.len() > MAX_DEVICE_NAME_LEN {
        "it is longer than 64 bytes"
    } else if name.chars().any(char::is_control) {
        "it contains control characters"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidName {
        name: name.to_owned(),
        why,
    })
}

fn add(
    conn: &mut Connection,
    name: &str,
    token_hash: &str,
    now_ms: i64,
) -> Result<DeviceId, StoreError> {
    check_name(name)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let inserted = tx.execute(
        "INSERT INTO devices (name, token_hash, created_at_ms) VALUES (?1, ?2, ?3)",
        params![name, token_hash, now_ms],
    );
    match &inserted {
        Err(rusqlite::Error::SqliteFailure(e, Some(msg)))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            return Err(if msg.contains("devices.name") {
                StoreError::DuplicateName(name.to_owned())
            } else {
                StoreError::DuplicateToken
            });
        }
        _ => {}
    }
    inserted?;
    let id = tx.last_insert_rowid();
    tx.execute("INSERT INTO cursors (device_id) VALUES (?1)", [id])?;
    tx.commit()?;
    Ok(id)
}

/// Give the device `name` this token hash (and clear a revocation), registering it if new.
fn set_token(
    conn: &mut Connection,
    name: &str,
    token_hash: &str,
    now_ms: i64,
) -> Result<DeviceId, StoreError> {
    check_name(name)?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let upserted = tx.execute(
        "INSERT INTO devices (name, token_hash, created_at_ms) VALUES (?1, ?2, ?3) \
         ON CONFLICT (name) DO UPDATE SET token_hash = excluded.token_hash, revoked_at_ms = NULL",
        params![name, token_hash, now_ms],
    );
    match &upserted {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            return Err(StoreError::DuplicateToken);
        }
        _ => {}
    }
    upserted?;
    let id: DeviceId = tx.query_row("SELECT id FROM devices WHERE name = ?1", [name], |r| {
        r.get(0)
    })?;
    tx.execute(
        "INSERT OR IGNORE INTO cursors (device_id) VALUES (?1)",
        [id],
    )?;
    tx.commit()?;
    Ok(id)
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Inner {
    pub(super) fn with_admin<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = self.admin.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut conn)
    }
}

impl Store {
    /// Register a device under a unique name with the hash of its token (hex SHA-256, computed
    /// by the auth layer). Errors: [`StoreError::DuplicateName`], [`StoreError::DuplicateToken`],
    /// [`StoreError::InvalidName`].
    pub async fn add_device(&self, name: &str, token_hash: &str) -> Result<DeviceId, StoreError> {
        let (name, token_hash) = (name.to_owned(), token_hash.to_owned());
        self.blocking(move |inner| inner.with_admin(|conn| add(conn, &name, &token_hash, now_ms())))
            .await
    }

    /// Give the device `name` a new token hash, registering it if it is new and clearing a
    /// revocation if not (the demo re-keys its devices at every start). Its id, data and
    /// cursor stay.
    pub async fn set_device_token(
        &self,
        name: &str,
        token_hash: &str,
    ) -> Result<DeviceId, StoreError> {
        let (name, token_hash) = (name.to_owned(), token_hash.to_owned());
        self.blocking(move |inner| {
            inner.with_admin(|conn| set_token(conn, &name, &token_hash, now_ms()))
        })
        .await
    }

    /// Ids of every revoked device (the server closes their open connections).
    pub async fn revoked_device_ids(&self) -> Result<Vec<DeviceId>, StoreError> {
        self.blocking(|inner| {
            inner.readers.with(|conn| {
                let mut stmt =
                    conn.prepare_cached("SELECT id FROM devices WHERE revoked_at_ms IS NOT NULL")?;
                let ids = stmt.query_map([], |r| r.get(0))?;
                Ok(ids.collect::<Result<Vec<_>, _>>()?)
            })
        })
        .await
    }

    /// Revoke a device's token from now on. Revoking a revoked device changes nothing.
    pub async fn revoke_device(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.blocking(move |inner| {
            inner.with_admin(|conn| {
                let changed = conn.execute("UPDATE devices SET revoked_at_ms = coalesce(revoked_at_ms, ?2) WHERE name = ?1", params![name, now_ms()])?;
                if changed == 0 { Err(StoreError::DeviceNotFound(name)) } else { Ok(()) }
            })
        })
        .await
    }

    /// Keep what a device's Hello says (firmware, boot, reset reason, sensors) and when.
    pub async fn record_hello(
        &self,
        device: DeviceId,
        hello: &shared::Hello,
        at_ms: i64,
    ) -> Result<(), StoreError> {
        let sensors: Vec<SensorInfo> = hello
            .sensors
            .iter()
            .map(|s| SensorInfo {
                id: s.id,
                kind: snake_case(&format!("{:?}", s.kind)),
                unit: s.unit.as_str().to_owned(),
            })
            .collect();
        let sensors_json =
            serde_json::to_string(&sensors).map_err(|e| StoreError::Internal(e.to_string()))?;
        let firmware = hello.firmware.as_str().to_owned();
        let reset_reason = snake_case(&format!("{:?}", hello.reset_reason));
        let boot_id = hello.boot_id;
        self.blocking(move |inner| {
            inner.with_admin(|conn| {
                let changed = conn.execute(
                    "UPDATE devices SET firmware = ?2, boot_id = ?3, reset_reason = ?4, sensors_json = ?5, last_hello_ms = ?6 WHERE id = ?1",
                    params![device, firmware, boot_id, reset_reason, sensors_json, at_ms],
                )?;
                if changed == 0 { Err(StoreError::UnknownDevice(device)) } else { Ok(()) }
            })
        })
        .await
    }

    /// The device whose token hashes to `token_hash`, revoked or not.
    pub async fn device_by_token_hash(
        &self,
        token_hash: &str,
    ) -> Result<Option<DeviceRecord>, StoreError> {
        let token_hash = token_hash.to_owned();
        self.blocking(move |inner| {
            inner.readers.with(|conn| {
                Ok(conn
                    .query_row(
                        &format!("{SELECT_DEVICE} WHERE d.token_hash = ?1"),
                        [token_hash],
                        device_from_row,
                    )
                    .optional()?)
            })
        })
        .await
    }

    /// The device named `name`, revoked or not.
    pub async fn device_by_name(&self, name: &str) -> Result<Option<DeviceRecord>, StoreError> {
        let name = name.to_owned();
        self.blocking(move |inner| {
            inner.readers.with(|conn| {
                Ok(conn
                    .query_row(
                        &format!("{SELECT_DEVICE} WHERE d.name = ?1"),
                        [name],
                        device_from_row,
                    )
                    .optional()?)
            })
        })
        .await
    }

    /// Every registered device, by name.
    pub async fn list_devices(&self) -> Result<Vec<DeviceRecord>, StoreError> {
        self.blocking(|inner| {
            inner.readers.with(|conn| {
                let mut stmt = conn.prepare_cached(&format!("{SELECT_DEVICE} ORDER BY d.name"))?;
                let rows = stmt.query_map([], device_from_row)?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
        })
        .await
    }

    /// The highest seq stored for this device and boot (the Welcome's `stored_seq`), `None`
    /// when nothing of this boot is stored.
    pub async fn cursor(&self, device: DeviceId, boot_id: u32) -> Result<Option<u32>, StoreError> {
        self.blocking(move |inner| {
            inner.readers.with(|conn| {
                let current: Option<(Option<u32>, u32)> = conn
                    .prepare_cached("SELECT boot_id, last_seq FROM cursors WHERE device_id = ?1")?
                    .query_row([device], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                if let Some((_, last_seq)) = current.filter(|(boot, _)| *boot == Some(boot_id)) {
                    return Ok(Some(last_seq));
                }
                Ok(conn
                    .prepare_cached(
                        "SELECT last_seq FROM boots WHERE device_id = ?1 AND boot_id = ?2",
                    )?
                    .query_row(params![device, boot_id], |r| r.get(0))
                    .optional()?)
            })
        })
        .await
    }
}
