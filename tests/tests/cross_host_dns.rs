//! Replicas behind a DNS name, across hosts: dnsmasq (the distribution's) in one network
//! namespace serves `replicas.test` with one A record per replica (TTL 2 s), each replica
//! (`replica --name X`) runs in a namespace of its own, and the client
//! (`replica --connect dns+tcp://replicas.test:7000`) in another, its `/etc/resolv.conf`
//! naming the dnsmasq. Calls spread over every replica; one killed, calls go on; one added to
//! DNS gets calls after the TTL; one removed from DNS stops getting them.
//!
//! Needs root and dnsmasq: without them the test prints a loud `SKIPPED:` line and returns,
//! unless `CI` is set, where it fails.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use rpc_tests::netns::{Dnsmasq, Host, HostProcess, Network, require};

const LIMIT: Duration = Duration::from_secs(30);
const NAME: &str = "replicas.test";
/// The records' TTL, in seconds.
const TTL: u32 = 2;
/// What a change in DNS may take beyond the TTL to reach the calls: the resolver's re-query
/// when the TTL runs out, the new connection's TCP and protocol handshake, and the balancer
/// taking the new endpoint (or dropping the old one); generous for a busy 2-core machine.
const SLACK: Duration = Duration::from_secs(3);

/// One `counts ...` line of the client: calls answered per replica, and failed calls.
#[derive(Debug, Clone, Default, PartialEq)]
struct Counts {
    answered: BTreeMap<String, u64>,
    errors: u64,
}

impl Counts {
    fn parse(line: &str) -> Option<Counts> {
        let mut counts = Counts::default();
        for field in line.strip_prefix("counts ")?.split_whitespace() {
            let (name, n) = field.split_once('=')?;
            let n: u64 = n.parse().ok()?;
            if name == "errors" {
                counts.errors = n;
            } else {
                counts.answered.insert(name.to_owned(), n);
            }
        }
        Some(counts)
    }

    fn of(&self, name: &str) -> u64 {
        self.answered.get(name).copied().unwrap_or(0)
    }

    /// What happened between `earlier` and `self`.
    fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            answered: self
                .answered
                .iter()
                .map(|(name, n)| (name.clone(), n - earlier.of(name)))
                .collect(),
            errors: self.errors - earlier.errors,
        }
    }

    fn total(&self) -> u64 {
        self.answered.values().sum()
    }
}

/// The client process, read one `counts` line at a time.
struct Client(HostProcess);

impl Client {
    /// The next `counts` line (printed every 200 ms).
    fn next(&self) -> Counts {
        let line = self
            .0
            .wait_line(LIMIT, |line| line.starts_with("counts "))
            .unwrap_or_else(|| panic!("the client stopped counting:\n{}", self.0.output()));
        Counts::parse(&line).unwrap_or_else(|| panic!("a bad counts line: {line}"))
    }

    /// Counts after `window` from now (the lines in between skipped).
    fn after(&self, window: Duration) -> Counts {
        let until = Instant::now() + window;
        loop {
            let counts = self.next();
            if Instant::now() >= until {
                return counts;
            }
        }
    }

    /// Waits (at most `limit`) until `condition` holds on the counts; returns how long it
    /// took and the counts then, or `None`.
    fn until(
        &self,
        limit: Duration,
        mut condition: impl FnMut(&Counts) -> bool,
    ) -> Option<(Duration, Counts)> {
        let started = Instant::now();
        while started.elapsed() < limit {
            let counts = self.next();
            if condition(&counts) {
                return Some((started.elapsed(), counts));
            }
        }
        None
    }
}

fn start_replica(host: &Host, name: &str) -> HostProcess {
    let mut command = host.command(env!("CARGO_BIN_EXE_replica"));
    command.args([
        "--name",
        name,
        "--listen",
        &format!("tcp://{}:7000", host.ip),
    ]);
    let replica = HostProcess::spawn(&format!("replica {name}"), command);
    replica.expect_line("listening on", LIMIT);
    replica
}

#[test]
fn dns_replicas_share_calls_and_follow_the_records() {
    let test = "dns_replicas_share_calls_and_follow_the_records";
    let (Some(()), Some(network)) = (require(test, "dnsmasq"), Network::new(test)) else {
        return;
    };
    let dns_host = network.host("dns");
    let client_host = network.host("client");
    let names = ["a", "b", "c", "d"];
    let hosts: Vec<Host> = names
        .iter()
        .map(|n| network.host(&format!("replica-{n}")))
        .collect();
    let mut replicas: Vec<HostProcess> = names
        .iter()
        .zip(&hosts)
        .map(|(name, host)| start_replica(host, name))
        .collect();
    let record = |i: usize| (hosts[i].ip, NAME);
    let records =
        |which: &[usize]| -> Vec<(Ipv4Addr, &str)> { which.iter().map(|&i| record(i)).collect() };

    let dnsmasq = Dnsmasq::start(&dns_host, TTL, &records(&[0, 1, 2]));
    dnsmasq.serve(&network, &client_host);
    // The name resolves in the client's host through the system's resolver (glibc) already:
    // a failure past this point is the library's.
    let resolved = client_host
        .run("getent", &["ahostsv4", NAME])
        .unwrap_or_else(|e| panic!("{e}\n{}", dnsmasq.log()));
    for host in &hosts[..3] {
        assert!(resolved.contains(&host.ip.to_string()), "{resolved}");
    }

    let mut command = client_host.command(env!("CARGO_BIN_EXE_replica"));
    command.args([
        "--connect",
        &format!("dns+tcp://{NAME}:7000"),
        "--rate",
        "100",
    ]);
    let client = Client(HostProcess::spawn("replica client", command));
    client.0.expect_line("connected to", LIMIT);

    // 1. The calls spread over the three replicas, each with a fair share.
    let start = client.next();
    let spread = client.after(Duration::from_secs(3)).since(&start);
    eprintln!("DNS spread over a, b, c: {spread:?}");
    assert!(spread.total() >= 150, "{spread:?}");
    for name in ["a", "b", "c"] {
        assert!(
            spread.of(name) * 100 >= spread.total() * 15,
            "{name}: {spread:?}"
        );
    }
    assert_eq!((spread.of("d"), spread.errors), (0, 0), "{spread:?}");

    // 2. c dies (SIGKILL; its address stays in DNS): the calls go on with a and b.
    let before_kill = client.next();
    replicas[2].kill_9();
    let settling = client.after(Duration::from_secs(1));
    let after_kill = client.after(Duration::from_secs(2));
    let during = settling.since(&before_kill);
    let settled = after_kill.since(&settling);
    eprintln!("DNS c killed: first second {during:?}, the next two {settled:?}");
    assert!(
        settled.total() >= 100,
        "the calls stopped after c died: {settled:?}"
    );
    assert_eq!((settled.of("c"), settled.errors), (0, 0), "{settled:?}");
    assert!(settled.of("a") > 0 && settled.of("b") > 0, "{settled:?}");

    // 3. d is added to DNS: it gets calls once the TTL ran out.
    dnsmasq.set_records(&records(&[0, 1, 2, 3]));
    let base = client.next();
    let (took, _) = client
        .until(Duration::from_secs(TTL.into()) + SLACK, |c| {
            c.of("d") > base.of("d")
        })
        .unwrap_or_else(|| panic!("d never got a call:\n{}", dnsmasq.log()));
    eprintln!("DNS d added: first call to d {took:?} after the records changed");

    // 4. a is removed from DNS: it stops getting calls once the TTL ran out.
    dnsmasq.set_records(&records(&[1, 2, 3]));
    let removed_at = Instant::now();
    let mut last = client.next();
    let mut last_call_to_a = Duration::ZERO;
    let quiet = client.until(
        Duration::from_secs(TTL.into()) + SLACK + Duration::from_secs(1),
        |c| {
            if c.of("a") > last.of("a") {
                last_call_to_a = removed_at.elapsed();
            }
            last = c.clone();
            removed_at.elapsed() - last_call_to_a >= Duration::from_secs(1)
        },
    );
    assert!(
        quiet.is_some(),
        "a still gets calls after leaving DNS:\n{}",
        client.0.output()
    );
    eprintln!("DNS a removed: last call to a {last_call_to_a:?} after the records changed");
    assert!(last_call_to_a <= Duration::from_secs(TTL.into()) + SLACK);
    let check = client.next();
    let tail = client.after(Duration::from_secs(2)).since(&check);
    eprintln!("DNS after the changes: {tail:?}");
    assert_eq!(
        (tail.of("a"), tail.of("c"), tail.errors),
        (0, 0, 0),
        "{tail:?}"
    );
    assert!(tail.of("b") > 0 && tail.of("d") > 0, "{tail:?}");
    drop(replicas);
}
