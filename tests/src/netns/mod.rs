//! Test hosts: Linux network namespaces joined by veth pairs to a bridge, for the cross-host
//! suites (`tests/cross_host*.rs`).
//!
//! A [`Network`] is a "switch" namespace holding a bridge, and each [`Host`] is a namespace of
//! its own whose `eth0` is one end of a veth pair, the other end a port of that bridge. Every
//! interface and address lives inside those namespaces: nothing touches the root namespace's
//! interfaces, and two networks (two tests, two test processes) cannot collide even on the
//! same subnet. Each network still takes its own `10.x.y.0/24`, derived from the pid and a
//! counter, so that logs of parallel runs tell them apart.
//!
//! Names carry the creating pid (`rpcns-PID-N-ROLE`). [`Network`]'s `Drop` kills every process
//! left in its namespaces, deletes them and their `/etc/netns/NAME` files; the first network
//! of a process also sweeps what killed runs left behind (namespaces whose pid is dead).
//!
//! Creating namespaces needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN). Without it
//! [`Network::new`] prints a loud `SKIPPED:` line and returns `None`, unless `CI` is set, where
//! it panics instead: CI runs as root, and a suite that could not make its hosts never passes
//! there.

mod dns;
mod impair;
mod process;

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub use dns::Dnsmasq;
pub use impair::{Emulation, Impairment};
pub use process::HostProcess;

/// Prefix of every namespace the harness creates.
const PREFIX: &str = "rpcns-";

/// How long one `ip`/`nft`/`tc` command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(20);

/// A switch namespace with a bridge, and the hosts plugged into it; all deleted on drop.
#[derive(Debug)]
pub struct Network {
    tag: String,
    switch: String,
    subnet: [u8; 3],
    hosts: Mutex<Vec<String>>,
}

/// One host: a network namespace whose `eth0` is plugged into the [`Network`]'s bridge.
#[derive(Debug, Clone)]
pub struct Host {
    /// The namespace's name (for `ip netns exec NAME ...`).
    pub namespace: String,
    /// The host's address on the network.
    pub ip: Ipv4Addr,
    /// Its bridge port's name, in the switch namespace.
    port: String,
    switch: String,
}

impl Network {
    /// A new network with no hosts yet, or `None` when namespaces cannot be made here (after a
    /// loud `SKIPPED:` line on stderr naming `test` and the reason). With `CI` set it panics
    /// instead of skipping.
    pub fn new(test: &str) -> Option<Network> {
        if let Err(reason) = check_tools() {
            return skip(test, &reason);
        }
        sweep_dead_runs();
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tag = format!("{PREFIX}{pid}-{n}");
        let switch = format!("{tag}-switch");
        if let Err(error) = run("ip", &["netns", "add", &switch]) {
            return skip(
                test,
                &format!("cross-host tests need root / CAP_NET_ADMIN: {error}"),
            );
        }
        let network = Network {
            subnet: [
                10,
                100 + (pid % 100) as u8,
                (pid / 100 % 16 * 16 + n % 16) as u8,
            ],
            tag,
            switch,
            hosts: Mutex::new(Vec::new()),
        };
        network.ip(&["link", "add", "br0", "type", "bridge"]);
        network.ip(&["link", "set", "br0", "up"]);
        network.ip(&["link", "set", "lo", "up"]);
        Some(network)
    }

    /// A new host named `role` (part of its namespace's name), plugged into the bridge, with
    /// the next free address; its `eth0` and `lo` are up and its port forwards.
    pub fn host(&self, role: &str) -> Host {
        let mut hosts = self.hosts.lock().unwrap();
        let index = hosts.len() + 1;
        let namespace = format!("{}-{role}", self.tag);
        run("ip", &["netns", "add", &namespace]).expect("create a host namespace");
        hosts.push(namespace.clone());
        drop(hosts);
        let port = format!("port{index}");
        run(
            "ip",
            &[
                "link",
                "add",
                "eth0",
                "netns",
                &namespace,
                "type",
                "veth",
                "peer",
                "name",
                &port,
                "netns",
                &self.switch,
            ],
        )
        .expect("create a veth pair");
        let [a, b, c] = self.subnet;
        let ip = Ipv4Addr::new(a, b, c, index as u8);
        let host = Host {
            namespace,
            ip,
            port,
            switch: self.switch.clone(),
        };
        self.ip(&["link", "set", &host.port, "master", "br0", "up"]);
        host.ip(&["addr", "add", &format!("{ip}/24"), "dev", "eth0"]);
        host.ip(&["link", "set", "eth0", "up"]);
        host.ip(&["link", "set", "lo", "up"]);
        host.wait_forwarding();
        host
    }

    /// `ip -n SWITCH ARGS...`, panicking if it fails.
    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.switch];
        all.extend_from_slice(args);
        run("ip", &all).unwrap_or_else(|e| panic!("in the switch namespace: {e}"));
    }

    /// The per-namespace configuration directory of `host` (`/etc/netns/NAME`), created:
    /// `ip netns exec` bind-mounts each file in it over the one of the same name in `/etc`
    /// (a `resolv.conf` there is the host's DNS configuration). Removed with the network.
    pub fn etc_dir(&self, host: &Host) -> PathBuf {
        let dir = Path::new("/etc/netns").join(&host.namespace);
        std::fs::create_dir_all(&dir).expect("create /etc/netns/NAME");
        dir
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        let hosts = std::mem::take(&mut *self.hosts.lock().unwrap_or_else(|e| e.into_inner()));
        for namespace in hosts.iter().chain(std::iter::once(&self.switch)) {
            if let Err(error) = remove_namespace(namespace) {
                eprintln!("netns: cannot remove {namespace}: {error}");
            }
        }
    }
}

impl Host {
    /// A command that runs `program` in this host (`ip netns exec NAME program`).
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("ip");
        command
            .args(["netns", "exec", &self.namespace])
            .arg(program);
        command
    }

    /// Runs `program args...` in this host to completion (bounded), returning its stdout;
    /// an error names the command and carries its stderr.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String, String> {
        let mut all = vec!["netns", "exec", &self.namespace, program];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// `ip -n NAME ARGS...`, panicking if it fails.
    fn ip(&self, args: &[&str]) {
        let mut all = vec!["-n", &self.namespace];
        all.extend_from_slice(args);
        run("ip", &all).unwrap_or_else(|e| panic!("in host {}: {e}", self.namespace));
    }

    /// Unplugs the host's cable: its bridge port goes down (the host's `eth0` loses carrier,
    /// keeps its address and routes, and sends into the void).
    pub fn unplug(&self) {
        self.switch_port("down");
    }

    /// Plugs the cable back in (see [`unplug`](Self::unplug)) and waits until the port
    /// forwards again.
    pub fn plug(&self) {
        self.switch_port("up");
        self.wait_forwarding();
    }

    fn switch_port(&self, state: &str) {
        run(
            "ip",
            &["-n", &self.switch, "link", "set", &self.port, state],
        )
        .unwrap_or_else(|e| panic!("port of {}: {e}", self.namespace));
    }

    /// Waits (bounded) until the bridge forwards on this host's port.
    fn wait_forwarding(&self) {
        let forwarding = crate::wait_until(COMMAND_LIMIT, || {
            run(
                "bridge",
                &["-n", &self.switch, "link", "show", "dev", &self.port],
            )
            .is_ok_and(|out| out.contains("state forwarding"))
        });
        assert!(
            forwarding,
            "the bridge port of {} never forwarded",
            self.namespace
        );
    }

    /// Drops every packet this host sends or receives on `eth0` (an nftables table of its
    /// own, `rpccut`): the host falls silent without any interface going down.
    pub fn drop_traffic(&self) {
        let rules = "table inet rpccut {\n\
             chain input { type filter hook input priority -400; iifname \"eth0\" drop; }\n\
             chain output { type filter hook output priority -400; oifname \"eth0\" drop; }\n\
             }\n";
        self.nft(rules).expect("nftables drop rules");
    }

    /// Removes the rules of [`drop_traffic`](Self::drop_traffic).
    pub fn restore_traffic(&self) {
        self.nft("delete table inet rpccut\n")
            .expect("delete nftables drop rules");
    }

    /// Loads `rules` with `nft -f -` in this host.
    fn nft(&self, rules: &str) -> Result<(), String> {
        let file = std::env::temp_dir().join(format!("{}-{}.nft", self.namespace, rules.len()));
        std::fs::write(&file, rules).map_err(|e| e.to_string())?;
        let outcome = self.run("nft", &["-f", &file.to_string_lossy()]);
        let _ = std::fs::remove_file(&file);
        outcome.map(drop)
    }

    /// Established TCP connections in this host whose peer is `peer` (from `ss`).
    pub fn established_with(&self, peer: Ipv4Addr) -> usize {
        let out = self
            .run("ss", &["-tnH", "state", "established"])
            .unwrap_or_else(|e| panic!("ss in {}: {e}", self.namespace));
        let peer = format!("{peer}:");
        out.lines()
            .filter(|line| {
                line.split_whitespace()
                    .nth(3)
                    .is_some_and(|p| p.starts_with(&peer))
            })
            .count()
    }
}

/// The path of `name`, a binary of this workspace, built beside the test binaries
/// (`target/<profile>/`); `cargo test --workspace` builds them all.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    let mut dir = exe.parent().expect("exe dir").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is not built: run the suite with `cargo test --workspace` (or `cargo build --workspace --bins` first)",
        path.display()
    );
    path
}

/// Whether the tools the harness runs are on this machine (`.ci/run` installs them).
fn check_tools() -> Result<(), String> {
    let missing: Vec<&str> = ["ip", "bridge", "nft", "tc", "ss", "iptables"]
        .into_iter()
        .filter(|tool| which(tool).is_none())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "cross-host tests need {}, not installed (.ci/run installs them: \
             apt-get install iproute2 nftables iptables)",
            missing.join(", ")
        ))
    }
}

/// The path of `program` on PATH (or in the sbin directories root has), if any.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin"])
        .map(|dir| Path::new(dir).join(program))
        .find(|candidate| candidate.is_file())
}

/// `Some(())` when `tool` is installed; otherwise the same loud skip (or failure under `CI`)
/// as [`Network::new`], naming `test`.
pub fn require(test: &str, tool: &str) -> Option<()> {
    match which(tool) {
        Some(_) => Some(()),
        None => skip(
            test,
            &format!("cross-host tests need {tool}, not installed (.ci/run installs it)"),
        ),
    }
}

fn skip<T>(test: &str, reason: &str) -> Option<T> {
    let line = format!("SKIPPED: {test}: {reason}");
    if std::env::var_os("CI").is_some() {
        panic!("{line}; CI is set, so this is a failure, not a skip");
    }
    // Straight to the process's stderr: the test harness captures `eprintln!` of a passing
    // test, and this line must be seen.
    let rule = "=".repeat(line.len().min(100));
    let _ = writeln!(std::io::stderr(), "\n{rule}\n{line}\n{rule}");
    None
}

/// Runs `program args...` (bounded by [`COMMAND_LIMIT`]), returning its stdout; an error names
/// the command and carries its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let shown = format!("{program} {}", args.join(" "));
    let child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{shown}: {e}"))?;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    let output = match rx.recv_timeout(COMMAND_LIMIT) {
        Ok(output) => output.map_err(|e| format!("{shown}: {e}"))?,
        Err(_) => {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            return Err(format!("{shown}: did not finish within {COMMAND_LIMIT:?}"));
        }
    };
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(format!(
            "{shown}: {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// Kills every process in `namespace` (bounded wait until none is left), deletes it and its
/// `/etc/netns/NAME` directory.
fn remove_namespace(namespace: &str) -> Result<(), String> {
    let gone = crate::wait_until(COMMAND_LIMIT, || {
        let pids = run("ip", &["netns", "pids", namespace]).unwrap_or_default();
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        pids.trim().is_empty()
    });
    let _ = std::fs::remove_dir_all(Path::new("/etc/netns").join(namespace));
    let deleted = run("ip", &["netns", "del", namespace]);
    if !gone {
        return Err("processes in it survived SIGKILL".to_owned());
    }
    deleted.map(drop)
}

/// Removes the namespaces (and `/etc/netns` entries) of earlier runs whose process is dead:
/// what a test killed with SIGKILL left behind. Once per process.
fn sweep_dead_runs() {
    static SWEPT: std::sync::Once = std::sync::Once::new();
    SWEPT.call_once(|| {
        let listed = run("ip", &["netns", "list"]).unwrap_or_default();
        let etc: Vec<String> = std::fs::read_dir("/etc/netns")
            .map(|dir| {
                dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .collect()
            })
            .unwrap_or_default();
        let names: std::collections::BTreeSet<String> = listed
            .lines()
            .filter_map(|line| line.split_whitespace().next())
            .map(str::to_owned)
            .chain(etc)
            .collect();
        for name in names {
            let Some(pid) = name
                .strip_prefix(PREFIX)
                .and_then(|rest| rest.split('-').next())
                .and_then(|pid| pid.parse::<u32>().ok())
            else {
                continue;
            };
            if Path::new(&format!("/proc/{pid}")).exists() {
                continue;
            }
            eprintln!("netns: removing {name}, left by dead process {pid}");
            if let Err(error) = remove_namespace(&name) {
                eprintln!("netns: cannot remove {name}: {error}");
            }
        }
    });
}
