#[rpc_core::service]
pub trait Greeter {
    async fn greet(&self, name: &'static str) -> String;
}

fn main() {}
