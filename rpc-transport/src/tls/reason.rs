//! rustls's errors in words a user can act on: whose certificate, what is wrong with it, and
//! which side refused whom.

use std::io;

use rustls::pki_types::UnixTime;
use rustls::{AlertDescription, CertificateError};

use crate::error::TransportError;

/// Which end of a connection this is, for wording errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// A client, presenting a certificate or not.
    Client {
        /// Whether it presents a client certificate.
        presents_certificate: bool,
    },
    /// A server.
    Server,
}

impl Role {
    /// How this side names its peer's certificate.
    fn peer_certificate(self) -> &'static str {
        match self {
            Role::Client { .. } => "the server's certificate",
            Role::Server => "the client's certificate",
        }
    }

    fn peer(self) -> &'static str {
        match self {
            Role::Client { .. } => "the server",
            Role::Server => "the client",
        }
    }
}

/// The rustls error inside an I/O error from a TLS stream, if there is one.
pub(crate) fn rustls_error(error: &io::Error) -> Option<&rustls::Error> {
    error.get_ref()?.downcast_ref::<rustls::Error>()
}

/// `error` from a TLS stream as a [`TransportError`]: [`TransportError::Tls`] naming the cause
/// where TLS failed, the I/O error otherwise.
pub(crate) fn from_io(error: io::Error, peer: &str, role: Role) -> TransportError {
    match rustls_error(&error) {
        Some(tls) => TransportError::Tls {
            peer: peer.to_owned(),
            reason: describe(tls, role),
        },
        None => TransportError::Io(error),
    }
}

/// `error` as a [`TransportError`], mapping the I/O errors that carry a rustls error.
pub(crate) fn from_transport(error: TransportError, peer: &str, role: Role) -> TransportError {
    match error {
        TransportError::Io(io) => from_io(io, peer, role),
        other => other,
    }
}

/// Why TLS failed, as this side (`role`) sees it.
pub(crate) fn describe(error: &rustls::Error, role: Role) -> String {
    use rustls::Error;
    match error {
        Error::InvalidCertificate(problem) => certificate_problem(problem, role),
        Error::NoCertificatesPresented => match role {
            Role::Server => "the client presented no certificate, and this server requires one \
                             (mutual TLS): refused"
                .into(),
            Role::Client { .. } => "the server presented no certificate".into(),
        },
        Error::AlertReceived(alert) => alert_received(*alert, role),
        Error::InvalidMessage(_)
        | Error::InappropriateMessage { .. }
        | Error::InappropriateHandshakeMessage { .. } => format!(
            "{} does not speak TLS, or broke its protocol ({error})",
            role.peer()
        ),
        Error::PeerIncompatible(detail) => format!(
            "{} and this side share no TLS version or cipher suite ({detail:?})",
            role.peer()
        ),
        other => other.to_string(),
    }
}

/// What is wrong with the peer's certificate.
fn certificate_problem(problem: &CertificateError, role: Role) -> String {
    let whose = role.peer_certificate();
    match problem {
        CertificateError::UnknownIssuer => match role {
            Role::Client { .. } => format!(
                "{whose} is not signed by a trusted CA (unknown issuer: give the client the \
                 server's CA)"
            ),
            Role::Server => format!(
                "{whose} is not signed by the CA this server trusts for clients (unknown \
                 issuer): refused"
            ),
        },
        CertificateError::Expired => format!("{whose} has expired"),
        CertificateError::ExpiredContext { time, not_after } => format!(
            "{whose} has expired: valid until {}, and it is now {}",
            date(*not_after),
            date(*time)
        ),
        CertificateError::NotValidYet => format!("{whose} is not valid yet"),
        CertificateError::NotValidYetContext { time, not_before } => format!(
            "{whose} is not valid yet: valid from {}, and it is now {}",
            date(*not_before),
            date(*time)
        ),
        CertificateError::NotValidForName => {
            format!("{whose} is not valid for the host name connected to")
        }
        CertificateError::NotValidForNameContext {
            expected,
            presented,
        } => {
            let names: Vec<String> = presented
                .iter()
                .map(|name| format!("'{}'", presented_name(name)))
                .collect();
            let expected = expected.to_str();
            if names.is_empty() {
                format!("{whose} names no host, so it is not valid for '{expected}'")
            } else {
                format!(
                    "{whose} for {} is not valid for '{expected}' (the name connected to; \
                     TlsClientSettings can verify another with server_name)",
                    names.join(", ")
                )
            }
        }
        CertificateError::Revoked => format!("{whose} has been revoked"),
        CertificateError::BadSignature => format!("{whose} has a bad signature"),
        CertificateError::InvalidPurpose | CertificateError::InvalidPurposeContext { .. } => {
            format!("{whose} is not meant for this use (its extended key usage): {problem}")
        }
        other => format!("{whose} was refused: {other}"),
    }
}

/// A name webpki lists as presented (`DnsName("localhost")`, `IpAddress(127.0.0.1)`) as the
/// bare name.
fn presented_name(name: &str) -> &str {
    let inner = name
        .strip_prefix("DnsName(")
        .or_else(|| name.strip_prefix("IpAddress("))
        .or_else(|| name.strip_prefix("UniformResourceIdentifier("))
        .and_then(|rest| rest.strip_suffix(')'));
    match inner {
        Some(inner) => inner.trim_matches('"'),
        None => name,
    }
}

/// `time` as a calendar date in UTC.
fn date(time: UnixTime) -> String {
    let secs = time.as_secs();
    i64::try_from(secs)
        .ok()
        .and_then(|secs| x509_parser::time::ASN1Time::from_timestamp(secs).ok())
        .map(|date| date.to_string())
        .unwrap_or_else(|| format!("{secs} s after 1970"))
}

/// The alerts a side sends when it refuses the other's certificate.
fn refuses_certificate(alert: AlertDescription) -> bool {
    matches!(
        alert,
        AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateExpired
            | AlertDescription::CertificateUnknown
            | AlertDescription::UnknownCA
            | AlertDescription::AccessDenied
            | AlertDescription::DecryptError
    )
}

/// An alert about a certificate, sent by `sender` (`"the server"`), in words.
fn alert_words(alert: AlertDescription, sender: &str) -> String {
    match alert {
        AlertDescription::UnknownCA => format!("unknown CA: not signed by a CA {sender} trusts"),
        AlertDescription::BadCertificate => "bad certificate".into(),
        AlertDescription::CertificateExpired => "certificate expired or not yet valid".into(),
        AlertDescription::CertificateRevoked => "certificate revoked".into(),
        AlertDescription::CertificateUnknown => "certificate unknown".into(),
        AlertDescription::UnsupportedCertificate => "unsupported certificate".into(),
        AlertDescription::AccessDenied => "access denied".into(),
        AlertDescription::DecryptError => "its signature does not verify".into(),
        other => format!("{other:?}"),
    }
}

/// The peer sent `alert`: why it ended the connection.
fn alert_received(alert: AlertDescription, role: Role) -> String {
    match role {
        Role::Client {
            presents_certificate,
        } => match alert {
            AlertDescription::CertificateRequired => "the server requires a client certificate \
                 (mutual TLS), and this client presented none: refused"
                .into(),
            AlertDescription::HandshakeFailure if !presents_certificate => {
                "the server refused the handshake (handshake failure); it may require a client \
                 certificate, and this client presented none"
                    .into()
            }
            alert if presents_certificate && refuses_certificate(alert) => format!(
                "the server refused this client's certificate ({})",
                alert_words(alert, "the server")
            ),
            alert => format!("the server ended the connection with the alert '{alert:?}'"),
        },
        Role::Server => match alert {
            alert if refuses_certificate(alert) => format!(
                "the client refused this server's certificate ({})",
                alert_words(alert, "the client")
            ),
            alert => format!("the client ended the connection with the alert '{alert:?}'"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_names_lose_their_wrapping() {
        assert_eq!(presented_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(presented_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        assert_eq!(presented_name("something else"), "something else");
    }

    #[test]
    fn client_and_server_word_a_refused_client_certificate() {
        let client = Role::Client {
            presents_certificate: false,
        };
        let text = describe(
            &rustls::Error::AlertReceived(AlertDescription::CertificateRequired),
            client,
        );
        assert!(text.contains("requires a client certificate"), "{text}");
        let text = describe(&rustls::Error::NoCertificatesPresented, Role::Server);
        assert!(text.contains("presented no certificate"), "{text}");
        let with_one = Role::Client {
            presents_certificate: true,
        };
        let text = describe(
            &rustls::Error::AlertReceived(AlertDescription::UnknownCA),
            with_one,
        );
        assert!(
            text.contains("refused this client's certificate (unknown CA"),
            "{text}"
        );
    }

    #[test]
    fn io_errors_without_tls_inside_stay_io_errors() {
        let error = from_io(io::ErrorKind::ConnectionReset.into(), "peer", Role::Server);
        assert!(matches!(error, TransportError::Io(_)));
        let wrapped = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        );
        let error = from_io(
            wrapped,
            "127.0.0.1:1",
            Role::Client {
                presents_certificate: false,
            },
        );
        let text = error.to_string();
        assert!(text.contains("not signed by a trusted CA"), "{text}");
        assert!(matches!(error, TransportError::Tls { .. }));
    }
}
