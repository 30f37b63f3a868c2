//! The per-device config image: what the hub writes, the board reads back exactly; anything
//! damaged, erased or from another version is refused with an error that says which.

use shared::board_config::{
    BoardConfig, BoardConfigError, CRC_BYTES, CaCert, CaFormat, HEADER_BYTES, HubUrl, HubUrlError,
    MAGIC, MAX_CA_BYTES, MAX_IMAGE_BYTES, Scheme, VERSION,
};

fn kitchen() -> BoardConfig {
    BoardConfig {
        wifi_ssid: "home-2g".try_into().unwrap(),
        wifi_password: "correct horse battery".try_into().unwrap(),
        hub: HubUrl::parse("ws://192.168.1.10:8080/ws/device").unwrap(),
        token: "3f1c9a7e00112233445566778899aabbccddeeff00112233445566778899aabb"
            .try_into()
            .unwrap(),
        ca: None,
        sample_interval_ms: 1000,
    }
}

fn with_ca(bytes: usize) -> BoardConfig {
    let mut c = kitchen();
    c.hub = HubUrl::parse("wss://hub.example.net/ws/device").unwrap();
    let mut ca = heapless::Vec::new();
    ca.resize(bytes, 0x30).unwrap();
    c.ca = Some(CaCert {
        format: CaFormat::Der,
        bytes: ca,
    });
    c
}

fn image(c: &BoardConfig) -> Vec<u8> {
    c.to_vec().unwrap()
}

#[test]
fn an_image_reads_back_as_the_config_that_wrote_it() {
    for c in [kitchen(), with_ca(1200), with_ca(MAX_CA_BYTES)] {
        let bytes = image(&c);
        assert!(bytes.len() <= MAX_IMAGE_BYTES);
        assert_eq!(BoardConfig::decode(&bytes).unwrap(), c);
    }
}

#[test]
fn the_header_is_magic_version_and_payload_length_and_the_crc_follows_the_payload() {
    let bytes = image(&kitchen());
    assert_eq!(&bytes[..4], b"TLCF");
    assert_eq!(bytes[4], VERSION);
    assert_eq!(bytes[5], 0);
    let len = u16::from_le_bytes([bytes[6], bytes[7]]) as usize;
    assert_eq!(bytes.len(), HEADER_BYTES + len + CRC_BYTES);
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&bytes[..HEADER_BYTES + len]);
    assert_eq!(&bytes[HEADER_BYTES + len..], crc.to_le_bytes());
}

#[test]
fn a_whole_flash_sector_decodes_ignoring_the_erased_tail() {
    let mut sector = vec![0xffu8; MAX_IMAGE_BYTES];
    let bytes = image(&kitchen());
    sector[..bytes.len()].copy_from_slice(&bytes);
    assert_eq!(BoardConfig::decode(&sector).unwrap(), kitchen());
}

#[test]
fn erased_flash_is_reported_as_no_config() {
    let sector = vec![0xffu8; MAX_IMAGE_BYTES];
    assert_eq!(
        BoardConfig::decode(&sector),
        Err(BoardConfigError::BadMagic { found: [0xff; 4] })
    );
}

#[test]
fn every_flipped_bit_is_caught() {
    let bytes = image(&kitchen());
    for i in 0..bytes.len() {
        for bit in 0..8 {
            let mut bad = bytes.clone();
            bad[i] ^= 1 << bit;
            assert!(
                BoardConfig::decode(&bad).is_err(),
                "bit {bit} of byte {i} flipped went unnoticed"
            );
        }
    }
}

#[test]
fn a_flipped_payload_byte_is_a_crc_mismatch() {
    let mut bytes = image(&kitchen());
    bytes[HEADER_BYTES + 3] ^= 0x40;
    assert!(matches!(
        BoardConfig::decode(&bytes),
        Err(BoardConfigError::CrcMismatch { .. })
    ));
}

#[test]
fn every_truncation_is_refused() {
    let bytes = image(&kitchen());
    for len in 0..bytes.len() {
        assert!(
            BoardConfig::decode(&bytes[..len]).is_err(),
            "truncated to {len} bytes and accepted"
        );
    }
    assert_eq!(
        BoardConfig::decode(&bytes[..5]),
        Err(BoardConfigError::TooShort { len: 5, min: 12 })
    );
}

#[test]
fn another_version_is_refused_by_number() {
    let mut bytes = image(&kitchen());
    bytes[4] = 2;
    assert_eq!(
        BoardConfig::decode(&bytes),
        Err(BoardConfigError::UnsupportedVersion {
            found: 2,
            supported: 1
        })
    );
}

#[test]
fn a_length_past_the_end_is_refused_before_the_crc_is_read() {
    let mut bytes = image(&kitchen());
    bytes[6..8].copy_from_slice(&5000u16.to_le_bytes());
    assert!(matches!(
        BoardConfig::decode(&bytes),
        Err(BoardConfigError::BadLength { len: 5000, .. })
    ));
}

#[test]
fn a_valid_crc_over_garbage_is_still_refused() {
    let garbage = [0xeeu8; 40];
    let mut bytes = Vec::from(MAGIC);
    bytes.extend([VERSION, 0]);
    bytes.extend((garbage.len() as u16).to_le_bytes());
    bytes.extend(garbage);
    let crc = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(&bytes);
    bytes.extend(crc.to_le_bytes());
    assert!(matches!(
        BoardConfig::decode(&bytes),
        Err(BoardConfigError::Payload | BoardConfigError::TrailingBytes { .. })
    ));
}

#[test]
fn configs_a_board_could_not_use_are_not_written() {
    type Spoil = fn(&mut BoardConfig);
    let cases: [(Spoil, &str); 6] = [
        (|c| c.wifi_ssid.clear(), "wifi_ssid"),
        (
            |c| c.wifi_password = "short".try_into().unwrap(),
            "wifi_password",
        ),
        (
            |c| c.token = "bad\r\nX-Injected: 1".try_into().unwrap(),
            "token",
        ),
        (|c| c.hub.port = 0, "hub.port"),
        (|c| c.sample_interval_ms = 0, "sample_interval_ms"),
        (|c| c.ca = with_ca(10).ca, "ca"),
    ];
    for (spoil, field) in cases {
        let mut c = kitchen();
        spoil(&mut c);
        assert!(
            matches!(c.to_vec(), Err(BoardConfigError::Invalid { field: f, .. }) if f == field),
            "{field}"
        );
    }
    let mut open = kitchen();
    open.wifi_password.clear();
    assert!(open.to_vec().is_ok(), "an open network has no password");
}

#[test]
fn a_buffer_too_small_for_the_image_is_an_error_not_a_panic() {
    let mut buf = [0u8; 64];
    assert!(matches!(
        kitchen().encode(&mut buf),
        Err(BoardConfigError::TooLarge { max: 64, .. })
    ));
}

#[test]
fn hub_urls_parse_with_default_ports_and_paths() {
    let u = HubUrl::parse("ws://192.168.1.10:8080/ws/device").unwrap();
    assert_eq!(
        (u.scheme, u.host.as_str(), u.port, u.path.as_str()),
        (Scheme::Ws, "192.168.1.10", 8080, "/ws/device")
    );
    assert_eq!(u.to_string(), "ws://192.168.1.10:8080/ws/device");
    let u = HubUrl::parse("wss://hub.local").unwrap();
    assert_eq!((u.scheme, u.port, u.path.as_str()), (Scheme::Wss, 443, "/"));
    assert_eq!(HubUrl::parse("http://x/"), Err(HubUrlError::Scheme));
    assert_eq!(HubUrl::parse("ws://:80/"), Err(HubUrlError::NoHost));
    assert_eq!(HubUrl::parse("ws://h:0/"), Err(HubUrlError::Port));
    assert_eq!(HubUrl::parse("ws://h:99999/"), Err(HubUrlError::Port));
}
