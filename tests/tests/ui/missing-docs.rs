// An undocumented method in a crate that denies missing docs: one error, at the method.
#![deny(missing_docs)]
//! A documented crate.

/// A documented service.
#[rpc_core::service]
pub trait Store {
    /// Documented.
    async fn get(&self, key: String) -> Option<String>;
    async fn put(&self, key: String, value: String);
}

fn main() {}
