//! Any bytes as a board's flash sector into `BoardConfig::decode`, and the same bytes as the
//! payload of an image with a correct header and CRC (the fuzzer cannot forge CRCs, so without
//! this it would never reach postcard or `validate`): decode never panics; an image it accepts
//! is valid, re-encodes to an image no longer than the one read that decodes to the
//! same config, and its hub URL prints to a string that `HubUrl::parse` reads back the same.
//! The bytes as a UTF-8 string go through `HubUrl::parse` too: what it accepts prints and
//! parses back to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::board_config::{
    BoardConfig, CRC_BYTES, HEADER_BYTES, HubUrl, MAGIC, MAX_IMAGE_BYTES, VERSION,
};

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

fuzz_target!(|data: &[u8]| {
    check_image(data);
    if data.len() <= MAX_IMAGE_BYTES - HEADER_BYTES - CRC_BYTES {
        let mut image = Vec::with_capacity(data.len() + HEADER_BYTES + CRC_BYTES);
        image.extend_from_slice(&MAGIC);
        image.extend_from_slice(&[VERSION, 0]);
        image.extend_from_slice(&(data.len() as u16).to_le_bytes());
        image.extend_from_slice(data);
        image.extend_from_slice(&CRC32.checksum(&image).to_le_bytes());
        check_image(&image);
    }
    if let Ok(Ok(url)) = core::str::from_utf8(data).map(HubUrl::parse) {
        assert_eq!(HubUrl::parse(&url.to_string()).as_ref(), Ok(&url), "{url}");
    }
});

fn check_image(data: &[u8]) {
    let Ok(config) = BoardConfig::decode(data) else {
        return;
    };
    assert_eq!(
        config.validate(),
        Ok(()),
        "decode accepted an invalid config"
    );
    let image = config.to_vec().expect("an accepted config re-encodes");
    let read = HEADER_BYTES + usize::from(u16::from_le_bytes([data[6], data[7]])) + CRC_BYTES;
    assert!(image.len() <= read, "re-encoding grew the image");
    assert_eq!(BoardConfig::decode(&image).as_ref(), Ok(&config));
    assert_eq!(
        HubUrl::parse(&config.hub.to_string()).as_ref(),
        Ok(&config.hub)
    );
}
