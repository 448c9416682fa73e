//! A profiling aid: `add` (or, given BYTES, `echo` of that many bytes) over shared memory from
//! the blocking client, in a tight loop.
//!
//! `cargo run --release -p idl-examples --example shm_loop -- [CALLS] [BYTES] [async]`, under
//! `perf record` or `valgrind --tool=callgrind` to see where a call's time goes.

use std::time::Instant;

use idl_examples::{Calc, CalculatorBlockingClient, CalculatorServer};

fn main() {
    let calls: i64 = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let bytes: usize = std::env::args()
        .nth(2)
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    // RPC_LOOP_ADDRESS runs the same loop over another transport, for comparison.
    let address = std::env::var("RPC_LOOP_ADDRESS")
        .unwrap_or_else(|_| format!("shm://shm-loop-{}", std::process::id()));
    let server = runtime
        .block_on(rpc_core::Server::new().start(CalculatorServer::new(Calc), &[&address]))
        .expect("serve");
    let client = CalculatorBlockingClient::connect(&address).expect("connect");
    let mut payload = rpc_core::Bytes::from(vec![7u8; bytes]);
    let asynchronous = std::env::args().nth(3).as_deref() == Some("async");
    // The async client runs on a runtime of its own, on this thread, as an application would.
    let client_runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let runtime_for_calls = &client_runtime;
    let async_client = asynchronous.then(|| {
        client_runtime
            .block_on(idl_examples::CalculatorClient::connect(&address))
            .expect("connect")
    });
    let start = Instant::now();
    for i in 0..calls {
        match (&async_client, bytes) {
            (None, 0) => assert_eq!(client.add(i, i).expect("add"), 2 * i),
            (None, _) => payload = client.echo(payload).expect("echo"),
            (Some(client), 0) => {
                assert_eq!(
                    runtime_for_calls.block_on(client.add(i, i)).expect("add"),
                    2 * i
                )
            }
            (Some(client), _) => {
                payload = runtime_for_calls
                    .block_on(client.echo(payload))
                    .expect("echo")
            }
        }
    }
    assert_eq!(payload.len(), bytes);
    let elapsed = start.elapsed();
    if bytes > 0 {
        let mib = (bytes * calls as usize) as f64 / (1024.0 * 1024.0);
        println!("echo: {:.0} MiB/s", mib / elapsed.as_secs_f64());
    }
    println!(
        "{calls} calls in {elapsed:?}: {:.3} us per call",
        elapsed.as_secs_f64() * 1e6 / calls as f64
    );
    drop(client);
    runtime.block_on(server.shutdown());
}
