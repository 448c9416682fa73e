//! A serde type tracer: learns a type's [`Shape`] by running its `Deserialize` impl against a
//! deserializer that records what the impl asks for and feeds it sample values.
//!
//! Containers (structs and enums) are told apart by the `TypeId` of the value their visitor
//! builds, and defined once in a [`Types`] table. One run of `T::deserialize` takes one variant
//! of each enum it meets, so [`TypeTracer::trace`] runs it again until every variant of every
//! enum reachable from `T` has been seen. A container met again inside itself is recorded as
//! a reference and deserialized quietly from there on: nothing is recorded, options are
//! `None`, sequences and maps empty, and each enum takes a variant known to end soonest.

use std::any::TypeId;
use std::collections::HashMap;
use std::fmt;

use serde::de::value::U32Deserializer;
use serde::de::{self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess};
use serde::de::{VariantAccess, Visitor};

use super::shape::{Definition, Field, Payload, Shape, Types, Variant};

/// How deeply values may nest before the tracer gives up on a type.
const MAX_DEPTH: usize = 256;
/// How many runs of `Deserialize` one [`TypeTracer::trace`] may take.
const MAX_PASSES: usize = 10_000;

/// Records the shapes of types by running their `Deserialize` impls against a tracing
/// deserializer.
///
/// One tracer collects the containers of every type it traces in one [`Types`] table: a type
/// traced twice, alone or inside others, has one key and one definition.
#[derive(Debug, Default)]
pub struct TypeTracer {
    state: State,
    types: Types,
}

/// Why a type's shape could not be traced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot describe `{type_name}`: {reason}")]
pub struct TraceError {
    /// The traced type, as [`std::any::type_name`] spells it.
    pub type_name: String,
    /// What went wrong: a `Deserialize` impl's own error, or why the type has no shape.
    pub reason: String,
}

impl TypeTracer {
    /// A tracer with an empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The shape of `T`; containers it reaches are added to the table.
    ///
    /// On error the table is left as it was.
    pub fn trace<T: serde::Deserialize<'static>>(&mut self) -> Result<Shape, TraceError> {
        let backup = self.state.clone();
        let mut root = Shape::Unknown;
        let mut reason = format!("some variants still unexplored after {MAX_PASSES} passes");
        for _ in 0..MAX_PASSES {
            let st = &mut self.state;
            st.stack.clear();
            st.variants.clear();
            st.frames.clear();
            (st.depth, st.incomplete, st.dead_end) = (0, false, false);
            let learned = st.learned;
            let mut slot = Shape::Unknown;
            match T::deserialize(tracer(st, &mut slot, false)) {
                // A dead end that taught which variants end is worth another pass.
                Err(_) if self.state.dead_end && self.state.learned > learned => {}
                Err(Error(why)) => {
                    reason = why;
                    break;
                }
                Ok(_) => {
                    merge(&mut root, slot);
                    if !self.state.incomplete {
                        self.types = self.state.types();
                        return Ok(root);
                    }
                }
            }
        }
        self.state = backup;
        Err(TraceError {
            type_name: std::any::type_name::<T>().to_owned(),
            reason,
        })
    }

    /// The containers of every type traced so far, by key.
    pub fn types(&self) -> &Types {
        &self.types
    }

    /// The table, without the tracer.
    pub fn into_types(self) -> Types {
        self.types
    }
}

/// Everything the tracer knows, and where the current pass is.
#[derive(Debug, Clone, Default)]
struct State {
    containers: HashMap<TypeId, Container>,
    /// How many recorded containers have each serde name.
    name_counts: HashMap<&'static str, usize>,
    /// How many variants were tried or finished: a pass that dead-ends is run again if it
    /// learned something.
    learned: usize,
    /// Per container known to end, how deep a quiet value of it nests at least (cached).
    ranks: Option<HashMap<TypeId, u32>>,
    /// The containers being recorded, innermost last.
    stack: Vec<TypeId>,
    /// The containers being deserialized and their chosen parts, innermost last.
    variants: Vec<(TypeId, usize)>,
    /// Per value being deserialized, the containers met directly in it (not inside an
    /// option, sequence or map, which are empty when quiet).
    frames: Vec<Vec<TypeId>>,
    depth: usize,
    /// Whether something met since the innermost open container needs another pass.
    incomplete: bool,
    /// Whether the pass failed for want of a variant that ends.
    dead_end: bool,
}

/// A struct (one part, `variants: None`) or an enum (a part per variant).
#[derive(Debug, Clone)]
struct Container {
    name: &'static str,
    variants: Option<&'static [&'static str]>,
    parts: Vec<Part>,
    /// Its key in the table, from when it is first recorded.
    key: Option<String>,
    /// Nothing more to learn below it: it is deserialized quietly from then on.
    complete: bool,
}

#[derive(Debug, Clone, Default)]
struct Part {
    /// As recorded; a variant's payload as the struct it would be.
    def: Option<Definition>,
    /// Nothing more to learn below it.
    complete: bool,
    attempted: bool,
    /// The containers directly in its first finished value.
    ends: Option<Vec<TypeId>>,
}

type Res<T> = Result<T, Error>;
type Out<V> = Res<<V as Visitor<'static>>::Value>;
type Names = &'static [&'static str];

impl State {
    fn nested<R>(&mut self, f: impl FnOnce(&mut State) -> Res<R>) -> Res<R> {
        if self.depth >= MAX_DEPTH {
            let inside = self.inside();
            return Err(Error(format!(
                "values nest deeper than {MAX_DEPTH} levels{inside}"
            )));
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }

    /// Like `nested`, for a value of its own: also the containers met directly in it.
    fn framed<R>(&mut self, f: impl FnOnce(&mut State) -> Res<R>) -> (Res<R>, Vec<TypeId>) {
        self.frames.push(Vec::new());
        let result = self.nested(f);
        (result, self.frames.pop().unwrap_or_default())
    }

    fn inside(&self) -> String {
        let name = self.stack.last().map(|id| self.containers[id].name);
        name.map_or_else(String::new, |name| format!(" (inside `{name}`)"))
    }

    /// Notes that a value of container `id` begins.
    fn enter(&mut self, id: TypeId, name: &'static str, variants: Option<Names>) {
        if let Some(frame) = self.frames.last_mut() {
            frame.push(id);
        }
        let parts = vec![Part::default(); variants.map_or(1, <[_]>::len)];
        let (key, complete) = (None, false);
        let new = || Container {
            name,
            variants,
            parts,
            key,
            complete,
        };
        self.containers.entry(id).or_insert_with(new);
    }

    /// Starts recording container `id`: its key goes into `slot`. `None` when it is to be
    /// deserialized quietly, else the caller's `incomplete` flag.
    fn open(&mut self, id: TypeId, slot: &mut Shape) -> Option<bool> {
        let container = self.containers.get_mut(&id)?;
        let key = container.key.get_or_insert_with(|| {
            let count = self.name_counts.entry(container.name).or_insert(0);
            *count += 1;
            match *count {
                1 => container.name.to_owned(),
                n => format!("{}#{n}", container.name),
            }
        });
        *slot = Shape::Named(key.clone());
        if container.complete || self.stack.contains(&id) {
            return None;
        }
        self.stack.push(id);
        Some(std::mem::replace(&mut self.incomplete, false))
    }

    /// Ends a value of container `id` whose part `index` was `def`, if it was finished.
    fn close(
        &mut self,
        (id, index): (TypeId, usize),
        open: Option<bool>,
        def: Option<Definition>,
        children: Vec<TypeId>,
    ) {
        let container = self.containers.get_mut(&id).expect("entered");
        let part = &mut container.parts[index];
        if def.is_some() && part.ends.is_none() {
            part.ends = Some(children);
            self.learned += 1;
            self.ranks = None;
        }
        let Some(outer_incomplete) = open else { return };
        self.stack.pop();
        if let Some(def) = def {
            match &mut part.def {
                Some(old) => merge_definition(old, def),
                slot => *slot = Some(def),
            }
            part.complete |= !self.incomplete;
        }
        let done = container
            .parts
            .iter()
            .all(|p| p.def.is_some() && p.complete);
        container.complete = done;
        self.incomplete = outer_incomplete || !done;
    }

    /// The part to record: the first never seen, else the first with more to learn.
    fn choose_loud(&self, id: TypeId) -> usize {
        let parts = &self.containers[&id].parts;
        (parts.iter().position(|p| p.def.is_none()))
            .or_else(|| parts.iter().position(|p| !p.complete))
            .unwrap_or(0)
    }

    /// The part for a quiet value: the one known to end soonest, else the first never tried,
    /// else the first not already being deserialized.
    fn choose_quiet(&mut self, id: TypeId) -> Res<usize> {
        let ranks = self.ranks.take().unwrap_or_else(|| self.compute_ranks());
        let container = &self.containers[&id];
        let best = (container.parts.iter().enumerate())
            .filter_map(|(i, part)| Some((max_rank(part.ends.as_ref()?, &ranks)?, i)))
            .min();
        self.ranks = Some(ranks);
        if let Some((_, index)) = best {
            return Ok(index);
        }
        let free = |i: &usize| !self.variants.contains(&(id, *i));
        let fresh = |i: &usize| free(i) && !container.parts[*i].attempted;
        let count = container.parts.len();
        if let Some(index) = (0..count).find(fresh).or_else(|| (0..count).find(free)) {
            return Ok(index);
        }
        self.dead_end = true;
        let name = container.name;
        Err(Error(format!(
            "every variant of `{name}` contains `{name}` again"
        )))
    }

    /// Least fixed point: a struct ends one level below its deepest direct part, an enum one
    /// level below its shallowest variant (options, sequences and maps end at once).
    fn compute_ranks(&self) -> HashMap<TypeId, u32> {
        let mut ranks = HashMap::new();
        let mut changed = true;
        while changed {
            changed = false;
            for (id, container) in &self.containers {
                let parts = container.parts.iter();
                let rank = parts
                    .filter_map(|p| max_rank(p.ends.as_ref()?, &ranks))
                    .min();
                if let Some(rank) = rank.map(|r| r + 1)
                    && ranks.get(id).is_none_or(|&old| rank < old)
                {
                    ranks.insert(*id, rank);
                    changed = true;
                }
            }
        }
        ranks
    }

    fn types(&self) -> Types {
        let variant = |(name, part): (&&str, &Part)| Variant {
            name: (*name).to_owned(),
            payload: payload(part.def.clone()),
        };
        let definition = |container: &Container| match container.variants {
            None => container.parts[0].def.clone(),
            Some(names) => {
                let variants = names.iter().zip(&container.parts).map(variant);
                Some(Definition::Enum(variants.collect()))
            }
        };
        (self.containers.values())
            .filter_map(|c| Some((c.key.clone()?, definition(c)?)))
            .collect()
    }
}

fn max_rank(children: &[TypeId], ranks: &HashMap<TypeId, u32>) -> Option<u32> {
    children
        .iter()
        .try_fold(0, |max, id| Some(max.max(*ranks.get(id)?)))
}

/// A variant's payload, from the struct it would be.
fn payload(def: Option<Definition>) -> Payload {
    match def {
        Some(Definition::UnitStruct) => Payload::Unit,
        Some(Definition::NewtypeStruct(shape)) => Payload::Newtype(shape),
        Some(Definition::TupleStruct(shapes)) => Payload::Tuple(shapes),
        Some(Definition::Struct(fields)) => Payload::Struct(fields),
        Some(Definition::Enum(_)) | None => Payload::Newtype(Shape::Unknown),
    }
}

/// Fills the `Unknown` parts of `old` from `new`; where they disagree, `old` stays.
fn merge(old: &mut Shape, new: Shape) {
    match (old, new) {
        (old @ Shape::Unknown, new) => *old = new,
        (Shape::Option(a), Shape::Option(b)) | (Shape::Seq(a), Shape::Seq(b)) => merge(a, *b),
        (Shape::Map { key, value }, Shape::Map { key: k, value: v }) => {
            merge(key, *k);
            merge(value, *v);
        }
        (Shape::Tuple(a), Shape::Tuple(b)) => merge_all(a.iter_mut(), b),
        _ => {}
    }
}

fn merge_all<'s>(old: impl ExactSizeIterator<Item = &'s mut Shape>, new: Vec<Shape>) {
    if old.len() == new.len() {
        old.zip(new).for_each(|(o, n)| merge(o, n));
    }
}

fn merge_definition(old: &mut Definition, new: Definition) {
    match (old, new) {
        (Definition::NewtypeStruct(a), Definition::NewtypeStruct(b)) => merge(a, b),
        (Definition::TupleStruct(a), Definition::TupleStruct(b)) => merge_all(a.iter_mut(), b),
        (Definition::Struct(a), Definition::Struct(b)) => {
            let new = b.into_iter().map(|f| f.shape).collect();
            merge_all(a.iter_mut().map(|f| &mut f.shape), new);
        }
        _ => {}
    }
}

/// What the tracing deserializer fails with: the reason, in words.
#[derive(Debug)]
struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// The deserializer for one value: records its shape into `slot` (unless `quiet`).
struct Tracer<'a> {
    st: &'a mut State,
    slot: &'a mut Shape,
    quiet: bool,
}

fn tracer<'a>(st: &'a mut State, slot: &'a mut Shape, quiet: bool) -> Tracer<'a> {
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
    /// A value of a struct (`variants: None`) or an enum: `visit` deserializes the chosen part
    /// and records its definition.
    fn container<V: Visitor<'static>>(
        self,
        (name, variants): (&'static str, Option<Names>),
        visitor: V,
        visit: impl FnOnce(V, Choice<'_>) -> Out<V>,
    ) -> Out<V> {
        if variants.is_some_and(<[_]>::is_empty) {
            return Err(Error(format!("enum `{name}` has no variants")));
        }
        let (id, st) = (typeid::of::<V::Value>(), self.st);
        st.enter(id, name, variants);
        let open = if self.quiet {
            None
        } else {
            st.open(id, self.slot)
        };
        let index = match (variants, open) {
            (None, _) => 0,
            (Some(_), Some(_)) => st.choose_loud(id),
            (Some(_), None) => st.choose_quiet(id)?,
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

/// Deserializes `slots.len()` elements into `slots`.
fn visit_seq<V: Visitor<'static>>(
    v: V,
    st: &mut State,
    slots: &mut [Shape],
    quiet: bool,
) -> Out<V> {
    v.visit_seq(elements(st, slots, quiet))
}

fn elements<'a>(st: &'a mut State, slots: &'a mut [Shape], quiet: bool) -> Elements<'a> {
    Elements {
        st,
        slots,
        next: 0,
        quiet,
    }
}

fn named(fields: Names, shapes: Vec<Shape>) -> Vec<Field> {
    let names = fields.iter().map(|name| (*name).to_owned());
    names
        .zip(shapes)
        .map(|(name, shape)| Field { name, shape })
        .collect()
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
        let (result, _) = self
            .st
            .framed(|st| visitor.visit_map(elements(st, &mut slots, quiet)));
        let mut slots = slots.into_iter().map(Box::new);
        let mut next = || slots.next().unwrap_or_else(|| Box::new(Shape::Unknown));
        *self.slot = Shape::Map {
            key: next(),
            value: next(),
        };
        result
    }

    fn deserialize_unit_struct<V: Visitor<'static>>(self, name: &'static str, v: V) -> Out<V> {
        self.container((name, None), v, |v, choice| {
            *choice.def = Some(Definition::UnitStruct);
            v.visit_unit()
        })
    }

    fn deserialize_newtype_struct<V: Visitor<'static>>(self, name: &'static str, v: V) -> Out<V> {
        self.container((name, None), v, |v, choice| {
            choice.newtype(|t| v.visit_newtype_struct(t))
        })
    }

    fn deserialize_tuple_struct<V>(self, name: &'static str, len: usize, v: V) -> Out<V>
    where
        V: Visitor<'static>,
    {
        self.container((name, None), v, |v, choice| {
            choice.seq(len, v, Definition::TupleStruct)
        })
    }

    fn deserialize_struct<V: Visitor<'static>>(
        self,
        name: &'static str,
        fields: Names,
        v: V,
    ) -> Out<V> {
        let build = |shapes| Definition::Struct(named(fields, shapes));
        self.container((name, None), v, |v, choice| {
            choice.seq(fields.len(), v, build)
        })
    }

    fn deserialize_enum<V: Visitor<'static>>(
        self,
        name: &'static str,
        variants: Names,
        v: V,
    ) -> Out<V> {
        self.container((name, Some(variants)), v, |v, choice| v.visit_enum(choice))
    }

    fn is_human_readable(&self) -> bool {
        false
    }
}

/// The elements of a sequence, tuple or struct, or a map's key and value: one per slot.
struct Elements<'a> {
    st: &'a mut State,
    slots: &'a mut [Shape],
    next: usize,
    quiet: bool,
}

impl SeqAccess<'static> for Elements<'_> {
    type Error = Error;

    fn next_element_seed<S: DeserializeSeed<'static>>(&mut self, seed: S) -> Res<Option<S::Value>> {
        let Some(slot) = self.slots.get_mut(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        seed.deserialize(tracer(self.st, slot, self.quiet))
            .map(Some)
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.slots.len() - self.next)
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
    def: &'a mut Option<Definition>,
    quiet: bool,
}

impl Choice<'_> {
    fn newtype<R>(self, f: impl FnOnce(Tracer<'_>) -> Res<R>) -> Res<R> {
        let mut shape = Shape::Unknown;
        let value = f(tracer(self.st, &mut shape, self.quiet))?;
        *self.def = Some(Definition::NewtypeStruct(shape));
        Ok(value)
    }

    fn seq<V: Visitor<'static>>(
        self,
        len: usize,
        v: V,
        build: impl FnOnce(Vec<Shape>) -> Definition,
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
        *self.def = Some(Definition::UnitStruct);
        Ok(())
    }

    fn newtype_variant_seed<S: DeserializeSeed<'static>>(self, seed: S) -> Res<S::Value> {
        self.newtype(|tracer| seed.deserialize(tracer))
    }

    fn tuple_variant<V: Visitor<'static>>(self, len: usize, v: V) -> Out<V> {
        self.seq(len, v, Definition::TupleStruct)
    }

    fn struct_variant<V: Visitor<'static>>(self, fields: Names, v: V) -> Out<V> {
        self.seq(fields.len(), v, |shapes| {
            Definition::Struct(named(fields, shapes))
        })
    }
}
