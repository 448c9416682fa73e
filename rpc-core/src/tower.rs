//! [tower](::tower), re-exported, and what the generated clients need to be tower services.
//!
//! For each service, `#[service]` generates `{Trait}Request` (one variant per method that
//! streams neither way, its arguments as named fields, borrowed ones owned), `{Trait}Response`
//! (one variant per such method, holding what it returns) and
//! `impl tower::Service<{Trait}Request> for {Trait}Client` with `Error = RpcError`. So tower's
//! layers apply unchanged: timeout, retry, rate and concurrency limits, load shedding,
//! buffering and balancing. Everything of tower is reachable from here
//! (`rpc_core::tower::ServiceBuilder`, `rpc_core::tower::timeout::error::Elapsed`, ...), so a
//! crate needs no tower dependency of its own (the versions then always match).
//!
//! ```no_run
//! use std::time::Duration;
//! use rpc_core::tower::{BoxError, RetryIdempotent, Service, ServiceBuilder, ServiceExt};
//!
//! #[rpc_core::service]
//! pub trait Store {
//!     /// Reads a value.
//!     #[rpc(idempotent)]
//!     async fn get(&self, key: &str) -> Option<Vec<u8>>;
//! }
//!
//! # async fn example() -> Result<(), BoxError> {
//! let client = StoreClient::connect("tcp://127.0.0.1:7000").await?;
//! let mut store = ServiceBuilder::new()
//!     .buffer(1024) // one cloneable handle: rate_limit's service is not `Clone`
//!     .timeout(Duration::from_secs(2))
//!     .rate_limit(100, Duration::from_secs(1))
//!     .retry(RetryIdempotent::default()) // `#[rpc(idempotent)]` methods only
//!     .load_shed()
//!     .concurrency_limit(32)
//!     .service(client);
//! let request = StoreRequest::Get { key: "k".to_owned() };
//! match store.ready().await?.call(request).await {
//!     Ok(StoreResponse::Get(value)) => println!("{value:?}"),
//!     // Layers box their errors: the client's own come back with `downcast`.
//!     Err(error) => match error.downcast::<rpc_core::RpcError>() {
//!         Ok(rpc) => eprintln!("the call failed: {rpc}"),
//!         Err(other) => eprintln!("a layer refused the call: {other}"),
//!     },
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Backpressure
//!
//! A client's `poll_ready` is always ready: its calls share one multiplexed connection, and
//! the number in flight is bounded inside the client (it waits for a slot when the server's
//! limit is reached). Put a `concurrency_limit` (and a `load_shed` over it, to fail fast
//! rather than wait) in front of it to bound calls yourself.
//!
//! # Pitfalls
//!
//! - `rate_limit` and `balance` make services that are not `Clone`; `retry` needs a `Clone`
//!   inner service and shared limits need one handle: put `buffer` in front of them.
//! - Streaming methods are not in the request enum: call them on the client.
//! - A trait method named `call` or `poll_ready` is an inherent method of the client and wins
//!   over tower's in method-call syntax: write `Service::call(&mut client, request)` or use
//!   `ServiceExt::oneshot`.
//! - Retrying needs `{Trait}Request: Clone`, which holds when every argument type is `Clone`.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;

use ::tower::retry::Policy;
use ::tower::retry::backoff::{Backoff, ExponentialBackoff, ExponentialBackoffMaker, MakeBackoff};
use ::tower::util::rng::HasherRng;

pub use ::tower::*;

use crate::error::RpcError;

/// The future of a generated client's `tower::Service::call`.
pub type CallFuture<T> = Pin<Box<dyn Future<Output = Result<T, RpcError>> + Send + 'static>>;

/// A request that knows whether calling it twice is as good as once: the generated
/// `{Trait}Request` enums implement it from `#[rpc(idempotent)]`.
pub trait IdempotentRequest {
    /// Whether the request's method is `#[rpc(idempotent)]`.
    fn is_idempotent(&self) -> bool;

    /// The method's wire name (as in the schema and in [`RpcError`]'s messages).
    fn method_name(&self) -> &'static str;
}

/// An error that may be, or may carry, an [`RpcError`]: the client's own, or the
/// [`BoxError`] that tower's layers turn every error into.
pub trait AsRpcError {
    /// The [`RpcError`] inside, if any.
    fn as_rpc_error(&self) -> Option<&RpcError>;
}

impl AsRpcError for RpcError {
    fn as_rpc_error(&self) -> Option<&RpcError> {
        Some(self)
    }
}

impl AsRpcError for Box<dyn StdError + Send + Sync> {
    fn as_rpc_error(&self) -> Option<&RpcError> {
        self.downcast_ref()
    }
}

/// A [`retry::Policy`] that calls an `#[rpc(idempotent)]` method again, after tower's
/// [`ExponentialBackoff`], when it failed because the connection broke or could not be made
/// (or its server was shutting down). Other methods are never sent twice: their effect might
/// happen twice. Other errors (the application's, a layer's such as `Overloaded` or
/// `Elapsed`) are returned as they are.
///
/// Retries go through the same inner service: behind a plain client they reach the same
/// connection, so pair it with something that moves on: a client that reconnects, or a
/// balancer whose discovery drops the broken endpoint.
///
/// ```
/// use std::time::Duration;
/// use rpc_core::tower::RetryIdempotent;
/// use rpc_core::tower::retry::backoff::{ExponentialBackoffMaker, MakeBackoff};
/// use rpc_core::tower::util::rng::HasherRng;
///
/// let (min, max) = (Duration::from_millis(10), Duration::from_secs(1));
/// let backoff = ExponentialBackoffMaker::new(min, max, 0.5, HasherRng::default())
///     .expect("min <= max, jitter in range")
///     .make_backoff();
/// let policy = RetryIdempotent::new(5).backoff(backoff);
/// // ServiceBuilder::new().retry(policy).service(client)
/// # let _ = policy;
/// ```
#[derive(Debug, Clone)]
pub struct RetryIdempotent {
    retries: usize,
    backoff: ExponentialBackoff,
}

impl RetryIdempotent {
    /// At most `retries` more attempts per request, with the default backoff (50 ms, doubling
    /// up to 2 s, plus up to half again of jitter).
    pub fn new(retries: usize) -> Self {
        let backoff = ExponentialBackoffMaker::new(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(2),
            0.5,
            HasherRng::default(),
        )
        .expect("valid backoff bounds")
        .make_backoff();
        RetryIdempotent { retries, backoff }
    }

    /// The same, waiting `backoff` before each retry.
    pub fn backoff(self, backoff: ExponentialBackoff) -> Self {
        RetryIdempotent { backoff, ..self }
    }

    /// Whether `error` means the call never reached a working server, or its connection
    /// broke: safe to make again for an idempotent method ([`RpcError::is_retryable`]).
    pub fn is_retryable(error: &RpcError) -> bool {
        error.is_retryable()
    }
}

impl Default for RetryIdempotent {
    /// Three retries, with the default backoff.
    fn default() -> Self {
        RetryIdempotent::new(3)
    }
}

impl<Req, Res, E> Policy<Req, Res, E> for RetryIdempotent
where
    Req: IdempotentRequest + Clone,
    E: AsRpcError,
{
    type Future = <ExponentialBackoff as Backoff>::Future;

    fn retry(&mut self, request: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        let Err(error) = result else { return None };
        let retryable = error.as_rpc_error().is_some_and(Self::is_retryable);
        if !retryable || !request.is_idempotent() || self.retries == 0 {
            return None;
        }
        self.retries -= 1;
        Some(self.backoff.next_backoff())
    }

    fn clone_request(&mut self, request: &Req) -> Option<Req> {
        // A request that will never be retried need not be kept.
        request.is_idempotent().then(|| request.clone())
    }
}
