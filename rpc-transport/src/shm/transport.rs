//! The shared-memory transports (`shm`, `mmap`, `sysv-shm`: one [`SharedMemory`] each), and
//! the trait implementations of their halves.

use std::time::Duration;

use super::endpoint::{ShmReceiver, ShmSender};
use super::rendezvous::{ShmAcceptor, connect, connect_blocking, socket_path};
use crate::TransportConfig;
use crate::address::Address;
use crate::blocking::{BlockingConnection, BlockingReceiver, BlockingSender};
use crate::connection::Connection;
use crate::deadline::Deadline;
use crate::error::TransportError;
use crate::frame::Frame;
use crate::transport::{
    Acceptor, BlockingReceiveFrames, BlockingSendFrames, BoxFuture, ReceiveFrames, SendFrames,
    Transport,
};

/// A shared-memory transport: the same rings, rendezvous and halves under every scheme of the
/// family; only where a connection's segment comes from differs (`rendezvous.rs` asks the
/// scheme).
pub(crate) struct SharedMemory {
    scheme: &'static str,
    forms: &'static [&'static str],
    check: fn(&Address) -> Result<(), TransportError>,
}

/// `shm://NAME` and `shm:///abs/rendezvous.sock`: rings in a sealed memfd per connection.
pub(crate) const SHM: SharedMemory = SharedMemory {
    scheme: "shm",
    forms: &["shm://NAME", "shm:///abs/rendezvous.sock"],
    check: check_name_or_path,
};

/// `mmap:///abs/file`: rings in slots of a regular file.
pub(crate) const MMAP: SharedMemory = SharedMemory {
    scheme: "mmap",
    forms: &["mmap:///abs/file"],
    check: |address| socket_path(address).map(drop),
};

/// `sysv-shm://NAME` and `sysv-shm:///abs/rendezvous.sock`: rings in a System V segment per
/// connection (`sysv/`).
pub(crate) const SYSV_SHM: SharedMemory = SharedMemory {
    scheme: super::sysv::SCHEME,
    forms: &["sysv-shm://NAME", "sysv-shm:///abs/rendezvous.sock"],
    check: check_name_or_path,
};

/// The check of `shm://` and `sysv-shm://` addresses: a name, or an absolute socket path.
fn check_name_or_path(address: &Address) -> Result<(), TransportError> {
    match address.target() {
        Some(path) if path.starts_with('/') => address.absolute_path().map(drop),
        _ => address.name().map(drop),
    }
}

impl Transport for SharedMemory {
    fn scheme(&self) -> &str {
        self.scheme
    }

    fn forms(&self) -> Vec<String> {
        self.forms.iter().map(|form| (*form).to_owned()).collect()
    }

    fn check(&self, address: &Address) -> Result<(), TransportError> {
        (self.check)(address)
    }

    fn connect<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Connection, TransportError>> {
        Box::pin(connect(address, config))
    }

    fn bind<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Acceptor>, TransportError>> {
        Box::pin(async move {
            let acceptor = ShmAcceptor::bind(address, config)?;
            Ok(Box::new(acceptor) as Box<dyn Acceptor>)
        })
    }

    fn connect_blocking(
        &self,
        address: &Address,
        config: &TransportConfig,
        timeout: Duration,
    ) -> Result<BlockingConnection, TransportError> {
        let (sender, receiver, peer) = connect_blocking(address, config, timeout)?;
        Ok(BlockingConnection::new(
            BlockingSender::new(sender),
            BlockingReceiver::new(receiver),
            peer,
        ))
    }
}

impl Acceptor for ShmAcceptor {
    fn local_address(&self) -> Address {
        self.address.clone()
    }

    fn accept(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        Box::pin(ShmAcceptor::accept(self))
    }
}

impl SendFrames for ShmSender {
    fn send(&mut self, frame: Frame) -> BoxFuture<'_, Result<(), TransportError>> {
        Box::pin(ShmSender::send(self, frame))
    }

    fn try_send_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<bool, TransportError> {
        ShmSender::try_send_with(self, len, fill)
    }

    fn writes_in_place(&self) -> bool {
        true
    }

    fn mechanism(&self) -> &'static str {
        "shm"
    }

    fn max_frame_size(&self) -> usize {
        ShmSender::max_frame_size(self)
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), TransportError>> {
        ShmSender::close(self);
        Box::pin(std::future::ready(Ok(())))
    }

    fn into_blocking(self: Box<Self>) -> Result<Box<dyn BlockingSendFrames>, Box<dyn SendFrames>> {
        Ok(self)
    }
}

impl ReceiveFrames for ShmReceiver {
    fn recv(&mut self) -> BoxFuture<'_, Result<Option<Frame>, TransportError>> {
        Box::pin(ShmReceiver::recv(self))
    }

    fn set_max_frame_size(&mut self, limit: usize) {
        ShmReceiver::set_max_frame_size(self, limit)
    }

    fn peer_gone(&self) -> bool {
        ShmReceiver::peer_gone(self)
    }

    fn has_buffered(&self) -> bool {
        ShmReceiver::has_buffered(self)
    }

    fn set_spinning(&mut self, spinning: &mut dyn FnMut() -> bool) {
        ShmReceiver::set_spinning(self, spinning())
    }

    fn drain(&mut self) -> BoxFuture<'_, ()> {
        Box::pin(ShmReceiver::drain(self))
    }

    fn as_poll(&mut self) -> Option<&mut dyn crate::PollFrames> {
        Some(self)
    }

    fn into_blocking(
        self: Box<Self>,
    ) -> Result<Box<dyn BlockingReceiveFrames>, Box<dyn ReceiveFrames>> {
        Ok(self)
    }
}

impl BlockingSendFrames for ShmSender {
    fn send(&mut self, frame: Frame, deadline: Deadline) -> Result<(), TransportError> {
        self.send_blocking(frame, deadline)
    }

    fn send_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
        deadline: Deadline,
    ) -> Result<(), TransportError> {
        self.send_with_blocking(len, fill, deadline)
    }

    fn try_send_with(
        &mut self,
        len: usize,
        fill: &mut dyn FnMut(&mut [u8]),
    ) -> Result<bool, TransportError> {
        ShmSender::try_send_with(self, len, fill)
    }

    fn mechanism(&self) -> &'static str {
        "shm"
    }

    fn max_frame_size(&self) -> usize {
        ShmSender::max_frame_size(self)
    }

    fn close(&mut self) {
        ShmSender::close(self)
    }
}

impl BlockingReceiveFrames for ShmReceiver {
    fn recv(&mut self, deadline: Deadline) -> Result<Option<Frame>, TransportError> {
        self.recv_blocking(deadline)
    }

    fn peer_gone(&self) -> bool {
        ShmReceiver::peer_gone(self)
    }

    fn interrupter(&self) -> Option<Box<dyn Fn() + Send + Sync>> {
        let interrupter = ShmReceiver::interrupter(self);
        Some(Box::new(move || interrupter.interrupt()))
    }
}

impl crate::PollFrames for ShmReceiver {
    fn try_recv(&mut self) -> Result<Option<Frame>, TransportError> {
        self.poll_frame()
    }

    fn peer_gone(&self) -> bool {
        ShmReceiver::peer_gone(self)
    }

    fn announce_sleep(&mut self) -> Result<bool, TransportError> {
        self.announce_eventfd_sleep()
    }

    fn end_sleep(&mut self) {
        ShmReceiver::end_sleep(self)
    }

    fn wakeup(&mut self) -> Result<crate::Wakeup, TransportError> {
        ShmReceiver::wakeup(self)
    }

    fn spin_limit(&self) -> std::time::Duration {
        ShmReceiver::spin_limit(self)
    }

    fn cheap_look(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::{Address, Frame, Listener, TransportConfig, connect};

    const LIMIT: Duration = Duration::from_secs(60);

    /// A tiny pseudo-random sequence (no dependency), reproducible from its seed.
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self, below: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 33) % below
        }
    }

    fn payload_of(seq: u64, out: &mut [u8]) {
        out.fill(seq as u8);
        out[..8].copy_from_slice(&seq.to_le_bytes());
    }

    /// `send_with` given up at random moments (a timeout dropping it while the ring, or every
    /// bulk region, is full), with inline and bulk messages mixed and a receiver that holds
    /// frames (keeping bulk regions busy): every message sent is received once, whole and in
    /// order, and none given up arrives.
    async fn cancelled_sends_lose_and_duplicate_nothing(scheme: &str, whole_frames: bool) {
        let config = TransportConfig::default().with_shm_ring_capacity(4096);
        let address: Address = format!(
            "{scheme}://cancel-{}-{}-{whole_frames}",
            std::process::id(),
            scheme.len()
        )
        .parse()
        .unwrap();
        let listener = Listener::bind(&address, &config).await.unwrap();
        let (client, server) = tokio::join!(connect(&address, &config), listener.accept());
        let (mut sender, _, _) = client.unwrap().split();
        let (_, mut receiver, _) = server.unwrap().split();
        let receiving = tokio::spawn(async move {
            let mut random = Lcg(7);
            let mut held = Vec::new();
            let mut seqs = Vec::new();
            while let Some(frame) = receiver.recv().await.unwrap() {
                let seq = u64::from_le_bytes(frame.payload()[..8].try_into().unwrap());
                assert!(
                    frame.payload()[8..].iter().all(|&b| b == seq as u8),
                    "message {seq} arrived damaged"
                );
                seqs.push(seq);
                held.push(frame);
                if held.len() > random.next(6) as usize {
                    held.clear();
                    // Now and then a pause no send waits out (the longest patience is 400 µs),
                    // so some sends are given up however fast the machine is.
                    let pause = if seqs.len() % 64 < 6 {
                        5_000
                    } else {
                        random.next(300)
                    };
                    tokio::time::sleep(Duration::from_micros(pause)).await;
                }
            }
            seqs
        });
        let mut random = Lcg(42);
        let mut sent = Vec::new();
        let sizes = [16usize, 100, 900, 1500, 3000, 70_000, 300_000];
        for seq in 0..600u64 {
            let len = sizes[random.next(sizes.len() as u64) as usize];
            let patience = Duration::from_micros(random.next(400));
            let outcome = if whole_frames {
                // `send` keeps a frame it accepted for the next call: a send given up may
                // still arrive, once and in its place.
                let mut frame = vec![0u8; len];
                payload_of(seq, &mut frame);
                tokio::time::timeout(patience, sender.send(Frame::from_payload(&frame))).await
            } else {
                let send = sender.send_with(len, |out| payload_of(seq, out));
                tokio::time::timeout(patience, send).await
            };
            // Given up (`Err`): it must not arrive (`send_with`), or only in its place (`send`).
            if let Ok(result) = outcome {
                result.unwrap();
                sent.push(seq);
            }
        }
        sender.close().await.unwrap();
        drop(sender);
        let received = tokio::time::timeout(LIMIT, receiving)
            .await
            .expect("the receiver finished")
            .unwrap();
        eprintln!("{scheme}: {} of 600 sent, the others given up", sent.len());
        assert!(sent.len() > 50, "too few sends completed: {}", sent.len());
        assert!(sent.len() < 600, "no send was given up");
        if whole_frames {
            assert!(
                received.windows(2).all(|w| w[0] < w[1]),
                "out of order or twice: {received:?}"
            );
            assert!(
                sent.iter().all(|seq| received.binary_search(seq).is_ok()),
                "a message sent was lost"
            );
        } else {
            assert_eq!(received, sent, "received vs sent ({} sent)", sent.len());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn shm_cancelled_sends_lose_and_duplicate_nothing() {
        cancelled_sends_lose_and_duplicate_nothing("shm", false).await;
        cancelled_sends_lose_and_duplicate_nothing("shm", true).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sysv_shm_cancelled_sends_lose_and_duplicate_nothing() {
        cancelled_sends_lose_and_duplicate_nothing("sysv-shm", false).await;
        cancelled_sends_lose_and_duplicate_nothing("sysv-shm", true).await;
    }
}
