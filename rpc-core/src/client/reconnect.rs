//! [`ReconnectPolicy`], and calls that survive a broken connection: tower's retry, with
//! tower's exponential backoff and jitter, for `#[rpc(idempotent)]` methods only.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::time::Instant;
use tower::retry::backoff::{Backoff, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use tower::retry::{Policy, Retry};
use tower::util::rng::HasherRng;
use tower::{Service, ServiceExt};

use super::route::Route;
use super::{Client, protocol};
use crate::error::RpcError;

/// How a client connects again after its connection broke, and whether it calls idempotent
/// methods again.
///
/// Calls in flight when the connection breaks fail with [`RpcError::Disconnected`] (unless
/// retried, below); the next call connects again. After a failed attempt the next waits an
/// exponentially growing backoff (`min_backoff`, doubling up to `max_backoff`) plus a random
/// jitter of up to `jitter` times it, so that many clients of a restarted server do not
/// reconnect in step; calls made meanwhile fail at once with `Disconnected`.
///
/// With `retry_idempotent` (the default), a call of an `#[rpc(idempotent)]` method that fails
/// because its connection broke or could not be made ([`RpcError::is_retryable`]) is made
/// again after the same kind of backoff, as long as its deadline allows. Other methods are
/// never made twice: their effect might happen twice.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReconnectPolicy {
    /// The first backoff (after the first failure).
    pub min_backoff: Duration,
    /// The longest backoff.
    pub max_backoff: Duration,
    /// Random extra wait, as a fraction of the backoff (0.0 to 1.0 and beyond; 0: none).
    pub jitter: f64,
    /// Whether idempotent methods are called again after a broken connection.
    pub retry_idempotent: bool,
}

impl Default for ReconnectPolicy {
    /// 50 ms, doubling up to 5 s, plus up to half again of jitter; idempotent calls retried.
    fn default() -> Self {
        ReconnectPolicy {
            min_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(5),
            jitter: 0.5,
            retry_idempotent: true,
        }
    }
}

impl ReconnectPolicy {
    /// The default policy (see [`Default`]).
    pub fn new() -> ReconnectPolicy {
        ReconnectPolicy::default()
    }

    /// Backoff from `min` doubling up to `max`.
    pub fn backoff(mut self, min: Duration, max: Duration) -> ReconnectPolicy {
        self.min_backoff = min;
        self.max_backoff = max;
        self
    }

    /// Random extra wait of up to `fraction` of each backoff.
    pub fn jitter(mut self, fraction: f64) -> ReconnectPolicy {
        self.jitter = fraction;
        self
    }

    /// Whether idempotent methods are called again after a broken connection.
    pub fn retry_idempotent(mut self, retry: bool) -> ReconnectPolicy {
        self.retry_idempotent = retry;
        self
    }

    /// A fresh backoff (tower's), or why the policy's numbers cannot make one.
    pub(crate) fn make_backoff(&self) -> Result<ExponentialBackoff, RpcError> {
        ExponentialBackoffMaker::new(
            self.min_backoff,
            self.max_backoff,
            self.jitter,
            HasherRng::default(),
        )
        .map(|mut maker| maker.make_backoff())
        .map_err(|e| RpcError::InvalidOptions {
            reason: format!("reconnect policy {self:?}: {e:?}"),
        })
    }
}

/// One attempt of a call: its method, its arguments and when it must be done.
struct Attempt<'a, A: ?Sized> {
    method: u32,
    args: &'a A,
    deadline: Option<Instant>,
}

impl<A: ?Sized> Clone for Attempt<'_, A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A: ?Sized> Copy for Attempt<'_, A> {}

/// Makes one attempt: finds a working connection on the client's route and calls on it.
/// (It owns a handle rather than borrowing one, so its `Service` impl holds for every
/// lifetime of the arguments, which the compiler needs to see the call's future is `Send`.)
struct Attempts<R> {
    client: Client,
    returns: PhantomData<fn() -> R>,
}

impl<R> Clone for Attempts<R> {
    fn clone(&self) -> Self {
        Attempts {
            client: self.client.clone(),
            returns: PhantomData,
        }
    }
}

impl<'a, A, R> Service<Attempt<'a, A>> for Attempts<R>
where
    A: Serialize + Sync + ?Sized,
    R: DeserializeOwned + Send,
{
    type Response = R;
    type Error = RpcError;
    type Future = Pin<Box<dyn Future<Output = Result<R, RpcError>> + Send + 'a>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, attempt: Attempt<'a, A>) -> Self::Future {
        let client = self.client.clone();
        Box::pin(async move {
            let shared = client
                .route
                .session(attempt.method, attempt.deadline)
                .await?;
            match attempt.deadline {
                None => client.call_on(&shared, attempt.method, attempt.args).await,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    client
                        .with_timeout(Some(left))
                        .call_on(&shared, attempt.method, attempt.args)
                        .await
                }
            }
        })
    }
}

/// tower's retry policy for calls: again only for an idempotent method, only for a failure
/// that never reached a working server, after tower's backoff, and only if the backoff ends
/// before the call's deadline.
#[derive(Clone)]
struct RetryWithinDeadline {
    idempotent: bool,
    deadline: Option<Instant>,
    backoff: ExponentialBackoff,
}

impl<'a, A: ?Sized, R> Policy<Attempt<'a, A>, R, RpcError> for RetryWithinDeadline {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _: &mut Attempt<'a, A>,
        result: &mut Result<R, RpcError>,
    ) -> Option<Self::Future> {
        let Err(error) = result else {
            return None;
        };
        if !self.idempotent || !error.is_retryable() {
            return None;
        }
        let wait = self.backoff.next_backoff();
        if self
            .deadline
            .is_some_and(|deadline| wait.deadline() >= deadline)
        {
            return None;
        }
        tracing::debug!(%error, "calling an idempotent method again");
        Some(wait)
    }

    fn clone_request(&mut self, attempt: &Attempt<'a, A>) -> Option<Attempt<'a, A>> {
        self.idempotent.then_some(*attempt)
    }
}

/// [`Client::call`] on a route that connects again: tower's `Retry` over single attempts.
pub(super) async fn call<A, R>(
    client: &Client,
    route: &Route,
    method: u32,
    args: &A,
) -> Result<R, RpcError>
where
    A: Serialize + Sync + ?Sized,
    R: DeserializeOwned + Send,
{
    let schema = route.schema();
    let timeout = protocol::call_timeout(schema, &client.options, method);
    let deadline = timeout.and_then(|t| Instant::now().checked_add(t));
    let policy = route
        .policy()
        .expect("a route that connects again has a policy");
    let idempotent = policy.retry_idempotent && schema.method(method).is_some_and(|m| m.idempotent);
    let retry = RetryWithinDeadline {
        idempotent,
        deadline,
        backoff: policy.make_backoff()?,
    };
    let attempts = Attempts {
        client: client.clone(),
        returns: PhantomData,
    };
    let attempt = Attempt {
        method,
        args,
        deadline,
    };
    Retry::new(retry, attempts)
        .oneshot(attempt)
        .await
        .map_err(|error| match error {
            // Each attempt had what was left; the caller set the whole.
            RpcError::DeadlineExceeded { method, .. } => RpcError::DeadlineExceeded {
                method,
                timeout: timeout.unwrap_or_default(),
            },
            other => other,
        })
}
