//! The `--keepalive-*` flags of the example binaries, as a clap argument group that turns
//! into an `Option<Keepalive>` for [`ClientOptions::keepalive`](rpc_core::ClientOptions) and
//! [`Server::keepalive`](rpc_core::Server::keepalive).

use std::time::Duration;

use rpc_core::Keepalive;

/// `[--keepalive-interval DURATION] [--keepalive-timeout DURATION] | --no-keepalive`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct KeepaliveFlags {
    /// Ping the peer after this long without hearing from it, such as 1s (default: 30s).
    #[arg(long, value_name = "DURATION", value_parser = crate::cli::parse_duration)]
    pub keepalive_interval: Option<Duration>,
    /// Give the connection up when the peer says nothing this long after a ping (default:
    /// 20s). A dead peer is noticed within interval + timeout.
    #[arg(long, value_name = "DURATION", value_parser = crate::cli::parse_duration)]
    pub keepalive_timeout: Option<Duration>,
    /// Never ping: trust the transport alone (a half-open connection then waits as long as
    /// the calls' timeouts allow).
    #[arg(long, conflicts_with_all = ["keepalive_interval", "keepalive_timeout"])]
    pub no_keepalive: bool,
}

impl KeepaliveFlags {
    /// The keepalive these flags give: `None` with `--no-keepalive`, otherwise the library's
    /// default with the interval and timeout given replacing its own.
    pub fn keepalive(&self) -> Option<Keepalive> {
        if self.no_keepalive {
            return None;
        }
        let default = Keepalive::default();
        Some(Keepalive::new(
            self.keepalive_interval.unwrap_or(default.interval),
            self.keepalive_timeout.unwrap_or(default.timeout),
        ))
    }
}
