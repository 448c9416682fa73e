//! [`ServiceSchema`]: a service's name, its methods with their ids, argument and return shapes
//! and attributes, and the containers those shapes name. The `#[service]` macro builds one per
//! trait with a [`SchemaBuilder`]; it serializes to JSON for `rpc-schema`.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::canonical::canonical_bytes;
use super::shape::{Shape, Types};
use super::trace::TypeTracer;

/// A service as the handshake and `rpc-schema diff` see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceSchema {
    /// The service's name (the trait's name).
    pub name: String,
    /// The methods in declaration order (the order means nothing on the wire: ids do).
    pub methods: Vec<MethodSchema>,
    /// Every named container the methods' shapes refer to.
    pub types: Types,
    /// SHA-256 (hex) of the service name and every method's digest, in id order: equal
    /// fingerprints mean identical contracts.
    pub fingerprint: String,
}

/// One method of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodSchema {
    /// The wire name (`#[rpc(name = "...")]`, else the Rust name).
    pub name: String,
    /// The wire id: from the wire name, or `#[rpc(id = N)]`.
    pub id: u32,
    /// The Rust method's name.
    pub rust_name: String,
    /// The arguments after `&self`, in order.
    pub args: Vec<ArgSchema>,
    /// The return type's shape (`Result<T, E>` included).
    pub output: Shape,
    /// `#[rpc(idempotent)]`: calling twice has the effect of calling once, so a failed call
    /// may be retried.
    pub idempotent: bool,
    /// `#[rpc(timeout = "...")]` in milliseconds: the default deadline of a call
    /// (`u64::MAX` for `timeout = "none"`: no deadline; see [`MethodSchema::own_timeout`]).
    pub timeout_ms: Option<u64>,
    /// `#[deprecated]`: `Some(note)` (empty without a note).
    pub deprecated: Option<String>,
    /// The method's doc comment.
    pub docs: String,
    /// Why a type of this method could not be described, if one could not: such a method is
    /// never callable.
    pub error: Option<String>,
    /// SHA-256 (hex) of the wire name, id, argument shapes and return shape: equal digests
    /// mean a call encodes and decodes the same on both sides.
    pub digest: String,
    /// The client sends a stream of items (an argument is a `Streaming<T>`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub client_stream: bool,
    /// The server answers with a stream of items (the return type is a `Streaming<T>`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub server_stream: bool,
}

fn is_false(flag: &bool) -> bool {
    !*flag
}

/// One argument of a method.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArgSchema {
    /// The argument's name in the trait (informational: arguments travel by position).
    pub name: String,
    /// Its shape.
    pub shape: Shape,
}

/// What the macro knows of a method before its types are traced.
#[derive(Debug, Clone, Copy)]
pub struct MethodDecl {
    /// The wire name.
    pub name: &'static str,
    /// The wire id.
    pub id: u32,
    /// The Rust name.
    pub rust_name: &'static str,
    /// The doc comment.
    pub docs: &'static str,
    /// `#[rpc(idempotent)]`.
    pub idempotent: bool,
    /// `#[rpc(timeout = "...")]` in milliseconds.
    pub timeout_ms: Option<u64>,
    /// `#[deprecated]` and its note.
    pub deprecated: Option<&'static str>,
    /// An argument is a `Streaming<T>`.
    pub client_stream: bool,
    /// The return type is a `Streaming<T>`.
    pub server_stream: bool,
}

/// Builds a [`ServiceSchema`], tracing each type once.
pub struct SchemaBuilder {
    name: String,
    methods: Vec<MethodSchema>,
    tracer: TypeTracer,
}

impl SchemaBuilder {
    /// A builder for service `name`.
    pub fn new(name: &str) -> Self {
        SchemaBuilder {
            name: name.to_owned(),
            methods: Vec::new(),
            tracer: TypeTracer::new(),
        }
    }

    /// Adds a method; give its arguments and return type on the result.
    pub fn method(&mut self, decl: MethodDecl) -> MethodBuilder<'_> {
        self.methods.push(MethodSchema {
            name: decl.name.to_owned(),
            id: decl.id,
            rust_name: decl.rust_name.to_owned(),
            args: Vec::new(),
            output: Shape::Unit,
            idempotent: decl.idempotent,
            timeout_ms: decl.timeout_ms,
            deprecated: decl.deprecated.map(str::to_owned),
            docs: decl.docs.to_owned(),
            error: None,
            digest: String::new(),
            client_stream: decl.client_stream,
            server_stream: decl.server_stream,
        });
        MethodBuilder { builder: self }
    }

    /// The schema, with digests and fingerprint.
    pub fn finish(self) -> ServiceSchema {
        let types = self.tracer.into_types();
        let mut methods = self.methods;
        for method in &mut methods {
            method.digest = method_digest(method, &types);
        }
        let mut by_id: Vec<&MethodSchema> = methods.iter().collect();
        by_id.sort_by_key(|m| m.id);
        let mut hasher = Sha256::new();
        hash_str(&mut hasher, &self.name);
        for method in by_id {
            hash_str(&mut hasher, &method.digest);
        }
        ServiceSchema {
            name: self.name,
            methods,
            types,
            fingerprint: hex(&hasher.finalize()),
        }
    }
}

/// Adds the arguments and return type of one method.
pub struct MethodBuilder<'a> {
    builder: &'a mut SchemaBuilder,
}

impl MethodBuilder<'_> {
    fn trace<T: Serialize + Deserialize<'static>>(&mut self) -> Shape {
        let builder = &mut *self.builder;
        let method = builder.methods.last_mut().expect("method() came first");
        match builder.tracer.trace::<T>() {
            Ok(shape) => shape,
            Err(error) => {
                method.error.get_or_insert_with(|| error.to_string());
                Shape::Unknown
            }
        }
    }

    /// Adds an argument named `name` whose wire type is `T`.
    pub fn arg<T: Serialize + Deserialize<'static>>(mut self, name: &str) -> Self {
        let shape = self.trace::<T>();
        let method = self
            .builder
            .methods
            .last_mut()
            .expect("method() came first");
        method.args.push(ArgSchema {
            name: name.to_owned(),
            shape,
        });
        self
    }

    /// Sets the return type's wire type `T`.
    pub fn output<T: Serialize + Deserialize<'static>>(mut self) {
        let shape = self.trace::<T>();
        self.builder
            .methods
            .last_mut()
            .expect("method() came first")
            .output = shape;
    }
}

impl MethodSchema {
    /// The deadline the method gives its calls: `None` when it says nothing (the caller's
    /// default applies), `Some(None)` for `#[rpc(timeout = "none")]` (no deadline).
    pub fn own_timeout(&self) -> Option<Option<std::time::Duration>> {
        self.timeout_ms
            .map(|ms| (ms != u64::MAX).then(|| std::time::Duration::from_millis(ms)))
    }
}

impl ServiceSchema {
    /// The method whose wire id is `id`.
    pub fn method(&self, id: u32) -> Option<&MethodSchema> {
        self.methods.iter().find(|m| m.id == id)
    }

    /// The wire name of method `id`, or `#id` when there is none.
    pub fn method_name(&self, id: u32) -> String {
        self.method_label(id).to_string()
    }

    /// [`method_name`](Self::method_name), formatted only when shown (a call span nobody
    /// records allocates nothing for it).
    pub(crate) fn method_label(&self, id: u32) -> MethodLabel<'_> {
        MethodLabel { schema: self, id }
    }

    /// The schema as pretty JSON (what `calc-server --schema` prints).
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a schema always serializes")
    }

    /// The schema as compact JSON (what the handshake sends).
    pub fn to_compact_json(&self) -> String {
        serde_json::to_string(self).expect("a schema always serializes")
    }

    /// Reads a schema written by [`ServiceSchema::to_json`]. Nesting deeper than
    /// `serde_json`'s limit (128) is an error, never a stack overflow.
    pub fn from_json(json: &str) -> Result<ServiceSchema, serde_json::Error> {
        serde_json::from_str(json)
    }
}

fn hash_str(hasher: &mut Sha256, text: &str) {
    hasher.update((text.len() as u64).to_le_bytes());
    hasher.update(text.as_bytes());
}

/// The digest of what a call of `method` puts on the wire.
fn method_digest(method: &MethodSchema, types: &Types) -> String {
    let mut hasher = Sha256::new();
    hash_str(&mut hasher, &method.name);
    hasher.update(method.id.to_le_bytes());
    hasher.update((method.args.len() as u64).to_le_bytes());
    let mut bytes = Vec::new();
    for shape in method.args.iter().map(|a| &a.shape).chain([&method.output]) {
        bytes.clear();
        canonical_bytes(shape, types, &mut bytes);
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(&bytes);
    }
    if let Some(error) = &method.error {
        hash_str(&mut hasher, error);
    }
    hex(&hasher.finalize())
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// A method's wire name, or `#id` when the schema has none: see
/// [`ServiceSchema::method_label`].
pub(crate) struct MethodLabel<'a> {
    schema: &'a ServiceSchema,
    id: u32,
}

impl std::fmt::Display for MethodLabel<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.schema.method(self.id) {
            Some(method) => f.write_str(&method.name),
            None => write!(f, "#{}", self.id),
        }
    }
}
