//! [`SpawnedServers`]: the server side of a `spawn:` fixture, which is not one server but one
//! `probe-server stdio` child per connection, found and signalled through `/proc`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rpc_core::ServerConfig;

use crate::{SharedCounter, TempDir, unique_name};

/// The probe servers that `spawn:` connections of one fixture start: each serves one
/// connection on its stdin/stdout and counts its stalled calls in a file the test maps too.
#[derive(Debug)]
pub struct SpawnedServers {
    tag: String,
    address: String,
    stalled: Arc<SharedCounter>,
}

/// The `probe-server` binary, built beside the test binaries (`target/<profile>/`).
pub fn probe_server_path() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join("probe-server");
    assert!(path.exists(), "{} is not built", path.display());
    path
}

impl SpawnedServers {
    /// The `spawn:` address of a probe server with `config`'s limits, its files in `dir`.
    pub fn new(dir: &TempDir, config: &ServerConfig) -> SpawnedServers {
        let tag = unique_name("spawned");
        let counter_path = dir.0.join("stalled");
        let stalled = Arc::new(SharedCounter::in_file(&counter_path).expect("stall counter"));
        let address = format!(
            "spawn:{} --tag {tag} --stall-counter {} --max-frame-size {} --max-in-flight {} \
             --max-connections {} stdio",
            probe_server_path().display(),
            counter_path.display(),
            config.transport.max_frame_size,
            config.max_in_flight,
            config.max_connections,
        );
        SpawnedServers {
            tag,
            address,
            stalled,
        }
    }

    /// The address clients connect to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The counter of `stall` calls running in any of the children.
    pub fn stalled(&self) -> Arc<SharedCounter> {
        self.stalled.clone()
    }

    /// The children alive now (not yet exited; zombies do not count).
    pub fn pids(&self) -> Vec<Pid> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let dir = PathBuf::from(format!("/proc/{pid}"));
                let cmdline = std::fs::read(dir.join("cmdline")).unwrap_or_default();
                let ours = cmdline
                    .split(|b| *b == 0)
                    .any(|arg| arg == self.tag.as_bytes());
                let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
                let zombie = stat
                    .rsplit_once(") ")
                    .is_some_and(|(_, rest)| rest.starts_with('Z'));
                ours && !zombie
            })
            .map(Pid::from_raw)
            .collect()
    }

    /// Connections being served now: one per live child.
    pub fn connections(&self) -> usize {
        self.pids().len()
    }

    fn signal_all(&self, signal: Signal) {
        for pid in self.pids() {
            let _ = kill(pid, signal);
        }
    }

    /// Kills every child at once (SIGKILL): the peer dies mid-call.
    pub async fn abort(self) {
        self.signal_all(Signal::SIGKILL);
        self.wait_gone().await;
    }

    /// Asks every child to shut down gracefully (SIGTERM) and waits until they are gone.
    pub async fn shutdown(self) {
        self.signal_all(Signal::SIGTERM);
        self.wait_gone().await;
    }

    async fn wait_gone(&self) {
        let gone = crate::eventually(Duration::from_secs(20), || self.connections() == 0).await;
        assert!(
            gone,
            "spawned servers outlived their signal: {:?}",
            self.pids()
        );
    }
}
