//! Tests of the canonical encoding: equal bytes and digests exactly when two shapes have no
//! differences, references written once, and digests of several shapes.

use super::compare::{hand_written, v1, v2};
use super::trace::{Expr, List, MathError, Node, Pages, Stmt, Top, Tree};
use super::{enumeration, named, trace};
use crate::schema::canonical::{canonical_bytes, digest};
use crate::schema::compare::differences;
use crate::schema::shape::{Payload, Shape, Types};

fn bytes(shape: &Shape, types: &Types) -> Vec<u8> {
    let mut out = Vec::new();
    canonical_bytes(shape, types, &mut out);
    out
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
