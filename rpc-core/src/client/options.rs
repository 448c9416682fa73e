//! Options for connecting ([`ClientOptions`]) and for calls ([`CallOptions`]).

use std::time::Duration;

use rpc_transport::TransportConfig;

use super::ReconnectPolicy;
use crate::keepalive::Keepalive;

/// How a client connects.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Transport settings, including the largest frame this client accepts.
    pub transport: TransportConfig,
    /// How long connecting plus the handshake may take.
    pub connect_timeout: Duration,
    /// The timeout of each call unless [`CallOptions`] or the method's `#[rpc(timeout)]` say
    /// otherwise; `None` waits as long as the connection lives.
    pub call_timeout: Option<Duration>,
    /// Refuse to connect unless the server's schema equals the client's: every method on both
    /// sides with the same shapes (the lockstep check, listing every difference). Off by
    /// default: a client may call the methods both sides agree on.
    pub strict_schema: bool,
    /// Pings after a silence, to find a dead server (a half-open connection) within
    /// [`Keepalive::bound`]; `None` trusts the transport alone. Default: a ping after 30 s of
    /// silence, given up 20 s later. Async clients only: a [`BlockingClient`](crate::BlockingClient)
    /// reads only during its calls, and relies on their timeouts.
    pub keepalive: Option<Keepalive>,
    /// Makes a broken connection again (with backoff) instead of failing every later call,
    /// and calls `#[rpc(idempotent)]` methods again when their connection broke. `None` (the
    /// default): the client lives as long as its connection. `dns+` addresses always
    /// reconnect, with this policy or the default one.
    pub reconnect: Option<ReconnectPolicy>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            transport: TransportConfig::default(),
            connect_timeout: Duration::from_secs(10),
            call_timeout: Some(Duration::from_secs(30)),
            strict_schema: false,
            keepalive: Some(Keepalive::default()),
            reconnect: None,
        }
    }
}

impl ClientOptions {
    /// Sets the largest frame this client sends or accepts.
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.transport.max_frame_size = bytes;
        self
    }

    /// Sets the connect-plus-handshake timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the default per-call timeout.
    pub fn call_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.call_timeout = timeout;
        self
    }

    /// Adds a transport's own setting (see [`TransportConfig::with_setting`]), such as
    /// `tls://`'s certificates.
    pub fn transport_setting<T: std::any::Any + Send + Sync>(mut self, setting: T) -> Self {
        self.transport = self.transport.with_setting(setting);
        self
    }

    /// Sets the keepalive (`None`: no pings; see [`ClientOptions::keepalive`]).
    pub fn keepalive(mut self, keepalive: Option<Keepalive>) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// Sets the reconnect policy (see [`ClientOptions::reconnect`]).
    pub fn reconnect(mut self, policy: Option<ReconnectPolicy>) -> Self {
        self.reconnect = policy;
        self
    }

    /// Requires the server's schema to equal the client's (see [`ClientOptions::strict_schema`]).
    pub fn strict_schema(mut self, strict: bool) -> Self {
        self.strict_schema = strict;
        self
    }
}

/// Options that travel with each call made through a client handle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallOptions {
    /// How long the caller waits; the server drops the handler once it has passed. Unless
    /// set with [`CallOptions::with_timeout`], a method's `#[rpc(timeout)]` takes precedence.
    pub timeout: Option<Duration>,
    /// Key-value pairs the server's handler reads from [`Context`](crate::Context).
    pub metadata: Vec<(String, String)>,
    /// Whether `timeout` was chosen for this handle (and so overrides the methods' own).
    pub(crate) explicit_timeout: bool,
}

impl CallOptions {
    /// These options with `timeout` (`None`: wait as long as the connection lives).
    pub fn with_timeout(&self, timeout: Option<Duration>) -> CallOptions {
        CallOptions {
            timeout,
            explicit_timeout: true,
            ..self.clone()
        }
    }

    /// These options with the metadata `key = value` added.
    pub fn with_metadata(&self, key: impl Into<String>, value: impl Into<String>) -> CallOptions {
        let mut options = self.clone();
        options.metadata.push((key.into(), value.into()));
        options
    }
}

impl CallOptions {
    /// The options a client starts with: `timeout` as the default of methods without their own.
    pub(crate) fn defaults(timeout: Option<Duration>) -> CallOptions {
        CallOptions {
            timeout,
            metadata: Vec::new(),
            explicit_timeout: false,
        }
    }
}
