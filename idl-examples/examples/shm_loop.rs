//! A profiling aid: `add` over shared memory from the blocking client, in a tight loop.
//!
//! `cargo run --release -p idl-examples --example shm_loop -- [CALLS]`, under `perf record`
//! or `valgrind --tool=callgrind` to see where a call's time goes.

use std::time::Instant;

use idl_examples::{Calc, CalculatorBlockingClient, CalculatorServer};

fn main() {
    let calls: i64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let address = format!("shm://shm-loop-{}", std::process::id());
    let server = runtime
        .block_on(rpc_core::Server::new().start(CalculatorServer::new(Calc), &[&address]))
        .expect("serve");
    let client = CalculatorBlockingClient::connect(&address).expect("connect");
    let start = Instant::now();
    for i in 0..calls {
        assert_eq!(client.add(i, i).expect("add"), 2 * i);
    }
    let elapsed = start.elapsed();
    println!(
        "{calls} calls in {elapsed:?}: {:.3} us per call",
        elapsed.as_secs_f64() * 1e6 / calls as f64
    );
    drop(client);
    runtime.block_on(server.shutdown());
}
