//! [`Dnsmasq`]: a real DNS server (the distribution's dnsmasq) in a test host, serving A
//! records from a hosts file that the test rewrites.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use nix::sys::signal::Signal;

use super::{Host, HostProcess, Network};
use crate::TempDir;

/// A dnsmasq process in a host: no upstream server, no `/etc/hosts`, only the records given,
/// with a TTL of its own. Killed on drop.
pub struct Dnsmasq {
    process: HostProcess,
    hosts_file: PathBuf,
    /// The host it answers on (port 53, UDP and TCP).
    pub host: Host,
    _dir: TempDir,
}

impl Dnsmasq {
    /// Starts dnsmasq in `host`, answering with `records` (`(address, name)`) and a TTL of
    /// `ttl` seconds; returns once it has read them.
    pub fn start(host: &Host, ttl: u32, records: &[(Ipv4Addr, &str)]) -> Dnsmasq {
        let dir = TempDir::new();
        let hosts_file = dir.0.join("hosts");
        std::fs::write(&hosts_file, hosts_text(records)).expect("write the hosts file");
        let mut command = host.command(super::which("dnsmasq").expect("dnsmasq is installed"));
        command.args([
            "--keep-in-foreground",
            "--log-facility=-",
            "--log-queries",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            "--bind-interfaces",
            "--user=root",
            "--group=root",
            "--pid-file",
            &format!("--addn-hosts={}", hosts_file.display()),
            &format!("--local-ttl={ttl}"),
            &format!("--listen-address={}", host.ip),
        ]);
        let dnsmasq = Dnsmasq {
            process: HostProcess::spawn("dnsmasq", command),
            hosts_file,
            host: host.clone(),
            _dir: dir,
        };
        dnsmasq.expect_read(records.len());
        dnsmasq
    }

    /// Replaces the records and has dnsmasq reread them (SIGHUP, which also empties its
    /// cache); returns once it has.
    pub fn set_records(&self, records: &[(Ipv4Addr, &str)]) {
        let next = self.hosts_file.with_extension("next");
        std::fs::write(&next, hosts_text(records)).expect("write the hosts file");
        std::fs::rename(&next, &self.hosts_file).expect("replace the hosts file");
        self.process.signal(Signal::SIGHUP);
        self.expect_read(records.len());
    }

    fn expect_read(&self, names: usize) {
        let read = format!("read {} - {names} names", self.hosts_file.display());
        self.process.expect_line(&read, Duration::from_secs(20));
    }

    /// Makes `client` resolve names with this server: `/etc/netns/CLIENT/resolv.conf`, which
    /// `ip netns exec` mounts over `/etc/resolv.conf` for what it starts.
    pub fn serve(&self, network: &Network, client: &Host) {
        let conf = format!(
            "nameserver {}\noptions timeout:1 attempts:2\n",
            self.host.ip
        );
        std::fs::write(network.etc_dir(client).join("resolv.conf"), conf)
            .expect("write resolv.conf");
    }

    /// Everything dnsmasq logged so far (its queries included).
    pub fn log(&self) -> String {
        self.process.output()
    }
}

fn hosts_text(records: &[(Ipv4Addr, &str)]) -> String {
    records
        .iter()
        .map(|(ip, name)| format!("{ip} {name}\n"))
        .collect()
}
