//! The fixed frame header, its optional extension, and the error body.

use serde::{Deserialize, Serialize};

use crate::error::RpcError;

/// Size of the fixed header in bytes.
pub const HEADER_LEN: usize = 16;
const FLAG_EXTENSION: u8 = 1;

/// What a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[non_exhaustive]
pub enum Kind {
    /// Client to server, first frame: body [`Hello`](super::Hello).
    Hello = 1,
    /// Server to client, handshake accepted: body [`Welcome`](super::Welcome).
    Welcome = 2,
    /// Server to client, handshake refused: body [`Rejection`](super::Rejection).
    Reject = 3,
    /// A call: body is the postcard tuple of the arguments.
    Request = 4,
    /// A call's result: body is the postcard return value.
    Response = 5,
    /// A call failed in the RPC layer: body [`WireError`]. Call id 0 means the whole connection.
    Error = 6,
    /// The client gave up on a call; the server drops its handler.
    Cancel = 7,
    /// One item of a streaming call, in either direction: body is the postcard item.
    StreamItem = 8,
    /// Client to server: the client's stream of a call has ended. Body: postcard
    /// `Option<String>`, `None` for a clean end, else why the client's producer failed.
    StreamEnd = 9,
    /// Either direction: the receiver of a call's stream has consumed this many more bytes of
    /// it, and the sender may send that many more. Body: postcard `u64`.
    Credit = 10,
    /// Either direction, protocol version 3: is the peer alive? Answered with a
    /// [`Kind::Pong`] carrying the same call id (a nonce). Empty body. See `Keepalive`.
    Ping = 11,
    /// The answer to a [`Kind::Ping`]. Empty body.
    Pong = 12,
}

/// The bytes of a stream's items a sender may have sent beyond what its receiver has granted,
/// on every stream from its start (each side's initial credit): see [`Kind::Credit`]. A sender
/// sends an item while it has any credit left, so it may overdraw by one item.
pub const STREAM_WINDOW: u64 = 1 << 20;

impl Kind {
    fn from_u8(byte: u8) -> Option<Kind> {
        Some(match byte {
            1 => Kind::Hello,
            2 => Kind::Welcome,
            3 => Kind::Reject,
            4 => Kind::Request,
            5 => Kind::Response,
            6 => Kind::Error,
            7 => Kind::Cancel,
            8 => Kind::StreamItem,
            9 => Kind::StreamEnd,
            10 => Kind::Credit,
            11 => Kind::Ping,
            12 => Kind::Pong,
            _ => return None,
        })
    }
}

/// The fixed part of every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// What the frame is.
    pub kind: Kind,
    /// The method's wire id (requests; echoed on responses).
    pub method: u32,
    /// The call this frame belongs to.
    pub call_id: u64,
}

/// Per-call options that travel with a request when set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Extension {
    /// Time the caller still waits, in microseconds, when the request left.
    pub timeout_micros: Option<u64>,
    /// Key-value pairs the caller attached.
    pub metadata: Vec<(String, String)>,
}

/// An [`Extension`] encoded once (postcard's bytes), for a message sized before it is written.
/// The common shape, a timeout and no metadata, is written by hand into a few bytes (postcard
/// would be run twice over it, to size and to write, for most of a small call's encoding);
/// any other goes through postcard.
#[derive(Debug, Clone)]
pub(crate) enum EncodedExtension {
    /// Up to [`SHORT_EXTENSION`] bytes, the first `len` of `bytes`.
    Short {
        bytes: [u8; SHORT_EXTENSION],
        len: u8,
    },
    /// Any extension with metadata.
    Long(Vec<u8>),
}

/// The longest extension without metadata: the `Option` tag, a `u64` as a varint (at most 10
/// bytes) and the empty metadata's length.
const SHORT_EXTENSION: usize = 12;

impl EncodedExtension {
    /// `extension`'s postcard encoding.
    pub(crate) fn new(extension: &Extension) -> postcard::Result<EncodedExtension> {
        if !extension.metadata.is_empty() {
            return postcard::to_allocvec(extension).map(EncodedExtension::Long);
        }
        // postcard: `Option` as a 0/1 tag then the value, `u64` as a LEB128 varint, a
        // sequence as its length (a varint) then its items.
        let mut bytes = [0u8; SHORT_EXTENSION];
        let mut len = 1;
        if let Some(mut micros) = extension.timeout_micros {
            bytes[0] = 1;
            // As the schema's `canonical::varint` writes one, into the array.
            while micros >= 0x80 {
                bytes[len] = (micros as u8 & 0x7f) | 0x80;
                micros >>= 7;
                len += 1;
            }
            bytes[len] = micros as u8;
            len += 1;
        }
        // The empty metadata's length, 0 (already there).
        len += 1;
        Ok(EncodedExtension::Short {
            bytes,
            len: len as u8,
        })
    }

    /// The encoded bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            EncodedExtension::Short { bytes, len } => &bytes[..usize::from(*len)],
            EncodedExtension::Long(bytes) => bytes,
        }
    }
}

/// A frame's payload taken apart.
#[derive(Debug)]
pub struct Parsed<'a> {
    /// The fixed header.
    pub header: Header,
    /// The extension, when the frame has one.
    pub extension: Option<Extension>,
    /// The postcard body.
    pub body: &'a [u8],
}

impl Header {
    /// Writes the header over the first [`HEADER_LEN`] bytes of `out`.
    pub fn write(&self, out: &mut [u8], has_extension: bool) {
        out[0] = self.kind as u8;
        out[1] = if has_extension { FLAG_EXTENSION } else { 0 };
        out[2..4].fill(0);
        out[4..8].copy_from_slice(&self.method.to_le_bytes());
        out[8..16].copy_from_slice(&self.call_id.to_le_bytes());
    }

    /// Takes a frame's payload apart, checking every length before using it.
    pub fn parse(payload: &[u8]) -> Result<Parsed<'_>, RpcError> {
        let malformed = |why: &str| RpcError::Protocol(format!("malformed frame header: {why}"));
        if payload.len() < HEADER_LEN {
            return Err(malformed(&format!(
                "{} bytes is shorter than the {HEADER_LEN}-byte header",
                payload.len()
            )));
        }
        let kind = Kind::from_u8(payload[0])
            .ok_or_else(|| malformed(&format!("unknown frame kind {}", payload[0])))?;
        let flags = payload[1];
        if flags & !FLAG_EXTENSION != 0 {
            return Err(malformed(&format!("unknown flags {flags:#04x}")));
        }
        let header = Header {
            kind,
            method: u32::from_le_bytes(payload[4..8].try_into().expect("4 bytes")),
            call_id: u64::from_le_bytes(payload[8..16].try_into().expect("8 bytes")),
        };
        let mut rest = &payload[HEADER_LEN..];
        let mut extension = None;
        if flags & FLAG_EXTENSION != 0 {
            if rest.len() < 4 {
                return Err(malformed("extension length missing"));
            }
            let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
            rest = &rest[4..];
            if len > rest.len() {
                return Err(malformed("extension longer than the frame"));
            }
            let ext = postcard::from_bytes(&rest[..len])
                .map_err(|e| RpcError::decode("frame extension", e))?;
            extension = Some(ext);
            rest = &rest[len..];
        }
        Ok(Parsed {
            header,
            extension,
            body: rest,
        })
    }
}

/// The body of an [`Kind::Error`] frame: why the RPC layer failed a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum WireError {
    /// No method with that id.
    UnknownMethod,
    /// The arguments did not decode.
    BadRequest(String),
    /// The response would exceed the client's maximum frame size.
    ResponseTooLarge {
        /// Encoded response size.
        size: u64,
        /// The client's limit.
        limit: u64,
    },
    /// The handler ran past the call's deadline.
    DeadlineExceeded,
    /// The connection has the maximum number of calls in flight.
    TooManyCalls(u32),
    /// The handler panicked.
    HandlerPanicked,
    /// The response value did not encode.
    EncodeFailed(String),
    /// The server is shutting down.
    ShuttingDown,
    /// The peer broke the protocol; the connection is closed after this.
    Protocol(String),
    /// The method's digest in the client's `Hello` differs from the server's: the client may
    /// not call it.
    Incompatible,
    /// The producer of a streaming call's items ended it with this error.
    StreamFailed(String),
}
