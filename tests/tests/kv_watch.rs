//! A watch sees every change made after it returns, even one made right after on the same
//! connection: a streaming call's handler begins (the watch subscribes) before the server
//! reads the connection's next request. On every transport but `spawn:` (whose child serves
//! the probe only), with the example `Kv` service.

use std::time::Duration;

use idl_examples::{Change, KvClient, KvServer, KvStore};
use rpc_core::{Server, StreamExt};
use rpc_tests::{TempDir, Transport, bounded};

const LIMIT: Duration = Duration::from_secs(20);

async fn a_put_right_after_a_watch_is_seen(transport: Transport) {
    let dir = TempDir::new();
    let handle = Server::new()
        .add(KvServer::new(KvStore::default()))
        .listen(&[&transport.fresh_address(&dir)])
        .await
        .unwrap();
    let kv = bounded(LIMIT, "connect", KvClient::connect(&handle.local_address()))
        .await
        .unwrap();
    for round in 0..20 {
        let prefix = format!("round{round}/");
        let mut changes = kv.watch(prefix.clone()).await.unwrap();
        let key = format!("{prefix}key");
        kv.put(key.clone(), b"v".to_vec()).await.unwrap();
        kv.delete(key.clone()).await.unwrap();
        let first = bounded(LIMIT, "the put", changes.next()).await;
        assert_eq!(
            first.unwrap().unwrap(),
            Change::Put {
                key: key.clone(),
                value: b"v".to_vec()
            },
            "round {round}"
        );
        let second = bounded(LIMIT, "the delete", changes.next()).await;
        assert_eq!(second.unwrap().unwrap(), Change::Deleted { key });
    }
    handle.shutdown().await;
}

macro_rules! every_transport {
    ($($name:ident => $variant:expr),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                if $variant == Transport::Mq
                    && mq_own_uid::delegated(&mq_own_uid::test_path(module_path!(), stringify!($name)))
                {
                    return;
                }
                a_put_right_after_a_watch_is_seen($variant).await;
            }
        )*
    };
}

every_transport! {
    tcp => Transport::Tcp,
    unix => Transport::Unix,
    mem => Transport::Mem,
    shm => Transport::ShmNamed,
    mmap => Transport::Mmap,
    sysv_shm => Transport::SysvShm,
    fifo => Transport::Fifo,
    mq => Transport::Mq,
    sysv_mq => Transport::SysvMq,
}

/// See `conformance.rs`: mq tests run under a uid of their own when we are root.
#[path = "../../rpc-transport/src/mq/tests/own_uid.rs"]
mod mq_own_uid;
