//! People and their login sessions.
//!
//! A user is a name and an argon2id hash of the password (computed by `auth::password`; the
//! store never sees a password). A session is the SHA-256 of a random cookie value, its user
//! and its expiry: a stolen database holds no password and no usable cookie. Like device
//! registration these are rare, small writes on the admin connection; lookups (one per
//! request) run on the read-only connections.

use rusqlite::{Connection, OptionalExtension, params};

use super::{Inner, Store, StoreError};

/// Longest user name, in bytes.
pub const MAX_USER_NAME_LEN: usize = 64;

/// A user as `hub user list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub id: i64,
    pub name: String,
    pub created_at_ms: i64,
    /// Sessions not yet expired.
    pub sessions: u64,
}

fn check_user_name(name: &str) -> Result<(), StoreError> {
    let why = if name.trim().is_empty() {
        "it is empty"
    } else if name.len() > MAX_USER_NAME_LEN {
        "it is longer than 64 bytes"
    } else if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
        "it contains spaces or control characters"
    } else {
        return Ok(());
    };
    Err(StoreError::InvalidName {
        name: name.to_owned(),
        why,
    })
}

fn user_id(conn: &Connection, name: &str) -> Result<i64, StoreError> {
    conn.query_row("SELECT id FROM users WHERE name = ?1", [name], |r| r.get(0))
        .optional()?
        .ok_or_else(|| StoreError::UserNotFound(name.to_owned()))
}

impl Store {
    /// Register a user with the hash of their password. Errors: [`StoreError::UserExists`],
    /// [`StoreError::InvalidName`].
    pub async fn add_user(
        &self,
        name: &str,
        password_hash: &str,
        now_ms: i64,
    ) -> Result<i64, StoreError> {
        check_user_name(name)?;
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.blocking(move |inner: &Inner| {
            inner.with_admin(|conn| {
                let inserted = conn.execute(
                    "INSERT INTO users (name, password_hash, created_at_ms) VALUES (?1, ?2, ?3)",
                    params![name, hash, now_ms],
                );
                match inserted {
                    Err(rusqlite::Error::SqliteFailure(e, _))
                        if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                    {
                        Err(StoreError::UserExists(name))
                    }
                    Err(e) => Err(e.into()),
                    Ok(_) => Ok(conn.last_insert_rowid()),
                }
            })
        })
        .await
    }

    /// Replace a user's password hash and end all their sessions.
    pub async fn set_user_password(
        &self,
        name: &str,
        password_hash: &str,
    ) -> Result<(), StoreError> {
        let (name, hash) = (name.to_owned(), password_hash.to_owned());
        self.blocking(move |inner| {
            inner.with_admin(|conn| {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let id = user_id(&tx, &name)?;
                tx.execute(
                    "UPDATE users SET password_hash = ?2 WHERE id = ?1",
                    params![id, hash],
                )?;
                tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
                tx.commit()?;
                Ok(())
            })
        })
        .await
    }

    /// Remove a user and end all their sessions.
    pub async fn remove_user(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_owned();
        self.blocking(move |inner| {
            inner.with_admin(|conn| {
                let tx =
                    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                let id = user_id(&tx, &name)?;
                tx.execute("DELETE FROM sessions WHERE user_id = ?1", [id])?;
                tx.execute("DELETE FROM users WHERE id = ?1", [id])?;
                tx.commit()?;
                Ok(())
            })
        })
        .await
    }

    /// Every user, by name, with their live session count at `now_ms`.
    pub async fn list_users(&self, now_ms: i64) -> Result<Vec<UserRecord>, StoreError> {
        self.blocking(move |inner| {
            inner.with_admin(|conn| {
                let mut stmt = conn.prepare(
                    "SELECT u.id, u.name, u.created_at_ms,
                        (SELECT count(*) FROM sessions s WHERE s.user_id = u.id AND s.expires_at_ms > ?1)
                     FROM users u ORDER BY u.name",
                )?;
                let rows = stmt.query_map([now_ms], |r| {
                    Ok(UserRecord {
                        id: r.get(0)?,
                        name: r.get(1)?,
                        created_at_ms: r.get(2)?,
                        sessions: r.get::<_, i64>(3)?.max(0) as u64,
                    })
                })?;
                Ok(rows.collect::<Result<Vec<_>, _>>()?)
            })
        })
        .await
    }

    /// A user's id and password hash, for checking a login.
    pub async fn user_password_hash(
        &self,
        name: &str,
    ) -> Result<Option<(i64, String)>, StoreError> {
        let name = name.to_owned();
        self.blocking(move |inner| {
            inner.readers.with(|conn| {
                Ok(conn
                    .prepare_cached("SELECT id, password_hash FROM users WHERE name = ?1")?
                    .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?)
            })
        })
        .await
    }

    /// Start a session for `user_id` under the hash of its cookie value, valid until
    /// `expires_at_ms`. Expired sessions of every user are deleted in the same transaction, so
    /// the table holds only live ones.
    pub async fn create_session(
        &self,
        token_hash: &str,
        user_id: i64,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        let token_hash = token_hash.to_owned();
        self.blocking(move |inner| {
            inner.with_admin(|conn| {
                let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                tx.execute("DELETE FROM sessions WHERE expires_at_ms <= ?1", [now_ms])?;
                tx.execute(
                    "INSERT INTO sessions (token_hash, user_id, created_at_ms, expires_at_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![token_hash, user_id, now_ms, expires_at_ms],
                )?;
                tx.commit()?;
                Ok(())
            })
        })
        .await
    }

    /// The name of the user whose live session (not expired at `now_ms`) has this hash.
    pub async fn session_user(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let token_hash = token_hash.to_owned();
        self.blocking(move |inner| {
            inner.readers.with(|conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT u.name FROM sessions s JOIN users u ON u.id = s.user_id
                         WHERE s.token_hash = ?1 AND s.expires_at_ms > ?2",
                    )?
                    .query_row(params![token_hash, now_ms], |r| r.get(0))
                    .optional()?)
            })
        })
        .await
    }

    /// End a session (logout). Ending one that does not exist changes nothing.
    pub async fn delete_session(&self, token_hash: &str) -> Result<(), StoreError> {
        let token_hash = token_hash.to_owned();
        self.blocking(move |inner| {
            inner.with_admin(|conn| {
                conn.execute("DELETE FROM sessions WHERE token_hash = ?1", [token_hash])?;
                Ok(())
            })
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreConfig;

    fn store(dir: &tempfile::TempDir) -> Store {
        Store::open(StoreConfig {
            path: dir.path().join("users.db"),
            ..StoreConfig::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn sessions_live_until_expiry_logout_or_password_change() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let id = store.add_user("ada", "hash-1", 1_000).await.unwrap();
        assert!(matches!(
            store.add_user("ada", "hash-2", 1_000).await,
            Err(StoreError::UserExists(_))
        ));
        assert!(matches!(
            store.add_user("a da", "hash", 1_000).await,
            Err(StoreError::InvalidName { .. })
        ));
        assert_eq!(
            store.user_password_hash("ada").await.unwrap(),
            Some((id, "hash-1".to_owned()))
        );

        store.create_session("s1", id, 1_000, 5_000).await.unwrap();
        store.create_session("s2", id, 1_000, 9_000).await.unwrap();
        assert_eq!(
            store.session_user("s1", 4_999).await.unwrap().as_deref(),
            Some("ada")
        );
        assert_eq!(
            store.session_user("s1", 5_000).await.unwrap(),
            None,
            "expired"
        );
        assert_eq!(store.session_user("nope", 1_000).await.unwrap(), None);

        store.delete_session("s2").await.unwrap();
        assert_eq!(
            store.session_user("s2", 2_000).await.unwrap(),
            None,
            "logged out"
        );

        store.create_session("s3", id, 1_000, 9_000).await.unwrap();
        store.set_user_password("ada", "hash-3").await.unwrap();
        assert_eq!(
            store.session_user("s3", 2_000).await.unwrap(),
            None,
            "password changed"
        );

        store.create_session("s4", id, 1_000, 9_000).await.unwrap();
        assert_eq!(store.list_users(2_000).await.unwrap()[0].sessions, 1);
        store.remove_user("ada").await.unwrap();
        assert_eq!(
            store.session_user("s4", 2_000).await.unwrap(),
            None,
            "user removed"
        );
        assert!(matches!(
            store.remove_user("ada").await,
            Err(StoreError::UserNotFound(_))
        ));
        store.close().await.unwrap();
    }
}
