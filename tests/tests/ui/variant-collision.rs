// Two methods whose names give the same request variant.
#[rpc_core::service]
pub trait Legacy {
    async fn get_item(&self) -> u32;
    #[allow(non_snake_case)]
    #[rpc(name = "GetItemV1")]
    async fn GetItem(&self) -> u32;
}

fn main() {}
