//! [`ServiceSchema`]: what a service is, as the handshake compares it.

/// One method of a service: its name and the signature of its argument and return types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodSchema {
    /// The method's name.
    pub name: &'static str,
    /// Argument and return types as written, such as `(i64, i64) -> i64`.
    pub signature: &'static str,
}

/// A service: its name, its methods in order (a method's index is its position), and a
/// fingerprint of all of it. The `#[service]` macro generates one per trait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceSchema {
    /// The trait's name.
    pub name: &'static str,
    /// The methods in declaration order.
    pub methods: &'static [MethodSchema],
    /// [`fingerprint`] of the name and methods.
    pub fingerprint: u64,
}

impl ServiceSchema {
    /// The name of method number `index`, or `"#index"` when there is none.
    pub fn method_name(&self, index: u32) -> String {
        self.methods
            .get(index as usize)
            .map_or_else(|| format!("#{index}"), |m| m.name.to_owned())
    }

    /// Each way in which `client`'s methods differ from these (the server's), in words.
    pub fn differences(&self, client: &[(String, String)]) -> Vec<String> {
        let mut out = Vec::new();
        for (index, (name, signature)) in client.iter().enumerate() {
            match self.methods.iter().position(|m| m.name == name) {
                None => out.push(format!("method '{name}' is missing on the server")),
                Some(at) => {
                    let ours = &self.methods[at];
                    if ours.signature != signature {
                        out.push(format!(
                            "method '{name}': client has {signature}, server has {}",
                            ours.signature
                        ));
                    } else if at != index {
                        out.push(format!(
                            "method '{name}' is number {index} on the client but {at} on the server"
                        ));
                    }
                }
            }
        }
        for method in self.methods {
            if !client.iter().any(|(name, _)| name == method.name) {
                out.push(format!("method '{}' is missing on the client", method.name));
            }
        }
        out
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

const fn fnv_bytes(mut hash: u64, bytes: &[u8]) -> u64 {
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(FNV_PRIME);
        i += 1;
    }
    // A separator, so that ("ab", "c") and ("a", "bc") differ.
    hash ^= 0xff;
    hash.wrapping_mul(FNV_PRIME)
}

/// A stable 64-bit FNV-1a hash of a service name and its methods' names and signatures,
/// evaluated at compile time by the generated code.
pub const fn fingerprint(service: &str, methods: &[MethodSchema]) -> u64 {
    let mut hash = fnv_bytes(FNV_OFFSET, service.as_bytes());
    let mut i = 0;
    while i < methods.len() {
        hash = fnv_bytes(hash, methods[i].name.as_bytes());
        hash = fnv_bytes(hash, methods[i].signature.as_bytes());
        i += 1;
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADD: MethodSchema = MethodSchema {
        name: "add",
        signature: "(i64, i64) -> i64",
    };
    const NEG: MethodSchema = MethodSchema {
        name: "neg",
        signature: "(i64) -> i64",
    };

    #[test]
    fn fingerprint_changes_with_any_part() {
        let base = fingerprint("Calc", &[ADD, NEG]);
        assert_eq!(base, fingerprint("Calc", &[ADD, NEG]));
        assert_ne!(base, fingerprint("Calc2", &[ADD, NEG]));
        assert_ne!(base, fingerprint("Calc", &[NEG, ADD]));
        assert_ne!(base, fingerprint("Calc", &[ADD]));
        let changed = MethodSchema {
            name: "add",
            signature: "(i32, i64) -> i64",
        };
        assert_ne!(base, fingerprint("Calc", &[changed, NEG]));
    }

    #[test]
    fn differences_name_each_method() {
        let server = ServiceSchema {
            name: "Calc",
            methods: &[ADD, NEG],
            fingerprint: 0,
        };
        let client = vec![
            ("add".to_owned(), "(i32, i32) -> i32".to_owned()),
            ("mul".to_owned(), "(i64, i64) -> i64".to_owned()),
        ];
        let diff = server.differences(&client);
        assert_eq!(
            diff,
            [
                "method 'add': client has (i32, i32) -> i32, server has (i64, i64) -> i64",
                "method 'mul' is missing on the server",
                "method 'neg' is missing on the client",
            ]
        );
    }
}
