//! A serde type tracer: learns a type's [`Shape`] by running its `Deserialize` impl against a
//! deserializer that records what the impl asks for and feeds it sample values, then checks
//! that those values serialize the way they deserialize.
//!
//! Containers (structs and enums) are told apart by the `TypeId` of the value their visitor
//! builds, their serde name and their kind (and its field or variant names), and defined once
//! in a [`Types`] table. One run of `T::deserialize` takes one variant of each enum it meets,
//! so [`TypeTracer::trace`] runs it again until every variant of every enum reachable from `T`
//! has been seen. A container met again inside itself is recorded as a reference and
//! deserialized quietly from there on: nothing is recorded, options are `None`, sequences and
//! maps empty, and each enum takes a variant known to end soonest.
//!
//! Each run builds a value of `T`; each is serialized by a checking serializer against the
//! shape traced. `Serialize` and `Deserialize` impls may disagree (`skip_deserializing`,
//! `serialize_with`, hand-written impls), and a shape that describes only one side would pass
//! the handshake and then garble messages. The check also names the fields of structs whose
//! `Deserialize` lists aliases among their field names.
//!
//! - `state.rs`: what the tracer knows across passes (the containers met, their parts and
//!   which end) and where the current pass is: the variant choices and the depth.
//! - `deserializer.rs`: the recording deserializer, serde's `Deserializer`, `SeqAccess`,
//!   `MapAccess`, `EnumAccess` and `VariantAccess` impls.
//! - `check.rs`: the checking serializer, serde's `Serializer`; `parts.rs`: its compound
//!   impls (`SerializeSeq`, `SerializeStruct`, ...); `context.rs`: what it knows across values
//!   and the path to the value being checked.

mod check;
mod context;
mod deserializer;
mod parts;
mod state;

use std::fmt;

use serde::de::{self, Visitor};

use self::context::Cx;
use self::deserializer::tracer;
use self::state::State;
use super::shape::{Definition, Shape, Types};

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
    /// Fails when `T`'s `Deserialize` impl does, when it has no shape postcard can carry, and
    /// when a value it builds serializes otherwise than it deserializes. On error the table is
    /// left as it was.
    pub fn trace<T>(&mut self) -> Result<Shape, TraceError>
    where
        T: serde::Serialize + serde::Deserialize<'static>,
    {
        let backup = self.state.clone();
        match self
            .passes::<T>()
            .and_then(|(root, samples)| self.check(root, &samples))
        {
            Ok(root) => {
                self.types = self.state.types();
                Ok(root)
            }
            Err(reason) => {
                self.state = backup;
                Err(TraceError {
                    type_name: std::any::type_name::<T>().to_owned(),
                    reason,
                })
            }
        }
    }

    /// Runs `T::deserialize` until every part reachable from it is recorded: the shape, and
    /// the value each run built.
    fn passes<T: serde::Deserialize<'static>>(&mut self) -> Result<(Shape, Vec<T>), String> {
        let (mut root, mut samples) = (Shape::Unknown, Vec::new());
        for _ in 0..MAX_PASSES {
            let st = &mut self.state;
            st.begin_pass();
            let learned = st.learned;
            let mut slot = Shape::Unknown;
            match T::deserialize(tracer(st, &mut slot, false)) {
                // A dead end that taught which variants end is worth another pass.
                Err(_) if self.state.dead_end && self.state.learned > learned => {}
                Err(Error(why)) => return Err(why),
                Ok(sample) => {
                    merge(&mut root, slot);
                    samples.push(sample);
                    if !self.state.incomplete {
                        samples.extend(self.quiet_sample());
                        return Ok((root, samples));
                    }
                }
            }
        }
        Err(format!(
            "some variants still unexplored after {MAX_PASSES} passes"
        ))
    }

    /// A value of `T` as quiet as can be: options `None`, sequences and maps empty, which
    /// `skip_serializing_if` may leave out. Nothing is recorded; `None` if `T` rejects it.
    fn quiet_sample<T: serde::Deserialize<'static>>(&mut self) -> Option<T> {
        let st = &mut self.state;
        st.begin_pass();
        T::deserialize(tracer(st, &mut Shape::Unknown, true)).ok()
    }

    /// Serializes every sample against `root`, and names the fields the check learned.
    fn check<T: serde::Serialize>(&mut self, root: Shape, samples: &[T]) -> Result<Shape, String> {
        let (types, unnamed) = (self.state.types(), self.state.unnamed());
        let mut cx = Cx::new(&types, &unnamed);
        for sample in samples {
            cx.check(&root, sample)?;
        }
        for (key, variant, names) in cx.into_names()? {
            self.state.name_fields(&key, variant, names);
        }
        Ok(root)
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

type Res<T> = Result<T, Error>;
type Out<V> = Res<<V as Visitor<'static>>::Value>;
type Names = &'static [&'static str];

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
