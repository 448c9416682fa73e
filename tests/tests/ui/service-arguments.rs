#[rpc_core::service(version = 2)]
pub trait Greeter {
    async fn greet(&self, name: String) -> String;
}

fn main() {}
