//! Tests of the tracer, the comparison and the canonical encoding.
#![allow(dead_code)] // The test types are only ever traced, never read.

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroU32;
use std::time::Duration;

use serde::Deserialize;

use super::canonical::{canonical_bytes, digest};
use super::compare::differences;
use super::shape::{Definition, Field, Payload, Shape, Types, Variant};
use super::trace::TypeTracer;

fn trace<T: Deserialize<'static>>() -> (Shape, Types) {
    let mut tracer = TypeTracer::new();
    let shape = tracer.trace::<T>().unwrap_or_else(|e| panic!("{e}"));
    (shape, tracer.into_types())
}

fn shape_of<T: Deserialize<'static>>() -> Shape {
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

fn diff<A: Deserialize<'static>, B: Deserialize<'static>>() -> Vec<String> {
    let ((a, at), (b, bt)) = (trace::<A>(), trace::<B>());
    differences(&a, &at, &b, &bt)
}

fn bytes(shape: &Shape, types: &Types) -> Vec<u8> {
    let mut out = Vec::new();
    canonical_bytes(shape, types, &mut out);
    out
}

#[test]
fn primitives_strings_and_bytes() {
    let cases = [
        (shape_of::<bool>(), Shape::Bool),
        (shape_of::<i8>(), Shape::I8),
        (shape_of::<i16>(), Shape::I16),
        (shape_of::<i32>(), Shape::I32),
        (shape_of::<i64>(), Shape::I64),
        (shape_of::<i128>(), Shape::I128),
        (shape_of::<u8>(), Shape::U8),
        (shape_of::<u16>(), Shape::U16),
        (shape_of::<u32>(), Shape::U32),
        (shape_of::<u64>(), Shape::U64),
        (shape_of::<u128>(), Shape::U128),
        (shape_of::<f32>(), Shape::F32),
        (shape_of::<f64>(), Shape::F64),
        (shape_of::<char>(), Shape::Char),
        (shape_of::<()>(), Shape::Unit),
        (shape_of::<NonZeroU32>(), Shape::U32),
        (shape_of::<String>(), Shape::Str),
        (shape_of::<&'static str>(), Shape::Str),
        (shape_of::<Box<str>>(), Shape::Str),
        (shape_of::<Vec<u8>>(), seq(Shape::U8)),
        (shape_of::<serde_bytes::ByteBuf>(), Shape::Bytes),
        (shape_of::<&'static serde_bytes::Bytes>(), Shape::Bytes),
    ];
    for (i, (traced, expected)) in cases.into_iter().enumerate() {
        assert_eq!(traced, expected, "case {i}");
    }
}

#[test]
fn compounds() {
    assert_eq!(shape_of::<Option<u32>>(), option(Shape::U32));
    assert_eq!(shape_of::<Vec<String>>(), seq(Shape::Str));
    assert_eq!(shape_of::<BTreeSet<i16>>(), seq(Shape::I16));
    assert_eq!(
        shape_of::<HashMap<String, u64>>(),
        map(Shape::Str, Shape::U64)
    );
    let tuple = Shape::Tuple(vec![Shape::U8, Shape::Str, Shape::Bool]);
    assert_eq!(shape_of::<(u8, String, bool)>(), tuple);
    assert_eq!(shape_of::<[u8; 4]>(), Shape::Tuple(vec![Shape::U8; 4]));
    let nested = option(seq(Shape::Tuple(vec![Shape::Char, Shape::F64])));
    assert_eq!(shape_of::<Option<Vec<(char, f64)>>>(), nested);
}

#[derive(Deserialize)]
struct Unit;
#[derive(Deserialize)]
struct Meters(f64);
#[derive(Deserialize)]
struct Pair(u8, String);
#[derive(Deserialize)]
struct Structs {
    unit: Unit,
    meters: Meters,
    pair: Pair,
    again: Pair,
    duration: Duration,
}

#[test]
fn structs_of_every_kind() {
    let (shape, types) = trace::<Structs>();
    assert_eq!(shape, named("Structs"));
    let expected = Types::from([
        ("Unit".into(), Definition::UnitStruct),
        ("Meters".into(), Definition::NewtypeStruct(Shape::F64)),
        (
            "Pair".into(),
            Definition::TupleStruct(vec![Shape::U8, Shape::Str]),
        ),
        (
            "Duration".into(),
            strukt([("secs", Shape::U64), ("nanos", Shape::U32)]),
        ),
        (
            "Structs".into(),
            strukt([
                ("unit", named("Unit")),
                ("meters", named("Meters")),
                ("pair", named("Pair")),
                ("again", named("Pair")),
                ("duration", named("Duration")),
            ]),
        ),
    ]);
    assert_eq!(types, expected);
}

#[derive(Deserialize)]
enum Inner {
    A,
    B(u8),
    C(u16, u32),
    D { x: i64 },
}
#[derive(Deserialize)]
enum Middle {
    M(Inner),
    N {
        inner: Option<Inner>,
        more: HashMap<String, Inner>,
    },
}
#[derive(Deserialize)]
struct Outer {
    middle: Middle,
    list: Vec<Middle>,
}
#[derive(Deserialize)]
enum Top {
    Wrap(Outer),
    Other(Box<Middle>),
    Nothing,
}

#[test]
fn nested_enums_are_explored_without_help() {
    let inner = enumeration([
        ("A", Payload::Unit),
        ("B", Payload::Newtype(Shape::U8)),
        ("C", Payload::Tuple(vec![Shape::U16, Shape::U32])),
        ("D", Payload::Struct(fields([("x", Shape::I64)]))),
    ]);
    let n = fields([
        ("inner", option(named("Inner"))),
        ("more", map(Shape::Str, named("Inner"))),
    ]);
    let middle = enumeration([
        ("M", Payload::Newtype(named("Inner"))),
        ("N", Payload::Struct(n)),
    ]);
    let outer = strukt([("middle", named("Middle")), ("list", seq(named("Middle")))]);
    let top = enumeration([
        ("Wrap", Payload::Newtype(named("Outer"))),
        ("Other", Payload::Newtype(named("Middle"))),
        ("Nothing", Payload::Unit),
    ]);
    let (shape, types) = trace::<Top>();
    assert_eq!(shape, named("Top"));
    let expected = [
        ("Inner", inner),
        ("Middle", middle),
        ("Outer", outer),
        ("Top", top),
    ];
    assert_eq!(types, Types::from(expected.map(|(k, d)| (k.to_owned(), d))));
    // From the struct, two levels up: the same definitions.
    let (_, from_struct) = trace::<Outer>();
    assert_eq!(from_struct.len(), 3);
    assert!(from_struct.iter().all(|(key, def)| types[key] == *def));
}

#[derive(Deserialize)]
enum List {
    Cons(i32, Box<List>),
    Nil,
}
#[derive(Deserialize)]
struct Node {
    children: Vec<Node>,
    next: Option<Box<Node>>,
}

#[test]
fn recursive_types() {
    let (shape, types) = trace::<List>();
    assert_eq!(shape, named("List"));
    let cons = Payload::Tuple(vec![Shape::I32, named("List")]);
    let list = enumeration([("Cons", cons), ("Nil", Payload::Unit)]);
    assert_eq!(types, Types::from([("List".into(), list)]));

    let (shape, types) = trace::<Node>();
    assert_eq!(shape, named("Node"));
    let node = strukt([
        ("children", seq(named("Node"))),
        ("next", option(named("Node"))),
    ]);
    assert_eq!(types, Types::from([("Node".into(), node)]));
}

#[derive(Deserialize)]
enum Expr {
    Call(Box<Expr>, Vec<Expr>),
    Block(Vec<Stmt>),
    If(Box<Expr>, Box<Stmt>, Option<Box<Stmt>>),
    Lit(i64),
}
#[derive(Deserialize)]
enum Stmt {
    Seq(Box<Stmt>, Box<Stmt>),
    Expr(Expr),
    Let { name: String, value: Expr },
}
#[derive(Deserialize)]
struct Tree {
    kind: Kind,
}
#[derive(Deserialize)]
enum Kind {
    Branch(Box<Tree>),
    Other(Box<Tree>, Box<Tree>),
    Leaf,
}
#[derive(Deserialize)]
enum Ping {
    A(Box<Pong>),
    B(Box<Pong>),
}
#[derive(Deserialize)]
enum Pong {
    X(Box<Ping>),
    Y(Box<Ping>),
    Leaf,
}

#[test]
fn mutually_recursive_types() {
    let (_, types) = trace::<Stmt>();
    let stmt = enumeration([
        ("Seq", Payload::Tuple(vec![named("Stmt"), named("Stmt")])),
        ("Expr", Payload::Newtype(named("Expr"))),
        (
            "Let",
            Payload::Struct(fields([("name", Shape::Str), ("value", named("Expr"))])),
        ),
    ]);
    let expr = enumeration([
        (
            "Call",
            Payload::Tuple(vec![named("Expr"), seq(named("Expr"))]),
        ),
        ("Block", Payload::Newtype(seq(named("Stmt")))),
        (
            "If",
            Payload::Tuple(vec![named("Expr"), named("Stmt"), option(named("Stmt"))]),
        ),
        ("Lit", Payload::Newtype(Shape::I64)),
    ]);
    assert_eq!(
        types,
        Types::from([("Stmt".into(), stmt), ("Expr".into(), expr)])
    );
    assert_eq!(trace::<Expr>().1, types);

    let (_, types) = trace::<Tree>();
    let kind = enumeration([
        ("Branch", Payload::Newtype(named("Tree"))),
        ("Other", Payload::Tuple(vec![named("Tree"), named("Tree")])),
        ("Leaf", Payload::Unit),
    ]);
    assert_eq!(types["Kind"], kind);

    // Quiet values of `Ping` find `Pong::Leaf` only after trying every other variant.
    let (_, types) = trace::<Ping>();
    let ping = Payload::Newtype(named("Ping"));
    let pong = enumeration([("X", ping.clone()), ("Y", ping), ("Leaf", Payload::Unit)]);
    assert_eq!(types["Pong"], pong);
    assert_eq!(types.len(), 2);
}

#[derive(Deserialize)]
struct MathError {
    code: u16,
}

#[test]
fn std_types() {
    let (shape, types) = trace::<Result<i64, MathError>>();
    assert_eq!(shape, named("Result"));
    let ok = Payload::Newtype(Shape::I64);
    let result = enumeration([("Ok", ok), ("Err", Payload::Newtype(named("MathError")))]);
    assert_eq!(types["Result"], result);
    let (shape, types) = trace::<Duration>();
    assert_eq!(shape, named("Duration"));
    assert_eq!(
        types["Duration"],
        strukt([("secs", Shape::U64), ("nanos", Shape::U32)])
    );
}

#[derive(Deserialize)]
struct Page<T> {
    items: Vec<T>,
    next: Option<u64>,
}
#[derive(Deserialize)]
struct Pages {
    numbers: Page<u32>,
    names: Page<String>,
    more_numbers: Page<u32>,
}

#[test]
fn generic_instances_get_their_own_keys() {
    let mut tracer = TypeTracer::new();
    let shape = tracer.trace::<Pages>().unwrap();
    let types = tracer.types().clone();
    let page = |item| strukt([("items", seq(item)), ("next", option(Shape::U64))]);
    assert_eq!(types["Page"], page(Shape::U32));
    assert_eq!(types["Page#2"], page(Shape::Str));
    let pages = [
        ("numbers", named("Page")),
        ("names", named("Page#2")),
        ("more_numbers", named("Page")),
    ];
    assert_eq!(types["Pages"], strukt(pages));
    // The same types again, alone or together: the same keys, one definition each.
    assert_eq!(tracer.trace::<Page<String>>().unwrap(), named("Page#2"));
    assert_eq!(tracer.trace::<Pages>().unwrap(), shape);
    assert_eq!(tracer.types(), &types);
    assert_eq!(tracer.trace::<Page<bool>>().unwrap(), named("Page#3"));
    assert_eq!(tracer.types().len(), 4);
}

#[derive(Deserialize)]
#[serde(rename = "Renamed")]
struct Original {
    #[serde(rename = "b")]
    a: u8,
    #[serde(skip)]
    skipped: u64,
    choice: Choice,
}
#[derive(Deserialize)]
enum Choice {
    #[serde(rename = "Yes")]
    Ja,
}

#[test]
fn serde_renames_are_the_names() {
    let (shape, types) = trace::<Original>();
    assert_eq!(shape, named("Renamed"));
    assert_eq!(
        types["Renamed"],
        strukt([("b", Shape::U8), ("choice", named("Choice"))])
    );
    assert_eq!(types["Choice"], enumeration([("Yes", Payload::Unit)]));
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Untagged {
    A(u8),
    B(String),
}
#[derive(Deserialize)]
#[serde(tag = "type")]
enum Internal {
    A { x: u8 },
}
#[derive(Deserialize)]
struct Flattened {
    #[serde(flatten)]
    inner: MathError,
}
#[derive(Deserialize)]
struct Endless(Box<Endless>);
#[derive(Deserialize)]
enum NoWayOut {
    Again(Box<NoWayOut>),
}
#[derive(Deserialize)]
#[serde(try_from = "u32")]
struct Even(u32);
impl TryFrom<u32> for Even {
    type Error = &'static str;
    fn try_from(n: u32) -> Result<Self, Self::Error> {
        n.is_multiple_of(2).then_some(Even(n)).ok_or("odd number")
    }
}

#[test]
fn errors_name_the_type_and_the_reason() {
    let mut tracer = TypeTracer::new();
    tracer.trace::<List>().unwrap();
    let before = tracer.types().clone();
    let error = tracer.trace::<Vec<Untagged>>().unwrap_err();
    assert_eq!(error.type_name, std::any::type_name::<Vec<Untagged>>());
    assert!(error.reason.contains("self-describing"), "{error}");
    assert!(
        error
            .to_string()
            .starts_with("cannot describe `alloc::vec::Vec<"),
        "{error}"
    );
    assert_eq!(
        tracer.types(),
        &before,
        "a failed trace leaves the table alone"
    );
    for reason in [
        tracer.trace::<Internal>().unwrap_err().reason,
        tracer.trace::<Flattened>().unwrap_err().reason,
    ] {
        assert!(reason.contains("self-describing"), "{reason}");
    }
    let error = tracer.trace::<Endless>().unwrap_err();
    assert!(error.reason.contains("deeper than 256"), "{error}");
    let error = tracer.trace::<NoWayOut>().unwrap_err();
    assert!(
        error.reason.contains("every variant of `NoWayOut`"),
        "{error}"
    );
    let error = tracer.trace::<(u8, Even)>().unwrap_err();
    assert_eq!(error.reason, "odd number");
    assert_eq!(tracer.types(), &before);
}

/// Two versions of some types, traced.
mod v1 {
    use serde::Deserialize;
    #[derive(Deserialize)]
    pub struct Line {
        sku: u32,
    }
    #[derive(Deserialize)]
    pub struct Order {
        line: Line,
        lines: Vec<Line>,
    }
    #[derive(Deserialize)]
    pub enum List {
        Cons(i32, Box<List>),
        Nil,
    }
}

mod v2 {
    use serde::Deserialize;
    #[derive(Deserialize)]
    pub struct Line {
        sku: String,
    }
    #[derive(Deserialize)]
    pub struct Order {
        line: Line,
        lines: Vec<Line>,
    }
    #[derive(Deserialize)]
    pub enum List {
        Cons(i64, Box<List>),
        Nil,
    }
}

/// `Order { id, qty }` with these shapes, and `Status { Placed, Shipped(u32) }` with these
/// variants, written by hand.
fn order<const N: usize>(name: &str, list: [(&str, Shape); N]) -> (Shape, Types) {
    (named(name), Types::from([(name.to_owned(), strukt(list))]))
}

fn status<const N: usize>(variants: [(&str, Payload); N]) -> (Shape, Types) {
    (
        named("Status"),
        Types::from([("Status".into(), enumeration(variants))]),
    )
}

fn diff_of((a, at): &(Shape, Types), (b, bt): &(Shape, Types)) -> Vec<String> {
    differences(a, at, b, bt)
}

fn hand_written() -> Vec<(Shape, Types)> {
    let (id, qty, note) = (
        ("id", Shape::U32),
        ("qty", Shape::U16),
        ("note", Shape::Str),
    );
    let shipped = ("Shipped", Payload::Newtype(Shape::U32));
    vec![
        order("Order", [id.clone(), qty.clone()]),
        order("Order", [("id", Shape::I32), qty.clone()]),
        order("Order", [id.clone(), qty.clone(), note]),
        order("Order", [qty.clone(), id.clone()]),
        order("Purchase", [id.clone(), qty.clone()]),
        status([("Placed", Payload::Unit), shipped.clone()]),
        status([
            ("Placed", Payload::Unit),
            shipped.clone(),
            ("Lost", Payload::Unit),
        ]),
        status([shipped.clone(), ("Placed", Payload::Unit)]),
        status([
            ("Placed", Payload::Unit),
            ("Shipped", Payload::Newtype(Shape::U64)),
        ]),
        status([
            ("Placed", Payload::Newtype(Shape::U32)),
            ("Shipped", Payload::Unit),
        ]),
        // The first one again, under a suffixed key, and twice under two keys.
        (
            named("Order#2"),
            Types::from([("Order#2".into(), strukt([id.clone(), qty.clone()]))]),
        ),
        (
            Shape::Tuple(vec![named("Order"), named("Order#3")]),
            Types::from([
                ("Order".into(), strukt([id.clone(), qty.clone()])),
                ("Order#3".into(), strukt([id, qty])),
            ]),
        ),
    ]
}

#[test]
fn differences_in_words() {
    let hand = hand_written();
    let d = |i: usize, j: usize| diff_of(&hand[i], &hand[j]);
    assert!(d(0, 0).is_empty() && d(0, 10).is_empty() && d(5, 5).is_empty());
    assert_eq!(d(0, 1), ["Order.id: client u32, server i32"]);
    let empty = Types::new();
    assert_eq!(
        differences(&Shape::U32, &empty, &Shape::I32, &empty),
        ["client u32, server i32"]
    );
    assert_eq!(d(0, 2), ["Order: field 'note' only on the server"]);
    assert_eq!(d(2, 0), ["Order: field 'note' only on the client"]);
    assert_eq!(
        d(0, 3),
        ["Order: fields in another order: client (id, qty), server (qty, id)"]
    );
    assert_eq!(d(0, 4), ["client Order, server Purchase"]);
    assert_eq!(d(5, 6), ["Status: variant 'Lost' only on the server"]);
    let swapped =
        "Status: variants in another order: client (Placed, Shipped), server (Shipped, Placed)";
    assert_eq!(d(5, 7), [swapped]);
    assert_eq!(d(5, 8), ["Status::Shipped.0: client u32, server u64"]);
    let kinds = [
        "Status::Placed: client unit, server (u32)",
        "Status::Shipped: client (u32), server unit",
    ];
    assert_eq!(d(5, 9), kinds);
    // Traced: two levels down through field names, a pair of containers compared once.
    assert_eq!(
        diff::<v1::Order, v2::Order>(),
        ["Order.line.sku: client u32, server string"]
    );
    assert_eq!(
        diff::<Option<v1::Line>, Option<v2::Line>>(),
        ["Line.sku: client u32, server string"]
    );
    let vecs = "client Vec<Order>, server Vec<Line>";
    assert_eq!(diff::<Vec<v1::Order>, Vec<v1::Line>>(), [vecs]);
    assert_eq!(
        diff::<(u8, u16), (u8, u32)>(),
        ["client (u8, u16), server (u8, u32)"]
    );
    assert_eq!(
        diff::<v1::List, v2::List>(),
        ["List::Cons.0: client i32, server i64"]
    );
    assert!(diff::<List, v1::List>().is_empty());
}

#[test]
fn unknown_is_never_equal() {
    let (unknown, known) = (
        order("Order", [("id", Shape::Unknown)]),
        order("Order", [("id", Shape::U32)]),
    );
    assert_eq!(
        diff_of(&unknown, &known),
        ["Order.id: client (unknown), server u32"]
    );
    assert_eq!(
        diff_of(&unknown, &unknown),
        ["Order.id: client (unknown), server (unknown)"]
    );
    let empty = Types::new();
    assert_eq!(
        differences(&Shape::Unknown, &empty, &Shape::Unknown, &empty).len(),
        1
    );
}

/// Shapes to compare pairwise: traced, and written by hand with `#N` keys.
fn examples() -> Vec<(Shape, Types)> {
    let mut all = hand_written();
    all.extend([
        trace::<v1::Order>(),
        trace::<v2::Order>(),
        trace::<v1::List>(),
        trace::<v2::List>(),
        trace::<List>(),
        trace::<Node>(),
        trace::<Expr>(),
        trace::<Stmt>(),
        trace::<Tree>(),
        trace::<Top>(),
        trace::<Pages>(),
        trace::<Result<i64, MathError>>(),
        trace::<(v1::Line, v1::Line)>(),
        trace::<(v1::Line, v2::Line)>(),
        trace::<Vec<u8>>(),
        trace::<serde_bytes::ByteBuf>(),
        trace::<u32>(),
    ]);
    // A list whose tail is a copy of the list type under another key.
    let list = |tail: &str| {
        let cons = Payload::Tuple(vec![Shape::I32, named(tail)]);
        enumeration([("Cons", cons), ("Nil", Payload::Unit)])
    };
    all.push((
        named("List"),
        Types::from([
            ("List".into(), list("List#2")),
            ("List#2".into(), list("List")),
        ]),
    ));
    all
}

#[test]
fn equal_bytes_exactly_when_no_differences() {
    let examples = examples();
    let mut equal_pairs = 0;
    for (i, (a, at)) in examples.iter().enumerate() {
        for (j, (b, bt)) in examples.iter().enumerate() {
            let same = differences(a, at, b, bt).is_empty();
            assert_eq!(bytes(a, at) == bytes(b, bt), same, "{i} {a:?} vs {j} {b:?}");
            assert_eq!(digest(&[a], at) == digest(&[b], bt), same, "{i} vs {j}");
            equal_pairs += usize::from(same && i != j);
        }
    }
    // Order and Order#2; v1::List, List and the two-key list (both ways each).
    assert_eq!(equal_pairs, 8);
}

#[test]
fn canonical_details() {
    let (pages, types) = trace::<Pages>();
    let (line, line_types) = trace::<v1::Line>();
    // Written once, then referred back to.
    let twice = Shape::Tuple(vec![line.clone(), line.clone()]);
    let (once, both) = (bytes(&line, &line_types), bytes(&twice, &line_types));
    assert!(both.len() < 2 * once.len() && both.len() > once.len());
    // Shapes in a digest are in order and share references.
    assert_ne!(
        digest(&[&pages, &line], &types),
        digest(&[&line, &pages], &types)
    );
    assert_ne!(
        digest(&[&line], &line_types),
        digest(&[&line, &line], &line_types)
    );
    assert_eq!(
        digest(&[&line, &line], &line_types),
        digest(&[&line, &line], &line_types)
    );
    let mut out = vec![7];
    canonical_bytes(&pages, &types, &mut out);
    assert_eq!(out[1..], bytes(&pages, &types), "appends");
}
