//! The transports by scheme: the built-in ones, and any a program [`register`]s.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock, RwLock};

use crate::address::Address;
use crate::error::TransportError;
use crate::transport::Transport;

type Transports = RwLock<BTreeMap<String, Arc<dyn Transport>>>;

/// The built-in mechanisms, one line each: a new one adds its module and a line here.
fn built_in() -> Vec<Arc<dyn Transport>> {
    vec![
        Arc::new(crate::tcp::Tcp),
        Arc::new(crate::tls::Tls),
        Arc::new(crate::unix::Unix),
        Arc::new(crate::mem::Mem),
        Arc::new(crate::shm::Shm),
        Arc::new(crate::shm::Mmap),
        Arc::new(crate::shm::SysvShm),
        Arc::new(crate::pipe::Stdio),
        Arc::new(crate::pipe::Spawn),
        Arc::new(crate::fifo::Fifo),
        Arc::new(crate::mq::Mq),
        Arc::new(crate::mq::SysvMq),
    ]
}

fn transports() -> &'static Transports {
    static TRANSPORTS: OnceLock<Transports> = OnceLock::new();
    TRANSPORTS.get_or_init(|| {
        let map = built_in()
            .into_iter()
            .map(|t| (t.scheme().to_owned(), t))
            .collect();
        RwLock::new(map)
    })
}

/// Adds `transport` under its scheme, for every later [`Address`] parse, `connect`,
/// `Listener::bind` and `connect_blocking` in this process (and so for `rpc-core`'s clients
/// and servers). A scheme already taken, built-in or registered, is refused with
/// [`TransportError::SchemeTaken`].
pub fn register(transport: impl Transport) -> Result<(), TransportError> {
    let scheme = transport.scheme().to_owned();
    if Address::split(&scheme).is_none_or(|a| a.scheme() != scheme) {
        return Err(TransportError::InvalidAddress {
            address: scheme,
            reason: "a scheme is a letter followed by letters, digits, '+', '-' or '.'".into(),
        });
    }
    let mut map = transports().write().unwrap_or_else(|p| p.into_inner());
    if map.contains_key(&scheme) {
        return Err(TransportError::SchemeTaken { scheme });
    }
    map.insert(scheme, Arc::new(transport));
    Ok(())
}

/// The transport registered for `address`'s scheme.
pub(crate) fn lookup(address: &Address) -> Result<Arc<dyn Transport>, TransportError> {
    let map = transports().read().unwrap_or_else(|p| p.into_inner());
    map.get(address.scheme())
        .cloned()
        .ok_or_else(|| unsupported_with(address.as_str(), &map))
}

/// Every registered address form, one line each, built-in and registered.
pub fn supported_forms() -> Vec<String> {
    let map = transports().read().unwrap_or_else(|p| p.into_inner());
    forms_of(&map)
}

fn forms_of(map: &BTreeMap<String, Arc<dyn Transport>>) -> Vec<String> {
    map.values().flat_map(|t| t.forms()).collect()
}

fn unsupported_with(text: &str, map: &BTreeMap<String, Arc<dyn Transport>>) -> TransportError {
    TransportError::UnsupportedScheme {
        address: text.to_owned(),
        supported: forms_of(map).join(", "),
    }
}

/// The error for an address whose scheme no transport serves.
pub(crate) fn unsupported(text: &str) -> TransportError {
    let map = transports().read().unwrap_or_else(|p| p.into_inner());
    unsupported_with(text, &map)
}
