//! The `Calculator` service: the example IDL.

use rpc_core::{Bytes, StreamExt, Streaming};
use serde::{Deserialize, Serialize};

/// Why a calculation has no answer. Travels to the client inside `Result`, as an application
/// error, never as an RPC error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MathError {
    /// The divisor was zero.
    #[error("division by zero")]
    DivisionByZero,
    /// The result does not fit in an `i64`.
    #[error("arithmetic overflow")]
    Overflow,
}

/// A calculator, served over any transport.
#[rpc_core::service]
pub trait Calculator {
    /// Returns `a + b` (wrapping on overflow).
    #[rpc(idempotent)]
    async fn add(&self, a: i64, b: i64) -> i64;
    /// Returns `a / b`, or [`MathError::DivisionByZero`].
    #[rpc(idempotent)]
    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError>;
    /// Returns the sum of `xs` (wrapping on overflow).
    #[rpc(idempotent)]
    async fn sum(&self, xs: Vec<i64>) -> i64;
    /// Returns `data` unchanged. [`rpc_core::Bytes`] (the same bytes on the wire as a
    /// `Vec<u8>`) is neither copied into a fresh allocation on receipt nor by the handler.
    async fn echo(&self, data: Bytes) -> Bytes;
    /// Returns the sum of the numbers the client streams (wrapping on overflow).
    async fn sum_stream(&self, xs: Streaming<i64>) -> i64;
    /// Waits `ms` milliseconds, then returns (for trying deadlines and cancellation).
    async fn sleep(&self, ms: u64);
}

/// The calculator the example binaries serve.
#[derive(Debug, Clone, Copy, Default)]
pub struct Calc;

impl Calculator for Calc {
    async fn add(&self, a: i64, b: i64) -> i64 {
        a.wrapping_add(b)
    }

    async fn div(&self, a: i64, b: i64) -> Result<i64, MathError> {
        if b == 0 {
            return Err(MathError::DivisionByZero);
        }
        a.checked_div(b).ok_or(MathError::Overflow)
    }

    async fn sum(&self, xs: Vec<i64>) -> i64 {
        xs.iter().fold(0i64, |acc, x| acc.wrapping_add(*x))
    }

    async fn echo(&self, data: Bytes) -> Bytes {
        data
    }

    async fn sum_stream(&self, mut xs: Streaming<i64>) -> i64 {
        let mut total = 0i64;
        // A stream that fails part-way is summed up to where it failed.
        while let Some(Ok(x)) = xs.next().await {
            total = total.wrapping_add(x);
        }
        total
    }

    async fn sleep(&self, ms: u64) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
}
