pub struct Handle(u32);

#[rpc_core::service]
pub trait Files {
    async fn close(&self, handle: Handle) -> bool;
}

fn main() {}
