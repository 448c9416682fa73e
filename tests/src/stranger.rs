//! A client process running as another user (uid 65534), for the access tests: the test binary
//! itself, copied where that user may run it and started as that user, runs one of its own
//! tests as the child. Needs a process allowed to switch users (root, as in CI).

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use rpc_core::RpcError;
use tokio::process::Command;

use crate::{ProbeBlockingClient, TempDir};

/// The user the stranger runs as.
pub const STRANGER: u32 = 65534;

/// The child's side: when `variable` names an address, connect to it, call `add(2, 3)` and
/// print the outcome as an `OUTCOME ...` line; otherwise (not a child) do nothing.
pub fn stranger_client(variable: &str) {
    let Ok(address) = std::env::var(variable) else {
        return;
    };
    let outcome = ProbeBlockingClient::connect(&address).and_then(|probe| probe.add(2, 3));
    match outcome {
        Ok(sum) => println!("OUTCOME ok {sum}"),
        Err(RpcError::AccessDenied { reason }) => println!("OUTCOME denied {reason}"),
        Err(RpcError::Connect { source, .. }) => println!("OUTCOME connect {source}"),
        Err(other) => println!("OUTCOME other {other}"),
    }
}

/// A fresh directory under the temporary directory that every user may enter.
pub fn open_dir() -> TempDir {
    let dir = TempDir::new();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

/// A copy of the running test binary that the stranger may execute.
pub struct StrangerBinary {
    _dir: TempDir,
    path: PathBuf,
    /// The variable through which [`call`](Self::call) hands the child its address.
    address_variable: &'static str,
}

impl StrangerBinary {
    /// The copy, named `name`; `None` (said loudly) when this process may not switch users.
    /// Its `stranger_client` test must call [`stranger_client`] with `address_variable`.
    pub fn new(name: &str, address_variable: &'static str) -> Option<StrangerBinary> {
        if nix::unistd::geteuid().as_raw() != 0 {
            eprintln!("SKIPPED: not root, cannot run a client as uid {STRANGER}");
            return None;
        }
        let dir = open_dir();
        let path = dir.0.join(name);
        std::fs::copy(std::env::current_exe().unwrap(), &path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        Some(StrangerBinary {
            _dir: dir,
            path,
            address_variable,
        })
    }

    /// Runs the child test `test` as the stranger with `env`; its stdout lines that start with
    /// `tag `, without the tag (at least one, or the test fails).
    pub async fn run(&self, test: &str, env: &[(&str, &str)], tag: &str) -> Vec<String> {
        // A copy just written may be briefly busy ("text file busy") while a child forked by
        // another test still holds its descriptor: retry for a bounded time.
        let mut tries = 0;
        let output = loop {
            let run = tokio::time::timeout(
                Duration::from_secs(60),
                Command::new(&self.path)
                    .args([test, "--exact", "--nocapture", "--test-threads=1"])
                    .envs(env.iter().copied())
                    .uid(STRANGER)
                    .gid(STRANGER)
                    .kill_on_drop(true)
                    .output(),
            )
            .await
            .expect("the stranger finished");
            match run {
                Err(e) if e.kind() == std::io::ErrorKind::ExecutableFileBusy && tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => break other.expect("run the stranger"),
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let lines: Vec<String> = stdout
            .lines()
            .filter_map(|line| line.split_once(&format!("{tag} ")).map(|(_, rest)| rest))
            .map(str::to_owned)
            .collect();
        assert!(
            !lines.is_empty(),
            "the stranger printed no {tag} line:\n{stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        lines
    }

    /// What the stranger's `add(2, 3)` against `address` came to (`ok 5`, `denied ...`,
    /// `connect ...`).
    pub async fn call(&self, address: &str) -> String {
        let env = [(self.address_variable, address)];
        self.run("stranger_client", &env, "OUTCOME").await.remove(0)
    }
}
