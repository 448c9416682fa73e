//! The framework transports the benchmark measures: one [`TransportSpec`] line each.

use super::env::Env;
use super::raw::Mech;
use super::tarpc_svc::TarpcNet;

/// How the client reaches a server of one transport.
#[derive(Debug, Clone, Copy)]
pub enum Endpoint {
    /// A `rpc-bench serve --listen ADDR` child process; the client connects to the address
    /// it prints. The function gives `ADDR`.
    Served(fn(&Env) -> String),
    /// The client starts the server itself (`spawn:PROGRAM ARGS`); the function gives the
    /// address to connect to. There is no single server process, so no server memory figure.
    ClientSpawned(fn(&Env) -> String),
}

/// One framework transport and the baselines it is compared with.
#[derive(Debug, Clone, Copy)]
pub struct TransportSpec {
    /// Short name (`--only NAME`, table rows).
    pub name: &'static str,
    /// How to reach the server.
    pub endpoint: Endpoint,
    /// The raw ping-pong over the same OS mechanism.
    pub raw: Option<Mech>,
    /// The tarpc transport over the same mechanism, if tarpc has one.
    pub tarpc: Option<TarpcNet>,
    /// Whether `--soak` can hold its connections to one server over it.
    pub soak: Soak,
}

/// Whether a transport takes part in `rpc-bench --soak`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Soak {
    /// One server process holds every connection.
    Yes,
    /// It cannot, for this reason.
    No(&'static str),
}

/// Every framework transport measured, in table order. A new transport is one entry here.
pub const TRANSPORTS: &[TransportSpec] = &[
    spec(
        "tcp",
        Endpoint::Served(|_| "tcp://127.0.0.1:0".to_owned()),
        Some(Mech::Tcp),
        Some(TarpcNet::Tcp),
        Soak::Yes,
    ),
    // TLS over TCP: the same raw TCP baseline, so the two rows show what TLS costs.
    spec(
        "tls",
        Endpoint::Served(|_| "tls://127.0.0.1:0".to_owned()),
        Some(Mech::Tcp),
        None,
        Soak::Yes,
    ),
    spec(
        "unix",
        Endpoint::Served(|e| format!("unix://{}.sock", e.path("fw").display())),
        Some(Mech::Unix),
        Some(TarpcNet::Unix),
        Soak::Yes,
    ),
    spec(
        "shm",
        Endpoint::Served(|e| format!("shm://{}", e.unique("bench"))),
        Some(Mech::Shm),
        None,
        Soak::Yes,
    ),
    spec(
        "mmap",
        Endpoint::Served(|e| format!("mmap://{}", e.path("mmap").display())),
        Some(Mech::Shm),
        None,
        Soak::Yes,
    ),
    spec(
        "sysv-shm",
        Endpoint::Served(|e| format!("sysv-shm://{}", e.unique("bench"))),
        Some(Mech::SysvShm),
        None,
        Soak::Yes,
    ),
    spec(
        "spawn",
        Endpoint::ClientSpawned(|e| {
            let pin = e.cpus.server.map(|c| format!(" --cpu {c}"));
            format!(
                "spawn:{} serve --listen stdio --max-frame {}{}",
                e.exe.display(),
                super::framework::MAX_FRAME,
                pin.unwrap_or_default()
            )
        }),
        Some(Mech::Pipe),
        None,
        Soak::No(
            "each connection starts a server child of its own (spawn:/stdio serve one \
             connection each), so no one server holds the connections",
        ),
    ),
    spec(
        "fifo",
        Endpoint::Served(|e| format!("fifo://{}", e.path("fifo").display())),
        Some(Mech::Fifo),
        None,
        Soak::Yes,
    ),
    spec(
        "mq",
        Endpoint::Served(|e| format!("mq://{}", e.unique("bench"))),
        Some(Mech::Mq),
        None,
        Soak::No(
            "every connection holds a reply queue: the default fs.mqueue.queues_max (256) \
             and RLIMIT_MSGQUEUE (800 KiB, about 60 connections) stop far below 1,000",
        ),
    ),
    spec(
        "sysv-mq",
        Endpoint::Served(|e| format!("sysv-mq://{}", e.unique("bench"))),
        Some(Mech::SysvMq),
        None,
        Soak::Yes,
    ),
];

/// The transport measured beside `name` under `--only name`, so their figures compare in
/// one run: tcp beside tls (what TLS costs).
pub fn companion(name: &str) -> Option<&'static TransportSpec> {
    let other = match name {
        "tls" => "tcp",
        _ => return None,
    };
    TRANSPORTS.iter().find(|t| t.name == other)
}

const fn spec(
    name: &'static str,
    endpoint: Endpoint,
    raw: Option<Mech>,
    tarpc: Option<TarpcNet>,
    soak: Soak,
) -> TransportSpec {
    TransportSpec {
        name,
        endpoint,
        raw,
        tarpc,
        soak,
    }
}
