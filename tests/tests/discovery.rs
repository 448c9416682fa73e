//! `dns+tcp://` on one machine, through the system's resolver (`/etc/hosts` names
//! `localhost`): the address forms, errors, and calls. Spreading over replicas, a replica
//! killed, added and removed are tested against a real DNS server across network namespaces
//! (`cross_host_dns.rs`).

use std::time::Duration;

use rpc_core::{ClientOptions, RpcError, Server};
use rpc_tests::{ProbeClient, ProbeImpl, ProbeServer};

#[tokio::test]
async fn a_dns_name_connects_and_serves_calls() {
    let handle = Server::new()
        .start(
            ProbeServer::new(ProbeImpl::default()),
            &["tcp://127.0.0.1:0"],
        )
        .await
        .unwrap();
    let port = handle
        .local_address()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let probe = ProbeClient::connect(&format!("dns+tcp://localhost:{port}"))
        .await
        .expect("connect through DNS");
    for i in 0..20 {
        assert_eq!(probe.add(i, 1).await.unwrap(), i + 1);
    }
    assert_eq!(probe.client().connected_servers(), 1);
    assert!(!probe.client().is_closed());
    handle.shutdown().await;
}

#[tokio::test]
async fn bad_dns_addresses_are_refused_with_typed_errors() {
    for bad in [
        "dns+tcp://localhost",
        "dns+tcp://localhost:0",
        "dns+udp://localhost:7000",
        "dns+tcp://:7000",
    ] {
        let refused = ProbeClient::connect(bad).await;
        assert!(
            matches!(refused, Err(RpcError::Address(_))),
            "{bad}: {refused:?}"
        );
    }
}

#[test]
fn a_blocking_client_refuses_dns_addresses_and_says_why() {
    let refused = rpc_tests::ProbeBlockingClient::connect("dns+tcp://localhost:7000");
    match refused {
        Err(RpcError::Address(error)) => {
            assert!(error.to_string().contains("ProbeClient"), "{error}")
        }
        other => panic!("expected an address error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_name_without_servers_fails_to_connect() {
    // A port nothing listens on.
    let unused = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = unused.local_addr().unwrap().port();
    drop(unused);
    let options = ClientOptions::default().connect_timeout(Duration::from_secs(3));
    let refused = ProbeClient::connect_with(&format!("dns+tcp://localhost:{port}"), options).await;
    assert!(
        matches!(refused, Err(RpcError::Connect { .. })),
        "{refused:?}"
    );
}

#[tokio::test]
async fn a_name_that_does_not_resolve_fails_with_resolve() {
    let options = ClientOptions::default().connect_timeout(Duration::from_secs(3));
    let refused =
        ProbeClient::connect_with("dns+tcp://no-such-replica.invalid:7000", options).await;
    assert!(
        matches!(refused, Err(RpcError::Resolve { .. })),
        "{refused:?}"
    );
}

/// `dns+tls://NAME:PORT` verifies each replica's certificate for NAME, not for the address it
/// resolved to: a certificate naming only `localhost` is accepted for `dns+tls://localhost`
/// (whose replica is 127.0.0.1), and one naming another host is refused.
#[tokio::test]
async fn dns_tls_verifies_replicas_for_the_name() {
    use rpc_core::{TlsClientSettings, TlsServerSettings};
    use rpc_tests::TestPki;
    use rpc_tests::pki::Validity;

    let pki = TestPki::new();
    let serve = |names: &[&str], file: &str| {
        let pair = pki.issue_server(file, names, Validity::Current);
        TlsServerSettings::from_pem_files(&pair.certificate, &pair.key).unwrap()
    };
    let client_options = || {
        ClientOptions::default()
            .connect_timeout(Duration::from_secs(5))
            .transport_setting(TlsClientSettings::from_ca_file(pki.ca_file()).unwrap())
    };
    // A certificate for the name only (no IP address in it).
    let handle = Server::new()
        .transport_setting(serve(&["localhost"], "name-only"))
        .start(
            ProbeServer::new(ProbeImpl::default()),
            &["tls://127.0.0.1:0"],
        )
        .await
        .unwrap();
    let port = handle
        .local_address()
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let probe = ProbeClient::connect_with(&format!("dns+tls://localhost:{port}"), client_options())
        .await
        .expect("the certificate names localhost");
    assert_eq!(probe.add(40, 2).await.unwrap(), 42);
    // The same replica by its address fails: the certificate does not name 127.0.0.1.
    let by_address =
        ProbeClient::connect_with(&format!("tls://127.0.0.1:{port}"), client_options()).await;
    assert!(by_address.is_err(), "{by_address:?}");
    handle.shutdown().await;

    // A certificate for another host is refused through the name as well.
    let other = Server::new()
        .transport_setting(serve(&["other.test"], "other"))
        .start(
            ProbeServer::new(ProbeImpl::default()),
            &["tls://127.0.0.1:0"],
        )
        .await
        .unwrap();
    let port = other.local_address().rsplit(':').next().unwrap().to_owned();
    let refused =
        ProbeClient::connect_with(&format!("dns+tls://localhost:{port}"), client_options()).await;
    match refused {
        Err(RpcError::Connect { source, .. }) => {
            assert!(source.to_string().contains("localhost"), "{source}")
        }
        other => panic!("expected a refused certificate, got {other:?}"),
    }
    other.shutdown().await;
}
