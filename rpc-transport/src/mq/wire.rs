//! The message format on both queues, fragmenting frames into messages and reassembling them.
//!
//! Each message is a 16-byte header and a chunk of a frame:
//! `[kind u8][reserved 3][length u32 LE][token u64 LE][chunk]`. `kind` is [`FIRST`] (the
//! frame's first chunk; `length` is the whole frame's), [`MORE`] (a following chunk) or [`BYE`]
//! (the sender closed; no chunk). `token` tells the server which connection a message on its
//! shared queue belongs to. A frame is cut into chunks of `msgsize - HEADER_LEN` bytes; an empty
//! frame is one `FIRST` message with no chunk.

use bytes::{BufMut, BytesMut};

use crate::error::TransportError;
use crate::frame::{FRAME_PREFIX, Frame};

/// Bytes of header in front of every message's chunk.
pub(crate) const HEADER_LEN: usize = 16;
/// The first chunk of a frame.
pub(crate) const FIRST: u8 = 1;
/// A following chunk of a frame.
pub(crate) const MORE: u8 = 2;
/// The sender closed its direction.
pub(crate) const BYE: u8 = 3;

/// A parsed message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) kind: u8,
    pub(crate) length: u32,
    pub(crate) token: u64,
}

fn put_header(out: &mut Vec<u8>, header: Header) {
    out.clear();
    out.push(header.kind);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&header.length.to_le_bytes());
    out.extend_from_slice(&header.token.to_le_bytes());
}

/// Splits a message into its header and chunk; only the size is checked here.
pub(crate) fn parse(message: &[u8]) -> Result<(Header, &[u8]), TransportError> {
    if message.len() < HEADER_LEN {
        return Err(TransportError::Malformed(format!(
            "a queue message of {} bytes is shorter than its header",
            message.len()
        )));
    }
    let header = Header {
        kind: message[0],
        length: u32::from_le_bytes(message[4..8].try_into().expect("4 bytes")),
        token: u64::from_le_bytes(message[8..16].try_into().expect("8 bytes")),
    };
    Ok((header, &message[HEADER_LEN..]))
}

/// Writes the `BYE` message for `token` into `out`.
pub(crate) fn bye(out: &mut Vec<u8>, token: u64) {
    put_header(
        out,
        Header {
            kind: BYE,
            length: 0,
            token,
        },
    );
}

/// A frame being sent, message by message; it lives in the sender between calls so a cancelled
/// send finishes with the next one.
#[derive(Debug)]
pub(crate) struct Outgoing {
    /// The frame's buffer, prefix included.
    buf: BytesMut,
    /// Payload bytes already sent.
    sent: usize,
    /// Whether the `FIRST` message went.
    started: bool,
}

impl Outgoing {
    /// Starts sending `frame` (the caller has checked its size fits a `u32`).
    pub(crate) fn new(frame: Frame) -> Outgoing {
        Outgoing {
            buf: frame.into_prefixed(),
            sent: 0,
            started: false,
        }
    }

    fn payload(&self) -> &[u8] {
        &self.buf[FRAME_PREFIX..]
    }

    /// Whether the frame's first message went (the peer holds part of it).
    pub(crate) fn is_started(&self) -> bool {
        self.started
    }

    /// Whether every message of the frame has gone.
    pub(crate) fn is_done(&self) -> bool {
        self.started && self.sent == self.payload().len()
    }

    /// Writes the next message (at most `msgsize` bytes) into `out`.
    pub(crate) fn next_message(&self, out: &mut Vec<u8>, msgsize: usize, token: u64) {
        let payload = self.payload();
        let chunk = (msgsize - HEADER_LEN).min(payload.len() - self.sent);
        put_header(
            out,
            Header {
                kind: if self.started { MORE } else { FIRST },
                length: payload.len() as u32,
                token,
            },
        );
        out.extend_from_slice(&payload[self.sent..self.sent + chunk]);
    }

    /// Records that the message [`next_message`](Self::next_message) wrote has gone.
    pub(crate) fn advance(&mut self, msgsize: usize) {
        let chunk = (msgsize - HEADER_LEN).min(self.payload().len() - self.sent);
        self.sent += chunk;
        self.started = true;
    }
}

/// What a message completed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A whole frame.
    Frame(Frame),
    /// The peer closed its sending direction.
    Bye,
}

/// Rebuilds frames from one peer's messages, checking everything the peer could get wrong.
///
/// The limit is given with each message, so it may change between them (a server accepts only
/// small frames until its handshake is done): a frame over it is refused at its first message,
/// or at the next one if it was begun under a larger limit. Memory follows what arrived, never
/// the length a peer announces: the buffer at most doubles as chunks come, and never grows
/// past the frame's length.
#[derive(Debug, Default)]
pub(crate) struct Reassembler {
    /// The frame being filled (prefix included) and its payload length.
    partial: Option<(BytesMut, usize)>,
}

impl Reassembler {
    pub(crate) fn new() -> Reassembler {
        Reassembler::default()
    }

    /// Whether a frame is half received.
    pub(crate) fn in_progress(&self) -> bool {
        self.partial.is_some()
    }

    /// Bytes of the frame half received.
    #[cfg(test)]
    pub(crate) fn partial_len(&self) -> usize {
        self.partial
            .as_ref()
            .map_or(0, |(buf, _)| buf.len() - FRAME_PREFIX)
    }

    /// The buffer's capacity, for tests of its growth.
    #[cfg(test)]
    pub(crate) fn partial_capacity(&self) -> usize {
        self.partial.as_ref().map_or(0, |(buf, _)| buf.capacity())
    }

    /// Takes one message, refusing a frame over `limit` bytes; `Ok(None)` while a frame is
    /// incomplete.
    pub(crate) fn push(
        &mut self,
        header: Header,
        chunk: &[u8],
        limit: usize,
    ) -> Result<Option<Event>, TransportError> {
        match header.kind {
            FIRST => {
                if self.partial.is_some() {
                    return Err(malformed("a frame began before the previous one ended"));
                }
                let length = header.length as usize;
                if length > limit {
                    return Err(TransportError::FrameTooLarge {
                        size: length,
                        limit,
                    });
                }
                if chunk.len() > length {
                    return Err(malformed("a chunk runs past its frame's declared length"));
                }
                // Sized by what has arrived, not by the announced length: a peer that
                // announces a large frame and stops costs only the bytes it sent.
                let mut buf = BytesMut::with_capacity(FRAME_PREFIX + chunk.len());
                buf.put_bytes(0, FRAME_PREFIX);
                buf.extend_from_slice(chunk);
                self.partial = Some((buf, length));
            }
            MORE => {
                let Some((buf, length)) = &mut self.partial else {
                    return Err(malformed("a continuation chunk came without a first chunk"));
                };
                if *length > limit {
                    // Begun under a larger limit.
                    let size = *length;
                    self.partial = None;
                    return Err(TransportError::FrameTooLarge { size, limit });
                }
                if chunk.is_empty() || buf.len() - FRAME_PREFIX + chunk.len() > *length {
                    return Err(malformed("a chunk runs past its frame's declared length"));
                }
                grow(buf, chunk.len(), FRAME_PREFIX + *length);
                buf.extend_from_slice(chunk);
            }
            BYE => {
                if self.partial.is_some() {
                    return Err(malformed("the peer closed in the middle of a frame"));
                }
                return Ok(Some(Event::Bye));
            }
            other => return Err(malformed(&format!("unknown message kind {other}"))),
        }
        match &self.partial {
            Some((buf, length)) if buf.len() - FRAME_PREFIX == *length => {
                let (buf, _) = self.partial.take().expect("checked above");
                Ok(Some(Event::Frame(Frame::from_prefixed(buf))))
            }
            _ => Ok(None),
        }
    }
}

/// Makes room in `buf` for `more` bytes: doubling (so copying stays linear), but never past
/// `most`, the whole frame's size (`BytesMut`'s own growth would round past it).
fn grow(buf: &mut BytesMut, more: usize, most: usize) {
    let needed = buf.len() + more;
    if buf.capacity() >= needed {
        return;
    }
    let capacity = buf
        .capacity()
        .saturating_mul(2)
        .clamp(needed, most.max(needed));
    let mut bigger = BytesMut::with_capacity(capacity);
    bigger.extend_from_slice(buf);
    *buf = bigger;
}

fn malformed(what: &str) -> TransportError {
    TransportError::Malformed(what.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSGSIZE: usize = 8192;
    const CHUNK: usize = MSGSIZE - HEADER_LEN;

    fn messages(frame: &Frame, token: u64) -> Vec<Vec<u8>> {
        let mut outgoing = Outgoing::new(frame.clone());
        let mut all = Vec::new();
        while !outgoing.is_done() {
            let mut out = Vec::new();
            outgoing.next_message(&mut out, MSGSIZE, token);
            assert!(out.len() <= MSGSIZE);
            all.push(out);
            outgoing.advance(MSGSIZE);
        }
        all
    }

    fn pattern(len: usize) -> Frame {
        Frame::filled(len, |buf| {
            for (i, b) in buf.iter_mut().enumerate() {
                *b = (i * 7 + i / 251) as u8;
            }
        })
    }

    #[test]
    fn frames_of_every_edge_size_survive_fragmenting() {
        for len in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK, 1 << 20] {
            let frame = pattern(len);
            let all = messages(&frame, 42);
            assert_eq!(all.len(), len.div_ceil(CHUNK).max(1), "len {len}");
            let mut reassembler = Reassembler::new();
            let mut got = None;
            for (i, message) in all.iter().enumerate() {
                let (header, chunk) = parse(message).unwrap();
                assert_eq!(header.token, 42);
                assert_eq!(header.kind, if i == 0 { FIRST } else { MORE });
                let event = reassembler.push(header, chunk, 16 << 20).unwrap();
                if i + 1 < all.len() {
                    assert_eq!(event, None);
                    assert!(reassembler.in_progress());
                } else {
                    got = event;
                }
            }
            assert_eq!(got, Some(Event::Frame(frame)), "len {len}");
            assert!(!reassembler.in_progress());
        }
    }

    #[test]
    fn bye_ends_cleanly_between_frames_only() {
        let mut out = Vec::new();
        bye(&mut out, 9);
        let (header, chunk) = parse(&out).unwrap();
        assert_eq!((header.kind, header.token, chunk.len()), (BYE, 9, 0));
        assert_eq!(
            Reassembler::new().push(header, chunk, 100).unwrap(),
            Some(Event::Bye)
        );
        let first = &messages(&pattern(CHUNK + 5), 9)[0];
        let mut reassembler = Reassembler::new();
        let (h, c) = parse(first).unwrap();
        assert_eq!(reassembler.push(h, c, 1 << 20).unwrap(), None);
        assert!(matches!(
            reassembler.push(header, chunk, 1 << 20),
            Err(TransportError::Malformed(_))
        ));
    }

    fn raw(kind: u8, length: u32, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        put_header(
            &mut out,
            Header {
                kind,
                length,
                token: 1,
            },
        );
        out.extend_from_slice(chunk);
        out
    }

    fn push_all(limit: usize, all: &[Vec<u8>]) -> Result<Option<Event>, TransportError> {
        let mut reassembler = Reassembler::new();
        let mut last = None;
        for message in all {
            let (header, chunk) = parse(message)?;
            last = reassembler.push(header, chunk, limit)?;
        }
        Ok(last)
    }

    #[test]
    fn malformed_input_is_refused() {
        let malformed = |all: &[Vec<u8>]| {
            assert!(
                matches!(push_all(1 << 20, all), Err(TransportError::Malformed(_))),
                "{all:?}"
            )
        };
        malformed(&[vec![1, 0, 0]]);
        malformed(&[raw(7, 0, b"")]);
        malformed(&[raw(0, 0, b"")]);
        malformed(&[raw(MORE, 3, b"abc")]);
        malformed(&[raw(FIRST, 2, b"abc")]);
        malformed(&[raw(FIRST, 4, b"ab"), raw(MORE, 4, b"cde")]);
        malformed(&[raw(FIRST, 4, b"ab"), raw(MORE, 4, b"")]);
        malformed(&[raw(FIRST, 4, b"ab"), raw(FIRST, 4, b"ab")]);
        assert_eq!(
            push_all(1 << 20, &[raw(FIRST, 4, b"ab"), raw(MORE, 4, b"cd")]).unwrap(),
            Some(Event::Frame(Frame::from_payload(b"abcd")))
        );
    }

    #[test]
    fn a_declared_length_over_the_limit_is_too_large() {
        assert!(matches!(
            push_all(100, &[raw(FIRST, 101, b"x")]),
            Err(TransportError::FrameTooLarge {
                size: 101,
                limit: 100
            })
        ));
        assert!(push_all(100, &[raw(FIRST, 100, &[0; 100])]).is_ok());
    }

    #[test]
    fn a_limit_lowered_mid_frame_refuses_it_at_the_next_chunk() {
        let all = messages(&pattern(3 * CHUNK), 1);
        let mut reassembler = Reassembler::new();
        let (h, c) = parse(&all[0]).unwrap();
        assert_eq!(reassembler.push(h, c, 1 << 20).unwrap(), None);
        let (h, c) = parse(&all[1]).unwrap();
        assert!(matches!(
            reassembler.push(h, c, 64),
            Err(TransportError::FrameTooLarge { size, limit: 64 }) if size == 3 * CHUNK
        ));
        assert!(!reassembler.in_progress());
    }

    #[test]
    fn the_buffer_follows_what_arrived_and_stops_at_the_frame_size() {
        let len = 100 * CHUNK + 17;
        let all = messages(&pattern(len), 1);
        let mut reassembler = Reassembler::new();
        for (i, message) in all.iter().enumerate() {
            let (h, c) = parse(message).unwrap();
            let event = reassembler.push(h, c, 16 << 20).unwrap();
            if i + 1 < all.len() {
                let arrived = reassembler.partial_len();
                assert_eq!(arrived, (i + 1) * CHUNK);
                let capacity = reassembler.partial_capacity();
                assert!(
                    capacity <= 2 * (FRAME_PREFIX + arrived),
                    "{capacity} for {arrived}"
                );
                assert!(
                    capacity <= FRAME_PREFIX + len,
                    "{capacity} for a frame of {len}"
                );
            } else {
                assert_eq!(event, Some(Event::Frame(pattern(len))));
            }
        }
    }
}
