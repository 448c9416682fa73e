#[rpc_core::service]
pub trait Store {
    #[rpc(timeout = "5 parsecs")]
    async fn get(&self, key: String) -> Option<String>;
}

fn main() {}
