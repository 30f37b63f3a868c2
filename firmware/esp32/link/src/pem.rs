//! The CA of the config image, PEM to DER, in place: the board turns the PEM it was given
//! into the DER embedded-tls checks against, inside the config's own buffer, once at boot.
//! Base64 decodes to 3 bytes per 4, so the DER never overtakes the PEM it is read from and
//! no second buffer is needed.

/// Why a CA is not usable PEM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemError {
    /// No `-----BEGIN CERTIFICATE-----` line.
    NoCertificate,
    /// No `-----END CERTIFICATE-----` after the BEGIN line.
    Unterminated,
    /// A byte that is not base64 (or whitespace) at this offset of the PEM.
    BadBase64 { offset: usize },
    /// The base64 between the lines does not end on a 4-character boundary.
    Truncated,
}

impl core::fmt::Display for PemError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoCertificate => write!(f, "no -----BEGIN CERTIFICATE----- line"),
            Self::Unterminated => write!(f, "no -----END CERTIFICATE----- line"),
            Self::BadBase64 { offset } => write!(f, "not base64 at byte {offset}"),
            Self::Truncated => write!(f, "the base64 is cut short"),
        }
    }
}

const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
const END: &[u8] = b"-----END CERTIFICATE-----";

/// Decode the first certificate of the PEM in `buf` into DER at the start of `buf`; returns
/// the DER's length. Text before BEGIN (an `openssl x509 -text` dump, a comment) and after END
/// (more certificates) is ignored: the board trusts one CA.
pub fn decode_in_place(buf: &mut [u8]) -> Result<usize, PemError> {
    let begin = find(buf, BEGIN).ok_or(PemError::NoCertificate)? + BEGIN.len();
    let end = begin + find(&buf[begin..], END).ok_or(PemError::Unterminated)?;
    let (mut out, mut acc, mut bits) = (0usize, 0u32, 0u32);
    let (mut chars, mut pad) = (0usize, 0usize);
    for i in begin..end {
        let c = buf[i];
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => {
                pad += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' | b'\n' => continue,
            _ => return Err(PemError::BadBase64 { offset: i }),
        };
        if pad > 0 {
            // Data after padding.
            return Err(PemError::BadBase64 { offset: i });
        }
        chars += 1;
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            // `out` trails `i` (3 bytes out per 4 read), so this never overwrites unread PEM.
            buf[out] = (acc >> bits) as u8;
            out += 1;
        }
    }
    // Whole groups of 4 characters, the last padded with at most two `=`.
    if pad > 2 || (chars + pad) % 4 != 0 || chars % 4 == 1 {
        return Err(PemError::Truncated);
    }
    Ok(out)
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}
