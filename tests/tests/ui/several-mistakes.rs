// Independent mistakes are all reported in one build.
#[rpc_core::service]
pub trait Calc {
    fn add(&self, a: i64, b: i64) -> i64;
    async fn neg(x: i64) -> i64;
}

fn main() {}
