//! The `#[service]` attribute of `rpc-core`: a trait becomes a typed client, a server
//! dispatcher and a schema.
//!
//! The input goes through three steps, one file each:
//! - `ast.rs` (with `attr.rs` for `#[rpc(...)]`): parse the trait into `ast::Service`, keeping
//!   references to the user's tokens;
//! - `valid.rs`: check every rule, collecting all mistakes so one build shows them all;
//! - `expand.rs` (with `types.rs`, how each argument type travels, and `tower.rs`, the
//!   request and response enums and the client's `tower::Service` impl): generate the code
//!   (or, when validation failed, the trait as written plus the errors, so a mistake gives
//!   one error and not a cascade).
//!
//! Generated code names only absolute paths (`::rpc_core::__private::...`, or the path given
//! with `#[service(crate = "...")]`), so it works in a `#![no_implicit_prelude]` module.

mod ast;
mod attr;
mod expand;
mod tower;
mod types;
mod valid;

use proc_macro::TokenStream;
use quote::quote;

/// Turns a trait into an RPC service. See the `rpc-core` crate for what it generates.
#[proc_macro_attribute]
pub fn service(args: TokenStream, input: TokenStream) -> TokenStream {
    let item = syn::parse_macro_input!(input as syn::ItemTrait);
    let service = ast::Service::from_syn(&item);
    let mut errors = valid::validate(&service);
    let krate = match attr::parse_service_args(args.into()) {
        Ok(Some(path)) => quote!(#path),
        Ok(None) => quote!(::rpc_core),
        Err(error) => {
            errors.push(error);
            quote!(::rpc_core)
        }
    };
    match errors.into_iter().reduce(|mut all, next| {
        all.combine(next);
        all
    }) {
        None => expand::expand(&service, &krate).into(),
        Some(errors) => expand::fallback(&item, errors).into(),
    }
}
