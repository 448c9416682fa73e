//! Code generation: the rewritten trait, `{Trait}Client`, `{Trait}BlockingClient`,
//! `{Trait}Server` and the schema.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{FnArg, ItemTrait, Pat, TraitItem};

use crate::ast::{Method, Service};
use crate::types::{ArgKind, stream_item, traced_output};

/// The trait as written (less what rustc would report again: a second method of the same
/// name, pattern arguments, `#[rpc]` attributes) plus the errors, so the user's impls still
/// compile and each mistake is reported once.
pub fn fallback(item: &ItemTrait, errors: syn::Error) -> TokenStream {
    let mut item = item.clone();
    let mut seen = std::collections::HashSet::new();
    item.items.retain(|trait_item| match trait_item {
        TraitItem::Fn(method) => seen.insert(method.sig.ident.to_string()),
        _ => true,
    });
    for trait_item in &mut item.items {
        let TraitItem::Fn(method) = trait_item else {
            continue;
        };
        method.attrs.retain(|a| !a.path().is_ident("rpc"));
        for (index, input) in method.sig.inputs.iter_mut().enumerate() {
            if let FnArg::Typed(typed) = input
                && !matches!(&*typed.pat, Pat::Ident(_))
            {
                let name = format_ident!("__arg{}", index);
                *typed.pat = syn::parse_quote!(#name);
            }
        }
    }
    let errors = errors.to_compile_error();
    quote! {
        #item
        #errors
    }
}

/// Everything generated for a valid trait. `krate` is the path of `rpc_core`.
pub fn expand(service: &Service<'_>, krate: &TokenStream) -> TokenStream {
    let p = quote!(#krate::__private);
    let tr = rewritten_trait(service, &p);
    let async_client = client(service, Flavor::Async, &p);
    let blocking_client = client(service, Flavor::Blocking, &p);
    let server = server(service, &p);
    let tower = crate::tower::expand(service, &client_name(service), &p);
    quote! {
        #tr
        #async_client
        #blocking_client
        #server
        #tower
    }
}

fn output_type(method: &Method<'_>) -> TokenStream {
    match method.output {
        Some(ty) => quote!(#ty),
        None => quote!(()),
    }
}

/// The trait with each `async fn` turned into `fn -> impl Future + Send`, so implementations
/// written with plain `async fn` have `Send` futures the server can spawn.
fn rewritten_trait(service: &Service<'_>, p: &TokenStream) -> TokenStream {
    let item = service.original;
    let attrs = &item.attrs;
    let vis = &item.vis;
    let name = &item.ident;
    let supertraits = item.supertraits.iter();
    let methods = service.methods.iter().map(|method| {
        let attrs = method
            .original
            .attrs
            .iter()
            .filter(|a| !a.path().is_ident("rpc"));
        let ident = method.name;
        let inputs = &method.original.sig.inputs;
        let output = output_type(method);
        // Spanned at the user's method, so lints about it (missing docs) point there.
        let span = method.original.sig.fn_token.span;
        quote_spanned! {span=>
            #(#attrs)*
            fn #ident(#inputs) -> impl #p::Future<Output = #output> + #p::Send;
        }
    });
    quote! {
        #(#attrs)*
        #vis trait #name: #(#supertraits +)* #p::Send + #p::Sync + 'static {
            #(#methods)*
        }
    }
}

/// `where T: WireType` for each argument and return type of `methods` (as the schema traces
/// them), spanned at the user's type. Every generated item that uses the types carries these
/// bounds, so a type without serde's traits is reported at the user's type, once (rustc drops
/// identical diagnostics), saying what to derive, and nothing inside the items complains again.
/// Types that mention a lifetime are left out: a where clause cannot name an elided one.
pub fn wire_bounds<'a>(
    methods: impl IntoIterator<Item = &'a Method<'a>>,
    p: &TokenStream,
) -> TokenStream {
    // A method that `#[cfg]` may remove cannot put bounds on the whole impl.
    let bounds = methods
        .into_iter()
        .filter(|m| m.cfgs.is_empty())
        .flat_map(|method| {
            let args = method
                .args
                .iter()
                .map(|arg| (arg.ty, ArgKind::of(arg.ty).traced(p)));
            let output = method.output.map(|ty| (ty, traced_output(Some(ty), p)));
            args.chain(output)
                .filter(|(_, traced)| !mentions_lifetime(traced))
                .map(|(ty, traced)| {
                    let span = ty.span();
                    let bound = respan(quote!(#traced: #p::WireType,), span);
                    quote_spanned!(span=> #bound)
                })
                .collect::<Vec<_>>()
        });
    quote!(where #(#bounds)*)
}

/// `tokens` with every span set to `span`, so a diagnostic about them points there.
fn respan(tokens: TokenStream, span: Span) -> TokenStream {
    tokens
        .into_iter()
        .map(|mut token| {
            if let proc_macro2::TokenTree::Group(group) = &token {
                let mut inner =
                    proc_macro2::Group::new(group.delimiter(), respan(group.stream(), span));
                inner.set_span(span);
                token = proc_macro2::TokenTree::Group(inner);
            } else {
                token.set_span(span);
            }
            token
        })
        .collect()
}

/// Whether `tokens` hold a reference or a lifetime.
fn mentions_lifetime(tokens: &TokenStream) -> bool {
    tokens.clone().into_iter().any(|token| match token {
        proc_macro2::TokenTree::Punct(p) => p.as_char() == '&' || p.as_char() == '\'',
        proc_macro2::TokenTree::Group(group) => mentions_lifetime(&group.stream()),
        _ => false,
    })
}

fn client_name(service: &Service<'_>) -> Ident {
    format_ident!("{}Client", service.name())
}

/// The doc comment text of a method (lines joined), for the schema.
fn doc_text(method: &Method<'_>) -> String {
    let lines: Vec<String> = method
        .docs
        .iter()
        .filter_map(|attr| match &attr.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }) => Some(s.value().trim().to_owned()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    lines.join("\n")
}

/// The `#[deprecated]` note: `Some("")` without one.
fn deprecation_note(method: &Method<'_>) -> Option<String> {
    let attr = method.deprecated?;
    let mut note = String::new();
    match &attr.meta {
        syn::Meta::NameValue(syn::MetaNameValue {
            value:
                syn::Expr::Lit(syn::ExprLit {
                    lit: syn::Lit::Str(s),
                    ..
                }),
            ..
        }) => note = s.value(),
        syn::Meta::List(_) => {
            let _ = attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("note") {
                    let lit: syn::LitStr = meta.value()?.parse()?;
                    note = lit.value();
                } else if meta.input.peek(syn::Token![=]) {
                    let _: syn::Expr = meta.value()?.parse()?;
                }
                Ok(())
            });
        }
        _ => {}
    }
    Some(note)
}

/// The function returning the service's schema, traced once on first use.
fn schema_fn(service: &Service<'_>, p: &TokenStream) -> TokenStream {
    let service_name = service.name().to_string();
    let methods = service.methods.iter().map(|method| {
        let name = method.wire_name();
        let id = method.wire_id();
        let rust_name = method.rust_name();
        let cfgs = &method.cfgs;
        let docs = doc_text(method);
        let idempotent = method.rpc.idempotent.is_some();
        let client_stream = method.args.iter().any(|a| stream_item(a.ty).is_some());
        let server_stream = method.output.and_then(stream_item).is_some();
        let timeout = match &method.rpc.timeout {
            Some((_, ms)) => quote!(#p::Some(#ms)),
            None => quote!(#p::None),
        };
        let deprecated = match deprecation_note(method) {
            Some(note) => quote!(#p::Some(#note)),
            None => quote!(#p::None),
        };
        let args = method.args.iter().map(|arg| {
            let ty = ArgKind::of(arg.ty).traced(p);
            let name = arg.name.expect("validated").to_string();
            quote!(.arg::<#ty>(#name))
        });
        let output = traced_output(method.output, p);
        quote! {
            #(#cfgs)*
            __rpc_schema
                .method(#p::MethodDecl {
                    name: #name,
                    id: #id,
                    rust_name: #rust_name,
                    docs: #docs,
                    idempotent: #idempotent,
                    timeout_ms: #timeout,
                    deprecated: #deprecated,
                    client_stream: #client_stream,
                    server_stream: #server_stream,
                })
                #(#args)*
                .output::<#output>();
        }
    });
    quote! {
        /// The service's schema: its methods with their ids, the shapes of their argument and
        /// return types, and their attributes. Traced on first use; compared in the handshake.
        pub fn schema() -> &'static #p::ServiceSchema {
            static SCHEMA: #p::OnceLock<#p::ServiceSchema> = #p::OnceLock::new();
            SCHEMA.get_or_init(|| {
                let mut __rpc_schema = #p::SchemaBuilder::new(#service_name);
                #(#methods)*
                __rpc_schema.finish()
            })
        }
    }
}

/// The two generated clients: the async one and its blocking twin.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Async,
    Blocking,
}

fn client_method(method: &Method<'_>, flavor: Flavor, p: &TokenStream) -> TokenStream {
    let id = method.wire_id();
    let docs = &method.docs;
    let default_doc = if docs.is_empty() {
        let text = format!("Calls `{}` on the server.", method.wire_name());
        quote!(#[doc = #text])
    } else {
        quote!()
    };
    let deprecated = method.deprecated;
    let cfgs = &method.cfgs;
    let lints = &method.lints;
    let ident = method.name;
    let names: Vec<&Ident> = method
        .args
        .iter()
        .map(|a| a.name.expect("validated"))
        .collect();
    let types = method.args.iter().map(|a| a.ty);
    let encoded = method
        .args
        .iter()
        .zip(&names)
        .map(|(arg, name)| ArgKind::of(arg.ty).encoded(name, p));
    let mut output = output_type(method);
    let wire_output = traced_output(method.output, p);
    let (asyncness, wait) = match flavor {
        Flavor::Async => (quote!(async), quote!(.await)),
        Flavor::Blocking => (quote!(), quote!()),
    };
    let convert = if method.output.is_some_and(crate::types::is_byte_vec) {
        quote!(.map(#p::ByteBuf::into_vec))
    } else {
        quote!()
    };
    let sent_stream = method
        .args
        .iter()
        .zip(&names)
        .find(|(arg, _)| stream_item(arg.ty).is_some())
        .map(|(_, name)| *name);
    let received = method.output.and_then(stream_item);
    if let (Some(item), Flavor::Blocking) = (received, flavor) {
        output = quote!(#p::BlockingStreaming<#item>);
    }
    let args = quote!(&(#(#encoded,)*));
    let body = match (sent_stream, received) {
        (None, None) => quote!(self.client.call::<_, #wire_output>(#id, #args)#wait #convert),
        (Some(items), None) => quote!(
            self.client.call_client_stream::<_, _, #wire_output>(#id, #args, #items)#wait #convert
        ),
        (None, Some(item)) => quote!(self.client.call_server_stream::<_, #item>(#id, #args)#wait),
        (Some(items), Some(item)) => {
            quote!(self.client.call_bidi_stream::<_, _, #item>(#id, #args, #items)#wait)
        }
    };
    quote! {
        #(#cfgs)*
        #(#lints)*
        #(#docs)*
        #default_doc
        #deprecated
        pub #asyncness fn #ident(&self, #(#names: #types),*) -> #p::Result<#output, #p::RpcError> {
            #body
        }
    }
}

fn client(service: &Service<'_>, flavor: Flavor, p: &TokenStream) -> TokenStream {
    let vis = &service.original.vis;
    let trait_name = service.name();
    let (client, inner, connection, asyncness, wait, doc) = match flavor {
        Flavor::Async => (
            client_name(service),
            quote!(#p::Client),
            quote!(#p::Connection),
            quote!(async),
            quote!(.await),
            format!(
                "The client of [`{trait_name}`]: one async method per trait method. Cheap to clone; clones share one connection and its calls run concurrently."
            ),
        ),
        Flavor::Blocking => (
            format_ident!("{}BlockingClient", trait_name),
            quote!(#p::BlockingClient),
            quote!(#p::BlockingConnection),
            quote!(),
            quote!(),
            format!(
                "The blocking client of [`{trait_name}`], for code without an async runtime: one blocking method per trait method, one call at a time per connection. On `shm://` it is the lowest-latency path."
            ),
        ),
    };
    let schema = match flavor {
        Flavor::Async => schema_fn(service, p),
        Flavor::Blocking => {
            let async_client = client_name(service);
            quote! {
                /// The service's schema (the same as the async client's).
                pub fn schema() -> &'static #p::ServiceSchema {
                    #async_client::schema()
                }
            }
        }
    };
    let methods = service
        .methods
        .iter()
        .map(|method| client_method(method, flavor, p));
    let bounds = wire_bounds(&service.methods, p);
    quote! {
        #[doc = #doc]
        #[derive(#p::Debug, #p::Clone)]
        #vis struct #client {
            client: #inner,
        }

        impl #client #bounds {
            #schema

            /// Connects to a server of this service at `address` (such as `tcp://127.0.0.1:7000`).
            pub #asyncness fn connect(address: &str) -> #p::Result<Self, #p::RpcError> {
                Self::connect_with(address, <#p::ClientOptions as #p::Default>::default())#wait
            }

            /// Connects with explicit options (timeouts, maximum frame size, strict schema).
            pub #asyncness fn connect_with(address: &str, options: #p::ClientOptions) -> #p::Result<Self, #p::RpcError> {
                #inner::connect(address, Self::schema(), options)#wait.map(|client| Self { client })
            }

            /// Spawns `command` as a child that serves this service on its stdin and stdout
            /// (such as `calc-server --listen stdio`). Dropping the client closes the child's
            /// stdin; the child is then reaped.
            pub #asyncness fn spawn(command: #p::Command) -> #p::Result<Self, #p::RpcError> {
                #inner::spawn(command, Self::schema(), <#p::ClientOptions as #p::Default>::default())
                    #wait
                    .map(|client| Self { client })
            }

            /// Performs the handshake on an open transport connection.
            pub #asyncness fn from_connection(connection: #connection) -> #p::Result<Self, #p::RpcError> {
                #inner::from_connection(connection, Self::schema(), <#p::ClientOptions as #p::Default>::default())
                    #wait
                    .map(|client| Self { client })
            }

            /// A handle on the same connection whose calls use `options`.
            pub fn with_options(&self, options: #p::CallOptions) -> Self {
                Self { client: self.client.with_options(options) }
            }

            /// A handle on the same connection whose calls time out after `timeout` (`None`:
            /// never), whatever the methods' own `#[rpc(timeout)]`.
            pub fn with_timeout(&self, timeout: #p::Option<#p::Duration>) -> Self {
                Self { client: self.client.with_timeout(timeout) }
            }

            /// A handle on the same connection whose calls also carry the metadata `key = value`.
            pub fn with_metadata(&self, key: &str, value: &str) -> Self {
                Self { client: self.client.with_metadata(key, value) }
            }

            /// The untyped client underneath.
            pub fn client(&self) -> &#inner {
                &self.client
            }

            #(#methods)*
        }
    }
}

/// The server's match arm for one method: a future that owns the request, decodes the
/// arguments from it (borrowing `&str` and `&[u8]`), and calls the handler.
fn server_arm(method: &Method<'_>, trait_name: &Ident, p: &TokenStream) -> TokenStream {
    let id = method.wire_id();
    let ident = method.name;
    let cfgs = &method.cfgs;
    let kinds: Vec<ArgKind<'_>> = method.args.iter().map(|a| ArgKind::of(a.ty)).collect();
    let names: Vec<&Ident> = method
        .args
        .iter()
        .map(|a| a.name.expect("validated"))
        .collect();
    let decoded = kinds.iter().map(|kind| kind.decoded(p));
    let handed = kinds
        .iter()
        .zip(&names)
        .map(|(kind, name)| kind.handed(name, p));
    // A stream argument is taken from the request before the arguments borrow it; its
    // placeholder among the arguments is ignored.
    let streams: Vec<&Ident> = kinds
        .iter()
        .zip(&names)
        .filter(|(kind, _)| matches!(kind, ArgKind::Stream(_)))
        .map(|(_, name)| *name)
        .collect();
    let take_streams = if streams.is_empty() {
        quote!()
    } else {
        quote! {
            let mut __rpc_request = __rpc_request;
            #(let #streams = __rpc_request.take_stream();)*
        }
    };
    let patterns = kinds.iter().zip(&names).map(|(kind, name)| match kind {
        ArgKind::Stream(_) => quote!(_),
        _ => quote!(#name),
    });
    // Owned arguments need nothing more of the request: give its memory back at once.
    let release = if kinds.iter().any(|k| k.borrows_frame()) {
        quote!()
    } else {
        quote!(#p::drop(__rpc_request);)
    };
    let reply = if method.output.is_some_and(crate::types::is_byte_vec) {
        quote!(#p::encode_reply(#p::ByteBuf::from(__rpc_out)))
    } else if method.output.and_then(stream_item).is_some() {
        quote!(#p::encode_stream_reply(__rpc_out))
    } else {
        quote!(#p::encode_reply(__rpc_out))
    };
    quote_spanned! {Span::call_site()=>
        #(#cfgs)*
        #id => {
            let __rpc_service = #p::Clone::clone(&self.service);
            #p::Ok(#p::Box::pin(async move {
                #take_streams
                let (#(#patterns,)*): (#(#decoded,)*) = __rpc_request.args()?;
                #release
                let __rpc_out = <S as #trait_name>::#ident(&*__rpc_service, #(#handed),*).await;
                #p::Ok(#reply)
            }))
        }
    }
}

fn server(service: &Service<'_>, p: &TokenStream) -> TokenStream {
    let vis = &service.original.vis;
    let trait_name = service.name();
    let server = format_ident!("{}Server", trait_name);
    let client = client_name(service);
    let doc =
        format!("Serves an implementation of [`{trait_name}`]: hand it to `rpc_core::Server`.");
    let arms = service
        .methods
        .iter()
        .map(|method| server_arm(method, trait_name, p));
    let bounds = wire_bounds(&service.methods, p);
    quote! {
        #[doc = #doc]
        #vis struct #server<S> {
            service: #p::Arc<S>,
        }

        impl<S: #trait_name> #server<S> {
            /// Wraps `service` for serving.
            pub fn new(service: S) -> Self {
                Self { service: #p::Arc::new(service) }
            }

            /// Wraps a shared `service` for serving.
            pub fn from_arc(service: #p::Arc<S>) -> Self {
                Self { service }
            }
        }

        impl<S> #p::Clone for #server<S> {
            fn clone(&self) -> Self {
                Self { service: #p::Clone::clone(&self.service) }
            }
        }

        impl<S: #trait_name> #p::Service for #server<S> #bounds {
            fn schema(&self) -> &'static #p::ServiceSchema {
                #client::schema()
            }

            // The user's names (which its own `#[allow]`s cover) become bindings here.
            #[allow(deprecated, non_snake_case)]
            fn dispatch(
                &self,
                __rpc_method: u32,
                __rpc_request: #p::Request,
            ) -> #p::Result<#p::HandlerFuture, #p::DispatchError> {
                match __rpc_method {
                    #(#arms)*
                    _ => #p::Err(#p::DispatchError::UnknownMethod(__rpc_method)),
                }
            }
        }
    }
}
