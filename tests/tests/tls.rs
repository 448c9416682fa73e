//! `tls://` with certificates made at run time ([`TestPki`]): calls over a good chain, the
//! identities each side sees, the blocking client, and clients that never finish (or never
//! start) a TLS handshake. Refused certificates are in `tls_refusals.rs`.

use std::io::Write;
use std::time::Duration;

use rpc_core::transport::{Frame, PeerInfo, TransportConfig};
use rpc_core::{ClientOptions, Context, Server, ServerHandle};
use rpc_tests::pki::{CLIENT_NAME, CLIENT_SAN, SERVER_NAMES};
use rpc_tests::{GreeterBlockingClient, GreeterImpl, GreeterServer, TestPki, bounded, eventually};
use serde::{Deserialize, Serialize};

const LIMIT: Duration = Duration::from_secs(20);

/// What a handler saw of its caller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    /// Whether the caller came over TLS.
    pub tls: bool,
    /// The subject of the caller's certificate, if it presented one.
    pub subject: Option<String>,
    /// Its subject alternative names.
    pub sans: Vec<String>,
}

/// Tells callers who they are, as the server sees them.
#[rpc_core::service]
pub trait Whoami {
    /// The caller, as `Context::peer` describes it.
    async fn whoami(&self) -> Seen;
}

#[derive(Clone)]
struct WhoamiImpl;

impl Whoami for WhoamiImpl {
    async fn whoami(&self) -> Seen {
        let context = Context::current().expect("a handler has a context");
        let certificate = context.peer_certificate();
        Seen {
            tls: matches!(*context.peer, PeerInfo::Tls { .. }),
            subject: certificate.map(|c| c.subject.clone()),
            sans: certificate
                .map(|c| c.subject_alt_names.clone())
                .unwrap_or_default(),
        }
    }
}

/// A whoami and greeter server on `tls://127.0.0.1:0` with `server`'s settings, and the
/// address to reach it by the name `localhost`.
async fn start(server: Server) -> (ServerHandle, String) {
    let handle = server
        .add(WhoamiServer::new(WhoamiImpl))
        .add(GreeterServer::new(GreeterImpl))
        .listen(&["tls://127.0.0.1:0"])
        .await
        .expect("start a tls server");
    let address = handle.local_address().replace("127.0.0.1", "localhost");
    (handle, address)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_a_good_chain_works_and_the_handler_sees_a_tls_peer() {
    let pki = TestPki::new();
    let (handle, address) = start(Server::new().transport_setting(pki.server_settings())).await;
    let options = ClientOptions::default().transport_setting(pki.client_settings());
    let client = bounded(
        LIMIT,
        "connect",
        WhoamiClient::connect_with(&address, options),
    )
    .await
    .expect("connect over tls");
    let seen = bounded(LIMIT, "whoami", client.whoami()).await.unwrap();
    assert_eq!(
        seen,
        Seen {
            tls: true,
            subject: None,
            sans: vec![]
        },
        "without mutual TLS the handler sees a TLS peer with no certificate"
    );
    // By IP address too: the certificate has 127.0.0.1 as an IP SAN.
    let by_ip = handle.local_address();
    let options = ClientOptions::default().transport_setting(pki.client_settings());
    let client = bounded(
        LIMIT,
        "connect by IP",
        WhoamiClient::connect_with(&by_ip, options),
    )
    .await
    .expect("connect to an IP address named in the certificate");
    assert!(client.whoami().await.unwrap().tls);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_mutual_tls_the_handler_sees_the_client_subject_and_sans() {
    let pki = TestPki::new();
    let (handle, address) =
        start(Server::new().transport_setting(pki.mtls_server_settings())).await;
    let options = ClientOptions::default().transport_setting(pki.mtls_client_settings());
    let client = bounded(
        LIMIT,
        "connect",
        WhoamiClient::connect_with(&address, options),
    )
    .await
    .expect("connect with a client certificate");
    let seen = bounded(LIMIT, "whoami", client.whoami()).await.unwrap();
    assert_eq!(
        seen,
        Seen {
            tls: true,
            subject: Some(format!("CN={CLIENT_NAME},O=rpc tests")),
            sans: vec![CLIENT_SAN.to_owned()],
        }
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_side_of_a_transport_connection_sees_the_other() {
    let pki = TestPki::new();
    let server_config = TransportConfig::default().with_setting(pki.mtls_server_settings());
    let listener =
        rpc_core::transport::Listener::bind(&"tls://127.0.0.1:0".parse().unwrap(), &server_config)
            .await
            .unwrap();
    let address: rpc_core::Address = listener
        .local_address()
        .to_string()
        .replace("127.0.0.1", "localhost")
        .parse()
        .unwrap();
    let client_config = TransportConfig::default().with_setting(pki.mtls_client_settings());
    let (client, server) = bounded(LIMIT, "connect and accept", async {
        tokio::join!(
            rpc_core::transport::connect(&address, &client_config),
            listener.accept()
        )
    })
    .await;
    let (mut client, mut server) = (client.unwrap(), server.unwrap());

    let PeerInfo::Tls { certificate, .. } = client.peer() else {
        panic!("a tls client's peer is PeerInfo::Tls: {:?}", client.peer());
    };
    let certificate = certificate
        .as_ref()
        .expect("the server presented a certificate");
    assert_eq!(certificate.subject, "CN=rpc test server");
    assert_eq!(certificate.subject_alt_names, SERVER_NAMES);
    let PeerInfo::Tls { addr, certificate } = server.peer() else {
        panic!("a tls server's peer is PeerInfo::Tls: {:?}", server.peer());
    };
    assert!(addr.ip().is_loopback());
    assert_eq!(
        certificate.as_ref().map(|c| c.subject.as_str()),
        Some("CN=test client,O=rpc tests")
    );

    // Frames of several sizes cross both ways whole (the TLS stream is flushed per send).
    for size in [0usize, 1, 1000, 100_000, 1 << 20] {
        let payload = vec![(size % 251) as u8; size];
        bounded(LIMIT, "send", client.send(Frame::from_payload(&payload)))
            .await
            .unwrap();
        let got = bounded(LIMIT, "recv", server.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.payload(), &payload[..]);
        bounded(LIMIT, "send back", server.send(got)).await.unwrap();
        let back = bounded(LIMIT, "recv back", client.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(back.payload().len(), size);
    }
    let (mut sender, receiver, _) = client.split();
    sender.close().await.unwrap();
    let (_, mut server_receiver, _) = server.split();
    assert!(
        bounded(LIMIT, "end", server_receiver.recv())
            .await
            .unwrap()
            .is_none(),
        "a closed sending side reads as the end on the other side"
    );
    // A peer that left is seen without reading (a server that stopped reading a connection
    // lets go of it so).
    drop((sender, receiver));
    assert!(eventually(LIMIT, || server_receiver.peer_gone()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_blocking_client_works_over_tls() {
    let pki = TestPki::new();
    let (handle, address) = start(Server::new().transport_setting(pki.server_settings())).await;
    let settings = pki.client_settings();
    let (done, result) = std::sync::mpsc::channel();
    // A plain thread: a blocking tls:// client drives a runtime of its own.
    std::thread::spawn(move || {
        let outcome = (|| {
            let options = ClientOptions::default().transport_setting(settings);
            let client = GreeterBlockingClient::connect_with(&address, options)?;
            let first = client.greet("blocking".into())?;
            let second = client.greet("again".into())?;
            Ok::<_, rpc_core::RpcError>((first, second))
        })();
        let _ = done.send(outcome.map_err(|e| e.to_string()));
    });
    let answer = tokio::task::spawn_blocking(move || result.recv_timeout(LIMIT))
        .await
        .unwrap()
        .expect("the blocking client finished in time");
    assert_eq!(
        answer.unwrap(),
        ("hello, blocking".to_owned(), "hello, again".to_owned())
    );

    // Inside a runtime it refuses at once, saying what to do instead.
    let options = ClientOptions::default().transport_setting(pki.client_settings());
    let address = handle.local_address();
    let refused = tokio::task::spawn_blocking(move || {
        GreeterBlockingClient::connect_with(&address, options)
            .err()
            .map(|e| e.to_string())
    })
    .await
    .unwrap()
    .expect("a blocking tls:// client inside a runtime is refused");
    assert!(refused.contains("runs a runtime of its own"), "{refused}");
    assert!(refused.contains("std::thread"), "{refused}");
    handle.shutdown().await;
}

/// Connects a raw TCP socket to `address` (`tls://HOST:PORT`).
fn raw_tcp(address: &str) -> std::net::TcpStream {
    let target = address.trim_start_matches("tls://");
    std::net::TcpStream::connect(target).expect("raw tcp connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_connections_do_not_block_a_real_client() {
    let pki = TestPki::new();
    let server = Server::new().transport_setting(
        rpc_core::TlsServerSettings::builder()
            .certificate_file(&pki.server().certificate)
            .key_file(&pki.server().key)
            .handshake_timeout(Duration::from_secs(30))
            .build()
            .unwrap(),
    );
    let (handle, address) = start(server).await;
    // Clients that connect and say nothing: each holds a handshake open for 30 s.
    let silent: Vec<_> = (0..8).map(|_| raw_tcp(&handle.local_address())).collect();
    let options = ClientOptions::default()
        .transport_setting(pki.client_settings())
        .connect_timeout(Duration::from_secs(5));
    let started = std::time::Instant::now();
    let client = bounded(
        LIMIT,
        "connect",
        WhoamiClient::connect_with(&address, options),
    )
    .await
    .expect("a real client connects while silent ones wait");
    assert!(client.whoami().await.unwrap().tls);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the real client waited {:?}",
        started.elapsed()
    );
    drop(silent);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_instead_of_a_client_hello_does_not_hurt_the_server() {
    let pki = TestPki::new();
    let (handle, address) = start(Server::new().transport_setting(pki.server_settings())).await;
    let local = handle.local_address();
    let closed_by_server = tokio::task::spawn_blocking(move || {
        let mut outcomes = Vec::new();
        for garbage in [
            &b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            &[0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3][..],
            &[0u8; 4096][..],
        ] {
            let mut socket = raw_tcp(&local);
            socket
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            let _ = socket.write_all(garbage);
            let mut buf = [0u8; 512];
            // The server answers with an alert at most, then closes: reads end, never hang.
            let mut ended = false;
            for _ in 0..16 {
                match std::io::Read::read(&mut socket, &mut buf) {
                    Ok(0) | Err(_) => {
                        ended = true;
                        break;
                    }
                    Ok(_) => {}
                }
            }
            outcomes.push(ended);
        }
        outcomes
    })
    .await
    .unwrap();
    assert_eq!(closed_by_server, [true, true, true]);
    let options = ClientOptions::default().transport_setting(pki.client_settings());
    let client = bounded(
        LIMIT,
        "connect",
        WhoamiClient::connect_with(&address, options),
    )
    .await
    .expect("the server still serves real clients");
    assert!(client.whoami().await.unwrap().tls);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_finishes_its_handshake_is_dropped_after_the_timeout() {
    let pki = TestPki::new();
    let server = Server::new().transport_setting(
        rpc_core::TlsServerSettings::builder()
            .certificate_file(&pki.server().certificate)
            .key_file(&pki.server().key)
            .handshake_timeout(Duration::from_millis(300))
            .build()
            .unwrap(),
    );
    let (handle, _) = start(server).await;
    let local = handle.local_address();
    let waited = tokio::task::spawn_blocking(move || {
        let mut socket = raw_tcp(&local);
        socket
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let started = std::time::Instant::now();
        let mut byte = [0u8; 1];
        let ended = matches!(std::io::Read::read(&mut socket, &mut byte), Ok(0) | Err(_));
        (ended, started.elapsed())
    })
    .await
    .unwrap();
    assert!(waited.0, "the server closed the silent connection");
    assert!(
        waited.1 < Duration::from_secs(5),
        "closed after {:?}, not after the 300 ms handshake timeout",
        waited.1
    );
    handle.shutdown().await;
}
