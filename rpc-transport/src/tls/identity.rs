//! The identity in a verified certificate: its subject as an RFC 4514 string and its subject
//! alternative names, read from the DER with `x509-parser`.

use std::fmt::Write;
use std::net::IpAddr;

use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::GeneralName;
use x509_parser::objects::{oid_registry, oid2abbrev};
use x509_parser::x509::{AttributeTypeAndValue, X509Name};

use crate::connection::PeerCertificate;

/// The identity of the DER certificate `der` (which rustls has verified already); the reason
/// when it cannot be read.
pub(crate) fn peer_certificate(der: &[u8]) -> Result<PeerCertificate, String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der)
        .map_err(|error| format!("cannot read the peer's certificate: {error}"))?;
    let subject_alt_names = match certificate.subject_alternative_name() {
        Ok(Some(extension)) => extension
            .value
            .general_names
            .iter()
            .filter_map(alt_name)
            .collect(),
        Ok(None) => Vec::new(),
        Err(error) => {
            return Err(format!(
                "cannot read the peer certificate's subject alternative names: {error}"
            ));
        }
    };
    Ok(PeerCertificate {
        subject: rfc4514(certificate.subject()),
        subject_alt_names,
        der: der.to_vec(),
    })
}

/// A subject alternative name as text: DNS names, e-mail addresses and URIs as written, IP
/// addresses in their usual notation. Other kinds are left out.
fn alt_name(name: &GeneralName<'_>) -> Option<String> {
    match name {
        GeneralName::DNSName(text) | GeneralName::RFC822Name(text) | GeneralName::URI(text) => {
            Some((*text).to_owned())
        }
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => <[u8; 4]>::try_from(*bytes)
                .ok()
                .map(|b| IpAddr::from(b).to_string()),
            16 => <[u8; 16]>::try_from(*bytes)
                .ok()
                .map(|b| IpAddr::from(b).to_string()),
            _ => None,
        },
        _ => None,
    }
}

/// `name` as RFC 4514 writes a distinguished name: the last RDN first, RDNs joined by ',',
/// the attributes of one RDN by '+', each `TYPE=value` with the special characters escaped.
fn rfc4514(name: &X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter_rdn()
        .map(|rdn| rdn.iter().map(attribute).collect::<Vec<_>>().join("+"))
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn attribute(attribute: &AttributeTypeAndValue<'_>) -> String {
    let oid = attribute.attr_type();
    let kind = oid2abbrev(oid, oid_registry())
        .map(str::to_owned)
        .unwrap_or_else(|_| oid.to_id_string());
    let value = match attribute.as_str() {
        Ok(text) => escape(text),
        Err(_) if attribute.attr_value().tag() == Tag::BmpString => {
            let units: Vec<u16> = attribute
                .as_slice()
                .chunks_exact(2)
                .map(|pair| u16::from_be_bytes([pair[0], pair[1]]))
                .collect();
            escape(&String::from_utf16_lossy(&units))
        }
        // RFC 4514 2.4: a value of another type is '#' and its hex digits.
        Err(_) => attribute
            .as_slice()
            .iter()
            .fold(String::from("#"), |mut hex, byte| {
                let _ = write!(hex, "{byte:02x}");
                hex
            }),
    };
    format!("{kind}={value}")
}

/// RFC 4514 2.4's escaping of an attribute value.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            '"' | '+' | ',' | ';' | '<' | '>' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_and_alt_names_are_read() {
        let mut params =
            rcgen::CertificateParams::new(vec!["svc.example".into(), "127.0.0.1".into()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Example, Inc.");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "client one");
        params.subject_alt_names.push(rcgen::SanType::Rfc822Name(
            "ops@example.com".try_into().unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let certificate = params.self_signed(&key).unwrap();
        let identity = peer_certificate(certificate.der()).unwrap();
        assert_eq!(identity.subject, "CN=client one,O=Example\\, Inc.");
        assert_eq!(
            identity.subject_alt_names,
            ["svc.example", "127.0.0.1", "ops@example.com"]
        );
        assert_eq!(identity.der, certificate.der().to_vec());
    }

    #[test]
    fn escaping_follows_rfc_4514() {
        assert_eq!(escape("a+b"), "a\\+b");
        assert_eq!(escape(" #x "), "\\ #x\\ ");
        assert_eq!(escape("#x"), "\\#x");
        assert_eq!(escape("plain"), "plain");
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        let error = peer_certificate(b"not a certificate").unwrap_err();
        assert!(error.contains("cannot read"), "{error}");
    }
}
