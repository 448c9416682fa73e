#[rpc_core::service]
pub trait Phone {
    async fn connect(&self, number: String) -> bool;
}

fn main() {}
