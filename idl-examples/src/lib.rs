//! Example service traits (the IDL files of this framework) and implementations of them.
//!
//! - [`calculator`]: the `Calculator` service, its error type and the implementation the
//!   binaries serve.
//! - [`kv`]: the `Kv` key-value service, with streamed listings and watches.
//! - [`tls_flags`]: the binaries' `--tls-*` flags; [`keepalive_flags`]: their `--keepalive-*`
//!   flags; [`demo_tls`]: certificates made in memory,
//!   so `rpc-demo` serves `tls://` with no file.
//! - `src/bin/`: `calc-server`, `calc-client`, `kv-server`, `kv-client` and `rpc-demo`.

pub mod calculator;
pub mod cli;
pub mod demo;
pub mod demo_services;
pub mod demo_tls;
pub mod keepalive_flags;
pub mod kv;
pub mod tls_flags;

pub use calculator::{
    Calc, Calculator, CalculatorBlockingClient, CalculatorClient, CalculatorServer, MathError,
};
pub use kv::{Change, Entry, Kv, KvBlockingClient, KvClient, KvServer, KvStore};
