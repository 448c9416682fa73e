//! Tests of the tracer, the comparison and the canonical encoding, and the helpers they share.
//!
//! - `trace.rs`: the shapes [`TypeTracer`] traces, and the types traced (reused by the others).
//! - `compare.rs`: `differences` in words, on two versions of some types and hand-written
//!   shapes.
//! - `canonical.rs`: canonical bytes and digests, equal exactly when there are no differences.
//! - `identity.rs`: containers whose visitors build one type are told apart by name and kind.
//! - `symmetry.rs`: types that serialize otherwise than they deserialize are errors.
//! - `aliases.rs`: `#[serde(alias)]` names are not fields.
#![allow(dead_code)] // The test types are only ever traced, never read.

mod aliases;
mod canonical;
mod compare;
mod identity;
mod symmetry;
mod trace;

use serde::{Deserialize, Serialize};

use super::shape::{Definition, Field, Payload, Shape, Types, Variant};
use super::trace::TypeTracer;

fn trace<T: Serialize + Deserialize<'static>>() -> (Shape, Types) {
    let mut tracer = TypeTracer::new();
    let shape = tracer.trace::<T>().unwrap_or_else(|e| panic!("{e}"));
    (shape, tracer.into_types())
}

fn shape_of<T: Serialize + Deserialize<'static>>() -> Shape {
    trace::<T>().0
}

fn named(key: &str) -> Shape {
    Shape::Named(key.into())
}

fn fields<const N: usize>(fields: [(&str, Shape); N]) -> Vec<Field> {
    let field = |(name, shape): (&str, Shape)| Field {
        name: name.into(),
        shape,
    };
    fields.into_iter().map(field).collect()
}

fn strukt<const N: usize>(list: [(&str, Shape); N]) -> Definition {
    Definition::Struct(fields(list))
}

fn enumeration<const N: usize>(variants: [(&str, Payload); N]) -> Definition {
    let variant = |(name, payload): (&str, Payload)| Variant {
        name: name.into(),
        payload,
    };
    Definition::Enum(variants.into_iter().map(variant).collect())
}

fn seq(shape: Shape) -> Shape {
    Shape::Seq(Box::new(shape))
}

fn option(shape: Shape) -> Shape {
    Shape::Option(Box::new(shape))
}

fn map(key: Shape, value: Shape) -> Shape {
    Shape::Map {
        key: Box::new(key),
        value: Box::new(value),
    }
}
