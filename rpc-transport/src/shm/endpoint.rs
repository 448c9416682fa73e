//! The two halves of a shared-memory connection, each usable from async code and from a
//! plain thread.
//!
//! Sending writes the frame into the outgoing ring (or, when it is bigger than a quarter of
//! the ring, into a bulk region whose descriptor goes over the rendezvous socket, announced
//! by a small ring record published before the region is written, so the peer copies the
//! message out while it is being written; see `bulk.rs`) and wakes the peer only if it
//! announced that it sleeps. Receiving
//! spins on the incoming ring for a bounded time, then sleeps: on the futex word in the segment
//! (blocking) or on the eventfd passed with it (async). No syscall happens on the fast path.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::unix::AsyncFd;

use super::bulk::{BulkIn, BulkOut};
use super::link::{Link, LinkOwner, drain_event, signal_event};
use super::region::{futex_wait, futex_wake};
use super::ring::{
    Consumer, KIND_DATA, KIND_LARGE, Producer, RegionRing, RingError, SLEEP_EVENTFD, SLEEP_FUTEX,
    Wake, max_inline_payload,
};
use super::sync::spin_hint;
use crate::deadline::Deadline;
use crate::error::TransportError;
use crate::frame::Frame;
use crate::poll::register_readable;

/// How long a blocking receive waits for a large message's region descriptor, which the
/// peer sends before it announces the message.
const LARGE_FD_WAIT: Duration = Duration::from_secs(2);

/// Longest single futex sleep, so deadlines and shutdown are noticed.
const SLEEP_SLICE: Duration = Duration::from_millis(100);

fn corrupt(link: &Link, error: RingError) -> TransportError {
    let reason = error.to_string();
    link.mark_dead(&reason);
    TransportError::Malformed(reason)
}

/// A message ready for the ring: a frame, or the 16-byte announcement of a large one.
#[derive(Debug)]
enum Outgoing {
    Inline(Frame),
    Large([u8; 16]),
}

/// The sending half.
pub(crate) struct ShmSender {
    producer: Producer<RegionRing>,
    owner: Arc<LinkOwner>,
    limit: usize,
    spin: Duration,
    bulk: BulkOut,
    /// A message accepted by `send` but not yet in the ring (the ring was full, or the caller
    /// gave up waiting): it goes first at the next send, so nothing is lost or reordered.
    unsent: Option<Outgoing>,
}

impl ShmSender {
    pub(crate) fn new(
        producer: Producer<RegionRing>,
        owner: Arc<LinkOwner>,
        limit: usize,
        spin: Duration,
    ) -> Self {
        ShmSender {
            producer,
            owner,
            limit,
            spin,
            bulk: BulkOut::default(),
            unsent: None,
        }
    }

    fn link(&self) -> &Link {
        &self.owner.0
    }

    pub(crate) fn max_frame_size(&self) -> usize {
        self.limit
    }

    fn check(&self, size: usize) -> Result<(), TransportError> {
        if size > self.limit {
            return Err(TransportError::FrameTooLarge {
                size,
                limit: self.limit,
            });
        }
        if self.link().is_dead() {
            return Err(self.link().closed_error());
        }
        Ok(())
    }

    fn inline(&self, size: usize) -> bool {
        size <= max_inline_payload(self.link().segment.capacity)
    }

    /// An inline frame as what goes in the ring.
    fn prepare(&mut self, frame: Frame) -> Result<Outgoing, TransportError> {
        self.check(frame.len())?;
        Ok(Outgoing::Inline(frame))
    }

    fn wake(&self, wake: Wake) {
        match wake {
            Wake::Nobody => {}
            Wake::Futex => futex_wake(self.producer.reader_word()),
            Wake::EventFd => signal_event(&self.link().outgoing_event),
        }
    }

    /// Tries to put the unsent message in the ring; true when there is none left.
    fn try_flush(&mut self) -> Result<bool, TransportError> {
        let Some(outgoing) = &self.unsent else {
            return Ok(true);
        };
        if self.link().is_dead() {
            return Err(self.link().closed_error());
        }
        let (kind, bytes) = match outgoing {
            Outgoing::Inline(frame) => (KIND_DATA, frame.payload()),
            Outgoing::Large(announcement) => (KIND_LARGE, &announcement[..]),
        };
        match self.producer.try_push(kind, &[bytes]) {
            Ok(Some(wake)) => {
                self.unsent = None;
                self.wake(wake);
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(error) => Err(corrupt(self.link(), error)),
        }
    }

    /// True once nothing is unsent and a record of `len` payload bytes fits.
    fn try_room(&mut self, len: usize) -> Result<bool, TransportError> {
        if self.link().is_dead() {
            return Err(self.link().closed_error());
        }
        if !self.try_flush()? {
            return Ok(false);
        }
        self.producer
            .has_room(len)
            .map_err(|e| corrupt(self.link(), e))
    }

    /// Publishes a record of `len` bytes written in place by `fill` (room was checked).
    fn push_in_place(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), TransportError> {
        match self.producer.try_push_with(KIND_DATA, len, fill) {
            Ok(Some(wake)) => {
                self.wake(wake);
                Ok(())
            }
            // Room was checked and this is the only producer: the consumer's counter moved
            // backwards in between.
            Ok(None) => Err(corrupt(
                self.link(),
                RingError::Corrupt("the consumer's position moved backwards".into()),
            )),
            Err(error) => Err(corrupt(self.link(), error)),
        }
    }

    /// Announces a large message in the ring (at once: the caller made room for the 16-byte
    /// record; should the ring still be full, it goes first at the next flush) and only then
    /// lets `fill` write it into the bulk region
    /// [`try_acquire`](BulkOut::try_acquire) made current, so the receiver starts copying it
    /// out while it is written. True when the announcement is in the ring.
    fn place_large(
        &mut self,
        link: &Link,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<bool, TransportError> {
        self.unsent = Some(Outgoing::Large(self.bulk.begin(link, len)));
        let published = self.try_flush()?;
        self.bulk.fill(link, len, fill);
        Ok(published)
    }

    /// Waits in async code until a record of `len` payload bytes fits (0: until nothing is
    /// unsent): yields first, then short sleeps.
    async fn room(&mut self, len: usize) -> Result<(), TransportError> {
        let mut backoff = Duration::from_micros(20);
        let mut yields = 0;
        while !self.try_room(len)? {
            if yields < 64 {
                yields += 1;
                tokio::task::yield_now().await;
            } else {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(1));
            }
        }
        Ok(())
    }

    /// Waits on a plain thread until a record of `len` payload bytes fits (0: until nothing is
    /// unsent): spins, then sleeps on the futex until the consumer frees space.
    fn room_blocking(&mut self, len: usize, deadline: Deadline) -> Result<(), TransportError> {
        if self.try_room(len)? {
            return Ok(());
        }
        let deadline = deadline.resolve();
        let spin_until = crate::deadline::after(self.spin);
        loop {
            if self.try_room(len)? {
                return Ok(());
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Err(TransportError::TimedOut);
            }
            if now < spin_until {
                spin_hint();
                continue;
            }
            let payload = match &self.unsent {
                Some(Outgoing::Inline(frame)) => frame.len().max(len),
                _ => len.max(16),
            };
            match self.producer.announce_wait_for_space(payload) {
                Ok(true) => {
                    let slice = deadline.map_or(SLEEP_SLICE, |d| (d - now).min(SLEEP_SLICE));
                    if !self.link().is_dead() {
                        futex_wait(self.producer.space_word(), SLEEP_FUTEX, Some(slice));
                    }
                }
                Ok(false) => {}
                Err(error) => return Err(corrupt(self.link(), error)),
            }
        }
    }

    /// Sends from async code: a full ring is waited out with yields, then short sleeps.
    pub(crate) async fn send(&mut self, frame: Frame) -> Result<(), TransportError> {
        if !self.inline(frame.len()) {
            let payload = frame.payload();
            return self
                .send_with(payload.len(), |out| super::copy_in_place(out, payload))
                .await;
        }
        self.room(0).await?;
        self.unsent = Some(self.prepare(frame)?);
        self.room(0).await
    }

    /// Sends from a plain thread: a full ring is waited out spinning, then on the futex.
    pub(crate) fn send_blocking(
        &mut self,
        frame: Frame,
        deadline: Deadline,
    ) -> Result<(), TransportError> {
        if !self.inline(frame.len()) {
            let payload = frame.payload();
            return self.send_with_blocking(
                payload.len(),
                |out| super::copy_in_place(out, payload),
                deadline,
            );
        }
        self.room_blocking(0, deadline)?;
        self.unsent = Some(self.prepare(frame)?);
        self.room_blocking(0, deadline)
    }

    /// Sends, from async code, a message of `len` bytes that `fill` writes straight into the
    /// ring (or the bulk region): the message is never built anywhere else.
    pub(crate) async fn send_with(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<(), TransportError> {
        self.check(len)?;
        if self.inline(len) {
            self.room(len).await?;
            return self.push_in_place(len, fill);
        }
        // Room for the announcement first, so it is published before the fill (the ring only
        // gains room while the region is acquired: this is its only producer).
        self.room(16).await?;
        let link = self.owner.0.clone();
        let mut backoff = Duration::from_micros(20);
        while !self.bulk.try_acquire(&link, len)? {
            if link.is_dead() {
                return Err(link.closed_error());
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_millis(1));
        }
        // Once announced, the message is sent: the peer may already have answered it and
        // closed (refusing it as too large, say), which is no failure of this send.
        if self.place_large(&link, len, fill)? {
            return Ok(());
        }
        self.room(0).await
    }

    /// Sends like [`send_with`](Self::send_with) if that needs no wait: `Ok(false)` when the
    /// ring (or the bulk region) is full, with nothing sent and `fill` not called.
    pub(crate) fn try_send_with(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
    ) -> Result<bool, TransportError> {
        self.check(len)?;
        if self.inline(len) {
            if !self.try_room(len)? {
                return Ok(false);
            }
            self.push_in_place(len, fill)?;
            return Ok(true);
        }
        // Room for the announcement first, so it is published at once below.
        let link = self.owner.0.clone();
        if !self.try_room(16)? || !self.bulk.try_acquire(&link, len)? {
            return Ok(false);
        }
        if !self.place_large(&link, len, fill)? {
            // This is the only producer and room was there: the consumer moved backwards.
            return Err(corrupt(
                self.link(),
                RingError::Corrupt("the ring lost room it had".into()),
            ));
        }
        Ok(true)
    }

    /// [`send_with`](Self::send_with) from a plain thread.
    pub(crate) fn send_with_blocking(
        &mut self,
        len: usize,
        fill: impl FnOnce(&mut [u8]),
        deadline: Deadline,
    ) -> Result<(), TransportError> {
        self.check(len)?;
        if self.inline(len) {
            self.room_blocking(len, deadline)?;
            return self.push_in_place(len, fill);
        }
        // Room for the announcement first, as in `send_with`.
        self.room_blocking(16, deadline)?;
        let link = self.owner.0.clone();
        let until = deadline.resolve();
        while !self.bulk.try_acquire(&link, len)? {
            if link.is_dead() {
                return Err(link.closed_error());
            }
            if until.is_some_and(|d| Instant::now() >= d) {
                return Err(TransportError::TimedOut);
            }
            std::thread::sleep(Duration::from_micros(50));
        }
        // Sent once announced, as in `send_with`.
        if self.place_large(&link, len, fill)? {
            return Ok(());
        }
        self.room_blocking(0, deadline)
    }
}

/// The receiving half.
pub(crate) struct ShmReceiver {
    consumer: Consumer<RegionRing>,
    owner: Arc<LinkOwner>,
    limit: usize,
    bulk: BulkIn,
    event: Option<Arc<AsyncFd<OwnedFd>>>,
    /// The last blocking receive had to sleep: no traffic lately.
    idle: bool,
    /// The last async look found a large message whose region descriptor is still on its way.
    awaiting_region: bool,
    /// Since when the async receive has been waiting for such a descriptor.
    region_wait_since: Option<Instant>,
    /// Whether the async receive spins before it sleeps (see [`ShmReceiver::set_spinning`]).
    spinning: bool,
    /// How long spinning has paid lately, up to `spin` (see [`crate::spin`]).
    budget: crate::spin::SpinBudget,
}

impl ShmReceiver {
    /// Whether the async receive spins (yielding) before it sleeps on the eventfd. A server
    /// turns spinning off while calls run: a spinning task's yields are deferred on its worker,
    /// and a handler that computes on that worker would hold it there, while a task asleep on
    /// the eventfd is woken by whichever worker drives I/O.
    pub(crate) fn set_spinning(&mut self, spinning: bool) {
        self.spinning = spinning;
    }

    /// Sets the largest frame accepted from now on.
    pub(crate) fn set_max_frame_size(&mut self, limit: usize) {
        self.limit = limit;
    }

    pub(crate) fn new(
        consumer: Consumer<RegionRing>,
        owner: Arc<LinkOwner>,
        limit: usize,
        spin: Duration,
    ) -> Self {
        ShmReceiver {
            consumer,
            owner,
            limit,
            bulk: BulkIn::default(),
            event: None,
            idle: false,
            spinning: true,
            budget: crate::spin::SpinBudget::new(spin),
            awaiting_region: false,
            region_wait_since: None,
        }
    }

    fn link(&self) -> &Link {
        &self.owner.0
    }

    /// The next frame if one is in the ring.
    /// The next frame if one is in the ring. A large message whose region descriptor has not
    /// arrived yet is left in the ring when `fd_wait` is zero (async callers must not block)
    /// and waited for up to `fd_wait` otherwise.
    fn try_recv(&mut self, fd_wait: Duration) -> Result<Option<Frame>, TransportError> {
        let record = match self.consumer.peek() {
            Ok(Some(record)) => record,
            Ok(None) => return Ok(None),
            Err(error) => return Err(corrupt(self.link(), error)),
        };
        let link = self.owner.0.clone();
        if record.kind == KIND_DATA {
            if record.len > self.limit {
                return Err(TransportError::FrameTooLarge {
                    size: record.len,
                    limit: self.limit,
                });
            }
            let mut frame = Frame::with_capacity(record.len);
            self.consumer.append(&record, frame.buf_mut());
            let wake = self.consumer.consume(record);
            self.wake_writer(wake);
            return Ok(Some(frame));
        }
        // KIND_LARGE: the payload names a message in the peer's bulk region.
        if record.len != 16 {
            return Err(corrupt(
                &link,
                RingError::Corrupt(format!("large-message record of {} bytes", record.len)),
            ));
        }
        let mut announcement = [0u8; 16];
        self.consumer.read(&record, &mut announcement);
        if fd_wait.is_zero() && !self.bulk.is_ready(&link, &announcement) {
            self.awaiting_region = true;
            return Ok(None);
        }
        let wake = self.consumer.consume(record);
        self.wake_writer(wake);
        self.bulk
            .take(&link, &announcement, self.limit, fd_wait)
            .map(Some)
    }

    fn wake_writer(&self, wake: Wake) {
        if wake != Wake::Nobody {
            futex_wake(self.consumer.writer_word());
        }
    }

    /// Receives in async code: spins (yielding to other tasks) for the spin budget, then sleeps
    /// on the eventfd. `None` once the peer is gone and the ring is drained.
    pub(crate) async fn recv(&mut self) -> Result<Option<Frame>, TransportError> {
        loop {
            if let Some(frame) = self.try_recv(Duration::ZERO)? {
                // The wait for a region (if any) was this message's: the next one's starts
                // afresh.
                self.region_wait_since = None;
                return Ok(Some(frame));
            }
            if self.link().is_dead() {
                return self.finish();
            }
            if std::mem::take(&mut self.awaiting_region) {
                // A large message whose region is still on its way: wait without blocking,
                // for at most as long as a blocking receive would.
                let since = *self.region_wait_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= LARGE_FD_WAIT {
                    self.region_wait_since = None;
                    if let Some(frame) = self.try_recv(Duration::from_millis(1))? {
                        return Ok(Some(frame));
                    }
                }
                tokio::time::sleep(Duration::from_micros(50)).await;
                continue;
            }
            self.region_wait_since = None;
            // Yielding between looks lets the runtime's other tasks run: this spin holds no
            // CPU that another task of this thread needs.
            let budget = if self.spinning {
                self.budget.next_spin()
            } else {
                Duration::ZERO
            };
            if !budget.is_zero() {
                let started = Instant::now();
                while started.elapsed() < budget && !self.ready()? {
                    crate::spin::yield_to_others().await;
                }
                if self.ready()? {
                    self.budget.hit(started.elapsed());
                    continue;
                }
                self.budget.miss();
            }
            match self.consumer.announce_sleep(SLEEP_EVENTFD) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(error) => return Err(corrupt(self.link(), error)),
            }
            if !self.link().is_dead() {
                let event = self.event()?;
                let mut ready = event.readable().await?;
                drain_event(ready.get_inner());
                ready.clear_ready();
            }
            self.consumer.end_sleep();
        }
    }

    /// The eventfd the peer signals when this side announced it sleeps, registered with the
    /// runtime on first use.
    fn event(&mut self) -> Result<Arc<AsyncFd<OwnedFd>>, TransportError> {
        if let Some(event) = &self.event {
            return Ok(event.clone());
        }
        let fd = self.link().incoming_event.try_clone()?;
        Ok(self.event.insert(Arc::new(register_readable(fd)?)).clone())
    }

    /// The next frame if one is in the ring, without waiting (see [`crate::PollFrames`]).
    pub(crate) fn poll_frame(&mut self) -> Result<Option<Frame>, TransportError> {
        self.awaiting_region = false;
        let frame = self.try_recv(Duration::ZERO)?;
        if frame.is_some() {
            self.region_wait_since = None;
        }
        Ok(frame)
    }

    /// Asks the peer to signal the eventfd for its next record; false if one is here.
    pub(crate) fn announce_eventfd_sleep(&mut self) -> Result<bool, TransportError> {
        self.consumer
            .announce_sleep(SLEEP_EVENTFD)
            .map_err(|error| corrupt(self.link(), error))
    }

    /// Withdraws a sleep announcement.
    pub(crate) fn end_sleep(&mut self) {
        self.consumer.end_sleep();
    }

    /// The eventfd a sleeper waits on, shareable.
    pub(crate) fn wakeup(&mut self) -> Result<crate::Wakeup, TransportError> {
        Ok(crate::Wakeup::new(self.event()?))
    }

    /// The most a receive spins ([`crate::TransportConfig::shm_spin`]).
    pub(crate) fn spin_limit(&self) -> Duration {
        self.budget.max()
    }

    /// Whether the peer is gone (its rendezvous socket closed).
    pub(crate) fn peer_gone(&self) -> bool {
        self.link().is_dead()
    }

    /// Whether a record waits in the ring.
    pub(crate) fn has_buffered(&self) -> bool {
        self.consumer.has_data().unwrap_or(true)
    }

    /// Whether a record waits or the peer is gone.
    fn ready(&self) -> Result<bool, TransportError> {
        match self.consumer.has_data() {
            Ok(data) => Ok(data || self.link().is_dead()),
            Err(error) => Err(corrupt(self.link(), error)),
        }
    }

    /// After the ring is drained on a dead connection: `None` for an orderly end, the error
    /// otherwise.
    fn finish(&self) -> Result<Option<Frame>, TransportError> {
        Ok(None)
    }

    /// Spins until a record is published or the peer dies, at most `turns` times. Only the
    /// producer's counter is read in the loop, so a record is seen within a cache-line transfer
    /// of its publication, and no clock is read.
    /// The turns it took when a record came (or the peer died) within them; `None` when none
    /// did. The clock is read once, at the first offer of the CPU: `first_yield` then says
    /// when that was, so a spin the scheduler stretched is not taken for a short one.
    fn spin(
        &self,
        turns: u32,
        first_yield: &mut Option<Instant>,
    ) -> Result<Option<u32>, TransportError> {
        let yield_every = yield_every_turns();
        for turn in 0..turns {
            match self.consumer.has_data() {
                Ok(true) => return Ok(Some(turn)),
                Ok(false) => spin_hint(),
                Err(error) => return Err(corrupt(self.link(), error)),
            }
            if turn % 1024 == 1023 && self.link().is_dead() {
                return Ok(Some(turn));
            }
            if turn % yield_every == yield_every - 1 {
                first_yield.get_or_insert_with(Instant::now);
                std::thread::yield_now();
            }
        }
        Ok(None)
    }

    /// Receives on a plain thread: spins for the spin budget, then sleeps on the futex word.
    /// `Err(TimedOut)` once `deadline` passes; `None` once the peer is gone and the ring drained.
    pub(crate) fn recv_blocking(
        &mut self,
        deadline: Deadline,
    ) -> Result<Option<Frame>, TransportError> {
        if let Some(frame) = self.try_recv(LARGE_FD_WAIT)? {
            self.idle = false;
            return Ok(Some(frame));
        }
        // When a spin that ran out began, to tell the budget when the frame came.
        let mut missed: Option<Instant> = None;
        // Spin only while traffic flows: a receiver that last came back empty-handed goes
        // straight to sleep, so an idle connection polled with timeouts costs no CPU.
        if !self.idle
            && let Some(_permit) = SpinPermit::take()
        {
            let budget = self.budget.next_spin();
            if !budget.is_zero() {
                // Timed in turns, not by the clock: two clock reads would cost more than the
                // quick answer they would time.
                let mut first_yield = None;
                match self.spin(spin_turns(budget), &mut first_yield)? {
                    Some(turns) => {
                        self.budget.hit(spin_time(turns));
                        // Taken before the deadline is resolved: a frame that came while
                        // spinning needs no clock read.
                        if let Some(frame) = self.try_recv(LARGE_FD_WAIT)? {
                            return Ok(Some(frame));
                        }
                    }
                    None => {
                        self.budget.miss();
                        // From the first offer of the CPU, if it came to one: the spin may
                        // have waited for its CPU after it, for longer than it spun.
                        let (at, before) = match first_yield {
                            Some(at) => (at, spin_time(yield_every_turns())),
                            None => (Instant::now(), budget),
                        };
                        missed = Some(at.checked_sub(before).unwrap_or(at));
                    }
                }
            }
        }
        let deadline = deadline.resolve();
        loop {
            if let Some(frame) = self.try_recv(LARGE_FD_WAIT)? {
                if let Some(began) = missed {
                    self.budget.came_after(began.elapsed());
                }
                self.idle = false;
                return Ok(Some(frame));
            }
            if self.link().is_dead() {
                return self.finish();
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) || self.link().take_interrupt() {
                return Err(TransportError::TimedOut);
            }
            match self.consumer.announce_sleep(SLEEP_FUTEX) {
                Ok(true) => {
                    let slice = deadline.map_or(SLEEP_SLICE, |d| (d - now).min(SLEEP_SLICE));
                    if !self.link().is_dead() {
                        futex_wait(self.consumer.sleep_word(), SLEEP_FUTEX, Some(slice));
                    }
                    self.consumer.end_sleep();
                    self.idle = true;
                }
                Ok(false) => {}
                Err(error) => return Err(corrupt(self.link(), error)),
            }
        }
    }
}

/// Leave to spin: at most one spinner per CPU this process may run on (while the machine is
/// oversubscribed, each spins less: [`crate::spin::SpinBudget::next_spin`]). Spinning only pays when the
/// peer runs on another CPU at the same time; with more spinners than CPUs they would take
/// turns burning each other's time, so the others sleep at once.
struct SpinPermit;

static SPINNERS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl SpinPermit {
    fn take() -> Option<SpinPermit> {
        let cpus = crate::spin::process_cpus();
        if SPINNERS.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < cpus {
            Some(SpinPermit)
        } else {
            SPINNERS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            None
        }
    }
}

impl Drop for SpinPermit {
    fn drop(&mut self) {
        SPINNERS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// How long a blocking receive spins before it first offers its CPU to another runnable
/// thread (`sched_yield`), and again each time as long. An answer that takes longer than this
/// is rarely on its way from another CPU: the scheduler may have put the peer on this
/// spinner's CPU (it does so to threads that wake each other), where it can answer only once
/// the spinner lets it run. Alone on its CPU, the spinner goes on at once.
const YIELD_EVERY: Duration = Duration::from_micros(20);

/// The spin turns between two offers of the CPU: about [`YIELD_EVERY`], at least 1024.
fn yield_every_turns() -> u32 {
    spin_turns(YIELD_EVERY).max(1024)
}

/// How many spin turns take about `budget` on this machine (measured once).
fn spin_turns(budget: Duration) -> u32 {
    (budget.as_secs_f64() * 1e6 * turns_per_micro()).min(u32::MAX as f64) as u32
}

/// About how long `turns` spin turns take on this machine.
fn spin_time(turns: u32) -> Duration {
    Duration::from_secs_f64(turns as f64 / turns_per_micro() / 1e6)
}

/// Spin turns per microsecond on this machine (measured once).
fn turns_per_micro() -> f64 {
    static TURNS_PER_MICRO: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TURNS_PER_MICRO.get_or_init(|| {
        const SAMPLE: u32 = 20_000;
        let start = Instant::now();
        for _ in 0..SAMPLE {
            spin_hint();
        }
        let micros = start.elapsed().as_secs_f64() * 1e6;
        (SAMPLE as f64 / micros.max(0.001)).max(1.0)
    })
}

impl ShmReceiver {
    /// A handle that makes a blocked [`recv_blocking`](Self::recv_blocking) return
    /// `TimedOut` at once (the next one, if none is blocked).
    pub(crate) fn interrupter(&self) -> ShmInterrupter {
        ShmInterrupter(self.owner.0.clone())
    }
}

/// Wakes a receiver blocked on a shared-memory ring; see [`ShmReceiver::interrupter`].
pub(crate) struct ShmInterrupter(Arc<Link>);

impl ShmInterrupter {
    pub(crate) fn interrupt(&self) {
        self.0.interrupt();
    }
}

impl ShmSender {
    /// Ends the connection from this side (shared memory has no half-close: the rendezvous
    /// socket is the liveness signal). The peer still reads what is in the ring, then sees the
    /// end.
    pub(crate) fn close(&mut self) {
        let _ = self.owner.0.socket.shutdown(std::net::Shutdown::Both);
    }
}

impl ShmReceiver {
    /// Discards frames until the peer is gone.
    pub(crate) async fn drain(&mut self) {
        while let Ok(Some(_)) = self.recv().await {}
    }
}

impl std::fmt::Debug for ShmSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmSender")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for ShmReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmReceiver")
            .field("limit", &self.limit)
            .finish_non_exhaustive()
    }
}
