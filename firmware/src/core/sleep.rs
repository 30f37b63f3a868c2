//! Deep sleep: a device that samples on each wake, keeps what it has not delivered in a small
//! memory that survives the sleep (the board's RTC memory), and connects every few wakes to
//! send the backlog.
//!
//! A deep-sleep wake is a reboot: RAM is lost, only the RTC region survives. So the core
//! writes everything a delivery needs into that region before sleeping
//! ([`DeviceCore::save_for_sleep`]) and continues from it on the next wake
//! ([`DeviceCore::wake`]):
//! - the boot id and the next seq: the hub stores exactly once per (device, boot id, seq), so a
//!   backlog kept under the same boot id and resent byte for byte after a failed or cut
//!   delivery is stored once (Welcome's `stored_seq` releases what already arrived);
//! - the outbox frames, already encoded, and the open batch with its clock (a batch may span
//!   many wakes, so a reading costs ~7 bytes, not a frame);
//! - the clock offsets (the uptime timeline continues: the board's RTC timer runs through
//!   deep sleep), the drop counts, the wake counters, and a reset reason not yet reported.
//!
//! **Bounded:** the image never exceeds the region. When it would, the oldest frames are
//! dropped and their readings counted, exactly as at the outbox limit; the count travels to
//! the hub in every later batch (`Batch.dropped`). A power loss (a cold boot) loses the
//! region: the image's magic, version and CRC make the next boot start clean instead of
//! reading garbage, and the hub sees a new boot id.
//!
//! Image layout (little-endian), after `shared::board_config`'s:
//! ```text
//! 0    4  magic "TLSP"
//! 4    1  version (1)
//! 5    1  reserved, 0
//! 6    2  body length N
//! 8    N  body: Kept (postcard), then per frame: seq u32, readings u16, len u16, bytes
//! 8+N  4  CRC-32 of bytes 0..8+N
//! ```

use serde::{Deserialize, Serialize};
use shared::board_config::crc32;
use shared::{Batch, ResetReason};

use super::action::SessionState;
use super::config::{ConfigError, CoreConfig};
use super::session::DeviceCore;

/// The magic at the start of every sleep image.
pub const SLEEP_MAGIC: [u8; 4] = *b"TLSP";

/// The layout version this code writes and reads; another version is a cold start.
pub const SLEEP_VERSION: u8 = 1;

/// Header before the body, and the CRC after it.
pub const SLEEP_HEADER_BYTES: usize = 8;
pub const SLEEP_CRC_BYTES: usize = 4;

/// Bytes each kept frame costs besides its own: seq, readings, length.
pub const SLEEP_FRAME_OVERHEAD: usize = 8;

/// The largest body the header's u16 length can describe.
pub const MAX_SLEEP_BODY: usize = u16::MAX as usize;

/// A region sized for the ESP32-C3 (8 KiB of RTC fast memory in all): 4 KiB keeps about 500
/// readings of 4 sensors (~125 wakes) with room for a full open batch.
pub const DEFAULT_SLEEP_IMAGE_BYTES: usize = 4096;

/// How a sleepy device paces its deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SleepPolicy {
    /// Connect on every `send_every`-th wake (1: every wake). Default 10.
    pub send_every: u32,
    /// Also connect when the last image used at least this many per mille of its region, so
    /// a backlog is sent before the region fills. Default 750.
    pub send_when_full_permille: u16,
    /// A delivery wake gives up this long after it started connecting (the backlog is kept
    /// and the next wake tries again). Default 20 s.
    pub delivery_budget_ms: u32,
}

impl Default for SleepPolicy {
    fn default() -> Self {
        Self {
            send_every: 10,
            send_when_full_permille: 750,
            delivery_budget_ms: 20_000,
        }
    }
}

/// Why the RTC region held no usable image (the wake is a cold start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SleepImageError {
    #[error("region of {len} bytes is shorter than a header and CRC")]
    TooShort { len: usize },
    #[error("no sleep image (magic {found:02x?}): first boot or power loss")]
    BadMagic { found: [u8; 4] },
    #[error("sleep image version {found}, this firmware reads version {supported}")]
    UnsupportedVersion { found: u8, supported: u8 },
    #[error("sleep image body of {len} bytes overruns the {available}-byte region")]
    BadLength { len: usize, available: usize },
    #[error("sleep image CRC mismatch: stored {stored:08x}, computed {computed:08x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("sleep image body does not decode")]
    Body,
    #[error("the uptime went back from {saved_at} ms to {now} ms (the RTC timer was reset)")]
    ClockWentBack { saved_at: u64, now: u64 },
}

/// Why an image could not be written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SleepSaveError {
    #[error("a region of {len} bytes cannot hold even the open batch ({needed} bytes)")]
    RegionTooSmall { len: usize, needed: usize },
}

/// What a wake found and decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WakeReport {
    /// Why this wake starts clean (`None`: it continues a kept image).
    pub cold: Option<SleepImageError>,
    /// Wakes since the last cold start, this one included (1 on a cold start).
    pub wake: u32,
    /// Readings kept from earlier wakes (outbox and open batch).
    pub kept_readings: u64,
    /// This wake should deliver: sample, then [`DeviceCore::start_delivery`].
    pub deliver: bool,
}

/// Deep-sleep bookkeeping inside the core.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SleepTrack {
    /// False on a wake that only samples: `poll_action` never asks to connect.
    pub may_connect: bool,
    pub wakes: u32,
    pub wakes_since_delivery: u32,
    /// A reset reason other than a deep-sleep wake that no Welcome has seen yet.
    pub unreported_reset: Option<ResetReason>,
    pub delivery_started: Option<u64>,
    pub welcomes_at_start: u32,
}

impl Default for SleepTrack {
    fn default() -> Self {
        Self {
            may_connect: true,
            wakes: 0,
            wakes_since_delivery: 0,
            unreported_reset: None,
            delivery_started: None,
            welcomes_at_start: 0,
        }
    }
}

/// The body's fixed part. `B` is `&Batch` when writing and `Batch` when reading.
#[derive(Serialize, Deserialize)]
struct Kept<B> {
    boot_id: u32,
    saved_at: u64,
    wakes: u32,
    wakes_since_delivery: u32,
    unreported_reset: Option<ResetReason>,
    next_seq: u32,
    dropped_readings: u32,
    dropped_frames: u32,
    hub_offset_ms: Option<i64>,
    sntp_offset_ms: Option<i64>,
    open: Option<(u64, B)>,
    /// Fill of the region at save, per mille.
    fill_permille: u16,
    frames: u16,
}

/// The checked body of an image.
fn body(image: &[u8]) -> Result<&[u8], SleepImageError> {
    let min = SLEEP_HEADER_BYTES + SLEEP_CRC_BYTES;
    if image.len() < min {
        return Err(SleepImageError::TooShort { len: image.len() });
    }
    let found = [image[0], image[1], image[2], image[3]];
    if found != SLEEP_MAGIC {
        return Err(SleepImageError::BadMagic { found });
    }
    if image[4] != SLEEP_VERSION {
        return Err(SleepImageError::UnsupportedVersion {
            found: image[4],
            supported: SLEEP_VERSION,
        });
    }
    let len = usize::from(u16::from_le_bytes([image[6], image[7]]));
    if len > image.len() - min {
        return Err(SleepImageError::BadLength {
            len,
            available: image.len() - min,
        });
    }
    let end = SLEEP_HEADER_BYTES + len;
    let stored = u32::from_le_bytes([image[end], image[end + 1], image[end + 2], image[end + 3]]);
    let computed = crc32(&image[..end]);
    if stored != computed {
        return Err(SleepImageError::CrcMismatch { stored, computed });
    }
    Ok(&image[SLEEP_HEADER_BYTES..end])
}

/// A kept frame: seq, readings, bytes.
type KeptFrame<'a> = (u32, u16, &'a [u8]);

/// One kept frame, and what follows it.
fn take_frame(rest: &[u8]) -> Option<(KeptFrame<'_>, &[u8])> {
    let head = rest.get(..SLEEP_FRAME_OVERHEAD)?;
    let seq = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    let readings = u16::from_le_bytes([head[4], head[5]]);
    let len = usize::from(u16::from_le_bytes([head[6], head[7]]));
    let bytes = rest.get(SLEEP_FRAME_OVERHEAD..SLEEP_FRAME_OVERHEAD + len)?;
    Some(((seq, readings, bytes), &rest[SLEEP_FRAME_OVERHEAD + len..]))
}

/// A valid image, read without restoring it: what a wake would continue, and what a power
/// loss at this moment would lose.
#[derive(Debug, Clone)]
pub struct KeptImage<'a> {
    pub boot_id: u32,
    /// Uptime when it was saved.
    pub saved_at: u64,
    pub wakes: u32,
    /// Readings in the open batch (never sent yet).
    pub open_readings: u64,
    frames: &'a [u8],
    count: u16,
}

impl<'a> KeptImage<'a> {
    pub fn parse(image: &'a [u8]) -> Result<Self, SleepImageError> {
        let (kept, rest): (Kept<Batch>, _) =
            postcard::take_from_bytes(body(image)?).map_err(|_| SleepImageError::Body)?;
        let me = Self {
            boot_id: kept.boot_id,
            saved_at: kept.saved_at,
            wakes: kept.wakes,
            open_readings: kept.open.map_or(0, |(_, b)| b.readings.len() as u64),
            frames: rest,
            count: kept.frames,
        };
        if me.frames().count() != usize::from(me.count) {
            return Err(SleepImageError::Body);
        }
        Ok(me)
    }

    /// The kept batch frames, oldest first: `(seq, readings)`.
    pub fn frames(&self) -> impl Iterator<Item = (u32, u16)> + 'a {
        let mut rest = self.frames;
        (0..self.count).map_while(move |_| {
            let ((seq, readings, _), more) = take_frame(rest)?;
            rest = more;
            Some((seq, readings))
        })
    }

    /// Every reading kept: the frames' and the open batch's.
    pub fn readings(&self) -> u64 {
        self.open_readings + self.frames().map(|(_, r)| u64::from(r)).sum::<u64>()
    }
}

impl<const OUTBOX_BYTES: usize, const OUTBOX_FRAMES: usize>
    DeviceCore<OUTBOX_BYTES, OUTBOX_FRAMES>
{
    /// A core for one wake of a sleepy device, at uptime `now` (the board's RTC timer, which
    /// runs through deep sleep). Continues the kept `image` when it is valid (its boot id
    /// replaces `cfg.boot_id`), else starts clean and says why in [`WakeReport::cold`].
    ///
    /// The core samples at once; it connects only after [`DeviceCore::start_delivery`], which
    /// the shell calls when [`WakeReport::deliver`] says so, once the samples are taken.
    pub fn wake(
        mut cfg: CoreConfig,
        now: u64,
        image: &[u8],
        policy: &SleepPolicy,
    ) -> Result<(Self, WakeReport), ConfigError> {
        let kept = body(image).and_then(|body| {
            let (kept, rest): (Kept<Batch>, &[u8]) =
                postcard::take_from_bytes(body).map_err(|_| SleepImageError::Body)?;
            if now < kept.saved_at {
                return Err(SleepImageError::ClockWentBack {
                    saved_at: kept.saved_at,
                    now,
                });
            }
            Ok((kept, rest))
        });
        let (kept, mut rest) = match kept {
            Ok(k) => k,
            Err(e) => {
                let reason = cfg.reset_reason;
                let mut core = Self::new(cfg, now)?;
                core.sleep.may_connect = false;
                core.sleep.wakes = 1;
                if reason != ResetReason::DeepSleepWake {
                    core.sleep.unreported_reset = Some(reason);
                }
                let report = WakeReport {
                    cold: Some(e),
                    wake: 1,
                    kept_readings: 0,
                    // A cold start says Hello at once: the hub learns of the (re)boot.
                    deliver: true,
                };
                return Ok((core, report));
            }
        };
        cfg.boot_id = kept.boot_id;
        // A deep-sleep wake reports the last abnormal reset until a hub has seen it.
        let unreported = if cfg.reset_reason == ResetReason::DeepSleepWake {
            kept.unreported_reset
        } else {
            Some(cfg.reset_reason)
        };
        if let Some(r) = unreported {
            cfg.reset_reason = r;
        }
        let mut core = Self::new(cfg, now)?;
        let mut held = 0u64;
        core.batcher.restore(kept.next_seq, None);
        for _ in 0..kept.frames {
            let Some(((seq, readings, bytes), more)) = take_frame(rest) else {
                break;
            };
            // A frame that no longer fits (a smaller outbox after an update) is dropped and
            // counted by the outbox itself.
            let _ = core.outbox.push(seq, readings, bytes);
            held += u64::from(readings);
            rest = more;
        }
        core.outbox.restore_dropped(
            kept.dropped_readings
                .saturating_add(core.outbox.dropped_readings()),
            kept.dropped_frames
                .saturating_add(core.outbox.dropped_frames()),
        );
        if let Some((_, b)) = &kept.open {
            held += b.readings.len() as u64;
        }
        core.batcher.restore(kept.next_seq, kept.open);
        core.clock
            .restore_offsets(kept.hub_offset_ms, kept.sntp_offset_ms);
        core.sleep.may_connect = false;
        core.sleep.wakes = kept.wakes.saturating_add(1);
        core.sleep.wakes_since_delivery = kept.wakes_since_delivery.saturating_add(1);
        core.sleep.unreported_reset = unreported;
        // A crash is worth a connection: the hub shows the reason.
        let abnormal = matches!(
            unreported,
            Some(ResetReason::Panic | ResetReason::Watchdog | ResetReason::Brownout)
        );
        let deliver = core.sleep.wakes_since_delivery >= policy.send_every.max(1)
            || kept.fill_permille >= policy.send_when_full_permille
            || abnormal;
        let report = WakeReport {
            cold: None,
            wake: core.sleep.wakes,
            kept_readings: held,
            deliver,
        };
        Ok((core, report))
    }

    /// This wake delivers: close the open batch (so this wake's samples go too) and connect
    /// now. Call after the wake's sampling round.
    pub fn start_delivery(&mut self, now: u64) {
        if matches!(self.state, SessionState::Revoked | SessionState::Stopped) {
            return;
        }
        self.close_batch();
        self.sleep.may_connect = true;
        self.sleep.delivery_started = Some(now);
        self.sleep.welcomes_at_start = self.stats.welcomes;
        if matches!(self.state, SessionState::Waiting { .. }) {
            self.state = SessionState::Waiting { reconnect_at: now };
        }
    }

    /// Whether this wake is over and the board may sleep: it only sampled, or the hub acked
    /// every batch, or the delivery budget ran out (the backlog waits for the next delivery),
    /// or the token was revoked.
    pub fn wake_done(&self, now: u64, policy: &SleepPolicy) -> bool {
        let Some(started) = self.sleep.delivery_started else {
            return true;
        };
        self.is_revoked()
            || (self.state == SessionState::Streaming && self.outbox.is_empty())
            || now >= started.saturating_add(u64::from(policy.delivery_budget_ms))
    }

    /// Write what the next wake needs into `region` (the board's RTC memory), at uptime `now`
    /// just before sleeping. Returns the image length. When the region is too small the oldest
    /// frames are dropped and counted (see [`CoreStats::dropped_readings`]) until it fits.
    ///
    /// [`CoreStats::dropped_readings`]: super::CoreStats::dropped_readings
    pub fn save_for_sleep(&mut self, now: u64, region: &mut [u8]) -> Result<usize, SleepSaveError> {
        let delivered = self.sleep.delivery_started.is_some()
            && self.stats.welcomes > self.sleep.welcomes_at_start
            && self.outbox.is_empty();
        let wakes_since_delivery = if delivered {
            0
        } else {
            self.sleep.wakes_since_delivery
        };
        let room = region
            .len()
            .min(SLEEP_HEADER_BYTES + MAX_SLEEP_BODY + SLEEP_CRC_BYTES);
        let body_room = room.saturating_sub(SLEEP_HEADER_BYTES + SLEEP_CRC_BYTES);
        loop {
            let frames_bytes: usize = self
                .outbox
                .frames()
                .map(|(_, _, b)| SLEEP_FRAME_OVERHEAD + b.len())
                .sum();
            let (hub_offset_ms, sntp_offset_ms) = self.clock.offsets();
            let kept = Kept {
                boot_id: self.hello.boot_id,
                saved_at: now,
                wakes: self.sleep.wakes,
                wakes_since_delivery,
                unreported_reset: self.sleep.unreported_reset,
                next_seq: self.batcher.next_seq(),
                dropped_readings: self.outbox.dropped_readings(),
                dropped_frames: self.outbox.dropped_frames(),
                hub_offset_ms,
                sntp_offset_ms,
                open: self.batcher.open_batch(),
                fill_permille: 0,
                frames: self.outbox.len() as u16,
            };
            let fixed = postcard::experimental::serialized_size(&kept).unwrap_or(usize::MAX);
            // The fill byte may grow by up to two varint bytes once known.
            let body_len = fixed.saturating_add(2).saturating_add(frames_bytes);
            if body_len > body_room {
                if self.outbox.drop_oldest_frame() {
                    continue;
                }
                return Err(SleepSaveError::RegionTooSmall {
                    len: region.len(),
                    needed: body_len + SLEEP_HEADER_BYTES + SLEEP_CRC_BYTES,
                });
            }
            let total = SLEEP_HEADER_BYTES + body_len + SLEEP_CRC_BYTES;
            let kept = Kept {
                fill_permille: (total * 1000 / region.len().max(1)).min(1000) as u16,
                ..kept
            };
            let body = &mut region[SLEEP_HEADER_BYTES..SLEEP_HEADER_BYTES + body_room];
            let mut at = match postcard::to_slice(&kept, body) {
                Ok(b) => b.len(),
                Err(_) => {
                    return Err(SleepSaveError::RegionTooSmall {
                        len: region.len(),
                        needed: total,
                    });
                }
            };
            for (seq, readings, bytes) in self.outbox.frames() {
                body[at..at + 4].copy_from_slice(&seq.to_le_bytes());
                body[at + 4..at + 6].copy_from_slice(&readings.to_le_bytes());
                body[at + 6..at + 8].copy_from_slice(&(bytes.len() as u16).to_le_bytes());
                at += SLEEP_FRAME_OVERHEAD;
                body[at..at + bytes.len()].copy_from_slice(bytes);
                at += bytes.len();
            }
            region[..4].copy_from_slice(&SLEEP_MAGIC);
            region[4] = SLEEP_VERSION;
            region[5] = 0;
            region[6..8].copy_from_slice(&(at as u16).to_le_bytes());
            let end = SLEEP_HEADER_BYTES + at;
            let crc = crc32(&region[..end]);
            region[end..end + SLEEP_CRC_BYTES].copy_from_slice(&crc.to_le_bytes());
            return Ok(end + SLEEP_CRC_BYTES);
        }
    }

    /// Wakes since the last cold start (0 for a core not started by [`DeviceCore::wake`]).
    pub fn wakes(&self) -> u32 {
        self.sleep.wakes
    }
}
