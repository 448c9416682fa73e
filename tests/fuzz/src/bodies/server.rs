//! Target `server_bytes`: arbitrary bytes on a real server connection (an abstract Unix
//! socket, read by the real stream framing).
//!
//! Input: `[flags][bytes...]`. Bit 0 of `flags` puts a valid `Hello` frame in front of the
//! bytes (so the fuzzer reaches the established connection); the other bits seed where the
//! stream is cut into writes (of up to 17 or 4096 bytes: byte-by-byte splits are the
//! `frame_decoder` target's job, and would make this one slow). The client half-closes after writing and reads until the
//! server hangs up: the server must hang up within [`HANG`], everything it sent must be
//! whole frames with valid headers of the kinds a server sends, no server thread may panic,
//! and good clients are still served afterwards.

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};

use bytes::BytesMut;
use idl_examples::CalculatorClient;
use rpc_core::transport::fuzzing::take_frame;
use rpc_core::wire::{Header, Hello, Kind};

use super::harness::{HANG, harness};
use super::split::chunks;

/// The stream bytes of a good client's `Hello` frame.
pub(crate) fn hello_bytes() -> Vec<u8> {
    let hello = Hello::new(CalculatorClient::schema(), 16 << 20);
    let header = Header {
        kind: Kind::Hello,
        method: 0,
        call_id: 0,
    };
    let frame = rpc_core::wire::message_frame(header, None, &hello).expect("a Hello encodes");
    let mut out = (frame.len() as u32).to_le_bytes().to_vec();
    out.extend_from_slice(frame.payload());
    out
}

/// Runs one input; see the module docs.
pub fn server_bytes(data: &[u8]) {
    let [flags, rest @ ..] = data else {
        return;
    };
    let harness = harness();
    let mut bytes = if flags & 1 != 0 {
        hello_bytes()
    } else {
        Vec::new()
    };
    bytes.extend_from_slice(rest);

    let address = SocketAddr::from_abstract_name(&harness.unix_name).expect("an abstract name");
    let mut socket = UnixStream::connect_addr(&address).expect("connect to the fuzz server");
    socket.set_read_timeout(Some(HANG)).expect("a read timeout");
    socket
        .set_write_timeout(Some(HANG))
        .expect("a write timeout");
    for chunk in chunks(&bytes, (flags & !1) | 0x80) {
        match socket.write_all(&chunk) {
            Ok(()) => {}
            // The server may hang up on a protocol violation before reading everything.
            Err(e) if matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset) => {
                break;
            }
            Err(e) => panic!("writing to the server failed (a hang?): {e}"),
        }
    }
    let _ = socket.shutdown(Shutdown::Write);
    let mut reply = Vec::new();
    let mut scratch = [0u8; 64 * 1024];
    loop {
        match socket.read(&mut scratch) {
            Ok(0) => break,
            Ok(n) => reply.extend_from_slice(&scratch[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("the server did not hang up after the client did: {e}"),
        }
    }
    check_replies(&reply, flags & 1 != 0);
    harness.after_input();
}

/// Everything the server sent is whole frames, each with a header a server may send; after
/// a good `Hello`, the first is `Welcome`.
fn check_replies(reply: &[u8], said_hello: bool) {
    let mut buf = BytesMut::from(reply);
    let mut first = true;
    while let Some(frame) = take_frame(&mut buf, usize::MAX).expect("no limit to exceed") {
        let parsed = Header::parse(frame.payload()).expect("the server sent a malformed header");
        if std::mem::take(&mut first) && said_hello {
            assert_eq!(
                parsed.header.kind,
                Kind::Welcome,
                "a good Hello was not welcomed"
            );
        }
        assert!(
            matches!(
                parsed.header.kind,
                Kind::Welcome | Kind::Reject | Kind::Response | Kind::Error
            ),
            "the server sent a {:?} frame",
            parsed.header.kind
        );
    }
    assert!(buf.is_empty(), "the server's last frame was cut short");
    assert!(!(said_hello && first), "a good Hello got no answer");
}
