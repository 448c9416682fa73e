//! Where a client's calls go: one connection for the client's life, a connection made again
//! when it breaks ([`Dialer`], under a [`ReconnectPolicy`]), or the replicas behind a DNS name
//! ([`Balanced`]).

use std::sync::Arc;

use tokio::time::Instant;
use tower::retry::backoff::{Backoff, ExponentialBackoff};

use super::discovery::Balanced;
use super::{Client, ClientOptions, ReconnectPolicy, Shared};
use crate::error::RpcError;
use crate::schema::ServiceSchema;

/// Where a client's calls go.
#[derive(Clone)]
pub(crate) enum Route {
    /// One connection, for the client's life.
    Fixed(Arc<Shared>),
    /// One address, connected to again when the connection breaks.
    Reconnecting(Arc<Dialer>),
    /// Every replica a DNS name resolves to.
    Balanced(Arc<Balanced>),
}

impl Route {
    /// A route to `address` that starts on connection `first` and connects again under
    /// `policy` when it breaks.
    pub(crate) fn reconnecting(
        address: &str,
        schema: &'static ServiceSchema,
        options: ClientOptions,
        policy: ReconnectPolicy,
        first: Arc<Shared>,
    ) -> Result<Route, RpcError> {
        let dialer = Dialer::new(address, schema, options, &policy)?;
        dialer.adopt(first);
        Ok(Route::Reconnecting(Arc::new(dialer)))
    }

    /// The service the route's connections serve.
    pub(crate) fn schema(&self) -> &'static ServiceSchema {
        match self {
            Route::Fixed(shared) => shared.schema,
            Route::Reconnecting(dialer) => dialer.schema,
            Route::Balanced(balanced) => balanced.schema(),
        }
    }

    /// The reconnect policy of a route that has one.
    pub(crate) fn policy(&self) -> Option<&ReconnectPolicy> {
        match self {
            Route::Fixed(_) => None,
            Route::Reconnecting(dialer) => Some(&dialer.policy),
            Route::Balanced(balanced) => Some(balanced.policy()),
        }
    }

    /// The working connections now.
    pub(crate) fn live(&self) -> Vec<Arc<Shared>> {
        match self {
            Route::Fixed(shared) => vec![shared.clone()],
            Route::Reconnecting(dialer) => dialer.live().into_iter().collect(),
            Route::Balanced(balanced) => balanced.live(),
        }
    }

    /// A working connection for the next call of `method`: the one there is, one made again
    /// (unless the backoff says not yet), or the replica the balancer picks, by `deadline`.
    /// Making a connection again is bounded by the call's deadline, not only by the (longer)
    /// connect timeout: the call then fails with `DeadlineExceeded`.
    pub(crate) async fn session(
        &self,
        method: u32,
        deadline: Option<Instant>,
    ) -> Result<Arc<Shared>, RpcError> {
        match (self, deadline) {
            (Route::Fixed(shared), _) => Ok(shared.clone()),
            (Route::Reconnecting(dialer), None) => dialer.session().await,
            (Route::Reconnecting(dialer), Some(deadline)) => {
                tokio::time::timeout_at(deadline, dialer.session())
                    .await
                    .map_err(|_| RpcError::DeadlineExceeded {
                        method: dialer.schema.method_name(method),
                        // The caller knows the whole timeout, and says it.
                        timeout: std::time::Duration::ZERO,
                    })?
            }
            (Route::Balanced(balanced), _) => balanced.pick(deadline).await,
        }
    }
}

/// Connections to one address, made again (at most once at a time, and not before the
/// backoff allows) when the last one broke.
pub(crate) struct Dialer {
    address: String,
    schema: &'static ServiceSchema,
    options: ClientOptions,
    policy: ReconnectPolicy,
    current: std::sync::Mutex<Option<Arc<Shared>>>,
    /// Held while connecting: one attempt at a time.
    attempts: Arc<tokio::sync::Mutex<Attempts>>,
}

/// When the next attempt to connect may start.
struct Attempts {
    backoff: ExponentialBackoff,
    /// `None`: at once (the last attempt succeeded, or none failed yet).
    not_before: Option<Instant>,
    /// Why the last attempt failed.
    last_error: Option<String>,
}

impl Dialer {
    /// A dialer of `address` with `options` (its own reconnect field ignored) under `policy`.
    pub(crate) fn new(
        address: &str,
        schema: &'static ServiceSchema,
        options: ClientOptions,
        policy: &ReconnectPolicy,
    ) -> Result<Dialer, RpcError> {
        Ok(Dialer {
            address: address.to_owned(),
            schema,
            options,
            policy: policy.clone(),
            current: std::sync::Mutex::new(None),
            attempts: Arc::new(tokio::sync::Mutex::new(Attempts {
                backoff: policy.make_backoff()?,
                not_before: None,
                last_error: None,
            })),
        })
    }

    /// The address this dialer connects to.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    /// Takes `shared` as the current connection.
    pub(crate) fn adopt(&self, shared: Arc<Shared>) {
        *self.current() = Some(shared);
    }

    fn current(&self) -> std::sync::MutexGuard<'_, Option<Arc<Shared>>> {
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current connection, if it works.
    pub(crate) fn live(&self) -> Option<Arc<Shared>> {
        self.current().clone().filter(|shared| !shared.is_closed())
    }

    /// The working connection, or a new one: fails at once while the backoff after a failed
    /// attempt lasts, and with the attempt's error when it fails.
    ///
    /// The attempt runs as a task of its own that holds the lock: a caller that gives up (its
    /// deadline passed) does not cut it short, and the callers queued behind it see how it
    /// ended instead of each starting another.
    pub(crate) async fn session(self: &Arc<Self>) -> Result<Arc<Shared>, RpcError> {
        if let Some(shared) = self.live() {
            return Ok(shared);
        }
        let attempts = self.attempts.clone().lock_owned().await;
        if let Some(shared) = self.live() {
            return Ok(shared);
        }
        let now = Instant::now();
        if let Some(not_before) = attempts.not_before.filter(|at| *at > now) {
            return Err(RpcError::disconnected(format_args!(
                "reconnecting to {}: next attempt in {:?} (last: {})",
                self.address,
                not_before - now,
                attempts
                    .last_error
                    .as_deref()
                    .unwrap_or("the connection broke"),
            )));
        }
        let dialer = self.clone();
        tokio::spawn(async move { dialer.attempt(attempts).await })
            .await
            .unwrap_or_else(|e| {
                Err(RpcError::disconnected(format_args!(
                    "reconnecting to {}: {e}",
                    self.address
                )))
            })
    }

    /// One attempt to connect, the lock on the attempts held.
    async fn attempt(
        &self,
        mut attempts: tokio::sync::OwnedMutexGuard<Attempts>,
    ) -> Result<Arc<Shared>, RpcError> {
        match Client::dial(&self.address, self.schema, &self.options).await {
            Ok(shared) => {
                tracing::info!(address = %self.address, "reconnected");
                attempts.backoff = self.policy.make_backoff()?;
                attempts.not_before = None;
                attempts.last_error = None;
                self.adopt(shared.clone());
                Ok(shared)
            }
            Err(error) => {
                // tower's exponential backoff with jitter says when to try again.
                attempts.not_before = Some(attempts.backoff.next_backoff().deadline());
                attempts.last_error = Some(error.to_string());
                tracing::debug!(address = %self.address, %error, "reconnecting failed");
                Err(error)
            }
        }
    }
}
