//! `dns+tcp://NAME:PORT` and `dns+tls://NAME:PORT`: every replica behind a DNS name.
//!
//! The name is resolved with hickory-resolver from the system's configuration
//! (`/etc/resolv.conf`, `/etc/hosts`), every A and AAAA record. The client keeps one
//! connection per address and spreads calls over them with tower's power-of-two-choices
//! balancer (`tower::balance::p2c`), comparing the calls each connection has in flight. The
//! name is resolved again when its records' TTL runs out: a new address gets a connection and
//! starts receiving calls; an address gone from DNS is removed from the balancer (calls in
//! flight on it finish, none start); a replica whose connection broke is left out until a
//! connection to it can be made again (tower's backoff between attempts).
//!
//! Kubernetes: a headless Service (`clusterIP: None`) is a DNS name with one A record per
//! ready pod, so `dns+tcp://calc.default.svc.cluster.local:7000` balances over its pods.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::LookupIpStrategy;
use rpc_transport::{TlsClientSettings, TransportError};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;
use tokio::time::Instant;
use tower::balance::p2c::Balance;
use tower::discover::Change;
use tower::load::Load;
use tower::{BoxError, Service};

use super::route::{Dialer, Route};
use super::{ClientOptions, ReconnectPolicy, Shared};
use crate::error::RpcError;
use crate::schema::ServiceSchema;

/// The soonest a name is resolved again, whatever its TTL (a TTL of 0 must not mean a loop).
const SOONEST_RERESOLVE: Duration = Duration::from_millis(500);
/// The latest a name is resolved again, whatever its TTL.
const LATEST_RERESOLVE: Duration = Duration::from_secs(300);
/// Connections to replicas being made at once (a name may resolve to very many addresses).
const DIALS_AT_ONCE: usize = 32;
/// How often replicas that are down are tried again between resolutions (each within its
/// own backoff).
const RETRY_DOWN: Duration = Duration::from_millis(250);

/// Whether `address` is a `dns+` address.
pub(crate) fn is_discovery(address: &str) -> bool {
    address
        .get(..4)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("dns+"))
}

/// A `dns+` address taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// The transport of each replica: `tcp` or `tls`.
    scheme: &'static str,
    name: String,
    port: u16,
}

fn parse(address: &str) -> Result<Target, RpcError> {
    let invalid = |reason: &str| {
        RpcError::Address(TransportError::InvalidAddress {
            address: address.to_owned(),
            reason: reason.to_owned(),
        })
    };
    let (scheme, rest) = address
        .split_once("://")
        .ok_or_else(|| invalid("expected dns+tcp://NAME:PORT or dns+tls://NAME:PORT"))?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "dns+tcp" => "tcp",
        "dns+tls" => "tls",
        _ => {
            return Err(invalid(
                "the DNS forms are dns+tcp://NAME:PORT and dns+tls://NAME:PORT",
            ));
        }
    };
    // NAME:PORT, or [IPV6]:PORT.
    let (name, port) = match rest.strip_prefix('[') {
        Some(bracketed) => bracketed
            .split_once("]:")
            .ok_or_else(|| invalid("expected [IPV6]:PORT"))?,
        None => rest
            .rsplit_once(':')
            .ok_or_else(|| invalid("expected NAME:PORT after the scheme"))?,
    };
    if !port.bytes().all(|b| b.is_ascii_digit()) || port.is_empty() {
        return Err(invalid("the port is not a number from 1 to 65535"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| invalid("the port is not a number from 1 to 65535"))?;
    if port == 0 {
        return Err(invalid("port 0 names no server"));
    }
    let bracketed = rest.starts_with('[');
    if name.is_empty()
        || name.contains(['/', '?', '#', '@', '[', ']'])
        || (name.contains(':') && !bracketed)
    {
        return Err(invalid(
            "expected a host name before the port (an IPv6 address in brackets)",
        ));
    }
    Ok(Target {
        scheme,
        name: name.to_owned(),
        port,
    })
}

/// What the balancer hands a call: nothing; the endpoint answers with its connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pick;

/// One replica in the balancer: its connection, and a flag raised when the balancer drops it
/// for a broken connection (so the resolver connects again and puts it back).
struct Endpoint {
    dialer: Arc<Dialer>,
    evicted: Arc<AtomicBool>,
}

impl Service<Pick> for Endpoint {
    type Response = Arc<Shared>;
    type Error = RpcError;
    type Future = std::future::Ready<Result<Arc<Shared>, RpcError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), RpcError>> {
        if self.dialer.live().is_some() {
            return Poll::Ready(Ok(()));
        }
        self.evicted.store(true, Ordering::Release);
        Poll::Ready(Err(self.gone()))
    }

    fn call(&mut self, _: Pick) -> Self::Future {
        std::future::ready(self.dialer.live().ok_or_else(|| self.gone()))
    }
}

impl Endpoint {
    fn gone(&self) -> RpcError {
        RpcError::disconnected(format_args!(
            "the connection to replica {} broke",
            self.dialer.address()
        ))
    }
}

impl Load for Endpoint {
    type Metric = usize;

    /// Calls in flight on the replica's connection.
    fn load(&self) -> usize {
        self.dialer
            .live()
            .map_or(usize::MAX, |shared| shared.pending.len())
    }
}

type Changes = Pin<Box<dyn Stream<Item = Result<Change<SocketAddr, Endpoint>, Infallible>> + Send>>;

/// A replica the resolver knows.
struct Known {
    dialer: Arc<Dialer>,
    /// Not in the balancer now (never connected, or dropped for a broken connection).
    evicted: Arc<AtomicBool>,
}

/// What the client and its resolver task share.
struct Replicas {
    target: Target,
    schema: &'static ServiceSchema,
    /// Each replica's options (for `tls`, verifying the certificate for the DNS name).
    options: ClientOptions,
    policy: ReconnectPolicy,
    known: std::sync::Mutex<HashMap<SocketAddr, Known>>,
    changes: mpsc::UnboundedSender<Change<SocketAddr, Endpoint>>,
}

/// The replicas behind a DNS name, balanced.
pub(crate) struct Balanced {
    replicas: Arc<Replicas>,
    balance: tokio::sync::Mutex<Balance<Changes, Pick>>,
    resolver: AbortHandle,
}

impl Drop for Balanced {
    fn drop(&mut self) {
        self.resolver.abort();
    }
}

impl Balanced {
    pub(crate) fn schema(&self) -> &'static ServiceSchema {
        self.replicas.schema
    }

    pub(crate) fn policy(&self) -> &ReconnectPolicy {
        &self.replicas.policy
    }

    /// The replicas' working connections.
    pub(crate) fn live(&self) -> Vec<Arc<Shared>> {
        self.replicas
            .known()
            .values()
            .filter_map(|known| known.dialer.live())
            .collect()
    }

    /// The connection of the replica tower's p2c balancer picks, waiting (until `deadline`, or
    /// the connect timeout) while none is reachable.
    pub(crate) async fn pick(&self, deadline: Option<Instant>) -> Result<Arc<Shared>, RpcError> {
        let bound = deadline.unwrap_or_else(|| {
            let now = Instant::now();
            now.checked_add(self.replicas.options.connect_timeout)
                .unwrap_or(now + LATEST_RERESOLVE)
        });
        let none_reachable = || {
            RpcError::disconnected(format_args!(
                "no replica of {} is reachable",
                self.replicas.target.name
            ))
        };
        let mut balance = tokio::time::timeout_at(bound, self.balance.lock())
            .await
            .map_err(|_| none_reachable())?;
        match tokio::time::timeout_at(bound, poll_fn(|cx| balance.poll_ready(cx))).await {
            Err(_) => Err(none_reachable()),
            Ok(Err(error)) => Err(from_box(error)),
            Ok(Ok(())) => balance.call(Pick).await.map_err(from_box),
        }
    }
}

/// The `RpcError` inside a tower error.
fn from_box(error: BoxError) -> RpcError {
    match error.downcast::<RpcError>() {
        Ok(error) => *error,
        Err(other) => RpcError::disconnected(other),
    }
}

impl Replicas {
    fn known(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, Known>> {
        self.known.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the balancer's replicas those of `addresses`: removes the others, connects to
    /// the new ones and to those dropped for a broken connection (each within its backoff),
    /// and puts in those connected. Returns the first failure, if no replica is connected.
    async fn apply(&self, addresses: &HashSet<SocketAddr>) -> Option<RpcError> {
        let to_connect: Vec<(SocketAddr, Arc<Dialer>, Arc<AtomicBool>)> = {
            let mut known = self.known();
            known.retain(|address, _| {
                let keep = addresses.contains(address);
                if !keep {
                    tracing::info!(replica = %address, name = %self.target.name, "replica gone from DNS");
                    let _ = self.changes.send(Change::Remove(*address));
                }
                keep
            });
            let mut to_connect = Vec::new();
            for address in addresses {
                let entry = match known.get(address) {
                    Some(entry) => entry,
                    None => {
                        let replica = format!("{}://{address}", self.target.scheme);
                        let dialer = match Dialer::new(
                            &replica,
                            self.schema,
                            self.options.clone(),
                            &self.policy,
                        ) {
                            Ok(dialer) => Arc::new(dialer),
                            Err(error) => return Some(error),
                        };
                        known.entry(*address).or_insert(Known {
                            dialer,
                            evicted: Arc::new(AtomicBool::new(true)),
                        })
                    }
                };
                if entry.evicted.load(Ordering::Acquire) {
                    to_connect.push((*address, entry.dialer.clone(), entry.evicted.clone()));
                }
            }
            to_connect
        };
        let attempts = to_connect
            .into_iter()
            .map(|(address, dialer, evicted)| async move {
                let outcome = dialer.session().await;
                (address, dialer, evicted, outcome)
            });
        let mut first_error: Option<RpcError> = None;
        let outcomes: Vec<_> = futures_util::stream::iter(attempts)
            .buffer_unordered(DIALS_AT_ONCE)
            .collect()
            .await;
        for (address, dialer, evicted, outcome) in outcomes {
            match outcome {
                Ok(_) => {
                    tracing::info!(replica = %address, name = %self.target.name, "replica added");
                    evicted.store(false, Ordering::Release);
                    let endpoint = Endpoint { dialer, evicted };
                    let _ = self.changes.send(Change::Insert(address, endpoint));
                }
                Err(error) => {
                    // The most telling failure: one that got past reaching the replica (a
                    // refused certificate, say) rather than "connection refused".
                    let unreached = |e: &RpcError| {
                        matches!(
                            e,
                            RpcError::Connect {
                                source: TransportError::Connect { .. },
                                ..
                            }
                        )
                    };
                    if first_error
                        .as_ref()
                        .is_none_or(|kept| unreached(kept) && !unreached(&error))
                    {
                        first_error = Some(error);
                    }
                }
            }
        }
        let connected = self
            .known()
            .values()
            .any(|k| !k.evicted.load(Ordering::Acquire));
        if connected { None } else { first_error }
    }

    fn any_down(&self) -> bool {
        self.known()
            .values()
            .any(|k| k.evicted.load(Ordering::Acquire))
    }
}

/// Every address `target` resolves to, and until when the answer holds.
async fn resolve(
    resolver: &TokioResolver,
    target: &Target,
) -> Result<(HashSet<SocketAddr>, Instant), RpcError> {
    let failed = |reason: String| RpcError::Resolve {
        name: target.name.clone(),
        reason,
    };
    let lookup = resolver
        .lookup_ip(target.name.as_str())
        .await
        .map_err(|e| failed(e.to_string()))?;
    let addresses: HashSet<SocketAddr> = lookup
        .iter()
        .map(|ip| SocketAddr::new(ip, target.port))
        .collect();
    if addresses.is_empty() {
        return Err(failed("no A or AAAA record".to_owned()));
    }
    let valid_until = Instant::from_std(lookup.valid_until());
    Ok((addresses, valid_until))
}

/// A resolver from the system's configuration, asking for both A and AAAA records.
fn system_resolver(target: &Target) -> Result<TokioResolver, RpcError> {
    let mut builder = TokioResolver::builder_tokio().map_err(|e| RpcError::Resolve {
        name: target.name.clone(),
        reason: format!("cannot read the system's resolver configuration: {e}"),
    })?;
    builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
    Ok(builder.build())
}

/// Connects to the replicas of a `dns+` address: resolves it, connects to every address (at
/// least one must answer), and starts the task that resolves it again as its TTL runs out.
pub(crate) async fn connect(
    address: &str,
    schema: &'static ServiceSchema,
    mut options: ClientOptions,
) -> Result<Route, RpcError> {
    let target = parse(address)?;
    if target.scheme == "tls" {
        let settings = match options.transport.setting::<TlsClientSettings>() {
            Some(settings) => settings.clone(),
            None => TlsClientSettings::with_system_roots().map_err(RpcError::Address)?,
        };
        let settings = settings
            .verifying_name_unless_set(&target.name)
            .map_err(RpcError::Address)?;
        options.transport = options.transport.with_setting(settings);
    }
    let policy = options.reconnect.clone().unwrap_or_default();
    // Checked now, not at the first reconnect.
    policy.make_backoff()?;
    let resolver = system_resolver(&target)?;
    let (addresses, valid_until) =
        tokio::time::timeout(options.connect_timeout, resolve(&resolver, &target))
            .await
            .map_err(|_| RpcError::Resolve {
                name: target.name.clone(),
                reason: format!(
                    "no answer within the connect timeout ({:?})",
                    options.connect_timeout
                ),
            })??;
    let (changes, received) = mpsc::unbounded_channel();
    let replicas = Arc::new(Replicas {
        target,
        schema,
        options,
        policy,
        known: std::sync::Mutex::new(HashMap::new()),
        changes,
    });
    if let Some(error) = replicas.apply(&addresses).await {
        return Err(error);
    }
    let mut received = received;
    let changes: Changes = Box::pin(futures_util::stream::poll_fn(move |cx| {
        received.poll_recv(cx).map(|change| change.map(Ok))
    }));
    let resolver =
        tokio::spawn(keep_resolving(replicas.clone(), resolver, valid_until)).abort_handle();
    Ok(Route::Balanced(Arc::new(Balanced {
        replicas,
        balance: tokio::sync::Mutex::new(Balance::new(changes)),
        resolver,
    })))
}

/// Resolves the name again whenever its answer expires, and tries replicas that are down
/// again in between.
async fn keep_resolving(
    replicas: Arc<Replicas>,
    resolver: TokioResolver,
    mut valid_until: Instant,
) {
    let mut failures = 0u32;
    loop {
        let expires = valid_until.clamp(
            Instant::now() + SOONEST_RERESOLVE,
            Instant::now() + LATEST_RERESOLVE,
        );
        // Until it expires, try the replicas that are down again now and then.
        while Instant::now() < expires {
            let next = if replicas.any_down() {
                expires.min(Instant::now() + RETRY_DOWN)
            } else {
                expires
            };
            tokio::time::sleep_until(next).await;
            if replicas.any_down() && Instant::now() < expires {
                let addresses: HashSet<SocketAddr> = replicas.known().keys().copied().collect();
                replicas.apply(&addresses).await;
            }
        }
        match resolve(&resolver, &replicas.target).await {
            Ok((addresses, until)) => {
                failures = 0;
                valid_until = until;
                replicas.apply(&addresses).await;
            }
            Err(error) => {
                // Keep the replicas there are; ask again soon, then less often.
                failures = failures.saturating_add(1);
                tracing::warn!(%error, "resolving again failed; keeping the replicas known");
                valid_until = Instant::now() + SOONEST_RERESOLVE * failures.min(20);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_addresses_parse() {
        let target = parse("dns+tcp://calc.default.svc.cluster.local:7000").unwrap();
        assert_eq!(target.scheme, "tcp");
        assert_eq!(target.name, "calc.default.svc.cluster.local");
        assert_eq!(target.port, 7000);
        assert_eq!(parse("DNS+TLS://calc.test:7443").unwrap().scheme, "tls");
        assert_eq!(parse("dns+tcp://[::1]:7000").unwrap().name, "::1");
        assert_eq!(
            parse("dns+tcp://calc.test.:7000").unwrap().name,
            "calc.test."
        );
        for bad in [
            "dns+tcp://[[::1]]]:7000",
            "dns+tcp://calc.test:+7000",
            "dns+tcp://::1:7000",
            "dns+tcp://[::1]7000",
            "dns+tcp://calc.test",
            "dns+tcp://calc.test:0",
            "dns+tcp://calc.test:99999",
            "dns+tcp://:7000",
            "dns+udp://calc.test:7000",
            "dns+tcp://calc.test/x:7000",
            "dns+tcp:calc.test:7000",
        ] {
            assert!(matches!(parse(bad), Err(RpcError::Address(_))), "{bad}");
        }
        assert!(is_discovery("dns+tcp://x:1") && is_discovery("DNS+tls://x:1"));
        assert!(!is_discovery("tcp://x:1") && !is_discovery("dn"));
    }
}
