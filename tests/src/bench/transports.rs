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
}

/// Every framework transport measured, in table order. A new transport is one entry here.
pub const TRANSPORTS: &[TransportSpec] = &[
    spec(
        "tcp",
        Endpoint::Served(|_| "tcp://127.0.0.1:0".to_owned()),
        Some(Mech::Tcp),
        Some(TarpcNet::Tcp),
    ),
    spec(
        "unix",
        Endpoint::Served(|e| format!("unix://{}.sock", e.path("fw").display())),
        Some(Mech::Unix),
        Some(TarpcNet::Unix),
    ),
    spec(
        "shm",
        Endpoint::Served(|e| format!("shm://{}", e.unique("bench"))),
        Some(Mech::Shm),
        None,
    ),
    spec(
        "mmap",
        Endpoint::Served(|e| format!("mmap://{}", e.path("mmap").display())),
        Some(Mech::Shm),
        None,
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
    ),
    spec(
        "fifo",
        Endpoint::Served(|e| format!("fifo://{}", e.path("fifo").display())),
        Some(Mech::Fifo),
        None,
    ),
    spec(
        "mq",
        Endpoint::Served(|e| format!("mq://{}", e.unique("bench"))),
        Some(Mech::Mq),
        None,
    ),
];

const fn spec(
    name: &'static str,
    endpoint: Endpoint,
    raw: Option<Mech>,
    tarpc: Option<TarpcNet>,
) -> TransportSpec {
    TransportSpec {
        name,
        endpoint,
        raw,
        tarpc,
    }
}
