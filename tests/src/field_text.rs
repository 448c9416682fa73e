//! [`FieldText`]: span and event fields as text, for tests that record what `tracing` sees.

use std::collections::HashMap;

use tracing::field::{Field, Visit};

/// Puts each field it visits into the map, by name: strings as they are, other values as
/// their `Debug` text (which for `%` fields is their `Display` text).
pub struct FieldText<'a>(pub &'a mut HashMap<String, String>);

impl Visit for FieldText<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}
