#[rpc_core::service]
pub trait Store {
    #[rpc(timeout = 5)]
    async fn get(&self, key: String) -> Option<String>;
}

fn main() {}
