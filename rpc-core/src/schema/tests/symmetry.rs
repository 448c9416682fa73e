//! Tests of the serialize check: types whose `Serialize` impl writes something else than
//! their `Deserialize` impl reads are errors, with the path and what each side does; types
//! whose impls agree (however they get there) trace as before.

use std::time::SystemTime;

use serde::{Deserialize, Serialize, Serializer};

use super::trace::List;
use super::{enumeration, named, option, strukt, trace};
use crate::schema::shape::{Payload, Shape};
use crate::schema::trace::{TraceError, TypeTracer};

/// The error tracing `T` fails with, checked to be a serialize mismatch.
fn mismatch<T: Serialize + Deserialize<'static>>() -> String {
    let mut tracer = TypeTracer::new();
    tracer.trace::<List>().unwrap();
    let before = tracer.types().clone();
    let TraceError { type_name, reason } = tracer.trace::<T>().unwrap_err();
    assert_eq!(type_name, std::any::type_name::<T>());
    let prefix = "it serializes differently than it deserializes: ";
    assert!(reason.starts_with(prefix), "{reason}");
    assert_eq!(
        tracer.types(),
        &before,
        "a failed trace leaves the table alone"
    );
    // The tracer still works.
    assert_eq!(tracer.trace::<Option<u8>>().unwrap(), option(Shape::U8));
    reason[prefix.len()..].to_owned()
}

#[derive(Serialize, Deserialize)]
struct SkipDeserializing {
    a: u32,
    #[serde(skip_deserializing)]
    b: u32,
    c: u32,
}

#[derive(Serialize, Deserialize)]
enum Shifted {
    A,
    #[serde(skip_deserializing)]
    B,
    C(u8),
}

fn as_u64<S: Serializer>(n: &u32, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::from(*n))
}

#[derive(Serialize, Deserialize)]
struct Widened {
    #[serde(serialize_with = "as_u64")]
    n: u32,
}

#[test]
fn serializer_writes_what_the_deserializer_never_reads() {
    assert_eq!(
        mismatch::<SkipDeserializing>(),
        "`SkipDeserializing` serializes field `b` where it deserializes field `c`"
    );
    assert_eq!(
        mismatch::<Shifted>(),
        "`Shifted` serializes variant `C` with index 2, but deserializes index 2 as nothing: \
         it has 2 (`A`, `C`)"
    );
    assert_eq!(
        mismatch::<Widened>(),
        "`Widened.n` serializes as u64 but deserializes as u32"
    );
    // Inside other types too, with the path to it.
    assert_eq!(
        mismatch::<Vec<Option<(u8, Widened)>>>(),
        "`Widened.n` serializes as u64 but deserializes as u32"
    );
}

#[derive(Serialize, Deserialize)]
struct Bytes {
    #[serde(serialize_with = "serde_bytes::serialize")]
    data: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Sequence {
    #[serde(deserialize_with = "serde_bytes::deserialize")]
    data: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Sparse {
    id: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

#[derive(Serialize, Deserialize)]
enum Status {
    #[serde(rename(serialize = "Done"))]
    Finished(u8),
}

#[derive(Serialize, Deserialize)]
struct Swapped {
    #[serde(rename(serialize = "y", deserialize = "x"))]
    x: u8,
}

#[derive(Serialize, Deserialize)]
struct Pair(u8, u8);

#[derive(Serialize, Deserialize)]
struct Holder {
    #[serde(serialize_with = "as_tuple", deserialize_with = "from_pair")]
    pair: (u8, u8),
}

#[derive(Serialize, Deserialize)]
struct Level {
    #[serde(serialize_with = "as_unit")]
    level: Option<u8>,
}

fn as_tuple<S: Serializer>(pair: &(u8, u8), s: S) -> Result<S::Ok, S::Error> {
    (pair.0, pair.1, 0u8).serialize(s)
}

fn from_pair<'de, D: serde::Deserializer<'de>>(d: D) -> Result<(u8, u8), D::Error> {
    Pair::deserialize(d).map(|Pair(a, b)| (a, b))
}

fn as_unit<S: Serializer>(_: &Option<u8>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_unit()
}

#[test]
fn every_kind_of_disagreement_is_caught() {
    assert_eq!(
        mismatch::<Bytes>(),
        "`Bytes.data` serializes as bytes but deserializes as Vec<u8>"
    );
    assert_eq!(
        mismatch::<Sequence>(),
        "`Sequence.data` serializes as a sequence but deserializes as bytes"
    );
    assert_eq!(
        mismatch::<Sparse>(),
        "`Sparse` may leave out field `note` when serializing (`skip_serializing_if`), but \
         deserializing always reads it"
    );
    assert_eq!(
        mismatch::<Status>(),
        "`Status` serializes variant `Done` with index 0, but deserializes index 0 as variant \
         `Finished`"
    );
    assert_eq!(
        mismatch::<Swapped>(),
        "`Swapped` serializes field `y` where it deserializes field `x`"
    );
    assert_eq!(
        mismatch::<Holder>(),
        "`Holder.pair` serializes as a tuple of 3 but deserializes as tuple struct `Pair` of \
         2"
    );
    assert_eq!(
        mismatch::<Level>(),
        "`Level.level` serializes as () but deserializes as Option<u8>"
    );
}

/// Transparent: a `u64` both ways.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
struct Id(u64);

#[derive(Serialize, Deserialize)]
enum Mode {
    Fast,
    #[serde(other)]
    Unknown,
}

#[derive(Serialize, Deserialize)]
struct Symmetric {
    #[serde(skip)]
    cache: u64,
    id: Id,
    #[serde(with = "serde_bytes")]
    data: Vec<u8>,
    mode: Mode,
    when: SystemTime,
    #[serde(rename = "renamed")]
    name: String,
    #[serde(default, skip_serializing_if = "Option::is_none", skip_deserializing)]
    never: Option<u8>,
}

#[test]
fn impls_that_agree_still_trace() {
    let (shape, types) = trace::<Symmetric>();
    assert_eq!(shape, named("Symmetric"));
    let fields = [
        ("id", Shape::U64),
        ("data", Shape::Bytes),
        ("mode", named("Mode")),
        ("when", named("SystemTime")),
        ("renamed", Shape::Str),
    ];
    assert_eq!(types["Symmetric"], strukt(fields));
    let mode = [("Fast", Payload::Unit), ("Unknown", Payload::Unit)];
    assert_eq!(types["Mode"], enumeration(mode));
}
