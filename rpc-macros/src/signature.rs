//! Type helpers: the readable signature string hashed into the fingerprint, and the
//! `Vec<u8>` detection that sends byte vectors as one block instead of byte by byte.

use quote::ToTokens;
use syn::{GenericArgument, PathArguments, Type};

use crate::ast::Method;

/// A type as compact text: `Result<i64, MathError>`.
pub fn type_text(ty: &Type) -> String {
    let spaced = ty.to_token_stream().to_string();
    let mut out = String::with_capacity(spaced.len());
    let mut chars = spaced.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ' ' {
            let prev = out.chars().last().unwrap_or(' ');
            let next = chars.peek().copied().unwrap_or(' ');
            let glue = |c: char| "<>(),[]:&;".contains(c);
            if prev == ' ' || glue(prev) || glue(next) {
                continue;
            }
        }
        out.push(c);
        if c == ',' {
            out.push(' ');
        }
    }
    out
}

/// `(i64, i64) -> i64`: what the fingerprint hashes for a method.
pub fn method_signature(method: &Method<'_>) -> String {
    let args: Vec<String> = method.args.iter().map(|a| type_text(a.ty)).collect();
    let output = method.output.map_or_else(|| "()".to_owned(), type_text);
    format!("({}) -> {}", args.join(", "), output)
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
        Some(GenericArgument::Type(Type::Path(inner))) if args.args.len() == 1 && inner.path.is_ident("u8")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_print_compactly() {
        let ty: Type = syn::parse_quote!(Result<Vec<i64>, MathError>);
        assert_eq!(type_text(&ty), "Result<Vec<i64>, MathError>");
        let ty: Type = syn::parse_quote!((u8, std::string::String));
        assert_eq!(type_text(&ty), "(u8, std::string::String)");
    }

    #[test]
    fn byte_vectors_are_recognised() {
        assert!(is_byte_vec(&syn::parse_quote!(Vec<u8>)));
        assert!(is_byte_vec(&syn::parse_quote!(std::vec::Vec<u8>)));
        assert!(!is_byte_vec(&syn::parse_quote!(Vec<i8>)));
        assert!(!is_byte_vec(&syn::parse_quote!(Vec<Vec<u8>>)));
        assert!(!is_byte_vec(&syn::parse_quote!(Box<[u8]>)));
    }
}
