// A crate that denies warnings and documents everything builds with a deprecated, renamed,
// timed and idempotent method: nothing generated makes it warn.
#![deny(warnings, missing_docs)]
//! A strict crate.

/// A documented service.
#[rpc_core::service]
pub trait Store {
    /// An old way to read.
    #[deprecated(note = "use `read`")]
    async fn get(&self, key: String) -> Option<String>;
    /// Reads a value.
    #[rpc(name = "read_v2", timeout = "2s", idempotent)]
    async fn read(&self, key: &str) -> Option<String>;
}

/// The implementation.
pub struct Memory;

impl Store for Memory {
    async fn get(&self, _key: String) -> Option<String> {
        None
    }
    async fn read(&self, _key: &str) -> Option<String> {
        None
    }
}

fn main() {
    let _server = StoreServer::new(Memory);
}
