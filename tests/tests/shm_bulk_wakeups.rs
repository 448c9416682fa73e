//! Large shared-memory replies back to back, from a client whose caller and runtime worker
//! share one CPU (as `#[tokio::main]` runs under `taskset -c 0`): a caller lets go of the
//! connection just as a reply lands, the reader task wakes for it and finds the connection
//! still held. The reply must not then wait for the next wake-up (the call timeout, 30 s):
//! the caller that held the connection hands it over as it lets go.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

/// The benchmark's calculator server (`rpc-bench serve`), killed when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `rpc-bench serve` on `listen`, pinned to `cpu` if given.
fn serve(listen: &str, cpu: Option<usize>) -> (Server, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rpc-bench"));
    command.args(["serve", "--listen", listen, "--max-frame", "100000000"]);
    if let Some(cpu) = cpu {
        command.args(["--cpu", &cpu.to_string()]);
    }
    let mut child = command
        .stdout(Stdio::piped())
        .spawn()
        .expect("start rpc-bench serve");
    let stdout = child.stdout.take().expect("piped");
    let server = Server(child);
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("read the server's address");
    (server, line.trim().to_owned())
}

/// The CPUs this process may use.
fn allowed_cpus() -> Vec<usize> {
    let allowed = sched_getaffinity(Pid::from_raw(0)).expect("affinity");
    (0..CpuSet::count())
        .filter(|&c| allowed.is_set(c).unwrap_or(false))
        .collect()
}

/// Pins the calling thread (and the threads it starts from now on) to `cpu`.
fn pin_to(cpu: usize) {
    let mut one = CpuSet::new();
    one.set(cpu).expect("cpu in range");
    sched_setaffinity(Pid::from_raw(0), &one).expect("pin");
}

#[test]
fn large_replies_back_to_back_each_arrive_without_waiting_for_a_timeout() {
    let cpus = allowed_cpus();
    let dir = rpc_tests::TempDir::new();
    // The server on another CPU where there is one, as a deployment would have it.
    let (_server, address) = serve(
        &format!("shm://{}/bulk.sock", dir.0.display()),
        cpus.get(1).copied(),
    );
    // A thread of its own, so the pinning stays with it and its runtime.
    std::thread::spawn(move || {
        pin_to(cpus[0]);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let calc = idl_examples::CalculatorClient::connect(&address)
                .await
                .unwrap();
            let data = rpc_core::Bytes::from(vec![7u8; 8 << 20]);
            let started = Instant::now();
            let mut calls = 0u32;
            while started.elapsed() < Duration::from_secs(5) {
                let call = Instant::now();
                let back = tokio::time::timeout(Duration::from_secs(10), calc.echo(data.clone()))
                    .await
                    .unwrap_or_else(|_| panic!("echo {calls} waited 10 s for its reply"))
                    .unwrap();
                assert_eq!(back.len(), data.len());
                assert!(
                    call.elapsed() < Duration::from_secs(2),
                    "echo {calls} of 8 MiB took {:?}: a reply waited for a wake-up",
                    call.elapsed()
                );
                calls += 1;
            }
            assert!(calls > 10, "only {calls} echoes in 5 s");
        });
    })
    .join()
    .expect("the client thread");
}
