//! The `Origin` check for `/ws/live` and the login form.
//!
//! Browsers send cookies with WebSocket upgrades from any page, so without this check a page
//! on another site could open `/ws/live` with the user's session (cross-site WebSocket
//! hijacking). Browsers always send `Origin` on a WebSocket upgrade and a page cannot forge it;
//! the hub accepts only its own origin (the scheme it serves plus the `Host` the browser used)
//! and the origins configured with `--allow-origin`.

/// Why an origin was refused (the 403 body says it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Foreign(String),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Missing => write!(f, "an Origin header is required"),
            Refusal::Foreign(o) => write!(
                f,
                "origin {o:?} is not allowed (the hub's own origin and --allow-origin are)"
            ),
        }
    }
}

/// Check `origin` against `scheme://host` (the hub's own origin as this request reached it)
/// and the allow-list. Compared without case and without a trailing slash.
pub fn check(
    origin: Option<&str>,
    host: Option<&str>,
    tls: bool,
    allowed: &[String],
) -> Result<(), Refusal> {
    let origin = origin
        .map(str::trim)
        .filter(|o| !o.is_empty())
        .ok_or(Refusal::Missing)?;
    let normal = |s: &str| s.trim_end_matches('/').to_ascii_lowercase();
    let origin_n = normal(origin);
    let scheme = if tls { "https" } else { "http" };
    let own = host.map(|h| format!("{scheme}://{}", h.trim().to_ascii_lowercase()));
    if own.as_deref() == Some(origin_n.as_str()) || allowed.iter().any(|a| normal(a) == origin_n) {
        Ok(())
    } else {
        Err(Refusal::Foreign(origin.chars().take(200).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_origin_and_allow_list_pass_everything_else_is_refused() {
        let allow = vec!["https://grafana.example:3000".to_owned()];
        let h = Some("192.168.1.10:8080");
        assert_eq!(
            check(Some("http://192.168.1.10:8080"), h, false, &[]),
            Ok(())
        );
        assert_eq!(
            check(Some("HTTP://192.168.1.10:8080/"), h, false, &[]),
            Ok(())
        );
        assert!(
            check(Some("https://192.168.1.10:8080"), h, false, &[]).is_err(),
            "scheme"
        );
        assert_eq!(
            check(Some("https://192.168.1.10:8080"), h, true, &[]),
            Ok(())
        );
        assert_eq!(
            check(Some("https://grafana.example:3000"), h, false, &allow),
            Ok(())
        );
        assert_eq!(check(None, h, false, &allow), Err(Refusal::Missing));
        assert_eq!(
            check(Some("null"), h, false, &allow),
            Err(Refusal::Foreign("null".into()))
        );
        assert!(check(Some("http://evil.example"), h, false, &allow).is_err());
        assert!(check(Some("http://192.168.1.10:8080.evil.example"), h, false, &[]).is_err());
        assert!(
            check(Some("http://192.168.1.10:8080"), None, false, &[]).is_err(),
            "no Host"
        );
    }
}
