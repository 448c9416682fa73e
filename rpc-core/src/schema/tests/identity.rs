//! Tests of container identity: containers whose visitors build the same value are still
//! different containers when their serde names or kinds differ, so a type's shape does not
//! depend on what the tracer traced before it.

use std::fmt;
use std::ops::{RangeFrom, RangeTo};
use std::time::{Duration, SystemTime};

use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTupleStruct;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{named, strukt, trace};
use crate::schema::compare::differences;
use crate::schema::shape::{Definition, Shape, Types};
use crate::schema::trace::TypeTracer;

/// No differences.
const SAME: Vec<String> = Vec::new();

#[test]
fn system_time_is_not_a_duration() {
    let (shape, types) = trace::<(Duration, SystemTime)>();
    let expected = Shape::Tuple(vec![named("Duration"), named("SystemTime")]);
    assert_eq!(shape, expected);
    let duration = strukt([("secs", Shape::U64), ("nanos", Shape::U32)]);
    let since_epoch = [
        ("secs_since_epoch", Shape::U64),
        ("nanos_since_epoch", Shape::U32),
    ];
    assert_eq!(types["Duration"], duration);
    assert_eq!(types["SystemTime"], strukt(since_epoch));
    assert_ne!(types["Duration"], types["SystemTime"]);

    // Alone on a fresh tracer, or after `Duration` on one tracer: the same shape.
    let (alone, alone_types) = trace::<SystemTime>();
    let mut tracer = TypeTracer::new();
    tracer.trace::<Duration>().unwrap();
    let after = tracer.trace::<SystemTime>().unwrap();
    assert_eq!(after, named("SystemTime"));
    assert_eq!(
        differences(&alone, &alone_types, &after, tracer.types()),
        SAME
    );
    // And the other way round.
    let (duration_alone, duration_types) = trace::<Duration>();
    let mut tracer = TypeTracer::new();
    tracer.trace::<SystemTime>().unwrap();
    let after = tracer.trace::<Duration>().unwrap();
    let found = differences(&duration_alone, &duration_types, &after, tracer.types());
    assert_eq!(found, SAME);
}

#[test]
fn range_from_and_range_to_are_two_structs() {
    let (shape, types) = trace::<(RangeFrom<u32>, RangeTo<u32>)>();
    let expected = Shape::Tuple(vec![named("RangeFrom"), named("RangeTo")]);
    assert_eq!(shape, expected);
    assert_eq!(types["RangeFrom"], strukt([("start", Shape::U32)]));
    assert_eq!(types["RangeTo"], strukt([("end", Shape::U32)]));

    let (to_alone, to_types) = trace::<RangeTo<u32>>();
    let mut tracer = TypeTracer::new();
    tracer.trace::<RangeFrom<u32>>().unwrap();
    let to_after = tracer.trace::<RangeTo<u32>>().unwrap();
    let found = differences(&to_alone, &to_types, &to_after, tracer.types());
    assert_eq!(found, SAME);
}

/// A visitor reading `.0` numbers into a `Vec<u32>`.
struct Numbers(usize);

impl<'de> Visitor<'de> for Numbers {
    type Value = Vec<u32>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} numbers", self.0)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u32>, A::Error> {
        let mut numbers = Vec::with_capacity(self.0);
        for i in 0..self.0 {
            let next = seq.next_element()?;
            numbers.push(next.ok_or_else(|| de::Error::invalid_length(i, &self))?);
        }
        Ok(numbers)
    }
}

fn pair<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    d.deserialize_tuple_struct("Pair", 2, Numbers(2))
}

fn triple<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u32>, D::Error> {
    d.deserialize_tuple_struct("Triple", 3, Numbers(3))
}

fn tuple_struct<S: Serializer>(
    name: &'static str,
    numbers: &[u32],
    s: S,
) -> Result<S::Ok, S::Error> {
    let mut tuple = s.serialize_tuple_struct(name, numbers.len())?;
    numbers.iter().try_for_each(|n| tuple.serialize_field(n))?;
    tuple.end()
}

fn as_pair<S: Serializer>(numbers: &[u32], s: S) -> Result<S::Ok, S::Error> {
    tuple_struct("Pair", numbers, s)
}

fn as_triple<S: Serializer>(numbers: &[u32], s: S) -> Result<S::Ok, S::Error> {
    tuple_struct("Triple", numbers, s)
}

/// Two fields whose `deserialize_with` functions build a `Vec<u32>` from tuple structs of
/// different names and lengths.
#[derive(Serialize, Deserialize)]
struct Tuples {
    #[serde(deserialize_with = "pair", serialize_with = "as_pair")]
    pair: Vec<u32>,
    #[serde(deserialize_with = "triple", serialize_with = "as_triple")]
    triple: Vec<u32>,
}

/// `Tuples`, the other way round.
#[derive(Serialize, Deserialize)]
#[serde(rename = "Tuples")]
struct Reversed {
    #[serde(deserialize_with = "triple", serialize_with = "as_triple")]
    triple: Vec<u32>,
    #[serde(deserialize_with = "pair", serialize_with = "as_pair")]
    pair: Vec<u32>,
}

#[test]
fn deserialize_with_visitors_of_one_value_stay_apart() {
    let (shape, types) = trace::<Tuples>();
    assert_eq!(shape, named("Tuples"));
    let expected = Types::from([
        ("Pair".into(), Definition::TupleStruct(vec![Shape::U32; 2])),
        (
            "Triple".into(),
            Definition::TupleStruct(vec![Shape::U32; 3]),
        ),
        (
            "Tuples".into(),
            strukt([("pair", named("Pair")), ("triple", named("Triple"))]),
        ),
    ]);
    assert_eq!(types, expected);

    // Whichever comes first on one tracer, `Triple` is the same.
    let mut tracer = TypeTracer::new();
    tracer.trace::<Reversed>().unwrap();
    tracer.trace::<Tuples>().unwrap();
    assert_eq!(tracer.types()["Pair"], expected["Pair"]);
    assert_eq!(tracer.types()["Triple"], expected["Triple"]);
}
