//! [`Frame`]: one whole message, with room in front for a transport's own header.

use bytes::{BufMut, BytesMut};

/// Bytes reserved in front of every frame's payload for the transport's header
/// (the stream transports write the payload length there, so a frame goes out in one write).
pub const FRAME_PREFIX: usize = 4;

/// One message moved by a transport: a payload with [`FRAME_PREFIX`] spare bytes in front.
///
/// Build one with [`Frame::new`] and append with [`Frame::extend_from_slice`] or
/// [`Frame::buf_mut`]; the transport fills the prefix when it sends.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    buf: BytesMut,
}

impl Frame {
    /// An empty frame.
    pub fn new() -> Self {
        Self::with_capacity(0)
    }

    /// An empty frame with room for `payload_capacity` bytes of payload.
    pub fn with_capacity(payload_capacity: usize) -> Self {
        let mut buf = BytesMut::with_capacity(FRAME_PREFIX + payload_capacity);
        buf.put_bytes(0, FRAME_PREFIX);
        Frame { buf }
    }

    /// A frame holding a copy of `payload`.
    pub fn from_payload(payload: &[u8]) -> Self {
        let mut frame = Self::with_capacity(payload.len());
        frame.extend_from_slice(payload);
        frame
    }

    /// Wraps a buffer whose first [`FRAME_PREFIX`] bytes are the prefix.
    pub(crate) fn from_prefixed(buf: BytesMut) -> Self {
        debug_assert!(buf.len() >= FRAME_PREFIX);
        Frame { buf }
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.buf[FRAME_PREFIX..]
    }

    /// The payload, mutable (to patch a header in place).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf[FRAME_PREFIX..]
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.buf.len() - FRAME_PREFIX
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends bytes to the payload.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The whole buffer, prefix included, to append to. Never shrink it below the prefix.
    pub fn buf_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// The whole buffer, prefix included.
    pub(crate) fn into_prefixed(self) -> BytesMut {
        self.buf
    }
}

impl Default for Frame {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame").field("len", &self.len()).finish()
    }
}
