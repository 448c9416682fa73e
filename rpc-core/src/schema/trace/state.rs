//! The tracer's bookkeeping: the containers met and their parts (struct bodies or enum
//! variants), which part a value takes, how deep values nest, and the table built at the end.

use std::any::TypeId;
use std::collections::HashMap;

use super::{Error, MAX_DEPTH, Names, Res, merge_definition};
use crate::schema::shape::{Definition, Payload, Shape, Types, Variant};

/// Everything the tracer knows, and where the current pass is.
#[derive(Debug, Clone, Default)]
pub(super) struct State {
    pub(super) containers: HashMap<TypeId, Container>,
    /// How many recorded containers have each serde name.
    name_counts: HashMap<&'static str, usize>,
    /// How many variants were tried or finished: a pass that dead-ends is run again if it
    /// learned something.
    pub(super) learned: usize,
    /// Per container known to end, how deep a quiet value of it nests at least (cached).
    ranks: Option<HashMap<TypeId, u32>>,
    /// The containers being recorded, innermost last.
    pub(super) stack: Vec<TypeId>,
    /// The containers being deserialized and their chosen parts, innermost last.
    pub(super) variants: Vec<(TypeId, usize)>,
    /// Per value being deserialized, the containers met directly in it (not inside an
    /// option, sequence or map, which are empty when quiet).
    pub(super) frames: Vec<Vec<TypeId>>,
    pub(super) depth: usize,
    /// Whether something met since the innermost open container needs another pass.
    pub(super) incomplete: bool,
    /// Whether the pass failed for want of a variant that ends.
    pub(super) dead_end: bool,
}

/// A struct (one part, `variants: None`) or an enum (a part per variant).
#[derive(Debug, Clone)]
pub(super) struct Container {
    name: &'static str,
    variants: Option<&'static [&'static str]>,
    pub(super) parts: Vec<Part>,
    /// Its key in the table, from when it is first recorded.
    key: Option<String>,
    /// Nothing more to learn below it: it is deserialized quietly from then on.
    complete: bool,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Part {
    /// As recorded; a variant's payload as the struct it would be.
    def: Option<Definition>,
    /// Nothing more to learn below it.
    complete: bool,
    pub(super) attempted: bool,
    /// The containers directly in its first finished value.
    ends: Option<Vec<TypeId>>,
}

impl State {
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
    pub(super) fn framed<R>(
        &mut self,
        f: impl FnOnce(&mut State) -> Res<R>,
    ) -> (Res<R>, Vec<TypeId>) {
        self.frames.push(Vec::new());
        let result = self.nested(f);
        (result, self.frames.pop().unwrap_or_default())
    }

    pub(super) fn inside(&self) -> String {
        let name = self.stack.last().map(|id| self.containers[id].name);
        name.map_or_else(String::new, |name| format!(" (inside `{name}`)"))
    }

    /// Notes that a value of container `id` begins.
    pub(super) fn enter(&mut self, id: TypeId, name: &'static str, variants: Option<Names>) {
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
    pub(super) fn open(&mut self, id: TypeId, slot: &mut Shape) -> Option<bool> {
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
    pub(super) fn close(
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
    pub(super) fn choose_loud(&self, id: TypeId) -> usize {
        let parts = &self.containers[&id].parts;
        (parts.iter().position(|p| p.def.is_none()))
            .or_else(|| parts.iter().position(|p| !p.complete))
            .unwrap_or(0)
    }

    /// The part for a quiet value: the one known to end soonest, else the first never tried,
    /// else the first not already being deserialized.
    pub(super) fn choose_quiet(&mut self, id: TypeId) -> Res<usize> {
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

    pub(super) fn types(&self) -> Types {
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
