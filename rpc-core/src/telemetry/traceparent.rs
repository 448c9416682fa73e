//! [`TraceParent`]: the W3C Trace Context `traceparent` value,
//! `00-<32 hex trace id>-<16 hex parent span id>-<2 hex flags>`.

use std::fmt;
use std::str::FromStr;

use super::ids;

/// Where a call sits in a distributed trace: the W3C `traceparent` header's fields.
///
/// `Display` prints the header value (version `00`); [`str::parse`] reads one, refusing
/// malformed values and all-zero ids as the specification requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct TraceParent {
    /// The trace every call of one request shares.
    pub trace_id: [u8; 16],
    /// The span of the caller (in a header) or of this call (in a span's record).
    pub span_id: [u8; 8],
    /// Trace flags; bit 0 is "sampled".
    pub flags: u8,
}

impl TraceParent {
    /// The "sampled" flag.
    pub const SAMPLED: u8 = 0x01;

    /// A new trace, with a new span id, sampled.
    pub fn new_trace() -> TraceParent {
        TraceParent {
            trace_id: ids::trace_id(),
            span_id: ids::span_id(),
            flags: Self::SAMPLED,
        }
    }

    /// A new span in the same trace, with the same flags.
    pub fn new_span(&self) -> TraceParent {
        TraceParent {
            span_id: ids::span_id(),
            ..*self
        }
    }

    /// The trace id as 32 lowercase hex digits.
    pub fn trace_id_hex(&self) -> String {
        Hex(&self.trace_id).to_string()
    }

    /// The span id as 16 lowercase hex digits.
    pub fn span_id_hex(&self) -> String {
        Hex(&self.span_id).to_string()
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            Hex(&self.trace_id),
            Hex(&self.span_id),
            self.flags
        )
    }
}

/// Bytes printed as lowercase hex, for span fields without an allocation.
pub(crate) struct Hex<'a>(pub(crate) &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        // Whole chunks go out in one write each: a formatter call per byte cost more than the
        // rest of a span's fields.
        let mut text = [0u8; 64];
        for chunk in self.0.chunks(text.len() / 2) {
            for (pair, byte) in text.chunks_exact_mut(2).zip(chunk) {
                pair[0] = DIGITS[usize::from(byte >> 4)];
                pair[1] = DIGITS[usize::from(byte & 0x0f)];
            }
            let text = std::str::from_utf8(&text[..chunk.len() * 2]).map_err(|_| fmt::Error)?;
            f.write_str(text)?;
        }
        Ok(())
    }
}

/// Why a `traceparent` value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid traceparent '{value}': {reason}")]
pub struct TraceParentError {
    /// The value as received.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for TraceParent {
    type Err = TraceParentError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let fail = |reason| TraceParentError {
            value: value.to_owned(),
            reason,
        };
        let mut parts = value.splitn(5, '-');
        let (Some(version), Some(trace), Some(span), Some(flags)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(fail("expected VERSION-TRACEID-PARENTID-FLAGS"));
        };
        let [version] = hex::<1>(version).ok_or_else(|| fail("the version is not 2 hex digits"))?;
        if version == 0xff {
            return Err(fail("version ff is forbidden"));
        }
        // Version 00 has exactly four fields; a later version may append more after a '-'.
        if version == 0 && parts.next().is_some() {
            return Err(fail("version 00 has exactly four fields"));
        }
        let trace_id = hex::<16>(trace).ok_or_else(|| fail("the trace id is not 32 hex digits"))?;
        let span_id = hex::<8>(span).ok_or_else(|| fail("the parent id is not 16 hex digits"))?;
        let [flags] = hex::<1>(flags).ok_or_else(|| fail("the flags are not 2 hex digits"))?;
        if trace_id == [0; 16] {
            return Err(fail("the trace id is all zeros"));
        }
        if span_id == [0; 8] {
            return Err(fail("the parent id is all zeros"));
        }
        Ok(TraceParent {
            trace_id,
            span_id,
            flags,
        })
    }
}

/// Exactly `2 * N` lowercase hex digits as `N` bytes.
fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    let digits = text.as_bytes();
    if digits.len() != 2 * N {
        return None;
    }
    let nibble = |digit: u8| match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'a'..=b'f' => Some(digit - b'a' + 10),
        _ => None,
    };
    let mut bytes = [0u8; N];
    for (byte, pair) in bytes.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Some(bytes)
}
