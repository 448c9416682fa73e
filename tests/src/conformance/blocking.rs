//! The blocking client's conformance bodies, called from plain threads with no runtime,
//! against a server on a runtime of its own.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crate::{Fixture, ProbeBlockingClient, ProbeError, Transport};
use rpc_core::{ClientOptions, RpcError, Server};

/// Every call in this suite gives up after this long, so nothing can hang.
const LIMIT: Duration = Duration::from_secs(20);

struct Setup {
    runtime: tokio::runtime::Runtime,
    fixture: Option<Fixture>,
}

impl Setup {
    fn new(transport: Transport, server: Server) -> Setup {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let fixture = runtime.block_on(Fixture::start(transport, server));
        Setup {
            runtime,
            fixture: Some(fixture),
        }
    }

    fn fixture(&self) -> &Fixture {
        self.fixture.as_ref().unwrap()
    }

    fn client(&self) -> ProbeBlockingClient {
        self.client_with(self.fixture().options.clone())
    }

    fn client_with(&self, options: ClientOptions) -> ProbeBlockingClient {
        ProbeBlockingClient::connect_with(
            &self.fixture().address,
            options.call_timeout(Some(LIMIT)),
        )
        .expect("connect")
    }

    fn wait_until(&self, condition: impl FnMut() -> bool) -> bool {
        crate::wait_until(LIMIT, condition)
    }
}

/// Conformance: one call.
pub fn one_call(transport: Transport) {
    let setup = Setup::new(transport, Server::new());
    let probe = setup.client();
    assert_eq!(probe.add(2, 3).unwrap(), 5);
    assert_eq!(probe.echo(b"hello".to_vec()).unwrap(), b"hello");
    assert_eq!(probe.fail(4).unwrap(), Err(ProbeError::Requested(4)));
    assert_eq!(
        probe
            .with_metadata("k", "v")
            .metadata("k".into())
            .unwrap()
            .as_deref(),
        Some("v")
    );
}

/// Conformance: threads share one client.
pub fn threads_share_one_client(transport: Transport) {
    let setup = Setup::new(transport, Server::new());
    let probe = setup.client();
    std::thread::scope(|scope| {
        for t in 0..8i64 {
            let probe = probe.clone();
            scope.spawn(move || {
                for i in 0..50 {
                    assert_eq!(probe.add(t * 1000, i).unwrap(), t * 1000 + i);
                    let payload = vec![t as u8; (i as usize) * 31];
                    assert_eq!(probe.echo(payload.clone()).unwrap(), payload);
                }
            });
        }
    });
}

/// Conformance: large messages cross.
pub fn large_messages_cross(transport: Transport) {
    let setup = Setup::new(transport, Server::new());
    let probe = setup.client();
    let payload: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    assert_eq!(probe.echo(payload.clone()).unwrap(), payload);
    assert_eq!(probe.fill(2_000_000).unwrap().len(), 2_000_000);
}

/// Conformance: payload at the frame limit.
pub fn payload_at_the_frame_limit(transport: Transport) {
    const LIMIT_BYTES: usize = 64 * 1024;
    let setup = Setup::new(transport, Server::new().max_frame_size(LIMIT_BYTES));
    let probe = setup.client_with(setup.fixture().options.clone().max_frame_size(LIMIT_BYTES));
    // Header (16), extension with the call timeout (4 + 6), length prefix (3).
    let fits = vec![1u8; LIMIT_BYTES - 29];
    assert_eq!(probe.echo(fits.clone()).unwrap(), fits);
    match probe.echo(vec![1u8; LIMIT_BYTES - 28]) {
        Err(RpcError::FrameTooLarge { size, limit }) => {
            assert_eq!((size, limit), (LIMIT_BYTES + 1, LIMIT_BYTES))
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert_eq!(probe.add(1, 1).unwrap(), 2);
}

/// Conformance: deadline is typed and the connection survives.
pub fn deadline_is_typed_and_the_connection_survives(transport: Transport) {
    let setup = Setup::new(transport, Server::new());
    let probe = setup.client();
    let outcome = probe.with_timeout(Some(Duration::from_millis(100))).stall();
    assert!(
        matches!(outcome, Err(RpcError::DeadlineExceeded { ref method, .. }) if method == "stall"),
        "{outcome:?}"
    );
    let stalled = setup.fixture().probe.stalled.clone();
    assert!(
        setup.wait_until(|| stalled.load(Ordering::SeqCst) == 0),
        "the server kept running a call the client gave up"
    );
    assert_eq!(probe.add(1, 2).unwrap(), 3);
}

/// Conformance: server gone mid call.
pub fn server_gone_mid_call(transport: Transport) {
    let mut setup = Setup::new(transport, Server::new());
    let probe = setup.client();
    let stalled = setup.fixture().probe.stalled.clone();
    let outcome = std::thread::scope(|scope| {
        let call = scope.spawn(|| probe.stall());
        assert!(setup.wait_until(|| stalled.load(Ordering::SeqCst) == 1));
        let fixture = setup.fixture.take().unwrap();
        setup.runtime.block_on(fixture.handle.abort());
        call.join().unwrap()
    });
    assert!(
        matches!(outcome, Err(RpcError::Disconnected { .. })),
        "{outcome:?}"
    );
    assert!(matches!(
        probe.add(1, 1),
        Err(RpcError::Disconnected { .. })
    ));
    assert!(probe.client().is_closed());
}

/// Conformance: unknown method and panics are typed.
pub fn unknown_method_and_panics_are_typed(transport: Transport) {
    let setup = Setup::new(transport, Server::new());
    let probe = setup.client();
    // A method the client's schema lacks is refused before it is sent.
    let outcome = probe.client().call::<_, ()>(999, &());
    assert!(
        matches!(outcome, Err(RpcError::IncompatibleMethod { ref method, .. }) if method == "#999"),
        "{outcome:?}"
    );
    assert!(matches!(
        probe.explode(),
        Err(RpcError::HandlerPanicked { .. })
    ));
    assert_eq!(probe.add(2, 2).unwrap(), 4);
}
