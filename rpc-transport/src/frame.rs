//! [`Frame`]: one whole message, with room in front for a transport's own header.

use bytes::{BufMut, Bytes, BytesMut};

/// Bytes reserved in front of every frame's payload for the transport's header
/// (the stream transports write the payload length there, so a frame goes out in one write).
pub const FRAME_PREFIX: usize = 4;

/// One message moved by a transport: a payload with [`FRAME_PREFIX`] spare bytes in front.
///
/// Build one with [`Frame::new`] and append with [`Frame::extend_from_slice`] or
/// [`Frame::buf_mut`]; the transport fills the prefix when it sends. A received frame may be
/// shared, read-only bytes (a large shared-memory message, copied once out of the peer's
/// region into a buffer of this process, or a frame [`Frame::share`] converted); the mutating
/// methods then copy it first. A received frame never aliases memory the peer can write.
#[derive(Clone)]
pub struct Frame {
    repr: Repr,
}

#[derive(Clone)]
enum Repr {
    /// An owned buffer whose first `FRAME_PREFIX` bytes are the prefix.
    Owned(BytesMut),
    /// A shared, read-only payload (no prefix).
    Shared(Bytes),
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
        Frame {
            repr: Repr::Owned(buf),
        }
    }

    /// A frame of `len` payload bytes written by `fill`.
    pub fn filled(len: usize, fill: impl FnOnce(&mut [u8])) -> Self {
        let mut buf = BytesMut::zeroed(FRAME_PREFIX + len);
        fill(&mut buf[FRAME_PREFIX..]);
        Frame {
            repr: Repr::Owned(buf),
        }
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
        Frame {
            repr: Repr::Owned(buf),
        }
    }

    /// A frame whose payload is `payload`, shared rather than copied.
    pub(crate) fn from_shared(payload: Bytes) -> Self {
        Frame {
            repr: Repr::Shared(payload),
        }
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        match &self.repr {
            Repr::Owned(buf) => &buf[FRAME_PREFIX..],
            Repr::Shared(bytes) => bytes,
        }
    }

    fn owned(&mut self) -> &mut BytesMut {
        if let Repr::Shared(bytes) = &self.repr {
            let mut buf = BytesMut::with_capacity(FRAME_PREFIX + bytes.len());
            buf.put_bytes(0, FRAME_PREFIX);
            buf.extend_from_slice(bytes);
            self.repr = Repr::Owned(buf);
        }
        match &mut self.repr {
            Repr::Owned(buf) => buf,
            Repr::Shared(_) => unreachable!("made owned above"),
        }
    }

    /// The payload as shared bytes, converting an owned frame in place without copying its
    /// bytes (the buffer is frozen). Slices of it ([`Bytes::slice_ref`]) keep the payload alive
    /// without a copy: this is how a received `rpc_core::Bytes` argument borrows nothing yet
    /// costs no copy.
    pub fn share(&mut self) -> &Bytes {
        if let Repr::Owned(buf) = &mut self.repr {
            let payload = std::mem::take(buf).freeze().slice(FRAME_PREFIX..);
            self.repr = Repr::Shared(payload);
        }
        match &self.repr {
            Repr::Shared(bytes) => bytes,
            Repr::Owned(_) => unreachable!("made shared above"),
        }
    }

    /// The payload as shared bytes if the frame already holds it that way (a large
    /// shared-memory message, or a frame [`share`](Self::share) converted).
    pub fn shared_payload(&self) -> Option<&Bytes> {
        match &self.repr {
            Repr::Shared(bytes) => Some(bytes),
            Repr::Owned(_) => None,
        }
    }

    /// The payload, mutable (to patch a header in place).
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.owned()[FRAME_PREFIX..]
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.payload().len()
    }

    /// Whether the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends bytes to the payload.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        self.owned().extend_from_slice(bytes);
    }

    /// The whole buffer, prefix included, to append to. Never shrink it below the prefix.
    pub fn buf_mut(&mut self) -> &mut BytesMut {
        self.owned()
    }

    /// The whole buffer, prefix included.
    pub(crate) fn into_prefixed(mut self) -> BytesMut {
        std::mem::take(self.owned())
    }
}

impl Default for Frame {
    fn default() -> Self {
        Self::new()
    }
}

impl PartialEq for Frame {
    fn eq(&self, other: &Self) -> bool {
        self.payload() == other.payload()
    }
}

impl Eq for Frame {}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame").field("len", &self.len()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_frames_read_like_owned_ones_and_copy_on_write() {
        let mut shared = Frame::from_shared(Bytes::from_static(b"hello"));
        assert_eq!(shared, Frame::from_payload(b"hello"));
        shared.payload_mut()[0] = b'j';
        shared.extend_from_slice(b"!");
        assert_eq!(shared.payload(), b"jello!");
        assert_eq!(&shared.into_prefixed()[FRAME_PREFIX..], b"jello!");
    }

    #[test]
    fn sharing_an_owned_frame_keeps_its_bytes_in_place() {
        let mut frame = Frame::from_payload(b"hello world");
        let before = frame.payload().as_ptr();
        let shared = frame.share().clone();
        assert_eq!(&shared[..], b"hello world");
        assert_eq!(shared.as_ptr(), before, "sharing copied the payload");
        assert_eq!(frame.shared_payload(), Some(&shared));
        assert_eq!(frame.payload(), b"hello world");
    }
}
