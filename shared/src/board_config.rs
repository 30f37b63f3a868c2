//! The per-device config image: what a board needs to reach its hub (Wi-Fi, hub URL, token,
//! optional CA, sample interval), written by `hub device add NAME --board-config FILE.bin` and
//! flashed into the board's `devcfg` partition with `espflash write-bin`, so one firmware
//! image serves every device.
//!
//! Layout (all integers little-endian), one flash sector at most ([`MAX_IMAGE_BYTES`]):
//! ```text
//! offset  size  field
//! 0       4     magic "TLCF"
//! 4       1     version (1)
//! 5       1     reserved, 0
//! 6       2     payload length N
//! 8       N     payload: BoardConfig, postcard
//! 8+N     4     CRC-32 (ISO-HDLC, as zlib/Ethernet) of bytes 0..8+N
//! ```
//! Erased flash reads 0xFF, so a board that was never given a config sees a wrong magic, not
//! garbage. Decoding checks magic, version, length and CRC before postcard sees a byte, then
//! [`BoardConfig::validate`]s the fields; every failure is a typed [`BoardConfigError`] the
//! board prints on its serial console.

use core::fmt;

use heapless::{String, Vec};
use serde::{Deserialize, Serialize};

/// The magic at the start of every image.
pub const MAGIC: [u8; 4] = *b"TLCF";

/// The layout version this code writes and reads. A board refuses other versions (re-run
/// `hub device add` with a matching hub).
pub const VERSION: u8 = 1;

/// Bytes before the payload: magic, version, reserved, length.
pub const HEADER_BYTES: usize = 8;

/// Bytes of the trailing CRC.
pub const CRC_BYTES: usize = 4;

/// Largest image: one 4 KiB flash sector, so writing it erases exactly one sector.
pub const MAX_IMAGE_BYTES: usize = 4096;

/// An SSID is at most 32 bytes (IEEE 802.11).
pub const MAX_SSID_LEN: usize = 32;

/// A WPA passphrase is 8..=63 characters, or 64 hex digits.
pub const MAX_WIFI_PASSWORD_LEN: usize = 64;

/// Host name or address of the hub.
pub const MAX_HOST_LEN: usize = 64;

/// Path of the device endpoint (`/ws/device`).
pub const MAX_PATH_LEN: usize = 64;

/// Device token; the hub's are 64 hex digits.
pub const MAX_TOKEN_LEN: usize = 128;

/// The CA certificate the board trusts for `wss` (a PEM of one RSA-2048 or ECDSA CA is
/// 0.7-2 KiB, its DER 0.5-1.4 KiB); what is left of the sector after the other fields.
pub const MAX_CA_BYTES: usize = 3072;

/// Shortest sample interval an image may ask for (the device core's own floor).
pub const MIN_SAMPLE_INTERVAL_MS: u32 = 10;

/// Everything a board needs that differs per device.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BoardConfig {
    pub wifi_ssid: String<MAX_SSID_LEN>,
    /// Empty for an open network.
    pub wifi_password: String<MAX_WIFI_PASSWORD_LEN>,
    pub hub: HubUrl,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: String<MAX_TOKEN_LEN>,
    /// Trusted CA for `wss` (None: `ws`, or trust nothing and refuse `wss`).
    pub ca: Option<CaCert>,
    /// Milliseconds between samples until the hub's Welcome says otherwise.
    pub sample_interval_ms: u32,
}

/// Where the hub's device endpoint is: `ws://host:port/path` or `wss://...`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct HubUrl {
    pub scheme: Scheme,
    pub host: String<MAX_HOST_LEN>,
    pub port: u16,
    pub path: String<MAX_PATH_LEN>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Ws,
    Wss,
}

impl Scheme {
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Ws => 80,
            Scheme::Wss => 443,
        }
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct CaCert {
    pub format: CaFormat,
    pub bytes: Vec<u8, MAX_CA_BYTES>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaFormat {
    Pem,
    Der,
}

/// Why an image was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BoardConfigError {
    #[error("image of {len} bytes is shorter than its {min}-byte header and CRC")]
    TooShort { len: usize, min: usize },
    #[error("no config image: magic {found:02x?} is not \"TLCF\" (erased flash reads ff ff ff ff)")]
    BadMagic { found: [u8; 4] },
    #[error("config image version {found}, this firmware reads version {supported}")]
    UnsupportedVersion { found: u8, supported: u8 },
    #[error(
        "payload of {len} bytes does not fit: {available} bytes follow the header (at most {max})"
    )]
    BadLength {
        len: usize,
        available: usize,
        max: usize,
    },
    #[error(
        "CRC mismatch: image says {stored:08x}, bytes give {computed:08x} (corrupt or partly written)"
    )]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("the payload does not decode as a board config")]
    Payload,
    #[error("the payload has {extra} bytes after the config")]
    TrailingBytes { extra: usize },
    #[error("image of {len} bytes is over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("field {field}: {problem}")]
    Invalid {
        field: &'static str,
        problem: &'static str,
    },
    #[error("{field} of {len} bytes is over the limit of {max}")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
}

/// A hub URL that does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HubUrlError {
    #[error("the URL must start with ws:// or wss://")]
    Scheme,
    #[error("the URL has no host")]
    NoHost,
    #[error("the port is not a number from 1 to 65535")]
    Port,
    #[error("{field} of {len} bytes is over the limit of {max}")]
    TooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
}

const CRC32: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);

/// CRC-32 (ISO-HDLC, as zlib/Ethernet) of `bytes`: the check of this image, also used by the
/// device core's deep-sleep image.
pub fn crc32(bytes: &[u8]) -> u32 {
    CRC32.checksum(bytes)
}

impl BoardConfig {
    /// Check what postcard cannot: lengths that Wi-Fi or HTTP would refuse, a zero port, a
    /// path without its slash, a CA without `wss`.
    pub fn validate(&self) -> Result<(), BoardConfigError> {
        let invalid = |field, problem| Err(BoardConfigError::Invalid { field, problem });
        if self.wifi_ssid.is_empty() {
            return invalid("wifi_ssid", "empty");
        }
        let pw = self.wifi_password.len();
        if pw != 0 && !(8..=64).contains(&pw) {
            return invalid(
                "wifi_password",
                "WPA needs 8 to 64 characters (empty: open network)",
            );
        }
        if self.hub.host.is_empty()
            || !is_header_safe(&self.hub.host)
            || self.hub.host.contains([' ', '/'])
        {
            return invalid("hub.host", "empty or not a host name");
        }
        if self.hub.port == 0 {
            return invalid("hub.port", "0");
        }
        if !self.hub.path.starts_with('/')
            || !is_header_safe(&self.hub.path)
            || self.hub.path.contains(' ')
        {
            return invalid("hub.path", "must start with / and hold no spaces");
        }
        if self.token.is_empty() || !is_header_safe(&self.token) || self.token.contains(' ') {
            return invalid("token", "empty or not printable ASCII");
        }
        if self.ca.is_some() && self.hub.scheme != Scheme::Wss {
            return invalid("ca", "a CA is only used with wss://");
        }
        if self.ca.as_ref().is_some_and(|c| c.bytes.is_empty()) {
            return invalid("ca", "empty");
        }
        if self.sample_interval_ms < MIN_SAMPLE_INTERVAL_MS {
            return invalid("sample_interval_ms", "below 10 ms");
        }
        Ok(())
    }

    /// Write the image into `buf`, returning its bytes.
    pub fn encode<'b>(&self, buf: &'b mut [u8]) -> Result<&'b [u8], BoardConfigError> {
        self.validate()?;
        let room = buf.len().min(MAX_IMAGE_BYTES);
        if room < HEADER_BYTES + CRC_BYTES {
            return Err(BoardConfigError::TooShort {
                len: room,
                min: HEADER_BYTES + CRC_BYTES,
            });
        }
        let payload_room = room - HEADER_BYTES - CRC_BYTES;
        let len = postcard::to_slice(self, &mut buf[HEADER_BYTES..HEADER_BYTES + payload_room])
            .map_err(|_| BoardConfigError::TooLarge {
                len: postcard::experimental::serialized_size(self)
                    .unwrap_or(usize::MAX)
                    .saturating_add(HEADER_BYTES + CRC_BYTES),
                max: room,
            })?
            .len();
        buf[..4].copy_from_slice(&MAGIC);
        buf[4] = VERSION;
        buf[5] = 0;
        buf[6..8].copy_from_slice(&(len as u16).to_le_bytes());
        let end = HEADER_BYTES + len;
        let crc = CRC32.checksum(&buf[..end]);
        buf[end..end + CRC_BYTES].copy_from_slice(&crc.to_le_bytes());
        Ok(&buf[..end + CRC_BYTES])
    }

    /// Read an image from `bytes` (a whole flash sector may be passed: what follows the CRC is
    /// ignored).
    pub fn decode(bytes: &[u8]) -> Result<Self, BoardConfigError> {
        let min = HEADER_BYTES + CRC_BYTES;
        if bytes.len() < min {
            return Err(BoardConfigError::TooShort {
                len: bytes.len(),
                min,
            });
        }
        let found = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if found != MAGIC {
            return Err(BoardConfigError::BadMagic { found });
        }
        if bytes[4] != VERSION {
            return Err(BoardConfigError::UnsupportedVersion {
                found: bytes[4],
                supported: VERSION,
            });
        }
        let len = usize::from(u16::from_le_bytes([bytes[6], bytes[7]]));
        let available = bytes.len().min(MAX_IMAGE_BYTES) - min;
        if len > available {
            return Err(BoardConfigError::BadLength {
                len,
                available,
                max: MAX_IMAGE_BYTES - min,
            });
        }
        let end = HEADER_BYTES + len;
        let stored =
            u32::from_le_bytes([bytes[end], bytes[end + 1], bytes[end + 2], bytes[end + 3]]);
        let computed = CRC32.checksum(&bytes[..end]);
        if stored != computed {
            return Err(BoardConfigError::CrcMismatch { stored, computed });
        }
        let (config, rest): (Self, _) = postcard::take_from_bytes(&bytes[HEADER_BYTES..end])
            .map_err(|_| BoardConfigError::Payload)?;
        if !rest.is_empty() {
            return Err(BoardConfigError::TrailingBytes { extra: rest.len() });
        }
        config.validate()?;
        Ok(config)
    }

    /// Encode into a new `Vec` (for the hub's CLI).
    #[cfg(feature = "alloc")]
    pub fn to_vec(&self) -> Result<alloc::vec::Vec<u8>, BoardConfigError> {
        let mut buf = alloc::vec![0u8; MAX_IMAGE_BYTES];
        let len = self.encode(&mut buf)?.len();
        buf.truncate(len);
        Ok(buf)
    }
}

impl HubUrl {
    /// Parse `ws://host[:port]/path` or `wss://...` (no user info, query or IPv6 literal).
    pub fn parse(url: &str) -> Result<Self, HubUrlError> {
        let (scheme, rest) = if let Some(r) = url.strip_prefix("ws://") {
            (Scheme::Ws, r)
        } else if let Some(r) = url.strip_prefix("wss://") {
            (Scheme::Wss, r)
        } else {
            return Err(HubUrlError::Scheme);
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or(HubUrlError::Port)?,
            ),
            None => (authority, scheme.default_port()),
        };
        if host.is_empty() {
            return Err(HubUrlError::NoHost);
        }
        let too_long = |field, len, max| HubUrlError::TooLong { field, len, max };
        Ok(Self {
            scheme,
            host: String::try_from(host).map_err(|_| too_long("host", host.len(), MAX_HOST_LEN))?,
            port,
            path: String::try_from(path).map_err(|_| too_long("path", path.len(), MAX_PATH_LEN))?,
        })
    }
}

impl fmt::Display for HubUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = match self.scheme {
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        };
        write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.path)
    }
}

/// Printable ASCII only: these fields end up in an HTTP request line or header, where a CR or
/// LF would let a config inject headers.
fn is_header_safe(s: &str) -> bool {
    s.bytes().all(|b| (0x21..0x7f).contains(&b) || b == b' ')
}
