//! Tests of the tracer, the comparison and the canonical encoding.

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

fn field(name: &str, shape: Shape) -> Field {
    Field {
        name: name.into(),
        shape,
    }
}

fn variant(name: &str, payload: Payload) -> Variant {
    Variant {
        name: name.into(),
        payload,
    }
}

fn boxed(shape: Shape) -> Box<Shape> {
    Box::new(shape)
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
fn primitives() {
    assert_eq!(shape_of::<bool>(), Shape::Bool);
    assert_eq!(shape_of::<i8>(), Shape::I8);
    assert_eq!(shape_of::<i16>(), Shape::I16);
    assert_eq!(shape_of::<i32>(), Shape::I32);
    assert_eq!(shape_of::<i64>(), Shape::I64);
    assert_eq!(shape_of::<i128>(), Shape::I128);
    assert_eq!(shape_of::<u8>(), Shape::U8);
    assert_eq!(shape_of::<u16>(), Shape::U16);
    assert_eq!(shape_of::<u32>(), Shape::U32);
    assert_eq!(shape_of::<u64>(), Shape::U64);
    assert_eq!(shape_of::<u128>(), Shape::U128);
    assert_eq!(shape_of::<f32>(), Shape::F32);
    assert_eq!(shape_of::<f64>(), Shape::F64);
    assert_eq!(shape_of::<char>(), Shape::Char);
    assert_eq!(shape_of::<()>(), Shape::Unit);
    assert_eq!(shape_of::<NonZeroU32>(), Shape::U32);
}

#[test]
fn strings_and_bytes() {
    assert_eq!(shape_of::<String>(), Shape::Str);
    assert_eq!(shape_of::<&'static str>(), Shape::Str);
    assert_eq!(shape_of::<Box<str>>(), Shape::Str);
    assert_eq!(shape_of::<Vec<u8>>(), Shape::Seq(boxed(Shape::U8)));
    assert_eq!(shape_of::<serde_bytes::ByteBuf>(), Shape::Bytes);
    assert_eq!(shape_of::<&'static serde_bytes::Bytes>(), Shape::Bytes);
}

#[test]
fn compounds() {
    assert_eq!(shape_of::<Option<u32>>(), Shape::Option(boxed(Shape::U32)));
    assert_eq!(shape_of::<Vec<String>>(), Shape::Seq(boxed(Shape::Str)));
    assert_eq!(shape_of::<BTreeSet<i16>>(), Shape::Seq(boxed(Shape::I16)));
    let map = Shape::Map {
        key: boxed(Shape::Str),
        value: boxed(Shape::U64),
    };
    assert_eq!(shape_of::<HashMap<String, u64>>(), map);
    let tuple = Shape::Tuple(vec![Shape::U8, Shape::Str, Shape::Bool]);
    assert_eq!(shape_of::<(u8, String, bool)>(), tuple);
    assert_eq!(shape_of::<[u8; 4]>(), Shape::Tuple(vec![Shape::U8; 4]));
    let nested = Shape::Option(boxed(Shape::Seq(boxed(Shape::Tuple(vec![
        Shape::Char,
        Shape::F64,
    ])))));
    assert_eq!(shape_of::<Option<Vec<(char, f64)>>>(), nested);
}

#[derive(Deserialize)]
struct Unit;
#[derive(Deserialize)]
struct Meters(#[allow(dead_code)] f64);
#[derive(Deserialize)]
#[allow(dead_code)]
struct Pair(u8, String);
#[derive(Deserialize)]
#[allow(dead_code)]
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
            Definition::Struct(vec![field("secs", Shape::U64), field("nanos", Shape::U32)]),
        ),
        (
            "Structs".into(),
            Definition::Struct(vec![
                field("unit", named("Unit")),
                field("meters", named("Meters")),
                field("pair", named("Pair")),
                field("again", named("Pair")),
                field("duration", named("Duration")),
            ]),
        ),
    ]);
    assert_eq!(types, expected);
}

#[derive(Deserialize)]
#[allow(dead_code)]
enum Inner {
    A,
    B(u8),
    C(u16, u32),
    D { x: i64 },
}
#[derive(Deserialize)]
#[allow(dead_code)]
enum Middle {
    M(Inner),
    N {
        inner: Option<Inner>,
        more: HashMap<String, Inner>,
    },
}
#[derive(Deserialize)]
#[allow(dead_code)]
struct Outer {
    middle: Middle,
    list: Vec<Middle>,
}
#[derive(Deserialize)]
#[allow(dead_code)]
enum Top {
    Wrap(Outer),
    Other(Box<Middle>),
    Nothing,
}

fn inner_definition() -> Definition {
    Definition::Enum(vec![
        variant("A", Payload::Unit),
        variant("B", Payload::Newtype(Shape::U8)),
        variant("C", Payload::Tuple(vec![Shape::U16, Shape::U32])),
        variant("D", Payload::Struct(vec![field("x", Shape::I64)])),
    ])
}

#[test]
fn nested_enums_are_explored_without_help() {
    let (shape, types) = trace::<Top>();
    assert_eq!(shape, named("Top"));
    assert_eq!(types["Inner"], inner_definition());
    let more = Shape::Map {
        key: boxed(Shape::Str),
        value: boxed(named("Inner")),
    };
    let middle = Definition::Enum(vec![
        variant("M", Payload::Newtype(named("Inner"))),
        variant(
            "N",
            Payload::Struct(vec![
                field("inner", Shape::Option(boxed(named("Inner")))),
                field("more", more),
            ]),
        ),
    ]);
    assert_eq!(types["Middle"], middle);
    let outer = vec![
        field("middle", named("Middle")),
        field("list", Shape::Seq(boxed(named("Middle")))),
    ];
    assert_eq!(types["Outer"], Definition::Struct(outer));
    let top = Definition::Enum(vec![
        variant("Wrap", Payload::Newtype(named("Outer"))),
        variant("Other", Payload::Newtype(named("Middle"))),
        variant("Nothing", Payload::Unit),
    ]);
    assert_eq!(types["Top"], top);
    assert_eq!(types.len(), 4);
    // Reached from a struct, two levels down, the same.
    let (_, from_struct) = trace::<Outer>();
    assert_eq!(from_struct["Inner"], inner_definition());
}

#[derive(Deserialize)]
#[allow(dead_code)]
enum List {
    Cons(i32, Box<List>),
    Nil,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Node {
    children: Vec<Node>,
    next: Option<Box<Node>>,
}

#[test]
fn recursive_types() {
    let (shape, types) = trace::<List>();
    assert_eq!(shape, named("List"));
    let cons = Payload::Tuple(vec![Shape::I32, named("List")]);
    let list = Definition::Enum(vec![variant("Cons", cons), variant("Nil", Payload::Unit)]);
    assert_eq!(types, Types::from([("List".into(), list)]));

    let (shape, types) = trace::<Node>();
    assert_eq!(shape, named("Node"));
    let node = Definition::Struct(vec![
        field("children", Shape::Seq(boxed(named("Node")))),
        field("next", Shape::Option(boxed(named("Node")))),
    ]);
    assert_eq!(types, Types::from([("Node".into(), node)]));
}

#[derive(Deserialize)]
#[allow(dead_code)]
enum Expr {
    Call(Box<Expr>, Vec<Expr>),
    Block(Vec<Stmt>),
    If(Box<Expr>, Box<Stmt>, Option<Box<Stmt>>),
    Lit(i64),
}
#[derive(Deserialize)]
#[allow(dead_code)]
enum Stmt {
    Seq(Box<Stmt>, Box<Stmt>),
    Expr(Expr),
    Let { name: String, value: Expr },
}
#[derive(Deserialize)]
#[allow(dead_code)]
struct Tree {
    kind: Kind,
}
#[derive(Deserialize)]
#[allow(dead_code)]
enum Kind {
    Branch(Box<Tree>),
    Other(Box<Tree>, Box<Tree>),
    Leaf,
}

#[derive(Deserialize)]
#[allow(dead_code)]
enum Ping {
    A(Box<Pong>),
    B(Box<Pong>),
}
#[derive(Deserialize)]
#[allow(dead_code)]
enum Pong {
    X(Box<Ping>),
    Y(Box<Ping>),
    Leaf,
}

#[test]
fn mutually_recursive_types() {
    let (_, types) = trace::<Expr>();
    let Definition::Enum(stmt) = &types["Stmt"] else {
        panic!("{types:?}")
    };
    let let_ = Payload::Struct(vec![
        field("name", Shape::Str),
        field("value", named("Expr")),
    ]);
    assert_eq!(stmt[2], variant("Let", let_));
    let Definition::Enum(expr) = &types["Expr"] else {
        panic!("{types:?}")
    };
    let if_ = vec![
        named("Expr"),
        named("Stmt"),
        Shape::Option(boxed(named("Stmt"))),
    ];
    assert_eq!(expr[2], variant("If", Payload::Tuple(if_)));
    assert_eq!(expr.len(), 4);

    let (_, types) = trace::<Tree>();
    let kind = Definition::Enum(vec![
        variant("Branch", Payload::Newtype(named("Tree"))),
        variant("Other", Payload::Tuple(vec![named("Tree"), named("Tree")])),
        variant("Leaf", Payload::Unit),
    ]);
    assert_eq!(types["Kind"], kind);

    // Quiet values of `Ping` find `Pong::Leaf` only after trying every other variant.
    let (_, types) = trace::<Ping>();
    let pong = Definition::Enum(vec![
        variant("X", Payload::Newtype(named("Ping"))),
        variant("Y", Payload::Newtype(named("Ping"))),
        variant("Leaf", Payload::Unit),
    ]);
    assert_eq!(types["Pong"], pong);
    assert_eq!(types.len(), 2);
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct MathError {
    code: u16,
}

#[test]
fn std_types() {
    let (shape, types) = trace::<Result<i64, MathError>>();
    assert_eq!(shape, named("Result"));
    let result = Definition::Enum(vec![
        variant("Ok", Payload::Newtype(Shape::I64)),
        variant("Err", Payload::Newtype(named("MathError"))),
    ]);
    assert_eq!(types["Result"], result);
    let (shape, types) = trace::<Duration>();
    assert_eq!(shape, named("Duration"));
    let fields = vec![field("secs", Shape::U64), field("nanos", Shape::U32)];
    assert_eq!(types["Duration"], Definition::Struct(fields));
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct Page<T> {
    items: Vec<T>,
    next: Option<u64>,
}
#[derive(Deserialize)]
#[allow(dead_code)]
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
    let page = |item| {
        Definition::Struct(vec![
            field("items", Shape::Seq(boxed(item))),
            field("next", Shape::Option(boxed(Shape::U64))),
        ])
    };
    assert_eq!(types["Page"], page(Shape::U32));
    assert_eq!(types["Page#2"], page(Shape::Str));
    let fields = vec![
        field("numbers", named("Page")),
        field("names", named("Page#2")),
        field("more_numbers", named("Page")),
    ];
    assert_eq!(types["Pages"], Definition::Struct(fields));
    // The same types again, alone or together: the same keys, one definition each.
    assert_eq!(tracer.trace::<Page<String>>().unwrap(), named("Page#2"));
    assert_eq!(tracer.trace::<Pages>().unwrap(), shape);
    assert_eq!(tracer.types(), &types);
    assert_eq!(tracer.trace::<Page<bool>>().unwrap(), named("Page#3"));
    assert_eq!(tracer.types().len(), 4);
}

#[derive(Deserialize)]
#[serde(rename = "Renamed")]
#[allow(dead_code)]
struct Original {
    #[serde(rename = "b")]
    a: u8,
    #[serde(skip)]
    skipped: u64,
    choice: Choice,
}
#[derive(Deserialize)]
#[allow(dead_code)]
enum Choice {
    #[serde(rename = "Yes")]
    Ja,
}

#[test]
fn serde_renames_are_the_names() {
    let (shape, types) = trace::<Original>();
    assert_eq!(shape, named("Renamed"));
    let fields = vec![field("b", Shape::U8), field("choice", named("Choice"))];
    assert_eq!(types["Renamed"], Definition::Struct(fields));
    assert_eq!(
        types["Choice"],
        Definition::Enum(vec![variant("Yes", Payload::Unit)])
    );
}

#[derive(Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum Untagged {
    A(u8),
    B(String),
}
#[derive(Deserialize)]
#[serde(tag = "type")]
#[allow(dead_code)]
enum Internal {
    A { x: u8 },
}
#[derive(Deserialize)]
#[allow(dead_code)]
struct Flattened {
    #[serde(flatten)]
    inner: MathError,
}
#[derive(Deserialize)]
#[allow(dead_code)]
struct Endless(Box<Endless>);
#[derive(Deserialize)]
#[allow(dead_code)]
enum NoWayOut {
    Again(Box<NoWayOut>),
}
#[derive(Deserialize)]
#[serde(try_from = "u32")]
#[allow(dead_code)]
struct Even(u32);
impl TryFrom<u32> for Even {
    type Error = &'static str;
    fn try_from(n: u32) -> Result<Self, Self::Error> {
        if n % 2 == 0 {
            Ok(Even(n))
        } else {
            Err("odd number")
        }
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

mod v1 {
    use serde::Deserialize;
    #[derive(Deserialize)]
    pub struct Order {
        pub id: u32,
        pub qty: u16,
    }
    #[derive(Deserialize)]
    pub enum Status {
        Placed,
        Shipped(u32),
    }
    #[derive(Deserialize)]
    pub struct Line {
        pub sku: u32,
    }
    #[derive(Deserialize)]
    pub struct Cart {
        pub line: Line,
        pub lines: Vec<Line>,
    }
    #[derive(Deserialize)]
    pub enum List {
        Cons(i32, Box<List>),
        Nil,
    }
}

#[allow(dead_code)]
mod v2 {
    use serde::Deserialize;
    #[derive(Deserialize)]
    pub struct Order {
        id: i32,
        qty: u16,
    }
    #[derive(Deserialize)]
    #[serde(rename = "Order")]
    pub struct WithNote {
        id: u32,
        qty: u16,
        note: String,
    }
    #[derive(Deserialize)]
    #[serde(rename = "Order")]
    pub struct Reordered {
        qty: u16,
        id: u32,
    }
    #[derive(Deserialize)]
    pub struct Purchase {
        id: u32,
        qty: u16,
    }
    #[derive(Deserialize)]
    pub enum Status {
        Placed,
        Shipped(u64),
    }
    #[derive(Deserialize)]
    #[serde(rename = "Status")]
    pub enum WithLost {
        Placed,
        Shipped(u32),
        Lost,
    }
    #[derive(Deserialize)]
    #[serde(rename = "Status")]
    pub enum Swapped {
        Shipped(u32),
        Placed,
    }
    #[derive(Deserialize)]
    #[serde(rename = "Status")]
    pub enum UnitShipped {
        Placed(u32),
        Shipped,
    }
    #[derive(Deserialize)]
    pub struct Line {
        sku: String,
    }
    #[derive(Deserialize)]
    pub struct Cart {
        line: Line,
        lines: Vec<Line>,
    }
    #[derive(Deserialize)]
    pub enum List {
        Cons(i64, Box<List>),
        Nil,
    }
}

#[test]
fn differences_in_words() {
    assert!(diff::<v1::Order, v1::Order>().is_empty());
    assert!(diff::<List, v1::List>().is_empty());
    assert_eq!(
        diff::<v1::Order, v2::Order>(),
        ["Order.id: client u32, server i32"]
    );
    let empty = Types::new();
    assert_eq!(
        differences(&Shape::U32, &empty, &Shape::I32, &empty),
        ["client u32, server i32"]
    );
    assert_eq!(
        diff::<v1::Order, v2::WithNote>(),
        ["Order: field 'note' only on the server"]
    );
    assert_eq!(
        diff::<v2::WithNote, v1::Order>(),
        ["Order: field 'note' only on the client"]
    );
    let reordered = "Order: fields in another order: client (id, qty), server (qty, id)";
    assert_eq!(diff::<v1::Order, v2::Reordered>(), [reordered]);
    assert_eq!(
        diff::<v1::Status, v2::WithLost>(),
        ["Status: variant 'Lost' only on the server"]
    );
    let swapped =
        "Status: variants in another order: client (Placed, Shipped), server (Shipped, Placed)";
    assert_eq!(diff::<v1::Status, v2::Swapped>(), [swapped]);
    assert_eq!(
        diff::<v1::Status, v2::Status>(),
        ["Status::Shipped.0: client u32, server u64"]
    );
    let kinds = [
        "Status::Placed: client unit, server (u32)",
        "Status::Shipped: client (u32), server unit",
    ];
    assert_eq!(diff::<v1::Status, v2::UnitShipped>(), kinds);
    assert_eq!(
        diff::<v1::Order, v2::Purchase>(),
        ["client Order, server Purchase"]
    );
    assert_eq!(
        diff::<Vec<v1::Order>, Vec<v2::Purchase>>(),
        ["client Vec<Order>, server Vec<Purchase>"]
    );
    // Two levels down, through field names; a pair of containers is compared once.
    assert_eq!(
        diff::<v1::Cart, v2::Cart>(),
        ["Cart.line.sku: client u32, server string"]
    );
    assert_eq!(
        diff::<Option<v1::Line>, Option<v2::Line>>(),
        ["Line.sku: client u32, server string"]
    );
    assert_eq!(
        diff::<(u8, u16), (u8, u32)>(),
        ["client (u8, u16), server (u8, u32)"]
    );
    assert_eq!(
        diff::<v1::List, v2::List>(),
        ["List::Cons.0: client i32, server i64"]
    );
}

#[test]
fn unknown_is_never_equal() {
    let types = Types::from([(
        "Order".into(),
        Definition::Struct(vec![field("id", Shape::Unknown)]),
    )]);
    let server = Types::from([(
        "Order".into(),
        Definition::Struct(vec![field("id", Shape::U32)]),
    )]);
    let order = named("Order");
    assert_eq!(
        differences(&order, &types, &order, &server),
        ["Order.id: client (unknown), server u32"]
    );
    assert_eq!(
        differences(&order, &types, &order, &types),
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
    let mut all = vec![
        trace::<v1::Order>(),
        trace::<v2::Order>(),
        trace::<v2::WithNote>(),
        trace::<v2::Reordered>(),
        trace::<v2::Purchase>(),
        trace::<v1::Status>(),
        trace::<v2::Status>(),
        trace::<v2::WithLost>(),
        trace::<v2::Swapped>(),
        trace::<v2::UnitShipped>(),
        trace::<v1::Cart>(),
        trace::<v2::Cart>(),
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
        trace::<(v1::Order, v1::Order)>(),
        trace::<(v1::Order, v2::Purchase)>(),
        trace::<Vec<u8>>(),
        trace::<serde_bytes::ByteBuf>(),
        trace::<u32>(),
    ];
    // The same struct under a suffixed key, and two copies of one type with their own keys.
    let order = trace::<v1::Order>().1["Order"].clone();
    all.push((
        named("Order#2"),
        Types::from([("Order#2".into(), order.clone())]),
    ));
    let copies = Types::from([("Order".into(), order.clone()), ("Order#3".into(), order)]);
    all.push((Shape::Tuple(vec![named("Order"), named("Order#3")]), copies));
    // A list whose tail is a structurally equal copy of the list type.
    let list = |tail: &str| {
        Definition::Enum(vec![
            variant("Cons", Payload::Tuple(vec![Shape::I32, named(tail)])),
            variant("Nil", Payload::Unit),
        ])
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
    // v1::Order with its copies; v1::List, List and the two-key list.
    assert!(equal_pairs >= 8, "{equal_pairs}");
}

#[test]
fn canonical_details() {
    let (pages, types) = trace::<Pages>();
    let (order, order_types) = trace::<v1::Order>();
    // Written once, then referred back to.
    let twice = Shape::Tuple(vec![order.clone(), order.clone()]);
    let (once, both) = (bytes(&order, &order_types), bytes(&twice, &order_types));
    assert!(both.len() < 2 * once.len() && both.len() > once.len());
    // Names are part of the bytes.
    assert_ne!(
        bytes(&order, &order_types),
        bytes(&shape_of::<v2::Purchase>(), &trace::<v2::Purchase>().1)
    );
    // Shapes in a digest are ordered and share references.
    assert_ne!(
        digest(&[&pages, &order], &types),
        digest(&[&order, &pages], &types)
    );
    assert_eq!(
        digest(&[&order, &order], &order_types),
        digest(&[&order, &order], &order_types)
    );
    assert_ne!(
        digest(&[&order], &order_types),
        digest(&[&order, &order], &order_types)
    );
    let mut out = Vec::new();
    canonical_bytes(&pages, &types, &mut out);
    assert_eq!(out, bytes(&pages, &types));
}
