//! The server's side of streaming calls: sending a handler's items under the client's credit,
//! and granting credit for the items it receives.

use std::panic::AssertUnwindSafe;

use futures_util::{FutureExt, StreamExt};

use super::dispatch::{Answer, Outgoing};
use super::reply::{ReplySink, error_frame};
use crate::server::Reply;
use crate::stream::ItemSource;
use crate::stream::credit::Credit;
use crate::stream::frames;
use crate::wire::WireError;

/// Sends `items` as the client's credit allows; resolves to the call's final answer: a clean
/// end, the producer's error, or a panic. Cancelling the call drops `items`, and with them the
/// producer.
pub(crate) async fn send_items(
    mut items: ItemSource,
    sink: &ReplySink,
    credit: &Credit,
    method: u32,
    call_id: u64,
) -> Answer {
    let end = |error: WireError| Answer::Frame(error_frame(method, call_id, &error));
    loop {
        if !credit.ready().await {
            return end(WireError::ShuttingDown);
        }
        let item = match AssertUnwindSafe(items.next()).catch_unwind().await {
            Err(_panic) => return end(WireError::HandlerPanicked),
            Ok(None) => {
                return Answer::Response {
                    method,
                    call_id,
                    body: Reply::value(()),
                };
            }
            Ok(Some(Err(reason))) => return end(WireError::StreamFailed(reason)),
            Ok(Some(Ok(item))) => item,
        };
        // Sizing the item runs the user's `Serialize`: a panic there ends the call as a
        // panicking handler does, instead of killing the call's task before it leaves the
        // connection's table (no final frame; the call would count as running for good).
        let prepared = std::panic::catch_unwind(AssertUnwindSafe(|| {
            sink.prepare(Answer::Item {
                method,
                call_id,
                body: item,
            })
        }));
        let Ok(outgoing) = prepared else {
            return end(WireError::HandlerPanicked);
        };
        if let Outgoing::Frame(refusal) = outgoing {
            // The item could not be encoded, or is larger than the client accepts.
            return Answer::Frame(refusal);
        }
        credit.spend(outgoing.len());
        if sink.send_prepared(outgoing).await.is_err() {
            return end(WireError::Protocol("the connection broke".into()));
        }
    }
}

/// Grants the client `bytes` more of call `call_id`'s stream (from a task: the consumer that
/// grants it cannot wait).
pub(crate) fn grant(sink: &ReplySink, method: u32, call_id: u64, bytes: u64) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let frame = frames::credit(method, call_id, bytes);
    let sink = sink.clone();
    runtime.spawn(async move {
        let _ = sink.send(Answer::Frame(frame)).await;
    });
}
