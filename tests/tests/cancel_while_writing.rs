//! Calls given up while their requests are being written (timeouts of microseconds, many calls
//! pipelined) must leave the connection whole on every transport: the outbox keeps what it
//! accepted, so no half-written frame reaches the server (found by the keepalive review on
//! mem://, mq:// and sysv-mq:// as a suspicion; this checks every transport).

use std::time::Duration;

use rpc_core::{RpcError, Server};
use rpc_tests::{Fixture, Transport};

async fn survives_cancelled_writes(transport: Transport) {
    let fixture = Fixture::start(transport, Server::new()).await;
    let probe = fixture.client().await.expect("connect");
    let payload = vec![7u8; 64 * 1024];
    let mut given_up = 0;
    for round in 0..5u64 {
        let mut calls = Vec::new();
        for i in 0..200u64 {
            let hurried =
                probe.with_timeout(Some(Duration::from_micros(1 + (i * 37 + round) % 200)));
            let payload = payload.clone();
            calls.push(tokio::spawn(async move { hurried.echo(payload).await }));
        }
        for call in calls {
            match call.await.unwrap() {
                Ok(echoed) => assert_eq!(echoed.len(), 64 * 1024),
                Err(RpcError::DeadlineExceeded { .. }) => given_up += 1,
                Err(other) => panic!("{transport:?} round {round}: {other:?}"),
            }
        }
        assert!(
            !probe.client().is_closed(),
            "{transport:?}: the connection broke in round {round}"
        );
        assert_eq!(probe.add(round as i64, 1).await.unwrap(), round as i64 + 1);
    }
    assert!(
        given_up > 0,
        "{transport:?}: no call was given up; the test proves nothing"
    );
    fixture.handle.shutdown().await;
}

macro_rules! each_transport {
    ($($name:ident => $transport:expr),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            survives_cancelled_writes($transport).await;
        }
    )*};
}

each_transport! {
    tcp => Transport::Tcp,
    unix => Transport::Unix,
    mem => Transport::Mem,
    shm => Transport::Shm,
    fifo => Transport::Fifo,
    mq => Transport::Mq,
    sysv_shm => Transport::SysvShm,
    sysv_mq => Transport::SysvMq,
}
