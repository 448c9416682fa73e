//! postcard encoding straight into a [`Frame`]'s buffer.

use bytes::{BufMut, BytesMut};
use postcard::ser_flavors::Flavor;
use rpc_transport::Frame;
use serde::{Deserialize, Serialize};

use super::header::{EncodedExtension, HEADER_LEN, Header};
use crate::error::RpcError;

/// A postcard output that appends to a `BytesMut` with whole-slice copies.
struct BufFlavor<'a>(&'a mut BytesMut);

impl Flavor for BufFlavor<'_> {
    type Output = ();

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        self.0.put_u8(byte);
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// A postcard output that writes into a slice a transport handed to a `send_with` fill,
/// possibly a large shared-memory message the peer copies out while it is written: long byte
/// strings go in through [`rpc_transport::copy_in_place`] (in chunks, each reported once
/// written), and runs of short writes are reported every [`MARK_EVERY`] bytes
/// ([`rpc_transport::mark_written`]), so the receiver trails the encoder closely and never
/// mistakes a long encode for a stalled one. postcard writes in order, which is the contract
/// those functions ask for.
struct InPlace<'a> {
    buf: &'a mut [u8],
    /// Bytes written.
    at: usize,
    /// Bytes reported final.
    marked: usize,
}

/// Byte strings at least this long are copied with [`rpc_transport::copy_in_place`].
const COPY_IN_PLACE_MIN: usize = 4096;
/// Short writes are reported after this many bytes.
const MARK_EVERY: usize = 256 * 1024;

impl InPlace<'_> {
    fn reserve(&self, n: usize) -> postcard::Result<usize> {
        self.at
            .checked_add(n)
            .filter(|&end| end <= self.buf.len())
            .ok_or(postcard::Error::SerializeBufferFull)
    }

    fn mark_now_and_then(&mut self) {
        if self.at - self.marked >= MARK_EVERY {
            rpc_transport::mark_written(&self.buf[..self.at]);
            self.marked = self.at;
        }
    }
}

impl Flavor for InPlace<'_> {
    type Output = usize;

    fn try_push(&mut self, byte: u8) -> postcard::Result<()> {
        let end = self.reserve(1)?;
        self.buf[self.at] = byte;
        self.at = end;
        self.mark_now_and_then();
        Ok(())
    }

    fn try_extend(&mut self, bytes: &[u8]) -> postcard::Result<()> {
        let end = self.reserve(bytes.len())?;
        let out = &mut self.buf[self.at..end];
        if bytes.len() >= COPY_IN_PLACE_MIN {
            rpc_transport::copy_in_place(out, bytes);
            self.marked = end;
        } else {
            out.copy_from_slice(bytes);
        }
        self.at = end;
        self.mark_now_and_then();
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.at)
    }
}

/// Encodes `value` at the start of `out`, a slice a transport handed to a `send_with` fill;
/// returns the bytes written. Like `postcard::to_slice`, but a large shared-memory message is
/// copied out by the receiver while it is written (see [`InPlace`]).
pub(crate) fn encode_in_place<T: Serialize + ?Sized>(
    value: &T,
    out: &mut [u8],
) -> postcard::Result<usize> {
    postcard::serialize_with_flavor(
        value,
        InPlace {
            buf: out,
            at: 0,
            marked: 0,
        },
    )
}

/// Appends `value`, postcard-encoded, to `frame`.
pub fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    frame: &mut Frame,
    what: &str,
) -> Result<(), RpcError> {
    postcard::serialize_with_flavor(value, BufFlavor(frame.buf_mut()))
        .map_err(|e| RpcError::encode(what, e))
}

/// Decodes a whole body; trailing bytes are an error.
pub fn decode<'de, T: Deserialize<'de>>(
    body: &'de [u8],
    what: impl std::fmt::Display,
) -> Result<T, RpcError> {
    let (value, rest) =
        postcard::take_from_bytes(body).map_err(|e| RpcError::decode(what.to_string(), e))?;
    if !rest.is_empty() {
        return Err(RpcError::decode(
            what.to_string(),
            format!("{} unexpected trailing bytes", rest.len()),
        ));
    }
    Ok(value)
}

/// A message sized before it is written, so a transport can let it be encoded straight into
/// its own buffer (a shared-memory ring): header, optional extension, body.
pub struct Message<'a, B: Serialize + ?Sized> {
    header: Header,
    /// The extension, encoded.
    extension: Option<EncodedExtension>,
    body: &'a B,
    body_len: usize,
}

impl<'a, B: Serialize + ?Sized> Message<'a, B> {
    /// Sizes the message (the body is serialized once to count its bytes).
    pub fn new(
        header: Header,
        extension: Option<&super::Extension>,
        body: &'a B,
    ) -> Result<Self, RpcError> {
        let extension = extension
            .map(EncodedExtension::new)
            .transpose()
            .map_err(|e| RpcError::encode("call extension", e))?;
        let body_len = postcard::experimental::serialized_size(body)
            .map_err(|e| RpcError::encode("message body", e))?;
        Ok(Message {
            header,
            extension,
            body,
            body_len,
        })
    }

    /// Encoded length in bytes.
    pub fn len(&self) -> usize {
        HEADER_LEN
            + self
                .extension
                .as_ref()
                .map_or(0, |extension| 4 + extension.as_slice().len())
            + self.body_len
    }

    /// Whether the message is empty (never: the header alone is 16 bytes).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Writes the message into `out`, exactly [`len`](Self::len) bytes. Should the body
    /// serialize differently than when it was sized (a non-deterministic `Serialize`), the
    /// frame kind is zeroed, which the peer rejects as a protocol violation (the header lies
    /// in the first [`rpc_transport::shm::REWRITABLE_PREFIX`] bytes, which a shared-memory
    /// receiver copies only once the whole message is written, so the patch always reaches
    /// it).
    pub fn write(&self, out: &mut [u8]) {
        self.header.write(out, self.extension.is_some());
        let mut at = HEADER_LEN;
        if let Some(extension) = &self.extension {
            let bytes = extension.as_slice();
            out[at..at + 4].copy_from_slice(&(bytes.len() as u32).to_le_bytes());
            out[at + 4..at + 4 + bytes.len()].copy_from_slice(bytes);
            at += 4 + bytes.len();
        }
        match encode_in_place(self.body, &mut out[at..]) {
            Ok(written) if written == self.body_len => {}
            _ => out[0] = 0,
        }
    }

    /// The message as a frame of its own.
    pub fn to_frame(&self) -> Frame {
        Frame::filled(self.len(), |out| self.write(out))
    }
}

/// A whole frame: `header`, the optional extension, then `body` encoded.
pub fn message_frame<T: Serialize + ?Sized>(
    header: Header,
    extension: Option<&super::Extension>,
    body: &T,
) -> Result<Frame, RpcError> {
    let mut frame = Frame::with_capacity(HEADER_LEN + 32);
    frame.extend_from_slice(&[0; HEADER_LEN]);
    header.write(frame.payload_mut(), extension.is_some());
    if let Some(extension) = extension {
        frame.extend_from_slice(&[0; 4]);
        let start = frame.len();
        encode_into(extension, &mut frame, "call extension")?;
        let len = (frame.len() - start) as u32;
        frame.payload_mut()[HEADER_LEN..HEADER_LEN + 4].copy_from_slice(&len.to_le_bytes());
    }
    encode_into(body, &mut frame, "message body")?;
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Extension, Kind};

    #[test]
    fn in_place_encoding_is_postcards_and_refuses_a_short_buffer() {
        // Short fields, a long byte string (copied with `copy_in_place`) and more than
        // `MARK_EVERY` bytes of one-byte writes (reported on the way).
        let value = (
            7u32,
            "name".to_owned(),
            serde_bytes::ByteBuf::from(vec![5u8; 3 * COPY_IN_PLACE_MIN]),
            vec![1u8; MARK_EVERY + 10],
            -3i64,
        );
        let expected = postcard::to_allocvec(&value).unwrap();
        let mut out = vec![0u8; expected.len() + 8];
        assert_eq!(encode_in_place(&value, &mut out).unwrap(), expected.len());
        assert_eq!(&out[..expected.len()], &expected[..]);
        let mut short = vec![0u8; expected.len() - 1];
        assert!(matches!(
            encode_in_place(&value, &mut short),
            Err(postcard::Error::SerializeBufferFull)
        ));
    }

    #[test]
    fn frames_round_trip_with_and_without_extension() {
        let header = Header {
            kind: Kind::Request,
            method: 3,
            call_id: 42,
        };
        let plain = message_frame(header, None, &(1i64, 2i64)).unwrap();
        let parsed = Header::parse(plain.payload()).unwrap();
        assert_eq!(parsed.header, header);
        assert!(parsed.extension.is_none());
        assert_eq!(decode::<(i64, i64)>(parsed.body, "args").unwrap(), (1, 2));

        let ext = Extension {
            timeout_micros: Some(5),
            metadata: vec![("k".into(), "v".into())],
        };
        let with_ext = message_frame(header, Some(&ext), &"x").unwrap();
        let parsed = Header::parse(with_ext.payload()).unwrap();
        assert_eq!(parsed.extension.as_ref(), Some(&ext));
        assert_eq!(decode::<String>(parsed.body, "body").unwrap(), "x");
    }

    #[test]
    fn sized_messages_match_built_frames() {
        let header = Header {
            kind: Kind::Request,
            method: 1,
            call_id: 9,
        };
        let ext = Extension {
            timeout_micros: Some(1_000_000),
            metadata: vec![("a".into(), "b".into())],
        };
        let body = (5i64, vec![1u8, 2, 3], "text");
        let message = Message::new(header, Some(&ext), &body).unwrap();
        let frame = message_frame(header, Some(&ext), &body).unwrap();
        assert_eq!(message.len(), frame.len());
        assert_eq!(message.to_frame(), frame);
    }

    #[test]
    fn extensions_are_encoded_as_postcard_encodes_them() {
        let timeouts = [
            None,
            Some(0),
            Some(1),
            Some(127),
            Some(128),
            Some(300_000_000),
        ];
        let timeouts = timeouts
            .into_iter()
            .chain([Some(u64::MAX), Some(u64::MAX >> 1)]);
        for timeout_micros in timeouts {
            for metadata in [vec![], vec![("k".to_owned(), "v".to_owned())]] {
                let extension = Extension {
                    timeout_micros,
                    metadata,
                };
                let encoded = EncodedExtension::new(&extension).unwrap();
                let expected = postcard::to_allocvec(&extension).unwrap();
                assert_eq!(encoded.as_slice(), &expected[..], "{extension:?}");
                let decoded: Extension = postcard::from_bytes(encoded.as_slice()).unwrap();
                assert_eq!(decoded, extension);
            }
        }
    }

    #[test]
    fn malformed_headers_are_typed_errors() {
        assert!(matches!(Header::parse(&[4; 3]), Err(RpcError::Protocol(_))));
        let mut bad_kind = [0u8; 16];
        bad_kind[0] = 99;
        assert!(matches!(
            Header::parse(&bad_kind),
            Err(RpcError::Protocol(_))
        ));
        let mut long_ext = [0u8; 24];
        long_ext[0] = 4;
        long_ext[1] = 1;
        long_ext[16..20].copy_from_slice(&1000u32.to_le_bytes());
        assert!(matches!(
            Header::parse(&long_ext),
            Err(RpcError::Protocol(_))
        ));
        assert!(decode::<u8>(&[1, 2], "x").is_err());
    }
}
