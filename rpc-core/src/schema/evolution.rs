//! How a service may change: which methods a client may call on a server built from another
//! version of the trait ([`Compatibility`]), and which changes between two versions break
//! someone ([`breaking_changes`], what `rpc-schema diff` reports).
//!
//! The rules (each has a test in `tests/tests/evolution.rs` or `rpc-core`'s unit tests):
//! 1. A method is callable when both sides have its id with the same wire name, the same
//!    argument shapes (by position) and the same return shape. Argument names, docs, the Rust
//!    method's name, `#[deprecated]` and `#[rpc(timeout)]` do not matter.
//! 2. Adding a method breaks nobody: old clients never call it, and new clients calling it
//!    on an old server get `RpcError::IncompatibleMethod` before anything is sent.
//! 3. Removing a method breaks the clients that call it (`method-removed`).
//! 4. Changing a method's arguments or return type (any shape inside them: a field's type,
//!    a field added, removed, renamed or moved, a variant added, removed or changed, a type
//!    renamed) breaks its callers (`arguments-changed`, `return-changed`). Add a new method
//!    instead, and remove the old one once no client calls it.
//! 5. Changing a method's wire name or id breaks its callers (`method-renamed`,
//!    `id-changed`); rename the Rust method and keep `#[rpc(name = "old")]` instead.
//! 6. Renaming the service breaks every client (`service-renamed`).
//! 7. Taking `#[rpc(idempotent)]` away breaks clients that retry the method
//!    (`idempotency-removed`); adding it breaks nobody.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::compare::{differences, differences_between};
use super::service::{MethodSchema, ServiceSchema};

/// Which of a client's methods it may call on one server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compatibility {
    /// Per client method, sorted by id: its id, its position in the client's schema, and
    /// `None` when callable, else why not.
    methods: Vec<(u32, usize, Option<String>)>,
    /// Methods of the server the client does not have, by wire name.
    server_only: Vec<String>,
}

impl Compatibility {
    /// Compares the `client`'s methods with the `server`'s.
    pub fn between(client: &ServiceSchema, server: &ServiceSchema) -> Compatibility {
        let mut methods: Vec<(u32, usize, Option<String>)> = client
            .methods
            .iter()
            .enumerate()
            .map(|(at, ours)| (ours.id, at, method_difference(ours, client, server)))
            .collect();
        methods.sort_by_key(|(id, _, _)| *id);
        let server_only = server
            .methods
            .iter()
            .filter(|theirs| client.method(theirs.id).is_none())
            .filter(|theirs| !client.methods.iter().any(|m| m.name == theirs.name))
            .map(|theirs| theirs.name.clone())
            .collect();
        Compatibility {
            methods,
            server_only,
        }
    }

    /// `Ok(its position in the client's schema)` when method `id` may be called, else why
    /// not.
    pub fn check(&self, id: u32) -> Result<usize, &str> {
        match self.methods.binary_search_by_key(&id, |(id, _, _)| *id) {
            Ok(at) => match &self.methods[at] {
                (_, position, None) => Ok(*position),
                (_, _, Some(why)) => Err(why),
            },
            Err(_) => Err("the client's schema has no method with this id"),
        }
    }

    /// Every difference, for a strict client: each method that cannot be called, and each
    /// method only the server has.
    pub fn differences(&self, client: &ServiceSchema) -> Vec<String> {
        let mut out: Vec<String> = client
            .methods
            .iter()
            .filter_map(|m| match self.check(m.id) {
                Ok(_) => None,
                Err(why) => Some(format!("method '{}': {why}", m.name)),
            })
            .collect();
        out.extend(
            self.server_only
                .iter()
                .map(|name| format!("method '{name}' is missing on the client")),
        );
        out
    }
}

/// Why the client's `ours` cannot be called on `server`, or `None` when it can.
fn method_difference(
    ours: &MethodSchema,
    client: &ServiceSchema,
    server: &ServiceSchema,
) -> Option<String> {
    if let Some(error) = &ours.error {
        return Some(format!("the client {error}"));
    }
    let Some(theirs) = server.method(ours.id) else {
        return Some(match server.methods.iter().find(|m| m.name == ours.name) {
            Some(theirs) => format!(
                "its id is {} on the client but {} on the server",
                ours.id, theirs.id
            ),
            None => "the server has no such method".to_owned(),
        });
    };
    if theirs.name != ours.name {
        return Some(format!(
            "the server's method with id {} is '{}'",
            ours.id, theirs.name
        ));
    }
    if let Some(error) = &theirs.error {
        return Some(format!("the server {error}"));
    }
    if ours.digest == theirs.digest {
        return None;
    }
    let found = shape_differences(ours, client, theirs, server);
    Some(if found.is_empty() {
        "the method's digests differ".to_owned()
    } else {
        found.join("; ")
    })
}

/// Each difference in the arguments and return value of two versions of one method.
fn shape_differences(
    ours: &MethodSchema,
    client: &ServiceSchema,
    theirs: &MethodSchema,
    server: &ServiceSchema,
) -> Vec<String> {
    let mut out = Vec::new();
    if ours.args.len() != theirs.args.len() {
        out.push(format!(
            "the client sends {} argument(s), the server takes {}",
            ours.args.len(),
            theirs.args.len()
        ));
        return out;
    }
    for (a, b) in ours.args.iter().zip(&theirs.args) {
        for difference in differences(&a.shape, &client.types, &b.shape, &server.types) {
            out.push(format!("argument '{}': {difference}", a.name));
        }
    }
    for difference in differences(&ours.output, &client.types, &theirs.output, &server.types) {
        out.push(format!("return value: {difference}"));
    }
    out
}

/// A change between two versions of a service that breaks someone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokenRule {
    /// The rule's name, such as `method-removed`.
    pub rule: String,
    /// The method concerned, if the rule is about one.
    pub method: Option<String>,
    /// What changed.
    pub detail: String,
}

impl fmt::Display for BrokenRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.method {
            Some(method) => write!(f, "[{}] method '{method}': {}", self.rule, self.detail),
            None => write!(f, "[{}] {}", self.rule, self.detail),
        }
    }
}

/// Every change from `old` to `new` that breaks clients built from `old` (see the module's
/// rules). Empty when `new` may replace `old`.
pub fn breaking_changes(old: &ServiceSchema, new: &ServiceSchema) -> Vec<BrokenRule> {
    let mut out = Vec::new();
    let mut broke = |rule: &str, method: Option<&str>, detail: String| {
        out.push(BrokenRule {
            rule: rule.to_owned(),
            method: method.map(str::to_owned),
            detail,
        })
    };
    if old.name != new.name {
        broke(
            "service-renamed",
            None,
            format!("the service was '{}' and is now '{}'", old.name, new.name),
        );
    }
    for before in &old.methods {
        let name = Some(before.name.as_str());
        let after_by_id = new.method(before.id);
        let after_by_name = new.methods.iter().find(|m| m.name == before.name);
        let after = match (after_by_id, after_by_name) {
            (None, None) => {
                broke("method-removed", name, "the method was removed".into());
                continue;
            }
            (Some(after), _) if after.name != before.name => {
                broke(
                    "method-renamed",
                    name,
                    format!(
                        "its id {} now belongs to '{}'; keep the wire name with #[rpc(name = \"{}\")]",
                        before.id, after.name, before.name
                    ),
                );
                continue;
            }
            (None, Some(after)) => {
                broke(
                    "id-changed",
                    name,
                    format!("its id was {} and is now {}", before.id, after.id),
                );
                continue;
            }
            (Some(after), _) => after,
        };
        if before.args.len() != after.args.len() {
            broke(
                "arguments-changed",
                name,
                format!(
                    "it took {} argument(s) and now takes {}",
                    before.args.len(),
                    after.args.len()
                ),
            );
        } else {
            for (a, b) in before.args.iter().zip(&after.args) {
                for difference in differences_between(
                    ("old", &a.shape, &old.types),
                    ("new", &b.shape, &new.types),
                ) {
                    broke(
                        "arguments-changed",
                        name,
                        format!("argument '{}': {difference}", a.name),
                    );
                }
            }
        }
        for difference in differences_between(
            ("old", &before.output, &old.types),
            ("new", &after.output, &new.types),
        ) {
            broke(
                "return-changed",
                name,
                format!("return value: {difference}"),
            );
        }
        if before.idempotent && !after.idempotent {
            broke(
                "idempotency-removed",
                name,
                "it is no longer #[rpc(idempotent)]; clients that retry it would repeat its effect"
                    .into(),
            );
        }
    }
    out
}
