//! The transport interface: what a mechanism implements to carry frames, built-in or not.
//!
//! A mechanism is a [`Transport`] registered under a URL scheme ([`register`](crate::register)).
//! It connects ([`Transport::connect`]) and listens ([`Transport::bind`], then
//! [`Acceptor::accept`]), and each connection it makes is a pair of halves: a [`SendFrames`]
//! and a [`ReceiveFrames`], wrapped in a [`Connection`]. Where the mechanism can be used without
//! an async runtime it also implements [`Transport::connect_blocking`], with halves that
//! implement [`BlockingSendFrames`] and [`BlockingReceiveFrames`].
//!
//! Most mechanisms carry a byte stream; for them [`framed`](crate::framed) turns any
//! `AsyncRead + AsyncWrite` into framed halves and [`BlockingConnection::over_runtime`]
//! gives the blocking counterpart, so such a transport is a few lines (see
//! `tests/tests/custom_transport.rs`).
//!
//! Every built-in mechanism goes through this same interface; the halves are boxed trait
//! objects, one virtual call (and one boxed future) per frame.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::address::Address;
use crate::blocking::BlockingConnection;
use crate::config::TransportConfig;
use crate::connection::Connection;
use crate::deadline::Deadline;
use crate::error::TransportError;
use crate::frame::Frame;

/// A boxed future, as the object-safe methods of these traits return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A mechanism that carries connections: how to reach and serve the addresses of its scheme.
pub trait Transport: Send + Sync + 'static {
    /// The URL scheme it is registered under (`"tcp"` for `tcp://HOST:PORT`).
    fn scheme(&self) -> &str;

    /// The address forms it understands, one line each (`"tcp://HOST:PORT"`), listed in the
    /// error for an unknown scheme.
    fn forms(&self) -> Vec<String> {
        vec![format!("{}://...", self.scheme())]
    }

    /// Checks an address of this scheme when it is parsed, saying what is wrong with it
    /// ([`TransportError::InvalidAddress`]). Accepts everything by default.
    fn check(&self, address: &Address) -> Result<(), TransportError> {
        let _ = address;
        Ok(())
    }

    /// Opens a connection to `address`.
    fn connect<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Connection, TransportError>>;

    /// Starts listening on `address`.
    fn bind<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Acceptor>, TransportError>>;

    /// Opens a connection for code without an async runtime, waiting at most `timeout`.
    /// By default the mechanism has none ([`TransportError::Unavailable`]); a transport over
    /// a byte stream can drive its async connection with
    /// [`BlockingConnection::over_runtime`].
    fn connect_blocking(
        &self,
        address: &Address,
        config: &TransportConfig,
        timeout: Duration,
    ) -> Result<BlockingConnection, TransportError> {
        let _ = (config, timeout);
        Err(TransportError::Unavailable {
            scheme: address.scheme().to_owned(),
            address: format!("{address} (this transport has no blocking client)"),
        })
    }
}

/// A listening endpoint made by [`Transport::bind`]. Dropping it stops listening and frees the
/// address.
pub trait Acceptor: Send + Sync + 'static {
    /// The address clients connect to (for `tcp://HOST:0`, with the port the system chose).
    fn local_address(&self) -> Address;

    /// Waits for the next connection. Must be cancellation safe: a dropped `accept` loses no
    /// connection. [`TransportError::Closed`] means no more will come.
    fn accept(&self) -> BoxFuture<'_, Result<Connection, TransportError>>;
}

/// Boxes a sending half as a trait object (implemented for every sized [`SendFrames`]; the
/// default [`SendFrames::into_blocking`] uses it).
pub trait IntoDynSend {
    /// `self` as a `Box<dyn SendFrames>`.
    fn into_dyn(self: Box<Self>) -> Box<dyn SendFrames>;
    /// `self` as `Any`, to downcast to the transport's own half.
    fn as_any(&self) -> &dyn std::any::Any;
}

impl<T: SendFrames> IntoDynSend for T {
    fn into_dyn(self: Box<Self>) -> Box<dyn SendFrames> {
        self
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// Boxes a receiving half as a trait object; see [`IntoDynSend`].
pub trait IntoDynReceive {
    /// `self` as a `Box<dyn ReceiveFrames>`.
    fn into_dyn(self: Box<Self>) -> Box<dyn ReceiveFrames>;
    /// `self` as `Any`, to downcast to the transport's own half.
    fn as_any(&self) -> &dyn std::any::Any;
}

impl<T: ReceiveFrames> IntoDynReceive for T {
    fn into_dyn(self: Box<Self>) -> Box<dyn ReceiveFrames> {
        self
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

/// The sending half of a connection: whole frames, in order.
pub trait SendFrames: Send + Sync + IntoDynSend + 'static {
    /// Sends one frame. A frame over [`max_frame_size`](Self::max_frame_size) is refused with
    /// [`TransportError::FrameTooLarge`] and nothing is sent. Must be cancellation safe: a
    /// dropped future sends the frame whole or not at all.
    fn send(&mut self, frame: Frame) -> BoxFuture<'_, Result<(), TransportError>>;

    /// Sends several frames in order (all were checked against the size limit). By default
    /// one [`send`](Self::send) each; a byte stream writes them with one system call.
    fn send_all(&mut self, frames: Vec<Frame>) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            for frame in frames {
                self.send(frame).await?;
            }
            Ok(())
        })
    }

    /// Queues a message of `len` bytes written in place by `fill`, without sending it: the
    /// next [`send_all`](Self::send_all) (an empty one too) writes it, after what was queued
    /// before. `Ok(false)`, with `fill` not called, where the transport does not queue bytes
    /// (the default): the caller sends a frame instead. A byte stream queues into its output
    /// buffer, which spares building a frame per message.
    ///
    /// A transport that queues here must call `fill` exactly once when it returns `Ok(true)`,
    /// must write what it queued with its next `send_all`, even an empty one (the default
    /// `send_all` does nothing for an empty batch, so override it too), and must keep what
    /// it queued across a cancelled `send_all`. The framework's outbox checks `len` against
    /// [`max_frame_size`](Self::max_frame_size) first, and treats an `Err` here as the end
    /// of the connection.
    fn feed_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<bool, TransportError> {
        let _ = (len, fill);
        Ok(false)
    }

    /// Writes a message of `len` bytes straight into the transport's memory with `fill`, if
    /// that needs no wait: `Ok(false)`, with `fill` not called, when there is no room yet
    /// (the caller yields and tries again). Only called where
    /// [`writes_in_place`](Self::writes_in_place) is true, and must be implemented there.
    fn try_send_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<bool, TransportError> {
        let _ = (len, fill);
        Err(TransportError::Io(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            format!("{} does not write in place", self.mechanism()),
        )))
    }

    /// Whether [`try_send_with`](Self::try_send_with) writes straight into the transport's
    /// memory (shared memory); others are sent a frame built first.
    fn writes_in_place(&self) -> bool {
        false
    }

    /// The mechanism's name for logs and traces (`"tcp"`, `"shm"`, ...).
    fn mechanism(&self) -> &'static str;

    /// The largest payload this half sends.
    fn max_frame_size(&self) -> usize;

    /// Flushes and closes the sending direction; the peer's receiver then returns `None`.
    fn close(&mut self) -> BoxFuture<'_, Result<(), TransportError>>;

    /// This half for a dedicated thread, where the mechanism serves best from one (shared
    /// memory); the half itself, unchanged, by default.
    #[allow(clippy::type_complexity)]
    fn into_blocking(self: Box<Self>) -> Result<Box<dyn BlockingSendFrames>, Box<dyn SendFrames>> {
        Err(self.into_dyn())
    }
}

/// The receiving half of a connection.
pub trait ReceiveFrames: Send + Sync + IntoDynReceive + 'static {
    /// The next frame; `None` once the peer closed its sending direction. Must be
    /// cancellation safe: a dropped future loses no data.
    fn recv(&mut self) -> BoxFuture<'_, Result<Option<Frame>, TransportError>>;

    /// Sets the largest frame accepted from now on; a bigger one fails the connection.
    fn set_max_frame_size(&mut self, limit: usize);

    /// Whether the peer has left, asked without reading or waiting. `false` where the
    /// mechanism cannot tell without reading (the default).
    fn peer_gone(&self) -> bool {
        false
    }

    /// Whether a whole frame is already buffered, so the next `recv` returns at once.
    fn has_buffered(&self) -> bool {
        false
    }

    /// Whether an async receive may spin before it sleeps, for mechanisms that spin.
    fn set_spinning(&mut self, spinning: &mut dyn FnMut() -> bool) {
        let _ = spinning;
    }

    /// Reads and discards everything until the peer closes (the caller bounds the time).
    fn drain(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(async move { while let Ok(Some(_)) = self.recv().await {} })
    }

    /// This half as one that can be looked at without waiting, so an async caller may read its
    /// own reply (shared memory, where a look costs no system call; sockets, pipes, FIFOs and
    /// message queues, where it costs one non-blocking read); `None` (the default) for the
    /// others.
    fn as_poll(&mut self) -> Option<&mut dyn crate::PollFrames> {
        None
    }

    /// This half for a dedicated thread; see [`SendFrames::into_blocking`].
    #[allow(clippy::type_complexity)]
    fn into_blocking(
        self: Box<Self>,
    ) -> Result<Box<dyn BlockingReceiveFrames>, Box<dyn ReceiveFrames>> {
        Err(self.into_dyn())
    }
}

/// The sending half of a blocking connection.
pub trait BlockingSendFrames: Send + 'static {
    /// Sends one frame, waiting at most until `deadline` ([`TransportError::TimedOut`]).
    fn send(&mut self, frame: Frame, deadline: Deadline) -> Result<(), TransportError>;

    /// Sends a message of `len` bytes that `fill` writes; by default into a new frame.
    fn send_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
        deadline: Deadline,
    ) -> Result<(), TransportError> {
        let limit = self.max_frame_size();
        if len > limit {
            return Err(TransportError::FrameTooLarge { size: len, limit });
        }
        self.send(Frame::filled(len, fill), deadline)
    }

    /// Sends like `send_with` only if that needs no wait: `Ok(false)` with nothing sent when
    /// it would. By default it sends, waiting as long as it takes.
    fn try_send_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<bool, TransportError> {
        self.send_with(len, fill, Deadline::Never).map(|()| true)
    }

    /// The mechanism's name, as [`SendFrames::mechanism`].
    fn mechanism(&self) -> &'static str;

    /// Whether this connection drives an async runtime of its own (as
    /// [`BlockingConnection::over_runtime`] does), so it must not be used inside one.
    fn runs_own_runtime(&self) -> bool {
        false
    }

    /// The largest payload this half sends.
    fn max_frame_size(&self) -> usize;

    /// Closes the sending direction; the peer's receiver then ends.
    fn close(&mut self);
}

/// The receiving half of a blocking connection.
pub trait BlockingReceiveFrames: Send + 'static {
    /// The next frame, waiting at most until `deadline` ([`TransportError::TimedOut`], after
    /// which the next call resumes where this one stopped); `None` once the peer closed.
    fn recv(&mut self, deadline: Deadline) -> Result<Option<Frame>, TransportError>;

    /// Whether the peer has left, asked without reading or waiting.
    fn peer_gone(&self) -> bool {
        false
    }

    /// A way to make a `recv` blocked on another thread return [`TransportError::TimedOut`]
    /// at once; `None` where waits cannot be interrupted (they run to their deadline).
    fn interrupter(&self) -> Option<Box<dyn Fn() + Send + Sync>> {
        None
    }
}

impl fmt::Debug for dyn Acceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Acceptor({})", self.local_address())
    }
}
