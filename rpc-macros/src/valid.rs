//! Every rule a service trait must follow. All mistakes are collected, each pointing at the
//! user's own tokens, so one build shows them all.

use std::collections::HashMap;

use syn::{Error, FnArg, Type};

use crate::ast::{Method, Service};

/// Names the generated client already uses for its own methods.
const RESERVED: &[&str] = &[
    "connect",
    "connect_with",
    "from_connection",
    "with_options",
    "with_timeout",
    "with_metadata",
    "client",
];

/// Checks `service`; returns every mistake found.
pub fn validate(service: &Service<'_>) -> Vec<Error> {
    let mut errors = Vec::new();
    let item = service.original;
    if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
        errors.push(Error::new_spanned(
            &item.generics,
            "a service trait cannot be generic: the client and server must agree on concrete types",
        ));
    }
    if let Some(unsafety) = &item.unsafety {
        errors.push(Error::new_spanned(
            unsafety,
            "a service trait cannot be `unsafe`",
        ));
    }
    for other in &service.other_items {
        errors.push(Error::new_spanned(
            other,
            "a service trait holds only methods (`async fn name(&self, ...) -> T;`)",
        ));
    }
    let mut seen: HashMap<String, &syn::Ident> = HashMap::new();
    for method in &service.methods {
        check_method(method, &mut errors);
        let name = method.name.to_string();
        if seen.insert(name.clone(), method.name).is_some() {
            errors.push(Error::new_spanned(
                method.name,
                format!(
                    "method `{name}` is defined twice; every service method needs its own name"
                ),
            ));
        }
        if RESERVED.contains(&name.as_str()) {
            errors.push(Error::new_spanned(
                method.name,
                format!("`{name}` is reserved: the generated client has a method of that name; rename this one"),
            ));
        }
    }
    errors
}

fn check_method(method: &Method<'_>, errors: &mut Vec<Error>) {
    let sig = &method.original.sig;
    if sig.asyncness.is_none() {
        errors.push(Error::new_spanned(
            sig.fn_token,
            format!(
                "service methods must be `async fn`; write `async fn {}(&self, ...)`",
                method.name
            ),
        ));
    }
    if let Some(token) = &sig.constness {
        errors.push(Error::new_spanned(
            token,
            "service methods cannot be `const`",
        ));
    }
    if let Some(token) = &sig.unsafety {
        errors.push(Error::new_spanned(
            token,
            "service methods cannot be `unsafe`",
        ));
    }
    if let Some(abi) = &sig.abi {
        errors.push(Error::new_spanned(
            abi,
            "service methods cannot declare an ABI",
        ));
    }
    if let Some(variadic) = &sig.variadic {
        errors.push(Error::new_spanned(
            variadic,
            "service methods cannot be variadic",
        ));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.push(Error::new_spanned(
            &sig.generics,
            format!(
                "service method `{}` cannot be generic: its argument and return types must be concrete so both sides agree on them",
                method.name
            ),
        ));
    }
    check_receiver(method, errors);
    for arg in &method.args {
        if arg.name.is_none() {
            errors.push(Error::new_spanned(
                arg.pat,
                "service method arguments must be plain names (`x: T`), not patterns; destructure inside the implementation",
            ));
        }
        check_owned(arg.ty, "argument", errors);
    }
    if let Some(output) = method.output {
        check_owned(output, "return", errors);
    }
    if let Some(body) = &method.original.default {
        errors.push(Error::new_spanned(
            body,
            "service methods have no default body; implement them on your server type",
        ));
    }
}

fn check_receiver(method: &Method<'_>, errors: &mut Vec<Error>) {
    let sig = &method.original.sig;
    match sig.inputs.first() {
        Some(FnArg::Receiver(receiver))
            if receiver.reference.is_some() && receiver.mutability.is_none() && receiver.colon_token.is_none() => {}
        Some(FnArg::Receiver(receiver)) => errors.push(Error::new_spanned(
            receiver,
            "service methods take `&self`: the server shares one value among concurrent calls (use interior mutability for state)",
        )),
        _ => errors.push(Error::new(
            sig.paren_token.span.join(),
            format!(
                "service method `{}` must take `&self` as its first argument",
                method.name
            ),
        )),
    }
}

/// Rejects borrowed and `impl Trait` types: values cross a process boundary, so they are owned.
fn check_owned(ty: &Type, role: &str, errors: &mut Vec<Error>) {
    match ty {
        Type::Reference(_) => errors.push(Error::new_spanned(
            ty,
            format!("{role} types must be owned (for example `String`, not `&str`): values are sent to another process"),
        )),
        Type::ImplTrait(_) => errors.push(Error::new_spanned(
            ty,
            format!("{role} types must be concrete serde types, not `impl Trait`"),
        )),
        _ => {}
    }
}
