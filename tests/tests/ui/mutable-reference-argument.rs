// An argument is decoded on the server: changes through `&mut` would never reach the caller.
#[rpc_core::service]
pub trait Greeter {
    async fn greet(&self, name: &mut String) -> String;
}

fn main() {}
