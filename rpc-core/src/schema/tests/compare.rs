//! Tests of the comparison: differences between two versions of some types and between
//! hand-written shapes, each with its path.

use serde::{Deserialize, Serialize};

use super::trace::List;
use super::{enumeration, named, strukt, trace};
use crate::schema::compare::differences;
use crate::schema::shape::{Payload, Shape, Types};

fn diff<A, B>() -> Vec<String>
where
    A: Serialize + Deserialize<'static>,
    B: Serialize + Deserialize<'static>,
{
    let ((a, at), (b, bt)) = (trace::<A>(), trace::<B>());
    differences(&a, &at, &b, &bt)
}

/// Two versions of some types, traced.
pub(super) mod v1 {
    use serde::{Deserialize, Serialize};
    #[derive(Serialize, Deserialize)]
    pub struct Line {
        sku: u32,
    }
    #[derive(Serialize, Deserialize)]
    pub struct Order {
        line: Line,
        lines: Vec<Line>,
    }
    #[derive(Serialize, Deserialize)]
    pub enum List {
        Cons(i32, Box<List>),
        Nil,
    }
}

pub(super) mod v2 {
    use serde::{Deserialize, Serialize};
    #[derive(Serialize, Deserialize)]
    pub struct Line {
        sku: String,
    }
    #[derive(Serialize, Deserialize)]
    pub struct Order {
        line: Line,
        lines: Vec<Line>,
    }
    #[derive(Serialize, Deserialize)]
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

pub(super) fn hand_written() -> Vec<(Shape, Types)> {
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
