//! Properties of the wire codec, with a bounded number of cases: headers, extensions and
//! bodies round-trip through a frame and through a byte stream split anywhere; a sized
//! `Message` writes the same bytes as `message_frame`; cut or arbitrary payloads are typed
//! errors, never panics; handshake messages round-trip.

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use rpc_core::RpcError;
use rpc_core::transport::Frame;
use rpc_core::transport::fuzzing::{StreamDecoder, length_prefixed, take_frame};
use rpc_core::wire::{
    self, Extension, HEADER_LEN, Header, Hello, Kind, Message, Rejection, Welcome, WireError,
};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        Just(Kind::Hello),
        Just(Kind::Welcome),
        Just(Kind::Reject),
        Just(Kind::Request),
        Just(Kind::Response),
        Just(Kind::Error),
        Just(Kind::Cancel),
    ]
}

fn header() -> impl Strategy<Value = Header> {
    (kind(), any::<u32>(), any::<u64>()).prop_map(|(kind, method, call_id)| Header {
        kind,
        method,
        call_id,
    })
}

fn extension() -> impl Strategy<Value = Option<Extension>> {
    proptest::option::of(
        (
            proptest::option::of(any::<u64>()),
            vec((".{0,12}", ".{0,12}"), 0..4),
        )
            .prop_map(|(timeout_micros, metadata)| Extension {
                timeout_micros,
                metadata,
            }),
    )
}

type Body = (i64, Vec<u8>, String, Option<u32>);

fn body() -> impl Strategy<Value = Body> {
    (
        any::<i64>(),
        vec(any::<u8>(), 0..200),
        ".{0,40}",
        proptest::option::of(any::<u32>()),
    )
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn messages_round_trip_through_a_frame(header in header(), ext in extension(), body in body()) {
        let frame = wire::message_frame(header, ext.as_ref(), &body).expect("encodes");
        let parsed = Header::parse(frame.payload()).expect("parses");
        prop_assert_eq!(parsed.header, header);
        prop_assert_eq!(&parsed.extension, &ext);
        let decoded: Body = wire::decode(parsed.body, "body").expect("decodes");
        prop_assert_eq!(&decoded, &body);

        let message = Message::new(header, ext.as_ref(), &body).expect("sizes");
        prop_assert_eq!(message.len(), frame.len());
        prop_assert_eq!(message.to_frame(), frame);
    }

    #[test]
    fn messages_round_trip_through_a_stream_split_anywhere(
        messages in vec((header(), extension(), body()), 1..6),
        cuts in vec(any::<Index>(), 0..24),
    ) {
        let limit = 1 << 20;
        let mut stream = Vec::new();
        for (header, ext, body) in &messages {
            let frame = wire::message_frame(*header, ext.as_ref(), body).expect("encodes");
            stream.extend_from_slice(&length_prefixed(frame, limit).expect("fits"));
        }
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
        points.extend([0, stream.len()]);
        points.sort_unstable();
        points.dedup();
        let chunks = points.windows(2).map(|w| stream[w[0]..w[1]].to_vec()).collect();
        let mut decoder = StreamDecoder::new(chunks, limit);
        for (header, ext, body) in &messages {
            let frame = decoder.recv().expect("a good stream").expect("a frame");
            let parsed = Header::parse(frame.payload()).expect("parses");
            prop_assert_eq!(parsed.header, *header);
            prop_assert_eq!(&parsed.extension, ext);
            prop_assert_eq!(&wire::decode::<Body>(parsed.body, "body").expect("decodes"), body);
        }
        prop_assert!(decoder.recv().expect("a clean end").is_none());
        // The same frames, one whole buffer at a time.
        let mut buf = BytesMut::from(&stream[..]);
        let mut count = 0;
        while take_frame(&mut buf, limit).expect("a good stream").is_some() {
            count += 1;
        }
        prop_assert_eq!(count, messages.len());
    }

    #[test]
    fn cut_payloads_are_typed_errors(header in header(), ext in extension(), body in body(), cut in any::<Index>()) {
        let frame = wire::message_frame(header, ext.as_ref(), &body).expect("encodes");
        let cut = cut.index(frame.len());
        let result = Header::parse(&frame.payload()[..cut]);
        if cut < HEADER_LEN {
            prop_assert!(matches!(result, Err(RpcError::Protocol(_))));
        }
        // A cut in the extension fails to parse; a cut in the body fails to decode.
        let failed = match result {
            Err(_) => true,
            Ok(parsed) => wire::decode::<Body>(parsed.body, "body").is_err(),
        };
        prop_assert!(failed);
    }

    #[test]
    fn arbitrary_payloads_never_panic(payload in vec(any::<u8>(), 0..64)) {
        if let Ok(parsed) = Header::parse(&payload) {
            prop_assert_eq!(parsed.header.kind as u8, payload[0]);
            prop_assert_eq!(&parsed.header.method.to_le_bytes()[..], &payload[4..8]);
            prop_assert_eq!(&parsed.header.call_id.to_le_bytes()[..], &payload[8..16]);
            let _ = wire::decode::<Body>(parsed.body, "body");
            let _ = wire::decode::<WireError>(parsed.body, "error");
            let _ = wire::decode::<Hello>(parsed.body, "hello");
        }
    }

    #[test]
    fn handshake_messages_round_trip(
        version in any::<u16>(),
        service in ".{0,20}",
        methods in vec((any::<u32>(), "[0-9a-f]{0,64}"), 0..6),
        max_frame_size in any::<u64>(),
        max_in_flight in any::<u32>(),
        schema_json in ".{0,60}",
        limit in any::<u32>(),
        trailing in vec(any::<u8>(), 1..4),
    ) {
        let hello = Hello { protocol_version: version, service, methods, max_frame_size };
        let welcome = Welcome { max_frame_size, max_in_flight, schema_json };
        let rejection = Rejection::TooManyFromPeer(limit);
        let mut frame = Frame::new();
        wire::encode_into(&hello, &mut frame, "hello").expect("encodes");
        prop_assert_eq!(&wire::decode::<Hello>(frame.payload(), "hello").expect("decodes"), &hello);
        // Trailing bytes are refused.
        frame.extend_from_slice(&trailing);
        prop_assert!(wire::decode::<Hello>(frame.payload(), "hello").is_err());
        let mut frame = Frame::new();
        wire::encode_into(&welcome, &mut frame, "welcome").expect("encodes");
        prop_assert_eq!(&wire::decode::<Welcome>(frame.payload(), "welcome").expect("decodes"), &welcome);
        let mut frame = Frame::new();
        wire::encode_into(&rejection, &mut frame, "rejection").expect("encodes");
        prop_assert_eq!(&wire::decode::<Rejection>(frame.payload(), "rejection").expect("decodes"), &rejection);
    }
}
