//! Every rule a service trait must follow. All mistakes are collected, each pointing at the
//! user's own tokens, so one build shows them all.

use std::collections::HashMap;

use proc_macro2::TokenTree;
use quote::ToTokens;
use syn::{Error, FnArg, TraitItem, Type};

use crate::ast::{Method, Service};

/// Names the generated clients already use for their own items.
const RESERVED: &[&str] = &[
    "connect",
    "connect_with",
    "spawn",
    "from_connection",
    "with_options",
    "with_timeout",
    "with_metadata",
    "client",
    "schema",
];

/// The most arguments a method takes: serde encodes tuples of up to 16 elements.
const MAX_ARGS: usize = 16;

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
        errors.push(other_item(other));
    }
    let mut seen: HashMap<String, &syn::Ident> = HashMap::new();
    let mut wire_names: HashMap<String, &Method<'_>> = HashMap::new();
    let mut ids: HashMap<u32, &Method<'_>> = HashMap::new();
    let mut variants: HashMap<String, &Method<'_>> = HashMap::new();
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
            continue;
        }
        if RESERVED.contains(&name.as_str()) {
            errors.push(Error::new_spanned(
                method.name,
                format!("`{name}` is reserved: the generated client has an item of that name; rename the method and keep its wire name with `#[rpc(name = \"{name}\")]`"),
            ));
        }
        let wire_name = method.wire_name();
        if let Some(first) = wire_names.insert(wire_name.clone(), method) {
            errors.push(Error::new_spanned(
                method.name,
                format!(
                    "methods `{}` and `{name}` both have the wire name \"{wire_name}\"; give one another `#[rpc(name = \"...\")]`",
                    first.name
                ),
            ));
            continue;
        }
        let variant = method.variant_name();
        if !method.streams()
            && let Some(first) = variants.insert(variant.clone(), method)
        {
            errors.push(Error::new_spanned(
                method.name,
                format!(
                    "methods `{}` and `{name}` would both be the variant `{variant}` of `{}Request`; rename one (keeping its wire name with `#[rpc(name = \"...\")]`)",
                    first.name,
                    service.name()
                ),
            ));
        }
        let id = method.wire_id();
        if let Some(first) = ids.insert(id, method) {
            errors.push(Error::new_spanned(
                method.name,
                format!(
                    "methods `{}` and `{name}` both have the wire id {id}; give one another `#[rpc(id = N)]`",
                    first.name
                ),
            ));
        }
    }
    errors
}

/// The mistake of a trait item that is not a method.
fn other_item(item: &TraitItem) -> Error {
    match item {
        TraitItem::Type(ty) => Error::new_spanned(
            ty,
            format!(
                "a service trait cannot have associated types: client and server must agree on concrete types; define `{}` outside the trait and name it in the methods",
                ty.ident
            ),
        ),
        TraitItem::Const(konst) => Error::new_spanned(
            konst,
            format!(
                "a service trait cannot have associated consts: only methods cross the wire; make `{}` a `const` outside the trait",
                konst.ident
            ),
        ),
        other => Error::new_spanned(
            other,
            "a service trait holds only methods (`async fn name(&self, ...) -> T;`)",
        ),
    }
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
    errors.extend(method.attr_errors.iter().cloned());
    check_receiver(method, errors);
    for (index, arg) in method.args.iter().enumerate() {
        if arg.name.is_none() {
            errors.push(Error::new_spanned(
                arg.pat,
                "service method arguments must be plain names (`x: T`), not patterns; destructure inside the implementation",
            ));
        }
        if index == MAX_ARGS {
            errors.push(Error::new_spanned(
                arg.pat,
                format!(
                    "service method `{}` has {} arguments; at most {MAX_ARGS} are supported (serde's tuple limit): group the rest in a struct",
                    method.name,
                    method.args.len()
                ),
            ));
        }
        check_argument(arg.ty, errors);
    }
    let mut streams = method
        .args
        .iter()
        .filter(|arg| crate::types::stream_item(arg.ty).is_some());
    if let (Some(_), Some(second)) = (streams.next(), streams.next()) {
        errors.push(Error::new_spanned(
            second.ty,
            "a method takes at most one `Streaming` argument: a call carries one stream each way; send an enum or a struct per item instead",
        ));
    }
    if let Some(output) = method.output {
        check_return(output, errors);
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

/// Arguments are owned serde types or shared references to one (`&str`, `&[u8]`, `&[T]`,
/// `&T`) without a lifetime of their own.
fn check_argument(ty: &Type, errors: &mut Vec<Error>) {
    let inner = match ty {
        Type::Reference(reference) => match &*reference.elem {
            Type::Slice(slice) => &*slice.elem,
            elem => elem,
        },
        other => other,
    };
    if borrows(inner) {
        errors.push(Error::new_spanned(
            inner,
            "borrowed data is supported only at the top of an argument (`&str`, `&[u8]`, `&[T]`, `&T`); inside it use owned types (`String`, `Vec<u8>`, ...) or `'static` ones",
        ));
        return;
    }
    match ty {
        Type::Reference(reference) => {
            if reference.mutability.is_some() {
                errors.push(Error::new_spanned(
                    ty,
                    "arguments cannot be `&mut`: the value is decoded on the server, and changes to it would never reach the caller; take `&T` or `T` and return what changed",
                ));
            } else if let Some(lifetime) = &reference.lifetime {
                errors.push(Error::new_spanned(
                    lifetime,
                    "borrowed arguments take no lifetime: write `&str`, `&[u8]` or `&T` (they borrow the received request for the duration of the call)",
                ));
            }
            match &*reference.elem {
                Type::Reference(_) | Type::ImplTrait(_) | Type::TraitObject(_) => {
                    errors.push(Error::new_spanned(
                        ty,
                        "a borrowed argument is `&str`, `&[u8]`, `&[T]` or `&T` with `T` a concrete serde type",
                    ))
                }
                _ => {}
            }
        }
        Type::ImplTrait(_) => errors.push(Error::new_spanned(
            ty,
            "argument types must be concrete serde types, not `impl Trait`; name the type",
        )),
        _ => {}
    }
}

/// Whether `ty` holds a reference or a lifetime other than `'static`.
fn borrows(ty: &Type) -> bool {
    fn scan(tokens: proc_macro2::TokenStream) -> bool {
        let mut tokens = tokens.into_iter().peekable();
        while let Some(token) = tokens.next() {
            match token {
                TokenTree::Punct(p) if p.as_char() == '&' => return true,
                TokenTree::Punct(p)
                    if p.as_char() == '\''
                        && !matches!(tokens.peek(), Some(TokenTree::Ident(i)) if i == "static") =>
                {
                    return true;
                }
                TokenTree::Group(group) if scan(group.stream()) => return true,
                _ => {}
            }
        }
        false
    }
    scan(ty.to_token_stream())
}

/// Return types are owned serde types: the value is sent to another process.
fn check_return(ty: &Type, errors: &mut Vec<Error>) {
    if !matches!(ty, Type::Reference(_)) && borrows(ty) {
        errors.push(Error::new_spanned(
            ty,
            "return types must be owned (for example `Option<String>`, not `Option<&str>`): the value is sent to another process",
        ));
        return;
    }
    match ty {
        Type::Reference(_) => errors.push(Error::new_spanned(
            ty,
            "return types must be owned (for example `String`, not `&str`): the value is sent to another process",
        )),
        Type::ImplTrait(_) => errors.push(Error::new_spanned(
            ty,
            "return types must be concrete serde types, not `impl Trait`; name the type",
        )),
        _ => {}
    }
}
