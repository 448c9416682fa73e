//! The transports by scheme: the built-in ones, and any a program [`register`]s.

use std::collections::BTreeMap;
use std::str::FromStr;
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
        Arc::new(crate::shm::SHM),
        Arc::new(crate::shm::MMAP),
        Arc::new(crate::shm::SYSV_SHM),
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
    // Addresses carry their scheme in lowercase (schemes are case-insensitive): a transport
    // registered under `Xtcp` would never be found.
    if Address::split(&scheme).is_none_or(|a| a.scheme() != scheme) {
        return Err(TransportError::InvalidAddress {
            address: scheme,
            reason: "a scheme is a lowercase letter followed by lowercase letters, digits, '+', \
                     '-' or '.' (schemes are case-insensitive: `Tcp://` is `tcp://`)"
                .into(),
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

impl FromStr for Address {
    type Err = TransportError;

    /// Splits the scheme off and has its registered transport check the rest.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let address = Address::split(text).ok_or_else(|| unsupported(text))?;
        lookup(&address)?.check(&address)?;
        Ok(address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::{Acceptor, BoxFuture};
    use crate::{Connection, TransportConfig};

    struct Named(&'static str);

    impl Transport for Named {
        fn scheme(&self) -> &str {
            self.0
        }

        fn connect<'a>(
            &'a self,
            _: &'a Address,
            _: &'a TransportConfig,
        ) -> BoxFuture<'a, Result<Connection, TransportError>> {
            Box::pin(std::future::ready(Err(TransportError::Closed)))
        }

        fn bind<'a>(
            &'a self,
            _: &'a Address,
            _: &'a TransportConfig,
        ) -> BoxFuture<'a, Result<Box<dyn Acceptor>, TransportError>> {
            Box::pin(std::future::ready(Err(TransportError::Closed)))
        }
    }

    /// A scheme that no address could reach is refused: not a scheme at all, or not in the
    /// lowercase every parsed address carries; a built-in one in another case is taken.
    #[test]
    fn only_reachable_schemes_register() {
        for bad in ["", "1x", "a:b", "a b", "Upper", "UPPER+X"] {
            let refused = register(Named(bad));
            assert!(
                matches!(refused, Err(TransportError::InvalidAddress { .. })),
                "{bad:?}: {refused:?}"
            );
        }
        assert!(matches!(
            register(Named("tcp")),
            Err(TransportError::SchemeTaken { .. })
        ));
        register(Named("review-x+y.z")).unwrap();
        let address: Address = "Review-X+Y.Z://anything".parse().unwrap();
        assert_eq!(lookup(&address).unwrap().scheme(), "review-x+y.z");
    }
}
