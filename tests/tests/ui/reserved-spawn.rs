// `spawn` is a method of the generated client.
#[rpc_core::service]
pub trait Workers {
    async fn spawn(&self, count: u32) -> bool;
}

fn main() {}
