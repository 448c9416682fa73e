//! Dead peers across a network: `calc-server` and `calc-client` in two network namespaces,
//! a call pending, then the link cut (the server's bridge port down, or every packet of the
//! server dropped by nftables). With keepalive (1 s interval, 1 s timeout) the client's call
//! fails and the server frees the connection within interval + timeout; without it, both
//! sides wait on the half-open connection (the control that shows these tests can fail).
//!
//! Needs root: without it each test prints a loud `SKIPPED:` line and returns, unless `CI` is
//! set, where it fails.

use std::time::{Duration, Instant};

use rpc_tests::netns::{Host, HostProcess, Network, binary};
use rpc_tests::wait_until;

const LIMIT: Duration = Duration::from_secs(30);

/// Keepalive interval and timeout, on both sides.
const KEEPALIVE: [&str; 4] = ["--keepalive-interval", "1s", "--keepalive-timeout", "1s"];

/// interval + timeout: the longest a dead peer may go unnoticed after the last frame heard.
const BOUND: Duration = Duration::from_secs(2);

/// What the measurement adds to the bound: a process exit and its reaping (the client), or
/// one `ss` run in the server's host (polled every 10 ms, each run a few ms), and timer
/// wake-ups on a busy 2-core machine.
const SLACK: Duration = Duration::from_millis(300);

#[derive(Clone, Copy, Debug)]
enum Cut {
    /// The server's bridge port goes down: its cable is pulled.
    Unplug,
    /// nftables drops everything the server's host sends or receives on eth0.
    Drop,
}

struct Setup {
    server_host: Host,
    client_host: Host,
    server: HostProcess,
    client: HostProcess,
    // Dropped last: kills anything left in the namespaces, then deletes them.
    _network: Network,
}

/// A server and a client with `flags` on both, the client waiting in a 60 s `sleep` call,
/// its connection established at the server; `None` when skipped.
fn pending_call(test: &str, flags: &[&str]) -> Option<Setup> {
    let network = Network::new(test)?;
    let server_host = network.host("server");
    let client_host = network.host("client");
    let mut command = server_host.command(binary("calc-server"));
    command
        .args(["--listen", "tcp://0.0.0.0:7000"])
        .args(flags)
        .env("RUST_LOG", "info");
    let server = HostProcess::spawn("calc-server", command);
    server.expect_line("listening on", LIMIT);
    let mut command = client_host.command(binary("calc-client"));
    command
        .args(["--connect", &format!("tcp://{}:7000", server_host.ip)])
        .args(["--timing", "--timeout", "120s"])
        .args(flags)
        .args(["sleep", "60000"]);
    let client = HostProcess::spawn("calc-client", command);
    client.expect_line("connected in", LIMIT);
    let established = wait_until(LIMIT, || server_host.established_with(client_host.ip) == 1);
    assert!(established, "the server never saw the client's connection");
    // Let at least one ping and pong cross, so the cut falls on a connection in its steady
    // state rather than on its first seconds.
    std::thread::sleep(Duration::from_millis(1200));
    assert!(client_host.established_with(server_host.ip) == 1);
    Some(Setup {
        server_host,
        client_host,
        server,
        client,
        _network: network,
    })
}

fn cut(setup: &Setup, how: Cut) -> Instant {
    match how {
        Cut::Unplug => setup.server_host.unplug(),
        Cut::Drop => setup.server_host.drop_traffic(),
    }
    Instant::now()
}

/// Cuts the link under a pending call with keepalive on, and checks both sides notice.
fn keepalive_finds_the_dead_peer(test: &str, how: Cut) {
    let Some(mut setup) = pending_call(test, &KEEPALIVE) else {
        return;
    };
    let cut_at = cut(&setup, how);
    let (mut client_after, mut server_after) = (None, None);
    let deadline = cut_at + BOUND + SLACK + Duration::from_secs(5);
    while (client_after.is_none() || server_after.is_none()) && Instant::now() < deadline {
        if client_after.is_none() && setup.client.try_exit().is_some() {
            client_after = Some(cut_at.elapsed());
        }
        if server_after.is_none() && setup.server_host.established_with(setup.client_host.ip) == 0 {
            server_after = Some(cut_at.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    eprintln!(
        "KEEPALIVE ({how:?}): client gave up after {client_after:?}, server freed the \
         connection after {server_after:?} (bound {BOUND:?} + slack {SLACK:?})"
    );
    let status = setup.client.finish(LIMIT);
    let output = setup.client.output();
    assert_eq!(status.code(), Some(1), "{output}");
    assert!(output.contains("keepalive"), "{output}");
    let client_after = client_after.expect("the client never gave up");
    assert!(
        client_after <= BOUND + SLACK,
        "client: {client_after:?}\n{output}"
    );
    let server_after = server_after.expect("the server never freed the connection");
    assert!(server_after <= BOUND + SLACK, "server: {server_after:?}");
    let closing = setup
        .server
        .wait_line(LIMIT, |line| line.contains("stopped answering"));
    assert!(
        closing.is_some(),
        "the server did not log why:\n{}",
        setup.server.output()
    );
}

#[test]
fn keepalive_finds_an_unplugged_server() {
    keepalive_finds_the_dead_peer("keepalive_finds_an_unplugged_server", Cut::Unplug);
}

#[test]
fn keepalive_finds_a_silenced_server() {
    keepalive_finds_the_dead_peer("keepalive_finds_a_silenced_server", Cut::Drop);
}

/// The control: with keepalive off on both sides, the same cut leaves the call pending and
/// the connection established well past the bound the tests above hold.
#[test]
fn without_keepalive_a_cut_link_hangs() {
    for how in [Cut::Unplug, Cut::Drop] {
        let Some(mut setup) =
            pending_call("without_keepalive_a_cut_link_hangs", &["--no-keepalive"])
        else {
            return;
        };
        let cut_at = cut(&setup, how);
        let exited = setup
            .client
            .wait_exit(BOUND + SLACK + Duration::from_secs(1));
        assert!(
            exited.is_none(),
            "{how:?}: the client ended {:?} after the cut without keepalive:\n{}",
            cut_at.elapsed(),
            setup.client.output()
        );
        assert_eq!(
            setup.server_host.established_with(setup.client_host.ip),
            1,
            "{how:?}: the server let the connection go without keepalive"
        );
        eprintln!(
            "CONTROL ({how:?}): still pending {:?} after the cut",
            cut_at.elapsed()
        );
    }
}
