//! A transport defined outside `rpc-transport`, with its public interface only: `xtcp://`,
//! TCP whose bytes are scrambled with a key both sides share (a `TransportConfig` setting).
//! Registered under its scheme, it runs the exported conformance suite (calls, streams and the
//! blocking client) exactly as the built-in transports do.

use std::pin::Pin;
use std::sync::Once;
use std::task::{Context, Poll};
use std::time::Duration;

use rpc_core::transport::{
    Acceptor, Address, BlockingConnection, BoxFuture, Connection, PeerInfo, Transport,
    TransportConfig, TransportError, framed,
};
use rpc_tests::{CustomTransport, TempDir};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

/// The key both sides scramble with: a transport's own setting.
#[derive(Debug, Clone, Copy)]
struct ScrambleKey(u8);

/// A byte stream whose bytes are XORed with a key on the way in and out.
struct Scrambled<S> {
    inner: S,
    key: u8,
}

impl<S: AsyncRead + Unpin> AsyncRead for Scrambled<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let start = buf.filled().len();
        let key = self.key;
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if polled.is_ready() {
            buf.filled_mut()[start..].iter_mut().for_each(|b| *b ^= key);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Scrambled<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let scrambled: Vec<u8> = buf.iter().map(|b| b ^ self.key).collect();
        Pin::new(&mut self.inner).poll_write(cx, &scrambled)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn key_of(config: &TransportConfig) -> u8 {
    config.setting::<ScrambleKey>().map_or(0, |key| key.0)
}

/// A connection over `stream`, scrambled with the configured key.
fn scrambled(stream: TcpStream, config: &TransportConfig) -> Result<Connection, TransportError> {
    stream.set_nodelay(true)?;
    let peer = PeerInfo::Other(format!("xtcp peer {}", stream.peer_addr()?));
    let key = key_of(config);
    let (read, write) = stream.into_split();
    let (sender, receiver) = framed(
        Scrambled { inner: read, key },
        Scrambled { inner: write, key },
        config,
        "xtcp",
    );
    Ok(Connection::new(sender, receiver, peer))
}

async fn connect(
    address: &Address,
    config: &TransportConfig,
) -> Result<Connection, TransportError> {
    let (host, port) = address.host_port()?;
    let stream = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|source| TransportError::Connect {
            address: address.to_string(),
            source,
        })?;
    scrambled(stream, config)
}

/// The `xtcp` transport.
struct ScrambledTcp;

struct ScrambledListener {
    listener: TcpListener,
    config: TransportConfig,
}

impl Acceptor for ScrambledListener {
    fn local_address(&self) -> Address {
        let local = self.listener.local_addr().expect("a bound socket");
        Address::from_target("xtcp", &local.to_string())
    }

    fn accept(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(async move {
            let (stream, _) = self.listener.accept().await?;
            scrambled(stream, &self.config)
        })
    }
}

impl Transport for ScrambledTcp {
    fn scheme(&self) -> &str {
        "xtcp"
    }

    fn forms(&self) -> Vec<String> {
        vec!["xtcp://HOST:PORT".into()]
    }

    fn check(&self, address: &Address) -> Result<(), TransportError> {
        address.host_port().map(drop)
    }

    fn connect<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Connection, TransportError>> {
        Box::pin(connect(address, config))
    }

    fn bind<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Acceptor>, TransportError>> {
        Box::pin(async move {
            let (host, port) = address.host_port()?;
            let listener = TcpListener::bind((host.as_str(), port))
                .await
                .map_err(|source| TransportError::Bind {
                    address: address.to_string(),
                    source,
                })?;
            Ok(Box::new(ScrambledListener {
                listener,
                config: config.clone(),
            }) as Box<dyn Acceptor>)
        })
    }

    fn connect_blocking(
        &self,
        address: &Address,
        config: &TransportConfig,
        timeout: Duration,
    ) -> Result<BlockingConnection, TransportError> {
        BlockingConnection::over_runtime(address, timeout, || connect(address, config))
    }
}

fn register_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| rpc_core::transport::register(ScrambledTcp).expect("register xtcp"));
}

const KEY: ScrambleKey = ScrambleKey(0x5a);

static XTCP: CustomTransport = CustomTransport {
    register: register_once,
    fresh_address: |_dir: &TempDir| "xtcp://127.0.0.1:0".to_owned(),
    server: |server| server.transport_setting(KEY),
    client: |options| options.transport_setting(KEY),
};

rpc_tests::call_conformance! { xtcp => rpc_tests::Transport::Custom(&crate::XTCP) }
rpc_tests::stream_conformance! { xtcp_streams => rpc_tests::Transport::Custom(&crate::XTCP) }
rpc_tests::blocking_conformance! { xtcp_blocking => rpc_tests::Transport::Custom(&crate::XTCP) }

/// The bytes on the wire really are scrambled: a plain TCP client of an xtcp server is not
/// understood (its Hello is garbage to the server) and is refused without harming others.
#[tokio::test]
async fn a_plain_tcp_client_of_an_xtcp_server_is_refused() {
    use rpc_tests::{Fixture, ProbeClient};
    let fixture =
        Fixture::start(rpc_tests::Transport::Custom(&XTCP), rpc_core::Server::new()).await;
    let plain = fixture.address.replacen("xtcp://", "tcp://", 1);
    let outcome = tokio::time::timeout(Duration::from_secs(20), ProbeClient::connect(&plain)).await;
    assert!(matches!(outcome, Ok(Err(_))), "{outcome:?}");
    let probe = fixture.client().await.unwrap();
    assert_eq!(probe.add(2, 3).await.unwrap(), 5);
}

/// A scheme is registered once: built-in and registered schemes cannot be taken again, and
/// the registered form joins the list an unknown scheme's error gives.
#[test]
fn schemes_are_not_taken_twice_and_are_listed() {
    register_once();
    let taken = rpc_core::transport::register(ScrambledTcp).unwrap_err();
    assert!(matches!(taken, TransportError::SchemeTaken { ref scheme } if scheme == "xtcp"));
    struct FakeTcp;
    impl Transport for FakeTcp {
        fn scheme(&self) -> &str {
            "tcp"
        }
        fn connect<'a>(
            &'a self,
            address: &'a Address,
            config: &'a TransportConfig,
        ) -> BoxFuture<'a, Result<Connection, TransportError>> {
            Box::pin(connect(address, config))
        }
        fn bind<'a>(
            &'a self,
            address: &'a Address,
            config: &'a TransportConfig,
        ) -> BoxFuture<'a, Result<Box<dyn Acceptor>, TransportError>> {
            ScrambledTcp.bind(address, config)
        }
    }
    assert!(matches!(
        rpc_core::transport::register(FakeTcp),
        Err(TransportError::SchemeTaken { .. })
    ));
    let unknown = "nope://x".parse::<Address>().unwrap_err().to_string();
    assert!(unknown.contains("xtcp://HOST:PORT"), "{unknown}");
    let malformed = "xtcp://no-port".parse::<Address>().unwrap_err();
    assert!(
        matches!(malformed, TransportError::InvalidAddress { .. }),
        "{malformed:?}"
    );
}
