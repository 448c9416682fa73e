//! `#[rpc(...)]` on a method: `name = "..."`, `id = N`, `timeout = "5s"`, `idempotent`; and
//! `#[service(crate = "...")]` on the trait. Parsing keeps each value's tokens for diagnostics
//! and records every mistake instead of stopping at the first.

use syn::meta::ParseNestedMeta;
use syn::{Attribute, Error, Expr, ExprLit, Lit, LitInt, LitStr, Path};

/// What one method's `#[rpc(...)]` attributes say.
#[derive(Default)]
pub struct RpcAttrs {
    /// `name = "..."`: the wire name.
    pub name: Option<LitStr>,
    /// `id = N`: the wire id, with its literal.
    pub id: Option<(LitInt, u32)>,
    /// `timeout = "5s"`: the default deadline in milliseconds, with its literal.
    pub timeout: Option<(LitStr, u64)>,
    /// `idempotent`.
    pub idempotent: Option<Path>,
}

const KEYS: &str = "expected `name = \"...\"`, `id = N`, `timeout = \"5s\"` or `idempotent`";

impl RpcAttrs {
    /// Parses every `#[rpc(...)]` among `attrs`, pushing each mistake onto `errors`.
    pub fn parse(attrs: &[Attribute], errors: &mut Vec<Error>) -> RpcAttrs {
        let mut parsed = RpcAttrs::default();
        for attr in attrs.iter().filter(|a| a.path().is_ident("rpc")) {
            if let Err(error) = attr.parse_nested_meta(|meta| {
                parsed.key(&meta, errors);
                Ok(())
            }) {
                errors.push(Error::new(
                    error.span(),
                    format!("malformed `#[rpc(...)]`: {error}; {KEYS}"),
                ));
            }
        }
        parsed
    }

    fn key(&mut self, meta: &ParseNestedMeta<'_>, errors: &mut Vec<Error>) {
        let Some(key) = meta.path.get_ident().map(ToString::to_string) else {
            errors.push(Error::new_spanned(
                &meta.path,
                format!("unknown `rpc` attribute; {KEYS}"),
            ));
            return;
        };
        let duplicate = match key.as_str() {
            "name" => self.name.is_some(),
            "id" => self.id.is_some(),
            "timeout" => self.timeout.is_some(),
            "idempotent" => self.idempotent.is_some(),
            _ => false,
        };
        if duplicate {
            errors.push(Error::new_spanned(
                &meta.path,
                format!("`{key}` is given twice; keep one"),
            ));
        }
        match key.as_str() {
            "name" => match value(meta, "name", "a string: `#[rpc(name = \"get_item\")]`") {
                Ok(Lit::Str(lit)) => match check_wire_name(&lit) {
                    Ok(()) => self.name = Some(lit),
                    Err(error) => errors.push(error),
                },
                Ok(other) => errors.push(Error::new_spanned(
                    other,
                    "`name` takes a string: `#[rpc(name = \"get_item\")]`",
                )),
                Err(error) => errors.push(error),
            },
            "id" => match value(meta, "id", "an integer: `#[rpc(id = 7)]`") {
                Ok(Lit::Int(lit)) => match lit.base10_parse::<u32>() {
                    Ok(id) => self.id = Some((lit, id)),
                    Err(_) => errors.push(Error::new_spanned(
                        lit,
                        "`id` takes an integer from 0 to 4294967295 (a u32)",
                    )),
                },
                Ok(other) => errors.push(Error::new_spanned(
                    other,
                    "`id` takes an integer: `#[rpc(id = 7)]`, not a string or other literal",
                )),
                Err(error) => errors.push(error),
            },
            "timeout" => match value(meta, "timeout", "a duration string: `#[rpc(timeout = \"5s\")]`") {
                Ok(Lit::Str(lit)) => match parse_duration_ms(&lit.value()) {
                    Some(ms) => self.timeout = Some((lit, ms)),
                    None => errors.push(Error::new_spanned(
                        lit,
                        "`timeout` takes a duration such as \"250ms\", \"5s\", \"2m\" or \"1h\" (a whole number and a unit), or \"none\"",
                    )),
                },
                Ok(other) => errors.push(Error::new_spanned(
                    other,
                    "`timeout` takes a duration string with a unit: `#[rpc(timeout = \"5s\")]`",
                )),
                Err(error) => errors.push(error),
            },
            "idempotent" => {
                if meta.input.peek(syn::Token![=]) || meta.input.peek(syn::token::Paren) {
                    errors.push(Error::new_spanned(
                        &meta.path,
                        "`idempotent` takes no value: write `#[rpc(idempotent)]`",
                    ));
                    let _ = skip_value(meta);
                } else {
                    self.idempotent = Some(meta.path.clone());
                }
            }
            other => {
                errors.push(Error::new_spanned(
                    &meta.path,
                    format!("unknown `rpc` attribute `{other}`; {KEYS}"),
                ));
                let _ = skip_value(meta);
            }
        }
    }
}

/// The literal after `key =`, or an error saying what `key` takes.
fn value(meta: &ParseNestedMeta<'_>, key: &str, takes: &str) -> Result<Lit, Error> {
    if !meta.input.peek(syn::Token![=]) {
        let _ = skip_value(meta);
        return Err(Error::new_spanned(
            &meta.path,
            format!("`{key}` needs a value: {takes}"),
        ));
    }
    let expr: Expr = meta.value()?.parse()?;
    match expr {
        Expr::Lit(ExprLit { lit, .. }) => Ok(lit),
        other => Err(Error::new_spanned(
            other,
            format!("`{key}` takes a literal: {takes}"),
        )),
    }
}

/// Consumes whatever follows a key (`= value` or `(...)`), so parsing goes on after it.
fn skip_value(meta: &ParseNestedMeta<'_>) -> syn::Result<()> {
    if meta.input.peek(syn::Token![=]) {
        let _: Expr = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        meta.parse_nested_meta(|inner| skip_value(&inner))?;
    }
    Ok(())
}

/// A wire name is a non-empty identifier-like string: letters, digits, `_`, `.`, `-`, `/`.
fn check_wire_name(lit: &LitStr) -> Result<(), Error> {
    let name = lit.value();
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-/".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::new_spanned(
            lit,
            "a wire name is 1 to 128 ASCII letters, digits, `_`, `.`, `-` or `/`",
        ))
    }
}

/// "250ms", "5s", "2m", "1h" in milliseconds.
pub fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    if text == "none" {
        return Some(NO_TIMEOUT);
    }
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(digits);
    let number: u64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" | "min" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    number.checked_mul(scale).filter(|&ms| ms > 0)
}

/// `timeout = "none"`: the method's calls have no deadline unless the caller sets one (the
/// schema's `timeout_ms` holds `u64::MAX`).
pub const NO_TIMEOUT: u64 = u64::MAX;

/// The wire id of a method without `#[rpc(id = N)]`: FNV-1a (32 bits) of its wire name.
pub fn wire_id(name: &str) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for byte in name.bytes() {
        hash ^= u32::from(byte);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// `#[service(crate = "path")]`: where the generated code finds `rpc_core` (default
/// `::rpc_core`), for crates that depend on it under another name.
pub fn parse_service_args(args: proc_macro2::TokenStream) -> Result<Option<Path>, Error> {
    if args.is_empty() {
        return Ok(None);
    }
    let mut krate = None;
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            let lit: LitStr = meta.value()?.parse()?;
            krate = Some(lit.parse::<Path>()?);
            Ok(())
        } else {
            Err(meta.error(
                "unknown `service` argument; the only one is `crate = \"path::to::rpc_core\"`",
            ))
        }
    });
    syn::parse::Parser::parse2(parser, args)?;
    Ok(krate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("5s"), Some(5_000));
        assert_eq!(parse_duration_ms("2m"), Some(120_000));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("5"), None);
        assert_eq!(parse_duration_ms("0s"), None);
        assert_eq!(parse_duration_ms("5 parsecs"), None);
        assert_eq!(parse_duration_ms("s"), None);
        assert_eq!(parse_duration_ms("none"), Some(NO_TIMEOUT));
    }

    #[test]
    fn ids_come_from_names_alone() {
        assert_eq!(wire_id("add"), wire_id("add"));
        assert_ne!(wire_id("add"), wire_id("sub"));
        // FNV-1a's published test vector.
        assert_eq!(wire_id("a"), 0xe40c_292c);
    }
}
