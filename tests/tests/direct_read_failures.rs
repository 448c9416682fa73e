//! Failures on the async client's direct-read path (`rpc-core/src/client/direct.rs`): callers
//! on a two-worker runtime that read their own replies from a Unix or TCP socket (or a shared
//! memory ring) while the server dies, freezes, answers late, or breaks the protocol. Every
//! call must end with its own answer or a typed error within a bound; none may hang.
//!
//! The servers are real: a `probe-server` process, or (for the protocol attacks) a hostile
//! server in a thread of this process that speaks the handshake over a real socket and then
//! answers with garbage, a cut frame, a half-close and so on.
//!
//! Direct reading on sockets needs a multi-threaded runtime in a process allowed more than one
//! CPU; on one CPU these tests still run but exercise the reader task instead.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use rpc_core::RpcError;
use rpc_core::wire::{self, HEADER_LEN, Header, Kind, Welcome};
use rpc_tests::{ProbeClient, ProbeProcess as Process, TempDir, probe_method_id, wait_until};

// These found two faults in the direct path, both fixed: a reader task that found the
// receiver held went back to sleep and a reply could sit unread until the call timed out (it
// now leaves word for the holder to poke it), and a stream cut inside a frame, reported once,
// could be lost so the connection ended as a clean close (a caller now records the error its
// sleep announcement returns, and the reader ends with a recorded reason before `CLOSED`).

/// The bound on any wait: nothing here may hang CI.
const LIMIT: Duration = Duration::from_secs(30);
/// How soon a call must fail once its connection is gone.
const PROMPT: Duration = Duration::from_secs(5);
/// Every transport whose callers read their own replies.
const SCHEMES: [&str; 5] = ["shm", "unix", "tcp", "mq", "sysv-mq"];
/// The socket transports (the hostile server speaks length-prefixed frames).
const SOCKETS: [&str; 2] = ["unix", "tcp"];

/// A multi-threaded runtime with two workers (the machine's CPUs).
fn runtime() -> tokio::runtime::Runtime {
    if std::thread::available_parallelism().is_ok_and(|n| n.get() < 2) {
        eprintln!("one CPU: socket clients use their reader task, not direct reads");
    }
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Awaits `future` for at most [`LIMIT`], panicking with `what` if it takes longer.
async fn bounded<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, future)
        .await
        .unwrap_or_else(|_| panic!("{what}: not done within {LIMIT:?}"))
}

fn assert_disconnected<T: std::fmt::Debug>(outcome: &Result<T, RpcError>, what: &str) {
    assert!(
        matches!(outcome, Err(RpcError::Disconnected { .. })),
        "{what}: expected Disconnected, got {outcome:?}"
    );
}

fn reason(error: &RpcError) -> &str {
    match error {
        RpcError::Disconnected { reason } => reason,
        other => panic!("not Disconnected: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// 1. The server is killed while calls wait.

/// SIGKILL on the server while calls wait for replies that will never come (handlers that
/// sleep for ten minutes), while callers exchange 1 MiB echoes (so the kill often lands inside
/// a reply that is being read) and while a stream runs: every call and the stream fail with
/// `Disconnected` within a few seconds, and later calls and streams fail at once.
#[test]
fn calls_waiting_on_a_killed_server_fail_promptly_as_disconnected() {
    for scheme in SCHEMES {
        calls_waiting_on_a_killed_server(scheme);
    }
}

fn calls_waiting_on_a_killed_server(scheme: &str) {
    let dir = TempDir::new();
    let (mut server, address) = Process::serve_fresh(scheme, &dir);
    let runtime = runtime();
    let probe = runtime
        .block_on(ProbeClient::connect(&address))
        .unwrap()
        .with_timeout(Some(Duration::from_secs(600)));
    let sleepers: Vec<_> = (0..6u64)
        .map(|id| {
            let probe = probe.clone();
            runtime.spawn(async move { probe.tag(id, 600_000).await })
        })
        .collect();
    let echoed = Arc::new(AtomicU64::new(0));
    let echoers: Vec<_> = (0..2u8)
        .map(|task| {
            let probe = probe.clone();
            let echoed = echoed.clone();
            runtime.spawn(async move {
                let data: Vec<u8> = (0..1usize << 20).map(|i| (i as u8) ^ task).collect();
                loop {
                    match probe.echo(data.clone()).await {
                        Ok(back) => {
                            assert!(back == data, "an echo came back changed");
                            echoed.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(error) => return error,
                    }
                }
            })
        })
        .collect();
    let streamed = Arc::new(AtomicU64::new(0));
    let stream = runtime.spawn({
        let probe = probe.clone();
        let streamed = streamed.clone();
        async move {
            let mut items = probe.endless().await.expect("the stream starts");
            let mut next = 0u64;
            while let Some(item) = items.next().await {
                match item {
                    Ok(i) => {
                        assert_eq!(i, next, "stream items out of order");
                        next += 1;
                        streamed.store(next, Ordering::SeqCst);
                    }
                    Err(error) => return Some(error),
                }
            }
            None
        }
    });
    // Wait until the echoes and the stream flow (the sleepers' requests went out before).
    assert!(
        wait_until(LIMIT, || echoed.load(Ordering::SeqCst) >= 4
            && streamed.load(Ordering::SeqCst) >= 20),
        "{scheme}: the calls never got going"
    );
    std::thread::sleep(Duration::from_millis(50));
    let killed = Instant::now();
    server.kill_9();
    runtime.block_on(async {
        for (id, sleeper) in sleepers.into_iter().enumerate() {
            let outcome = bounded("a sleeping call", sleeper).await.unwrap();
            assert_disconnected(&outcome, &format!("{scheme}: tag({id}, 600 s)"));
        }
        for echoer in echoers {
            let error = bounded("an echo caller", echoer).await.unwrap();
            assert!(
                matches!(error, RpcError::Disconnected { .. }),
                "{scheme}: an echo failed with {error:?}"
            );
        }
        let ended = bounded("the stream", stream).await.unwrap();
        assert!(
            matches!(ended, Some(RpcError::Disconnected { .. })),
            "{scheme}: a stream whose server was killed ended with {ended:?}, not Disconnected"
        );
    });
    let took = killed.elapsed();
    assert!(
        took < PROMPT,
        "{scheme}: the pending calls failed {took:?} after the kill"
    );
    runtime.block_on(async {
        let started = Instant::now();
        let outcome = bounded("a call after the kill", probe.add(1, 2)).await;
        assert_disconnected(&outcome, &format!("{scheme}: a call after the kill"));
        let outcome = bounded("a stream after the kill", probe.endless()).await;
        assert!(
            matches!(outcome, Err(RpcError::Disconnected { .. })),
            "{scheme}: a stream opened after the kill: {:?}",
            outcome.err()
        );
        assert!(
            started.elapsed() < PROMPT,
            "{scheme}: later calls were slow to fail"
        );
    });
}

// ---------------------------------------------------------------------------------------------
// 2. Many calls: sequential and concurrent on one connection.

/// One call of a mix, checked: sums mostly, some echoes large enough to arrive in pieces
/// (over 64 KiB: more than one read), some calls whose handler sleeps a little.
async fn checked_call(probe: &ProbeClient, task: i64, i: i64) -> Result<(), String> {
    let context = |e: RpcError| format!("task {task} call {i}: {e}");
    match i % 16 {
        5 => {
            let id = (task as u64) << 32 | i as u64;
            let got = probe.tag(id, (i % 3) as u64).await.map_err(context)?;
            if got != id {
                return Err(format!("task {task} call {i}: tag {id} answered {got}"));
            }
        }
        11 => {
            let len = 1 + ((task * 7919 + i * 104_729) % (300 << 10)) as usize;
            let data: Vec<u8> = (0..len).map(|k| (k as i64 ^ task ^ i) as u8).collect();
            let back = probe.echo(data.clone()).await.map_err(context)?;
            if back != data {
                return Err(format!(
                    "task {task} call {i}: an echo of {len} bytes changed"
                ));
            }
        }
        _ => {
            let got = probe.add(task << 32, i).await.map_err(context)?;
            if got != (task << 32) + i {
                return Err(format!("task {task} call {i}: add answered {got}"));
            }
        }
    }
    Ok(())
}

/// 2000 sequential calls on the runtime's main thread, 2000 more on a worker, and 8 tasks of
/// 200 calls each at the same time, on one connection and two workers: every call is answered
/// with its own reply. A reply left in the socket with no one to read it (a lost wake-up)
/// shows as a call that fails its 10 s timeout.
#[test]
fn sequential_and_concurrent_calls_on_one_connection_are_all_answered() {
    for scheme in SCHEMES {
        sequential_and_concurrent_calls(scheme);
    }
}

fn sequential_and_concurrent_calls(scheme: &str) {
    let dir = TempDir::new();
    let (_server, address) = Process::serve_fresh(scheme, &dir);
    let runtime = runtime();
    runtime.block_on(async {
        let probe = ProbeClient::connect(&address)
            .await
            .unwrap()
            .with_timeout(Some(Duration::from_secs(10)));
        let started = Instant::now();
        let worker_sequence = tokio::spawn({
            let probe = probe.clone();
            async move {
                for i in 0..2000 {
                    checked_call(&probe, 100, i).await?;
                }
                Ok::<_, String>(())
            }
        });
        let tasks: Vec<_> = (0..8i64)
            .map(|task| {
                let probe = probe.clone();
                tokio::spawn(async move {
                    for i in 0..200 {
                        checked_call(&probe, task, i).await?;
                        if i % 37 == 0 {
                            // Let the sequential callers take the connection in between.
                            tokio::task::yield_now().await;
                        }
                    }
                    Ok::<_, String>(())
                })
            })
            .collect();
        bounded(&format!("{scheme}: 6000 calls"), async {
            for i in 0..2000 {
                if let Err(e) = checked_call(&probe, 200, i).await {
                    panic!("{scheme}: main thread: {e}");
                }
            }
            if let Err(e) = worker_sequence.await.unwrap() {
                panic!("{scheme}: worker: {e}");
            }
            for task in tasks {
                if let Err(e) = task.await.unwrap() {
                    panic!("{scheme}: {e}");
                }
            }
        })
        .await;
        eprintln!("{scheme}: 5600 mixed calls in {:?}", started.elapsed());
        // Then bursts: tasks that start together and end together, over and over, so the
        // connection changes hands between callers and the reader task many times.
        bounded(&format!("{scheme}: bursts"), async {
            for burst in 0..50i64 {
                let callers: Vec<_> = (0..4i64)
                    .map(|k| {
                        let probe = probe.clone();
                        tokio::spawn(async move { probe.add(burst, k).await })
                    })
                    .collect();
                for (k, caller) in callers.into_iter().enumerate() {
                    let sum = caller.await.unwrap();
                    assert_eq!(sum.unwrap(), burst + k as i64, "{scheme}: burst {burst}");
                }
            }
        })
        .await;
    });
}

// ---------------------------------------------------------------------------------------------
// 3. A hostile server: the handshake, then a broken reply.

/// A stream socket of either kind.
enum Socket {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Socket {
    fn shutdown(&self, how: Shutdown) {
        let _ = match self {
            Socket::Tcp(s) => s.shutdown(how),
            Socket::Unix(s) => s.shutdown(how),
        };
    }

    fn set_timeouts(&self, limit: Duration) {
        match self {
            Socket::Tcp(s) => {
                s.set_read_timeout(Some(limit)).unwrap();
                s.set_write_timeout(Some(limit)).unwrap();
                s.set_nodelay(true).unwrap();
            }
            Socket::Unix(s) => {
                s.set_read_timeout(Some(limit)).unwrap();
                s.set_write_timeout(Some(limit)).unwrap();
            }
        }
    }

    /// The next frame's payload; `None` at the end of the stream or on an error.
    fn read_frame(&mut self) -> Option<Vec<u8>> {
        let mut prefix = [0u8; 4];
        self.read_exact(&mut prefix).ok()?;
        let mut payload = vec![0u8; u32::from_le_bytes(prefix) as usize];
        self.read_exact(&mut payload).ok()?;
        Some(payload)
    }

    /// Reads and discards until the client closes (or the read timeout).
    fn linger(&mut self) {
        let mut scratch = [0u8; 4096];
        while matches!(self.read(&mut scratch), Ok(n) if n > 0) {}
    }
}

impl Read for Socket {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.read(buf),
            Socket::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Socket {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Socket::Tcp(s) => s.write(buf),
            Socket::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A request the hostile server read: its header and, for `add`, its arguments.
struct Request {
    header: Header,
    /// The request's number on its connection, from 1.
    number: u64,
    /// `a + b` for an `add` request.
    sum: Option<i64>,
}

/// What the hostile server does after answering a request.
enum Then {
    /// Reads the next request.
    Serve,
    /// Closes the connection.
    Close,
    /// Reads and discards until the client closes.
    Linger,
}

/// `payload` as the socket carries it: its length, then itself.
fn prefixed(payload: &[u8]) -> Vec<u8> {
    let mut bytes = (payload.len() as u32).to_le_bytes().to_vec();
    bytes.extend_from_slice(payload);
    bytes
}

/// The payload of a frame of `kind` for `request` with `body` (postcard-encoded).
fn payload<T: serde::Serialize>(kind: Kind, request: &Request, body: &T) -> Vec<u8> {
    let header = Header {
        kind,
        method: request.header.method,
        call_id: request.header.call_id,
    };
    wire::message_frame(header, None, body)
        .unwrap()
        .payload()
        .to_vec()
}

/// The right answer to an `add` request, as the socket carries it.
fn answer(request: &Request) -> Vec<u8> {
    let sum = request.sum.expect("the hostile server answers only add");
    prefixed(&payload(Kind::Response, request, &sum))
}

/// A server in a thread of this process on a fresh `scheme` address that welcomes one probe
/// client and answers each of its requests with `respond`; its address.
fn hostile(
    scheme: &str,
    dir: &TempDir,
    mut respond: impl FnMut(&mut Socket, &Request) -> Then + Send + 'static,
) -> String {
    let (address, accept): (String, Box<dyn FnOnce() -> Socket + Send>) = match scheme {
        "tcp" => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let address = format!("tcp://{}", listener.local_addr().unwrap());
            (
                address,
                Box::new(move || Socket::Tcp(listener.accept().unwrap().0)),
            )
        }
        "unix" => {
            let path = dir.0.join("hostile.sock");
            let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
            (
                format!("unix://{}", path.display()),
                Box::new(move || Socket::Unix(listener.accept().unwrap().0)),
            )
        }
        other => panic!("no hostile server on {other}"),
    };
    let add = probe_method_id("add");
    std::thread::spawn(move || {
        let mut socket = accept();
        socket.set_timeouts(LIMIT);
        let hello = socket.read_frame().expect("a Hello");
        assert_eq!(Header::parse(&hello).unwrap().header.kind, Kind::Hello);
        let welcome = Welcome {
            max_frame_size: 16 << 20,
            max_in_flight: 64,
            schema_json: ProbeClient::schema().to_json(),
        };
        let header = Header {
            kind: Kind::Welcome,
            method: 0,
            call_id: 0,
        };
        let frame = wire::message_frame(header, None, &welcome).unwrap();
        socket.write_all(&prefixed(frame.payload())).unwrap();
        let mut number = 0;
        while let Some(frame) = socket.read_frame() {
            let parsed = Header::parse(&frame).expect("the client sent a bad frame");
            if parsed.header.kind != Kind::Request {
                continue; // A cancel or a ping: not answered.
            }
            number += 1;
            let sum = (parsed.header.method == add)
                .then(|| wire::decode::<(i64, i64)>(parsed.body, "add").unwrap())
                .map(|(a, b)| a + b);
            let request = Request {
                header: parsed.header,
                number,
                sum,
            };
            match respond(&mut socket, &request) {
                Then::Serve => {}
                Then::Close => return,
                Then::Linger => return socket.linger(),
            }
        }
    });
    address
}

/// Connects to `address` on `runtime`, calls `add(2, 3)` without a timeout of its own, and
/// checks that it fails with `Disconnected` within [`PROMPT`], and that a call after it does
/// too; the first call's error.
fn fails_disconnected(runtime: &tokio::runtime::Runtime, address: &str, what: &str) -> RpcError {
    runtime.block_on(async {
        let probe = bounded("connect", ProbeClient::connect(address))
            .await
            .unwrap_or_else(|e| panic!("{what}: connect: {e}"))
            .with_timeout(Some(Duration::from_secs(600)));
        let started = Instant::now();
        let outcome = bounded(what, probe.add(2, 3)).await;
        let took = started.elapsed();
        assert_disconnected(&outcome, what);
        assert!(took < PROMPT, "{what}: the call failed only after {took:?}");
        let again = bounded(what, probe.add(4, 5)).await;
        assert_disconnected(&again, &format!("{what}, the next call"));
        outcome.unwrap_err()
    })
}

/// Connects to a hostile server on `scheme` that cuts its first reply in the middle and
/// closes; the call's error, once checked to be `Disconnected` and prompt.
fn cut_reply_error(runtime: &tokio::runtime::Runtime, scheme: &str) -> RpcError {
    let dir = TempDir::new();
    let address = hostile(scheme, &dir, |socket, request| {
        let whole = answer(request);
        let _ = socket.write_all(&whole[..whole.len() / 2]);
        Then::Close
    });
    fails_disconnected(runtime, &address, &format!("{scheme}: a cut reply"))
}

/// A reply cut in the middle by a server that then closes: `Disconnected` within a few
/// seconds, and so is the next call.
#[test]
fn a_reply_cut_short_by_a_closing_server_fails_the_call_as_disconnected() {
    let runtime = runtime();
    for scheme in SOCKETS {
        for _ in 0..10 {
            cut_reply_error(&runtime, scheme);
        }
    }
}

/// The same, and the error says why: the stream ended inside a frame, not that the server
/// closed the connection (between frames, as a server that shuts down does).
#[test]
fn a_reply_cut_short_is_reported_as_cut_not_as_a_clean_close() {
    let runtime = runtime();
    for scheme in SOCKETS {
        for round in 0..20 {
            let error = cut_reply_error(&runtime, scheme);
            assert!(
                reason(&error).contains("inside a frame"),
                "{scheme} round {round}: {error}"
            );
        }
    }
}

/// What a hostile server sends instead of the reply to a request.
type Garbage = fn(&Request) -> Vec<u8>;

/// Frames that are not frames, each from a server that then keeps the connection open (so
/// only the garbage can end it): `Disconnected`, saying the server sent a bad frame.
#[test]
fn garbage_instead_of_a_reply_fails_the_call_as_disconnected() {
    let runtime = runtime();
    let garbage: [(&str, Garbage); 4] = [
        ("an unknown frame kind", |_| prefixed(&[0xEE; 32])),
        ("a frame shorter than its header", |_| prefixed(&[5, 0, 0])),
        ("unknown header flags", |request| {
            let mut payload = payload(Kind::Response, request, &request.sum.unwrap());
            payload[1] = 0x80;
            prefixed(&payload)
        }),
        ("an extension longer than the frame", |request| {
            let mut payload = payload(Kind::Response, request, &request.sum.unwrap());
            payload[1] = 1;
            payload.truncate(HEADER_LEN);
            payload.extend_from_slice(&1000u32.to_le_bytes());
            payload.extend_from_slice(&[0; 8]);
            prefixed(&payload)
        }),
    ];
    for scheme in SOCKETS {
        for (what, bytes) in garbage {
            let dir = TempDir::new();
            let address = hostile(scheme, &dir, move |socket, request| {
                let _ = socket.write_all(&bytes(request));
                Then::Linger
            });
            let what = format!("{scheme}: {what}");
            let error = fails_disconnected(&runtime, &address, &what);
            assert!(reason(&error).contains("bad frame"), "{what}: {error}");
        }
    }
}

/// A length prefix announcing a frame of 4 GiB, far over the client's limit, then a few
/// bytes: `Disconnected`, and the client does not wait for (or allocate) the rest.
#[test]
fn an_oversized_frame_announcement_fails_the_call_as_disconnected() {
    let runtime = runtime();
    for scheme in SOCKETS {
        let dir = TempDir::new();
        let address = hostile(scheme, &dir, |socket, _| {
            let _ = socket.write_all(&u32::MAX.to_le_bytes());
            let _ = socket.write_all(&[0xAB; 64]);
            Then::Linger
        });
        let what = format!("{scheme}: a 4 GiB frame announced");
        let error = fails_disconnected(&runtime, &address, &what);
        assert!(
            reason(&error).contains("exceeds") || reason(&error).contains("large"),
            "{what}: {error}"
        );
    }
}

/// A server that shuts down its sending side after reading the request (a half-close: it
/// still reads, so the client's writes succeed): `Disconnected`, not a wait for a reply that
/// cannot come.
#[test]
fn a_server_that_half_closes_fails_the_call_as_disconnected() {
    let runtime = runtime();
    for scheme in SOCKETS {
        let dir = TempDir::new();
        let address = hostile(scheme, &dir, |socket, _| {
            socket.shutdown(Shutdown::Write);
            Then::Linger
        });
        fails_disconnected(&runtime, &address, &format!("{scheme}: a half-close"));
    }
}

/// Half a reply, then the rest only after the call's 200 ms deadline has passed: the call
/// fails with `DeadlineExceeded`, the late reply is dropped, and the next call, whose reply
/// follows it on the socket, gets its own answer.
#[test]
fn a_reply_cut_then_finished_late_times_out_and_leaves_the_connection_usable() {
    let runtime = runtime();
    for scheme in SOCKETS {
        let dir = TempDir::new();
        let address = hostile(scheme, &dir, |socket, request| {
            let whole = answer(request);
            if request.number == 1 {
                let _ = socket.write_all(&whole[..whole.len() / 2]);
                std::thread::sleep(Duration::from_millis(600));
                let _ = socket.write_all(&whole[whole.len() / 2..]);
            } else {
                let _ = socket.write_all(&whole);
            }
            Then::Serve
        });
        runtime.block_on(async {
            let probe = bounded("connect", ProbeClient::connect(&address))
                .await
                .unwrap();
            let outcome = bounded(
                "a call whose reply is cut",
                probe
                    .with_timeout(Some(Duration::from_millis(200)))
                    .add(1, 1),
            )
            .await;
            assert!(
                matches!(outcome, Err(RpcError::DeadlineExceeded { .. })),
                "{scheme}: {outcome:?}"
            );
            for i in 0..20 {
                let sum = bounded("a call after the cut reply", probe.add(i, 100)).await;
                assert_eq!(sum.unwrap(), i + 100, "{scheme}: call {i} after the cut");
            }
        });
    }
}

/// A reply whose header is right but whose body is not an `i64` (an overlong varint; trailing
/// bytes): that call fails with `Decode`, and the connection goes on serving.
#[test]
fn a_reply_that_does_not_decode_fails_only_its_own_call() {
    let runtime = runtime();
    for scheme in SOCKETS {
        let dir = TempDir::new();
        let address = hostile(scheme, &dir, |socket, request| {
            let bytes = match request.number {
                1 => {
                    let mut payload = payload(Kind::Response, request, &());
                    payload.extend_from_slice(&[0xFF; 11]);
                    prefixed(&payload)
                }
                2 => {
                    let mut payload = payload(Kind::Response, request, &request.sum.unwrap());
                    payload.extend_from_slice(&[1, 2, 3]);
                    prefixed(&payload)
                }
                _ => answer(request),
            };
            let _ = socket.write_all(&bytes);
            Then::Serve
        });
        runtime.block_on(async {
            let probe = bounded("connect", ProbeClient::connect(&address))
                .await
                .unwrap();
            for what in ["an overlong varint", "trailing bytes"] {
                let outcome = bounded(what, probe.add(1, 2)).await;
                assert!(
                    matches!(outcome, Err(RpcError::Decode { .. })),
                    "{scheme}: {what}: {outcome:?}"
                );
            }
            for i in 0..20 {
                let sum = bounded("a call after bad replies", probe.add(i, 7)).await;
                assert_eq!(sum.unwrap(), i + 7, "{scheme}: call {i} after bad replies");
            }
        });
    }
}

/// Replies written a byte at a time, 2 ms apart (so every look finds part of a frame), with a
/// reply to a call that does not exist before each: every call gets its own answer.
#[test]
fn replies_dribbled_byte_by_byte_after_stray_ones_are_read_whole() {
    let runtime = runtime();
    for scheme in SOCKETS {
        let dir = TempDir::new();
        let address = hostile(scheme, &dir, |socket, request| {
            let stray = Request {
                header: Header {
                    call_id: request.header.call_id + 1_000_000,
                    ..request.header
                },
                number: 0,
                sum: Some(-1),
            };
            let bytes = [answer(&stray), answer(request)].concat();
            for byte in bytes {
                if socket.write_all(&[byte]).is_err() {
                    return Then::Close;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Then::Serve
        });
        runtime.block_on(async {
            let probe = bounded("connect", ProbeClient::connect(&address))
                .await
                .unwrap();
            for i in 0..5 {
                let sum = bounded("a dribbled reply", probe.add(i, 1000)).await;
                assert_eq!(sum.unwrap(), i + 1000, "{scheme}: dribbled call {i}");
            }
            // Concurrent callers, whose replies dribble in one after another.
            let callers: Vec<_> = (0..4)
                .map(|i| {
                    let probe = probe.clone();
                    tokio::spawn(async move { probe.add(i, 2000).await })
                })
                .collect();
            for (i, caller) in callers.into_iter().enumerate() {
                let sum = bounded("a concurrent dribbled reply", caller)
                    .await
                    .unwrap();
                assert_eq!(sum.unwrap(), i as i64 + 2000, "{scheme}: concurrent {i}");
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// 4. Calls that time out.

/// Calls to slow handlers (one that sleeps 40 ms, one that computes 30 ms without yielding)
/// with a 10 ms deadline fail with `DeadlineExceeded`; their late replies then land while the
/// next calls read the connection, and those calls still get their own answers. Five tasks do
/// this at once on two workers, so a caller often times out while it holds the connection.
#[test]
fn timed_out_calls_do_not_wedge_the_direct_reader() {
    for scheme in SCHEMES {
        timed_out_calls_do_not_wedge(scheme);
    }
}

fn timed_out_calls_do_not_wedge(scheme: &str) {
    let dir = TempDir::new();
    let (_server, address) = Process::serve_fresh(scheme, &dir);
    let runtime = runtime();
    runtime.block_on(async {
        let probe = ProbeClient::connect(&address)
            .await
            .unwrap()
            .with_timeout(Some(Duration::from_secs(10)));
        let tasks: Vec<_> = (0..5u64)
            .map(|task| {
                let probe = probe.clone();
                tokio::spawn(async move {
                    let hasty = probe.with_timeout(Some(Duration::from_millis(10)));
                    for round in 0..15u64 {
                        let outcome = if round % 3 == 2 {
                            hasty.spin(30).await.map(drop)
                        } else {
                            hasty.tag(round, 40).await.map(drop)
                        };
                        if !matches!(outcome, Err(RpcError::DeadlineExceeded { .. })) {
                            return Err(format!("task {task} round {round}: {outcome:?}"));
                        }
                        // Calls while the late reply comes in.
                        let until = Instant::now() + Duration::from_millis(60);
                        let mut i = 0i64;
                        while Instant::now() < until {
                            let (a, b) = ((task * 100 + round) as i64, i);
                            match probe.add(a, b).await {
                                Ok(sum) if sum == a + b => {}
                                other => {
                                    return Err(format!(
                                        "task {task} round {round} call {i}: {other:?}"
                                    ));
                                }
                            }
                            i += 1;
                        }
                        let id = task << 32 | round;
                        match probe.tag(id, 0).await {
                            Ok(got) if got == id => {}
                            other => return Err(format!("task {task} tag {id}: {other:?}")),
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        bounded(&format!("{scheme}: timed-out calls"), async {
            for task in tasks {
                if let Err(e) = task.await.unwrap() {
                    panic!("{scheme}: {e}");
                }
            }
        })
        .await;
        bounded(&format!("{scheme}: calls after the timeouts"), async {
            for i in 0..500 {
                assert_eq!(probe.add(i, i).await.unwrap(), 2 * i, "{scheme}: call {i}");
            }
        })
        .await;
    });
}

/// Sends SIGCONT to a stopped process when dropped, even if the test fails.
struct Continue(nix::unistd::Pid);

impl Drop for Continue {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(self.0, nix::sys::signal::Signal::SIGCONT);
    }
}

/// Whether every thread of process `pid` is stopped (state `T` in `/proc`).
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.filter_map(Result::ok).all(|task| {
        std::fs::read_to_string(task.path().join("stat")).is_ok_and(|stat| {
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            state == Some(Some('T'))
        })
    })
}

/// A server frozen with SIGSTOP (its connection open, nothing answered): three callers with a
/// 200 ms deadline fail with `DeadlineExceeded` (not `Disconnected`, not a hang); once it is
/// resumed the next calls are answered, as are the requests it finds waiting.
#[test]
fn calls_to_a_frozen_server_time_out_and_calls_after_it_resumes_succeed() {
    for scheme in SCHEMES {
        calls_to_a_frozen_server(scheme);
    }
}

fn calls_to_a_frozen_server(scheme: &str) {
    use nix::sys::signal::{Signal, kill};
    let dir = TempDir::new();
    let (server, address) = Process::serve_fresh(scheme, &dir);
    let pid = nix::unistd::Pid::from_raw(server.pid() as i32);
    let runtime = runtime();
    runtime.block_on(async {
        let probe = ProbeClient::connect(&address).await.unwrap();
        assert_eq!(bounded("a first call", probe.add(1, 1)).await.unwrap(), 2);
        kill(pid, Signal::SIGSTOP).unwrap();
        let resume = Continue(pid);
        // The signal is delivered asynchronously: a server thread spinning on another CPU could
        // still answer. Wait until every thread of it is stopped.
        assert!(
            wait_until(LIMIT, || all_threads_stopped(server.pid())),
            "{scheme}: the server did not stop"
        );
        let hasty = probe.with_timeout(Some(Duration::from_millis(200)));
        let callers: Vec<_> = (0..3i64)
            .map(|i| {
                let hasty = hasty.clone();
                tokio::spawn(async move { hasty.add(i, i).await })
            })
            .collect();
        for caller in callers {
            let outcome = bounded("a call to a frozen server", caller).await.unwrap();
            assert!(
                matches!(outcome, Err(RpcError::DeadlineExceeded { .. })),
                "{scheme}: {outcome:?}"
            );
        }
        // A call made while it is frozen, answered once it resumes.
        let patient = tokio::spawn({
            let probe = probe.with_timeout(Some(Duration::from_secs(20)));
            async move { probe.add(40, 2).await }
        });
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(resume);
        assert_eq!(
            bounded("a call made while frozen", patient)
                .await
                .unwrap()
                .unwrap(),
            42,
            "{scheme}"
        );
        let probe = probe.with_timeout(Some(Duration::from_secs(10)));
        bounded(&format!("{scheme}: calls after the resume"), async {
            for i in 0..200 {
                let sum = probe.add(i, 3).await;
                assert_eq!(
                    sum.as_ref().ok(),
                    Some(&(i + 3)),
                    "{scheme}: call {i}: {sum:?}"
                );
            }
        })
        .await;
    });
}
