// Two explicit ids that collide.
#[rpc_core::service]
pub trait Store {
    #[rpc(id = 7)]
    async fn get(&self, key: String) -> Option<String>;
    #[rpc(id = 7)]
    async fn put(&self, key: String, value: String);
}

fn main() {}
