//! Settings shared by every transport, and each transport's own.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

/// The default maximum frame size: 16 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 * 1024 * 1024;

/// The default bytes of data per shared-memory ring: 256 KiB.
pub const DEFAULT_SHM_RING_CAPACITY: usize = 256 * 1024;

/// Settings for connections and listeners: the ones every transport shares, and any number
/// of settings of one transport's own ([`with_setting`](Self::with_setting), read with
/// [`setting`](Self::setting)), such as `tls://`'s certificates.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransportConfig {
    /// Largest frame payload, in bytes, that is sent or accepted. A bigger frame is refused
    /// on send with [`TransportError::FrameTooLarge`](crate::TransportError::FrameTooLarge)
    /// and fails the connection on receive.
    pub max_frame_size: usize,
    /// Bytes of data in each shared-memory ring (a power of two, 4 KiB to 1 GiB). Messages over
    /// a quarter of it travel in a separately mapped region.
    pub shm_ring_capacity: usize,
    /// The most a shared-memory receiver (or a sender facing a full ring) spins before it
    /// sleeps; zero never spins. Within it the spin adapts ([`crate::spin::SpinBudget`]): it
    /// halves each time a spin runs out with nothing and grows back when spinning catches the
    /// message, and while the machine is oversubscribed ([`crate::spin::oversubscribed`]) a
    /// receiver spins at most [`crate::spin::OVERSUBSCRIBED_SPIN`]. An idle connection costs
    /// no CPU.
    pub shm_spin: std::time::Duration,
    /// How long a receive over a socket, pipe, FIFO or message queue polls before it sleeps
    /// (50 µs by default; a blocking client spins for it). A message that lands within it
    /// costs no kernel wake-up; zero turns the poll off. An async caller that reads its own
    /// reply from a socket, pipe or FIFO spins up to four times this, within an adaptive
    /// budget ([`crate::spin::SpinBudget`]).
    pub socket_spin: std::time::Duration,
    /// The mode of a Unix socket file a listener creates (`unix:///path`, the rendezvous
    /// socket of `shm:///path`), set before the socket accepts anyone, whatever the umask.
    /// 0o600 (only the owner) by default; a server that admits other users widens it.
    pub socket_mode: u32,
    /// Settings of particular transports, one per type.
    settings: Settings,
}

/// Settings of particular transports, by type.
#[derive(Clone, Default)]
struct Settings(Vec<Arc<dyn Any + Send + Sync>>);

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} transport setting(s)", self.0.len())
    }
}

impl TransportConfig {
    /// Returns the configuration with `setting` added, replacing one of the same type: a
    /// transport's own settings (`tls://`'s certificates, a registered transport's options).
    pub fn with_setting<T: Any + Send + Sync>(mut self, setting: T) -> Self {
        self.settings.0.retain(|s| !s.is::<T>());
        self.settings.0.push(Arc::new(setting));
        self
    }

    /// The setting of type `T`, if one was added.
    pub fn setting<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.settings.0.iter().find_map(|s| s.downcast_ref::<T>())
    }

    /// Returns the configuration with `shm_ring_capacity` set.
    pub fn with_shm_ring_capacity(mut self, bytes: usize) -> Self {
        self.shm_ring_capacity = bytes;
        self
    }

    /// Returns the configuration with `shm_spin` set.
    pub fn with_shm_spin(mut self, spin: std::time::Duration) -> Self {
        self.shm_spin = spin;
        self
    }

    /// Returns the configuration with `max_frame_size` set.
    pub fn with_max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }
}

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            shm_ring_capacity: DEFAULT_SHM_RING_CAPACITY,
            shm_spin: std::time::Duration::from_micros(200),
            socket_spin: std::time::Duration::from_micros(50),
            socket_mode: 0o600,
            settings: Settings::default(),
        }
    }
}
