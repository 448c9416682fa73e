#[rpc_core::service]
pub trait Numbers {
    async fn show(&self, value: impl std::fmt::Display) -> String;
}

fn main() {}
