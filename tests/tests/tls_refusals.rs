//! `tls://` refusals, each with an error that names the cause: a server certificate from an
//! unknown CA, expired, or for another host; under mutual TLS a client without a certificate,
//! or with one from another CA, refused on both sides (the client's error, the server's log)
//! while the server goes on serving others; settings that are missing or unreadable.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use rpc_core::transport::TransportError;
use rpc_core::{ClientOptions, RpcError, Server, ServerHandle, TlsClientSettings};
use rpc_tests::pki::Validity;
use rpc_tests::{GreeterClient, GreeterImpl, GreeterServer, TestPki, bounded, eventually};

const LIMIT: Duration = Duration::from_secs(20);

/// Everything this test process logged (every test shares it: assertions look for text only
/// one test causes).
fn log() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOG.get_or_init(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || SharedWriter(writer.clone()))
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
        buffer
    })
    .clone()
}

struct SharedWriter(Arc<Mutex<Vec<u8>>>);

impl Write for SharedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Whether the log shows, within a few seconds, a line holding every one of `parts`.
async fn logged(parts: &[&str]) -> bool {
    let log = log();
    eventually(Duration::from_secs(5), || {
        let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
        text.lines()
            .any(|line| parts.iter().all(|p| line.contains(p)))
    })
    .await
}

/// A greeter on `tls://127.0.0.1:0` with `server`'s settings; the address by `localhost`.
async fn start(server: Server) -> (ServerHandle, String) {
    log();
    let handle = server
        .start(GreeterServer::new(GreeterImpl), &["tls://127.0.0.1:0"])
        .await
        .expect("start a tls server");
    let address = handle.local_address().replace("127.0.0.1", "localhost");
    (handle, address)
}

/// Connects with `settings` and returns the error's text, checking that it is a connect
/// failure carrying [`TransportError::Tls`].
async fn refused(address: &str, settings: TlsClientSettings) -> String {
    let options = ClientOptions::default().transport_setting(settings);
    let error = bounded(
        LIMIT,
        "connect",
        GreeterClient::connect_with(address, options),
    )
    .await
    .expect_err("the connection is refused");
    match &error {
        RpcError::Connect {
            address: named,
            source: TransportError::Tls { .. },
        } => assert_eq!(named, address, "the error names the address given"),
        other => panic!("expected a TLS connect error, got {other:?}"),
    }
    error.to_string()
}

/// Whether a client with `settings` can call the server at `address`.
async fn serves(address: &str, settings: TlsClientSettings) -> bool {
    let options = ClientOptions::default().transport_setting(settings);
    let client = bounded(
        LIMIT,
        "connect",
        GreeterClient::connect_with(address, options),
    )
    .await
    .expect("connect");
    client.greet("again".into()).await.unwrap() == "hello, again"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_from_an_unknown_ca_is_refused() {
    let pki = TestPki::new();
    let stranger = TestPki::new();
    let (handle, address) = start(Server::new().transport_setting(pki.server_settings())).await;
    let text = refused(&address, stranger.client_settings()).await;
    assert!(text.contains("not signed by a trusted CA"), "{text}");
    // The server logs that the client refused its certificate, and goes on.
    assert!(logged(&["TLS handshake failed", "refused this server's certificate"]).await);
    assert!(serves(&address, pki.client_settings()).await);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_server_certificate_is_refused() {
    let pki = TestPki::new();
    let expired = pki.issue_server("expired", &["localhost"], Validity::Expired);
    let settings =
        rpc_core::TlsServerSettings::from_pem_files(&expired.certificate, &expired.key).unwrap();
    let (handle, address) = start(Server::new().transport_setting(settings)).await;
    let text = refused(&address, pki.client_settings()).await;
    assert!(text.contains("server's certificate has expired"), "{text}");
    assert!(
        text.contains("2020"),
        "the error gives the end of validity: {text}"
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_certificate_for_another_host_is_refused() {
    let pki = TestPki::new();
    let other = pki.issue_server("other", &["other.test"], Validity::Current);
    let settings =
        rpc_core::TlsServerSettings::from_pem_files(&other.certificate, &other.key).unwrap();
    let (handle, address) = start(Server::new().transport_setting(settings)).await;
    let text = refused(&address, pki.client_settings()).await;
    assert!(
        text.contains("certificate for 'other.test' is not valid for 'localhost'"),
        "{text}"
    );
    // The name to verify can be given instead of the address's host.
    let renamed = TlsClientSettings::builder()
        .ca_file(pki.ca_file())
        .server_name("other.test")
        .build()
        .unwrap();
    assert!(serves(&address, renamed).await);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_client_without_a_certificate_on_both_sides() {
    let pki = TestPki::new();
    let (handle, address) =
        start(Server::new().transport_setting(pki.mtls_server_settings())).await;
    let text = refused(&address, pki.client_settings()).await;
    assert!(
        text.contains("the server requires a client certificate"),
        "{text}"
    );
    assert!(text.contains("presented none"), "{text}");
    assert!(
        logged(&[
            "TLS handshake failed",
            "the client presented no certificate"
        ])
        .await,
        "the server logs why it refused"
    );
    // Others are still served.
    assert!(serves(&address, pki.mtls_client_settings()).await);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_a_client_certificate_from_another_ca() {
    let pki = TestPki::new();
    let stranger = TestPki::new();
    let (handle, address) =
        start(Server::new().transport_setting(pki.mtls_server_settings())).await;
    // Trusts the server's CA, but presents a certificate the server's client CA did not sign.
    let text = refused(&address, pki.client_settings_with(stranger.client())).await;
    assert!(
        text.contains("the server refused this client's certificate (unknown CA"),
        "{text}"
    );
    assert!(
        logged(&[
            "TLS handshake failed",
            "not signed by the CA this server trusts for clients"
        ])
        .await
    );
    assert!(serves(&address, pki.mtls_client_settings()).await);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_refuses_an_expired_client_certificate() {
    let pki = TestPki::new();
    let (handle, address) =
        start(Server::new().transport_setting(pki.mtls_server_settings())).await;
    let expired = pki.issue_client("old-client", "old client", Validity::Expired);
    let text = refused(&address, pki.client_settings_with(&expired)).await;
    assert!(
        text.contains("the server refused this client's certificate (certificate expired"),
        "{text}"
    );
    assert!(
        logged(&[
            "TLS handshake failed",
            "the client's certificate has expired"
        ])
        .await
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_listener_without_settings_says_what_it_needs() {
    let error = Server::new()
        .start(GreeterServer::new(GreeterImpl), &["tls://127.0.0.1:0"])
        .await
        .expect_err("a tls:// listener needs a certificate");
    let text = error.to_string();
    assert!(
        text.contains("needs TlsServerSettings: certificate and key"),
        "{text}"
    );
}

#[test]
fn unreadable_settings_name_the_file() {
    let pki = TestPki::new();
    let missing = pki.ca_file().with_file_name("missing.pem");
    let text = rpc_core::TlsServerSettings::from_pem_files(&missing, &pki.server().key)
        .unwrap_err()
        .to_string();
    assert!(text.contains(&*missing.to_string_lossy()), "{text}");
    assert!(text.contains("certificate file"), "{text}");

    // A key that belongs to another certificate.
    let text =
        rpc_core::TlsServerSettings::from_pem_files(&pki.server().certificate, &pki.client().key)
            .unwrap_err()
            .to_string();
    assert!(
        text.contains("does not belong to the certificate"),
        "{text}"
    );

    // A key file given as the CA.
    let text = TlsClientSettings::from_ca_file(&pki.server().key)
        .unwrap_err()
        .to_string();
    assert!(text.contains("holds no PEM certificate"), "{text}");
}
