// Only the top of an argument may borrow (`&str`, `&[u8]`, `&[T]`, `&T`).
#[rpc_core::service]
pub trait Greeter {
    async fn greet(&self, name: Option<&str>) -> String;
}

fn main() {}
