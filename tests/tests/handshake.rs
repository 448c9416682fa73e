//! The handshake refuses a client built from another service, or from another version of the
//! same service, at `connect`, naming what differs.

use idl_examples::CalculatorClient;
use rpc_core::{RpcError, Server};
use rpc_tests::{Fixture, ProbeClient, Transport};

/// A `Probe` as an older client might have it: `add` on `i32`, no `fill`, a method the server
/// lacks.
mod old {
    #[rpc_core::service]
    pub trait Probe {
        async fn echo(&self, data: Vec<u8>) -> Vec<u8>;
        async fn add(&self, a: i32, b: i32) -> i32;
        async fn tag(&self, id: u64, delay_ms: u64) -> u64;
        async fn reset(&self);
    }
}

#[tokio::test]
async fn same_service_with_other_methods_is_refused_with_each_difference() {
    let fixture = Fixture::start(Transport::Tcp, Server::new()).await;
    let error = old::ProbeClient::connect(&fixture.address)
        .await
        .unwrap_err();
    let RpcError::HandshakeMismatch {
        service,
        differences,
    } = &error
    else {
        panic!("expected HandshakeMismatch, got {error:?}");
    };
    assert_eq!(service, "Probe");
    for expected in [
        "method 'add': client has (i32, i32) -> i32, server has (i64, i64) -> i64",
        "method 'reset' is missing on the server",
        "method 'fill' is missing on the client",
    ] {
        assert!(
            differences.iter().any(|d| d == expected),
            "{expected:?} not in {differences:?}"
        );
    }
    let message = error.to_string();
    assert!(
        message.contains("'Probe'") && message.contains("'add'"),
        "{message}"
    );
    // The server is unharmed.
    let probe = ProbeClient::connect(&fixture.address).await.unwrap();
    assert_eq!(probe.add(1, 2).await.unwrap(), 3);
}

#[tokio::test]
async fn another_service_is_refused_by_name() {
    let fixture = Fixture::start(Transport::Unix, Server::new()).await;
    let error = CalculatorClient::connect(&fixture.address)
        .await
        .unwrap_err();
    match &error {
        RpcError::HandshakeMismatch {
            service,
            differences,
        } => {
            assert_eq!(service, "Calculator");
            assert_eq!(
                differences[0],
                "the server exports 'Probe', not 'Calculator'"
            );
        }
        other => panic!("expected HandshakeMismatch, got {other:?}"),
    }
}

#[tokio::test]
async fn unsupported_and_malformed_addresses_are_typed_errors() {
    for address in ["carrier-pigeon://x", "tcp://nohost", "unix://relative"] {
        let error = ProbeClient::connect(address).await.unwrap_err();
        assert!(
            matches!(error, RpcError::Address(_)),
            "{address}: {error:?}"
        );
    }
    let error = Server::new()
        .start(
            rpc_tests::ProbeServer::new(rpc_tests::ProbeImpl::default()),
            &["bogus"],
        )
        .await
        .unwrap_err();
    assert!(error.to_string().contains("supported forms"), "{error}");
}

#[tokio::test]
async fn connecting_to_nobody_fails_fast_with_connect() {
    let dir = rpc_tests::TempDir::new();
    let address = format!("unix://{}/nobody.sock", dir.0.display());
    let error = ProbeClient::connect(&address).await.unwrap_err();
    assert!(matches!(error, RpcError::Connect { .. }), "{error:?}");
    let error = ProbeClient::connect("mem://nobody-listens")
        .await
        .unwrap_err();
    assert!(matches!(error, RpcError::Connect { .. }), "{error:?}");
}
