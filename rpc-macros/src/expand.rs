//! Code generation: the rewritten trait, `{Trait}Client`, `{Trait}Server` and the schema.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote};
use syn::{FnArg, ItemTrait, Pat, TraitItem};

use crate::ast::{Method, Service};
use crate::signature::{is_byte_vec, method_signature};

/// Where the generated code finds everything it names.
fn private() -> TokenStream {
    quote!(::rpc_core::__private)
}

/// The trait as written (less what rustc would report again: a second method of the same
/// name, pattern arguments) plus the errors, so the user's impls still compile and each mistake
/// is reported once.
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

pub fn expand(service: &Service<'_>) -> TokenStream {
    let tr = rewritten_trait(service);
    let async_client = client(service, Flavor::Async);
    let blocking_client = client(service, Flavor::Blocking);
    let server = server(service);
    quote! {
        #tr
        #async_client
        #blocking_client
        #server
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
fn rewritten_trait(service: &Service<'_>) -> TokenStream {
    let p = private();
    let item = service.original;
    let attrs = &item.attrs;
    let vis = &item.vis;
    let name = &item.ident;
    let supertraits = item.supertraits.iter();
    let methods = service.methods.iter().map(|method| {
        let attrs = &method.original.attrs;
        let ident = method.name;
        let inputs = &method.original.sig.inputs;
        let output = output_type(method);
        quote! {
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

fn client_name(service: &Service<'_>) -> Ident {
    format_ident!("{}Client", service.name())
}

fn schema(service: &Service<'_>) -> TokenStream {
    let p = private();
    let service_name = service.name().to_string();
    let methods = service.methods.iter().map(|method| {
        let name = method.name.to_string();
        let signature = method_signature(method);
        quote!(#p::MethodSchema { name: #name, signature: #signature })
    });
    quote! {
        const __RPC_METHODS: &'static [#p::MethodSchema] = &[#(#methods),*];
        /// The service's schema: its name, methods and fingerprint, checked in the handshake.
        pub const SCHEMA: &'static #p::ServiceSchema = &#p::ServiceSchema {
            name: #service_name,
            methods: Self::__RPC_METHODS,
            fingerprint: #p::fingerprint(#service_name, Self::__RPC_METHODS),
        };
    }
}

/// The two generated clients: the async one and its blocking twin.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    Async,
    Blocking,
}

/// The tuple of a method's arguments as the client encodes them (`Vec<u8>` as one block).
fn encoded_args(method: &Method<'_>) -> TokenStream {
    let p = private();
    let encoded = method.args.iter().map(|arg| {
        let name = arg.name.expect("validated");
        if is_byte_vec(arg.ty) {
            quote!(#p::Bytes::new(&#name))
        } else {
            quote!(&#name)
        }
    });
    quote!((#(#encoded,)*))
}

fn client_method(index: usize, method: &Method<'_>, flavor: Flavor) -> TokenStream {
    let p = private();
    let index = index as u32;
    let docs = &method.docs;
    let ident = method.name;
    let names = method.args.iter().map(|a| a.name.expect("validated"));
    let types = method.args.iter().map(|a| a.ty);
    let args = encoded_args(method);
    let output = output_type(method);
    let (asyncness, wait) = match flavor {
        Flavor::Async => (quote!(async), quote!(.await)),
        Flavor::Blocking => (quote!(), quote!()),
    };
    let call = if method.output.is_some_and(is_byte_vec) {
        quote!(self.client.call::<_, #p::ByteBuf>(#index, &#args)#wait.map(#p::ByteBuf::into_vec))
    } else {
        quote!(self.client.call::<_, #output>(#index, &#args)#wait)
    };
    quote! {
        #(#docs)*
        pub #asyncness fn #ident(&self, #(#names: #types),*) -> #p::Result<#output, #p::RpcError> {
            #call
        }
    }
}

fn client(service: &Service<'_>, flavor: Flavor) -> TokenStream {
    let p = private();
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
        Flavor::Async => schema(service),
        Flavor::Blocking => {
            let async_client = client_name(service);
            quote! {
                /// The service's schema (the same as the async client's).
                pub const SCHEMA: &'static #p::ServiceSchema = #async_client::SCHEMA;
            }
        }
    };
    let methods = service
        .methods
        .iter()
        .enumerate()
        .map(|(index, method)| client_method(index, method, flavor));
    quote! {
        #[doc = #doc]
        #[derive(#p::Debug, #p::Clone)]
        #vis struct #client {
            client: #inner,
        }

        impl #client {
            #schema

            /// Connects to a server of this service at `address` (such as `tcp://127.0.0.1:7000`).
            pub #asyncness fn connect(address: &str) -> #p::Result<Self, #p::RpcError> {
                Self::connect_with(address, <#p::ClientOptions as #p::Default>::default())#wait
            }

            /// Connects with explicit options (timeouts, maximum frame size).
            pub #asyncness fn connect_with(address: &str, options: #p::ClientOptions) -> #p::Result<Self, #p::RpcError> {
                #inner::connect(address, Self::SCHEMA, options)#wait.map(|client| Self { client })
            }

            /// Spawns `command` as a child that serves this service on its stdin and stdout
            /// (such as `calc-server --listen stdio`). Dropping the client closes the child's
            /// stdin; the child is then reaped.
            pub #asyncness fn spawn(command: #p::Command) -> #p::Result<Self, #p::RpcError> {
                #inner::spawn(command, Self::SCHEMA, <#p::ClientOptions as #p::Default>::default())
                    #wait
                    .map(|client| Self { client })
            }

            /// Performs the handshake on an open transport connection.
            pub #asyncness fn from_connection(connection: #connection) -> #p::Result<Self, #p::RpcError> {
                #inner::from_connection(connection, Self::SCHEMA, <#p::ClientOptions as #p::Default>::default())
                    #wait
                    .map(|client| Self { client })
            }

            /// A handle on the same connection whose calls use `options`.
            pub fn with_options(&self, options: #p::CallOptions) -> Self {
                Self { client: self.client.with_options(options) }
            }

            /// A handle on the same connection whose calls time out after `timeout` (`None`: never).
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

fn server(service: &Service<'_>) -> TokenStream {
    let p = private();
    let vis = &service.original.vis;
    let trait_name = service.name();
    let server = format_ident!("{}Server", trait_name);
    let client = client_name(service);
    let doc =
        format!("Serves an implementation of [`{trait_name}`]: hand it to `rpc_core::Server`.");
    let arms = service.methods.iter().enumerate().map(|(index, method)| {
        let index = index as u32;
        let ident = method.name;
        let names: Vec<_> = method
            .args
            .iter()
            .map(|a| a.name.expect("validated"))
            .collect();
        let wire_types = method.args.iter().map(|arg| {
            let ty = arg.ty;
            if is_byte_vec(ty) {
                quote!(#p::ByteBuf)
            } else {
                quote!(#ty)
            }
        });
        let unwrap_bytes = method.args.iter().filter(|a| is_byte_vec(a.ty)).map(|arg| {
            let name = arg.name.expect("validated");
            quote!(let #name = #p::ByteBuf::into_vec(#name);)
        });
        let reply = if method.output.is_some_and(is_byte_vec) {
            quote!(#p::encode_reply(#p::ByteBuf::from(__rpc_out)))
        } else {
            quote!(#p::encode_reply(__rpc_out))
        };
        quote! {
            #index => {
                let (#(#names,)*): (#(#wire_types,)*) = #p::decode_args(__rpc_body)?;
                #(#unwrap_bytes)*
                let __rpc_service = #p::Clone::clone(&self.service);
                #p::Ok(#p::Box::pin(async move {
                    let __rpc_out = <S as #trait_name>::#ident(&*__rpc_service, #(#names),*).await;
                    #reply
                }))
            }
        }
    });
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

        impl<S: #trait_name> #p::Service for #server<S> {
            fn schema(&self) -> &'static #p::ServiceSchema {
                #client::SCHEMA
            }

            fn dispatch(
                &self,
                __rpc_method: u32,
                __rpc_body: &[u8],
            ) -> #p::Result<#p::HandlerFuture, #p::DispatchError> {
                match __rpc_method {
                    #(#arms)*
                    _ => #p::Err(#p::DispatchError::UnknownMethod(__rpc_method)),
                }
            }
        }
    }
}
