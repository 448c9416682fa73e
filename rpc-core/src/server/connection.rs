//! One server connection: the handshake, then either the async read loop (`session.rs`) or,
//! for the first few shared-memory connections, a dedicated thread (`threaded.rs`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rpc_transport::Connection;

use super::ConnectionEnv;
use super::admission::Ticket;
use super::calls::Calls;
use super::dispatch::CallEnv;
use super::handshake::handshake;
use super::reply::ReplySink;
use super::{session, threaded};

/// Serves one connection until the peer leaves, breaks the protocol, or the server stops.
/// `ticket` is its place among the pending handshakes: a newer connection may evict it.
pub(crate) async fn serve_connection(connection: Connection, env: ConnectionEnv, ticket: Ticket) {
    let (mut sender, mut receiver, peer) = connection.split();
    // Until the client is known, it may send only a small frame.
    let full_limit = env.config.transport.max_frame_size;
    receiver.set_max_frame_size(env.config.handshake_max_frame_size.min(full_limit));
    let handshake = tokio::time::timeout(
        env.config.handshake_timeout,
        handshake(&mut sender, &mut receiver, &peer, &env),
    );
    let agreed = tokio::select! {
        _ = env.kill.cancelled() => return,
        _ = ticket.evicted.cancelled() => {
            return tracing::debug!("dropped in its handshake: newer connections arrived");
        }
        outcome = handshake => match outcome {
            Ok(Ok(agreed)) => agreed,
            Ok(Err(reason)) => return tracing::debug!(%reason, "handshake failed"),
            Err(_) => return tracing::debug!("handshake timed out"),
        },
    };
    drop(ticket);
    let admission = (agreed.admission, agreed.peer_slot);
    let call_env = CallEnv {
        service: agreed.service,
        config: env.config.clone(),
        peer: Arc::new(peer),
        transport: sender.mechanism(),
        callable: agreed.callable,
    };
    // (The handshake raised the receiver's limit to `full_limit` before it sent `Welcome`.)
    let peer_limit = agreed.peer_limit;
    let calls = Arc::new(Calls::default());
    let memory = env
        .shared
        .memory
        .connection(env.config.max_connection_memory);
    let mut thread = DedicatedThread::take(&env);
    let halves = if sender.writes_in_place() && thread.is_some() {
        match (sender.into_blocking(), receiver.into_blocking()) {
            (Ok(sender), Ok(receiver)) => Ok((sender, receiver)),
            (Err(sender), Err(receiver)) => Err((sender, receiver)),
            // A transport whose halves disagree (one would move to a thread, the other not)
            // cannot be served: the connection is dropped, the server goes on.
            _ => {
                tracing::error!(
                    transport = call_env.transport,
                    "a transport's halves disagree on being served from a thread; dropping the connection"
                );
                drop(thread);
                drop(admission);
                return;
            }
        }
    } else {
        Err((sender, receiver))
    };
    match halves {
        Ok((sender, receiver)) => {
            let sink = ReplySink::new_blocking(sender, peer_limit);
            threaded::run(env, calls.clone(), call_env, sink, receiver, memory).await;
        }
        Err((sender, receiver)) => {
            drop(thread.take());
            let sink = ReplySink::new_async(sender, peer_limit, memory.replies.clone());
            session::run(&env, calls.clone(), call_env, sink, receiver, memory).await;
        }
    }
    calls.abort_all_and_wait().await;
    drop(thread);
    drop(admission);
}

/// One of the server's `dedicated_threads` places, given back when dropped.
struct DedicatedThread(Arc<super::ServerWide>);

impl DedicatedThread {
    /// A place if one is free.
    fn take(env: &ConnectionEnv) -> Option<DedicatedThread> {
        let limit = env.config.dedicated_threads;
        env.shared
            .dedicated
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                (used < limit).then_some(used + 1)
            })
            .ok()
            .map(|_| DedicatedThread(env.shared.clone()))
    }
}

impl Drop for DedicatedThread {
    fn drop(&mut self) {
        self.0.dedicated.fetch_sub(1, Ordering::AcqRel);
    }
}
