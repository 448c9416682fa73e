//! The trait, parsed: each method with its arguments and return type, each part still pointing
//! at the user's tokens.

use proc_macro2::Ident;
use syn::ext::IdentExt;
use syn::{Attribute, Error, FnArg, ItemTrait, Pat, ReturnType, TraitItem, TraitItemFn, Type};

use crate::attr::{RpcAttrs, wire_id};

/// A service trait.
pub struct Service<'a> {
    /// The trait as written.
    pub original: &'a ItemTrait,
    /// Its methods, in declaration order (the order means nothing on the wire: ids do).
    pub methods: Vec<Method<'a>>,
    /// Items that are not methods (constants, types, macros): each is a mistake.
    pub other_items: Vec<&'a TraitItem>,
}

/// One method.
pub struct Method<'a> {
    pub original: &'a TraitItemFn,
    pub name: &'a Ident,
    /// The arguments after the receiver.
    pub args: Vec<Arg<'a>>,
    /// The return type; `None` for `()`.
    pub output: Option<&'a Type>,
    /// `#[doc]` attributes, carried onto the client's methods.
    pub docs: Vec<&'a Attribute>,
    /// `#[deprecated]`, carried onto the client's methods.
    pub deprecated: Option<&'a Attribute>,
    /// `#[cfg(...)]`, carried onto everything generated for the method.
    pub cfgs: Vec<&'a Attribute>,
    /// Lint levels (`#[allow(...)]` and the like), carried onto the client's methods.
    pub lints: Vec<&'a Attribute>,
    /// What `#[rpc(...)]` says.
    pub rpc: RpcAttrs,
    /// Mistakes in `#[rpc(...)]`, reported by validation.
    pub attr_errors: Vec<Error>,
}

impl Method<'_> {
    /// The Rust name, without `r#`.
    pub fn rust_name(&self) -> String {
        self.name.unraw().to_string()
    }

    /// The name on the wire: `#[rpc(name)]`, else the Rust name.
    pub fn wire_name(&self) -> String {
        self.rpc
            .name
            .as_ref()
            .map_or_else(|| self.rust_name(), |lit| lit.value())
    }

    /// The name of the method's variant in `{Trait}Request` and `{Trait}Response`: the Rust
    /// name in UpperCamelCase (`get_item` and `GetItem` give `GetItem`).
    pub fn variant_name(&self) -> String {
        let mut variant = String::new();
        for part in self.rust_name().split('_').filter(|part| !part.is_empty()) {
            let mut chars = part.chars();
            if let Some(first) = chars.next() {
                variant.extend(first.to_uppercase());
                variant.push_str(chars.as_str());
            }
        }
        // `Self` is a keyword, and an identifier cannot start with a digit.
        if variant.is_empty()
            || variant == "Self"
            || variant.starts_with(|c: char| c.is_ascii_digit())
        {
            variant.insert_str(0, "Call");
        }
        variant
    }

    /// Whether the method streams either way (such methods have no request variant).
    pub fn streams(&self) -> bool {
        self.args
            .iter()
            .any(|arg| crate::types::stream_item(arg.ty).is_some())
            || self.output.and_then(crate::types::stream_item).is_some()
    }

    /// The wire id: `#[rpc(id)]`, else derived from the wire name.
    pub fn wire_id(&self) -> u32 {
        self.rpc
            .id
            .as_ref()
            .map_or_else(|| wire_id(&self.wire_name()), |(_, id)| *id)
    }
}

/// One argument after the receiver.
pub struct Arg<'a> {
    /// The argument's name, when its pattern is a plain identifier.
    pub name: Option<&'a Ident>,
    pub pat: &'a Pat,
    pub ty: &'a Type,
}

impl<'a> Service<'a> {
    pub fn from_syn(item: &'a ItemTrait) -> Self {
        let mut methods = Vec::new();
        let mut other_items = Vec::new();
        for trait_item in &item.items {
            match trait_item {
                TraitItem::Fn(method) => methods.push(Method::from_syn(method)),
                other => other_items.push(other),
            }
        }
        Service {
            original: item,
            methods,
            other_items,
        }
    }

    pub fn name(&self) -> &'a Ident {
        &self.original.ident
    }
}

impl<'a> Method<'a> {
    fn from_syn(method: &'a TraitItemFn) -> Self {
        let args = method
            .sig
            .inputs
            .iter()
            .filter_map(|input| match input {
                FnArg::Receiver(_) => None,
                FnArg::Typed(typed) => Some(Arg {
                    name: match &*typed.pat {
                        Pat::Ident(p) if p.by_ref.is_none() && p.subpat.is_none() => Some(&p.ident),
                        _ => None,
                    },
                    pat: &typed.pat,
                    ty: &typed.ty,
                }),
            })
            .collect();
        let output = match &method.sig.output {
            ReturnType::Default => None,
            ReturnType::Type(_, ty) => Some(&**ty),
        };
        let mut attr_errors = Vec::new();
        let rpc = RpcAttrs::parse(&method.attrs, &mut attr_errors);
        Method {
            original: method,
            name: &method.sig.ident,
            args,
            output,
            docs: method
                .attrs
                .iter()
                .filter(|a| a.path().is_ident("doc"))
                .collect(),
            deprecated: method
                .attrs
                .iter()
                .find(|a| a.path().is_ident("deprecated")),
            cfgs: method
                .attrs
                .iter()
                .filter(|a| a.path().is_ident("cfg"))
                .collect(),
            lints: method
                .attrs
                .iter()
                .filter(|a| {
                    ["allow", "warn", "deny", "forbid", "expect"]
                        .iter()
                        .any(|lint| a.path().is_ident(lint))
                })
                .collect(),
            rpc,
            attr_errors,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn variant_names_are_upper_camel_case() {
        let variant = |method: syn::TraitItemFn| super::Method::from_syn(&method).variant_name();
        assert_eq!(
            variant(syn::parse_quote!(
                async fn get_item(&self);
            )),
            "GetItem"
        );
        assert_eq!(
            variant(syn::parse_quote!(
                async fn GetItem(&self);
            )),
            "GetItem"
        );
        assert_eq!(
            variant(syn::parse_quote!(
                async fn r#type(&self);
            )),
            "Type"
        );
        assert_eq!(
            variant(syn::parse_quote!(
                async fn __add_2(&self);
            )),
            "Add2"
        );
        assert_eq!(
            variant(syn::parse_quote!(
                async fn self_(&self);
            )),
            "CallSelf"
        );
        assert_eq!(
            variant(syn::parse_quote!(
                async fn x_1(&self);
            )),
            "X1"
        );
    }
}
