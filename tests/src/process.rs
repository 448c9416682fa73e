//! [`ProbeProcess`]: a `probe-server` child for the process-level tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(20);

/// A `probe-server` child process whose stdout lines are collected; killed and reaped when
/// dropped.
pub struct ProbeProcess {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl ProbeProcess {
    pub fn spawn(args: &[&str]) -> ProbeProcess {
        ProbeProcess::spawn_with_env(args, &[])
    }

    /// [`spawn`](Self::spawn) with `env` added to the child's environment.
    pub fn spawn_with_env(args: &[&str], env: &[(&str, &std::ffi::OsStr)]) -> ProbeProcess {
        let mut child = Command::new(crate::spawned::probe_server_path())
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn probe-server");
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        ProbeProcess { child, lines }
    }

    /// A server on `address`, once it listens.
    pub fn server(address: &str) -> ProbeProcess {
        ProbeProcess::server_with_env(address, &[])
    }

    /// [`server`](Self::server) with `env` added to the child's environment.
    pub fn server_with_env(address: &str, env: &[(&str, &std::ffi::OsStr)]) -> ProbeProcess {
        let process = ProbeProcess::spawn_with_env(&[address], env);
        process.expect_line("listening on");
        process
    }

    /// A server on a fresh address of `scheme` (TCP on a port the system picks, queues by a
    /// fresh name, others under `dir`), and the address it listens on.
    pub fn serve_fresh(scheme: &str, dir: &crate::TempDir) -> (ProbeProcess, String) {
        let asked = match scheme {
            "tcp" => "tcp://127.0.0.1:0".to_owned(),
            // A queue's name is flat: no directory to put it in.
            "mq" | "sysv-mq" => format!("{scheme}://{}", crate::unique_name("direct")),
            _ => format!("{scheme}://{}/direct.sock", dir.0.display()),
        };
        let process = ProbeProcess::spawn(&[&asked]);
        let line = process.expect_line("listening on ");
        let address = line["listening on ".len()..].trim().to_owned();
        (process, address)
    }

    pub fn expect_line(&self, prefix: &str) -> String {
        let line = self
            .lines
            .recv_timeout(LIMIT)
            .unwrap_or_else(|_| panic!("probe-server never printed {prefix:?}"));
        assert!(line.starts_with(prefix), "{line}");
        line
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn kill_9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let deadline = Instant::now() + LIMIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "probe-server ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for ProbeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `count` client processes that each wait in `stall` on `fixture`'s server, kills them
/// all with SIGKILL, and checks that the server lets go of their connections and calls.
/// Blocks a runtime worker while the children start: use a multi-threaded runtime.
pub async fn kill_stalled_clients(fixture: &crate::Fixture, count: usize) {
    use std::sync::atomic::Ordering::SeqCst;
    let mut clients: Vec<ProbeProcess> = (0..count)
        .map(|_| {
            let client = ProbeProcess::spawn(&["--stall", &fixture.address]);
            client.expect_line("stalling");
            client
        })
        .collect();
    let stalled = fixture.probe.stalled.clone();
    assert!(crate::eventually(LIMIT, || stalled.load(SeqCst) == count).await);
    assert_eq!(fixture.handle.connections(), count);
    for client in &mut clients {
        client.kill_9();
    }
    assert!(
        crate::eventually(LIMIT, || fixture.handle.connections() == 0).await,
        "the server still holds {} connections of killed clients",
        fixture.handle.connections()
    );
    assert_eq!(stalled.load(SeqCst), 0, "calls of killed clients still run");
}

/// Address ranges of the mappings in `/proc/PID/maps` (`pid` may be `self`) whose line names
/// `what`: `rpc-shm-segment` for connection segments, `rpc-shm-large` for bulk regions.
pub fn mappings_of(pid: &str, what: &str) -> Vec<(u64, u64)> {
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .unwrap()
        .lines()
        .filter(|line| line.contains(what))
        .map(|line| {
            let range = line.split_whitespace().next().unwrap();
            let (start, end) = range.split_once('-').unwrap();
            (
                u64::from_str_radix(start, 16).unwrap(),
                u64::from_str_radix(end, 16).unwrap(),
            )
        })
        .collect()
}
