//! Target `frame_decoder`: the length-prefixed framing of the byte-stream transports.
//!
//! Input: `[limit selector][split seed][stream bytes...]`. The pure decoder (`take_frame`)
//! reads the whole stream; every frame it returns must re-encode to exactly the bytes it came
//! from, and it must stop only at a clean end, a partial frame, or a prefix over the limit
//! (`FrameTooLarge` naming that prefix). The async receiver of the real transports then reads
//! the same stream cut into reads at input-chosen points and must return the same frames and
//! end the same way (a partial frame at the end being `Malformed`); so must the blocking
//! transports' receiver, reading the stream from a Unix socket.

use bytes::BytesMut;
use rpc_core::transport::fuzzing::{
    BlockingStreamDecoder, StreamDecoder, length_prefixed, take_frame,
};
use rpc_core::transport::{Frame, TransportError};

use super::split::chunks;

/// Frame size limits the input chooses from.
const LIMITS: [usize; 8] = [0, 1, 7, 16, 100, 1024, 65_536, 16 << 20];

/// Runs one input; see the module docs.
pub fn frame_decoder(data: &[u8]) {
    let [selector, seed, stream @ ..] = data else {
        return;
    };
    let limit = LIMITS[usize::from(selector & 7)];

    let mut buf = BytesMut::from(stream);
    let mut frames: Vec<Frame> = Vec::new();
    let end = loop {
        match take_frame(&mut buf, limit) {
            Ok(Some(frame)) => frames.push(frame),
            Ok(None) => break Ok(buf.len()),
            Err(error) => break Err(error),
        }
    };
    let mut reencoded = Vec::new();
    for frame in &frames {
        assert!(frame.len() <= limit, "a frame over the limit was accepted");
        let bytes = length_prefixed(frame.clone(), limit).expect("a decoded frame re-encodes");
        reencoded.extend_from_slice(&bytes);
    }
    assert_eq!(
        reencoded[..],
        stream[..reencoded.len()],
        "frames re-encode to other bytes"
    );
    let at = reencoded.len();
    match &end {
        Ok(leftover) => assert_eq!(at + leftover, stream.len(), "bytes lost"),
        Err(TransportError::FrameTooLarge { size, limit: named }) => {
            assert_eq!(*named, limit);
            let prefix: [u8; 4] = stream[at..at + 4].try_into().expect("a whole prefix");
            assert_eq!(*size, u32::from_le_bytes(prefix) as usize);
            assert!(*size > limit);
        }
        Err(other) => panic!("take_frame failed with {other:?}"),
    }

    let mut decoder = StreamDecoder::new(chunks(stream, *seed), limit);
    agrees("the stream receiver", || decoder.recv(), &frames, &end);
    let mut blocking = BlockingStreamDecoder::new(stream, limit).expect("a socket pair");
    agrees("the blocking receiver", || blocking.recv(), &frames, &end);
}

/// `recv` returns `frames`, then ends as the pure decoder did.
fn agrees(
    who: &str,
    mut recv: impl FnMut() -> Result<Option<Frame>, TransportError>,
    frames: &[Frame],
    end: &Result<usize, TransportError>,
) {
    for (index, frame) in frames.iter().enumerate() {
        match recv() {
            Ok(Some(got)) => assert_eq!(
                got.payload(),
                frame.payload(),
                "{who}: frame {index} differs"
            ),
            other => panic!("{who}: frame {index}: got {other:?}"),
        }
    }
    let last = recv();
    let agree = match (&last, end) {
        (Ok(None), Ok(0)) => true,
        (Err(TransportError::Malformed(_)), Ok(leftover)) => *leftover > 0,
        (
            Err(TransportError::FrameTooLarge { size, limit }),
            Err(TransportError::FrameTooLarge {
                size: size2,
                limit: limit2,
            }),
        ) => size == size2 && limit == limit2,
        _ => false,
    };
    assert!(agree, "{who} ended with {last:?}, the decoder with {end:?}");
}
