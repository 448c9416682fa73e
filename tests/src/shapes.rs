//! Types defined in this crate, used by another crate's service trait in the schema tests (a
//! change inside a type from another crate must be seen by the handshake too).

use serde::{Deserialize, Serialize};

/// An amount of money, as a dependency crate might define it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    /// Hundredths of the currency unit.
    pub cents: u64,
    /// ISO 4217 code.
    pub currency: String,
}
