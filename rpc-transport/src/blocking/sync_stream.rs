//! Length-prefixed framing (as in `stream.rs`) over a blocking byte stream: sockets through
//! `std` with per-operation timeouts, and pipes. [`blocking_stream_connection`] makes a
//! [`BlockingConnection`] of any [`TimedStream`].

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::TransportConfig;
use crate::blocking::{BlockingConnection, BlockingReceiver, BlockingSender};
use crate::connection::PeerInfo;
use crate::deadline::Deadline;
use crate::error::TransportError;
use crate::frame::Frame;
use crate::stream::{Buffered, length_prefixed, take_frame};
use crate::transport::{BlockingReceiveFrames, BlockingSendFrames};

/// Bytes read from a socket per call when no large frame is pending.
const READ_CHUNK: usize = 64 * 1024;

/// A blocking byte stream the framing can use: a socket, a pipe, or any stream with a file
/// descriptor whose reads and writes can be given timeouts.
pub trait TimedStream: Read + Write + std::os::fd::AsFd + Send + 'static {
    /// Sets the timeout of later reads (`None`: wait as long as it takes), leaving that of
    /// writes alone: the receiving half sets it while the sending half, on another thread, may
    /// be writing under its own (two handles of one socket share both).
    fn set_receive_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;

    /// Sets the timeout of later writes (`None`: wait as long as it takes), leaving that of
    /// reads alone.
    fn set_send_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;

    /// Shuts the writing direction, so the peer reads the end of the stream.
    fn shutdown_write(&mut self);

    /// Reads what is there now, without blocking; `WouldBlock` if nothing is.
    fn read_now(&self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::fd::AsRawFd;
        nix::sys::socket::recv(
            self.as_fd().as_raw_fd(),
            buf,
            nix::sys::socket::MsgFlags::MSG_DONTWAIT,
        )
        .map_err(io::Error::from)
    }
}

impl TimedStream for TcpStream {
    fn set_receive_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }

    fn set_send_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }

    fn shutdown_write(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

impl TimedStream for UnixStream {
    fn set_receive_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }

    fn set_send_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, timeout)
    }

    fn shutdown_write(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

/// Time left until `deadline`: `Ok(None)` for no deadline, `Err(TimedOut)` once passed.
pub(crate) fn remaining(deadline: Option<Instant>) -> Result<Option<Duration>, TransportError> {
    match deadline {
        None => Ok(None),
        Some(deadline) => {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(TransportError::TimedOut)
            } else {
                Ok(Some(left))
            }
        }
    }
}

fn timed_out(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Length-prefixed framing (as in `stream.rs`) over a blocking socket.
struct SyncStreamSender<S> {
    io: S,
    limit: usize,
    mechanism: &'static str,
    /// Set when a write timed out part-way: the stream's framing is lost.
    broken: bool,
}

impl<S: TimedStream> SyncStreamSender<S> {
    fn send(&mut self, frame: Frame, deadline: Option<Instant>) -> Result<(), TransportError> {
        let buf = length_prefixed(frame, self.limit)?;
        if self.broken {
            return Err(TransportError::Closed);
        }
        self.io.set_send_timeout(remaining(deadline)?)?;
        let mut written = 0;
        while written < buf.len() {
            match self.io.write(&buf[written..]) {
                Ok(0) => return Err(TransportError::Closed),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if timed_out(&e) => {
                    if written > 0 {
                        self.broken = true;
                    }
                    return Err(TransportError::TimedOut);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

pub(crate) struct SyncStreamReceiver<S> {
    io: S,
    limit: usize,
    buf: BytesMut,
    scratch: Box<[u8]>,
    /// How long to poll the socket before blocking on it.
    spin: Duration,
}

impl<S: TimedStream> SyncStreamReceiver<S> {
    pub(crate) fn new(io: S, limit: usize, spin: Duration) -> Self {
        SyncStreamReceiver {
            io,
            limit,
            buf: BytesMut::new(),
            scratch: vec![0; READ_CHUNK].into_boxed_slice(),
            spin,
        }
    }

    /// Polls the socket for up to the spin budget (a reply within it costs no wake-up).
    fn busy_poll(&mut self) -> io::Result<Option<usize>> {
        if self.spin.is_zero() {
            return Ok(None);
        }
        let until = crate::deadline::after(self.spin);
        loop {
            match self.io.read_now(&mut self.scratch) {
                Ok(n) => return Ok(Some(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
            if Instant::now() >= until {
                return Ok(None);
            }
            std::hint::spin_loop();
        }
    }

    pub(crate) fn recv(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<Frame>, TransportError> {
        loop {
            match take_frame(&mut self.buf, self.limit)? {
                Buffered::Frame(frame) => return Ok(Some(frame)),
                Buffered::Partial { whole } if whole - self.buf.len() > READ_CHUNK => {
                    // A large frame: read the rest straight into place, growing the buffer by
                    // at most what has arrived (doubling), so the announced size is never
                    // allocated before its bytes come.
                    self.io.set_receive_timeout(remaining(deadline)?)?;
                    let mut filled = self.buf.len();
                    while filled < whole {
                        let target = whole.min(filled + filled.max(READ_CHUNK));
                        if self.buf.len() < target {
                            self.buf.resize(target, 0);
                        }
                        match self.io.read(&mut self.buf[filled..target]) {
                            Ok(0) => {
                                self.buf.truncate(filled);
                                return Err(TransportError::Malformed(
                                    "stream ended inside a frame".into(),
                                ));
                            }
                            Ok(n) => filled += n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) if timed_out(&e) => {
                                self.buf.truncate(filled);
                                return Err(TransportError::TimedOut);
                            }
                            Err(e) => {
                                self.buf.truncate(filled);
                                return Err(e.into());
                            }
                        }
                    }
                    continue;
                }
                Buffered::Partial { .. } | Buffered::NoPrefix => {}
            }
            let polled = match self.busy_poll() {
                Ok(Some(n)) => Ok(n),
                Ok(None) => {
                    self.io.set_receive_timeout(remaining(deadline)?)?;
                    self.io.read(&mut self.scratch)
                }
                Err(e) => Err(e),
            };
            match polled {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => {
                    return Err(TransportError::Malformed(
                        "stream ended inside a frame".into(),
                    ));
                }
                Ok(n) => self.buf.extend_from_slice(&self.scratch[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if timed_out(&e) => return Err(TransportError::TimedOut),
                Err(e) => return Err(e.into()),
            }
        }
    }
}

impl<S: TimedStream> BlockingSendFrames for SyncStreamSender<S> {
    fn send(&mut self, frame: Frame, deadline: Deadline) -> Result<(), TransportError> {
        SyncStreamSender::send(self, frame, deadline.resolve())
    }

    fn mechanism(&self) -> &'static str {
        self.mechanism
    }

    fn max_frame_size(&self) -> usize {
        self.limit
    }

    fn close(&mut self) {
        self.io.shutdown_write();
    }
}

impl<S: TimedStream> BlockingReceiveFrames for SyncStreamReceiver<S> {
    fn recv(&mut self, deadline: Deadline) -> Result<Option<Frame>, TransportError> {
        SyncStreamReceiver::recv(self, deadline.resolve())
    }

    fn peer_gone(&self) -> bool {
        crate::hangup::hung_up(&self.io)
    }
}

/// A blocking connection framed over a byte stream: `writer` and `reader` are the two
/// directions (two handles of one socket, or two pipes). `mechanism` names it in logs.
pub fn blocking_stream_connection<S: TimedStream, R: TimedStream>(
    writer: S,
    reader: R,
    config: &TransportConfig,
    peer: PeerInfo,
    mechanism: &'static str,
) -> BlockingConnection {
    let sender = SyncStreamSender {
        io: writer,
        limit: config.max_frame_size,
        mechanism,
        broken: false,
    };
    let receiver = SyncStreamReceiver::new(reader, config.max_frame_size, config.socket_spin);
    BlockingConnection::new(
        BlockingSender::new(sender),
        BlockingReceiver::new(receiver),
        peer,
    )
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use crate::{Deadline, Frame, TransportConfig, TransportError};

    /// The halves of a blocking socket connection are two handles of one socket, whose
    /// timeouts (`SO_RCVTIMEO`, `SO_SNDTIMEO`) they share: a send on one thread must not undo
    /// the deadline of a receive on another (nor the reverse), or that receive waits forever.
    #[test]
    fn a_send_on_another_thread_does_not_undo_a_receives_deadline() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // A server that reads everything and never answers.
        let server = std::thread::spawn(move || {
            let (mut socket, _) = listener.accept().unwrap();
            let keep = socket.try_clone().unwrap();
            let mut sink = vec![0u8; 64 * 1024];
            while matches!(socket.read(&mut sink), Ok(n) if n > 0) {}
            drop(keep);
        });
        let address = format!("tcp://127.0.0.1:{port}").parse().unwrap();
        let connection = crate::connect_blocking(
            &address,
            &TransportConfig::default(),
            Duration::from_secs(5),
        )
        .unwrap();
        let (mut sender, mut receiver, _) = connection.split();
        let stop = Arc::new(AtomicBool::new(false));
        let sending = std::thread::spawn({
            let stop = stop.clone();
            move || {
                while !stop.load(Ordering::Relaxed) {
                    if sender
                        .send(Frame::from_payload(b"x"), Deadline::Never)
                        .is_err()
                    {
                        break;
                    }
                }
                sender
            }
        });
        let (done, outcome) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for _ in 0..40 {
                let start = Instant::now();
                let result = receiver.recv(Deadline::After(Duration::from_millis(20)));
                let _ = done.send((result.map(|f| f.map(|f| f.len())), start.elapsed()));
            }
        });
        let mut late = None;
        for _ in 0..40 {
            match outcome.recv_timeout(Duration::from_secs(3)) {
                Ok((Err(TransportError::TimedOut), _)) => {}
                Ok(other) => panic!("a receive with a 20 ms deadline ended with {other:?}"),
                Err(_) => {
                    late = Some("a receive with a 20 ms deadline was still waiting after 3 s");
                    break;
                }
            }
        }
        stop.store(true, Ordering::Relaxed);
        let mut sender = sending.join().unwrap();
        // Ends the server, and with it a receive still waiting.
        sender.close();
        drop(sender);
        server.join().unwrap();
        assert!(late.is_none(), "{}", late.unwrap());
    }
}
