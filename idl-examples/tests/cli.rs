//! The example binaries as a user runs them: `calc-server` in its own process, `calc-client`
//! calling it, signals and kill -9 included.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SERVER: &str = env!("CARGO_BIN_EXE_calc-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_calc-client");

/// A `calc-server` child, killed if the test ends early.
struct ServerProcess {
    child: Child,
    addresses: Vec<String>,
}

impl ServerProcess {
    /// Starts `calc-server --listen ...` and reads the addresses it logs.
    fn start(listen: &[&str]) -> ServerProcess {
        Self::start_binary(SERVER, listen, &[])
    }

    /// Starts `binary --listen ... extra...` and reads the addresses it logs.
    fn start_binary(binary: &str, listen: &[&str], extra: &[&str]) -> ServerProcess {
        let mut command = Command::new(binary);
        command.args(extra);
        for address in listen {
            command.args(["--listen", address]);
        }
        let mut child = command
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the server");
        let stderr = BufReader::new(child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if let Some(at) = line.find("listening on ") {
                    let _ = tx.send(line[at + "listening on ".len()..].trim().to_owned());
                }
            }
        });
        let mut addresses = Vec::new();
        while addresses.len() < listen.len() {
            match rx.recv_timeout(Duration::from_secs(20)) {
                Ok(address) => addresses.push(address),
                Err(_) => {
                    let _ = child.kill();
                    panic!("calc-server did not report its addresses");
                }
            }
        }
        ServerProcess { child, addresses }
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits (bounded) for the process to exit; returns its exit code.
    fn wait(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "calc-server did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client(address: &str, args: &[&str]) -> Output {
    Command::new(CLIENT)
        .args(["--connect", address])
        .args(args)
        .output()
        .expect("run calc-client")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("calc-cli-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn client_prints_results_over_tcp_and_unix() {
    let dir = temp_dir("results");
    let sock = format!("unix://{}/calc.sock", dir.display());
    let server = ServerProcess::start(&["tcp://127.0.0.1:0", &sock]);
    for address in &server.addresses {
        let out = client(address, &["add", "2", "3"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(stdout(&out), "5\n");
        let out = client(address, &["sum", "1", "2", "3", "-4"]);
        assert_eq!(stdout(&out), "2\n");
        let out = client(address, &["div", "-9", "2"]);
        assert_eq!(stdout(&out), "-4\n");
        let out = client(address, &["echo", "héllo"]);
        assert_eq!(stdout(&out), "héllo\n");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn division_by_zero_is_an_application_error() {
    let server = ServerProcess::start(&["tcp://127.0.0.1:0"]);
    let out = client(&server.addresses[0], &["div", "1", "0"]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(stdout(&out), "");
    assert!(
        stderr(&out).contains("division by zero"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn bad_addresses_and_dead_servers_are_reported() {
    let out = client("carrier-pigeon://home", &["add", "1", "2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("supported forms"), "{}", stderr(&out));
    assert!(stderr(&out).contains("tcp://HOST:PORT"), "{}", stderr(&out));

    let dir = temp_dir("dead");
    let out = client(
        &format!("unix://{}/nobody.sock", dir.display()),
        &["add", "1", "2"],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("cannot connect"), "{}", stderr(&out));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn sigterm_stops_the_server_and_frees_its_socket_file() {
    let dir = temp_dir("sigterm");
    let path = dir.join("calc.sock");
    let address = format!("unix://{}", path.display());
    let mut server = ServerProcess::start(&[&address]);
    assert!(path.exists());
    assert_eq!(stdout(&client(&address, &["add", "1", "1"])), "2\n");
    server.signal("TERM");
    assert_eq!(server.wait(), Some(0));
    assert!(!path.exists(), "the socket file outlived the server");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_socket_left_by_a_killed_server_is_replaced_and_a_live_one_is_in_use() {
    let dir = temp_dir("stale");
    let path = dir.join("calc.sock");
    let address = format!("unix://{}", path.display());
    let mut first = ServerProcess::start(&[&address]);
    // A second server on a live socket fails with "address in use".
    let second = Command::new(SERVER)
        .args(["--listen", &address])
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(
        stderr(&second).contains("address in use"),
        "{}",
        stderr(&second)
    );
    first.signal("KILL");
    first.wait();
    assert!(path.exists(), "kill -9 leaves the socket file behind");
    let restarted = ServerProcess::start(&[&address]);
    assert_eq!(
        stdout(&client(&restarted.addresses[0], &["add", "4", "5"])),
        "9\n"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn demo_prints_a_row_per_transport() {
    let out = Command::new(env!("CARGO_BIN_EXE_rpc-demo"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let table = stdout(&out);
    for transport in [
        "| tcp |",
        "| unix |",
        "| unix (abstract) |",
        "| mem |",
        "| shm |",
        "| shm (blocking client) |",
        "| mmap |",
        "| pipes (spawned child) |",
        "| fifo |",
        "| mq |",
        "| tls |",
        "| sysv-mq |",
    ] {
        let row = table
            .lines()
            .find(|line| line.starts_with(transport))
            .unwrap_or_else(|| panic!("no row for {transport} in\n{table}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(cells[3], "2000", "{row}");
        assert!(
            cells[4].ends_with(" us") && cells[5].ends_with(" us"),
            "{row}"
        );
    }
}

#[test]
fn client_spawns_the_server_over_stdio_and_reaches_fifo_and_mq_servers() {
    // `spawn:`: the client starts `calc-server --listen stdio` as its child.
    let out = client(
        &format!("spawn:{SERVER} --listen stdio"),
        &["add", "2", "3"],
    );
    assert_eq!(stdout(&out), "5\n", "{}", stderr(&out));
    let out = client(
        &format!("spawn:{SERVER} --listen stdio"),
        &["div", "1", "0"],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    // `fifo://`: an unrelated server process; its directory goes when it does.
    let dir = temp_dir("fifo").join("calc");
    let fifo = format!("fifo://{}", dir.display());
    let mut server = ServerProcess::start(&[&fifo]);
    assert_eq!(stdout(&client(&fifo, &["sum", "1", "2", "3"])), "6\n");
    server.signal("TERM");
    assert_eq!(server.wait(), Some(0));
    assert!(
        !dir.exists(),
        "{} is left after the server exited",
        dir.display()
    );
}

#[test]
fn the_server_prints_its_schema_as_json() {
    let output = Command::new(SERVER).arg("--schema").output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let schema = rpc_core::ServiceSchema::from_json(&stdout(&output)).unwrap();
    assert_eq!(&schema, idl_examples::CalculatorClient::schema());
    let add = schema.methods.iter().find(|m| m.name == "add").unwrap();
    assert!(add.idempotent);
    assert_eq!(add.docs, "Returns `a + b` (wrapping on overflow).");
    assert_eq!(add.args.len(), 2);
    // And it refuses to be asked for both.
    let both = Command::new(SERVER)
        .args(["--schema", "--listen", "tcp://127.0.0.1:0"])
        .output()
        .unwrap();
    assert!(!both.status.success());
}

/// Runs `calc-client --connect ADDRESS ARGS...`, killing it if it takes longer than `limit`;
/// returns its output and how long it ran.
fn client_within(address: &str, args: &[&str], limit: Duration) -> (Output, Duration) {
    let started = Instant::now();
    let mut child = Command::new(CLIENT)
        .args(["--connect", address])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run calc-client");
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let output = child.wait_with_output().unwrap();
    (output, started.elapsed())
}

#[test]
fn a_call_past_its_timeout_fails_at_the_deadline_and_names_it() {
    let server = ServerProcess::start(&["tcp://127.0.0.1:0"]);
    let address = &server.addresses[0];
    let (out, took) = client_within(
        address,
        &["--timeout", "200ms", "sleep", "5000"],
        Duration::from_secs(10),
    );
    assert!(took < Duration::from_secs(2), "gave up only after {took:?}");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("call to 'sleep' exceeded its deadline of 200ms"),
        "{}",
        stderr(&out)
    );

    let (out, _) = client_within(
        address,
        &["--timeout", "1.5s", "sleep", "20"],
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "slept\n");
    let (out, _) = client_within(
        address,
        &["--timeout", "1m", "add", "1", "2"],
        Duration::from_secs(10),
    );
    assert_eq!(stdout(&out), "3\n");
}

#[test]
fn a_timeout_without_a_unit_is_bad_usage() {
    let (out, _) = client_within(
        "tcp://127.0.0.1:1",
        &["--timeout", "200", "sleep", "1"],
        Duration::from_secs(10),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("no unit"), "{}", stderr(&out));
}

const KV_SERVER: &str = env!("CARGO_BIN_EXE_kv-server");
const KV_CLIENT: &str = env!("CARGO_BIN_EXE_kv-client");

fn kv(address: &str, args: &[&str]) -> Output {
    Command::new(KV_CLIENT)
        .args(["--connect", address])
        .args(args)
        .output()
        .expect("run kv-client")
}

#[test]
fn kv_client_gets_puts_deletes_and_lists() {
    let dir = std::env::temp_dir().join(format!("kv-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let address = format!("unix://{}/kv.sock", dir.display());
    let server = ServerProcess::start_binary(KV_SERVER, &[&address], &[]);
    let at = &server.addresses[0];
    assert!(kv(at, &["put", "user/1", "alice"]).status.success());
    assert!(kv(at, &["put", "user/2", "bob"]).status.success());
    assert!(kv(at, &["put", "other", "x"]).status.success());
    let replaced = kv(at, &["put", "user/2", "bobby"]);
    assert_eq!(stdout(&replaced), "bob\n");
    assert_eq!(stdout(&kv(at, &["get", "user/1"])), "alice\n");
    assert_eq!(
        stdout(&kv(at, &["list", "user/"])),
        "user/1=alice\nuser/2=bobby\n"
    );
    assert_eq!(stdout(&kv(at, &["delete", "user/1"])), "alice\n");
    let missing = kv(at, &["get", "user/1"]);
    assert_eq!(missing.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such key 'user/1'"));
    // A Calculator client of a Kv-only server is told what it serves.
    let calc = Command::new(CLIENT)
        .args(["--connect", at, "add", "2", "3"])
        .output()
        .unwrap();
    assert_eq!(calc.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&calc.stderr);
    assert!(
        stderr.contains("does not serve 'Calculator'") && stderr.contains("Kv"),
        "{stderr}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn kv_watch_prints_each_change_until_interrupted() {
    let server =
        ServerProcess::start_binary(KV_SERVER, &["tcp://127.0.0.1:0"], &["--with-calculator"]);
    let at = server.addresses[0].clone();
    let mut watch = Command::new(KV_CLIENT)
        .args(["--connect", &at, "watch", "user/"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = BufReader::new(watch.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    // The watch is in place once a change shows up; until then, keep writing.
    let mut first = None;
    for _ in 0..100 {
        assert!(kv(&at, &["put", "user/ready", "1"]).status.success());
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
            first = Some(line);
            break;
        }
    }
    assert_eq!(first.as_deref(), Some("put user/ready=1"));
    while rx.recv_timeout(Duration::from_millis(200)).is_ok() {}
    assert!(kv(&at, &["put", "user/1", "alice"]).status.success());
    assert!(kv(&at, &["put", "elsewhere", "x"]).status.success());
    assert!(kv(&at, &["delete", "user/1"]).status.success());
    let next = |rx: &std::sync::mpsc::Receiver<String>| {
        rx.recv_timeout(Duration::from_secs(10))
            .expect("a watch line")
    };
    assert_eq!(next(&rx), "put user/1=alice");
    assert_eq!(next(&rx), "deleted user/1");
    // The Calculator is served on the same listener.
    let calc = Command::new(CLIENT)
        .args(["--connect", &at, "add", "2", "3"])
        .output()
        .unwrap();
    assert_eq!(stdout(&calc), "5\n");
    // Interrupted, the watcher exits cleanly.
    let status = Command::new("kill")
        .args(["-INT", &watch.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(status) = watch.try_wait().unwrap() {
            break status.code();
        }
        assert!(
            Instant::now() < deadline,
            "kv-client watch did not exit on SIGINT"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(code, Some(0));
    drop(server);
}

/// PEM files for the tls tests: a CA, a server certificate for this host, a client
/// certificate from the same CA and one from another CA.
struct TlsFiles {
    dir: std::path::PathBuf,
}

impl TlsFiles {
    fn write() -> TlsFiles {
        use idl_examples::demo_tls::{DemoPki, LOCAL_NAMES};
        let dir = temp_dir("tls");
        let pki = DemoPki::generate("calc test CA").unwrap();
        let stranger = DemoPki::generate("another CA").unwrap();
        let server = pki.server(&LOCAL_NAMES).unwrap();
        let client = pki.client("calc client").unwrap();
        let foreign = stranger.client("foreign client").unwrap();
        let files = [
            ("ca.pem", pki.ca_pem().to_owned()),
            ("server.pem", server.certificate),
            ("server.key", server.key),
            ("client.pem", client.certificate),
            ("client.key", client.key),
            ("foreign.pem", foreign.certificate),
            ("foreign.key", foreign.key),
        ];
        for (name, pem) in files {
            std::fs::write(dir.join(name), pem).unwrap();
        }
        TlsFiles { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for TlsFiles {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn tls_server_and_client_with_certificate_files() {
    let files = TlsFiles::write();
    let server = ServerProcess::start_binary(
        SERVER,
        &["tls://127.0.0.1:0"],
        &[
            "--tls-cert",
            &files.path("server.pem"),
            "--tls-key",
            &files.path("server.key"),
        ],
    );
    let address = server.addresses[0].replace("127.0.0.1", "localhost");
    let limit = Duration::from_secs(20);
    let (out, _) = client_within(
        &address,
        &["--tls-ca", &files.path("ca.pem"), "add", "2", "3"],
        limit,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "5");

    // Without the CA the client trusts only the system's roots, and refuses the server.
    let (out, _) = client_within(&address, &["add", "2", "3"], limit);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("not signed by a trusted CA"),
        "{}",
        stderr(&out)
    );

    // A tls:// listener without a certificate is bad usage, said at once.
    let out = Command::new(SERVER)
        .args(["--listen", "tls://127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("needs --tls-cert FILE and --tls-key FILE"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn tls_server_requiring_client_certificates() {
    let files = TlsFiles::write();
    let server = ServerProcess::start_binary(
        SERVER,
        &["tls://127.0.0.1:0"],
        &[
            "--tls-cert",
            &files.path("server.pem"),
            "--tls-key",
            &files.path("server.key"),
            "--tls-ca",
            &files.path("ca.pem"),
        ],
    );
    let address = &server.addresses[0];
    let limit = Duration::from_secs(20);
    let ca = files.path("ca.pem");
    let (out, _) = client_within(address, &["--tls-ca", &ca, "add", "2", "3"], limit);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the server requires a client certificate"),
        "{}",
        stderr(&out)
    );
    let (client_pem, client_key) = (files.path("client.pem"), files.path("client.key"));
    let with_cert = [
        "--tls-ca",
        &ca,
        "--tls-cert",
        &client_pem,
        "--tls-key",
        &client_key,
    ];
    let (out, _) = client_within(
        address,
        &[&with_cert[..], &["add", "2", "3"]].concat(),
        limit,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out).trim(), "5");
    let (foreign_pem, foreign_key) = (files.path("foreign.pem"), files.path("foreign.key"));
    let foreign = [
        "--tls-ca",
        &ca,
        "--tls-cert",
        &foreign_pem,
        "--tls-key",
        &foreign_key,
    ];
    let (out, _) = client_within(address, &[&foreign[..], &["add", "2", "3"]].concat(), limit);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("the server refused this client's certificate"),
        "{}",
        stderr(&out)
    );
}
