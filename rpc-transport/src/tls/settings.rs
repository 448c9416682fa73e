//! [`TlsServerSettings`] and [`TlsClientSettings`]: the certificates of `tls://`, given to a
//! listener or a client as a transport setting
//! ([`TransportConfig::with_setting`](crate::TransportConfig::with_setting)).
//!
//! Everything is read and checked when the settings are built, so a missing file, a key that
//! does not match its certificate or a CA file without certificates is reported at start-up,
//! naming the file, rather than at the first connection.

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::ServerName;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::pem::{PemSource, settings_error};
use crate::error::TransportError;

/// How long a server waits for a client to complete its TLS handshake, by default.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The crypto of every `tls://` connection: rustls with *ring*, chosen explicitly so another
/// crate's choice of a process-wide default provider changes nothing here.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static PROVIDER: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// A `tls://` server's certificate chain and key, and, for mutual TLS, the CA its clients'
/// certificates must be signed by. Give it to a listener with
/// [`TransportConfig::with_setting`](crate::TransportConfig::with_setting) (in `rpc-core`,
/// `Server::transport_setting`); a `tls://` listener without it is refused with
/// [`TransportError::Settings`].
///
/// ```no_run
/// # fn demo() -> Result<(), rpc_transport::TransportError> {
/// use rpc_transport::TlsServerSettings;
/// let settings = TlsServerSettings::builder()
///     .certificate_file("server.pem")
///     .key_file("server.key")
///     .client_ca_file("clients-ca.pem") // optional: require client certificates
///     .build()?;
/// let config = rpc_transport::TransportConfig::default().with_setting(settings);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsServerSettings {
    config: Arc<ServerConfig>,
    requires_client_certificate: bool,
    handshake_timeout: Duration,
}

impl TlsServerSettings {
    /// A builder, to give the certificate, key and optional client CA as files or PEM text.
    pub fn builder() -> TlsServerSettingsBuilder {
        TlsServerSettingsBuilder {
            certificate: None,
            key: None,
            client_ca: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// A server's settings from a PEM certificate chain file (the server's certificate first)
    /// and a PEM private key file, without client certificates.
    pub fn from_pem_files(
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Result<TlsServerSettings, TransportError> {
        Self::builder()
            .certificate_file(certificate)
            .key_file(key)
            .build()
    }

    /// Whether clients must present a certificate signed by the client CA (mutual TLS).
    pub fn requires_client_certificate(&self) -> bool {
        self.requires_client_certificate
    }

    /// How long a client may take to complete its handshake before it is dropped.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }

    pub(crate) fn config(&self) -> Arc<ServerConfig> {
        self.config.clone()
    }
}

impl fmt::Debug for TlsServerSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsServerSettings")
            .field(
                "requires_client_certificate",
                &self.requires_client_certificate,
            )
            .field("handshake_timeout", &self.handshake_timeout)
            .finish_non_exhaustive()
    }
}

/// Builds [`TlsServerSettings`]; see [`TlsServerSettings::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct TlsServerSettingsBuilder {
    certificate: Option<PemSource>,
    key: Option<PemSource>,
    client_ca: Option<PemSource>,
    handshake_timeout: Duration,
}

impl TlsServerSettingsBuilder {
    /// The server's certificate chain: a PEM file, the server's own certificate first, then
    /// any intermediates.
    pub fn certificate_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.certificate = Some(PemSource::File(path.into()));
        self
    }

    /// The server's certificate chain as PEM text.
    pub fn certificate_pem(mut self, pem: impl Into<String>) -> Self {
        self.certificate = Some(PemSource::Text(pem.into()));
        self
    }

    /// The server's private key: a PEM file (PKCS#8, PKCS#1 or SEC1).
    pub fn key_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.key = Some(PemSource::File(path.into()));
        self
    }

    /// The server's private key as PEM text.
    pub fn key_pem(mut self, pem: impl Into<String>) -> Self {
        self.key = Some(PemSource::Text(pem.into()));
        self
    }

    /// Requires every client to present a certificate signed by a CA in this PEM file (mutual
    /// TLS); a client without one, or with one from another CA, is refused.
    pub fn client_ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(PemSource::File(path.into()));
        self
    }

    /// As [`client_ca_file`](Self::client_ca_file), with the CA as PEM text.
    pub fn client_ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.client_ca = Some(PemSource::Text(pem.into()));
        self
    }

    /// How long a client may take to complete its handshake ([`DEFAULT_HANDSHAKE_TIMEOUT`]
    /// by default); one that does not is dropped, without delaying anyone else.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Reads and checks everything: the files exist and hold PEM of the right kind, and the
    /// key belongs to the certificate. Errors are [`TransportError::Settings`] naming the file.
    pub fn build(self) -> Result<TlsServerSettings, TransportError> {
        let (Some(certificate), Some(key)) = (&self.certificate, &self.key) else {
            return Err(settings_error(
                "a server needs both a certificate and a private key (certificate_file and \
                 key_file)",
            ));
        };
        let chain = certificate.certificates("certificate")?;
        let private_key = key.private_key("key")?;
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| settings_error(error.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let roots = trust_anchors(ca, "client CA")?;
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .map_err(|error| {
                            settings_error(format!("{}: {error}", ca.describe("client CA")))
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let config = builder
            .with_single_cert(chain, private_key)
            .map_err(|error| {
                settings_error(format!(
                    "{} cannot be used with {}: {}",
                    key.describe("key"),
                    certificate.describe("certificate"),
                    key_problem(&error)
                ))
            })?;
        Ok(TlsServerSettings {
            config: Arc::new(config),
            requires_client_certificate: self.client_ca.is_some(),
            handshake_timeout: self.handshake_timeout,
        })
    }
}

/// A certificate and key that rustls refused together, in words.
fn key_problem(error: &rustls::Error) -> String {
    match error {
        rustls::Error::InconsistentKeys(_) => {
            "the key does not belong to the certificate (their public keys differ)".into()
        }
        other => other.to_string(),
    }
}

/// The certificates of `source` as trust anchors; at least one.
fn trust_anchors(source: &PemSource, what: &str) -> Result<RootCertStore, TransportError> {
    let mut roots = RootCertStore::empty();
    for certificate in source.certificates(what)? {
        roots.add(certificate).map_err(|error| {
            settings_error(format!(
                "{} holds a certificate that cannot be a trust anchor: {error}",
                source.describe(what)
            ))
        })?;
    }
    Ok(roots)
}

/// The system's trusted root certificates (read once per process with
/// `rustls-native-certs`, from the same places OpenSSL would look: `SSL_CERT_FILE`,
/// `SSL_CERT_DIR`, `/etc/ssl/certs`...).
fn system_roots() -> Result<Arc<RootCertStore>, TransportError> {
    static ROOTS: OnceLock<Result<Arc<RootCertStore>, String>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            let mut roots = RootCertStore::empty();
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                let errors: Vec<String> = found.errors.iter().map(|e| e.to_string()).collect();
                return Err(format!(
                    "this system has no trusted root certificates{}; give the client a CA file \
                     (TlsClientSettings::builder().ca_file)",
                    if errors.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", errors.join("; "))
                    }
                ));
            }
            Ok(Arc::new(roots))
        })
        .clone()
        .map_err(settings_error)
}

/// How a `tls://` client verifies its server, and the certificate it presents for mutual TLS.
/// Give it with [`TransportConfig::with_setting`](crate::TransportConfig::with_setting) (in
/// `rpc-core`, `ClientOptions::transport_setting`); without it a client trusts the system's
/// root certificates and presents none.
///
/// The server's certificate is always verified: its chain up to a trusted CA, its dates, and
/// that it is valid for the address's host name or IP address (or for
/// [`server_name`](TlsClientSettingsBuilder::server_name)).
///
/// ```no_run
/// # fn demo() -> Result<(), rpc_transport::TransportError> {
/// use rpc_transport::TlsClientSettings;
/// let settings = TlsClientSettings::builder()
///     .ca_file("ca.pem")                                   // instead of the system roots
///     .client_certificate_files("client.pem", "client.key") // optional: mutual TLS
///     .build()?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct TlsClientSettings {
    config: Arc<ClientConfig>,
    server_name: Option<ServerName<'static>>,
    presents_certificate: bool,
}

impl TlsClientSettings {
    /// A builder, to choose the trusted CAs, a client certificate and the name to verify.
    pub fn builder() -> TlsClientSettingsBuilder {
        TlsClientSettingsBuilder {
            cas: Vec::new(),
            system_roots: false,
            certificate: None,
            server_name: None,
        }
    }

    /// Trusts the system's root certificates only, presents no certificate: what a client
    /// without settings does.
    pub fn with_system_roots() -> Result<TlsClientSettings, TransportError> {
        static DEFAULT: OnceLock<TlsClientSettings> = OnceLock::new();
        if let Some(settings) = DEFAULT.get() {
            return Ok(settings.clone());
        }
        let settings = Self::builder().build()?;
        Ok(DEFAULT.get_or_init(|| settings).clone())
    }

    /// Trusts the CAs of one PEM file only, presents no certificate.
    pub fn from_ca_file(path: impl Into<PathBuf>) -> Result<TlsClientSettings, TransportError> {
        Self::builder().ca_file(path).build()
    }

    /// The name the server's certificate is verified for instead of the address's host, if
    /// one was set.
    pub fn server_name(&self) -> Option<String> {
        self.server_name
            .as_ref()
            .map(|name| name.to_str().into_owned())
    }

    /// These settings verifying the server's certificate for `name` unless a server name was
    /// set already: what a client of `dns+tls://NAME:PORT` uses for each replica's address.
    pub fn verifying_name_unless_set(
        &self,
        name: &str,
    ) -> Result<TlsClientSettings, TransportError> {
        let mut settings = self.clone();
        if settings.server_name.is_none() {
            settings.server_name = Some(ServerName::try_from(name.to_owned()).map_err(|_| {
                settings_error(format!(
                    "the server name '{name}' is neither a DNS name nor an IP address"
                ))
            })?);
        }
        Ok(settings)
    }

    /// Whether this client presents a certificate (for servers that require one).
    pub fn presents_certificate(&self) -> bool {
        self.presents_certificate
    }

    pub(crate) fn config(&self) -> Arc<ClientConfig> {
        self.config.clone()
    }

    pub(crate) fn server_name_override(&self) -> Option<&ServerName<'static>> {
        self.server_name.as_ref()
    }
}

impl fmt::Debug for TlsClientSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClientSettings")
            .field("server_name", &self.server_name())
            .field("presents_certificate", &self.presents_certificate)
            .finish_non_exhaustive()
    }
}

/// Builds [`TlsClientSettings`]; see [`TlsClientSettings::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct TlsClientSettingsBuilder {
    cas: Vec<PemSource>,
    system_roots: bool,
    certificate: Option<(PemSource, PemSource)>,
    server_name: Option<String>,
}

impl TlsClientSettingsBuilder {
    /// Trusts the CA certificates in this PEM file. Once any CA is given, the system's roots
    /// are no longer trusted unless [`system_roots`](Self::system_roots) asks for them too.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.cas.push(PemSource::File(path.into()));
        self
    }

    /// As [`ca_file`](Self::ca_file), with the CA certificates as PEM text.
    pub fn ca_pem(mut self, pem: impl Into<String>) -> Self {
        self.cas.push(PemSource::Text(pem.into()));
        self
    }

    /// Also trusts the system's root certificates (the default when no CA is given).
    pub fn system_roots(mut self) -> Self {
        self.system_roots = true;
        self
    }

    /// Presents this certificate chain (PEM file, the client's own certificate first) and
    /// private key (PEM file) to servers that ask for one: mutual TLS.
    pub fn client_certificate_files(
        mut self,
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.certificate = Some((
            PemSource::File(certificate.into()),
            PemSource::File(key.into()),
        ));
        self
    }

    /// As [`client_certificate_files`](Self::client_certificate_files), from PEM text.
    pub fn client_certificate_pem(
        mut self,
        certificate: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        self.certificate = Some((
            PemSource::Text(certificate.into()),
            PemSource::Text(key.into()),
        ));
        self
    }

    /// Verifies the server's certificate for `name` (a DNS name or an IP address), and sends
    /// it as SNI, instead of the host of the address connected to: for a server reached by an
    /// IP address or a tunnel whose certificate names its public host name.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    /// Reads and checks everything; errors are [`TransportError::Settings`] naming the file.
    pub fn build(self) -> Result<TlsClientSettings, TransportError> {
        let mut roots = if self.system_roots || self.cas.is_empty() {
            (*system_roots()?).clone()
        } else {
            RootCertStore::empty()
        };
        for ca in &self.cas {
            roots.roots.extend(trust_anchors(ca, "CA")?.roots);
        }
        let server_name = self
            .server_name
            .map(|name| {
                ServerName::try_from(name.clone()).map_err(|_| {
                    settings_error(format!(
                        "the server name '{name}' is neither a DNS name nor an IP address"
                    ))
                })
            })
            .transpose()?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|error| settings_error(error.to_string()))?
            .with_root_certificates(roots);
        let config = match &self.certificate {
            None => builder.with_no_client_auth(),
            Some((certificate, key)) => {
                let chain = certificate.certificates("client certificate")?;
                let private_key = key.private_key("client key")?;
                builder
                    .with_client_auth_cert(chain, private_key)
                    .map_err(|error| {
                        settings_error(format!(
                            "{} cannot be used with {}: {}",
                            key.describe("client key"),
                            certificate.describe("client certificate"),
                            key_problem(&error)
                        ))
                    })?
            }
        };
        Ok(TlsClientSettings {
            config: Arc::new(config),
            server_name,
            presents_certificate: self.certificate.is_some(),
        })
    }
}
