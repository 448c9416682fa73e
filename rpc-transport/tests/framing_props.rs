//! Properties of the byte-stream framing (`stream.rs`), with a bounded number of cases:
//! frames survive any split of the stream into reads, oversize lengths are refused with a
//! typed error on both sides, and a stream cut inside a frame is malformed.

use bytes::BytesMut;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;
use rpc_transport::fuzzing::{StreamDecoder, length_prefixed, take_frame};
use rpc_transport::{Frame, TransportError};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 256,
        ..ProptestConfig::default()
    }
}

/// `stream` cut at the points `cuts` pick (anywhere, including inside a length prefix).
fn split(stream: &[u8], cuts: &[Index]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|i| i.index(stream.len() + 1)).collect();
    points.push(0);
    points.push(stream.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| stream[w[0]..w[1]].to_vec())
        .collect()
}

fn encode(payloads: &[Vec<u8>], limit: usize) -> Vec<u8> {
    payloads
        .iter()
        .flat_map(|p| length_prefixed(Frame::from_payload(p), limit).expect("within the limit"))
        .collect()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn frames_split_anywhere_reassemble_identically(
        payloads in vec(vec(any::<u8>(), 0..300), 0..8),
        cuts in vec(any::<Index>(), 0..24),
        headroom in 0usize..64,
    ) {
        let limit = payloads.iter().map(Vec::len).max().unwrap_or(0) + headroom;
        let stream = encode(&payloads, limit);
        prop_assert_eq!(stream.len(), payloads.iter().map(|p| 4 + p.len()).sum::<usize>());

        let mut decoder = StreamDecoder::new(split(&stream, &cuts), limit);
        for payload in &payloads {
            let frame = decoder.recv().expect("a good stream").expect("a frame");
            prop_assert_eq!(frame.payload(), &payload[..]);
        }
        prop_assert!(!decoder.has_buffered());
        prop_assert!(decoder.recv().expect("a clean end").is_none());

        let mut buf = BytesMut::from(&stream[..]);
        for payload in &payloads {
            let frame = take_frame(&mut buf, limit).expect("a good stream").expect("a frame");
            prop_assert_eq!(frame.payload(), &payload[..]);
        }
        prop_assert!(buf.is_empty());
        prop_assert!(take_frame(&mut buf, limit).expect("empty").is_none());
    }

    #[test]
    fn oversize_lengths_are_refused_with_a_typed_error(
        limit in 0usize..5000,
        excess in 1usize..5000,
        announced_extra in any::<u32>(),
        good in vec(vec(any::<u8>(), 0..50), 0..3),
        trailing in vec(any::<u8>(), 0..20),
        cuts in vec(any::<Index>(), 0..12),
    ) {
        // The encoder refuses a frame over the limit, naming both.
        let size = limit + excess;
        let refused = length_prefixed(Frame::from_payload(&vec![0; size]), limit);
        let named = matches!(
            refused,
            Err(TransportError::FrameTooLarge { size: s, limit: l }) if s == size && l == limit
        );
        prop_assert!(named, "{:?}", refused);

        // The decoders refuse a prefix announcing more than the limit, after the good frames
        // before it, however the stream is split; the refused bytes are never allocated.
        let limit = limit.max(50);
        let announced = (limit as u64 + 1 + u64::from(announced_extra) % (u64::from(u32::MAX) - limit as u64)) as u32;
        let mut stream = encode(&good, limit);
        stream.extend_from_slice(&announced.to_le_bytes());
        stream.extend_from_slice(&trailing);
        let too_large = |r: &Result<Option<Frame>, TransportError>| matches!(
            r,
            Err(TransportError::FrameTooLarge { size, limit: l }) if *size == announced as usize && *l == limit
        );

        let mut buf = BytesMut::from(&stream[..]);
        for payload in &good {
            let frame = take_frame(&mut buf, limit).expect("a good frame").expect("a frame");
            prop_assert_eq!(frame.payload(), &payload[..]);
        }
        let refused = take_frame(&mut buf, limit);
        prop_assert!(too_large(&refused), "{:?}", refused);

        let mut decoder = StreamDecoder::new(split(&stream, &cuts), limit);
        for payload in &good {
            let frame = decoder.recv().expect("a good frame").expect("a frame");
            prop_assert_eq!(frame.payload(), &payload[..]);
        }
        let refused = decoder.recv();
        prop_assert!(too_large(&refused), "{:?}", refused);
    }

    #[test]
    fn a_stream_cut_inside_a_frame_is_malformed(
        payloads in vec(vec(any::<u8>(), 0..100), 1..4),
        cut in any::<Index>(),
        cuts in vec(any::<Index>(), 0..8),
    ) {
        let stream = encode(&payloads, 100);
        let last = 4 + payloads.last().expect("one frame").len();
        // Keep every frame but the last, and 1 to all-but-one bytes of the last.
        let keep = stream.len() - last + 1 + cut.index(last - 1);
        let mut decoder = StreamDecoder::new(split(&stream[..keep], &cuts), 100);
        for payload in &payloads[..payloads.len() - 1] {
            let frame = decoder.recv().expect("a whole frame").expect("a frame");
            prop_assert_eq!(frame.payload(), &payload[..]);
        }
        let end = decoder.recv();
        prop_assert!(matches!(end, Err(TransportError::Malformed(_))), "{:?}", end);
    }
}
