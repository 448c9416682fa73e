//! The tower side of the async client: `{Trait}Request`, `{Trait}Response` and
//! `impl tower::Service<{Trait}Request> for {Trait}Client`.
//!
//! Only methods that stream neither way get variants: a stream is not a value a middleware
//! can clone, retry or time as one response. Each variant keeps its method's `#[cfg]`s.
//!
//! `Debug` and `Clone` are written out with `where for<'__rpc> T: Trait` bounds on the field
//! types: the higher-ranked form makes a bound that fails leave the impl out instead of
//! failing the build, so a service whose argument type lacks `Clone` still compiles, and only
//! its request lacks `Clone` (and cannot be retried). Bounds of `#[cfg]`-gated methods are
//! left out: a where clause cannot carry `#[cfg]`.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};

use crate::ast::{Method, Service};
use crate::types::ArgKind;

/// A method with a variant, and the names generated for it.
struct Variant<'a> {
    method: &'a Method<'a>,
    name: Ident,
    /// The field names: the argument names.
    fields: Vec<&'a Ident>,
    /// The bindings of the fields in generated matches (never the user's names, which a
    /// constant in scope could turn into patterns).
    bindings: Vec<Ident>,
    /// The field types: the arguments' types, owned.
    types: Vec<TokenStream>,
    kinds: Vec<ArgKind<'a>>,
}

impl<'a> Variant<'a> {
    fn new(method: &'a Method<'a>, p: &TokenStream) -> Self {
        let kinds: Vec<ArgKind<'a>> = method.args.iter().map(|a| ArgKind::of(a.ty)).collect();
        Variant {
            method,
            name: format_ident!("{}", method.variant_name()),
            fields: method
                .args
                .iter()
                .map(|a| a.name.expect("validated"))
                .collect(),
            bindings: (0..kinds.len())
                .map(|i| format_ident!("__rpc_arg{}", i))
                .collect(),
            types: kinds.iter().map(|kind| owned(*kind, p)).collect(),
            kinds,
        }
    }

    fn output(&self) -> TokenStream {
        match self.method.output {
            Some(ty) => quote!(#ty),
            None => quote!(()),
        }
    }

    /// `Name { field: binding, ... }`.
    fn pattern(&self, by_ref: bool) -> TokenStream {
        let name = &self.name;
        let fields = &self.fields;
        let bindings = &self.bindings;
        let by_ref = by_ref.then(|| quote!(ref));
        quote!(#name { #(#fields: #by_ref #bindings),* })
    }
}

/// The owned type a request carries for an argument.
fn owned(kind: ArgKind<'_>, p: &TokenStream) -> TokenStream {
    match kind {
        ArgKind::Owned(ty) | ArgKind::Ref(ty) => quote!(#ty),
        ArgKind::ByteVec | ArgKind::ByteSlice => quote!(#p::Vec<u8>),
        ArgKind::Str => quote!(#p::String),
        ArgKind::Slice(elem) => quote!(#p::Vec<#elem>),
        ArgKind::Stream(item) => quote!(#p::Streaming<#item>),
    }
}

/// `where for<'__rpc> T: bound` for each type of the methods without `#[cfg]`.
fn bounds<'a>(
    types: impl Iterator<Item = (&'a Variant<'a>, TokenStream)>,
    bound: TokenStream,
) -> TokenStream {
    let predicates = predicates(types, bound);
    quote!(where #predicates)
}

/// The predicates of [`bounds`], each followed by a comma.
fn predicates<'a>(
    types: impl Iterator<Item = (&'a Variant<'a>, TokenStream)>,
    bound: TokenStream,
) -> TokenStream {
    let predicates = types
        .filter(|(variant, _)| variant.method.cfgs.is_empty())
        .map(|(_, ty)| quote!(for<'__rpc> #ty: #bound,));
    quote!(#(#predicates)*)
}

/// Everything generated for tower.
pub fn expand(service: &Service<'_>, client: &Ident, p: &TokenStream) -> TokenStream {
    let trait_name = service.name();
    let request = format_ident!("{}Request", trait_name);
    let response = format_ident!("{}Response", trait_name);
    let variants: Vec<Variant<'_>> = service
        .methods
        .iter()
        .filter(|m| !m.streams())
        .map(|m| Variant::new(m, p))
        .collect();
    let request_enum = request_enum(service, &request, client, &variants, p);
    let response_enum = response_enum(service, &response, &request, &variants, p);
    // The client's methods exist under the wire bounds: the impl repeats them, so a type
    // without serde's traits is reported once, at the user's type.
    let wire_bounds = crate::expand::wire_bounds(&service.methods, p);
    let service_impl = service_impl(&request, &response, client, &variants, wire_bounds, p);
    quote! {
        #request_enum
        #response_enum
        #service_impl
    }
}

fn request_enum(
    service: &Service<'_>,
    request: &Ident,
    client: &Ident,
    variants: &[Variant<'_>],
    p: &TokenStream,
) -> TokenStream {
    let vis = &service.original.vis;
    let trait_name = service.name();
    let doc = format!(
        "A call of a [`{trait_name}`] method, as a value: what [`{client}`] takes as a `tower::Service`, so tower's layers (timeout, retry, limits, load shedding, balancing) apply to it. One variant per method, its arguments as fields (borrowed ones owned: `String` for `&str`, `Vec<u8>` for `&[u8]`). Methods that stream (a `Streaming` argument or return type) have no variant: call them on the client. `Clone` and `Debug` when every argument type has them."
    );
    let defs = variants.iter().map(|v| {
        let method = v.method;
        let (cfgs, lints, docs, deprecated) =
            (&method.cfgs, &method.lints, &method.docs, method.deprecated);
        let default_doc = docs
            .is_empty()
            .then(|| format!("A call of `{}`.", method.wire_name()));
        let default_doc = default_doc.map(|doc| quote!(#[doc = #doc]));
        let name = &v.name;
        let fields = v.fields.iter().zip(&v.types).map(|(field, ty)| {
            let doc = format!("The `{}` argument.", syn::ext::IdentExt::unraw(*field));
            quote!(#[doc = #doc] #field: #ty)
        });
        quote! {
            #(#cfgs)* #(#lints)* #(#docs)* #default_doc #deprecated
            #name { #(#fields),* },
        }
    });
    let arms = |value: &dyn Fn(&Method<'_>) -> TokenStream| {
        variants
            .iter()
            .map(|v| {
                let cfgs = &v.method.cfgs;
                let name = &v.name;
                let value = value(v.method);
                quote!(#(#cfgs)* #request::#name { .. } => #value,)
            })
            .collect::<Vec<_>>()
    };
    let names = arms(&|m| {
        let name = m.wire_name();
        quote!(#name)
    });
    let idempotent = arms(&|m| {
        let idempotent = m.rpc.idempotent.is_some();
        quote!(#idempotent)
    });
    let field_types = || {
        variants
            .iter()
            .flat_map(|v| v.types.iter().map(move |ty| (v, ty.clone())))
    };
    let clone = clone_impl(
        request,
        false,
        variants,
        bounds(field_types(), quote!(#p::Clone)),
        p,
        |v| {
            let name = &v.name;
            let fields = &v.fields;
            let bindings = &v.bindings;
            quote!(#request::#name { #(#fields: #p::Clone::clone(#bindings)),* })
        },
    );
    let debug = debug_impl(
        request,
        false,
        variants,
        bounds(field_types(), quote!(#p::Debug)),
        p,
        |v| {
            let name = v.name.to_string();
            let fields = v
                .fields
                .iter()
                .map(|f| syn::ext::IdentExt::unraw(*f).to_string());
            let bindings = &v.bindings;
            quote!(__rpc_f.debug_struct(#name)#(.field(#fields, #bindings))*.finish())
        },
    );
    quote! {
        #[doc = #doc]
        #[allow(clippy::large_enum_variant)]
        #vis enum #request {
            #(#defs)*
        }

        #[allow(deprecated)]
        impl #request {
            /// The method's wire name (as in the schema and in `RpcError`'s messages).
            pub fn method_name(&self) -> &'static str {
                match *self {
                    #(#names)*
                }
            }

            /// Whether the method is `#[rpc(idempotent)]`: calling it twice is as good as
            /// once, so a retry policy may send it again (`rpc_core::tower::RetryIdempotent`
            /// does, and only these).
            pub fn is_idempotent(&self) -> bool {
                match *self {
                    #(#idempotent)*
                }
            }
        }

        impl #p::IdempotentRequest for #request {
            fn is_idempotent(&self) -> bool {
                #request::is_idempotent(self)
            }

            fn method_name(&self) -> &'static str {
                #request::method_name(self)
            }
        }

        #clone
        #debug
    }
}

fn response_enum(
    service: &Service<'_>,
    response: &Ident,
    request: &Ident,
    variants: &[Variant<'_>],
    p: &TokenStream,
) -> TokenStream {
    let vis = &service.original.vis;
    let doc = format!(
        "What a [`{request}`] returns: the variant of the same name, holding the method's return value. `Clone` and `Debug` when every return type has them."
    );
    let defs = variants.iter().map(|v| {
        let (cfgs, lints, deprecated) = (&v.method.cfgs, &v.method.lints, v.method.deprecated);
        let doc = format!("What `{}` returned.", v.method.wire_name());
        let name = &v.name;
        let output = v.output();
        quote!(#(#cfgs)* #(#lints)* #[doc = #doc] #deprecated #name(#output),)
    });
    let outputs = || variants.iter().map(|v| (v, v.output()));
    let clone = clone_impl(
        response,
        true,
        variants,
        bounds(outputs(), quote!(#p::Clone)),
        p,
        |v| {
            let name = &v.name;
            quote!(#response::#name(#p::Clone::clone(__rpc_out)))
        },
    );
    let debug = debug_impl(
        response,
        true,
        variants,
        bounds(outputs(), quote!(#p::Debug)),
        p,
        |v| {
            let name = v.name.to_string();
            quote!(__rpc_f.debug_tuple(#name).field(__rpc_out).finish())
        },
    );
    quote! {
        #[doc = #doc]
        #[allow(clippy::large_enum_variant)]
        #vis enum #response {
            #(#defs)*
        }

        #clone
        #debug
    }
}

/// The pattern of `v` in `ty`: a request's fields or a response's value, bound by reference.
fn ref_pattern(ty: &Ident, v: &Variant<'_>, response: bool) -> TokenStream {
    if response {
        let name = &v.name;
        quote!(#ty::#name(ref __rpc_out))
    } else {
        let pattern = v.pattern(true);
        quote!(#ty::#pattern)
    }
}

fn clone_impl(
    ty: &Ident,
    response: bool,
    variants: &[Variant<'_>],
    bounds: TokenStream,
    p: &TokenStream,
    body: impl Fn(&Variant<'_>) -> TokenStream,
) -> TokenStream {
    let arms = variants.iter().map(|v| {
        let cfgs = &v.method.cfgs;
        let pattern = ref_pattern(ty, v, response);
        let body = body(v);
        quote!(#(#cfgs)* #pattern => #body,)
    });
    quote! {
        #[allow(deprecated)]
        impl #p::Clone for #ty #bounds {
            fn clone(&self) -> Self {
                match *self {
                    #(#arms)*
                }
            }
        }
    }
}

fn debug_impl(
    ty: &Ident,
    response: bool,
    variants: &[Variant<'_>],
    bounds: TokenStream,
    p: &TokenStream,
    body: impl Fn(&Variant<'_>) -> TokenStream,
) -> TokenStream {
    let arms = variants.iter().map(|v| {
        let cfgs = &v.method.cfgs;
        let pattern = ref_pattern(ty, v, response);
        let body = body(v);
        quote!(#(#cfgs)* #pattern => #body,)
    });
    quote! {
        #[allow(deprecated)]
        impl #p::Debug for #ty #bounds {
            fn fmt(&self, __rpc_f: &mut #p::Formatter<'_>) -> #p::FmtResult {
                match *self {
                    #(#arms)*
                }
            }
        }
    }
}

/// `impl tower::Service<{Trait}Request> for {Trait}Client`: each call runs the typed method on
/// a clone of the client, in a boxed `Send` future.
fn service_impl(
    request: &Ident,
    response: &Ident,
    client: &Ident,
    variants: &[Variant<'_>],
    wire_bounds: TokenStream,
    p: &TokenStream,
) -> TokenStream {
    let arms = variants.iter().map(|v| {
        let cfgs = &v.method.cfgs;
        let name = &v.name;
        let method = v.method.name;
        let pattern = v.pattern(false);
        let args = v
            .kinds
            .iter()
            .zip(&v.bindings)
            .map(|(kind, binding)| match kind {
                ArgKind::Owned(_) | ArgKind::ByteVec | ArgKind::Stream(_) => quote!(#binding),
                ArgKind::ByteSlice | ArgKind::Str | ArgKind::Slice(_) | ArgKind::Ref(_) => {
                    quote!(&#binding)
                }
            });
        quote! {
            #(#cfgs)*
            #request::#pattern => #p::Box::pin(async move {
                #p::Result::map(#client::#method(&__rpc_client, #(#args),*).await, #response::#name)
            }),
        }
    });
    let sendable = variants
        .iter()
        .flat_map(|v| v.types.iter().map(move |ty| (v, ty.clone())))
        .chain(variants.iter().map(|v| (v, v.output())));
    let sendable = predicates(sendable, quote!(#p::Send + #p::Sync + 'static));
    quote! {
        /// Calls the method a request names, on a clone of this client. Always ready: calls
        /// share the connection, and the client bounds how many are in flight itself (see
        /// `rpc_core::tower`).
        impl #p::tower::Service<#request> for #client #wire_bounds #sendable {
            type Response = #response;
            type Error = #p::RpcError;
            type Future = #p::CallFuture<#response>;

            fn poll_ready(
                &mut self,
                _: &mut #p::TaskContext<'_>,
            ) -> #p::Poll<#p::Result<(), #p::RpcError>> {
                #p::Poll::Ready(#p::Ok(()))
            }

            #[allow(deprecated)]
            fn call(&mut self, __rpc_request: #request) -> Self::Future {
                let __rpc_client = #p::Clone::clone(self);
                match __rpc_request {
                    #(#arms)*
                }
            }
        }
    }
}
