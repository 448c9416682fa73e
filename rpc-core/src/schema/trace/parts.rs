//! The elements of a compound value being checked: serde's `SerializeSeq`, `SerializeTuple`,
//! `SerializeMap`, `SerializeStruct`, ... impls, each element checked against its traced
//! shape, struct fields by name and position, and their count at the end.

use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant};
use serde::ser::{SerializeTuple, SerializeTupleStruct, SerializeTupleVariant};

use super::check::{Mismatch, Res, nest};
use super::context::{Cx, PartKey, Step, UNKNOWN};
use crate::schema::shape::{Field, Shape};

/// The elements a compound value should have.
#[derive(Clone, Copy)]
pub(super) enum Items<'t> {
    /// Anything goes.
    Any,
    /// Any number of elements of this shape.
    Seq(&'t Shape),
    /// These elements, in order.
    Tuple(&'t [Shape]),
    /// Keys and values of these shapes.
    Map(&'t Shape, &'t Shape),
    /// A struct's fields; the part's key when their names are still to be learned.
    Fields(&'t [Field], Option<PartKey<'t>>),
}

/// The elements of a compound value, checked one by one.
pub(super) struct Parts<'c, 't> {
    cx: &'c mut Cx<'t>,
    items: Items<'t>,
    /// How many elements were serialized.
    next: usize,
    /// The path's length at the compound value itself.
    base: usize,
    /// The path's length outside it (without the container's name or variant).
    mark: usize,
}

impl<'c, 't> Parts<'c, 't> {
    /// The elements of the value at the current path, `mark` the path's length outside it.
    pub(super) fn new(cx: &'c mut Cx<'t>, items: Items<'t>, mark: usize) -> Self {
        Parts {
            base: cx.path.len(),
            cx,
            items,
            next: 0,
            mark,
        }
    }

    /// Serializes one element, `step` below the compound value.
    fn nest<V: Serialize + ?Sized>(&mut self, step: Step, shape: &'t Shape, value: &V) -> Res {
        self.cx.path.truncate(self.base);
        nest(self.cx, Some(step), shape, value)
    }

    /// The next element of a sequence or tuple.
    fn element<V: Serialize + ?Sized>(&mut self, value: &V) -> Res {
        let (step, shape) = match self.items {
            Items::Seq(element) => (Step::Element, element),
            Items::Tuple(items) => match items.get(self.next) {
                Some(shape) => (Step::Index(self.next), shape),
                None => {
                    let len = items.len();
                    let what = format!("serializes more than the {len} elements it deserializes");
                    return Err(self.cx.fail(what));
                }
            },
            _ => (Step::Index(self.next), &UNKNOWN),
        };
        self.next += 1;
        self.nest(step, shape, value)
    }

    /// A map's key (`key`) or value.
    fn entry<V: Serialize + ?Sized>(&mut self, key: bool, value: &V) -> Res {
        let (step, shape) = match (self.items, key) {
            (Items::Map(shape, _), true) => (Step::Key, shape),
            (Items::Map(_, shape), false) => (Step::Value, shape),
            (_, true) => (Step::Key, &UNKNOWN),
            (_, false) => (Step::Value, &UNKNOWN),
        };
        self.nest(step, shape, value)
    }

    /// The next field of a struct or struct variant, serialized as `name`.
    fn field<V: Serialize + ?Sized>(&mut self, name: &'static str, value: &V) -> Res {
        let Items::Fields(fields, learn) = self.items else {
            return self.nest(Step::Field(name), &UNKNOWN, value);
        };
        let Some(field) = fields.get(self.next) else {
            let read = self.names(fields, learn);
            return Err(self.cx.fail(format_args!(
                "serializes field `{name}` after the last field it deserializes ({read})"
            )));
        };
        let learned = learn.and_then(|part| self.cx.learned.get_mut(&part));
        let traced = match learned {
            Some(names) if names.len() == self.next => {
                names.push(name);
                name
            }
            Some(names) => names[self.next],
            None => &field.name,
        };
        if traced != name {
            return Err(self.cx.fail(format_args!(
                "serializes field `{name}` where it deserializes field `{traced}`"
            )));
        }
        self.next += 1;
        self.nest(Step::Field(name), &field.shape, value)
    }

    /// A field `skip_serializing_if` left out: postcard writes nothing for it, so the
    /// deserializer must not expect it there.
    fn skip(&mut self, name: &'static str) -> Res {
        match self.items {
            Items::Fields(fields, None)
                if fields.get(self.next).is_some_and(|f| f.name == name) =>
            {
                Err(self.cx.fail(format_args!(
                    "may leave out field `{name}` when serializing (`skip_serializing_if`), but \
                     deserializing always reads it"
                )))
            }
            _ => Ok(()),
        }
    }

    /// The fields deserialized, in words.
    fn names(&self, fields: &[Field], learn: Option<PartKey<'t>>) -> String {
        match learn.and_then(|part| self.cx.learned.get(&part)) {
            Some(_) => format!("{} of them", fields.len()),
            None if fields.is_empty() => "none".into(),
            None => {
                let names: Vec<_> = fields.iter().map(|f| format!("`{}`", f.name)).collect();
                names.join(", ")
            }
        }
    }

    /// Checks that every element traced was serialized.
    fn finish(self) -> Res {
        let (count, traced) = match self.items {
            Items::Tuple(items) => (items.len(), None),
            Items::Fields(fields, learn) => (fields.len(), Some((fields, learn))),
            _ => (0, None),
        };
        if self.next < count {
            let kind = if traced.is_some() {
                "fields"
            } else {
                "elements"
            };
            let missing = match traced {
                Some((fields, None)) => {
                    format!(": it never serializes `{}`", fields[self.next].name)
                }
                _ => String::new(),
            };
            return Err(self.cx.fail(format_args!(
                "serializes {} {kind} but deserializes {count}{missing}",
                self.next
            )));
        }
        self.cx.path.truncate(self.mark);
        Ok(())
    }
}

/// Implements serde's compound traits for [`Parts`], each method by one of its own.
macro_rules! compounds {
    ($($trait:ident { $($method:ident => $how:ident($($pass:expr),*);)* })*) => {$(
        impl $trait for Parts<'_, '_> {
            type Ok = ();
            type Error = Mismatch;

            $(fn $method<V: Serialize + ?Sized>(&mut self, value: &V) -> Res {
                self.$how($($pass,)* value)
            })*

            fn end(self) -> Res {
                self.finish()
            }
        }
    )*};
}

compounds! {
    SerializeSeq { serialize_element => element(); }
    SerializeTuple { serialize_element => element(); }
    SerializeTupleStruct { serialize_field => element(); }
    SerializeTupleVariant { serialize_field => element(); }
    SerializeMap {
        serialize_key => entry(true);
        serialize_value => entry(false);
    }
}

impl SerializeStruct for Parts<'_, '_> {
    type Ok = ();
    type Error = Mismatch;

    fn serialize_field<V: Serialize + ?Sized>(&mut self, name: &'static str, value: &V) -> Res {
        self.field(name, value)
    }

    fn skip_field(&mut self, name: &'static str) -> Res {
        self.skip(name)
    }

    fn end(self) -> Res {
        self.finish()
    }
}

impl SerializeStructVariant for Parts<'_, '_> {
    type Ok = ();
    type Error = Mismatch;

    fn serialize_field<V: Serialize + ?Sized>(&mut self, name: &'static str, value: &V) -> Res {
        self.field(name, value)
    }

    fn skip_field(&mut self, name: &'static str) -> Res {
        self.skip(name)
    }

    fn end(self) -> Res {
        self.finish()
    }
}
