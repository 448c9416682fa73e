//! The differences between two shapes, in words, each with the path to where it is.
//!
//! A path starts at the outermost named container and goes down through field names
//! (`Order.line.sku`), tuple elements (`.0`), enum variants (`Status::Shipped`), option
//! contents (`?`), sequence elements (`[]`) and map keys and values (`{key}`, `{value}`).
//! Where two shapes differ outside any container, the message has no path.

use std::collections::HashSet;

use super::shape::{Definition, Field, Payload, Shape, Types, base_name};

/// Every difference between a value shaped `client` (its containers in `client_types`) and
/// one shaped `server`, in words, each starting with the path to it.
///
/// Empty when the two shapes are the same: same structure, same container, field and variant
/// names, in the same order. [`Shape::Unknown`] is never the same as anything; a container
/// missing from both tables is compared by name only.
pub fn differences(
    client: &Shape,
    client_types: &Types,
    server: &Shape,
    server_types: &Types,
) -> Vec<String> {
    differences_between(
        ("client", client, client_types),
        ("server", server, server_types),
    )
}

/// [`differences`] with other names for the two sides, such as `("old", ..)` and
/// `("new", ..)` for two versions of a service.
pub fn differences_between(
    (ours, client, client_types): (&str, &Shape, &Types),
    (theirs, server, server_types): (&str, &Shape, &Types),
) -> Vec<String> {
    let mut walk = Walk {
        client: client_types,
        server: server_types,
        sides: (ours, theirs),
        seen: HashSet::new(),
        out: Vec::new(),
    };
    walk.slot("", client, server);
    walk.out
}

struct Walk<'t> {
    /// What the two sides are called in messages: `("client", "server")`.
    sides: (&'t str, &'t str),
    client: &'t Types,
    server: &'t Types,
    /// The pairs of containers already compared, or being compared.
    seen: HashSet<(&'t str, &'t str)>,
    out: Vec<String>,
}

/// `path: message`, or just the message at the top.
fn at(path: &str, message: impl std::fmt::Display) -> String {
    match path {
        "" => message.to_string(),
        _ => format!("{path}: {message}"),
    }
}

/// `path` extended by `step`; nothing is added before the first container.
fn step(path: &str, step: impl std::fmt::Display) -> String {
    match path {
        "" => String::new(),
        _ => format!("{path}{step}"),
    }
}

/// Whether two shapes look the same without looking inside containers (compared by name).
fn same_outline(a: &Shape, b: &Shape) -> bool {
    match (a, b) {
        (Shape::Unknown, _) | (_, Shape::Unknown) => false,
        (Shape::Option(a), Shape::Option(b)) | (Shape::Seq(a), Shape::Seq(b)) => same_outline(a, b),
        (Shape::Map { key: ka, value: va }, Shape::Map { key: kb, value: vb }) => {
            same_outline(ka, kb) && same_outline(va, vb)
        }
        (Shape::Tuple(a), Shape::Tuple(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|(a, b)| same_outline(a, b))
        }
        (Shape::Named(a), Shape::Named(b)) => base_name(a) == base_name(b),
        (a, b) => a == b,
    }
}

fn tuple(shapes: &[Shape]) -> String {
    Shape::Tuple(shapes.to_vec()).describe()
}

fn names<'a, T>(items: &'a [T], name: impl Fn(&'a T) -> &'a str) -> Vec<&'a str> {
    items.iter().map(name).collect()
}

impl<'t> Walk<'t> {
    fn differ(
        &mut self,
        path: &str,
        client: impl std::fmt::Display,
        server: impl std::fmt::Display,
    ) {
        let (ours, theirs) = self.sides;
        self.out
            .push(at(path, format_args!("{ours} {client}, {theirs} {server}")));
    }

    /// Two values at `path`: the whole shapes if they differ outside containers, else the
    /// containers they hold.
    fn slot(&mut self, path: &str, client: &'t Shape, server: &'t Shape) {
        if same_outline(client, server) {
            self.inside(path, client, server);
        } else {
            self.differ(path, client.describe(), server.describe());
        }
    }

    /// The containers in two shapes with the same outline.
    fn inside(&mut self, path: &str, client: &'t Shape, server: &'t Shape) {
        match (client, server) {
            (Shape::Option(c), Shape::Option(s)) => self.inside(&step(path, "?"), c, s),
            (Shape::Seq(c), Shape::Seq(s)) => self.inside(&step(path, "[]"), c, s),
            (Shape::Map { key: ck, value: cv }, Shape::Map { key: sk, value: sv }) => {
                self.inside(&step(path, "{key}"), ck, sk);
                self.inside(&step(path, "{value}"), cv, sv);
            }
            (Shape::Tuple(c), Shape::Tuple(s)) => {
                for (i, (c, s)) in c.iter().zip(s).enumerate() {
                    self.inside(&step(path, format_args!(".{i}")), c, s);
                }
            }
            (Shape::Named(c), Shape::Named(s)) => self.container(path, c, s),
            _ => {}
        }
    }

    fn container(&mut self, path: &str, client: &'t str, server: &'t str) {
        if !self.seen.insert((client, server)) {
            return;
        }
        let path = match path {
            "" => base_name(client).to_owned(),
            _ => path.to_owned(),
        };
        let (c, s) = match (self.client.get(client), self.server.get(server)) {
            (Some(c), Some(s)) => (c, s),
            (None, None) => return,
            (c, s) => {
                let side = |d: Option<&Definition>| d.map_or("(no definition)".into(), kind);
                return self.differ(&path, side(c), side(s));
            }
        };
        match (c, s) {
            (Definition::UnitStruct, Definition::UnitStruct) => {}
            (Definition::NewtypeStruct(c), Definition::NewtypeStruct(s)) => {
                self.slot(&format!("{path}.0"), c, s);
            }
            (Definition::TupleStruct(c), Definition::TupleStruct(s)) => self.elements(&path, c, s),
            (Definition::Struct(c), Definition::Struct(s)) => self.fields(&path, c, s),
            (Definition::Enum(c), Definition::Enum(s)) => {
                let (cn, sn) = (names(c, |v| &v.name), names(s, |v| &v.name));
                self.members(&path, "variant", &cn, &sn);
                for variant in c {
                    if let Some(other) = s.iter().find(|v| v.name == variant.name) {
                        let path = format!("{path}::{}", variant.name);
                        self.payloads(&path, &variant.payload, &other.payload);
                    }
                }
            }
            (c, s) => self.differ(&path, kind(c), kind(s)),
        }
    }

    fn payloads(&mut self, path: &str, client: &'t Payload, server: &'t Payload) {
        match (client, server) {
            (Payload::Unit, Payload::Unit) => {}
            (Payload::Newtype(c), Payload::Newtype(s)) => self.slot(&format!("{path}.0"), c, s),
            (Payload::Tuple(c), Payload::Tuple(s)) => self.elements(path, c, s),
            (Payload::Struct(c), Payload::Struct(s)) => self.fields(path, c, s),
            (c, s) => self.differ(path, payload(c), payload(s)),
        }
    }

    fn elements(&mut self, path: &str, client: &'t [Shape], server: &'t [Shape]) {
        if client.len() != server.len() {
            return self.differ(path, tuple(client), tuple(server));
        }
        for (i, (c, s)) in client.iter().zip(server).enumerate() {
            self.slot(&format!("{path}.{i}"), c, s);
        }
    }

    fn fields(&mut self, path: &str, client: &'t [Field], server: &'t [Field]) {
        let (cn, sn) = (names(client, |f| &f.name), names(server, |f| &f.name));
        self.members(path, "field", &cn, &sn);
        for field in client {
            if let Some(other) = server.iter().find(|f| f.name == field.name) {
                self.slot(
                    &format!("{path}.{}", field.name),
                    &field.shape,
                    &other.shape,
                );
            }
        }
    }

    /// Fields or variants present on one side only, or in another order.
    fn members(&mut self, path: &str, what: &str, client: &[&str], server: &[&str]) {
        let (ours, theirs) = self.sides;
        for name in client.iter().filter(|n| !server.contains(n)) {
            self.out
                .push(at(path, format_args!("{what} '{name}' only on the {ours}")));
        }
        for name in server.iter().filter(|n| !client.contains(n)) {
            self.out.push(at(
                path,
                format_args!("{what} '{name}' only on the {theirs}"),
            ));
        }
        let common = |a: &[&str], b: &[&str]| -> Vec<String> {
            a.iter()
                .filter(|n| b.contains(n))
                .map(|n| n.to_string())
                .collect()
        };
        if common(client, server) != common(server, client) {
            self.out.push(at(
                path,
                format_args!(
                    "{what}s in another order: {ours} ({}), {theirs} ({})",
                    client.join(", "),
                    server.join(", ")
                ),
            ));
        }
    }
}

/// A definition's kind, for a message: `struct`, `enum`, ...
fn kind(definition: &Definition) -> String {
    match definition {
        Definition::UnitStruct => "unit struct".into(),
        Definition::NewtypeStruct(shape) => format!("newtype struct ({})", shape.describe()),
        Definition::TupleStruct(shapes) => format!("tuple struct {}", tuple(shapes)),
        Definition::Struct(_) => "struct".into(),
        Definition::Enum(_) => "enum".into(),
    }
}

/// A variant's payload, for a message: `unit`, `(u32)`, `(u32, u8)`, `{ a: u32 }`.
fn payload(payload: &Payload) -> String {
    match payload {
        Payload::Unit => "unit".into(),
        Payload::Newtype(shape) => format!("({})", shape.describe()),
        Payload::Tuple(shapes) => tuple(shapes),
        Payload::Struct(fields) => {
            let fields: Vec<String> = fields
                .iter()
                .map(|f| format!("{}: {}", f.name, f.shape.describe()))
                .collect();
            format!("{{ {} }}", fields.join(", "))
        }
    }
}
