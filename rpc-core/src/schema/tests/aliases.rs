//! Tests of `#[serde(alias)]`: serde lists aliases among the field names it passes to
//! `deserialize_struct`, so the fields are the ones the visitor read, named as they serialize.

use serde::{Deserialize, Serialize};

use super::{enumeration, fields, named, seq, strukt, trace};
use crate::schema::compare::differences;
use crate::schema::shape::{Payload, Shape};
use crate::schema::trace::TypeTracer;

#[derive(Serialize, Deserialize)]
struct Aliased {
    #[serde(alias = "aaa")]
    b: u32,
    c: String,
}

#[derive(Serialize, Deserialize)]
enum Event {
    Moved {
        #[serde(alias = "a", alias = "zz")]
        x: i8,
        y: Option<Aliased>,
    },
    Stopped,
}

#[derive(Serialize, Deserialize)]
struct Tree {
    #[serde(alias = "kids")]
    children: Vec<Tree>,
    #[serde(alias = "b")]
    label: char,
}

#[test]
fn aliases_are_not_fields() {
    let (shape, types) = trace::<Aliased>();
    assert_eq!(shape, named("Aliased"));
    let aliased = strukt([("b", Shape::U32), ("c", Shape::Str)]);
    assert_eq!(types["Aliased"], aliased);

    let (_, types) = trace::<Event>();
    let moved = fields([("x", Shape::I8), ("y", super::option(named("Aliased")))]);
    let event = [
        ("Moved", Payload::Struct(moved)),
        ("Stopped", Payload::Unit),
    ];
    assert_eq!(types["Event"], enumeration(event));
    assert_eq!(types["Aliased"], aliased);

    let (_, types) = trace::<Tree>();
    let tree = strukt([("children", seq(named("Tree"))), ("label", Shape::Char)]);
    assert_eq!(types["Tree"], tree);
}

#[test]
fn aliased_types_trace_the_same_every_time() {
    let no_differences = Vec::<String>::new();
    let (first, first_types) = trace::<Aliased>();
    let (second, second_types) = trace::<Aliased>();
    let found = differences(&first, &first_types, &second, &second_types);
    assert_eq!(found, no_differences);

    // Twice on one tracer, and inside another type.
    let mut tracer = TypeTracer::new();
    let once = tracer.trace::<Aliased>().unwrap();
    let once_types = tracer.types().clone();
    let twice = tracer.trace::<Aliased>().unwrap();
    assert_eq!(tracer.types(), &once_types);
    let found = differences(&once, &once_types, &twice, tracer.types());
    assert_eq!(found, no_differences);
    tracer.trace::<Event>().unwrap();
    assert_eq!(tracer.types()["Aliased"], first_types["Aliased"]);
    let found = differences(&first, &first_types, &once, tracer.types());
    assert_eq!(found, no_differences);
}
