//! The frames of streaming calls both sides build: credit, a client stream's end, an item.

use rpc_transport::Frame;

use crate::error::RpcError;
use crate::server::Reply;
use crate::wire::{self, HEADER_LEN, Header, Kind};

fn header(kind: Kind, method: u32, call_id: u64) -> Header {
    Header {
        kind,
        method,
        call_id,
    }
}

/// Grants `bytes` more of call `call_id`'s stream.
pub(crate) fn credit(method: u32, call_id: u64, bytes: u64) -> Frame {
    wire::message_frame(header(Kind::Credit, method, call_id), None, &bytes)
        .expect("a u64 always encodes")
}

/// Ends the client's stream of call `call_id`: cleanly, or with why its producer failed.
pub(crate) fn stream_end(method: u32, call_id: u64, failure: Option<&str>) -> Frame {
    wire::message_frame(header(Kind::StreamEnd, method, call_id), None, &failure)
        .expect("an optional string always encodes")
}

/// An item's frame: its size, and how to write it into that many bytes.
pub(crate) fn item(
    method: u32,
    call_id: u64,
    item: Reply,
    limit: usize,
) -> Result<(usize, impl FnOnce(&mut [u8])), RpcError> {
    let len = HEADER_LEN + item.encoded_len()?;
    if len > limit {
        return Err(RpcError::FrameTooLarge { size: len, limit });
    }
    let header = header(Kind::StreamItem, method, call_id);
    Ok((len, move |out: &mut [u8]| {
        header.write(out, false);
        if !item.encode(&mut out[HEADER_LEN..]) {
            // Measured at one size, encoded at another: the peer rejects the frame.
            out[0] = 0;
        }
    }))
}
