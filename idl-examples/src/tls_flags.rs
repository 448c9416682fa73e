//! The `--tls-*` flags of the example binaries, as clap argument groups that turn into
//! `tls://` settings: [`ServerTls`] for servers, [`ClientTls`] for clients.

use std::path::PathBuf;

use rpc_core::{ClientOptions, Server, TlsClientSettings, TlsServerSettings};

/// A server's TLS flags: `--tls-cert FILE --tls-key FILE [--tls-ca FILE]`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ServerTls {
    /// PEM certificate chain for tls:// listeners (the server's certificate first).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by the CA in this PEM file (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
}

impl ServerTls {
    /// `server` with the TLS settings these flags give, if any; `listen` is checked for a
    /// `tls://` address without them. The error is a message for the user.
    pub fn apply(&self, server: Server, listen: &[String]) -> Result<Server, String> {
        let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) else {
            if let Some(tls) = listen.iter().find(|a| a.starts_with("tls://")) {
                return Err(format!(
                    "--listen {tls} needs --tls-cert FILE and --tls-key FILE (PEM)"
                ));
            }
            return Ok(server);
        };
        let mut builder = TlsServerSettings::builder()
            .certificate_file(cert)
            .key_file(key);
        if let Some(ca) = &self.tls_ca {
            builder = builder.client_ca_file(ca);
        }
        let settings = builder.build().map_err(|e| e.to_string())?;
        Ok(server.transport_setting(settings))
    }
}

/// A client's TLS flags: `[--tls-ca FILE] [--tls-cert FILE --tls-key FILE]
/// [--tls-server-name NAME]`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ClientTls {
    /// Trust the CA certificates in this PEM file for tls:// servers, instead of the
    /// system's root certificates.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,
    /// Present this PEM certificate to tls:// servers that require one (mutual TLS).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Verify the server's certificate for NAME instead of the host in --connect.
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

impl ClientTls {
    /// Whether any TLS flag was given.
    pub fn given(&self) -> bool {
        self.tls_ca.is_some() || self.tls_cert.is_some() || self.tls_server_name.is_some()
    }

    /// `options` with the TLS settings these flags give, if any. The error is a message for
    /// the user.
    pub fn apply(&self, options: ClientOptions) -> Result<ClientOptions, String> {
        if !self.given() {
            return Ok(options);
        }
        let mut builder = TlsClientSettings::builder();
        if let Some(ca) = &self.tls_ca {
            builder = builder.ca_file(ca);
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            builder = builder.client_certificate_files(cert, key);
        }
        if let Some(name) = &self.tls_server_name {
            builder = builder.server_name(name);
        }
        let settings = builder.build().map_err(|e| e.to_string())?;
        Ok(options.transport_setting(settings))
    }
}
