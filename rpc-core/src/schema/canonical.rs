//! A canonical, injective byte encoding of shapes, and its SHA-256 digest: two shapes get the
//! same bytes exactly when [`differences`](super::compare::differences) finds nothing between
//! them (for shapes without [`Shape::Unknown`], which is never the same as anything but
//! encodes like itself).
//!
//! A container is written out in full where it is first used (its serde name, then its
//! definition) and as a back-reference (the number of its first use) after that. Containers
//! that look the same all the way down count as one: they are merged first, as states of a
//! minimal automaton are, so the bytes depend neither on the `#N` suffixes of keys nor on how
//! many copies of a type the table has.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::shape::{Definition, Field, Payload, Shape, Types, base_name};

/// An injective byte encoding of `shape` with every container it reaches (definitions inlined
/// at first use, later uses as back-references by first-use number; names included),
/// independent of the `#N` suffixes of keys.
pub fn canonical_bytes(shape: &Shape, types: &Types, out: &mut Vec<u8>) {
    Encoder::new(&[shape], types).shape(shape, out);
}

/// SHA-256 of `canonical_bytes`: of the number of shapes, then each shape in order, with
/// back-references shared between them.
pub fn digest(shapes: &[&Shape], types: &Types) -> [u8; 32] {
    let mut encoder = Encoder::new(shapes, types);
    let mut out = Vec::new();
    varint(shapes.len(), &mut out);
    for shape in shapes {
        encoder.shape(shape, &mut out);
    }
    Sha256::digest(&out).into()
}

// Shapes.
const UNIT: u8 = 0;
const PRIMITIVES: [(Shape, u8); 16] = [
    (Shape::Bool, 1),
    (Shape::I8, 2),
    (Shape::I16, 3),
    (Shape::I32, 4),
    (Shape::I64, 5),
    (Shape::I128, 6),
    (Shape::U8, 7),
    (Shape::U16, 8),
    (Shape::U32, 9),
    (Shape::U64, 10),
    (Shape::U128, 11),
    (Shape::F32, 12),
    (Shape::F64, 13),
    (Shape::Char, 14),
    (Shape::Str, 15),
    (Shape::Bytes, 16),
];
const OPTION: u8 = 17;
const SEQ: u8 = 18;
const MAP: u8 = 19;
const TUPLE: u8 = 20;
/// A container's first use: its name and definition follow.
const DEFINED: u8 = 21;
/// A later use: the number of the first follows.
const BACK_REFERENCE: u8 = 22;
const UNKNOWN: u8 = 23;
/// While classes are computed: a container's class number follows.
const CLASS: u8 = 24;

// Definitions and payloads.
const UNIT_STRUCT: u8 = 0;
const NEWTYPE: u8 = 1;
const TUPLE_STRUCT: u8 = 2;
const STRUCT: u8 = 3;
const ENUM: u8 = 4;
const UNDEFINED: u8 = 5;

fn varint(mut n: usize, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8 & 0x7f) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn string(s: &str, out: &mut Vec<u8>) {
    varint(s.len(), out);
    out.extend_from_slice(s.as_bytes());
}

/// How a reference to a container is written.
trait Reference {
    fn reference(&mut self, key: &str, out: &mut Vec<u8>);
}

fn write_shape(shape: &Shape, out: &mut Vec<u8>, refs: &mut impl Reference) {
    match shape {
        Shape::Unit => out.push(UNIT),
        Shape::Option(inner) => {
            out.push(OPTION);
            write_shape(inner, out, refs);
        }
        Shape::Seq(inner) => {
            out.push(SEQ);
            write_shape(inner, out, refs);
        }
        Shape::Map { key, value } => {
            out.push(MAP);
            write_shape(key, out, refs);
            write_shape(value, out, refs);
        }
        Shape::Tuple(items) => {
            out.push(TUPLE);
            write_shapes(items, out, refs);
        }
        Shape::Named(key) => refs.reference(key, out),
        Shape::Unknown => out.push(UNKNOWN),
        primitive => {
            let tag = PRIMITIVES
                .iter()
                .find(|(p, _)| p == primitive)
                .map(|&(_, tag)| tag);
            out.push(tag.expect("every other shape is a primitive"));
        }
    }
}

fn write_shapes(shapes: &[Shape], out: &mut Vec<u8>, refs: &mut impl Reference) {
    varint(shapes.len(), out);
    for shape in shapes {
        write_shape(shape, out, refs);
    }
}

fn write_fields(fields: &[Field], out: &mut Vec<u8>, refs: &mut impl Reference) {
    varint(fields.len(), out);
    for field in fields {
        string(&field.name, out);
        write_shape(&field.shape, out, refs);
    }
}

fn write_definition(definition: Option<&Definition>, out: &mut Vec<u8>, refs: &mut impl Reference) {
    match definition {
        None => out.push(UNDEFINED),
        Some(Definition::UnitStruct) => out.push(UNIT_STRUCT),
        Some(Definition::NewtypeStruct(shape)) => {
            out.push(NEWTYPE);
            write_shape(shape, out, refs);
        }
        Some(Definition::TupleStruct(shapes)) => {
            out.push(TUPLE_STRUCT);
            write_shapes(shapes, out, refs);
        }
        Some(Definition::Struct(fields)) => {
            out.push(STRUCT);
            write_fields(fields, out, refs);
        }
        Some(Definition::Enum(variants)) => {
            out.push(ENUM);
            varint(variants.len(), out);
            for variant in variants {
                string(&variant.name, out);
                match &variant.payload {
                    Payload::Unit => out.push(UNIT_STRUCT),
                    Payload::Newtype(shape) => {
                        out.push(NEWTYPE);
                        write_shape(shape, out, refs);
                    }
                    Payload::Tuple(shapes) => {
                        out.push(TUPLE_STRUCT);
                        write_shapes(shapes, out, refs);
                    }
                    Payload::Struct(fields) => {
                        out.push(STRUCT);
                        write_fields(fields, out, refs);
                    }
                }
            }
        }
    }
}

/// Writes references as class numbers, while classes are computed.
struct Classes<'k> {
    class: &'k HashMap<&'k str, usize>,
}

impl Reference for Classes<'_> {
    fn reference(&mut self, key: &str, out: &mut Vec<u8>) {
        out.push(CLASS);
        varint(self.class[key], out);
    }
}

/// Writes shapes with containers inlined at first use.
struct Encoder<'a> {
    types: &'a Types,
    /// Per reachable key, its class: keys of one class look the same all the way down.
    class: HashMap<&'a str, usize>,
    /// Per class written so far, the number of its first use.
    numbers: HashMap<usize, usize>,
}

impl<'a> Encoder<'a> {
    fn new(roots: &[&'a Shape], types: &'a Types) -> Self {
        // Every container reachable from the roots.
        let mut keys: Vec<&'a str> = Vec::new();
        let mut class: HashMap<&'a str, usize> = HashMap::new();
        let mut pending: Vec<&'a Shape> = roots.to_vec();
        while let Some(shape) = pending.pop() {
            match shape {
                Shape::Option(inner) | Shape::Seq(inner) => pending.push(inner),
                Shape::Map { key, value } => pending.extend([&**key, &**value]),
                Shape::Tuple(items) => pending.extend(items),
                Shape::Named(key) if !class.contains_key(key.as_str()) => {
                    class.insert(key, 0);
                    keys.push(key);
                    match types.get(key) {
                        Some(Definition::NewtypeStruct(shape)) => pending.push(shape),
                        Some(Definition::TupleStruct(shapes)) => pending.extend(shapes),
                        Some(Definition::Struct(fields)) => {
                            pending.extend(fields.iter().map(|f| &f.shape))
                        }
                        Some(Definition::Enum(variants)) => {
                            for variant in variants {
                                match &variant.payload {
                                    Payload::Unit => {}
                                    Payload::Newtype(shape) => pending.push(shape),
                                    Payload::Tuple(shapes) => pending.extend(shapes),
                                    Payload::Struct(fields) => {
                                        pending.extend(fields.iter().map(|f| &f.shape))
                                    }
                                }
                            }
                        }
                        Some(Definition::UnitStruct) | None => {}
                    }
                }
                _ => {}
            }
        }
        // Split classes until they are stable (Moore's algorithm): each key's signature is its
        // class, its name and its definition with references written as classes.
        let mut count = usize::from(!keys.is_empty());
        loop {
            let mut signatures: HashMap<Vec<u8>, usize> = HashMap::new();
            let mut next = HashMap::new();
            for &key in &keys {
                let mut signature = Vec::new();
                varint(class[key], &mut signature);
                string(base_name(key), &mut signature);
                write_definition(
                    types.get(key),
                    &mut signature,
                    &mut Classes { class: &class },
                );
                let fresh = signatures.len();
                next.insert(key, *signatures.entry(signature).or_insert(fresh));
            }
            let stable = signatures.len() == count;
            count = signatures.len();
            class = next;
            if stable {
                break;
            }
        }
        Encoder {
            types,
            class,
            numbers: HashMap::new(),
        }
    }

    fn shape(&mut self, shape: &Shape, out: &mut Vec<u8>) {
        write_shape(shape, out, self);
    }
}

impl Reference for Encoder<'_> {
    fn reference(&mut self, key: &str, out: &mut Vec<u8>) {
        let class = self.class[key];
        if let Some(&number) = self.numbers.get(&class) {
            out.push(BACK_REFERENCE);
            varint(number, out);
            return;
        }
        self.numbers.insert(class, self.numbers.len());
        out.push(DEFINED);
        string(base_name(key), out);
        let types = self.types;
        write_definition(types.get(key), out, self);
    }
}
