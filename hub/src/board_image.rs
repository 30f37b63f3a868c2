//! The per-device config image for a bare-metal board (`firmware/esp32`): Wi-Fi, hub URL,
//! token and optional CA in `shared::board_config`'s format, written by `hub device add NAME
//! --board-config FILE.bin ...` and flashed with `espflash write-bin --chip esp32c3 0x3f0000
//! FILE.bin`. The board decodes it with the same code.

use anyhow::Context;
use shared::board_config::{BoardConfig, CaCert, CaFormat, HubUrl, MAX_CA_BYTES};

/// Where the board's `devcfg` partition starts (`firmware/esp32/partitions.csv`).
pub const DEVCFG_OFFSET: u32 = 0x3f_0000;

/// What the CLI collects for one board.
#[derive(Debug, Clone)]
pub struct BoardImageArgs<'a> {
    pub wifi_ssid: &'a str,
    pub wifi_password: &'a str,
    pub hub_url: &'a str,
    pub token: &'a str,
    /// PEM (`-----BEGIN`) or DER, for `wss://`.
    pub ca: Option<&'a [u8]>,
    pub sample_interval_ms: u32,
}

/// PEM (the first certificate block, without any text around it: `openssl x509 -text`
/// output, say) or DER (an ASN.1 SEQUENCE); anything else is refused here rather than by the
/// board at its first TLS handshake.
fn ca_format(bytes: &[u8]) -> anyhow::Result<(CaFormat, &[u8])> {
    const BEGIN: &[u8] = b"-----BEGIN CERTIFICATE-----";
    const END: &[u8] = b"-----END CERTIFICATE-----";
    let find = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).position(|w| w == needle);
    if let Some(start) = find(bytes, BEGIN) {
        let end = find(&bytes[start..], END)
            .map(|e| start + e + END.len())
            .context("--ca: a PEM certificate without its END CERTIFICATE line")?;
        let end = if bytes.get(end) == Some(&b'\n') {
            end + 1
        } else {
            end
        };
        return Ok((CaFormat::Pem, &bytes[start..end]));
    }
    anyhow::ensure!(
        bytes.first() == Some(&0x30),
        "--ca is neither a PEM certificate (-----BEGIN CERTIFICATE-----) nor DER"
    );
    Ok((CaFormat::Der, bytes))
}

/// Build the image bytes, refusing anything the board could not use.
pub fn build(args: &BoardImageArgs<'_>) -> anyhow::Result<Vec<u8>> {
    let hub =
        HubUrl::parse(args.hub_url).with_context(|| format!("--hub-url {:?}", args.hub_url))?;
    let ca = args
        .ca
        .map(|bytes| -> anyhow::Result<CaCert> {
            let (format, bytes) = ca_format(bytes)?;
            let bytes = bytes.try_into().map_err(|_| {
                anyhow::anyhow!(
                    "--ca of {} bytes is over the board's limit of {MAX_CA_BYTES}",
                    bytes.len()
                )
            })?;
            Ok(CaCert { format, bytes })
        })
        .transpose()?;
    let too_long =
        |what: &str, len: usize| anyhow::anyhow!("{what} of {len} bytes is too long for the board");
    let config = BoardConfig {
        wifi_ssid: args
            .wifi_ssid
            .try_into()
            .map_err(|_| too_long("--wifi-ssid", args.wifi_ssid.len()))?,
        wifi_password: args
            .wifi_password
            .try_into()
            .map_err(|_| too_long("--wifi-password", args.wifi_password.len()))?,
        hub,
        token: args
            .token
            .try_into()
            .map_err(|_| too_long("the token", args.token.len()))?,
        ca,
        sample_interval_ms: args.sample_interval_ms,
    };
    Ok(config.to_vec()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::board_config::Scheme;

    fn args<'a>() -> BoardImageArgs<'a> {
        BoardImageArgs {
            wifi_ssid: "home",
            wifi_password: "correct horse",
            hub_url: "ws://192.168.1.10:8080/ws/device",
            token: "ab12",
            ca: None,
            sample_interval_ms: 1000,
        }
    }

    #[test]
    fn the_image_decodes_on_the_board_to_what_the_cli_was_given() {
        let c = BoardConfig::decode(&build(&args()).unwrap()).unwrap();
        assert_eq!(
            (
                c.wifi_ssid.as_str(),
                c.wifi_password.as_str(),
                c.token.as_str()
            ),
            ("home", "correct horse", "ab12")
        );
        assert_eq!(
            (
                c.hub.scheme,
                c.hub.host.as_str(),
                c.hub.port,
                c.hub.path.as_str()
            ),
            (Scheme::Ws, "192.168.1.10", 8080, "/ws/device")
        );
        assert_eq!(c.ca, None);
    }

    #[test]
    fn a_pem_ca_is_kept_as_pem_for_wss() {
        let pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let image = build(&BoardImageArgs {
            hub_url: "wss://hub.lan/ws/device",
            ca: Some(pem),
            ..args()
        })
        .unwrap();
        let ca = BoardConfig::decode(&image).unwrap().ca.unwrap();
        assert_eq!((ca.format, ca.bytes.as_slice()), (CaFormat::Pem, &pem[..]));
    }

    #[test]
    fn a_pem_ca_with_text_around_it_keeps_only_the_certificate() {
        let pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        let mut file = b"Certificate:\n    Data: ...\n".to_vec();
        file.extend_from_slice(pem);
        file.extend_from_slice(b"trailing words\n");
        let (format, bytes) = ca_format(&file).unwrap();
        assert_eq!((format, bytes), (CaFormat::Pem, &pem[..]));
        let e = ca_format(b"-----BEGIN CERTIFICATE-----\nMIIB\n").unwrap_err();
        assert!(format!("{e:#}").contains("END CERTIFICATE"), "{e:#}");
        let e = ca_format(b"not a certificate").unwrap_err();
        assert!(format!("{e:#}").contains("neither a PEM"), "{e:#}");
        assert_eq!(ca_format(&[0x30, 0x82, 0x01]).unwrap().0, CaFormat::Der);
    }

    #[test]
    fn unusable_inputs_are_refused_with_the_flag_named() {
        let e = build(&BoardImageArgs {
            hub_url: "http://hub/",
            ..args()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("--hub-url"), "{e:#}");
        let e = build(&BoardImageArgs {
            wifi_password: "short",
            ..args()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("wifi_password"), "{e:#}");
        let big = vec![0x30u8; MAX_CA_BYTES + 1];
        let e = build(&BoardImageArgs {
            hub_url: "wss://hub/",
            ca: Some(&big),
            ..args()
        })
        .unwrap_err();
        assert!(format!("{e:#}").contains("--ca"), "{e:#}");
    }
}
