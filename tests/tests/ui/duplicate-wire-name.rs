// Renaming one method onto another's wire name.
#[rpc_core::service]
pub trait Store {
    async fn get(&self, key: String) -> Option<String>;
    #[rpc(name = "get")]
    async fn fetch(&self, key: String) -> Option<String>;
}

fn main() {}
