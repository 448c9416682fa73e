//! One Calculator server per process, started on first use and shared by every input: on
//! `mem://` (frames handed over as they are) and on an abstract Unix socket (bytes, so the
//! real stream framing reads them).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use idl_examples::{Calc, CalculatorClient, CalculatorServer};
use rpc_core::Server;
use tokio::runtime::Runtime;

/// Name of the server runtime's threads, so a panic on one of them is told apart.
const SERVER_THREAD: &str = "rpc-fuzz-server";
/// How long the server may take to answer or hang up before the input counts as a hang.
pub(crate) const HANG: Duration = Duration::from_secs(10);
/// The server's health is checked after every this many inputs.
const HEALTH_EVERY: usize = 64;

/// The shared server.
pub(crate) struct Harness {
    /// The runtime the server runs on; inputs drive their clients on it too.
    pub(crate) runtime: Runtime,
    /// `mem://...` address of the server.
    pub(crate) mem: String,
    /// The abstract socket name (without `@`) of the server's `unix:@...` listener.
    pub(crate) unix_name: String,
    inputs: AtomicUsize,
    handle: rpc_core::ServerHandle,
}

static PANICS: AtomicUsize = AtomicUsize::new(0);

/// The server, started on first use.
pub(crate) fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        // Tokio catches a panic in a task; count the server threads' panics so the input
        // that caused one fails (under libFuzzer its own hook, chained here, aborts).
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if std::thread::current().name() == Some(SERVER_THREAD) {
                PANICS.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(SERVER_THREAD)
            .enable_all()
            .build()
            .expect("a runtime");
        let unix_name = format!("rpc-fuzz-{}", std::process::id());
        let mem = format!("mem://rpc-fuzz-{}", std::process::id());
        let handle = runtime.block_on(async {
            Server::new()
                .start(
                    CalculatorServer::new(Calc),
                    &[&mem, &format!("unix:@{unix_name}")],
                )
                .await
                .expect("the fuzz server starts")
        });
        Harness {
            runtime,
            mem,
            unix_name,
            inputs: AtomicUsize::new(0),
            handle,
        }
    })
}

impl Harness {
    /// Ends an input: no server thread may have panicked, and every so often a well-behaved
    /// client must still connect and be served.
    pub(crate) fn after_input(&self) {
        assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a server thread panicked");
        if self.inputs.fetch_add(1, Ordering::Relaxed) % HEALTH_EVERY == HEALTH_EVERY - 1 {
            self.check_health();
        }
    }

    /// Once every client of the inputs has left, the server lets go of their connections;
    /// then a fresh client on each listener connects and is served.
    fn check_health(&self) {
        self.runtime.block_on(async {
            let gone = tokio::time::timeout(HANG, async {
                while self.handle.connections() + self.handle.pending_handshakes() > 0 {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
            .await;
            assert!(
                gone.is_ok(),
                "the server still holds {} connections and {} handshakes after their clients left",
                self.handle.connections(),
                self.handle.pending_handshakes()
            );
        });
        let unix = format!("unix:@{}", self.unix_name);
        for address in [&self.mem, &unix] {
            self.runtime.block_on(async {
                let served = tokio::time::timeout(HANG, async {
                    let client = CalculatorClient::connect(address).await?;
                    let sum = client.add(2, 3).await?;
                    let echo = client.echo(vec![7; 100].into()).await?;
                    Ok::<_, rpc_core::RpcError>(sum == 5 && echo == vec![7; 100])
                })
                .await;
                match served {
                    Ok(Ok(true)) => {}
                    other => panic!("a good client on {address} was not served: {other:?}"),
                }
            });
        }
        assert_eq!(PANICS.load(Ordering::SeqCst), 0, "a server thread panicked");
    }
}

/// Checks now that the shared server (if started) still serves a good client.
pub fn check_server_health() {
    harness().check_health();
}
