//! Tests of the tracer: the shapes of primitives, compounds, structs, enums, recursive and
//! generic types, serde renames, and the errors for types without a shape.

use std::collections::{BTreeSet, HashMap};
use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{enumeration, fields, map, named, option, seq, shape_of, strukt, trace};
use crate::schema::shape::{Definition, Payload, Shape, Types};
use crate::schema::trace::TypeTracer;

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

#[derive(Serialize, Deserialize)]
struct Unit;
#[derive(Serialize, Deserialize)]
struct Meters(f64);
#[derive(Serialize, Deserialize)]
struct Pair(u8, String);
#[derive(Serialize, Deserialize)]
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

#[derive(Serialize, Deserialize)]
pub(super) enum Inner {
    A,
    B(u8),
    C(u16, u32),
    D { x: i64 },
}
#[derive(Serialize, Deserialize)]
pub(super) enum Middle {
    M(Inner),
    N {
        inner: Option<Inner>,
        more: HashMap<String, Inner>,
    },
}
#[derive(Serialize, Deserialize)]
pub(super) struct Outer {
    middle: Middle,
    list: Vec<Middle>,
}
#[derive(Serialize, Deserialize)]
pub(super) enum Top {
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

#[derive(Serialize, Deserialize)]
pub(super) enum List {
    Cons(i32, Box<List>),
    Nil,
}
#[derive(Serialize, Deserialize)]
pub(super) struct Node {
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

#[derive(Serialize, Deserialize)]
pub(super) enum Expr {
    Call(Box<Expr>, Vec<Expr>),
    Block(Vec<Stmt>),
    If(Box<Expr>, Box<Stmt>, Option<Box<Stmt>>),
    Lit(i64),
}
#[derive(Serialize, Deserialize)]
pub(super) enum Stmt {
    Seq(Box<Stmt>, Box<Stmt>),
    Expr(Expr),
    Let { name: String, value: Expr },
}
#[derive(Serialize, Deserialize)]
pub(super) struct Tree {
    kind: Kind,
}
#[derive(Serialize, Deserialize)]
enum Kind {
    Branch(Box<Tree>),
    Other(Box<Tree>, Box<Tree>),
    Leaf,
}
#[derive(Serialize, Deserialize)]
enum Ping {
    A(Box<Pong>),
    B(Box<Pong>),
}
#[derive(Serialize, Deserialize)]
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

#[derive(Serialize, Deserialize)]
pub(super) struct MathError {
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

#[derive(Serialize, Deserialize)]
struct Page<T> {
    items: Vec<T>,
    next: Option<u64>,
}
#[derive(Serialize, Deserialize)]
pub(super) struct Pages {
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

#[derive(Serialize, Deserialize)]
#[serde(rename = "Renamed")]
struct Original {
    #[serde(rename = "b")]
    a: u8,
    #[serde(skip)]
    skipped: u64,
    choice: Choice,
}
#[derive(Serialize, Deserialize)]
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

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum Untagged {
    A(u8),
    B(String),
}
#[derive(Serialize, Deserialize)]
#[serde(tag = "type")]
enum Internal {
    A { x: u8 },
}
#[derive(Serialize, Deserialize)]
struct Flattened {
    #[serde(flatten)]
    inner: MathError,
}
#[derive(Serialize, Deserialize)]
struct Endless(Box<Endless>);
#[derive(Serialize, Deserialize)]
enum NoWayOut {
    Again(Box<NoWayOut>),
}
#[derive(Clone, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
struct Even(u32);
impl From<Even> for u32 {
    fn from(even: Even) -> u32 {
        even.0
    }
}
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
