//! A call's handler with what it runs in (its [`Context`], span, deadline), polled once in
//! place before it becomes a future of its own. Most handlers finish on that first poll: then
//! no future is built around them, boxed, or moved, and the answer is ready at once. Only a
//! handler that waits (or a streaming call) gets the full future, [`Handling::into_future`].

use std::future::{Future, poll_fn};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use futures_util::FutureExt;
use tracing::{Instrument, Span};

use super::context::Context;
use super::dispatch::{Answer, ReplyFuture};
use super::reply::{ReplySink, error_frame};
use super::{DispatchError, HandlerFuture, Reply, streaming};
use crate::stream::credit::Credit;
use crate::telemetry;
use crate::wire::WireError;

/// Which call this is, for its answer and its telemetry.
#[derive(Clone, Copy)]
pub(crate) struct CallIds {
    pub(crate) service: &'static str,
    pub(crate) name: &'static str,
    pub(crate) method: u32,
    pub(crate) call_id: u64,
}

impl CallIds {
    /// The error answer for `failure`, recorded as the call's failure.
    fn failed(self, failure: WireError) -> Answer {
        telemetry::server_failed((self.service, self.name, self.call_id), &failure);
        Answer::Frame(error_frame(self.method, self.call_id, &failure))
    }

    /// The answer to a call that returns one value, from its handler's outcome (`Err`: it
    /// panicked).
    fn answer(self, outcome: Result<Result<Reply, DispatchError>, ()>) -> Answer {
        match outcome {
            Err(()) => self.failed(WireError::HandlerPanicked),
            Ok(Err(refused)) => self.failed(wire_error(refused)),
            Ok(Ok(body)) => match body.into_stream() {
                Ok(_) => self.failed(WireError::EncodeFailed(
                    "a stream returned by a method that returns one value".into(),
                )),
                Err(body) => Answer::Response {
                    method: self.method,
                    call_id: self.call_id,
                    body,
                },
            },
        }
    }
}

/// The items a call sends, where it returns a stream: their credit and where they go.
pub(crate) struct Items {
    pub(crate) credit: Arc<Credit>,
    pub(crate) sink: ReplySink,
}

/// A call's handler, not yet polled or polled once in place, and what it runs in.
pub(crate) struct Handling {
    pub(crate) handler: HandlerFuture,
    /// `None` only once a first poll finished the call (nothing runs it again).
    pub(crate) context: Option<Context>,
    pub(crate) span: Span,
    /// When a handler that waits is given up (the caller's deadline, else the method's own,
    /// from when the call was prepared).
    pub(crate) deadline: Option<Instant>,
    pub(crate) ids: CallIds,
    /// Set for a call that returns a stream.
    pub(crate) items: Option<Items>,
}

impl Handling {
    /// Polls the handler once, right here, in its context and span: the answer if it finished
    /// (a call that returns one value; a streaming call must go through
    /// [`into_future`](Self::into_future)). A handler left waiting is polled again by its
    /// future.
    pub(crate) fn poll_first(&mut self, cx: &mut TaskContext<'_>) -> Poll<Answer> {
        debug_assert!(self.items.is_none(), "a streaming call needs its future");
        let _entered = (!self.span.is_disabled()).then(|| self.span.enter());
        let handler = &mut self.handler;
        let Some(context) = self.context.take() else {
            // Not reached: a call is polled in place once, and goes on as a task if it waits.
            return Poll::Pending;
        };
        // The context goes into the task-local by value and is dropped with it; a handler
        // left waiting needs it again, so only then is it copied back out.
        let (polled, waiting) = super::context::in_scope(context, || {
            let polled = catch_unwind(AssertUnwindSafe(|| handler.as_mut().poll(cx)));
            let waiting = matches!(polled, Ok(Poll::Pending)).then(Context::current);
            (polled, waiting.flatten())
        });
        self.context = waiting;
        match polled {
            Err(_panic) => Poll::Ready(self.ids.answer(Err(()))),
            Ok(Poll::Ready(outcome)) => Poll::Ready(self.ids.answer(Ok(outcome))),
            Ok(Poll::Pending) => Poll::Pending,
        }
    }

    /// The future of the call's answer: the handler in its context and span, its panics
    /// caught, within its deadline once it waits; a returned stream's items sent as the
    /// client's credit allows.
    pub(crate) fn into_future(self) -> ReplyFuture {
        let Handling {
            handler,
            context,
            span,
            deadline,
            ids,
            items,
        } = self;
        let context = context.expect("only a call its first poll left waiting is run on");
        let work = context.scope(async move {
            let outcome = AssertUnwindSafe(handler)
                .catch_unwind()
                .await
                .map_err(|_panic| ());
            match (outcome, items) {
                (Ok(Ok(body)), Some(Items { credit, sink })) => match body.into_stream() {
                    // Boxed: a call that sends one answer should not carry this future's size.
                    Ok(items) => {
                        Box::pin(streaming::send_items(
                            items,
                            &sink,
                            &credit,
                            ids.method,
                            ids.call_id,
                        ))
                        .await
                    }
                    Err(body) => ids.answer(Ok(Ok(body))),
                },
                (outcome, _) => ids.answer(outcome),
            }
        });
        let reply = async move {
            let mut work = pin!(work);
            // Most handlers finish on their first poll: only one that waits needs a timer.
            let first = poll_fn(|cx| Poll::Ready(work.as_mut().poll(cx))).await;
            match (first, deadline) {
                (Poll::Ready(answer), _) => answer,
                (Poll::Pending, Some(at)) => tokio::time::timeout_at(at.into(), work)
                    .await
                    .unwrap_or_else(|_| ids.failed(WireError::DeadlineExceeded)),
                (Poll::Pending, None) => work.await,
            }
        };
        // A span nobody records is not worth entering on every poll.
        if span.is_disabled() {
            Box::pin(reply)
        } else {
            Box::pin(reply.instrument(span))
        }
    }
}

/// The wire's words for a call that could not be dispatched.
pub(crate) fn wire_error(error: DispatchError) -> WireError {
    match error {
        DispatchError::UnknownMethod(_) => WireError::UnknownMethod,
        DispatchError::BadRequest(reason) => WireError::BadRequest(reason),
    }
}
