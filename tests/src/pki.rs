//! [`TestPki`]: a certificate authority and certificates made at run time (rcgen), written as
//! PEM files into a temporary directory, for `tls://` tests.
//!
//! ```no_run
//! # async fn demo() {
//! use rpc_tests::TestPki;
//! let pki = TestPki::new();
//! let server = rpc_core::Server::new().transport_setting(pki.server_settings());
//! let options = rpc_core::ClientOptions::default().transport_setting(pki.client_settings());
//! # }
//! ```

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rpc_core::transport::{TlsClientSettings, TlsServerSettings};

use crate::{TempDir, unique_name};

/// The names the server certificate is valid for: what tests connect to.
pub const SERVER_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// The subject common name of [`TestPki`]'s client certificate.
pub const CLIENT_NAME: &str = "test client";

/// The DNS name in [`TestPki`]'s client certificate's subject alternative names.
pub const CLIENT_SAN: &str = "client.rpc.test";

/// A certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct PemPair {
    /// The certificate (PEM).
    pub certificate: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From 1975 to 4096 (rcgen's default): valid now.
    Current,
    /// During 2019 only: expired.
    Expired,
}

/// A test certificate authority, a server certificate for `localhost`/`127.0.0.1`/`::1` and a
/// client certificate, all signed by the CA, as PEM files in a directory removed on drop.
/// [`TestPki::new`] makes a new CA each time, so two `TestPki`s distrust each other.
pub struct TestPki {
    dir: TempDir,
    name: String,
    ca_params: CertificateParams,
    ca_key: KeyPair,
    ca: PathBuf,
    server: PemPair,
    client: PemPair,
}

impl std::fmt::Debug for TestPki {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestPki")
            .field("name", &self.name)
            .field("dir", &self.dir.0)
            .finish_non_exhaustive()
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}

impl TestPki {
    /// A new CA with a current server and client certificate.
    pub fn new() -> TestPki {
        let dir = TempDir::new();
        let name = unique_name("ca");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name = DistinguishedName::new();
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("rpc test CA {name}"));
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().expect("CA key");
        let ca_cert = ca_params.self_signed(&ca_key).expect("self-signed CA");
        let ca = dir.0.join("ca.pem");
        std::fs::write(&ca, ca_cert.pem()).expect("write CA");
        let mut pki = TestPki {
            server: PemPair {
                certificate: PathBuf::new(),
                key: PathBuf::new(),
            },
            client: PemPair {
                certificate: PathBuf::new(),
                key: PathBuf::new(),
            },
            dir,
            name,
            ca_params,
            ca_key,
            ca,
        };
        pki.server = pki.issue_server("server", &SERVER_NAMES, Validity::Current);
        pki.client = pki.issue_client("client", CLIENT_NAME, Validity::Current);
        pki
    }

    /// The CA's certificate (PEM file).
    pub fn ca_file(&self) -> &Path {
        &self.ca
    }

    /// The server's certificate and key (valid for [`SERVER_NAMES`]).
    pub fn server(&self) -> &PemPair {
        &self.server
    }

    /// The client's certificate and key (subject `CN=test client`, SAN [`CLIENT_SAN`]).
    pub fn client(&self) -> &PemPair {
        &self.client
    }

    /// A new server certificate signed by this CA, valid for `names` during `validity`, as
    /// files `FILE.pem` and `FILE.key`.
    pub fn issue_server(&self, file: &str, names: &[&str], validity: Validity) -> PemPair {
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let mut params = CertificateParams::new(names).expect("server params");
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, "rpc test server");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(file, params, validity)
    }

    /// A new client certificate signed by this CA with subject `CN=common_name,O=rpc tests`
    /// and the SAN [`CLIENT_SAN`], valid during `validity`, as `FILE.pem` and `FILE.key`.
    pub fn issue_client(&self, file: &str, common_name: &str, validity: Validity) -> PemPair {
        let mut params = CertificateParams::new(vec![CLIENT_SAN.to_owned()]).expect("params");
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "rpc tests");
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue(file, params, validity)
    }

    fn issue(&self, file: &str, mut params: CertificateParams, validity: Validity) -> PemPair {
        if validity == Validity::Expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate().expect("key");
        let issuer = Issuer::from_params(&self.ca_params, &self.ca_key);
        let certificate = params.signed_by(&key, &issuer).expect("sign");
        let pair = PemPair {
            certificate: self.dir.0.join(format!("{file}.pem")),
            key: self.dir.0.join(format!("{file}.key")),
        };
        std::fs::write(&pair.certificate, certificate.pem()).expect("write certificate");
        std::fs::write(&pair.key, key.serialize_pem()).expect("write key");
        pair
    }

    /// A server's settings with this PKI's server certificate, without client certificates.
    pub fn server_settings(&self) -> TlsServerSettings {
        TlsServerSettings::from_pem_files(&self.server.certificate, &self.server.key)
            .expect("server settings")
    }

    /// A server's settings that require client certificates signed by this CA (mutual TLS).
    pub fn mtls_server_settings(&self) -> TlsServerSettings {
        TlsServerSettings::builder()
            .certificate_file(&self.server.certificate)
            .key_file(&self.server.key)
            .client_ca_file(&self.ca)
            .build()
            .expect("mTLS server settings")
    }

    /// A client's settings that trust this CA only and present no certificate.
    pub fn client_settings(&self) -> TlsClientSettings {
        TlsClientSettings::from_ca_file(&self.ca).expect("client settings")
    }

    /// A client's settings that trust this CA and present this PKI's client certificate.
    pub fn mtls_client_settings(&self) -> TlsClientSettings {
        self.client_settings_with(&self.client)
    }

    /// A client's settings that trust this CA and present `pair` (from another
    /// [`TestPki`], say).
    pub fn client_settings_with(&self, pair: &PemPair) -> TlsClientSettings {
        TlsClientSettings::builder()
            .ca_file(&self.ca)
            .client_certificate_files(&pair.certificate, &pair.key)
            .build()
            .expect("mTLS client settings")
    }
}
