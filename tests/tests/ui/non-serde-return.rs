pub struct Handle(u32);

#[rpc_core::service]
pub trait Files {
    async fn open(&self, path: String) -> Handle;
}

fn main() {}
