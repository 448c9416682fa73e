//! [`Greeter`]: a second small service, served beside the probe on one listener.

/// Greets people: a service other than the probe, to serve both on the same addresses.
#[rpc_core::service]
pub trait Greeter {
    /// Returns "hello, NAME".
    async fn greet(&self, name: String) -> String;
}

/// The greeter implementation.
#[derive(Debug, Clone, Copy, Default)]
pub struct GreeterImpl;

impl Greeter for GreeterImpl {
    async fn greet(&self, name: String) -> String {
        format!("hello, {name}")
    }
}
