//! Certificates and keys read from PEM, a file or text, with errors that name the file.

use std::path::PathBuf;

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::TransportError;

/// Where some PEM comes from: a file, read when the settings are built, or text in memory.
#[derive(Debug, Clone)]
pub(crate) enum PemSource {
    /// A file path.
    File(PathBuf),
    /// PEM text (a certificate made at run time, say).
    Text(String),
}

impl PemSource {
    /// How errors name this source: `"the certificate file '/etc/x.pem'"`, or `"the
    /// certificate PEM text"` (`what` is `"certificate"`, `"key"`, `"CA"` ...).
    pub(crate) fn describe(&self, what: &str) -> String {
        match self {
            PemSource::File(path) => format!("the {what} file '{}'", path.display()),
            PemSource::Text(_) => format!("the {what} PEM text"),
        }
    }

    /// The PEM bytes.
    fn bytes(&self, what: &str) -> Result<Vec<u8>, TransportError> {
        match self {
            PemSource::File(path) => std::fs::read(path).map_err(|error| {
                settings_error(format!("cannot read {}: {error}", self.describe(what)))
            }),
            PemSource::Text(text) => Ok(text.as_bytes().to_vec()),
        }
    }

    /// Every certificate in it, in order (a chain: the end entity first); at least one.
    pub(crate) fn certificates(
        &self,
        what: &str,
    ) -> Result<Vec<CertificateDer<'static>>, TransportError> {
        let bytes = self.bytes(what)?;
        let certificates = CertificateDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|error| self.malformed(what, error))?;
        if certificates.is_empty() {
            return Err(settings_error(format!(
                "{} holds no PEM certificate (no '-----BEGIN CERTIFICATE-----' section)",
                self.describe(what)
            )));
        }
        Ok(certificates)
    }

    /// The first private key in it (PKCS#8, PKCS#1 or SEC1).
    pub(crate) fn private_key(&self, what: &str) -> Result<PrivateKeyDer<'static>, TransportError> {
        let bytes = self.bytes(what)?;
        PrivateKeyDer::from_pem_slice(&bytes).map_err(|error| match error {
            pem::Error::NoItemsFound => settings_error(format!(
                "{} holds no PEM private key (PKCS#8 'PRIVATE KEY', PKCS#1 'RSA PRIVATE KEY' or \
                 SEC1 'EC PRIVATE KEY')",
                self.describe(what)
            )),
            other => self.malformed(what, other),
        })
    }

    fn malformed(&self, what: &str, error: pem::Error) -> TransportError {
        settings_error(format!("{} is not valid PEM: {error}", self.describe(what)))
    }
}

/// A [`TransportError::Settings`] of `tls://`.
pub(crate) fn settings_error(reason: impl Into<String>) -> TransportError {
    TransportError::Settings {
        scheme: "tls".into(),
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_file_and_what_is_wrong() {
        let missing = PemSource::File("/nonexistent/server.pem".into());
        let error = missing.certificates("certificate").unwrap_err().to_string();
        assert!(error.contains("'/nonexistent/server.pem'"), "{error}");
        assert!(
            error.contains("cannot read the certificate file"),
            "{error}"
        );

        let empty = PemSource::Text("nothing here".into());
        let error = empty.certificates("certificate").unwrap_err().to_string();
        assert!(error.contains("holds no PEM certificate"), "{error}");
        let error = empty.private_key("key").unwrap_err().to_string();
        assert!(error.contains("holds no PEM private key"), "{error}");

        let broken = PemSource::Text(
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n".into(),
        );
        let error = broken.certificates("certificate").unwrap_err().to_string();
        assert!(error.contains("is not valid PEM"), "{error}");
    }
}
