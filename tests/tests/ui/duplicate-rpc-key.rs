#[rpc_core::service]
pub trait Store {
    #[rpc(name = "fetch", name = "load")]
    async fn get(&self, key: String) -> Option<String>;
}

fn main() {}
