//! The session cookie: `hub_session=<64 hex digits>`, 256 random bits. The hub keeps only the
//! SHA-256 of the value (in `sessions`), so the database cannot be used to log in.
//!
//! Attributes: `HttpOnly` (page scripts cannot read it), `SameSite=Strict` (no other site's
//! page sends it, so no cross-site request forgery), `Path=/`, `Max-Age` = the session's
//! lifetime, and `Secure` when the hub serves TLS.

use axum::http::HeaderMap;
use axum::http::header;

/// The cookie's name.
pub const COOKIE: &str = "hub_session";

/// The `Set-Cookie` value that starts a session.
pub fn set_cookie(value: &str, max_age_s: u64, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_s}{secure}")
}

/// The `Set-Cookie` value that ends it in the browser.
pub fn clear_cookie(secure: bool) -> String {
    set_cookie("", 0, secure)
}

/// The session cookie's value from the request's `Cookie` headers, if it has a plausible one
/// (64 hex digits; anything else is not ours and is ignored).
pub fn from_headers(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim())
        .filter(|v| v.len() == 2 * super::TOKEN_BYTES && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookie_attributes_lock_it_to_this_site() {
        let c = set_cookie("ab", 3600, false);
        assert_eq!(
            c,
            "hub_session=ab; Path=/; HttpOnly; SameSite=Strict; Max-Age=3600"
        );
        assert!(set_cookie("ab", 1, true).ends_with("; Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
    }

    #[test]
    fn the_cookie_is_found_among_others_and_garbage_is_ignored() {
        let value = "a".repeat(64);
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("theme=dark"));
        h.append(
            header::COOKIE,
            HeaderValue::from_str(&format!("x=1; {COOKIE}={value}; y=2")).unwrap(),
        );
        assert_eq!(from_headers(&h), Some(value.as_str()));

        let mut bad = HeaderMap::new();
        bad.append(
            header::COOKIE,
            HeaderValue::from_static("hub_session=../../etc"),
        );
        assert_eq!(from_headers(&bad), None);
        assert_eq!(from_headers(&HeaderMap::new()), None);
    }
}
