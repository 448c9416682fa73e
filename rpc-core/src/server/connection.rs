//! One server connection: the handshake, then a read loop that runs each call as its own task.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use rpc_transport::{Connection, Frame, FrameReceiver, FrameSender, TransportError};
use tokio::sync::{Notify, OwnedSemaphorePermit};
use tokio::task::AbortHandle;
use tokio_util::sync::CancellationToken;

use super::{Context, DispatchError, ServerConfig, Service};
use crate::wire::{
    self, Header, Hello, Kind, PROTOCOL_VERSION, Parsed, Rejection, Welcome, WireError,
};

/// What a connection task is given by its server.
pub(crate) struct ConnectionEnv {
    pub(crate) service: Arc<dyn Service>,
    pub(crate) config: Arc<ServerConfig>,
    /// Graceful shutdown: take no new calls, finish the running ones.
    pub(crate) stop: CancellationToken,
    /// Immediate shutdown: drop everything.
    pub(crate) kill: CancellationToken,
}

/// How long a connection ended for a protocol error waits for its peer to read why.
const LINGER: Duration = Duration::from_secs(2);

type SharedSender = Arc<tokio::sync::Mutex<FrameSender>>;

/// The calls running on one connection, by call id, so a `Cancel` can abort one.
#[derive(Default)]
struct Calls {
    running: Mutex<HashMap<u64, AbortHandle>>,
    idle: Notify,
}

impl Calls {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, AbortHandle>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn finish(&self, call_id: u64) {
        let mut running = self.lock();
        running.remove(&call_id);
        if running.is_empty() {
            self.idle.notify_waiters();
        }
    }

    fn cancel(&self, call_id: u64) {
        if let Some(handle) = self.lock().remove(&call_id) {
            handle.abort();
        }
    }

    fn abort_all(&self) {
        for (_, handle) in self.lock().drain() {
            handle.abort();
        }
    }

    async fn wait_idle(&self) {
        loop {
            let idle = self.idle.notified();
            if self.lock().is_empty() {
                return;
            }
            idle.await;
        }
    }
}

fn error_frame(method: u32, call_id: u64, error: &WireError) -> Frame {
    let header = Header {
        kind: Kind::Error,
        method,
        call_id,
    };
    wire::message_frame(header, None, error).expect("wire errors always encode")
}

async fn send(sender: &SharedSender, frame: Frame) -> Result<(), TransportError> {
    sender.lock().await.send(frame).await
}

/// Serves one connection until the peer leaves, breaks the protocol, or the server stops.
/// `admission` is `None` when the server is full: the client is told so in the handshake.
pub(crate) async fn serve_connection(
    connection: Connection,
    env: ConnectionEnv,
    admission: Option<OwnedSemaphorePermit>,
) {
    let (sender, mut receiver, peer) = connection.split();
    let sender: SharedSender = Arc::new(tokio::sync::Mutex::new(sender));
    let handshake = tokio::time::timeout(
        env.config.handshake_timeout,
        handshake(&sender, &mut receiver, &env, admission.is_some()),
    );
    let peer_limit = tokio::select! {
        _ = env.kill.cancelled() => return,
        outcome = handshake => match outcome {
            Ok(Ok(limit)) => limit,
            Ok(Err(reason)) => {
                tracing::debug!(%reason, "handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!("handshake timed out");
                return;
            }
        },
    };
    let session = Session {
        env: &env,
        sender,
        calls: Arc::new(Calls::default()),
        peer: Arc::new(peer),
        peer_limit,
    };
    session.run(&mut receiver).await;
    session.calls.abort_all();
    drop(admission);
}

/// Reads `Hello` and answers it; returns the client's maximum frame size.
async fn handshake(
    sender: &SharedSender,
    receiver: &mut FrameReceiver,
    env: &ConnectionEnv,
    admitted: bool,
) -> Result<usize, String> {
    let frame = receiver
        .recv()
        .await
        .map_err(|e| e.to_string())?
        .ok_or("the client left before the handshake")?;
    let parsed = Header::parse(frame.payload()).map_err(|e| e.to_string())?;
    if parsed.header.kind != Kind::Hello {
        return Err(format!("expected Hello, got {:?}", parsed.header.kind));
    }
    let hello: Hello = wire::decode(parsed.body, "Hello").map_err(|e| e.to_string())?;
    let schema = env.service.schema();
    let rejection = if hello.protocol_version != PROTOCOL_VERSION {
        Some(Rejection::ProtocolVersion {
            server: PROTOCOL_VERSION,
        })
    } else if hello.service != schema.name || hello.fingerprint != schema.fingerprint {
        let mut differences = if hello.service == schema.name {
            schema.differences(&hello.methods)
        } else {
            Vec::new()
        };
        if differences.is_empty() && hello.service == schema.name {
            differences.push("the schema fingerprints differ".to_owned());
        }
        Some(Rejection::Schema {
            server_service: schema.name.to_owned(),
            differences,
        })
    } else if env.stop.is_cancelled() {
        Some(Rejection::ShuttingDown)
    } else if !admitted {
        Some(Rejection::TooManyConnections(
            env.config.max_connections as u32,
        ))
    } else {
        None
    };
    let header = |kind| Header {
        kind,
        method: 0,
        call_id: 0,
    };
    if let Some(rejection) = rejection {
        let frame = wire::message_frame(header(Kind::Reject), None, &rejection)
            .map_err(|e| e.to_string())?;
        let _ = send(sender, frame).await;
        let _ = sender.lock().await.close().await;
        return Err(format!("rejected: {rejection:?}"));
    }
    let welcome = Welcome {
        max_frame_size: env.config.transport.max_frame_size as u64,
        max_in_flight: env.config.max_in_flight as u32,
    };
    let frame =
        wire::message_frame(header(Kind::Welcome), None, &welcome).map_err(|e| e.to_string())?;
    send(sender, frame).await.map_err(|e| e.to_string())?;
    // Responses must fit both the client's limit and our own sender's.
    Ok((hello.max_frame_size as usize).min(env.config.transport.max_frame_size))
}

/// A connection after its handshake.
struct Session<'a> {
    env: &'a ConnectionEnv,
    sender: SharedSender,
    calls: Arc<Calls>,
    peer: Arc<rpc_transport::PeerInfo>,
    /// The client's maximum frame size: a bigger response is replaced by an error.
    peer_limit: usize,
}

impl Session<'_> {
    async fn run(&self, receiver: &mut FrameReceiver) {
        loop {
            let received = tokio::select! {
                biased;
                _ = self.env.kill.cancelled() => return,
                _ = self.env.stop.cancelled() => {
                    let _ = tokio::time::timeout(self.env.config.shutdown_grace, self.calls.wait_idle()).await;
                    let _ = self.sender.lock().await.close().await;
                    return;
                }
                received = receiver.recv() => received,
            };
            let frame = match received {
                Ok(Some(frame)) => frame,
                Ok(None) => return,
                Err(error) => {
                    tracing::debug!(%error, "closing a connection that sent a bad frame");
                    return self.fail_connection(receiver, error.to_string()).await;
                }
            };
            let parsed = match Header::parse(frame.payload()) {
                Ok(parsed) => parsed,
                Err(error) => return self.fail_connection(receiver, error.to_string()).await,
            };
            match parsed.header.kind {
                Kind::Request => self.start_call(parsed).await,
                Kind::Cancel => self.calls.cancel(parsed.header.call_id),
                other => {
                    let reason = format!("unexpected {other:?} frame after the handshake");
                    return self.fail_connection(receiver, reason).await;
                }
            }
        }
    }

    /// Tells the client why the connection ends, closes our direction, and drains the
    /// client's (for a bounded time) so the kernel does not reset the connection under it.
    async fn fail_connection(&self, receiver: &mut FrameReceiver, reason: String) {
        let frame = error_frame(0, 0, &WireError::Protocol(reason));
        {
            let mut sender = self.sender.lock().await;
            let _ = sender.send(frame).await;
            let _ = sender.close().await;
        }
        tokio::select! {
            _ = self.env.kill.cancelled() => {}
            _ = tokio::time::sleep(LINGER) => {}
            _ = receiver.drain() => {}
        }
    }

    async fn reply_error(&self, method: u32, call_id: u64, error: WireError) {
        let _ = send(&self.sender, error_frame(method, call_id, &error)).await;
    }

    async fn start_call(&self, request: Parsed<'_>) {
        let Header {
            method, call_id, ..
        } = request.header;
        let limit = self.env.config.max_in_flight;
        if self.calls.lock().len() >= limit {
            return self
                .reply_error(method, call_id, WireError::TooManyCalls(limit as u32))
                .await;
        }
        let future = match self.env.service.dispatch(method, request.body) {
            Ok(future) => future,
            Err(DispatchError::UnknownMethod(_)) => {
                return self
                    .reply_error(method, call_id, WireError::UnknownMethod)
                    .await;
            }
            Err(DispatchError::BadRequest(reason)) => {
                return self
                    .reply_error(method, call_id, WireError::BadRequest(reason))
                    .await;
            }
        };
        let extension = request.extension.unwrap_or_default();
        let timeout = extension.timeout_micros.map(Duration::from_micros);
        let schema = self.env.service.schema();
        let context = Context {
            call_id,
            method: schema.methods.get(method as usize).map_or("?", |m| m.name),
            metadata: extension.metadata.into(),
            deadline: timeout.map(|t| Instant::now() + t),
            peer: self.peer.clone(),
        };
        let sender = self.sender.clone();
        let calls = self.calls.clone();
        let peer_limit = self.peer_limit;
        let task = async move {
            let run = context.scope(AssertUnwindSafe(future).catch_unwind());
            let outcome = match timeout {
                Some(limit) => tokio::time::timeout(limit, run).await.ok(),
                None => Some(run.await),
            };
            let frame = match outcome {
                None => error_frame(method, call_id, &WireError::DeadlineExceeded),
                Some(Err(_panic)) => error_frame(method, call_id, &WireError::HandlerPanicked),
                Some(Ok(Err(error))) => {
                    error_frame(method, call_id, &WireError::EncodeFailed(error.to_string()))
                }
                Some(Ok(Ok(frame))) if frame.len() > peer_limit => error_frame(
                    method,
                    call_id,
                    &WireError::ResponseTooLarge {
                        size: frame.len() as u64,
                        limit: peer_limit as u64,
                    },
                ),
                Some(Ok(Ok(mut frame))) => {
                    let header = Header {
                        kind: Kind::Response,
                        method,
                        call_id,
                    };
                    header.write(frame.payload_mut(), false);
                    frame
                }
            };
            let _ = send(&sender, frame).await;
            calls.finish(call_id);
        };
        // Hold the table while spawning, so the task cannot finish before it is registered.
        let mut running = self.calls.lock();
        let handle = tokio::spawn(task);
        running.insert(call_id, handle.abort_handle());
    }
}
