//! The recording deserializer: serde's `Deserializer` for one value, `SeqAccess`/`MapAccess`
//! for the elements of sequences, tuples, structs and maps, and `EnumAccess`/`VariantAccess`
//! for the chosen part of a container.

use serde::de::value::U32Deserializer;
use serde::de::{DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess};
use serde::de::{VariantAccess, Visitor};

use super::state::{Id, Kind, Recorded, State};
use super::{Error, Names, Out, Res};
use crate::schema::shape::{Definition, Field, Shape};

/// The deserializer for one value: records its shape into `slot` (unless `quiet`).
pub(super) struct Tracer<'a> {
    st: &'a mut State,
    slot: &'a mut Shape,
    quiet: bool,
}

pub(super) fn tracer<'a>(st: &'a mut State, slot: &'a mut Shape, quiet: bool) -> Tracer<'a> {
    Tracer { st, slot, quiet }
}

macro_rules! primitives {
    ($($method:ident => $shape:ident, $visit:ident($($value:expr)?);)*) => {$(
        fn $method<V: Visitor<'static>>(self, visitor: V) -> Out<V> {
            *self.slot = Shape::$shape;
            visitor.$visit($($value)?)
        }
    )*};
}

macro_rules! self_describing {
    ($($method:ident),*) => {$(
        fn $method<V: Visitor<'static>>(self, _visitor: V) -> Out<V> {
            Err(Error(format!(
                "a part of it{} needs self-describing input (`{}`: an untagged or internally \
                 tagged enum, or `#[serde(flatten)]`), which postcard cannot carry either",
                self.st.inside(),
                stringify!($method),
            )))
        }
    )*};
}

impl Tracer<'_> {
    /// A value of a struct or an enum named `name`: `visit` deserializes the chosen part and
    /// records its definition.
    fn container<V: Visitor<'static>>(
        self,
        (name, kind): (&'static str, Kind),
        visitor: V,
        visit: impl FnOnce(V, Choice<'_>) -> Out<V>,
    ) -> Out<V> {
        if kind == Kind::Enum(&[]) {
            return Err(Error(format!("enum `{name}` has no variants")));
        }
        let value = typeid::of::<V::Value>();
        let (id, st) = (Id { value, name, kind }, self.st);
        st.enter(id);
        let open = if self.quiet {
            None
        } else {
            st.open(id, self.slot)
        };
        let index = match (kind, open) {
            (Kind::Enum(_), Some(_)) => st.choose_loud(id),
            (Kind::Enum(_), None) => st.choose_quiet(id)?,
            _ => 0,
        };
        let part = &mut st.containers.get_mut(&id).expect("entered").parts[index];
        if !std::mem::replace(&mut part.attempted, true) {
            st.learned += 1;
        }
        st.variants.push((id, index));
        let (quiet, mut def) = (open.is_none(), None);
        let (result, children) = st.framed(|st| {
            visit(
                visitor,
                Choice {
                    st,
                    index,
                    def: &mut def,
                    quiet,
                },
            )
        });
        st.variants.pop();
        st.close(
            (id, index),
            open,
            result.is_ok().then_some(def).flatten(),
            children,
        );
        result
    }
}

/// Offers the visitor up to `slots.len()` elements; `slots` is cut to the ones it read.
fn visit_seq<V: Visitor<'static>>(
    v: V,
    st: &mut State,
    slots: &mut Vec<Shape>,
    quiet: bool,
) -> Out<V> {
    let mut read = 0;
    let result = v.visit_seq(elements(st, slots, &mut read, quiet));
    slots.truncate(read);
    result
}

fn elements<'a>(
    st: &'a mut State,
    slots: &'a mut [Shape],
    read: &'a mut usize,
    quiet: bool,
) -> Elements<'a> {
    Elements {
        st,
        slots,
        read,
        quiet,
    }
}

/// A struct of the fields read, named after `fields`: by position when the visitor read one
/// per name, else (aliases are among the names) placeholders, learned when serializing.
fn named(fields: Names, shapes: Vec<Shape>) -> Recorded {
    let unnamed = fields.len() != shapes.len();
    let name = |i: usize| match unnamed {
        true => format!("#{i}"),
        false => fields[i].to_owned(),
    };
    let fields = shapes.into_iter().enumerate();
    let fields = fields.map(|(i, shape)| Field {
        name: name(i),
        shape,
    });
    Recorded {
        def: Definition::Struct(fields.collect()),
        unnamed,
    }
}

/// A definition whose names (if any) are the ones it was deserialized with.
fn recorded(def: Definition) -> Recorded {
    Recorded {
        def,
        unnamed: false,
    }
}

impl Deserializer<'static> for Tracer<'_> {
    type Error = Error;

    primitives! {
        deserialize_bool => Bool, visit_bool(false);
        deserialize_i8 => I8, visit_i8(1);
        deserialize_i16 => I16, visit_i16(1);
        deserialize_i32 => I32, visit_i32(1);
        deserialize_i64 => I64, visit_i64(1);
        deserialize_i128 => I128, visit_i128(1);
        deserialize_u8 => U8, visit_u8(1);
        deserialize_u16 => U16, visit_u16(1);
        deserialize_u32 => U32, visit_u32(1);
        deserialize_u64 => U64, visit_u64(1);
        deserialize_u128 => U128, visit_u128(1);
        deserialize_f32 => F32, visit_f32(1.0);
        deserialize_f64 => F64, visit_f64(1.0);
        deserialize_char => Char, visit_char('a');
        deserialize_str => Str, visit_borrowed_str("");
        deserialize_string => Str, visit_borrowed_str("");
        deserialize_bytes => Bytes, visit_borrowed_bytes(b"");
        deserialize_byte_buf => Bytes, visit_borrowed_bytes(b"");
        deserialize_unit => Unit, visit_unit();
    }

    self_describing!(
        deserialize_any,
        deserialize_identifier,
        deserialize_ignored_any
    );

    fn deserialize_option<V: Visitor<'static>>(self, visitor: V) -> Out<V> {
        if self.quiet {
            return visitor.visit_none();
        }
        let mut inner = Shape::Unknown;
        let slot = &mut inner;
        let (result, _) = self
            .st
            .framed(|st| visitor.visit_some(tracer(st, slot, false)));
        *self.slot = Shape::Option(Box::new(inner));
        result
    }

    fn deserialize_seq<V: Visitor<'static>>(self, visitor: V) -> Out<V> {
        let (mut slots, quiet) = (vec![Shape::Unknown; usize::from(!self.quiet)], self.quiet);
        let (result, _) = self
            .st
            .framed(|st| visit_seq(visitor, st, &mut slots, quiet));
        *self.slot = Shape::Seq(Box::new(slots.pop().unwrap_or(Shape::Unknown)));
        result
    }

    fn deserialize_tuple<V: Visitor<'static>>(self, len: usize, visitor: V) -> Out<V> {
        let (mut slots, quiet) = (vec![Shape::Unknown; len], self.quiet);
        let result = self
            .st
            .nested(|st| visit_seq(visitor, st, &mut slots, quiet));
        *self.slot = Shape::Tuple(slots);
        result
    }

    fn deserialize_map<V: Visitor<'static>>(self, visitor: V) -> Out<V> {
        let (mut slots, quiet) = (
            vec![Shape::Unknown; if self.quiet { 0 } else { 2 }],
            self.quiet,
        );
        let mut read = 0;
        let (result, _) = self
            .st
            .framed(|st| visitor.visit_map(elements(st, &mut slots, &mut read, quiet)));
        let mut slots = slots.into_iter().map(Box::new);
        let mut next = || slots.next().unwrap_or_else(|| Box::new(Shape::Unknown));
        *self.slot = Shape::Map {
            key: next(),
            value: next(),
        };
        result
    }

    fn deserialize_unit_struct<V: Visitor<'static>>(self, name: &'static str, v: V) -> Out<V> {
        self.container((name, Kind::Unit), v, |v, choice| {
            *choice.def = Some(recorded(Definition::UnitStruct));
            v.visit_unit()
        })
    }

    fn deserialize_newtype_struct<V: Visitor<'static>>(self, name: &'static str, v: V) -> Out<V> {
        self.container((name, Kind::Newtype), v, |v, choice| {
            choice.newtype(|t| v.visit_newtype_struct(t))
        })
    }

    fn deserialize_tuple_struct<V>(self, name: &'static str, len: usize, v: V) -> Out<V>
    where
        V: Visitor<'static>,
    {
        self.container((name, Kind::Tuple(len)), v, |v, choice| {
            choice.seq(len, v, |shapes| recorded(Definition::TupleStruct(shapes)))
        })
    }

    fn deserialize_struct<V: Visitor<'static>>(
        self,
        name: &'static str,
        fields: Names,
        v: V,
    ) -> Out<V> {
        self.container((name, Kind::Struct(fields)), v, |v, choice| {
            choice.seq(fields.len(), v, |shapes| named(fields, shapes))
        })
    }

    fn deserialize_enum<V: Visitor<'static>>(
        self,
        name: &'static str,
        variants: Names,
        v: V,
    ) -> Out<V> {
        self.container((name, Kind::Enum(variants)), v, |v, choice| {
            v.visit_enum(choice)
        })
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The elements of a sequence, tuple or struct, or a map's key and value: one per slot.
struct Elements<'a> {
    st: &'a mut State,
    slots: &'a mut [Shape],
    /// How many elements were read.
    read: &'a mut usize,
    quiet: bool,
}

impl SeqAccess<'static> for Elements<'_> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'static>>(&mut self, seed: S) -> Res<Option<S::Value>> {
        let Some(slot) = self.slots.get_mut(*self.read) else {
            return Ok(None);
        };
        *self.read += 1;
        seed.deserialize(tracer(self.st, slot, self.quiet))
            .map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.slots.len() - *self.read)
    }
}

/// A map's entry: its key and value are the two slots of `Elements` (none when quiet).
impl MapAccess<'static> for Elements<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'static>>(&mut self, seed: K) -> Res<Option<K::Value>> {
        self.next_element_seed(seed)
    }

    fn next_value_seed<V: DeserializeSeed<'static>>(&mut self, seed: V) -> Res<V::Value> {
        let value = self.next_element_seed(seed)?;
        value.ok_or_else(|| Error("a map's value without a key".into()))
    }
}

/// The chosen part of a container (a struct's only one, or a variant), and its definition
/// once deserialized.
struct Choice<'a> {
    st: &'a mut State,
    index: usize,
    def: &'a mut Option<Recorded>,
    quiet: bool,
}

impl Choice<'_> {
    fn newtype<R>(self, f: impl FnOnce(Tracer<'_>) -> Res<R>) -> Res<R> {
        let mut shape = Shape::Unknown;
        let value = f(tracer(self.st, &mut shape, self.quiet))?;
        *self.def = Some(recorded(Definition::NewtypeStruct(shape)));
        Ok(value)
    }

    fn seq<V: Visitor<'static>>(
        self,
        len: usize,
        v: V,
        build: impl FnOnce(Vec<Shape>) -> Recorded,
    ) -> Out<V> {
        let mut slots = vec![Shape::Unknown; len];
        let value = visit_seq(v, self.st, &mut slots, self.quiet)?;
        *self.def = Some(build(slots));
        Ok(value)
    }
}

impl EnumAccess<'static> for Choice<'_> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<S: DeserializeSeed<'static>>(self, seed: S) -> Res<(S::Value, Self)> {
        let index = u32::try_from(self.index).map_err(|_| Error("too many variants".into()))?;
        let value = seed.deserialize(U32Deserializer::<Error>::new(index))?;
        Ok((value, self))
    }
}

impl VariantAccess<'static> for Choice<'_> {
    type Error = Error;

    fn unit_variant(self) -> Res<()> {
        *self.def = Some(recorded(Definition::UnitStruct));
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'static>>(self, seed: S) -> Res<S::Value> {
        self.newtype(|tracer| seed.deserialize(tracer))
    }

    fn tuple_variant<V: Visitor<'static>>(self, len: usize, v: V) -> Out<V> {
        self.seq(len, v, |shapes| recorded(Definition::TupleStruct(shapes)))
    }

    fn struct_variant<V: Visitor<'static>>(self, fields: Names, v: V) -> Out<V> {
        self.seq(fields.len(), v, |shapes| named(fields, shapes))
    }
}
