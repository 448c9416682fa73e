//! Several services on one listener: each client names its service in the handshake and is
//! served that one; a client of a service the server lacks is told which ones it has.
//!
//! `several_services!` at the bottom runs the main body on every transport with a listener
//! (`spawn:` has none: each of its connections starts a probe-only child).

use std::time::Duration;

use idl_examples::CalculatorClient;
use rpc_core::transport::{Address, Listener, TransportConfig};
use rpc_core::{RpcError, Server};
use rpc_tests::{
    Fixture, GreeterBlockingClient, GreeterClient, GreeterImpl, GreeterServer, ProbeBlockingClient,
    ProbeClient, ProbeImpl, ProbeServer, TempDir, Transport, bounded, eventually,
};

const LIMIT: Duration = Duration::from_secs(20);

fn probe() -> ProbeServer<ProbeImpl> {
    ProbeServer::new(ProbeImpl::default())
}

fn greeter() -> GreeterServer<GreeterImpl> {
    GreeterServer::new(GreeterImpl)
}

/// A fresh `unix://` address in `dir`.
fn unix_address(dir: &TempDir) -> String {
    Transport::Unix.fresh_address(dir)
}

/// Asserts that `error` refuses a client of `wanted` from a server serving `available`.
fn assert_unknown_service(error: &RpcError, wanted: &str, available: &[&str]) {
    match error {
        RpcError::UnknownService {
            service,
            available: served,
        } => {
            assert_eq!(service, wanted);
            assert_eq!(served, available);
        }
        other => panic!("expected UnknownService, got {other:?}"),
    }
    assert_eq!(
        error.to_string(),
        format!(
            "the server does not serve '{wanted}'; it serves: {}",
            available.join(", ")
        )
    );
}

/// Runs `work` on a plain thread, outside any runtime, as blocking clients are used (a
/// blocking `mem://` client refuses to run inside one), and awaits its result.
async fn on_a_thread<T: Send + 'static>(
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> T {
    let thread = std::thread::spawn(work);
    let joined = tokio::task::spawn_blocking(move || thread.join());
    bounded(LIMIT, what, joined)
        .await
        .expect("the joining task")
        .unwrap_or_else(|_| panic!("{what} panicked"))
}

/// Blocking probe and greeter clients: `add(40, 2)` and `greet("thread")`.
async fn blocking_calls(address: &str) -> Result<(i64, String), RpcError> {
    let address = address.to_owned();
    on_a_thread("the blocking clients", move || {
        let probe = ProbeBlockingClient::connect(&address)?;
        let greeter = GreeterBlockingClient::connect(&address)?;
        Ok((probe.add(40, 2)?, greeter.greet("thread".into())?))
    })
    .await
}

async fn two_services_answer_on_one_listener(transport: Transport) {
    // The fixture adds the probe to the server it is given.
    let fixture = Fixture::start(transport, Server::new().add(greeter())).await;
    let address = &fixture.address;
    let probe = bounded(LIMIT, "connect a probe", ProbeClient::connect(address))
        .await
        .expect("connect a probe");
    let greeter = bounded(LIMIT, "connect a greeter", GreeterClient::connect(address))
        .await
        .expect("connect a greeter");
    assert_eq!(probe.add(2, 3).await.unwrap(), 5);
    assert_eq!(greeter.greet("you".into()).await.unwrap(), "hello, you");
    let (tagged, greeted) = tokio::join!(probe.tag(7, 20), greeter.greet("both".into()));
    assert_eq!(
        (tagged.unwrap(), greeted.unwrap().as_str()),
        (7, "hello, both")
    );

    assert_eq!(
        blocking_calls(address).await.expect("blocking calls"),
        (42, "hello, thread".to_owned())
    );

    // A client of a third service is refused at connect, told what the server has.
    let error = bounded(
        LIMIT,
        "connect a calculator",
        CalculatorClient::connect(address),
    )
    .await
    .unwrap_err();
    assert_unknown_service(&error, "Calculator", &["Greeter", "Probe"]);
    let blocking_address = address.clone();
    let error = on_a_thread("a blocking calculator's connect", move || {
        idl_examples::CalculatorBlockingClient::connect(&blocking_address).map(drop)
    })
    .await
    .unwrap_err();
    assert_unknown_service(&error, "Calculator", &["Greeter", "Probe"]);

    // The established connections are unharmed.
    assert_eq!(probe.add(1, 1).await.unwrap(), 2);
    assert_eq!(greeter.greet("still".into()).await.unwrap(), "hello, still");
    assert!(
        eventually(LIMIT, || fixture.handle.connections() == 2).await,
        "{} connections, expected the probe's and the greeter's",
        fixture.handle.connections()
    );
}

#[tokio::test]
async fn a_name_added_twice_is_refused_before_anything_is_bound() {
    let dir = TempDir::new();
    let address = unix_address(&dir);
    let twice = Server::new().add(probe()).add(greeter()).add(probe());
    let error = twice.listen(&[&address]).await.unwrap_err();
    assert!(
        matches!(&error, RpcError::DuplicateService { service } if service == "Probe"),
        "{error:?}"
    );
    assert!(error.to_string().contains("'Probe'"), "{error}");
    let path = address.trim_start_matches("unix://");
    assert!(
        !std::path::Path::new(path).exists(),
        "{path} was bound by a server that refused to start"
    );
    // `start` adds its service beside those added already: the same name is refused too.
    let error = Server::new()
        .add(probe())
        .start(probe(), &[&address])
        .await
        .unwrap_err();
    assert!(
        matches!(&error, RpcError::DuplicateService { service } if service == "Probe"),
        "{error:?}"
    );
}

#[tokio::test]
async fn listening_with_no_service_is_a_typed_error() {
    let dir = TempDir::new();
    let address = unix_address(&dir);
    let error = Server::new().listen(&[&address]).await.unwrap_err();
    assert!(matches!(error, RpcError::NoServices), "{error:?}");
    let error = Server::new()
        .serve_all_until(&[&address], async {})
        .await
        .unwrap_err();
    assert!(matches!(error, RpcError::NoServices), "{error:?}");
    let error = Server::new().listen_on(Vec::new()).unwrap_err();
    assert!(matches!(error, RpcError::NoServices), "{error:?}");
}

#[tokio::test]
async fn a_single_service_start_still_works() {
    let fixture = Fixture::start(Transport::Unix, Server::new()).await;
    let probe = ProbeClient::connect(&fixture.address).await.unwrap();
    assert_eq!(probe.add(2, 2).await.unwrap(), 4);
    let error = GreeterClient::connect(&fixture.address).await.unwrap_err();
    assert_unknown_service(&error, "Greeter", &["Probe"]);
}

#[tokio::test]
async fn a_clone_keeps_the_services_it_had() {
    let greeter_only = Server::new().add(greeter());
    let both = greeter_only.clone().add(probe());
    let debug = format!("{both:?}");
    assert!(
        debug.contains("\"Greeter\"") && debug.contains("\"Probe\""),
        "{debug}"
    );
    let dir = TempDir::new();
    let address = unix_address(&dir);
    let handle = greeter_only.listen(&[&address]).await.unwrap();
    let greeter = GreeterClient::connect(&address).await.unwrap();
    assert_eq!(greeter.greet("clone".into()).await.unwrap(), "hello, clone");
    let error = ProbeClient::connect(&address).await.unwrap_err();
    assert_unknown_service(&error, "Probe", &["Greeter"]);
    handle.shutdown().await;
}

#[tokio::test]
async fn listen_on_serves_every_service_on_listeners_already_bound() {
    let dir = TempDir::new();
    let address: Address = unix_address(&dir).parse().unwrap();
    let listener = Listener::bind(&address, &TransportConfig::default())
        .await
        .unwrap();
    let handle = Server::new()
        .add(probe())
        .add(greeter())
        .listen_on(vec![listener])
        .unwrap();
    let address = handle.local_address();
    let probe = ProbeClient::connect(&address).await.unwrap();
    let greeter = GreeterClient::connect(&address).await.unwrap();
    assert_eq!(probe.add(1, 2).await.unwrap(), 3);
    assert_eq!(greeter.greet("on".into()).await.unwrap(), "hello, on");
    handle.shutdown().await;
}

#[tokio::test]
async fn serve_all_until_serves_every_service_until_shutdown() {
    let dir = TempDir::new();
    let address = unix_address(&dir);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn({
        let address = address.clone();
        async move {
            Server::new()
                .add(probe())
                .add(greeter())
                .serve_all_until(&[&address], async {
                    let _ = stopped.await;
                })
                .await
        }
    });
    let path = std::path::PathBuf::from(address.trim_start_matches("unix://"));
    assert!(eventually(LIMIT, || path.exists()).await, "never listened");
    let probe = ProbeClient::connect(&address).await.unwrap();
    let greeter = GreeterClient::connect(&address).await.unwrap();
    assert_eq!(probe.add(3, 4).await.unwrap(), 7);
    assert_eq!(greeter.greet("until".into()).await.unwrap(), "hello, until");
    stop.send(()).unwrap();
    bounded(LIMIT, "the server's shutdown", server)
        .await
        .expect("the server task")
        .expect("served until shutdown");
}

macro_rules! several_services {
    ($($transport:ident => $variant:expr),* $(,)?) => {
        $(mod $transport {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn two_services_answer_on_one_listener() {
                if $variant == rpc_tests::Transport::Mq
                    && super::mq_own_uid::delegated(&super::mq_own_uid::test_path(
                        module_path!(),
                        "two_services_answer_on_one_listener",
                    ))
                {
                    return;
                }
                super::two_services_answer_on_one_listener($variant).await;
            }
        })*
    };
}

several_services! {
    tcp => rpc_tests::Transport::Tcp,
    unix => rpc_tests::Transport::Unix,
    unix_abstract => rpc_tests::Transport::UnixAbstract,
    mem => rpc_tests::Transport::Mem,
    shm_named => rpc_tests::Transport::ShmNamed,
    shm => rpc_tests::Transport::Shm,
    mmap => rpc_tests::Transport::Mmap,
    sysv_shm => rpc_tests::Transport::SysvShm,
    fifo => rpc_tests::Transport::Fifo,
    mq => rpc_tests::Transport::Mq,
    sysv_mq => rpc_tests::Transport::SysvMq,
}

/// mq tests under a uid of their own when we are root (see `conformance.rs`).
#[path = "../../rpc-transport/src/mq/tests/own_uid.rs"]
mod mq_own_uid;
