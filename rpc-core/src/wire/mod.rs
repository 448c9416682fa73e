//! The wire protocol: a fixed header in front of a postcard body, per frame.
//!
//! ```text
//! offset  size  field
//!      0     1  kind      (Kind)
//!      1     1  flags     (bit 0: an extension follows the header)
//!      2     2  reserved  (zero)
//!      4     4  method    (u32 LE, the method's wire id)
//!      8     8  call id   (u64 LE; 0 on handshake frames and connection-level errors)
//!     16     4  extension length (u32 LE), only when flags bit 0 is set
//!     20     n  extension (postcard `Extension`: deadline and metadata)
//!      …        body (postcard)
//! ```
//!
//! The header has a fixed size so a response can be encoded first and its header patched in
//! place afterwards, with no copy. A connection starts with `Hello` from the client, answered
//! by `Welcome` or `Reject`; see [`Hello`].

mod codec;
mod handshake;
mod header;

pub(crate) use codec::encode_in_place;
pub use codec::{Message, decode, encode_into, message_frame};
pub use handshake::{Hello, MIN_PROTOCOL_VERSION, PROTOCOL_VERSION, Rejection, Welcome};
pub use header::{Extension, HEADER_LEN, Header, Kind, Parsed, STREAM_WINDOW, WireError};
