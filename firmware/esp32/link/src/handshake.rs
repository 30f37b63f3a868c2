//! The WebSocket opening handshake, client side (RFC 6455 section 4.1), over byte buffers.
//!
//! The request carries what the hub checks before it upgrades: `Authorization: Bearer
//! <token>` and `Sec-WebSocket-Protocol: telemetry.v1`. The response must be `101` with the
//! `Sec-WebSocket-Accept` derived from our key and the same subprotocol; a `401` means the
//! token was refused, which the board reports differently from a hub that cannot be reached.

use core::fmt::Write as _;

use shared::board_config::HubUrl;

/// Largest handshake response we read; the hub's is about 200 bytes.
pub const MAX_RESPONSE_BYTES: usize = 1024;

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A handshake that did not end in an open WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// The request does not fit the buffer.
    RequestTooLarge { capacity: usize },
    /// No end of headers within `MAX_RESPONSE_BYTES`.
    ResponseTooLarge,
    /// Not an HTTP/1.1 status line.
    Malformed,
    /// 401: the hub refused the token (unknown or revoked).
    Unauthorized,
    /// Any other status than 101.
    Status { code: u16 },
    /// 101 without the accept value RFC 6455 requires for our key.
    BadAccept,
    /// 101 without `Sec-WebSocket-Protocol: telemetry.v1`.
    WrongSubprotocol,
}

impl core::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::RequestTooLarge { capacity } => write!(f, "request over {capacity} bytes"),
            Self::ResponseTooLarge => write!(f, "response headers over {MAX_RESPONSE_BYTES} bytes"),
            Self::Malformed => write!(f, "not an HTTP response"),
            Self::Unauthorized => write!(
                f,
                "401: the hub refused the device token (unknown or revoked)"
            ),
            Self::Status { code } => write!(f, "HTTP {code} instead of 101 Switching Protocols"),
            Self::BadAccept => write!(f, "wrong Sec-WebSocket-Accept"),
            Self::WrongSubprotocol => write!(f, "the hub did not agree to {}", shared::SUBPROTOCOL),
        }
    }
}

/// The 24-character `Sec-WebSocket-Key` for 16 random bytes.
pub fn client_key(random: [u8; 16]) -> [u8; 24] {
    let mut out = [0u8; 24];
    base64(&random, &mut out);
    out
}

/// Write the upgrade request for `url` into `buf`; returns its length.
pub fn write_request(
    buf: &mut [u8],
    url: &HubUrl,
    token: &str,
    key: &[u8; 24],
) -> Result<usize, HandshakeError> {
    let capacity = buf.len();
    let mut w = SliceWriter { buf, len: 0 };
    let key = core::str::from_utf8(key).map_err(|_| HandshakeError::Malformed)?;
    let default_port = url.scheme.default_port() == url.port;
    let r = (|| {
        write!(w, "GET {} HTTP/1.1\r\nHost: {}", url.path, url.host)?;
        if !default_port {
            write!(w, ":{}", url.port)?;
        }
        write!(
            w,
            "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Protocol: {}\r\nAuthorization: Bearer {token}\r\n\r\n",
            shared::SUBPROTOCOL
        )
    })();
    r.map_err(|_| HandshakeError::RequestTooLarge { capacity })?;
    Ok(w.len)
}

/// Check a response as far as it has arrived. `Ok(None)`: the headers are not complete yet,
/// read more. `Ok(Some(n))`: the WebSocket is open; bytes from `n` on are already frames.
pub fn check_response(buf: &[u8], key: &[u8; 24]) -> Result<Option<usize>, HandshakeError> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        return if buf.len() >= MAX_RESPONSE_BYTES {
            Err(HandshakeError::ResponseTooLarge)
        } else {
            Ok(None)
        };
    };
    let head = core::str::from_utf8(&buf[..end]).map_err(|_| HandshakeError::Malformed)?;
    let mut lines = head.split("\r\n");
    let status = lines.next().ok_or(HandshakeError::Malformed)?;
    let code = status
        .strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(HandshakeError::Malformed)?;
    match code {
        101 => {}
        401 => return Err(HandshakeError::Unauthorized),
        code => return Err(HandshakeError::Status { code }),
    }
    let expected = accept_for(key);
    let expected = core::str::from_utf8(&expected).map_err(|_| HandshakeError::Malformed)?;
    let (mut accepted, mut protocol) = (false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("sec-websocket-accept") {
            accepted = value == expected;
        } else if name.eq_ignore_ascii_case("sec-websocket-protocol") {
            protocol = value == shared::SUBPROTOCOL;
        }
    }
    if !accepted {
        return Err(HandshakeError::BadAccept);
    }
    if !protocol {
        return Err(HandshakeError::WrongSubprotocol);
    }
    Ok(Some(end + 4))
}

/// `Sec-WebSocket-Accept` for a key: base64(SHA-1(key + GUID)).
pub fn accept_for(key: &[u8; 24]) -> [u8; 28] {
    let mut sha = sha1_smol::Sha1::new();
    sha.update(key);
    sha.update(GUID.as_bytes());
    let mut out = [0u8; 28];
    base64(&sha.digest().bytes(), &mut out);
    out
}

/// Standard base64 with padding; `out` must hold `4 * ceil(input / 3)` bytes.
fn base64(input: &[u8], out: &mut [u8]) {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (chunk, o) in input.chunks(3).zip(out.chunks_mut(4)) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for (i, slot) in o.iter_mut().enumerate() {
            *slot = if i <= chunk.len() {
                ALPHABET[(n >> (18 - 6 * i) & 63) as usize]
            } else {
                b'='
            };
        }
    }
}

/// `core::fmt::Write` into a slice, failing (not truncating) when full.
struct SliceWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl core::fmt::Write for SliceWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_accept_value_matches_rfc_6455s_example() {
        // RFC 6455 section 1.3: key "dGhlIHNhbXBsZSBub25jZQ==" gives this accept value.
        assert_eq!(
            &accept_for(b"dGhlIHNhbXBsZSBub25jZQ=="),
            b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(
            &client_key(*b"the sample nonce"),
            b"dGhlIHNhbXBsZSBub25jZQ=="
        );
    }
}
