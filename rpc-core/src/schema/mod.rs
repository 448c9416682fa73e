//! Service schemas: what a service is, by the shape of its types, as the handshake compares it
//! and `rpc-schema diff` checks it.
//!
//! - `shape.rs`: [`Shape`] and [`Definition`], a type's structure in serde's data model.
//! - `trace/`: [`TypeTracer`], which learns a type's shape by running its `Deserialize`
//!   impl against a recording deserializer.
//! - `compare.rs`: the differences between two shapes, with the path to each.
//! - `canonical.rs`: an injective encoding of a shape and its SHA-256 digest.
//! - `service.rs`: [`ServiceSchema`] and [`MethodSchema`], built by the generated code.
//! - `evolution.rs`: which methods a client may call on a server ([`Compatibility`]) and the
//!   breaking changes between two versions of a service ([`breaking_changes`]).
//!
//! # Why shapes are traced from `Deserialize`
//!
//! Every type that reaches the wire already implements serde's `Deserialize`, and its
//! `Deserialize` impl is exactly what decodes it: tracing that impl describes the type as the
//! bytes see it (after `#[serde(rename)]`, `#[serde(with)]`, hand-written impls), for types of
//! any crate, with no derive of our own for users to add to every type (`postcard-schema`'s
//! derive would need one on each type, and on types of other crates). `serde-reflection` does
//! such tracing too, but it needs every nested enum traced by hand and overflows the stack on
//! an enum whose first variant is recursive (`enum List { Cons(i32, Box<List>), Nil }`), so
//! the tracer here is our own, built on the same idea.

mod canonical;
mod compare;
mod evolution;
mod service;
pub mod shape;
#[cfg(test)]
mod tests;
mod trace;

pub use canonical::{canonical_bytes, digest};
pub use compare::differences;
pub use evolution::{BrokenRule, Compatibility, breaking_changes};
pub use service::{ArgSchema, MethodDecl, MethodSchema, SchemaBuilder, ServiceSchema};
pub use shape::{Definition, Field, Payload, Shape, Types, Variant};
pub use trace::{TraceError, TypeTracer};
