#[rpc_core::service]
pub unsafe trait Greeter {
    async fn greet(&self, name: String) -> String;
}

fn main() {}
