//! The framed halves of an established TLS stream: the byte-stream framing of `stream.rs`,
//! with TLS failures that surface after the handshake (a server refusing a client certificate
//! under TLS 1.3, an alert, a corrupt record) turned into [`TransportError::Tls`] that say why.

use std::future::Future;
use std::os::fd::AsFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio_rustls::TlsStream;

use super::reason::{self, Role};
use crate::config::TransportConfig;
use crate::connection::{Connection, FrameReceiver, FrameSender, PeerInfo};
use crate::error::TransportError;
use crate::frame::Frame;
use crate::stream::{StreamReceiver, StreamSender, TryRead};
use crate::transport::{BoxFuture, ReceiveFrames, SendFrames};

/// Who the peer is and which side this is, for the errors of both halves.
#[derive(Debug, Clone)]
struct Side {
    peer: String,
    role: Role,
}

impl Side {
    fn map(&self, error: TransportError) -> TransportError {
        reason::from_transport(error, &self.peer, self.role)
    }
}

/// The socket under a TLS stream: a `TcpStream`, or (on a server) one that notes the
/// handshake's progress.
pub(crate) trait Socket:
    AsyncRead + AsyncWrite + AsFd + Unpin + Send + Sync + 'static
{
}

impl<T: AsyncRead + AsyncWrite + AsFd + Unpin + Send + Sync + 'static> Socket for T {}

/// The stream both halves share. `tokio::io::split` would do, but its halves hide the
/// socket, which the receiver polls to see whether the peer hung up.
type Shared<S> = Arc<Mutex<TlsStream<S>>>;

fn lock<S>(shared: &Shared<S>) -> MutexGuard<'_, TlsStream<S>> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A connection over the established TLS `stream`; `peer` names the peer in errors.
pub(crate) fn connection<S: Socket>(
    stream: TlsStream<S>,
    peer_info: PeerInfo,
    peer: String,
    role: Role,
    config: &TransportConfig,
) -> Connection {
    let side = Side { peer, role };
    let shared: Shared<S> = Arc::new(Mutex::new(stream));
    let sender = TlsSender {
        inner: StreamSender::new(TlsWrite(shared.clone()), config.max_frame_size, "tls"),
        side: side.clone(),
    };
    let receiver = TlsReceiver {
        inner: StreamReceiver::new(TlsRead(shared), config.max_frame_size, config.socket_spin),
        side,
    };
    Connection::new(
        FrameSender::new(sender),
        FrameReceiver::new(receiver),
        peer_info,
    )
}

/// The read direction of the shared TLS stream.
struct TlsRead<S>(Shared<S>);

impl<S: Socket> AsyncRead for TlsRead<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *lock(&self.0)).poll_read(cx, buf)
    }
}

impl<S: Socket> TryRead for TlsRead<S> {
    /// Polls the TLS stream once without a waker to keep: whatever plaintext the records that
    /// have arrived hold, or `WouldBlock`. This makes the receiver's busy-poll
    /// ([`TransportConfig::socket_spin`]) work over TLS as over TCP: a reply that lands within
    /// it costs no kernel wake-up.
    fn try_read_now(&mut self, buf: &mut BytesMut) -> std::io::Result<usize> {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut stream = lock(&self.0);
        // One poll of a cancellation-safe read: a dropped `read_buf` loses nothing.
        let read = std::pin::pin!(stream.read_buf(buf));
        match read.poll(&mut cx) {
            Poll::Ready(result) => result,
            Poll::Pending => Err(std::io::ErrorKind::WouldBlock.into()),
        }
    }

    fn hung_up(&self) -> bool {
        crate::hangup::hung_up(lock(&self.0).get_ref().0)
    }
}

/// The write direction of the shared TLS stream.
struct TlsWrite<S>(Shared<S>);

impl<S: Socket> AsyncWrite for TlsWrite<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *lock(&self.0)).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *lock(&self.0)).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *lock(&self.0)).poll_shutdown(cx)
    }
}

/// The sending half of a TLS connection.
struct TlsSender<S> {
    inner: StreamSender<TlsWrite<S>>,
    side: Side,
}

impl<S: Socket> SendFrames for TlsSender<S> {
    fn send(&mut self, frame: Frame) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let result = self.inner.send(frame).await;
            result.map_err(|e| self.side.map(e))
        })
    }

    fn send_all(&mut self, frames: Vec<Frame>) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let result = SendFrames::send_all(&mut self.inner, frames).await;
            result.map_err(|e| self.side.map(e))
        })
    }

    fn feed_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<bool, TransportError> {
        SendFrames::feed_with(&mut self.inner, len, fill)
    }

    fn mechanism(&self) -> &'static str {
        "tls"
    }

    fn max_frame_size(&self) -> usize {
        SendFrames::max_frame_size(&self.inner)
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(async move {
            let result = self.inner.close().await;
            result.map_err(|e| self.side.map(e))
        })
    }
}

/// The receiving half of a TLS connection.
struct TlsReceiver<S> {
    inner: StreamReceiver<TlsRead<S>>,
    side: Side,
}

impl<S: Socket> ReceiveFrames for TlsReceiver<S> {
    fn recv(&mut self) -> BoxFuture<'_, Result<Option<Frame>, TransportError>> {
        Box::pin(async move {
            let result = self.inner.recv().await;
            result.map_err(|e| self.side.map(e))
        })
    }

    fn set_max_frame_size(&mut self, limit: usize) {
        ReceiveFrames::set_max_frame_size(&mut self.inner, limit)
    }

    fn peer_gone(&self) -> bool {
        ReceiveFrames::peer_gone(&self.inner)
    }

    fn has_buffered(&self) -> bool {
        self.inner.has_buffered()
    }

    fn drain(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(self.inner.drain())
    }
}
