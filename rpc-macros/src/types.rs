//! How each argument and return type travels: what the client encodes, what the schema traces,
//! what the server decodes and what it hands the handler. `Vec<u8>` and `&[u8]` go as one
//! block of bytes; `&str` and `&[u8]` are borrowed from the received frame on the server.
//! `rpc_core::Bytes` needs no case here: it is an ordinary serde type (the same bytes on the
//! wire as `Vec<u8>`) whose `Deserialize` slices the received frame instead of copying it.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{GenericArgument, Ident, PathArguments, Type, TypeReference};

/// How an argument's type travels.
#[derive(Clone, Copy)]
pub enum ArgKind<'a> {
    /// `T`, sent and received by value.
    Owned(&'a Type),
    /// `Vec<u8>`: one block of bytes, received into a fresh vector.
    ByteVec,
    /// `&[u8]`: one block of bytes, borrowed from the received frame.
    ByteSlice,
    /// `&str`: borrowed from the received frame.
    Str,
    /// `&[T]`: a sequence, received into a vector the handler borrows.
    Slice(&'a Type),
    /// `&T`: received by value, lent to the handler.
    Ref(&'a Type),
    /// `Streaming<T>`: a placeholder in the arguments; the items travel after the request.
    Stream(&'a Type),
}

impl<'a> ArgKind<'a> {
    /// Classifies `ty` (validation has rejected references it cannot carry).
    pub fn of(ty: &'a Type) -> ArgKind<'a> {
        if let Some(item) = stream_item(ty) {
            return ArgKind::Stream(item);
        }
        if is_byte_vec(ty) {
            return ArgKind::ByteVec;
        }
        let Type::Reference(TypeReference { elem, .. }) = ty else {
            return ArgKind::Owned(ty);
        };
        match &**elem {
            Type::Path(path) if path.qself.is_none() && path.path.is_ident("str") => ArgKind::Str,
            Type::Slice(slice) if is_u8(&slice.elem) => ArgKind::ByteSlice,
            Type::Slice(slice) => ArgKind::Slice(&slice.elem),
            other => ArgKind::Ref(other),
        }
    }

    /// Whether the handler's value borrows the received frame.
    pub fn borrows_frame(self) -> bool {
        matches!(self, ArgKind::ByteSlice | ArgKind::Str)
    }

    /// The owned type whose `Deserialize` the schema traces.
    pub fn traced(self, p: &TokenStream) -> TokenStream {
        match self {
            ArgKind::Owned(ty) | ArgKind::Ref(ty) => quote!(#ty),
            ArgKind::ByteVec | ArgKind::ByteSlice => quote!(#p::ByteBuf),
            ArgKind::Str => quote!(#p::String),
            ArgKind::Slice(elem) => quote!(#p::Vec<#elem>),
            ArgKind::Stream(item) => quote!(#p::Streaming<#item>),
        }
    }

    /// What the client puts in the tuple it encodes, from argument `name`.
    pub fn encoded(self, name: &Ident, p: &TokenStream) -> TokenStream {
        match self {
            ArgKind::Owned(_) => quote!(&#name),
            ArgKind::ByteVec => quote!(#p::Bytes::new(&#name)),
            ArgKind::ByteSlice => quote!(#p::Bytes::new(#name)),
            ArgKind::Str | ArgKind::Slice(_) | ArgKind::Ref(_) => quote!(#name),
            ArgKind::Stream(_) => quote!(&#p::StreamPlaceholder),
        }
    }

    /// The type the server decodes.
    pub fn decoded(self, p: &TokenStream) -> TokenStream {
        match self {
            ArgKind::Owned(ty) | ArgKind::Ref(ty) => quote!(#ty),
            ArgKind::ByteVec => quote!(#p::ByteBuf),
            ArgKind::ByteSlice => quote!(&#p::Bytes),
            ArgKind::Str => quote!(&str),
            ArgKind::Slice(elem) => quote!(#p::Vec<#elem>),
            ArgKind::Stream(_) => quote!(#p::StreamPlaceholder),
        }
    }

    /// What the server hands the handler, from the decoded `name`.
    pub fn handed(self, name: &Ident, p: &TokenStream) -> TokenStream {
        match self {
            ArgKind::Owned(_) | ArgKind::Str => quote!(#name),
            ArgKind::ByteVec => quote!(#p::ByteBuf::into_vec(#name)),
            ArgKind::ByteSlice => quote!(&**#name),
            ArgKind::Slice(_) => quote!(&#name[..]),
            ArgKind::Ref(_) => quote!(&#name),
            ArgKind::Stream(_) => quote!(#name),
        }
    }
}

/// `T` when `ty` is `Streaming<T>` (by any path ending in `Streaming`).
pub fn stream_item(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let last = path.path.segments.last()?;
    if last.ident != "Streaming" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first() {
        Some(GenericArgument::Type(item)) if args.args.len() == 1 => Some(item),
        _ => None,
    }
}

/// How a return type travels: `Vec<u8>` as one block, anything else as itself.
pub fn traced_output(ty: Option<&Type>, p: &TokenStream) -> TokenStream {
    match ty {
        None => quote!(()),
        Some(ty) if is_byte_vec(ty) => quote!(#p::ByteBuf),
        Some(ty) => quote!(#ty),
    }
}

fn is_u8(ty: &Type) -> bool {
    matches!(ty, Type::Path(path) if path.qself.is_none() && path.path.is_ident("u8"))
}

/// Whether `ty` is `Vec<u8>` (by any path ending in `Vec`).
pub fn is_byte_vec(ty: &Type) -> bool {
    let Type::Path(path) = ty else { return false };
    if path.qself.is_some() {
        return false;
    }
    let Some(last) = path.path.segments.last() else {
        return false;
    };
    if last.ident != "Vec" {
        return false;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return false;
    };
    matches!(
        args.args.first(),
        Some(GenericArgument::Type(inner)) if args.args.len() == 1 && is_u8(inner)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_vectors_are_recognised() {
        assert!(is_byte_vec(&syn::parse_quote!(Vec<u8>)));
        assert!(is_byte_vec(&syn::parse_quote!(std::vec::Vec<u8>)));
        assert!(!is_byte_vec(&syn::parse_quote!(Vec<i8>)));
        assert!(!is_byte_vec(&syn::parse_quote!(Vec<Vec<u8>>)));
        assert!(!is_byte_vec(&syn::parse_quote!(Box<[u8]>)));
    }

    #[test]
    fn references_are_classified() {
        let kind = |ty: Type| match ArgKind::of(Box::leak(Box::new(ty))) {
            ArgKind::Owned(_) => "owned",
            ArgKind::ByteVec => "byte vec",
            ArgKind::ByteSlice => "byte slice",
            ArgKind::Str => "str",
            ArgKind::Slice(_) => "slice",
            ArgKind::Ref(_) => "ref",
            ArgKind::Stream(_) => "stream",
        };
        assert_eq!(kind(syn::parse_quote!(&str)), "str");
        assert_eq!(kind(syn::parse_quote!(&[u8])), "byte slice");
        assert_eq!(kind(syn::parse_quote!(&[u32])), "slice");
        assert_eq!(kind(syn::parse_quote!(&Order)), "ref");
        assert_eq!(kind(syn::parse_quote!(Vec<u8>)), "byte vec");
        assert_eq!(kind(syn::parse_quote!(String)), "owned");
        assert_eq!(kind(syn::parse_quote!(Streaming<u32>)), "stream");
        assert_eq!(
            kind(syn::parse_quote!(rpc_core::Streaming<Vec<u8>>)),
            "stream"
        );
    }
}
