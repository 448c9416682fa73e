//! The serialize check: each value `T::deserialize` built while tracing is serialized again,
//! and how it serializes must walk the shape traced from `Deserialize`. Where it does not, a
//! peer that serializes `T` writes bytes that a peer deserializing `T` misreads: postcard
//! carries no field names, no field counts and no variant names, only what the shape says.
//!
//! [`Check`] is the `Serializer` of one value against the shape expected there; `parts.rs`
//! serializes the elements of sequences, tuples, maps, structs and variants against theirs.
//! Parts whose field names the tracer could not tell (a struct whose `Deserialize` lists
//! aliases among its field names) learn them there, from the names `serialize_field` gives.

use std::fmt;

use serde::ser::{self, Serialize, Serializer};

use super::context::{Cx, PartKey, Step, UNKNOWN};
use super::parts::{Items, Parts};
use crate::schema::shape::{Definition, Field, Payload, Shape, base_name};

/// Why a value does not serialize as it deserializes, in words.
#[derive(Debug)]
pub(super) struct Mismatch(pub(super) String);

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Mismatch {}

impl ser::Error for Mismatch {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Mismatch(format!(
            "its `Serialize` impl fails on a value its `Deserialize` impl built: {msg}"
        ))
    }
}

pub(super) type Res = Result<(), Mismatch>;

/// What kind of container a definition is, in words.
pub(super) fn kind(def: &Definition) -> &'static str {
    match def {
        Definition::UnitStruct => "unit struct",
        Definition::NewtypeStruct(_) => "newtype struct",
        Definition::TupleStruct(_) => "tuple struct",
        Definition::Struct(_) => "struct",
        Definition::Enum(_) => "enum",
    }
}

/// Serializes `value`, which should be shaped `shape`, one `step` below the current path.
/// Like `compare`'s, paths start at the outermost container: outside it, steps are left out.
pub(super) fn nest<'t, V: Serialize + ?Sized>(
    cx: &mut Cx<'t>,
    step: Option<Step>,
    shape: &'t Shape,
    value: &V,
) -> Res {
    let len = cx.path.len();
    cx.path.extend(step.filter(|_| len > 0));
    value.serialize(Check {
        cx: &mut *cx,
        shape,
    })?;
    cx.path.truncate(len);
    Ok(())
}

/// The serializer of one value, which should be shaped `shape`.
pub(super) struct Check<'c, 't> {
    cx: &'c mut Cx<'t>,
    shape: &'t Shape,
}

/// A container's key and definition; `None` when anything goes.
type Expected<'t, D> = Result<Option<(&'t str, &'t D)>, Mismatch>;

impl<'c, 't> Check<'c, 't> {
    /// The serializer of a value at `cx`'s path, which should be shaped `shape`.
    pub(super) fn new(cx: &'c mut Cx<'t>, shape: &'t Shape) -> Self {
        Check { cx, shape }
    }

    /// A primitive serialized as `found`.
    fn primitive(self, found: Shape) -> Res {
        match self.shape {
            Shape::Unknown => Ok(()),
            shape if *shape == found => Ok(()),
            shape => Err(self.cx.differ(found.describe(), shape)),
        }
    }

    /// The compound shape `pick` finds in the expected one; anything goes when that is
    /// unknown, else the mismatch with the value described as `found`.
    fn compound(
        self,
        found: &dyn Fn() -> String,
        pick: fn(&'t Shape) -> Option<Items<'t>>,
    ) -> Result<Parts<'c, 't>, Mismatch> {
        let mark = self.cx.path.len();
        let items = match self.shape {
            Shape::Unknown => Items::Any,
            shape => pick(shape).ok_or_else(|| self.cx.differ(found(), shape))?,
        };
        Ok(Parts::new(self.cx, items, mark))
    }

    /// The definition expected, which should be a container named `name` (else the mismatch,
    /// with the value described as `found`). At the top, the path starts at its name.
    fn named(
        &mut self,
        name: &'static str,
        found: &dyn Fn() -> String,
    ) -> Expected<'t, Definition> {
        let (key, def) = match self.shape {
            Shape::Named(key) if base_name(key) == name => match self.cx.types().get_key_value(key)
            {
                Some((key, def)) => (key.as_str(), def),
                None => return Ok(None),
            },
            Shape::Unknown => return Ok(None),
            shape => return Err(self.cx.differ(found(), shape)),
        };
        if self.cx.path.is_empty() {
            self.cx.path.push(Step::Root(name));
        }
        Ok(Some((key, def)))
    }

    /// The definition expected, which should be of the kind `pick` finds.
    fn definition<D: ?Sized>(
        &mut self,
        name: &'static str,
        found: &dyn Fn() -> String,
        pick: impl FnOnce(&'t Definition) -> Option<&'t D>,
    ) -> Expected<'t, D> {
        match self.named(name, found)? {
            None => Ok(None),
            Some((key, def)) => match pick(def) {
                Some(def) => Ok(Some((key, def))),
                None => Err(self.cx.differ(found(), self.shape)),
            },
        }
    }

    /// The payload of variant `index` of enum `name`, which should be traced as `variant`
    /// and carry what `pick` finds (else the mismatch, with it described as `carries`).
    fn variant<D: ?Sized>(
        &mut self,
        (name, index, variant): (&'static str, u32, &'static str),
        carries: &dyn Fn() -> String,
        pick: impl FnOnce(&'t Payload) -> Option<&'t D>,
    ) -> Expected<'t, D> {
        let found = || format!("variant `{name}::{variant}`");
        let enumeration = |def: &'t Definition| match def {
            Definition::Enum(variants) => Some(variants),
            _ => None,
        };
        let Some((key, variants)) = self.definition(name, &found, enumeration)? else {
            return Ok(None);
        };
        let traced = usize::try_from(index).ok().and_then(|i| variants.get(i));
        let Some(traced) = traced.filter(|v| v.name == variant) else {
            let what = match traced {
                Some(other) => format!("as variant `{}`", other.name),
                None => {
                    let names: Vec<_> = variants.iter().map(|v| format!("`{}`", v.name)).collect();
                    format!(
                        "as nothing: it has {} ({})",
                        variants.len(),
                        names.join(", ")
                    )
                }
            };
            return Err(self.cx.fail(format_args!(
                "serializes variant `{variant}` with index {index}, but deserializes index \
                 {index} {what}"
            )));
        };
        self.cx.path.push(Step::Variant(variant));
        match (pick(&traced.payload), &traced.payload) {
            (Some(payload), _) => Ok(Some((key, payload))),
            // A variant never finished: nothing to check it against.
            (None, Payload::Newtype(Shape::Unknown)) => Ok(None),
            (None, payload) => Err(self.cx.fail(format_args!(
                "serializes as {} but deserializes as {}",
                carries(),
                describe(payload)
            ))),
        }
    }
}

/// What a variant carries, in words.
fn describe(payload: &Payload) -> String {
    match payload {
        Payload::Unit => "a unit variant".into(),
        Payload::Newtype(_) => "a newtype variant".into(),
        Payload::Tuple(items) => format!("a tuple variant of {}", items.len()),
        Payload::Struct(fields) => format!("a struct variant of {} fields", fields.len()),
    }
}

macro_rules! primitives {
    ($($method:ident($ty:ty) => $shape:ident;)*) => {$(
        fn $method(self, _: $ty) -> Res {
            self.primitive(Shape::$shape)
        }
    )*};
}

impl<'c, 't> Serializer for Check<'c, 't> {
    type Ok = ();
    type Error = Mismatch;
    type SerializeSeq = Parts<'c, 't>;
    type SerializeTuple = Parts<'c, 't>;
    type SerializeTupleStruct = Parts<'c, 't>;
    type SerializeTupleVariant = Parts<'c, 't>;
    type SerializeMap = Parts<'c, 't>;
    type SerializeStruct = Parts<'c, 't>;
    type SerializeStructVariant = Parts<'c, 't>;

    primitives! {
        serialize_bool(bool) => Bool;
        serialize_i8(i8) => I8;
        serialize_i16(i16) => I16;
        serialize_i32(i32) => I32;
        serialize_i64(i64) => I64;
        serialize_i128(i128) => I128;
        serialize_u8(u8) => U8;
        serialize_u16(u16) => U16;
        serialize_u32(u32) => U32;
        serialize_u64(u64) => U64;
        serialize_u128(u128) => U128;
        serialize_f32(f32) => F32;
        serialize_f64(f64) => F64;
        serialize_char(char) => Char;
        serialize_str(&str) => Str;
        serialize_bytes(&[u8]) => Bytes;
    }

    fn serialize_unit(self) -> Res {
        self.primitive(Shape::Unit)
    }

    fn serialize_none(self) -> Res {
        match self.shape {
            Shape::Unknown | Shape::Option(_) => Ok(()),
            shape => Err(self.cx.differ("None", shape)),
        }
    }

    fn serialize_some<V: Serialize + ?Sized>(self, value: &V) -> Res {
        let inner = match self.shape {
            Shape::Unknown => &UNKNOWN,
            Shape::Option(inner) => inner,
            shape => return Err(self.cx.differ("Some(..)", shape)),
        };
        nest(self.cx, Some(Step::Some), inner, value)
    }

    fn serialize_unit_struct(mut self, name: &'static str) -> Res {
        let mark = self.cx.path.len();
        let found = || format!("unit struct `{name}`");
        let unit = |def: &'t Definition| matches!(def, Definition::UnitStruct).then_some(&());
        self.definition(name, &found, unit)?;
        self.cx.path.truncate(mark);
        Ok(())
    }

    fn serialize_unit_variant(
        mut self,
        name: &'static str,
        index: u32,
        variant: &'static str,
    ) -> Res {
        let mark = self.cx.path.len();
        let unit = |p: &'t Payload| matches!(p, Payload::Unit).then_some(&());
        self.variant((name, index, variant), &|| "a unit variant".into(), unit)?;
        self.cx.path.truncate(mark);
        Ok(())
    }

    fn serialize_newtype_struct<V: Serialize + ?Sized>(
        mut self,
        name: &'static str,
        value: &V,
    ) -> Res {
        let mark = self.cx.path.len();
        let found = || format!("newtype struct `{name}`");
        let newtype = |def: &'t Definition| match def {
            Definition::NewtypeStruct(inner) => Some(inner),
            _ => None,
        };
        let inner = self
            .definition(name, &found, newtype)?
            .map_or(&UNKNOWN, |(_, s)| s);
        nest(self.cx, None, inner, value)?;
        self.cx.path.truncate(mark);
        Ok(())
    }

    fn serialize_newtype_variant<V: Serialize + ?Sized>(
        mut self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        value: &V,
    ) -> Res {
        let mark = self.cx.path.len();
        let newtype = |p: &'t Payload| match p {
            Payload::Newtype(inner) => Some(inner),
            _ => None,
        };
        let carries = || "a newtype variant".into();
        let inner = self.variant((name, index, variant), &carries, newtype)?;
        nest(self.cx, None, inner.map_or(&UNKNOWN, |(_, s)| s), value)?;
        self.cx.path.truncate(mark);
        Ok(())
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Parts<'c, 't>, Mismatch> {
        self.compound(&|| "a sequence".into(), |shape| match shape {
            Shape::Seq(element) => Some(Items::Seq(element)),
            _ => None,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<Parts<'c, 't>, Mismatch> {
        let found = || format!("a tuple of {len}");
        let mark = self.cx.path.len();
        let items = match self.shape {
            Shape::Unknown => Items::Any,
            Shape::Tuple(items) if items.len() == len => Items::Tuple(items),
            shape => return Err(self.cx.differ(found(), shape)),
        };
        Ok(Parts::new(self.cx, items, mark))
    }

    fn serialize_tuple_struct(
        mut self,
        name: &'static str,
        len: usize,
    ) -> Result<Parts<'c, 't>, Mismatch> {
        let mark = self.cx.path.len();
        let found = || format!("tuple struct `{name}` of {len}");
        let tuple = |def: &'t Definition| match def {
            Definition::TupleStruct(items) => Some(items),
            _ => None,
        };
        let items = self.definition(name, &found, tuple)?;
        if let Some((_, items)) = items
            && items.len() != len
        {
            return Err(self.cx.differ(found(), self.shape));
        }
        let items = items.map_or(Items::Any, |(_, items)| Items::Tuple(items));
        Ok(Parts::new(self.cx, items, mark))
    }

    fn serialize_tuple_variant(
        mut self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Parts<'c, 't>, Mismatch> {
        let mark = self.cx.path.len();
        let carries = || format!("a tuple variant of {len}");
        let tuple = |p: &'t Payload| match p {
            Payload::Tuple(items) => Some(items),
            _ => None,
        };
        let items = self.variant((name, index, variant), &carries, tuple)?;
        if let Some((_, items)) = items
            && items.len() != len
        {
            let traced = items.len();
            return Err(self.cx.fail(format_args!(
                "serializes as {} but deserializes as a tuple variant of {traced}",
                carries()
            )));
        }
        let items = items.map_or(Items::Any, |(_, items)| Items::Tuple(items));
        Ok(Parts::new(self.cx, items, mark))
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Parts<'c, 't>, Mismatch> {
        self.compound(&|| "a map".into(), |shape| match shape {
            Shape::Map { key, value } => Some(Items::Map(key, value)),
            _ => None,
        })
    }

    fn serialize_struct(mut self, name: &'static str, _: usize) -> Result<Parts<'c, 't>, Mismatch> {
        let mark = self.cx.path.len();
        let found = || format!("struct `{name}`");
        let strukt = |def: &'t Definition| match def {
            Definition::Struct(fields) => Some(fields),
            _ => None,
        };
        let fields = self.definition(name, &found, strukt)?;
        let items = fields.map_or(Items::Any, |(key, fields)| self.fields(fields, (key, None)));
        Ok(Parts::new(self.cx, items, mark))
    }

    fn serialize_struct_variant(
        mut self,
        name: &'static str,
        index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Parts<'c, 't>, Mismatch> {
        let mark = self.cx.path.len();
        let carries = || format!("a struct variant of {len} fields");
        let strukt = |p: &'t Payload| match p {
            Payload::Struct(fields) => Some(fields),
            _ => None,
        };
        let fields = self.variant((name, index, variant), &carries, strukt)?;
        let part = usize::try_from(index).ok();
        let items = fields.map_or(Items::Any, |(key, fields)| self.fields(fields, (key, part)));
        Ok(Parts::new(self.cx, items, mark))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

impl<'t> Check<'_, 't> {
    /// The fields of part `part`, with its key when their names are still to be learned.
    fn fields(&self, fields: &'t [Field], part: PartKey<'t>) -> Items<'t> {
        let learn = self.cx.learned.contains_key(&part).then_some(part);
        Items::Fields(fields, learn)
    }
}
