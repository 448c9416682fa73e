//! Application-level keepalive: pings that find a dead peer across a network.
//!
//! A half-open TCP connection (the peer's machine lost power, a link or a firewall in between
//! dropped the traffic) looks alive to the side still up: its reads simply wait. The kernel's
//! own TCP keepalive notices after hours. So each side that enables [`Keepalive`] watches what
//! it hears: after `interval` without a single frame it sends a `Ping` (any frame of the peer
//! counts, the `Pong` included), and if nothing at all arrives within `timeout` after that, it
//! gives the connection up. A dead peer is therefore found within `interval + timeout` of the
//! last frame heard from it.
//!
//! - The client's pending calls then fail with [`RpcError::Disconnected`](crate::RpcError),
//!   saying the keepalive lapsed.
//! - The server frees the connection (its handlers are dropped, its memory given back).
//!
//! A client that enables keepalive sends one `Ping` right after the handshake: that tells the
//! server this client answers pings (protocol version 3). The server pings only such clients,
//! so an older client, or a blocking client (which reads only during its calls) is never
//! dropped for not answering.

use std::pin::Pin;
use std::time::Duration;

use rpc_transport::Frame;
use tokio::time::{Instant, Sleep};

use crate::wire::{self, Header, Kind};

/// How a connection checks that its peer is alive: a ping after `interval` of silence, and
/// the connection given up when `timeout` passes after it without a word from the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    /// How long the connection may be silent before a ping is sent.
    pub interval: Duration,
    /// How long after a ping the peer has to say anything.
    pub timeout: Duration,
}

impl Default for Keepalive {
    /// A ping after 30 s of silence, the peer given up 20 s later.
    fn default() -> Self {
        Keepalive {
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(20),
        }
    }
}

/// The shortest interval or timeout used: zero would ping in a busy loop.
const SHORTEST: Duration = Duration::from_millis(1);

impl Keepalive {
    /// A ping after `interval` of silence; the peer given up when `timeout` passes after it
    /// unanswered. Both are at least 1 ms.
    pub fn new(interval: Duration, timeout: Duration) -> Keepalive {
        Keepalive {
            interval: interval.max(SHORTEST),
            timeout: timeout.max(SHORTEST),
        }
    }

    /// The longest a dead peer goes unnoticed: `interval + timeout` after the last frame.
    pub fn bound(&self) -> Duration {
        self.interval.saturating_add(self.timeout)
    }

    /// When to ping a connection last heard from at `heard`.
    pub(crate) fn ping_at(&self, heard: Instant) -> Instant {
        later(heard, self.interval.max(SHORTEST))
    }

    /// When to give up a peer pinged at `pinged`.
    pub(crate) fn give_up_at(&self, pinged: Instant) -> Instant {
        later(pinged, self.timeout.max(SHORTEST))
    }

    /// Why a connection was given up.
    pub(crate) fn lapsed(&self) -> String {
        format!(
            "keepalive: the peer said nothing within {:?} of a ping (sent after {:?} of silence)",
            self.timeout, self.interval
        )
    }
}

/// `at + by`, or a time far enough away to mean never.
fn later(at: Instant, by: Duration) -> Instant {
    at.checked_add(by)
        .unwrap_or_else(|| at + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// One connection's keepalive, for a read loop: one timer for the connection's life (not one
/// per frame, which would cost every call a timer registration), and the time of the last
/// frame heard, which the loop sets with [`Watch::heard`].
pub(crate) struct Watch {
    keepalive: Keepalive,
    timer: Pin<Box<Sleep>>,
    heard: Instant,
    /// When the ping still unanswered went out.
    pinged: Option<Instant>,
    nonce: u64,
}

/// What a [`Watch`] says when its timer fires.
pub(crate) enum Due {
    /// Send this ping.
    Ping(Frame),
    /// The peer said nothing within the timeout of a ping: give the connection up.
    Lapsed,
}

impl Watch {
    /// A watch of a connection heard from just now.
    pub(crate) fn new(keepalive: Keepalive) -> Watch {
        let now = Instant::now();
        Watch {
            keepalive,
            timer: Box::pin(tokio::time::sleep_until(keepalive.ping_at(now))),
            heard: now,
            pinged: None,
            nonce: 0,
        }
    }

    /// A frame arrived.
    pub(crate) fn heard(&mut self) {
        self.heard = Instant::now();
    }

    /// A frame arrived at `at` (read elsewhere), if that is later than the last one.
    pub(crate) fn heard_at(&mut self, at: Instant) {
        self.heard = self.heard.max(at);
    }

    /// How long a ping may take to be written.
    pub(crate) fn timeout(&self) -> Duration {
        self.keepalive.timeout
    }

    /// Why the connection was given up.
    pub(crate) fn lapsed(&self) -> String {
        self.keepalive.lapsed()
    }

    /// Waits until a ping is due or the peer has lapsed. Cancel-safe.
    pub(crate) async fn due(&mut self) -> Due {
        loop {
            self.timer.as_mut().await;
            let now = Instant::now();
            if let Some(pinged) = self.pinged.take()
                && self.heard < pinged
            {
                return Due::Lapsed;
            }
            let ping_at = self.keepalive.ping_at(self.heard);
            if now >= ping_at {
                self.nonce += 1;
                self.pinged = Some(now);
                self.timer.as_mut().reset(self.keepalive.give_up_at(now));
                return Due::Ping(ping_frame(self.nonce));
            }
            self.timer.as_mut().reset(ping_at);
        }
    }
}

/// A `Ping` frame (`nonce` travels as its call id and comes back in the `Pong`).
pub(crate) fn ping_frame(nonce: u64) -> Frame {
    bare_frame(Kind::Ping, nonce)
}

/// The `Pong` that answers ping `nonce`.
pub(crate) fn pong_frame(nonce: u64) -> Frame {
    bare_frame(Kind::Pong, nonce)
}

fn bare_frame(kind: Kind, nonce: u64) -> Frame {
    let header = Header {
        kind,
        method: 0,
        call_id: nonce,
    };
    wire::message_frame(header, None, &()).expect("an empty body always encodes")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_and_huge_durations_are_usable() {
        let k = Keepalive::new(Duration::ZERO, Duration::MAX);
        assert_eq!(k.interval, SHORTEST);
        assert_eq!(k.bound(), Duration::MAX);
        let now = Instant::now();
        assert!(k.give_up_at(now) > now + Duration::from_secs(3600));
        assert_eq!(k.ping_at(now), now + SHORTEST);
    }

    #[test]
    fn pings_and_pongs_parse_back() {
        for (frame, kind) in [(ping_frame(7), Kind::Ping), (pong_frame(7), Kind::Pong)] {
            let parsed = Header::parse(frame.payload()).unwrap();
            assert_eq!(parsed.header.kind, kind);
            assert_eq!(parsed.header.call_id, 7);
            assert!(parsed.extension.is_none());
        }
    }
}
