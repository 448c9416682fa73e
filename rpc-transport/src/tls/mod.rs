//! `tls://HOST:PORT`: TCP with TLS 1.2/1.3 by rustls (the *ring* provider; no OpenSSL).
//!
//! - A server needs [`TlsServerSettings`] (certificate chain and key, from PEM files or
//!   text); with a client CA it requires client certificates (mutual TLS).
//! - A client verifies the server's certificate against the system's root certificates, or
//!   the CAs of [`TlsClientSettings`], and for the address's host name or IP address (sent as
//!   SNI), or the name the settings give; it may present a certificate of its own.
//! - Both ends see the other as [`PeerInfo::Tls`]: its socket address and the identity
//!   (subject and subject alternative names) of its verified certificate, if it presented one.
//! - Failures are [`TransportError::Tls`] naming the cause: an unknown CA, an expired
//!   certificate, a certificate for another host, a client certificate missing or refused.
//!
//! Files: `settings.rs` (the public settings and their builders), `pem.rs` (reading PEM),
//! `accept.rs` (the listener, with concurrent handshakes under a time limit), `halves.rs`
//! (framing over the TLS stream), `identity.rs` (subject and SANs of a certificate),
//! `reason.rs` (rustls's errors in words).

mod accept;
mod halves;
mod identity;
mod pem;
mod reason;
mod settings;

use std::time::Duration;

use rustls::pki_types::ServerName;

pub use settings::{
    DEFAULT_HANDSHAKE_TIMEOUT, TlsClientSettings, TlsClientSettingsBuilder, TlsServerSettings,
    TlsServerSettingsBuilder,
};

use self::accept::TlsAcceptor;
use self::identity::peer_certificate;
use self::pem::settings_error;
use self::reason::Role;
use crate::address::Address;
use crate::blocking::BlockingConnection;
use crate::config::TransportConfig;
use crate::connection::{Connection, PeerInfo};
use crate::error::TransportError;
use crate::transport::{Acceptor, BoxFuture, Transport};

/// The `tls` transport.
pub(crate) struct Tls;

impl Transport for Tls {
    fn scheme(&self) -> &str {
        "tls"
    }

    fn forms(&self) -> Vec<String> {
        vec!["tls://HOST:PORT".into()]
    }

    fn check(&self, address: &Address) -> Result<(), TransportError> {
        address.host_port().map(drop)
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
            let settings = config.setting::<TlsServerSettings>().ok_or_else(|| {
                settings_error(
                    "a tls:// listener needs TlsServerSettings: certificate and key (give them \
                     with TransportConfig::with_setting, or rpc-core's Server::transport_setting)",
                )
            })?;
            let acceptor = TlsAcceptor::bind(address, settings, config).await?;
            Ok(Box::new(acceptor) as Box<dyn Acceptor>)
        })
    }

    fn connect_blocking(
        &self,
        address: &Address,
        config: &TransportConfig,
        timeout: Duration,
    ) -> Result<BlockingConnection, TransportError> {
        BlockingConnection::over_runtime(address, timeout, || connect(address, config))
    }
}

/// The name the server's certificate must be valid for: the settings' override, or the
/// address's host (a DNS name, or an IP address matched against IP SANs).
fn server_name(
    address: &Address,
    settings: &TlsClientSettings,
) -> Result<ServerName<'static>, TransportError> {
    if let Some(name) = settings.server_name_override() {
        return Ok(name.clone());
    }
    let (host, _) = address.host_port()?;
    ServerName::try_from(host.clone()).map_err(|_| {
        address.invalid(format!(
            "'{host}' is neither a DNS name nor an IP address, so no certificate can be \
             verified for it"
        ))
    })
}

/// A verified TLS connection to `address`.
async fn connect(
    address: &Address,
    config: &TransportConfig,
) -> Result<Connection, TransportError> {
    let settings = match config.setting::<TlsClientSettings>() {
        Some(settings) => settings.clone(),
        None => TlsClientSettings::with_system_roots()?,
    };
    let name = server_name(address, &settings)?;
    let stream = crate::tcp::connect_stream(address).await?;
    let addr = stream.peer_addr()?;
    let role = Role::Client {
        presents_certificate: settings.presents_certificate(),
    };
    let connector = tokio_rustls::TlsConnector::from(settings.config());
    let tls = connector
        .connect(name, stream)
        .await
        .map_err(|error| reason::from_io(error, &addr.to_string(), role))?;
    let certificate = match tls.get_ref().1.peer_certificates() {
        Some([end_entity, ..]) => {
            Some(
                peer_certificate(end_entity).map_err(|reason| TransportError::Tls {
                    peer: addr.to_string(),
                    reason,
                })?,
            )
        }
        _ => None,
    };
    Ok(halves::connection(
        tls.into(),
        PeerInfo::Tls { addr, certificate },
        addr.to_string(),
        role,
        config,
    ))
}
