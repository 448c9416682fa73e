//! The tracer's bookkeeping: the containers met and their parts (struct bodies or enum
//! variants), which part a value takes, how deep values nest, and the table built at the end.

use std::any::TypeId;
use std::collections::{HashMap, HashSet};

use super::{Error, MAX_DEPTH, Names, Res, merge_definition};
use crate::schema::shape::{Definition, Payload, Shape, Types, Variant};

/// What tells two containers apart: the type their visitor builds, their serde name and their
/// kind. The type alone is not enough: `SystemTime`'s visitor builds a `Duration`, and
/// `RangeFrom<u32>` and `RangeTo<u32>` both build a `u32`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) struct Id {
    /// The `TypeId` of the visitor's `Value`.
    pub(super) value: TypeId,
    /// The serde name passed to `deserialize_struct`, `deserialize_enum`, ...
    pub(super) name: &'static str,
    pub(super) kind: Kind,
}

/// Which `deserialize_*` method a container was asked for, with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    /// `deserialize_unit_struct`.
    Unit,
    /// `deserialize_newtype_struct`.
    Newtype,
    /// `deserialize_tuple_struct`, with its length.
    Tuple(usize),
    /// `deserialize_struct`, with its field names (aliases included).
    Struct(Names),
    /// `deserialize_enum`, with its variant names.
    Enum(Names),
}

/// A part's definition as one value of it was deserialized.
#[derive(Debug, Clone)]
pub(super) struct Recorded {
    pub(super) def: Definition,
    /// Its field names are placeholders: the visitor read another number of fields than the
    /// names it listed (aliases), so the names are learned when a value is serialized.
    pub(super) unnamed: bool,
}

/// The parts whose field names are still to be learned: `(key, variant index)` (`None` for a
/// struct).
pub(super) type Unnamed = HashSet<(String, Option<usize>)>;

/// Everything the tracer knows, and where the current pass is.
#[derive(Debug, Clone, Default)]
pub(super) struct State {
    pub(super) containers: HashMap<Id, Container>,
    /// How many recorded containers have each serde name.
    name_counts: HashMap<&'static str, usize>,
    /// How many variants were tried or finished: a pass that dead-ends is run again if it
    /// learned something.
    pub(super) learned: usize,
    /// Per container known to end, how deep a quiet value of it nests at least (cached).
    ranks: Option<HashMap<Id, u32>>,
    /// The containers being recorded, innermost last.
    stack: Vec<Id>,
    /// The containers being deserialized and their chosen parts, innermost last.
    pub(super) variants: Vec<(Id, usize)>,
    /// Per value being deserialized, the containers met directly in it (not inside an
    /// option, sequence or map, which are empty when quiet).
    frames: Vec<Vec<Id>>,
    depth: usize,
    /// Whether something met since the innermost open container needs another pass.
    pub(super) incomplete: bool,
    /// Whether the pass failed for want of a variant that ends.
    pub(super) dead_end: bool,
}

/// A struct (one part) or an enum (a part per variant), by its [`Id`].
#[derive(Debug, Clone)]
pub(super) struct Container {
    pub(super) parts: Vec<Part>,
    /// Its key in the table, from when it is first recorded.
    key: Option<String>,
    /// Nothing more to learn below it: it is deserialized quietly from then on.
    complete: bool,
}

/// A struct's body or one variant of an enum.
#[derive(Debug, Clone, Default)]
pub(super) struct Part {
    /// As recorded; a variant's payload as the struct it would be.
    def: Option<Definition>,
    /// Its field names are placeholders, still to be learned (see [`Recorded`]).
    unnamed: bool,
    /// Nothing more to learn below it.
    complete: bool,
    /// Chosen at least once (a pass that fails in it still taught that).
    pub(super) attempted: bool,
    /// The containers directly in its first finished value.
    ends: Option<Vec<Id>>,
}

impl State {
    /// Forgets where the last pass was.
    pub(super) fn begin_pass(&mut self) {
        self.stack.clear();
        self.variants.clear();
        self.frames.clear();
        (self.depth, self.incomplete, self.dead_end) = (0, false, false);
    }

    /// Runs `f` one level deeper, failing past [`MAX_DEPTH`].
    pub(super) fn nested<R>(&mut self, f: impl FnOnce(&mut State) -> Res<R>) -> Res<R> {
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
    pub(super) fn framed<R>(&mut self, f: impl FnOnce(&mut State) -> Res<R>) -> (Res<R>, Vec<Id>) {
        self.frames.push(Vec::new());
        let result = self.nested(f);
        (result, self.frames.pop().unwrap_or_default())
    }

    /// ` (inside `Name`)` for the innermost container being recorded, if any.
    pub(super) fn inside(&self) -> String {
        let name = self.stack.last().map(|id| id.name);
        name.map_or_else(String::new, |name| format!(" (inside `{name}`)"))
    }

    /// Notes that a value of container `id` begins.
    pub(super) fn enter(&mut self, id: Id) {
        if let Some(frame) = self.frames.last_mut() {
            frame.push(id);
        }
        let count = match id.kind {
            Kind::Enum(variants) => variants.len(),
            _ => 1,
        };
        let new = || Container {
            parts: vec![Part::default(); count],
            key: None,
            complete: false,
        };
        self.containers.entry(id).or_insert_with(new);
    }

    /// Starts recording container `id`: its key goes into `slot`. `None` when it is to be
    /// deserialized quietly, else the caller's `incomplete` flag.
    pub(super) fn open(&mut self, id: Id, slot: &mut Shape) -> Option<bool> {
        let container = self.containers.get_mut(&id)?;
        let key = container.key.get_or_insert_with(|| {
            let count = self.name_counts.entry(id.name).or_insert(0);
            *count += 1;
            match *count {
                1 => id.name.to_owned(),
                n => format!("{}#{n}", id.name),
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
    pub(super) fn close(
        &mut self,
        (id, index): (Id, usize),
        open: Option<bool>,
        def: Option<Recorded>,
        children: Vec<Id>,
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
        if let Some(Recorded { def, unnamed }) = def {
            match &mut part.def {
                Some(old) => merge_definition(old, def),
                slot => (*slot, part.unnamed) = (Some(def), unnamed),
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
    pub(super) fn choose_loud(&self, id: Id) -> usize {
        let parts = &self.containers[&id].parts;
        (parts.iter().position(|p| p.def.is_none()))
            .or_else(|| parts.iter().position(|p| !p.complete))
            .unwrap_or(0)
    }

    /// The part for a quiet value: the one known to end soonest, else the first never tried,
    /// else the first not already being deserialized.
    pub(super) fn choose_quiet(&mut self, id: Id) -> Res<usize> {
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
        let name = id.name;
        Err(Error(format!(
            "every variant of `{name}` contains `{name}` again"
        )))
    }

    /// Least fixed point: a struct ends one level below its deepest direct part, an enum one
    /// level below its shallowest variant (options, sequences and maps end at once).
    fn compute_ranks(&self) -> HashMap<Id, u32> {
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

    /// The table of every container recorded so far.
    pub(super) fn types(&self) -> Types {
        let variant = |(name, part): (&&str, &Part)| Variant {
            name: (*name).to_owned(),
            payload: payload(part.def.clone()),
        };
        let definition = |(id, container): (&Id, &Container)| match id.kind {
            Kind::Enum(names) => {
                let variants = names.iter().zip(&container.parts).map(variant);
                Some(Definition::Enum(variants.collect()))
            }
            _ => container.parts[0].def.clone(),
        };
        (self.containers.iter())
            .filter_map(|(id, c)| Some((c.key.clone()?, definition((id, c))?)))
            .collect()
    }

    /// The recorded parts whose field names are placeholders.
    pub(super) fn unnamed(&self) -> Unnamed {
        let mut unnamed = Unnamed::new();
        for (id, container) in &self.containers {
            let Some(key) = &container.key else { continue };
            let is_enum = matches!(id.kind, Kind::Enum(_));
            for (index, part) in container.parts.iter().enumerate() {
                if part.unnamed && part.def.is_some() {
                    unnamed.insert((key.clone(), is_enum.then_some(index)));
                }
            }
        }
        unnamed
    }

    /// Gives the fields of part `variant` (`None` for a struct) of the container keyed `key`
    /// their names, learned from how a value of it serializes.
    pub(super) fn name_fields(&mut self, key: &str, variant: Option<usize>, names: Vec<String>) {
        let mut containers = self.containers.values_mut();
        let container = containers.find(|c| c.key.as_deref() == Some(key));
        let part = container.and_then(|c| c.parts.get_mut(variant.unwrap_or(0)));
        if let Some(part) = part
            && let Some(Definition::Struct(fields)) = &mut part.def
            && fields.len() == names.len()
        {
            let fields = fields.iter_mut();
            fields
                .zip(names)
                .for_each(|(field, name)| field.name = name);
            part.unnamed = false;
        }
    }
}

fn max_rank(children: &[Id], ranks: &HashMap<Id, u32>) -> Option<u32> {
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
