//! [`Bytes`]: a block of bytes that crosses the wire without being copied into a fresh
//! allocation on the receiving side.

use std::cell::RefCell;
use std::fmt;
use std::ops::Deref;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// An immutable, cheaply cloned block of bytes, for large arguments and return values.
///
/// On the wire it is exactly a `Vec<u8>` (a length, then the bytes), so a method may switch
/// between the two without changing its schema. What differs is the receiving side: a
/// `Vec<u8>` is decoded into a fresh allocation (for 64 MiB, a fresh mapping page-faulted in
/// at every call), while a `Bytes` is a slice of the received frame itself, with no copy.
///
/// # Where the bytes are copied
///
/// - Sending, the bytes are serialized straight into the transport's buffer: the
///   shared-memory ring or bulk region for `shm://`, the frame written to the socket otherwise.
/// - Receiving over `shm://`, a large message is copied once, by the transport, out of the
///   peer's bulk region into a buffer this process owns (reused across messages); the
///   `Bytes` handed to the handler or returned to the caller is a slice of that buffer, so
///   it never changes, whatever the peer writes into its region afterwards. Small messages
///   are copied out of the ring the same way.
/// - Receiving over a socket, the frame read from the socket is the buffer; large frames are
///   shared without a copy, small ones (under 16 KiB) are copied into the `Bytes`.
///
/// A `Bytes` keeps the whole received frame alive while it lives: copy it
/// ([`Bytes::copy_from_slice`]) to keep a small part of a large message for long.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(bytes::Bytes);

impl Bytes {
    /// An empty block.
    pub const fn new() -> Self {
        Bytes(bytes::Bytes::new())
    }

    /// A block of static bytes (no allocation).
    pub const fn from_static(bytes: &'static [u8]) -> Self {
        Bytes(bytes::Bytes::from_static(bytes))
    }

    /// A block holding a copy of `data`.
    pub fn copy_from_slice(data: &[u8]) -> Self {
        Bytes(bytes::Bytes::copy_from_slice(data))
    }

    /// The underlying [`bytes::Bytes`].
    pub fn into_inner(self) -> bytes::Bytes {
        self.0
    }

    /// The bytes as a vector (a copy unless this block was made from a vector it owns alone).
    pub fn into_vec(self) -> Vec<u8> {
        Vec::from(self.0)
    }
}

impl Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Bytes {
    /// Takes the vector's buffer, without copying it.
    fn from(vec: Vec<u8>) -> Self {
        Bytes(bytes::Bytes::from(vec))
    }
}

impl From<bytes::Bytes> for Bytes {
    fn from(bytes: bytes::Bytes) -> Self {
        Bytes(bytes)
    }
}

impl From<Bytes> for bytes::Bytes {
    fn from(bytes: Bytes) -> Self {
        bytes.0
    }
}

impl From<&'static [u8]> for Bytes {
    fn from(bytes: &'static [u8]) -> Self {
        Bytes::from_static(bytes)
    }
}

impl PartialEq<[u8]> for Bytes {
    fn eq(&self, other: &[u8]) -> bool {
        self.0 == other
    }
}

impl PartialEq<Vec<u8>> for Bytes {
    fn eq(&self, other: &Vec<u8>) -> bool {
        self.0 == other[..]
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // `byte_buf`, as `serde_bytes::ByteBuf` asks: the schema traces both the same way.
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a block of bytes")
    }

    fn visit_borrowed_bytes<E: serde::de::Error>(self, v: &'de [u8]) -> Result<Bytes, E> {
        Ok(Bytes(slice_of_source(v)))
    }

    // postcard's `byte_buf` hands the bytes over as a temporary slice, but it is still a slice
    // of the input: the source check applies the same.
    fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes(slice_of_source(v)))
    }

    fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(byte) = seq.next_element::<u8>()? {
            out.push(byte);
        }
        Ok(Bytes::from(out))
    }
}

/// Frames at least this long are shared when received over a socket, so [`Bytes`] values
/// are sliced from them; smaller ones stay as they are and their [`Bytes`] are copied (a copy
/// of a few KiB costs less than the shared handle).
pub(crate) const SHARE_FROM: usize = 16 * 1024;

/// `frame` shared (without a copy) when it is at least [`SHARE_FROM`] bytes long.
pub(crate) fn share_large(frame: &mut rpc_transport::Frame) {
    if frame.len() >= SHARE_FROM {
        frame.share();
    }
}

thread_local! {
    /// The frame being decoded on this thread, if it is shared: a [`Bytes`] decoded from it is
    /// a slice of it rather than a copy.
    static SOURCE: RefCell<Option<bytes::Bytes>> = const { RefCell::new(None) };
}

/// `v` as a slice of the frame being decoded when it lies inside it (checked by address, so a
/// slice of anything else, such as a decoder's scratch buffer, is copied), else a copy.
fn slice_of_source(v: &[u8]) -> bytes::Bytes {
    SOURCE.with(|source| match &*source.borrow() {
        Some(frame) if contains(frame, v) => frame.slice_ref(v),
        _ => bytes::Bytes::copy_from_slice(v),
    })
}

fn contains(outer: &[u8], inner: &[u8]) -> bool {
    let (start, end) = (
        outer.as_ptr() as usize,
        outer.as_ptr() as usize + outer.len(),
    );
    let at = inner.as_ptr() as usize;
    at >= start && at + inner.len() <= end
}

/// Runs `decode` with `source` as the frame [`Bytes`] values are sliced from (`None`: they
/// are copied). Decoding is synchronous, so a thread-local is enough; the previous source is
/// restored afterwards, even on a panic.
pub(crate) fn decoding_from<T>(source: Option<&bytes::Bytes>, decode: impl FnOnce() -> T) -> T {
    struct Restore(Option<bytes::Bytes>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            SOURCE.with(|source| *source.borrow_mut() = previous);
        }
    }
    let previous = SOURCE.with(|s| std::mem::replace(&mut *s.borrow_mut(), source.cloned()));
    let _restore = Restore(previous);
    decode()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_a_byte_vector() {
        let data: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let as_vec = postcard::to_stdvec(&serde_bytes::ByteBuf::from(data.clone())).unwrap();
        let as_bytes = postcard::to_stdvec(&Bytes::from(data.clone())).unwrap();
        assert_eq!(as_vec, as_bytes);
        let back: Bytes = postcard::from_bytes(&as_vec).unwrap();
        assert_eq!(back, data);
    }

    #[test]
    fn decoding_from_a_shared_frame_slices_it_without_a_copy() {
        let frame = bytes::Bytes::from(postcard::to_stdvec(&Bytes::from(vec![7u8; 1000])).unwrap());
        let decoded: Bytes = decoding_from(Some(&frame), || postcard::from_bytes(&frame).unwrap());
        assert_eq!(decoded.len(), 1000);
        let inside = frame.as_ptr() as usize..frame.as_ptr() as usize + frame.len();
        assert!(
            inside.contains(&(decoded.as_ptr() as usize)),
            "the block was copied"
        );
        // Without a source (or from another buffer) it is a copy.
        let copied: Bytes = postcard::from_bytes(&frame).unwrap();
        assert!(!inside.contains(&(copied.as_ptr() as usize)));
        let other = frame.to_vec();
        let copied: Bytes = decoding_from(Some(&frame), || postcard::from_bytes(&other).unwrap());
        assert_eq!(copied, decoded);
        assert!(!inside.contains(&(copied.as_ptr() as usize)));
    }

    #[test]
    fn self_describing_formats_round_trip() {
        let json = serde_json::to_string(&Bytes::from_static(b"abc")).unwrap();
        let back: Bytes = serde_json::from_str(&json).unwrap();
        assert_eq!(&back[..], b"abc");
    }
}
