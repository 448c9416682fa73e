#[rpc_core::service]
pub trait Calc {
    async fn add(a: i64, b: i64) -> i64;
}

fn main() {}
