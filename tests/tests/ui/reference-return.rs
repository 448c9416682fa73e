#[rpc_core::service]
pub trait Greeter {
    async fn name(&self) -> &str;
}

fn main() {}
