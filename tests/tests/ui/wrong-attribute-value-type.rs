#[rpc_core::service]
pub trait Store {
    #[rpc(id = "7")]
    async fn get(&self, key: String) -> Option<String>;
}

fn main() {}
