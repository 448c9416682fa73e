//! What the serialize check knows across the values it checks: the types table, the field
//! names it learns, and the path to the value being checked, for its messages.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use super::check::{Check, Mismatch, kind};
use super::state::Unnamed;
use crate::schema::shape::{Definition, Payload, Shape, Types, base_name};

/// What a part the tracer never saw is checked against: anything goes.
pub(super) static UNKNOWN: Shape = Shape::Unknown;

/// A part with placeholder field names: its key and variant index (`None` for a struct).
pub(super) type PartKey<'t> = (&'t str, Option<usize>);

/// The field names learned for one part: its key, its variant index (`None` for a struct) and
/// the names in order.
pub(super) type Learned = (String, Option<usize>, Vec<String>);

/// One step of the path to where a value is, as `compare` spells paths.
#[derive(Debug, Clone, Copy)]
pub(super) enum Step {
    /// The outermost container, by name.
    Root(&'static str),
    /// `.name`: a struct's field.
    Field(&'static str),
    /// `.0`: a tuple's element.
    Index(usize),
    /// `::Name`: an enum's variant.
    Variant(&'static str),
    /// `?`: an option's contents.
    Some,
    /// `[]`: a sequence's elements.
    Element,
    /// `{key}`: a map's keys.
    Key,
    /// `{value}`: a map's values.
    Value,
}

/// What the check knows across the values it checks.
pub(super) struct Cx<'t> {
    types: &'t Types,
    /// Per part with placeholder field names, the names serialized so far.
    pub(super) learned: HashMap<PartKey<'t>, Vec<&'static str>>,
    /// Where the value being checked is.
    pub(super) path: Vec<Step>,
}

impl<'t> Cx<'t> {
    /// A check against `types`, learning the field names of the `unnamed` parts.
    pub(super) fn new(types: &'t Types, unnamed: &Unnamed) -> Self {
        let part = |(key, variant): &(String, Option<usize>)| {
            let (key, _) = types.get_key_value(key)?;
            Some(((key.as_str(), *variant), Vec::new()))
        };
        let learned = unnamed.iter().filter_map(part).collect();
        Cx {
            types,
            learned,
            path: Vec::new(),
        }
    }

    /// Serializes `value`, which should be shaped `shape`.
    pub(super) fn check<T: Serialize>(
        &mut self,
        shape: &'t Shape,
        value: &T,
    ) -> Result<(), String> {
        self.path.clear();
        let check = Check::new(self, shape);
        value.serialize(check).map_err(|Mismatch(why)| why)
    }

    /// The field names learned: `(key, variant, names)` per unnamed part.
    pub(super) fn into_names(self) -> Result<Vec<Learned>, String> {
        let mut out = Vec::new();
        for ((key, variant), names) in self.learned {
            let fields = match (self.types.get(key), variant) {
                (Some(Definition::Struct(fields)), None) => fields.len(),
                (Some(Definition::Enum(variants)), Some(i)) => match &variants[i].payload {
                    Payload::Struct(fields) => fields.len(),
                    _ => 0,
                },
                _ => 0,
            };
            if names.len() != fields {
                let part = variant.map_or(String::new(), |i| format!(" (variant {i})"));
                return Err(format!(
                    "cannot tell the field names of `{}`{part}: its `Deserialize` impl lists \
                     other names than the fields it reads (aliases?), and no value of it was \
                     serialized to learn them from",
                    base_name(key),
                ));
            }
            let names = names.into_iter().map(str::to_owned).collect();
            out.push((key.to_owned(), variant, names));
        }
        Ok(out)
    }

    /// The table checked against.
    pub(super) fn types(&self) -> &'t Types {
        self.types
    }

    /// `where` the current value is, in words.
    fn at(&self) -> String {
        if self.path.is_empty() {
            return "the value".into();
        }
        let mut path = String::from("`");
        for step in &self.path {
            match step {
                Step::Root(name) => path.push_str(name),
                Step::Field(name) => path.push_str(&format!(".{name}")),
                Step::Index(i) => path.push_str(&format!(".{i}")),
                Step::Variant(name) => path.push_str(&format!("::{name}")),
                Step::Some => path.push('?'),
                Step::Element => path.push_str("[]"),
                Step::Key => path.push_str("{key}"),
                Step::Value => path.push_str("{value}"),
            }
        }
        path + "`"
    }

    /// The mismatch `{at} {what}`.
    pub(super) fn fail(&self, what: impl fmt::Display) -> Mismatch {
        let at = self.at();
        Mismatch(format!(
            "it serializes differently than it deserializes: {at} {what}"
        ))
    }

    /// The mismatch of a value serialized as `found` where `expected` was traced.
    pub(super) fn differ(&self, found: impl fmt::Display, expected: &Shape) -> Mismatch {
        let expected = match expected {
            Shape::Named(key) => match self.types.get(key) {
                Some(Definition::TupleStruct(items)) => {
                    format!("tuple struct `{}` of {}", base_name(key), items.len())
                }
                Some(def) => format!("{} `{}`", kind(def), base_name(key)),
                None => format!("`{}`", base_name(key)),
            },
            other => other.describe(),
        };
        self.fail(format_args!(
            "serializes as {found} but deserializes as {expected}"
        ))
    }
}
