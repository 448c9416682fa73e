use rpc_core::Streaming;

#[rpc_core::service]
pub trait Upload {
    async fn both(&self, a: Streaming<u32>, b: Streaming<u32>) -> u64;
}

fn main() {}
