//! Shapes: what a type looks like on the wire, independent of what it is called in the code.
//!
//! A [`Shape`] describes one value: a primitive, a compound built from other shapes, or a
//! reference ([`Shape::Named`]) to a named container (a struct or an enum) whose
//! [`Definition`] lives once in a [`Types`] table. Going through names keeps recursive types
//! finite: `struct Node { children: Vec<Node> }` is `Named("Node")`, defined as a struct whose
//! field `children` is `Seq(Named("Node"))`.
//!
//! Shapes follow serde's data model as postcard encodes it: everything that changes the bytes
//! (a field's type, the order of fields, the set and order of variants) changes the shape, and
//! so do the names of containers, fields and variants, so two different type definitions never
//! share a shape.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What one value looks like on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Shape {
    /// `()`.
    Unit,
    /// `bool`.
    Bool,
    /// `i8`.
    I8,
    /// `i16`.
    I16,
    /// `i32`.
    I32,
    /// `i64`.
    I64,
    /// `i128`.
    I128,
    /// `u8`.
    U8,
    /// `u16`.
    U16,
    /// `u32`.
    U32,
    /// `u64`.
    U64,
    /// `u128`.
    U128,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
    /// `char`.
    Char,
    /// A string (`String`, `&str`).
    Str,
    /// A block of bytes (`serde_bytes`, and `Vec<u8>` / `&[u8]` arguments and returns).
    Bytes,
    /// `Option<T>`.
    Option(Box<Shape>),
    /// A sequence of any length (`Vec<T>`, `HashSet<T>`, ...).
    Seq(Box<Shape>),
    /// A map (`HashMap<K, V>`, `BTreeMap<K, V>`).
    Map {
        /// The keys' shape.
        key: Box<Shape>,
        /// The values' shape.
        value: Box<Shape>,
    },
    /// A tuple or fixed-size array: these elements, in order.
    Tuple(Vec<Shape>),
    /// A named container: the key of its [`Definition`] in the [`Types`] table.
    Named(String),
    /// A part the tracer never saw (the element type of a sequence that is only ever empty,
    /// for instance). Never equal to anything when schemas are compared.
    Unknown,
}

/// The definition of a named container (a struct or an enum).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Definition {
    /// `struct Name;`
    UnitStruct,
    /// `struct Name(T);`
    NewtypeStruct(Shape),
    /// `struct Name(A, B, ...);`
    TupleStruct(Vec<Shape>),
    /// `struct Name { a: A, ... }`: the fields in declaration order.
    Struct(Vec<Field>),
    /// `enum Name { ... }`: the variants in declaration order (the order gives each variant
    /// its number on the wire).
    Enum(Vec<Variant>),
}

/// A named field of a struct or of a struct variant.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Field {
    /// The field's name as serde sees it (after `#[serde(rename)]`).
    pub name: String,
    /// The field's shape.
    pub shape: Shape,
}

/// One variant of an enum.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Variant {
    /// The variant's name as serde sees it.
    pub name: String,
    /// What it carries.
    pub payload: Payload,
}

/// What an enum variant carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    /// `Name`.
    Unit,
    /// `Name(T)`.
    Newtype(Shape),
    /// `Name(A, B, ...)`.
    Tuple(Vec<Shape>),
    /// `Name { a: A, ... }`.
    Struct(Vec<Field>),
}

/// The named containers a set of shapes refers to, by key.
///
/// A key is the container's serde name (`Order`); when two different containers share a
/// serde name (a generic struct used with two type arguments, or two `Order`s from different
/// modules), the later ones get `Order#2`, `Order#3`, ... Keys are labels: comparisons use the
/// serde name ([`base_name`]) and the definition, never the suffix.
pub type Types = BTreeMap<String, Definition>;

/// The serde name of a [`Types`] key: `Order#2` -> `Order`.
pub fn base_name(key: &str) -> &str {
    key.split_once('#').map_or(key, |(name, _)| name)
}

impl Shape {
    /// How the shape reads in a message: `u32`, `Option<Order>`, `Vec<u8>`, `(u8, str)`.
    pub fn describe(&self) -> String {
        match self {
            Shape::Unit => "()".into(),
            Shape::Bool => "bool".into(),
            Shape::I8 => "i8".into(),
            Shape::I16 => "i16".into(),
            Shape::I32 => "i32".into(),
            Shape::I64 => "i64".into(),
            Shape::I128 => "i128".into(),
            Shape::U8 => "u8".into(),
            Shape::U16 => "u16".into(),
            Shape::U32 => "u32".into(),
            Shape::U64 => "u64".into(),
            Shape::U128 => "u128".into(),
            Shape::F32 => "f32".into(),
            Shape::F64 => "f64".into(),
            Shape::Char => "char".into(),
            Shape::Str => "string".into(),
            Shape::Bytes => "bytes".into(),
            Shape::Option(inner) => format!("Option<{}>", inner.describe()),
            Shape::Seq(inner) => format!("Vec<{}>", inner.describe()),
            Shape::Map { key, value } => {
                format!("Map<{}, {}>", key.describe(), value.describe())
            }
            Shape::Tuple(items) => {
                let items: Vec<String> = items.iter().map(Shape::describe).collect();
                if items.len() == 1 {
                    format!("({},)", items[0])
                } else {
                    format!("({})", items.join(", "))
                }
            }
            Shape::Named(key) => base_name(key).to_owned(),
            Shape::Unknown => "(unknown)".into(),
        }
    }
}
