//! `tls://` in the benchmark: the run's certificates ([`Env::tls`], made at run time), handed
//! to the server child (`--tls-cert`, `--tls-key`) and the client children (`--tls-ca`), and
//! the table of what TLS costs over plain TCP, both measured in the same run.

use std::ffi::OsString;
use std::fmt::Write;
use std::path::Path;

use rpc_core::{ClientOptions, TlsClientSettings};

use super::MIB;
use super::env::Env;
use super::framework::TransportResult;
use super::report::Report;
use super::runtimes::RuntimeKind;

/// The runtime of the async figures compared.
const MT: RuntimeKind = RuntimeKind::MultiThread;

/// Whether `address` is a `tls://` address.
pub fn is_tls(address: &str) -> bool {
    address.starts_with("tls://")
}

/// The certificate flags of `rpc-bench serve` for a listener on `listen`: none unless it is
/// `tls://`.
pub fn server_args(env: &Env, listen: &str) -> Vec<OsString> {
    if !is_tls(listen) {
        return Vec::new();
    }
    let server = env.tls().server();
    vec![
        "--tls-cert".into(),
        server.certificate.clone().into(),
        "--tls-key".into(),
        server.key.clone().into(),
    ]
}

/// The CA flag of `rpc-bench client` for a client of `address`: none unless it is `tls://`.
pub fn client_args(env: &Env, address: &str) -> Vec<OsString> {
    if !is_tls(address) {
        return Vec::new();
    }
    vec!["--tls-ca".into(), env.tls().ca_file().into()]
}

/// `options`, trusting the run's CA when `address` is `tls://`.
pub fn options_for(
    env: &Env,
    address: &str,
    options: ClientOptions,
) -> anyhow::Result<ClientOptions> {
    if is_tls(address) {
        client_options(options, Some(env.tls().ca_file()))
    } else {
        Ok(options)
    }
}

/// `options`, trusting the CA in `ca` (a PEM file) if one is given.
pub fn client_options(options: ClientOptions, ca: Option<&Path>) -> anyhow::Result<ClientOptions> {
    Ok(match ca {
        Some(ca) => options.transport_setting(TlsClientSettings::from_ca_file(ca)?),
        None => options,
    })
}

/// "TLS over TCP": the tls row's figures beside the tcp row's, with the difference; nothing
/// unless both were measured.
pub fn write_cost(report: &Report, out: &mut String) -> std::fmt::Result {
    let find = |name: &str| report.transports.iter().find(|t| t.transport == name);
    let (Some(tcp), Some(tls)) = (find("tcp"), find("tls")) else {
        return Ok(());
    };
    writeln!(
        out,
        "### What TLS costs over plain TCP (same run; async client on {})\n",
        MT.label()
    )?;
    writeln!(out, "| figure | tcp | tls | tls / tcp |")?;
    writeln!(out, "|---|---:|---:|---:|")?;
    let row = |out: &mut String, what: &str, get: &dyn Fn(&TransportResult) -> Option<f64>| {
        let (a, b) = (get(tcp), get(tls));
        let show = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.1}"));
        let ratio = match (a, b) {
            (Some(a), Some(b)) if a > 0.0 => format!("{:.2}", b / a),
            _ => "-".to_owned(),
        };
        writeln!(out, "| {what} | {} | {} | {ratio} |", show(a), show(b))
    };
    row(out, "async `add` median, µs", &|t| {
        Some(t.on(MT).latency.median_us)
    })?;
    row(out, "async `add` p99, µs", &|t| {
        Some(t.on(MT).latency.p99_us)
    })?;
    row(out, "blocking `add` median, µs", &|t| {
        t.latency_blocking.as_ref().map(|l| l.median_us)
    })?;
    row(out, "calls/s, 1 in flight", &|t| {
        Some(t.on(MT).one_in_flight)
    })?;
    row(out, "calls/s, many in flight", &|t| {
        Some(t.on(MT).in_flight)
    })?;
    row(out, "echo 1 MiB, MiB/s", &|t| {
        t.on(MT)
            .echo
            .iter()
            .find(|b| b.bytes == MIB)
            .map(|b| b.mib_per_s)
    })?;
    row(out, "server KiB per idle connection", &|t| {
        t.memory.as_ref().map(|m| m.per_connection_kib)
    })?;
    writeln!(
        out,
        "\nThe tls row's connections are TLS 1.3 (rustls, *ring*), server certificate verified \
         against a CA made for the run; the raw baseline of both rows is plain TCP.\n"
    )
}
