//! The bounded outbox: encoded batch frames kept until the hub acks them.
//!
//! Frames are stored already encoded, so a resend after a reconnect costs no encoding and the
//! bytes on the wire are the same every time. Storage is one byte ring of `BYTES` plus at most
//! `FRAMES` entries (both const generics, so the memory is fixed at build time; tighter limits
//! may be set at run time with [`Outbox::with_limits`]).
//!
//! Each frame sits contiguously in the ring (a frame that would straddle the end starts again
//! at 0), so a frame is always one `&[u8]` for the socket. Free space is derived from the
//! oldest and newest entries: removing a frame from the middle (a Reject) leaves a hole that is
//! reclaimed when the frames before it are released.
//!
//! At the limit the **oldest** frame is dropped and its readings counted: fresh data is worth
//! more than stale, and the count travels to the hub in every batch (`Batch.dropped`). A frame
//! dropped while in flight may still have been stored by the hub; it is counted anyway (the
//! count is "given up on by the device", an upper bound on what was lost).
//!
//! Frames go out in seq order, at most `max_in_flight` unacked at once, so a reconnect with a
//! long backlog does not fill the socket's send buffer (and the hub's) in one burst.

use heapless::Vec;

/// A frame that can never fit this outbox, even empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a frame of {len} bytes does not fit an outbox of {capacity} bytes")]
pub struct FrameTooLarge {
    pub len: usize,
    pub capacity: usize,
}

/// What an ack released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Released {
    pub frames: usize,
    pub readings: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    seq: u32,
    start: usize,
    len: usize,
    readings: u16,
}

impl Entry {
    fn end(&self) -> usize {
        self.start + self.len
    }
}

/// Unacked batch frames, oldest first.
#[derive(Debug, Clone)]
pub struct Outbox<const BYTES: usize, const FRAMES: usize> {
    ring: [u8; BYTES],
    entries: Vec<Entry, FRAMES>,
    /// The first `sent` entries went out on the current connection.
    sent: usize,
    max_bytes: usize,
    max_frames: usize,
    dropped_readings: u32,
    dropped_frames: u32,
}

impl<const BYTES: usize, const FRAMES: usize> Default for Outbox<BYTES, FRAMES> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const BYTES: usize, const FRAMES: usize> Outbox<BYTES, FRAMES> {
    /// An outbox using its whole const capacity.
    pub const fn new() -> Self {
        Self {
            ring: [0; BYTES],
            entries: Vec::new(),
            sent: 0,
            max_bytes: BYTES,
            max_frames: FRAMES,
            dropped_readings: 0,
            dropped_frames: 0,
        }
    }

    /// An outbox using at most `max_bytes` of its ring and `max_frames` entries (each clamped
    /// to the const capacity; at least one frame).
    pub fn with_limits(max_bytes: usize, max_frames: usize) -> Self {
        let mut o = Self::new();
        o.max_bytes = max_bytes.min(BYTES);
        o.max_frames = max_frames.clamp(1, FRAMES.max(1));
        o
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Readings in all unacked frames.
    pub fn readings(&self) -> u64 {
        self.entries.iter().map(|e| u64::from(e.readings)).sum()
    }

    /// Bytes of the frames held (holes left by Rejects not included).
    pub fn bytes(&self) -> usize {
        self.entries.iter().map(|e| e.len).sum()
    }

    /// Frames sent on this connection and not yet acked.
    pub fn in_flight(&self) -> usize {
        self.sent
    }

    /// Readings dropped at the limit so far (this boot), cumulative.
    pub fn dropped_readings(&self) -> u32 {
        self.dropped_readings
    }

    pub fn dropped_frames(&self) -> u32 {
        self.dropped_frames
    }

    /// The seqs held, oldest first.
    pub fn seqs(&self) -> impl Iterator<Item = u32> + '_ {
        self.entries.iter().map(|e| e.seq)
    }

    /// The frame with this seq, if held.
    pub fn frame(&self, seq: u32) -> Option<&[u8]> {
        self.entries
            .iter()
            .find(|e| e.seq == seq)
            .map(|e| &self.ring[e.start..e.end()])
    }

    /// Every frame held, oldest first: `(seq, readings, bytes)`.
    pub fn frames(&self) -> impl Iterator<Item = (u32, u16, &[u8])> + '_ {
        self.entries
            .iter()
            .map(|e| (e.seq, e.readings, &self.ring[e.start..e.end()]))
    }

    /// Give up on the oldest frame, counting its readings as dropped (a deep-sleep image that
    /// would not fit its memory). Returns false when empty.
    pub fn drop_oldest_frame(&mut self) -> bool {
        let any = !self.entries.is_empty();
        self.drop_oldest();
        any
    }

    /// Continue the drop counts of a boot that went through a deep sleep.
    pub fn restore_dropped(&mut self, readings: u32, frames: u32) {
        self.dropped_readings = readings;
        self.dropped_frames = frames;
    }

    /// Count readings that were lost before reaching the outbox (a frame too large for it).
    pub fn record_lost(&mut self, readings: u16) {
        self.dropped_readings = self.dropped_readings.saturating_add(u32::from(readings));
        self.dropped_frames = self.dropped_frames.saturating_add(1);
    }

    /// Drop the oldest frames until a frame of `len` bytes fits. The caller can then read the
    /// new drop count and encode it into the frame before [`Outbox::push`].
    pub fn reserve(&mut self, len: usize) -> Result<(), FrameTooLarge> {
        if len > self.max_bytes {
            return Err(FrameTooLarge {
                len,
                capacity: self.max_bytes,
            });
        }
        while self.entries.len() >= self.max_frames || self.place(len).is_none() {
            self.drop_oldest();
        }
        Ok(())
    }

    /// Store a frame, dropping the oldest if needed.
    pub fn push(&mut self, seq: u32, readings: u16, frame: &[u8]) -> Result<(), FrameTooLarge> {
        self.reserve(frame.len())?;
        // `reserve` emptied the outbox if it had to, and an empty outbox places any frame
        // within `max_bytes` at 0.
        let start = self.place(frame.len()).unwrap_or(0);
        self.ring[start..start + frame.len()].copy_from_slice(frame);
        // `reserve` made room for one more entry.
        let _ = self.entries.push(Entry {
            seq,
            start,
            len: frame.len(),
            readings,
        });
        Ok(())
    }

    /// The next frame to send, if fewer than `max_in_flight` are unacked: marks it sent.
    pub fn next_unsent(&mut self, max_in_flight: usize) -> Option<&[u8]> {
        if self.sent >= max_in_flight {
            return None;
        }
        let e = *self.entries.get(self.sent)?;
        self.sent += 1;
        Some(&self.ring[e.start..e.end()])
    }

    /// The connection is gone: everything unacked goes out again, in order, on the next.
    pub fn rewind(&mut self) {
        self.sent = 0;
    }

    /// Cumulative ack: release every frame with seq <= `seq`.
    pub fn release_through(&mut self, seq: u32) -> Released {
        let n = self.entries.iter().take_while(|e| e.seq <= seq).count();
        let readings = self.entries[..n]
            .iter()
            .map(|e| u64::from(e.readings))
            .sum();
        self.remove_front(n);
        Released {
            frames: n,
            readings,
        }
    }

    /// Give up on every frame with seq <= `seq`, counting their readings as dropped.
    pub fn drop_through(&mut self, seq: u32) {
        while self.entries.first().is_some_and(|e| e.seq <= seq) {
            self.drop_oldest();
        }
    }

    /// Release one frame (the hub rejected it for good). Returns its readings.
    pub fn remove(&mut self, seq: u32) -> Option<u16> {
        let i = self.entries.iter().position(|e| e.seq == seq)?;
        let e = self.entries.remove(i);
        if i < self.sent {
            self.sent -= 1;
        }
        Some(e.readings)
    }

    fn drop_oldest(&mut self) {
        if let Some(e) = self.entries.first() {
            self.dropped_readings = self.dropped_readings.saturating_add(u32::from(e.readings));
            self.dropped_frames = self.dropped_frames.saturating_add(1);
            self.remove_front(1);
        }
    }

    fn remove_front(&mut self, n: usize) {
        let n = n.min(self.entries.len());
        self.entries.rotate_left(n);
        self.entries.truncate(self.entries.len() - n);
        self.sent = self.sent.saturating_sub(n);
    }

    /// Where a frame of `len` bytes would go, if it fits now.
    fn place(&self, len: usize) -> Option<usize> {
        let cap = self.max_bytes;
        let (Some(first), Some(last)) = (self.entries.first(), self.entries.last()) else {
            return (len <= cap).then_some(0);
        };
        let wrapped = last.start < first.start;
        if wrapped {
            // Used: [first.start, ..) and [0, last.end()); free: the gap between.
            (first.start - last.end() >= len).then_some(last.end())
        } else if cap.saturating_sub(last.end()) >= len {
            Some(last.end())
        } else {
            (first.start >= len).then_some(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(seq: u32, len: usize) -> [u8; 64] {
        let mut f = [0u8; 64];
        f[..len].fill(seq as u8);
        f
    }

    fn push(o: &mut Outbox<100, 8>, seq: u32, len: usize) {
        o.push(seq, 10, &frame(seq, len)[..len]).unwrap();
    }

    #[test]
    fn frames_come_back_intact_after_wrapping_around_the_ring() {
        let mut o: Outbox<100, 8> = Outbox::new();
        for seq in 1..=3 {
            push(&mut o, seq, 30);
        }
        o.release_through(2);
        // 10 bytes left at the end: the next frame starts again at 0.
        push(&mut o, 4, 40);
        assert_eq!(o.seqs().collect::<std::vec::Vec<_>>(), [3, 4]);
        assert_eq!(o.frame(3).unwrap(), &[3u8; 30]);
        assert_eq!(o.frame(4).unwrap(), &[4u8; 40]);
        assert_eq!(o.dropped_readings(), 0);
    }

    #[test]
    fn the_entry_limit_drops_the_oldest() {
        let mut o: Outbox<100, 8> = Outbox::with_limits(100, 2);
        for seq in 1..=3 {
            push(&mut o, seq, 5);
        }
        assert_eq!(o.seqs().collect::<std::vec::Vec<_>>(), [2, 3]);
        assert_eq!((o.dropped_frames(), o.dropped_readings()), (1, 10));
    }

    #[test]
    fn a_frame_larger_than_the_outbox_is_refused() {
        let mut o: Outbox<100, 8> = Outbox::with_limits(50, 8);
        assert_eq!(
            o.push(1, 1, &[0; 60]),
            Err(FrameTooLarge {
                len: 60,
                capacity: 50
            })
        );
        assert!(o.is_empty());
    }

    #[test]
    fn in_flight_window_and_rewind() {
        let mut o: Outbox<100, 8> = Outbox::new();
        for seq in 1..=3 {
            push(&mut o, seq, 5);
        }
        assert_eq!(o.next_unsent(2), Some(&[1u8; 5][..]));
        assert_eq!(o.next_unsent(2), Some(&[2u8; 5][..]));
        assert_eq!(o.next_unsent(2), None);
        o.release_through(1);
        assert_eq!(o.next_unsent(2), Some(&[3u8; 5][..]));
        o.rewind();
        assert_eq!(o.next_unsent(2), Some(&[2u8; 5][..]));
        assert_eq!(o.remove(2), Some(10));
        assert_eq!(o.in_flight(), 0);
        assert_eq!(o.next_unsent(2), Some(&[3u8; 5][..]));
    }

    #[test]
    fn a_hole_left_by_a_reject_is_reclaimed_once_older_frames_go() {
        let mut o: Outbox<100, 8> = Outbox::new();
        for seq in 1..=3 {
            push(&mut o, seq, 30);
        }
        o.remove(2);
        // 10 free bytes at the end, 0 at the front, a hole in the middle: no room for 40
        // without dropping seq 1.
        push(&mut o, 4, 40);
        assert_eq!(o.seqs().collect::<std::vec::Vec<_>>(), [3, 4]);
        assert_eq!(o.dropped_readings(), 10);
        assert_eq!(o.frame(3).unwrap(), &[3u8; 30]);
    }
}
