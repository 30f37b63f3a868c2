//! Any bytes into `decode_hub` (what a device runs on every frame from the network): it never
//! panics, sorts frames into the right error, and a frame that decodes re-encodes canonically
//! (never longer, byte-stable, within `MAX_HUB_FRAME_BYTES`, decodes to the same message).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::limits::MAX_HUB_FRAME_BYTES;
use shared::{DecodeError, codec, decode_hub};

fuzz_target!(|data: &[u8]| {
    let msg = match decode_hub(data) {
        Ok(msg) => msg,
        Err(e) => {
            match data.first() {
                None => assert_eq!(e, DecodeError::Empty),
                Some(&tag) if tag >= 6 => assert_eq!(e, DecodeError::UnknownMessage { tag }),
                Some(_) if data.len() > MAX_HUB_FRAME_BYTES => assert_eq!(
                    e,
                    DecodeError::TooLarge {
                        size: data.len(),
                        max: MAX_HUB_FRAME_BYTES
                    }
                ),
                Some(_) => assert!(
                    !matches!(
                        e,
                        DecodeError::Empty
                            | DecodeError::UnknownMessage { .. }
                            | DecodeError::TooLarge { .. }
                    ),
                    "{e:?} for a {}-byte frame with a known tag",
                    data.len()
                ),
            }
            return;
        }
    };
    let bytes = codec::to_vec(&msg).expect("a decoded message re-encodes");
    assert!(
        bytes.len() <= data.len(),
        "re-encoding grew {data:02x?} to {bytes:02x?}"
    );
    assert!(bytes.len() <= MAX_HUB_FRAME_BYTES);
    // A device encodes into a fixed buffer of the limit's size: it must fit.
    let mut buf = [0u8; MAX_HUB_FRAME_BYTES];
    assert_eq!(
        codec::encode(&msg, &mut buf).expect("fits the limit"),
        &bytes[..]
    );
    let back = decode_hub(&bytes).expect("a re-encoded message decodes");
    assert_eq!(back, msg);
    assert_eq!(
        codec::to_vec(&back).unwrap(),
        bytes,
        "re-encoding is not stable"
    );

    // One whole message: one byte less is truncated, one byte more is trailing.
    let cut = &data[..data.len() - 1];
    let expected = if cut.is_empty() {
        DecodeError::Empty
    } else {
        DecodeError::Truncated
    };
    assert_eq!(decode_hub(cut).map(|_| ()), Err(expected));
    if data.len() < MAX_HUB_FRAME_BYTES {
        let mut longer = data.to_vec();
        longer.push(0);
        assert_eq!(
            decode_hub(&longer).map(|_| ()),
            Err(DecodeError::TrailingBytes { extra: 1 })
        );
    }
});
