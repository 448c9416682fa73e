//! The exported conformance suite (calls, streams, the blocking client) over `tls://`, run as
//! a [`CustomTransport`] whose settings are certificates made at run time ([`TestPki`]).

use std::sync::OnceLock;

use rpc_core::{TlsClientSettings, TlsServerSettings};
use rpc_tests::{CustomTransport, TempDir, TestPki};

/// One CA and server certificate for the whole test binary, read into settings once (the
/// files go with the `TestPki`).
fn settings() -> &'static (TlsServerSettings, TlsClientSettings) {
    static SETTINGS: OnceLock<(TlsServerSettings, TlsClientSettings)> = OnceLock::new();
    SETTINGS.get_or_init(|| {
        let pki = TestPki::new();
        (pki.server_settings(), pki.client_settings())
    })
}

static TLS: CustomTransport = CustomTransport {
    register: || {},
    fresh_address: |_dir: &TempDir| "tls://127.0.0.1:0".to_owned(),
    server: |server| server.transport_setting(settings().0.clone()),
    client: |options| options.transport_setting(settings().1.clone()),
};

rpc_tests::call_conformance! { tls => rpc_tests::Transport::Custom(&crate::TLS) }
rpc_tests::stream_conformance! { tls_streams => rpc_tests::Transport::Custom(&crate::TLS) }
rpc_tests::blocking_conformance! { tls_blocking => rpc_tests::Transport::Custom(&crate::TLS) }
