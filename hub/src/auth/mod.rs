//! Who may come in: devices by token, people by password and session cookie.
//!
//! - [`token`]: device tokens (256 random bits, stored as SHA-256 hashes).
//! - [`password`]: argon2id password hashes; checks run off the async threads, a few at once.
//! - [`session`]: the session cookie (random, stored as a hash, HttpOnly, SameSite=Strict).
//! - [`origin`]: the `Origin` check that stops cross-site WebSocket hijacking.
//! - [`throttle`]: failed logins per source address and per user name.
//! - [`web`]: the login page, `POST /login`, `POST /logout`, one-time login links, and the
//!   layer that keeps everything else behind a session.

pub mod origin;
pub mod password;
pub mod session;
pub mod throttle;
pub mod token;
pub mod web;

pub use token::{TOKEN_BYTES, bearer, generate_token, hash_token};
