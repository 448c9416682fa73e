//! Hooks for the fuzz targets (`tests/fuzz`) and the property tests: **not a public API**, it
//! changes without notice.
//!
//! Exposes, and only for that purpose:
//! - [`take_frame`] and [`length_prefixed`]: the stream framing's decoder and encoder;
//! - [`StreamDecoder`]: the async stream receiver every byte-stream transport uses, reading
//!   from a list of chunks (one per read) so a test decides where the stream is split;
//! - [`BlockingStreamDecoder`]: the blocking transports' stream receiver, on a Unix socket
//!   pair;
//! - [`HostileRing`]: a shared-memory ring in a real mapped region, with the real consumer
//!   (and a producer) on it, whose bytes a test may overwrite at will between operations.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, ReadBuf};

use crate::blocking::SyncStreamReceiver;
use crate::error::TransportError;
use crate::frame::Frame;
use crate::stream::{self, Buffered, StreamReceiver, TryRead};

pub use crate::shm::fuzzing::{HostileRing, RING_CONTROL, RingError, RingRecord};

/// Splits the first frame off `buf` when it is all there (`Ok(None)` when more bytes are
/// needed); a prefix announcing more than `limit` payload bytes is
/// [`TransportError::FrameTooLarge`].
pub fn take_frame(buf: &mut BytesMut, limit: usize) -> Result<Option<Frame>, TransportError> {
    match stream::take_frame(buf, limit)? {
        Buffered::Frame(frame) => Ok(Some(frame)),
        Buffered::Partial { .. } | Buffered::NoPrefix => Ok(None),
    }
}

/// `frame` as it goes on a byte stream: length prefix, then payload; a frame over `limit`
/// is [`TransportError::FrameTooLarge`].
pub fn length_prefixed(frame: Frame, limit: usize) -> Result<BytesMut, TransportError> {
    stream::length_prefixed(frame, limit)
}

/// A byte stream that hands out one chunk per read (less if the reader's buffer is smaller),
/// then end-of-stream. Never pending.
#[derive(Debug)]
struct ChunkReader {
    chunks: VecDeque<Vec<u8>>,
}

impl AsyncRead for ChunkReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        // Empty chunks would read as end-of-stream: skip them.
        while self.chunks.front().is_some_and(Vec::is_empty) {
            self.chunks.pop_front();
        }
        if let Some(chunk) = self.chunks.front_mut() {
            let n = chunk.len().min(buf.remaining());
            buf.put_slice(&chunk[..n]);
            chunk.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl TryRead for ChunkReader {
    fn try_read_now(&mut self, _: &mut BytesMut) -> std::io::Result<usize> {
        Err(std::io::ErrorKind::WouldBlock.into())
    }
}

/// The byte-stream transports' frame receiver over a stream made of `chunks`.
#[derive(Debug)]
pub struct StreamDecoder {
    inner: StreamReceiver<ChunkReader>,
}

impl StreamDecoder {
    /// A receiver accepting frames of up to `limit` bytes from the concatenation of
    /// `chunks`, which arrive one per read.
    pub fn new(chunks: Vec<Vec<u8>>, limit: usize) -> Self {
        let reader = ChunkReader {
            chunks: chunks.into(),
        };
        StreamDecoder {
            inner: StreamReceiver::new(reader, limit, Duration::ZERO),
        }
    }

    /// Whether a whole frame is buffered.
    pub fn has_buffered(&self) -> bool {
        self.inner.has_buffered()
    }

    /// The next frame, `Ok(None)` at a clean end of stream. The reader is never pending, so
    /// the receive completes in one poll; should it not, that is reported as
    /// [`TransportError::Malformed`] (which a test comparing decoders then flags).
    pub fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        let mut future = std::pin::pin!(self.inner.recv());
        match future
            .as_mut()
            .poll(&mut Context::from_waker(std::task::Waker::noop()))
        {
            Poll::Ready(result) => result,
            Poll::Pending => Err(TransportError::Malformed(
                "the stream receiver waited on a reader that is always ready".into(),
            )),
        }
    }
}

/// The blocking byte-stream transports' frame receiver, reading a Unix socket whose other end
/// has been sent `bytes` and closed.
pub struct BlockingStreamDecoder {
    inner: SyncStreamReceiver<std::os::unix::net::UnixStream>,
}

impl BlockingStreamDecoder {
    /// A receiver accepting frames of up to `limit` bytes from `bytes`, which must fit the
    /// socket's buffer (some hundred KiB) as they are written before anything is read.
    pub fn new(bytes: &[u8], limit: usize) -> std::io::Result<Self> {
        use std::io::Write;
        let (mut writer, reader) = std::os::unix::net::UnixStream::pair()?;
        writer.write_all(bytes)?;
        drop(writer);
        Ok(BlockingStreamDecoder {
            inner: SyncStreamReceiver::new(reader, limit, Duration::ZERO),
        })
    }

    /// The next frame, `Ok(None)` at a clean end of stream.
    pub fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        self.inner.recv(None)
    }
}
