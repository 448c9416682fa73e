//! A profiling aid: `add` with many calls in flight on one connection.
//!
//! `cargo run --release -p idl-examples --example in_flight -- ADDRESS [CALLS] [IN_FLIGHT]`,
//! under `perf record`, to see where throughput goes.

use std::time::Instant;

use idl_examples::{Calc, CalculatorClient, CalculatorServer};

fn main() {
    let mut args = std::env::args().skip(1);
    let address = args.next().unwrap_or_else(|| "tcp://127.0.0.1:0".into());
    let calls: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(500_000);
    let in_flight: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(32);
    let server_runtime = tokio::runtime::Runtime::new().expect("runtime");
    let server = server_runtime
        .block_on(rpc_core::Server::new().start(CalculatorServer::new(Calc), &[&address]))
        .expect("serve");
    let bound = server.local_address();
    let client_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let elapsed = client_runtime.block_on(async {
        let client = CalculatorClient::connect(&bound).await.expect("connect");
        let start = Instant::now();
        let tasks: Vec<_> = (0..in_flight)
            .map(|t| {
                let client = client.clone();
                tokio::spawn(async move {
                    for i in (t..calls).step_by(in_flight) {
                        let i = i as i64;
                        assert_eq!(client.add(i, i).await.expect("add"), 2 * i);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
        start.elapsed()
    });
    println!(
        "{calls} calls, {in_flight} in flight: {:.0} calls/s",
        calls as f64 / elapsed.as_secs_f64()
    );
    server_runtime.block_on(server.shutdown());
}
