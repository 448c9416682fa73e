#[rpc_core::service]
pub trait Store {
    #[rpc(retries = 3)]
    async fn get(&self, key: String) -> Option<String>;
}

fn main() {}
