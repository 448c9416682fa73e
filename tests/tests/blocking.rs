//! The blocking client's conformance suite: the same bodies on every transport, called from
//! plain threads with no runtime, against a server on a runtime of its own.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rpc_core::{ClientOptions, RpcError, Server};
use rpc_tests::{Fixture, ProbeBlockingClient, ProbeError, Transport};

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
        self.client_with(ClientOptions::default())
    }

    fn client_with(&self, options: ClientOptions) -> ProbeBlockingClient {
        ProbeBlockingClient::connect_with(
            &self.fixture().address,
            options.call_timeout(Some(LIMIT)),
        )
        .expect("connect")
    }

    fn wait_until(&self, condition: impl FnMut() -> bool) -> bool {
        rpc_tests::wait_until(LIMIT, condition)
    }
}

fn one_call(transport: Transport) {
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

fn threads_share_one_client(transport: Transport) {
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

fn large_messages_cross(transport: Transport) {
    let setup = Setup::new(transport, Server::new());
    let probe = setup.client();
    let payload: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    assert_eq!(probe.echo(payload.clone()).unwrap(), payload);
    assert_eq!(probe.fill(2_000_000).unwrap().len(), 2_000_000);
}

fn payload_at_the_frame_limit(transport: Transport) {
    const LIMIT_BYTES: usize = 64 * 1024;
    let setup = Setup::new(transport, Server::new().max_frame_size(LIMIT_BYTES));
    let probe = setup.client_with(ClientOptions::default().max_frame_size(LIMIT_BYTES));
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

fn deadline_is_typed_and_the_connection_survives(transport: Transport) {
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

fn server_gone_mid_call(transport: Transport) {
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

fn unknown_method_and_panics_are_typed(transport: Transport) {
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

macro_rules! blocking_conformance {
    ($($transport:ident => $variant:expr),* $(,)?) => {
        $(mod $transport {
            blocking_conformance!(@tests $variant;
                one_call,
                threads_share_one_client,
                large_messages_cross,
                payload_at_the_frame_limit,
                deadline_is_typed_and_the_connection_survives,
                server_gone_mid_call,
                unknown_method_and_panics_are_typed,
            );
        })*
    };
    (@tests $variant:expr; $($test:ident),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                super::$test($variant);
            }
        )*
    };
}

blocking_conformance! {
    tcp => rpc_tests::Transport::Tcp,
    unix => rpc_tests::Transport::Unix,
    unix_abstract => rpc_tests::Transport::UnixAbstract,
    mem => rpc_tests::Transport::Mem,
    shm_named => rpc_tests::Transport::ShmNamed,
    shm => rpc_tests::Transport::Shm,
    mmap => rpc_tests::Transport::Mmap,
    sysv_shm => rpc_tests::Transport::SysvShm,
    spawn => rpc_tests::Transport::Spawn,
    fifo => rpc_tests::Transport::Fifo,
    mq => rpc_tests::Transport::Mq,
}
