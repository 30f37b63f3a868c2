//! SNTP (RFC 4330), the client's half: the 48-byte request the board sends over UDP, and the
//! checks and arithmetic on the answer. Sans-IO: the board owns the socket and the clock and
//! passes in when the request left and the answer arrived (device uptime, ms).
//!
//! The request carries a random cookie in its transmit timestamp; a server copies it into the
//! answer's origin timestamp, so a stale or spoofed answer (a blind off-path sender would have
//! to guess 64 bits) is refused. The time is the server's transmit timestamp plus half the
//! network delay (the round trip less the server's own processing time).

/// The NTP port.
pub const NTP_PORT: u16 = 123;

/// Bytes of an SNTP message without extensions.
pub const PACKET_BYTES: usize = 48;

/// Seconds from the NTP epoch (1900) to the Unix epoch (1970).
pub const NTP_UNIX_OFFSET_S: u64 = 2_208_988_800;

/// An answer refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SntpError {
    /// Fewer than 48 bytes.
    Short { len: usize },
    /// Not a server's answer (mode 4) of version 3 or 4.
    NotServer { mode: u8, version: u8 },
    /// Leap indicator 3 or stratum 0 (a kiss-o'-death) or above 15: the server has no time.
    Unsynchronized { stratum: u8 },
    /// The origin timestamp is not our cookie: not an answer to our request.
    WrongOrigin,
    /// A zero transmit timestamp.
    NoTime,
}

/// The request for `cookie` (random per request).
pub fn request(cookie: u64) -> [u8; PACKET_BYTES] {
    let mut p = [0u8; PACKET_BYTES];
    // LI 0, version 4, mode 3 (client).
    p[0] = (4 << 3) | 3;
    p[40..48].copy_from_slice(&cookie.to_be_bytes());
    p
}

/// Unix ms at `received_at` (device uptime) from the `answer` to the request with `cookie`,
/// sent at `sent_at`.
pub fn parse(answer: &[u8], cookie: u64, sent_at: u64, received_at: u64) -> Result<u64, SntpError> {
    if answer.len() < PACKET_BYTES {
        return Err(SntpError::Short { len: answer.len() });
    }
    let leap = answer[0] >> 6;
    let version = (answer[0] >> 3) & 7;
    let mode = answer[0] & 7;
    if mode != 4 || !(3..=4).contains(&version) {
        return Err(SntpError::NotServer { mode, version });
    }
    let stratum = answer[1];
    if leap == 3 || !(1..=15).contains(&stratum) {
        return Err(SntpError::Unsynchronized { stratum });
    }
    let ts = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&answer[at..at + 8]);
        u64::from_be_bytes(b)
    };
    if ts(24) != cookie {
        return Err(SntpError::WrongOrigin);
    }
    let (server_rx, server_tx) = (ts(32), ts(40));
    if server_tx == 0 {
        return Err(SntpError::NoTime);
    }
    let round_trip = received_at.saturating_sub(sent_at);
    let in_server = ntp_to_unix_ms(server_tx).saturating_sub(ntp_to_unix_ms(server_rx));
    let delay = round_trip.saturating_sub(in_server);
    Ok(ntp_to_unix_ms(server_tx) + delay / 2)
}

/// An NTP timestamp (32.32 fixed point seconds since 1900) as Unix ms. Seconds below the Unix
/// epoch's are read as NTP era 1 (from February 2036), as RFC 4330 section 3 suggests.
pub fn ntp_to_unix_ms(ts: u64) -> u64 {
    let mut secs = ts >> 32;
    if secs < NTP_UNIX_OFFSET_S {
        secs += 1 << 32;
    }
    let frac_ms = ((ts & 0xffff_ffff) * 1000) >> 32;
    (secs - NTP_UNIX_OFFSET_S) * 1000 + frac_ms
}
