//! [`DemoPki`]: a certificate authority and certificates made in memory at run time (rcgen),
//! so `rpc-demo` serves `tls://` without any file, and tests can write them where they like.
//! For demonstrations and tests only: the CA's key lives in memory and nowhere else.

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rpc_core::{TlsClientSettings, TlsServerSettings};

/// The names a [`DemoPki::server`] certificate is valid for.
pub const LOCAL_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// A certificate and its private key, as PEM text.
#[derive(Debug, Clone)]
pub struct PemPair {
    /// The certificate.
    pub certificate: String,
    /// Its private key (PKCS#8).
    pub key: String,
}

/// A new certificate authority that issues server and client certificates.
pub struct DemoPki {
    params: CertificateParams,
    key: KeyPair,
    ca_pem: String,
}

impl std::fmt::Debug for DemoPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoPki").finish_non_exhaustive()
    }
}

/// A certificate error in words.
fn failed(error: rcgen::Error) -> String {
    format!("cannot make a demo certificate: {error}")
}

impl DemoPki {
    /// A new CA named `CN=name`.
    pub fn generate(name: &str) -> Result<DemoPki, String> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().map_err(failed)?;
        let ca_pem = params.self_signed(&key).map_err(failed)?.pem();
        Ok(DemoPki {
            params,
            key,
            ca_pem,
        })
    }

    /// The CA's certificate (PEM), for clients to trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// A server certificate for `names` (DNS names or IP addresses).
    pub fn server(&self, names: &[&str]) -> Result<PemPair, String> {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).map_err(failed)?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "demo server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.sign(params)
    }

    /// A client certificate with subject `CN=common_name`.
    pub fn client(&self, common_name: &str) -> Result<PemPair, String> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.sign(params)
    }

    fn sign(&self, mut params: CertificateParams) -> Result<PemPair, String> {
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().map_err(failed)?;
        let issuer = Issuer::from_params(&self.params, &self.key);
        let certificate = params.signed_by(&key, &issuer).map_err(failed)?;
        Ok(PemPair {
            certificate: certificate.pem(),
            key: key.serialize_pem(),
        })
    }

    /// Settings for a server on this host: a new certificate for [`LOCAL_NAMES`].
    pub fn local_server_settings(&self) -> Result<TlsServerSettings, String> {
        let pair = self.server(&LOCAL_NAMES)?;
        TlsServerSettings::builder()
            .certificate_pem(pair.certificate)
            .key_pem(pair.key)
            .build()
            .map_err(|e| e.to_string())
    }

    /// Settings for a client that trusts this CA only.
    pub fn client_settings(&self) -> Result<TlsClientSettings, String> {
        TlsClientSettings::builder()
            .ca_pem(self.ca_pem.clone())
            .build()
            .map_err(|e| e.to_string())
    }
}
