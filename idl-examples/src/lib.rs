//! Example service traits (the IDL files of this framework) and implementations of them.
//!
//! - [`calculator`]: the `Calculator` service, its error type and the implementation the
//!   binaries serve.
//! - `src/bin/`: `calc-server`, `calc-client` and `rpc-demo`.

pub mod calculator;
pub mod demo;

pub use calculator::{
    Calc, Calculator, CalculatorBlockingClient, CalculatorClient, CalculatorServer, MathError,
};
