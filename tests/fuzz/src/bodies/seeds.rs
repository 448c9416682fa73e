//! The seed corpus, generated from the real encoders so it stays meaningful: valid frames,
//! a good `Hello`, the server's real `Welcome`, each kind of `Reject`, calls of every method,
//! and a few classic violations. `tests/tests/fuzz_corpus.rs` writes them to
//! `corpus/TARGET/seed-*` (an ignored test) and replays them.

use idl_examples::{CalculatorClient, MathError};
use rpc_core::transport::fuzzing::length_prefixed;
use rpc_core::transport::{DEFAULT_MAX_FRAME_SIZE, Frame};
use rpc_core::wire::{
    self, Extension, Header, Hello, Kind, PROTOCOL_VERSION, Rejection, Welcome, WireError,
};
use serde::Serialize;

use super::server::hello_bytes;

/// A named input of a target.
pub struct Seed {
    /// The target it is for.
    pub target: &'static str,
    /// The file name under `corpus/TARGET/`.
    pub name: String,
    /// The input.
    pub bytes: Vec<u8>,
}

fn seed(target: &'static str, name: &str, bytes: Vec<u8>) -> Seed {
    Seed {
        target,
        name: format!("seed-{name}"),
        bytes,
    }
}

fn header(kind: Kind, method: u32, call_id: u64) -> Header {
    Header {
        kind,
        method,
        call_id,
    }
}

fn payload<T: Serialize + ?Sized>(header: Header, ext: Option<&Extension>, body: &T) -> Vec<u8> {
    wire::message_frame(header, ext, body)
        .expect("a seed encodes")
        .payload()
        .to_vec()
}

/// `payload` as it goes on a stream.
fn on_stream(payload: &[u8]) -> Vec<u8> {
    length_prefixed(Frame::from_payload(payload), usize::MAX)
        .expect("a seed frame")
        .to_vec()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn method(name: &str) -> u32 {
    CalculatorClient::schema()
        .methods
        .iter()
        .find(|m| m.name == name)
        .map(|m| m.id)
        .expect("a Calculator method")
}

fn hello_payload() -> Vec<u8> {
    let hello = Hello::new(CalculatorClient::schema(), DEFAULT_MAX_FRAME_SIZE);
    payload(header(Kind::Hello, 0, 0), None, &hello)
}

fn welcome() -> Welcome {
    Welcome {
        max_frame_size: DEFAULT_MAX_FRAME_SIZE as u64,
        max_in_flight: 4096,
        schema_json: CalculatorClient::schema().to_compact_json(),
    }
}

/// Requests of every Calculator method, and a cancel, as stream bytes.
fn calls() -> Vec<u8> {
    let ext = Extension {
        timeout_micros: Some(1_000_000),
        metadata: vec![("trace".into(), "1".into())],
    };
    cat(&[
        &on_stream(&payload(
            header(Kind::Request, method("add"), 1),
            None,
            &(2i64, 3i64),
        )),
        &on_stream(&payload(
            header(Kind::Request, method("div"), 2),
            Some(&ext),
            &(7i64, 0i64),
        )),
        &on_stream(&payload(
            header(Kind::Request, method("sum"), 3),
            None,
            &(vec![1i64, 2, 3],),
        )),
        &on_stream(&payload(
            header(Kind::Request, method("echo"), 4),
            None,
            &(vec![9u8; 40],),
        )),
        &on_stream(&payload(header(Kind::Cancel, method("echo"), 4), None, &())),
    ])
}

/// Every seed of every target.
pub fn all() -> Vec<Seed> {
    let hello = hello_payload();
    let welcome_payload = payload(header(Kind::Welcome, 0, 0), None, &welcome());
    let mut seeds = Vec::new();

    // frame_decoder: [limit selector][split seed][stream]; selector 6 is 64 KiB.
    let two = cat(&[&on_stream(b"ping"), &on_stream(b"")]);
    for (name, selector, split, stream) in [
        ("empty-frame", 6u8, 0u8, on_stream(b"")),
        ("two-frames-byte-by-byte", 6, 0x00, two.clone()),
        ("two-frames-in-17s", 6, 0x80, two),
        ("hello-frame", 6, 0x40, on_stream(&hello)),
        (
            "hello-then-calls",
            6,
            0xC0,
            cat(&[&on_stream(&hello), &calls()]),
        ),
        ("over-limit-16", 3, 0x40, on_stream(&[0xAB; 40])),
        ("prefix-u32-max", 7, 0x80, vec![0xFF; 4]),
        ("cut-in-prefix", 6, 0x00, vec![5, 0]),
        ("cut-in-payload", 6, 0x40, vec![10, 0, 0, 0, 1, 2, 3]),
    ] {
        seeds.push(seed(
            "frame_decoder",
            name,
            cat(&[&[selector, split], &stream]),
        ));
    }

    // handshake: [mode][rest].
    let mut old_version = Hello::new(CalculatorClient::schema(), 1024);
    old_version.protocol_version = PROTOCOL_VERSION - 1;
    let mut other_service = Hello::new(CalculatorClient::schema(), 1024);
    other_service.service = "Probe".into();
    let mut other_digests = Hello::new(CalculatorClient::schema(), 1024);
    for (_, digest) in &mut other_digests.methods {
        digest.replace_range(..1, "0");
    }
    let hello_body = |h: &Hello| postcard_body(h);
    seeds.push(seed("handshake", "server-good-hello", cat(&[&[0], &hello])));
    seeds.push(seed(
        "handshake",
        "server-hello-body",
        cat(&[
            &[1],
            &hello_body(&Hello::new(CalculatorClient::schema(), 1024)),
        ]),
    ));
    seeds.push(seed(
        "handshake",
        "server-old-version",
        cat(&[&[1], &hello_body(&old_version)]),
    ));
    seeds.push(seed(
        "handshake",
        "server-other-service",
        cat(&[&[1], &hello_body(&other_service)]),
    ));
    seeds.push(seed(
        "handshake",
        "server-other-digests",
        cat(&[&[1], &hello_body(&other_digests)]),
    ));
    seeds.push(seed(
        "handshake",
        "server-request-first",
        cat(&[
            &[0],
            &payload(header(Kind::Request, method("add"), 1), None, &(1i64, 2i64)),
        ]),
    ));
    seeds.push(seed(
        "handshake",
        "client-welcome",
        cat(&[&[2], &welcome_payload]),
    ));
    seeds.push(seed(
        "handshake",
        "client-welcome-strict",
        cat(&[&[0x80 | 2], &welcome_payload]),
    ));
    seeds.push(seed(
        "handshake",
        "client-welcome-body",
        cat(&[&[3], &postcard_body(&welcome())]),
    ));
    let json = CalculatorClient::schema().to_compact_json();
    seeds.push(seed(
        "handshake",
        "client-welcome-json",
        cat(&[&[4], &1024u64.to_le_bytes(), json.as_bytes()]),
    ));
    seeds.push(seed(
        "handshake",
        "client-welcome-json-strict",
        cat(&[&[0x80 | 4], &1024u64.to_le_bytes(), json.as_bytes()]),
    ));
    let rejections = [
        ("version", Rejection::ProtocolVersion { server: 1 }),
        (
            "schema",
            Rejection::Schema {
                server_service: "Probe".into(),
                differences: vec!["method 'add' differs".into()],
            },
        ),
        ("too-many", Rejection::TooManyConnections(10)),
        ("shutting-down", Rejection::ShuttingDown),
        ("from-peer", Rejection::TooManyFromPeer(2)),
        (
            "access",
            Rejection::AccessDenied {
                reason: "uid 1000 is not admitted".into(),
            },
        ),
    ];
    for (name, rejection) in &rejections {
        seeds.push(seed(
            "handshake",
            &format!("client-reject-{name}"),
            cat(&[&[5], &postcard_body(rejection)]),
        ));
    }
    seeds.push(seed(
        "handshake",
        "client-response-instead",
        cat(&[&[2], &payload(header(Kind::Response, 1, 1), None, &5i64)]),
    ));

    // server_bytes: [flags][bytes]; bit 0 puts a good Hello in front.
    let bad_args = on_stream(&payload(
        header(Kind::Request, method("add"), 5),
        None,
        &"not two numbers",
    ));
    let unknown = on_stream(&payload(header(Kind::Request, 0xDEAD_BEEF, 6), None, &()));
    let error_frame = on_stream(&payload(
        header(Kind::Error, 0, 0),
        None,
        &WireError::Protocol("x".into()),
    ));
    let app_error = postcard_body(&Result::<i64, MathError>::Err(MathError::Overflow));
    let response_frame = on_stream(&payload(
        header(Kind::Response, method("div"), 2),
        None,
        &app_error,
    ));
    for (name, flags, bytes) in [
        ("hello-only", 0u8, hello_bytes()),
        ("calls", 1, calls()),
        ("calls-byte-by-byte", 0, cat(&[&hello_bytes(), &calls()])),
        ("bad-arguments", 1, bad_args),
        ("unknown-method", 1, unknown),
        (
            "client-sends-server-kinds",
            1,
            cat(&[&error_frame, &response_frame]),
        ),
        ("second-hello", 1, hello_bytes()),
        (
            "huge-prefix-after-hello",
            1,
            vec![0xFF, 0xFF, 0xFF, 0x7F, 1, 2, 3],
        ),
        ("huge-prefix-before-hello", 0, vec![0, 0, 0, 1]),
        ("cut-inside-call", 0x81, calls()[..30].to_vec()),
        ("garbage", 0x40, b"GET / HTTP/1.1\r\n\r\n".to_vec()),
    ] {
        seeds.push(seed("server_bytes", name, cat(&[&[flags], &bytes])));
    }

    // shm_ring: [capacity selector][ops]; see ring.rs for the op codes.
    for (name, ops) in [
        ("push-take", vec![0u8, 7, 0, 5, 0, 0]),
        (
            "fill-and-wrap",
            vec![0, 7, 0, 20, 7, 1, 20, 0, 7, 0, 20, 7, 0, 20, 2, 0, 0, 0, 0],
        ),
        ("large-record", vec![1, 7, 1, 16, 1, 0]),
        ("sleep-announced", vec![0, 8, 2, 8, 7, 0, 1, 8, 1, 0, 0]),
        (
            "tail-beyond-capacity",
            vec![0, 5, 0x10, 0x27, 0, 0, 0, 0, 0, 0, 0],
        ),
        (
            "header-longer-than-published",
            vec![0, 3, 0, 2, 8, 200, 0, 0, 0, 1, 0, 0, 0, 4, 16, 0, 0],
        ),
        (
            "unknown-kind",
            vec![0, 3, 0, 2, 8, 1, 0, 0, 0, 77, 0, 0, 0, 4, 16, 0, 0],
        ),
        (
            "wrap-record-short",
            vec![2, 3, 0, 2, 8, 0, 0, 0, 0, 2, 0, 0, 0, 4, 8, 0, 0],
        ),
        (
            "head-runs-ahead",
            vec![0, 6, 0, 0, 0, 0, 0, 1, 0, 0, 7, 0, 4],
        ),
    ] {
        seeds.push(seed("shm_ring", name, ops));
    }
    seeds
}

fn postcard_body<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut frame = Frame::new();
    wire::encode_into(value, &mut frame, "seed").expect("a seed body encodes");
    frame.payload().to_vec()
}
