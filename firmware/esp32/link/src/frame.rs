//! RFC 6455 frames over fixed buffers: [`FrameSink`] masks and queues outgoing frames (the
//! `embedded_svc::ws::Sender` the core's transport sends through), [`FrameReader`] cuts
//! incoming bytes into frames. Headers are edge-ws's `FrameHeader`; the buffers are ours, so
//! nothing here allocates.

use edge_ws::{FrameHeader, FrameType as EdgeFrameType};
use embedded_svc::ws::{ErrorType, FrameType, Sender};
use firmware::core::XorShift64;
use heapless::Vec;

/// Largest frame header a client writes: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER_BYTES: usize = 14;

/// Why a frame could not be queued or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// The outgoing queue cannot take this frame; the connection is dropped and the core
    /// resends on the next one (the queue is sized so this does not happen in practice).
    QueueFull { len: usize, free: usize },
    /// The hub sent a frame header that is not RFC 6455.
    Invalid,
    /// A frame larger than the receive buffer (no hub frame is: they stay under 256 bytes).
    TooLarge { len: u64, max: usize },
}

impl core::fmt::Display for FrameError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::QueueFull { len, free } => write!(
                f,
                "a {len}-byte frame does not fit the {free} bytes left in the send queue"
            ),
            Self::Invalid => write!(f, "the hub sent a frame that is not RFC 6455"),
            Self::TooLarge { len, max } => write!(
                f,
                "a {len}-byte frame is over the {max}-byte receive buffer"
            ),
        }
    }
}

impl core::error::Error for FrameError {}

impl embedded_svc::io::Error for FrameError {
    fn kind(&self) -> embedded_svc::io::ErrorKind {
        embedded_svc::io::ErrorKind::Other
    }
}

/// Outgoing frames, masked (a client must mask every frame), queued until the shell writes
/// them to the socket and calls [`FrameSink::clear`].
pub struct FrameSink<const N: usize> {
    buf: Vec<u8, N>,
    rng: XorShift64,
}

impl<const N: usize> FrameSink<N> {
    /// `seed` from the board's RNG: mask keys must not be predictable (RFC 6455 section 10.3).
    pub const fn new(seed: u64) -> Self {
        Self {
            buf: Vec::new(),
            rng: XorShift64::new(seed),
        }
    }

    /// The bytes queued so far.
    pub fn pending(&self) -> &[u8] {
        &self.buf
    }

    pub fn clear(&mut self) {
        self.buf.clear();
    }

    /// Queue bytes that are not a frame (the handshake request): `write` fills the free space
    /// and returns how much it used.
    pub fn push_raw<E>(
        &mut self,
        write: impl FnOnce(&mut [u8]) -> Result<usize, E>,
    ) -> Result<(), E> {
        let start = self.buf.len();
        let _ = self.buf.resize(N, 0);
        let used = write(&mut self.buf[start..]);
        self.buf.truncate(start + *used.as_ref().unwrap_or(&0));
        used.map(|_| ())
    }

    /// Queue one frame.
    pub fn push(&mut self, frame_type: FrameType, payload: &[u8]) -> Result<(), FrameError> {
        let header = FrameHeader {
            frame_type: to_edge(frame_type),
            payload_len: payload.len() as u64,
            mask_key: Some(self.rng.next_u64() as u32),
        };
        let len = header.serialized_len() + payload.len();
        let start = self.buf.len();
        let free = N - start;
        if len > free {
            return Err(FrameError::QueueFull { len, free });
        }
        // Capacity was checked: these cannot fail.
        let _ = self.buf.resize(start + len, 0);
        let body = header
            .serialize(&mut self.buf[start..])
            .map_err(|_| FrameError::QueueFull { len, free })?;
        let payload_at = start + body;
        self.buf[payload_at..].copy_from_slice(payload);
        header.mask(&mut self.buf[payload_at..], 0);
        Ok(())
    }
}

impl<const N: usize> ErrorType for FrameSink<N> {
    type Error = FrameError;
}

impl<const N: usize> Sender for FrameSink<N> {
    fn send(&mut self, frame_type: FrameType, frame_data: &[u8]) -> Result<(), Self::Error> {
        self.push(frame_type, frame_data)
    }
}

/// One complete frame at the front of a [`FrameReader`]'s buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub frame_type: FrameType,
    payload_start: usize,
    payload_end: usize,
}

/// Incoming bytes, cut into frames. The shell reads from the socket into [`FrameReader::space`],
/// [`FrameReader::filled`]s what it read, then takes frames with [`FrameReader::next_frame`] and
/// their bytes with [`FrameReader::payload`] until `None`, then [`FrameReader::consume`]s them.
pub struct FrameReader<const N: usize> {
    buf: [u8; N],
    len: usize,
    /// Bytes at the front already handed out as frames.
    taken: usize,
}

impl<const N: usize> Default for FrameReader<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> FrameReader<N> {
    pub const fn new() -> Self {
        Self {
            buf: [0; N],
            len: 0,
            taken: 0,
        }
    }

    pub fn reset(&mut self) {
        self.len = 0;
        self.taken = 0;
    }

    /// Where the next read goes (empty: a frame larger than the buffer, see `next_frame`).
    pub fn space(&mut self) -> &mut [u8] {
        &mut self.buf[self.len..]
    }

    pub fn filled(&mut self, n: usize) {
        self.len = (self.len + n).min(N);
    }

    /// Bytes received and not yet taken as frames (e.g. handshake bytes before the first frame).
    pub fn unread(&self) -> &[u8] {
        &self.buf[self.taken..self.len]
    }

    /// Drop `n` bytes from the front of what is unread (the handshake response).
    pub fn skip(&mut self, n: usize) {
        self.taken = (self.taken + n).min(self.len);
    }

    /// The next complete frame, if one has arrived.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, FrameError> {
        let unread = &self.buf[self.taken..self.len];
        let (header, header_len) = match FrameHeader::deserialize(unread) {
            Ok(h) => h,
            Err(edge_ws::Error::Incomplete(_)) => return Ok(None),
            Err(_) => return Err(FrameError::Invalid),
        };
        let max = N - MAX_HEADER_BYTES;
        if header.payload_len > max as u64 {
            return Err(FrameError::TooLarge {
                len: header.payload_len,
                max,
            });
        }
        let total = header_len + header.payload_len as usize;
        if unread.len() < total {
            return Ok(None);
        }
        let payload_start = self.taken + header_len;
        let payload_end = self.taken + total;
        // A server must not mask; unmask anyway rather than hand the core scrambled bytes.
        header.mask(&mut self.buf[payload_start..payload_end], 0);
        self.taken = payload_end;
        Ok(Some(Frame {
            frame_type: from_edge(header.frame_type),
            payload_start,
            payload_end,
        }))
    }

    pub fn payload(&self, frame: &Frame) -> &[u8] {
        &self.buf[frame.payload_start..frame.payload_end]
    }

    /// Forget the frames taken so far, moving any partial frame to the front.
    pub fn consume(&mut self) {
        self.buf.copy_within(self.taken..self.len, 0);
        self.len -= self.taken;
        self.taken = 0;
    }
}

fn to_edge(t: FrameType) -> EdgeFrameType {
    match t {
        FrameType::Text(f) => EdgeFrameType::Text(f),
        FrameType::Binary(f) => EdgeFrameType::Binary(f),
        FrameType::Ping => EdgeFrameType::Ping,
        FrameType::Pong => EdgeFrameType::Pong,
        FrameType::Close | FrameType::SocketClose => EdgeFrameType::Close,
        FrameType::Continue(last) => EdgeFrameType::Continue(last),
    }
}

fn from_edge(t: EdgeFrameType) -> FrameType {
    match t {
        EdgeFrameType::Text(f) => FrameType::Text(f),
        EdgeFrameType::Binary(f) => FrameType::Binary(f),
        EdgeFrameType::Ping => FrameType::Ping,
        EdgeFrameType::Pong => FrameType::Pong,
        EdgeFrameType::Close => FrameType::Close,
        EdgeFrameType::Continue(last) => FrameType::Continue(last),
    }
}
