//! `rpc-demo`: serves the Calculator on every transport at once, calls each through its own
//! client, and prints a table of transport, calls, p50 and p99. Needs no argument.

use std::process::ExitCode;

use idl_examples::demo::{ClientKind, measure, micros};

const CALLS: usize = 2000;

/// The path of a binary built beside this one (`calc-server`), as a string.
fn sibling(name: &str) -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(|d| d.join(name)).unwrap_or_default();
    dir.display().to_string()
}

#[tokio::main]
async fn main() -> ExitCode {
    let dir = std::env::temp_dir().join(format!("rpc-demo-{}", std::process::id()));
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("rpc-demo: cannot create {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    let pid = std::process::id();
    let (async_client, blocking) = (ClientKind::Async, ClientKind::Blocking);
    let transports = [
        ("tcp", "tcp://127.0.0.1:0".to_owned(), async_client),
        (
            "unix",
            format!("unix://{}/calc.sock", dir.display()),
            async_client,
        ),
        (
            "unix (abstract)",
            format!("unix:@rpc-demo-{pid}"),
            async_client,
        ),
        ("mem", format!("mem://rpc-demo-{pid}"), async_client),
        ("shm", format!("shm://rpc-demo-{pid}"), async_client),
        (
            "shm (blocking client)",
            format!("shm://rpc-demo-b-{pid}"),
            blocking,
        ),
        (
            "mmap",
            format!("mmap://{}/calc.seg", dir.display()),
            async_client,
        ),
        (
            "pipes (spawned child)",
            format!("spawn:{} --listen stdio", sibling("calc-server")),
            async_client,
        ),
        (
            "fifo",
            format!("fifo://{}/calc.fifo", dir.display()),
            async_client,
        ),
        ("mq", format!("mq://rpc-demo-{pid}"), async_client),
    ];
    println!("| transport | address | calls | p50 | p99 |");
    println!("|---|---|---:|---:|---:|");
    let mut failed = false;
    for (name, address, kind) in transports {
        match measure(&address, kind, CALLS).await {
            Ok(row) => println!(
                "| {name} | {} | {} | {} | {} |",
                row.address.replace(&sibling(""), ""),
                row.calls,
                micros(row.p50),
                micros(row.p99)
            ),
            Err(error) => {
                failed = true;
                println!("| {name} | {address} | failed: {error} | | |");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
