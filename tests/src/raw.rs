//! Raw protocol clients for tests that must do what the generated clients never do (pipeline
//! without reading, ignore limits), and a process's figures from `/proc`.

use std::time::Duration;

use rpc_core::transport::{Connection, TransportConfig};
use rpc_core::wire::{self, Header, Hello, Kind};

use crate::ProbeClient;

/// A transport connection to the probe service at `address` that has said `Hello` (accepting
/// frames of up to `max_frame_size`) and read the server's `Welcome`.
pub async fn raw_probe_connection(address: &str, max_frame_size: usize) -> Connection {
    let config = TransportConfig::default().with_max_frame_size(max_frame_size);
    raw_probe_connection_with(address, config).await
}

/// [`raw_probe_connection`] with the transport's settings in `config` (and its
/// `max_frame_size`).
pub async fn raw_probe_connection_with(address: &str, config: TransportConfig) -> Connection {
    let max_frame_size = config.max_frame_size;
    let parsed: rpc_core::Address = address.parse().unwrap();
    let mut connection = rpc_core::transport::connect(&parsed, &config)
        .await
        .unwrap();
    let hello = Hello::new(ProbeClient::schema(), max_frame_size);
    let header = Header {
        kind: Kind::Hello,
        method: 0,
        call_id: 0,
    };
    connection
        .send(wire::message_frame(header, None, &hello).unwrap())
        .await
        .unwrap();
    let welcome = tokio::time::timeout(Duration::from_secs(10), connection.recv())
        .await
        .expect("a Welcome in time")
        .unwrap()
        .unwrap();
    assert_eq!(
        Header::parse(welcome.payload()).unwrap().header.kind,
        Kind::Welcome
    );
    connection
}

/// A field of `/proc/PID/status` in KiB (`VmRSS:`, `VmHWM:`); `None` once the process is gone.
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The resident set of a live process, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:").unwrap_or_else(|| panic!("no VmRSS for process {pid}"))
}
