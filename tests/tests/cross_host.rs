//! The example binaries across hosts: `calc-server` in one network namespace, `calc-client`
//! in another, joined by veth pairs and a bridge (see `rpc_tests::netns`). Over `tcp://` and
//! `tls://`; over a bad network (delay and loss); and across a cut link, where keepalive must
//! find the dead peer on both sides.
//!
//! Needs root: without it each test prints a loud `SKIPPED:` line and returns, unless `CI` is
//! set, where it fails.

use std::time::{Duration, Instant};

use rpc_tests::netns::{Host, HostProcess, Impairment, Network, binary};
use rpc_tests::pki::Validity;
use rpc_tests::{TestPki, wait_until};

/// The longest any one step may take.
const LIMIT: Duration = Duration::from_secs(30);

/// `calc-server --listen tcp://0.0.0.0:7000 EXTRA...` in `host`, once it listens.
fn start_server(host: &Host, extra: &[&str]) -> HostProcess {
    let mut command = host.command(binary("calc-server"));
    command
        .args(["--listen", "tcp://0.0.0.0:7000"])
        .args(extra)
        .env("RUST_LOG", "info");
    let server = HostProcess::spawn("calc-server", command);
    server.expect_line("listening on", LIMIT);
    server
}

/// `calc-client ARGS...` started in `host`.
fn start_client(host: &Host, args: &[&str]) -> HostProcess {
    let mut command = host.command(binary("calc-client"));
    command.args(args);
    HostProcess::spawn("calc-client", command)
}

/// Runs `calc-client ARGS...` in `host` to its end: its exit code and the process.
fn client(host: &Host, args: &[&str]) -> (Option<i32>, HostProcess) {
    let mut client = start_client(host, args);
    let status = client.finish(LIMIT);
    (status.code(), client)
}

/// The number after `label` in `text` (`"connected in 51.2 ms"`, label `"connected in "`).
fn number_after(text: &str, label: &str) -> Option<f64> {
    let at = text.find(label)? + label.len();
    let rest = &text[at..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

#[test]
fn calls_cross_hosts_over_tcp_and_tls() {
    let Some(network) = Network::new("calls_cross_hosts_over_tcp_and_tls") else {
        return;
    };
    let server_host = network.host("server");
    let client_host = network.host("client");
    let pki = TestPki::new();
    let server_ip = server_host.ip.to_string();
    let certificate = pki.issue_server("cross", &[&server_ip], Validity::Current);
    let _server = start_server(
        &server_host,
        &[
            "--listen",
            "tls://0.0.0.0:7443",
            "--tls-cert",
            &certificate.certificate.to_string_lossy(),
            "--tls-key",
            &certificate.key.to_string_lossy(),
        ],
    );
    let tcp = format!("tcp://{server_ip}:7000");
    let tls = format!("tls://{server_ip}:7443");
    let ca = pki.ca_file().to_string_lossy().into_owned();

    let (code, out) = client(&client_host, &["--connect", &tcp, "add", "2", "3"]);
    assert_eq!(
        (code, out.stdout().as_str()),
        (Some(0), "5\n"),
        "{}",
        out.output()
    );
    let (code, out) = client(
        &client_host,
        &["--connect", &tcp, "sum", "1", "2", "3", "-4"],
    );
    assert_eq!(
        (code, out.stdout().as_str()),
        (Some(0), "2\n"),
        "{}",
        out.output()
    );
    let (code, out) = client(&client_host, &["--connect", &tcp, "div", "1", "0"]);
    assert_eq!(code, Some(3), "{}", out.output());
    assert!(
        out.output().contains("division by zero"),
        "{}",
        out.output()
    );

    let (code, out) = client(
        &client_host,
        &[
            "--connect",
            &tls,
            "--tls-ca",
            &ca,
            "echo",
            "across the wire",
        ],
    );
    assert_eq!(code, Some(0), "{}", out.output());
    assert_eq!(out.stdout(), "across the wire\n");

    // The connection really crosses hosts: while a call waits, the server's host holds an
    // established connection whose peer is the client host's address.
    let mut pending = start_client(
        &client_host,
        &["--connect", &tls, "--tls-ca", &ca, "sleep", "60000"],
    );
    let seen = wait_until(LIMIT, || server_host.established_with(client_host.ip) == 1);
    assert!(seen, "no connection from {} at the server", client_host.ip);
    pending.kill_9();

    // A client that trusts another CA is refused, saying why.
    let stranger = TestPki::new();
    let other_ca = stranger.ca_file().to_string_lossy().into_owned();
    let (code, out) = client(
        &client_host,
        &["--connect", &tls, "--tls-ca", &other_ca, "add", "2", "3"],
    );
    assert_eq!(code, Some(1), "{}", out.output());
    assert_eq!(out.stdout(), "");
    assert!(
        out.output().to_lowercase().contains("certificate"),
        "{}",
        out.output()
    );
}

#[test]
fn calls_succeed_over_a_bad_network_and_deadlines_hold() {
    let Some(network) = Network::new("calls_succeed_over_a_bad_network") else {
        return;
    };
    let server_host = network.host("server");
    let client_host = network.host("client");
    let _server = start_server(&server_host, &[]);
    let tcp = format!("tcp://{}:7000", server_host.ip);
    let throughput = |label: &str| {
        let (code, out) = client(
            &client_host,
            &[
                "--connect",
                &tcp,
                "--repeat",
                "2000",
                "--in-flight",
                "32",
                "add",
                "2",
                "3",
            ],
        );
        assert_eq!(code, Some(0), "{label}: {}", out.output());
        assert_eq!(out.stdout(), "5\n");
        let output = out.output();
        let summary = output
            .lines()
            .find(|line| line.contains("calls/s"))
            .unwrap_or_else(|| panic!("{label}: no summary: {output}"));
        assert!(summary.contains(" 0 failed"), "{label}: {summary}");
        let rate = number_after(summary, "s: ").expect("calls/s in the summary");
        eprintln!("THROUGHPUT {label}: {rate:.0} calls/s with 32 in flight [{summary}]");
        rate
    };
    let clean = throughput("clean link");

    let delay = Duration::from_millis(50);
    let impairment = Impairment::apply(&server_host, &client_host, delay, 1);

    // The delay is in force: the TCP handshake alone waits for one delayed SYN-ACK.
    let (code, out) = client(
        &client_host,
        &["--connect", &tcp, "--timing", "add", "40", "2"],
    );
    assert_eq!(
        (code, out.stdout().as_str()),
        (Some(0), "42\n"),
        "{}",
        out.output()
    );
    let connect_ms = number_after(&out.output(), "connected in ").expect("connect time");
    assert!(
        connect_ms >= 50.0,
        "connected in {connect_ms} ms: no delay in force"
    );

    // Calls succeed, one at a time and 32 at once; with 32 in flight the delay caps the rate
    // at 32 calls per round trip (640/s for 50 ms), which a link without the delay exceeds.
    let (code, out) = client(
        &client_host,
        &["--connect", &tcp, "--repeat", "40", "add", "1", "2"],
    );
    assert_eq!(
        (code, out.stdout().as_str()),
        (Some(0), "3\n"),
        "{}",
        out.output()
    );
    let bad = throughput(&format!("50 ms delay, 1% loss ({})", impairment.emulation));
    assert!(
        bad <= 32.0 / delay.as_secs_f64() * 1.05,
        "{bad} calls/s beats the delay"
    );
    assert!(bad >= 100.0, "only {bad} calls/s with 32 in flight");
    assert!(
        clean > bad,
        "the clean link ({clean}/s) was no faster than the bad one"
    );
    eprintln!("LOSS: {}", impairment.losses());

    // A deadline fires on time (within 10%) although every answer is 50 ms late: the call
    // time is calc-client's own, from the call's start (after connecting) to its failure.
    let started = Instant::now();
    let (code, out) = client(
        &client_host,
        &[
            "--connect",
            &tcp,
            "--timing",
            "--timeout",
            "500ms",
            "sleep",
            "2000",
        ],
    );
    let wall = started.elapsed();
    let text = out.output();
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("deadline"), "{text}");
    let call_ms = number_after(&text, "call ended after ").expect("call time");
    let connect_ms = number_after(&text, "connected in ").expect("connect time");
    eprintln!(
        "DEADLINE: 500 ms deadline failed the call after {call_ms} ms (connect {connect_ms} ms, \
         process wall time {wall:?})"
    );
    assert!(
        (500.0..=550.0).contains(&call_ms),
        "{call_ms} ms for a 500 ms deadline"
    );
    // The process's own wall time agrees: at least connect + 500 ms, and not a lot more.
    let wall_ms = wall.as_secs_f64() * 1000.0;
    assert!(wall_ms >= connect_ms + 500.0, "wall {wall_ms} ms");
    assert!(wall_ms <= connect_ms + 550.0 + 500.0, "wall {wall_ms} ms");
}
