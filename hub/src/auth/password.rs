//! Passwords: argon2id (RFC 9106, the `argon2` crate's defaults: 19 MiB, 2 passes), stored as
//! a PHC string. A check costs tens of milliseconds of CPU on purpose, so it runs on the
//! blocking pool and at most [`MAX_CONCURRENT_CHECKS`] run at once: a flood of logins slows
//! logins, not the ingest.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tokio::sync::Semaphore;

/// Shortest password `hub user add` accepts.
pub const MIN_PASSWORD_LEN: usize = 8;
/// Longest password accepted anywhere (argon2 takes any length; a megabyte "password" is an
/// attack on the CPU, not a password).
pub const MAX_PASSWORD_LEN: usize = 256;
/// Password checks running at once.
pub const MAX_CONCURRENT_CHECKS: usize = 2;

static CHECKS: Semaphore = Semaphore::const_new(MAX_CONCURRENT_CHECKS);

/// A hash checked when the user name is unknown, so that a wrong name costs as long as a wrong
/// password and timing tells nobody which names exist.
static DUMMY: LazyLock<String> =
    LazyLock::new(|| hash("not a password of anyone").unwrap_or_default());

/// Why a password cannot be set.
pub fn check_new(password: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        password.chars().count() >= MIN_PASSWORD_LEN,
        "the password must have at least {MIN_PASSWORD_LEN} characters"
    );
    anyhow::ensure!(
        password.len() <= MAX_PASSWORD_LEN,
        "the password must have at most {MAX_PASSWORD_LEN} bytes"
    );
    Ok(())
}

/// The PHC string of `password` with a fresh random salt.
pub fn hash(password: &str) -> anyhow::Result<String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| anyhow::anyhow!("no randomness for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| anyhow::anyhow!("salt: {e}"))?;
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing the password: {e}"))?
        .to_string())
}

/// Whether `password` matches `phc` (a stored hash; `None` for an unknown user, checked against
/// a dummy hash all the same). A damaged stored hash never matches.
pub async fn verify(password: String, phc: Option<String>) -> bool {
    if password.len() > MAX_PASSWORD_LEN {
        return false;
    }
    let Ok(_slot) = CHECKS.acquire().await else {
        return false;
    };
    tokio::task::spawn_blocking(move || {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| DUMMY.clone());
        let Ok(parsed) = PasswordHash::new(&phc) else {
            return false;
        };
        let ok = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        ok && known
    })
    .await
    .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn right_password_matches_wrong_one_and_damaged_hash_do_not() {
        let phc = hash("correct horse").unwrap();
        assert!(phc.starts_with("$argon2id$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        assert_ne!(phc, hash("correct horse").unwrap(), "salted");
        assert!(verify("correct horse".into(), Some(phc.clone())).await);
        assert!(!verify("correct horsE".into(), Some(phc.clone())).await);
        assert!(!verify("correct horse".into(), Some("$argon2id$garbage".into())).await);
        assert!(
            !verify("not a password of anyone".into(), None).await,
            "unknown user"
        );
        assert!(!verify("x".repeat(MAX_PASSWORD_LEN + 1), Some(phc)).await);
    }

    #[test]
    fn new_passwords_have_a_sane_length() {
        assert!(check_new("short").is_err());
        assert!(check_new("long enough").is_ok());
        assert!(check_new(&"x".repeat(MAX_PASSWORD_LEN + 1)).is_err());
    }
}
