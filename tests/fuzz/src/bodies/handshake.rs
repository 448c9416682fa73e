//! Target `handshake`: the server reading a client's `Hello`, and the client reading the
//! server's `Welcome` or `Reject`.
//!
//! Input: `[mode][rest...]`; `mode % 6` picks what `rest` is:
//! - 0: the whole first frame a client sends to a real server (over `mem://`);
//! - 1: the body of a `Hello` frame sent to that server (the header is valid);
//! - 2: the whole reply frame a client reads;
//! - 3: the body of a `Welcome` reply; 5: the body of a `Reject` reply;
//! - 4: a `Welcome` whose `max_frame_size` is `rest[..8]` and whose schema JSON is the rest.
//!
//! The server must answer `Welcome` or `Reject` (both well formed: the client reads a
//! `Welcome` of the server's as compatible) or hang up, within the handshake timeout, and
//! keep serving good clients. The client must return an agreement within its own limits or
//! a typed error. `mode & 0x80` makes the client's schema check strict.

use idl_examples::CalculatorClient;
use rpc_core::fuzzing::client_handshake_reply;
use rpc_core::transport::{Frame, TransportConfig};
use rpc_core::wire::{self, HEADER_LEN, Header, Kind, Rejection, Welcome};
use rpc_core::{ClientOptions, RpcError};

use super::harness::{HANG, harness};

/// Runs one input; see the module docs.
pub fn handshake(data: &[u8]) {
    let [mode, rest @ ..] = data else {
        return;
    };
    let options = ClientOptions::default().strict_schema(mode & 0x80 != 0);
    match mode % 6 {
        0 => server_reads(Frame::from_payload(rest)),
        1 => server_reads(frame(Kind::Hello, rest)),
        2 => client_reads(&Frame::from_payload(rest), &options),
        3 => client_reads(&frame(Kind::Welcome, rest), &options),
        4 => {
            let (size, json) = rest.split_at(rest.len().min(8));
            let mut max_frame_size = [0u8; 8];
            max_frame_size[..size.len()].copy_from_slice(size);
            let welcome = Welcome {
                max_frame_size: u64::from_le_bytes(max_frame_size),
                max_in_flight: 16,
                schema_json: String::from_utf8_lossy(json).into_owned(),
            };
            let reply = wire::message_frame(header(Kind::Welcome), None, &welcome)
                .expect("a Welcome encodes");
            client_reads(&reply, &options);
        }
        _ => client_reads(&frame(Kind::Reject, rest), &options),
    }
}

fn header(kind: Kind) -> Header {
    Header {
        kind,
        method: 0,
        call_id: 0,
    }
}

/// A frame of `kind` with `body` after a valid header.
fn frame(kind: Kind, body: &[u8]) -> Frame {
    let mut frame = Frame::with_capacity(HEADER_LEN + body.len());
    frame.extend_from_slice(&[0; HEADER_LEN]);
    header(kind).write(frame.payload_mut(), false);
    frame.extend_from_slice(body);
    frame
}

/// Sends `hello` as a client's first frame to the real server and checks its answer.
fn server_reads(hello: Frame) {
    let harness = harness();
    harness.runtime.block_on(async {
        let address = harness.mem.parse().expect("a mem:// address");
        let mut connection = rpc_core::transport::connect(&address, &TransportConfig::default())
            .await
            .expect("connect to the fuzz server");
        if connection.send(hello).await.is_err() {
            return;
        }
        let reply = tokio::time::timeout(HANG, connection.recv())
            .await
            .expect("the server neither answered the handshake nor hung up");
        if let Ok(Some(reply)) = reply {
            let parsed = Header::parse(reply.payload()).expect("the server's reply parses");
            match parsed.header.kind {
                Kind::Welcome => {
                    client_handshake_reply(
                        &reply,
                        CalculatorClient::schema(),
                        &ClientOptions::default(),
                    )
                    .expect("the server's Welcome satisfies its own client");
                }
                Kind::Reject => {
                    wire::decode::<Rejection>(parsed.body, "rejection")
                        .expect("the server's Reject decodes");
                }
                other => panic!("the server answered Hello with a {other:?} frame"),
            }
        }
    });
    harness.after_input();
}

/// The client's reading of `reply`.
fn client_reads(reply: &Frame, options: &ClientOptions) {
    let schema = CalculatorClient::schema();
    match client_handshake_reply(reply, schema, options) {
        Ok(agreement) => {
            assert!(agreement.send_limit <= options.transport.max_frame_size);
            for method in &schema.methods {
                let _ = agreement.compatibility.check(method.id);
            }
            let differences = agreement.compatibility.differences(schema);
            if options.strict_schema {
                assert!(
                    differences.is_empty(),
                    "a strict client agreed: {differences:?}"
                );
            }
        }
        // Every error prints (names its cause) without panicking.
        Err(error) => {
            let _ = RpcError::to_string(&error);
        }
    }
}
