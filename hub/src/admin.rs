//! What the CLI does besides serving: register, list and revoke devices, export CSV. Each
//! opens the database the way the hub does (WAL, so it works beside a running hub).

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use crate::auth;
use crate::store::{Store, StoreConfig};
use crate::time::unix_ms;

fn open(db: &Path) -> anyhow::Result<Store> {
    Store::open(StoreConfig {
        path: db.to_path_buf(),
        ..StoreConfig::default()
    })
    .with_context(|| format!("opening {}", db.display()))
}

/// Register a device; returns its new token (shown once; only its hash is stored).
pub async fn add_device(db: &Path, name: &str) -> anyhow::Result<String> {
    let store = open(db)?;
    let token = auth::generate_token()?;
    let added = store.add_device(name, &auth::hash_token(&token)).await;
    store.close().await?;
    added?;
    Ok(token)
}

pub async fn list_devices(db: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let store = open(db)?;
    let devices = store.list_devices().await;
    store.close().await?;
    writeln!(
        out,
        "{:<24} {:<8} {:<20} {:<24} sensors",
        "name", "status", "firmware", "last seen"
    )?;
    for d in devices? {
        let status = if d.revoked { "revoked" } else { "active" };
        let last_seen = d
            .last_seen_ms
            .map(|t| format!("{}s ago", (unix_ms() - t).max(0) / 1000))
            .unwrap_or_else(|| "never".into());
        let sensors: Vec<String> = d
            .sensors
            .iter()
            .map(|s| format!("{}:{}[{}]", s.id, s.kind, s.unit))
            .collect();
        writeln!(
            out,
            "{:<24} {:<8} {:<20} {:<24} {}",
            d.name,
            status,
            d.firmware.as_deref().unwrap_or("-"),
            last_seen,
            sensors.join(" ")
        )?;
    }
    Ok(())
}

pub async fn revoke_device(db: &Path, name: &str) -> anyhow::Result<()> {
    let store = open(db)?;
    let revoked = store.revoke_device(name).await;
    store.close().await?;
    Ok(revoked?)
}

/// Add a user with an argon2id hash of `password`.
pub async fn add_user(db: &Path, name: &str, password: &str) -> anyhow::Result<()> {
    auth::password::check_new(password)?;
    let hash = auth::password::hash(password)?;
    let store = open(db)?;
    let added = store.add_user(name, &hash, unix_ms()).await;
    store.close().await?;
    added?;
    Ok(())
}

/// Change a user's password; their sessions end.
pub async fn set_password(db: &Path, name: &str, password: &str) -> anyhow::Result<()> {
    auth::password::check_new(password)?;
    let hash = auth::password::hash(password)?;
    let store = open(db)?;
    let changed = store.set_user_password(name, &hash).await;
    store.close().await?;
    Ok(changed?)
}

/// Remove a user; their sessions end.
pub async fn remove_user(db: &Path, name: &str) -> anyhow::Result<()> {
    let store = open(db)?;
    let removed = store.remove_user(name).await;
    store.close().await?;
    Ok(removed?)
}

pub async fn list_users(db: &Path, out: &mut impl Write) -> anyhow::Result<()> {
    let store = open(db)?;
    let users = store.list_users(unix_ms()).await;
    store.close().await?;
    writeln!(out, "{:<24} {:<10} created", "name", "sessions")?;
    for u in users? {
        writeln!(
            out,
            "{:<24} {:<10} {}",
            u.name,
            u.sessions,
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH
                    + std::time::Duration::from_millis(u.created_at_ms.max(0) as u64)
            )
        )?;
    }
    Ok(())
}

/// Write readings as CSV to `out` (a file) or standard output.
pub async fn export(
    db: &Path,
    from: Option<&str>,
    to: Option<&str>,
    device: Option<&str>,
    out: Option<&Path>,
) -> anyhow::Result<()> {
    let from_ms = from.map(parse_time).transpose()?.unwrap_or(0);
    let to_ms = to
        .map(parse_time)
        .transpose()?
        .unwrap_or_else(|| unix_ms() + 1);
    anyhow::ensure!(from_ms < to_ms, "--from must be before --to");
    let store = open(db)?;
    let device_id = match device {
        Some(name) => Some(
            store
                .device_by_name(name)
                .await?
                .with_context(|| format!("no device named {name:?}"))?
                .id,
        ),
        None => None,
    };
    let out = out.map(Path::to_path_buf);
    let reader = store.clone();
    let rows = tokio::task::spawn_blocking(move || -> anyhow::Result<u64> {
        match out {
            Some(path) => {
                let file = std::fs::File::create(&path)
                    .with_context(|| format!("creating {}", path.display()))?;
                Ok(reader.export_csv(from_ms, to_ms, device_id, file)?)
            }
            None => Ok(reader.export_csv(from_ms, to_ms, device_id, std::io::stdout().lock())?),
        }
    })
    .await?;
    store.close().await?;
    eprintln!("exported {} readings", rows?);
    Ok(())
}

/// Unix milliseconds, or an RFC 3339 time such as `2026-11-25T10:00:00Z`.
pub fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = humantime::parse_rfc3339_weak(s).with_context(|| {
        format!("{s:?} is neither Unix milliseconds nor an RFC 3339 time (2026-11-25T10:00:00Z)")
    })?;
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .context("time before 1970")?;
    Ok(d.as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_unix_ms_or_rfc3339() {
        assert_eq!(parse_time("1764000000000").unwrap(), 1_764_000_000_000);
        assert_eq!(
            parse_time("2025-11-24T16:00:00Z").unwrap(),
            1_764_000_000_000
        );
        assert!(parse_time("yesterday").is_err());
    }
}
