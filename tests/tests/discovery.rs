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
