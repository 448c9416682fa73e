//! Settings shared by every transport.

/// The default maximum frame size: 16 MiB.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 * 1024 * 1024;

/// Settings for connections and listeners.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct TransportConfig {
    /// Largest frame payload, in bytes, that is sent or accepted. A bigger frame is refused
    /// on send with [`TransportError::FrameTooLarge`](crate::TransportError::FrameTooLarge)
    /// and fails the connection on receive.
    pub max_frame_size: usize,
}

impl TransportConfig {
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
        }
    }
}
