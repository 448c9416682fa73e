//! Options for connecting ([`ClientOptions`]) and for calls ([`CallOptions`]).

use std::time::Duration;

use rpc_transport::TransportConfig;

/// How a client connects.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ClientOptions {
    /// Transport settings, including the largest frame this client accepts.
    pub transport: TransportConfig,
    /// How long connecting plus the handshake may take.
    pub connect_timeout: Duration,
    /// The timeout of each call unless [`CallOptions`] say otherwise; `None` waits as long as
    /// the connection lives.
    pub call_timeout: Option<Duration>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            transport: TransportConfig::default(),
            connect_timeout: Duration::from_secs(10),
            call_timeout: Some(Duration::from_secs(30)),
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
}

/// Options that travel with each call made through a client handle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CallOptions {
    /// How long the caller waits; the server drops the handler once it has passed.
    pub timeout: Option<Duration>,
    /// Key-value pairs the server's handler reads from [`Context`](crate::Context).
    pub metadata: Vec<(String, String)>,
}

impl CallOptions {
    /// These options with `timeout` (`None`: wait as long as the connection lives).
    pub fn with_timeout(&self, timeout: Option<Duration>) -> CallOptions {
        CallOptions {
            timeout,
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
