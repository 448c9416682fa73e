//! Who may connect over `sysv-mq://`: only the server's own user. Its System V queues are of
//! mode 0600, out of another user's reach, so the transport itself refuses other uids both
//! ways (`SO_PEERCRED` on the rendezvous socket), whatever `Server::allow_uids` says: the
//! client refuses a server of another uid before handing it anything, and the server answers
//! a client of another uid with a refusal naming both uids. Tested with a real client process
//! running as uid 65534: this test binary, copied where that user may run it. Needs a process
//! allowed to switch users (root, as in CI); says so loudly and skips otherwise.

use rpc_core::Server;
use rpc_tests::stranger::{self, STRANGER, StrangerBinary};
use rpc_tests::{ProbeBlockingClient, ProbeImpl, ProbeServer, unique_name};

/// In the child: call the address given as the stranger (see `rpc_tests::stranger`).
#[test]
fn stranger_client() {
    stranger::stranger_client("ACCESS_SYSV_MQ_CHILD_ADDRESS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_user_is_refused_even_when_admitted() {
    let Some(stranger) =
        StrangerBinary::new("access-sysv-mq-child", "ACCESS_SYSV_MQ_CHILD_ADDRESS")
    else {
        return;
    };
    let own = nix::unistd::geteuid().as_raw();
    for server in [Server::new(), Server::new().allow_uids([STRANGER])] {
        let address = format!("sysv-mq://{}", unique_name("access"));
        let handle = server
            .start(ProbeServer::new(ProbeImpl::default()), &[&address])
            .await
            .unwrap();
        let outcome = stranger.call(&address).await;
        assert!(
            outcome.starts_with("connect")
                && outcome.contains(&format!("uid {own}"))
                && outcome.contains(&format!("uid {STRANGER}")),
            "{outcome}"
        );
        // Our own user is served as ever, and the server goes on.
        let sum = tokio::task::spawn_blocking(move || {
            ProbeBlockingClient::connect(&address).unwrap().add(2, 3)
        })
        .await
        .unwrap();
        assert_eq!(sum.unwrap(), 5);
        handle.shutdown().await;
    }
}
