//! The SNTP client's request and its checks on answers, with exact bytes and times.

use telemetry_link::sntp::{
    NTP_UNIX_OFFSET_S, PACKET_BYTES, SntpError, ntp_to_unix_ms, parse, request,
};

/// 2026-11-26T00:00:00Z.
const UNIX_S: u64 = 1_795_651_200;

fn ntp(unix_ms: u64) -> u64 {
    let secs = (unix_ms / 1000 + NTP_UNIX_OFFSET_S) & 0xffff_ffff;
    let frac = ((unix_ms % 1000) << 32) / 1000 + 1;
    (secs << 32) | frac
}

fn answer(cookie: u64, server_rx_ms: u64, server_tx_ms: u64) -> [u8; PACKET_BYTES] {
    let mut a = [0u8; PACKET_BYTES];
    a[0] = (4 << 3) | 4;
    a[1] = 2;
    a[24..32].copy_from_slice(&cookie.to_be_bytes());
    a[32..40].copy_from_slice(&ntp(server_rx_ms).to_be_bytes());
    a[40..48].copy_from_slice(&ntp(server_tx_ms).to_be_bytes());
    a
}

#[test]
fn the_request_is_a_version_4_client_packet_carrying_the_cookie() {
    let r = request(0x0102_0304_0506_0708);
    assert_eq!(r[0], 0x23);
    assert!(r[1..40].iter().all(|&b| b == 0));
    assert_eq!(r[40..48], [1, 2, 3, 4, 5, 6, 7, 8]);
}

#[test]
fn ntp_timestamps_convert_to_unix_ms_across_the_2036_era_rollover() {
    assert_eq!(ntp_to_unix_ms(0xeeb1_f500 << 32), UNIX_S * 1000);
    assert_eq!(
        ntp_to_unix_ms((0xeeb1_f500 << 32) | 0x8000_0000),
        UNIX_S * 1000 + 500
    );
    // 2036-02-07T06:28:16Z is NTP second 2^32, which wraps to 0 in era 1.
    assert_eq!(ntp_to_unix_ms(0), ((1u64 << 32) - NTP_UNIX_OFFSET_S) * 1000);
}

#[test]
fn the_time_is_the_server_transmit_time_plus_half_the_network_delay() {
    let t = UNIX_S * 1000;
    // Sent at uptime 10_000, answered at 10_100; the server held it 20 ms: 80 ms on the wire.
    let a = answer(42, t, t + 20);
    assert_eq!(parse(&a, 42, 10_000, 10_100), Ok(t + 20 + 40));
    // A server slower than the round trip (clock skew between its stamps) adds nothing.
    let a = answer(42, t, t + 500);
    assert_eq!(parse(&a, 42, 10_000, 10_100), Ok(t + 500));
}

#[test]
fn answers_that_are_not_for_us_or_have_no_time_are_refused() {
    let t = UNIX_S * 1000;
    let good = answer(7, t, t);
    assert_eq!(
        parse(&good[..47], 7, 0, 1),
        Err(SntpError::Short { len: 47 })
    );
    assert_eq!(parse(&good, 8, 0, 1), Err(SntpError::WrongOrigin));
    let mut a = good;
    a[0] = (4 << 3) | 3;
    assert_eq!(
        parse(&a, 7, 0, 1),
        Err(SntpError::NotServer {
            mode: 3,
            version: 4
        })
    );
    let mut a = good;
    a[1] = 0;
    assert_eq!(
        parse(&a, 7, 0, 1),
        Err(SntpError::Unsynchronized { stratum: 0 })
    );
    let mut a = good;
    a[0] |= 0xc0;
    assert_eq!(
        parse(&a, 7, 0, 1),
        Err(SntpError::Unsynchronized { stratum: 2 })
    );
    let mut a = good;
    a[40..48].fill(0);
    assert_eq!(parse(&a, 7, 0, 1), Err(SntpError::NoTime));
}
