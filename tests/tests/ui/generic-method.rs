#[rpc_core::service]
pub trait Store {
    async fn put<T: serde::Serialize>(&self, value: T) -> bool;
}

fn main() {}
