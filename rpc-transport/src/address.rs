//! [`Address`]: where a connection goes or a listener listens, as `scheme://target`.
//!
//! An address is its text, split into a scheme and the rest. Which schemes exist, and what
//! their rest may say, is up to the transports registered under them
//! ([`register`](crate::register)): parsing (`FromStr`, in `registry.rs`) asks the scheme's
//! transport to check the address.
//! The helpers here ([`Address::host_port`], [`Address::absolute_path`], [`Address::name`])
//! parse the usual forms for any transport, built-in or not.

use std::fmt;
use std::path::PathBuf;

use crate::error::TransportError;

/// Where a connection goes or a listener listens: `tcp://HOST:PORT`, `unix:///path`,
/// `unix:@name`, `spawn:PROGRAM ARGS`, `stdio`, or any form a registered transport defines.
///
/// Parse one with [`str::parse`] (the scheme's transport checks it); `Display` prints it
/// back as written.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Address {
    text: String,
    /// Bytes of `text` before the ':' that ends the scheme (all of it for a bare word).
    scheme_len: usize,
}

fn valid_scheme(scheme: &str) -> bool {
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

impl Address {
    /// Splits `text` into scheme and rest without asking any transport: `scheme:rest`, or a
    /// bare word (`stdio`) that is all scheme. `None` if it has no valid scheme. Schemes are
    /// case-insensitive (as in URLs): the scheme is kept in lowercase, so `TCP://h:1` is
    /// `tcp://h:1`, equal to it and printed so.
    pub fn split(text: &str) -> Option<Address> {
        let scheme_len = text.find(':').unwrap_or(text.len());
        let mut text = text.to_owned();
        text[..scheme_len].make_ascii_lowercase();
        valid_scheme(&text[..scheme_len]).then_some(Address { text, scheme_len })
    }

    /// `scheme://target`, unchecked: for a transport naming an address it made (a listener's
    /// address with the port the system chose, say).
    pub fn from_target(scheme: &str, target: &str) -> Address {
        Address {
            text: format!("{}://{target}", scheme.to_ascii_lowercase()),
            scheme_len: scheme.len(),
        }
    }

    /// The scheme (`"tcp"`, `"unix"`, `"stdio"`, ...).
    pub fn scheme(&self) -> &str {
        &self.text[..self.scheme_len]
    }

    /// Everything after `scheme:` (`"//127.0.0.1:80"`, `"@name"`, `"calc-server --listen
    /// stdio"`); empty for a bare word.
    pub fn rest(&self) -> &str {
        self.text.get(self.scheme_len + 1..).unwrap_or("")
    }

    /// What follows `scheme://`, for the URL-like forms; `None` for the others.
    pub fn target(&self) -> Option<&str> {
        self.rest().strip_prefix("//")
    }

    /// The address as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// An [`InvalidAddress`](TransportError::InvalidAddress) error for this address.
    pub fn invalid(&self, reason: impl Into<String>) -> TransportError {
        TransportError::InvalidAddress {
            address: self.text.clone(),
            reason: reason.into(),
        }
    }

    /// The target, or an error naming the form `scheme://what` expected.
    pub fn required_target(&self, what: &str) -> Result<&str, TransportError> {
        self.target()
            .ok_or_else(|| self.invalid(format!("expected {}://{what}", self.scheme())))
    }

    /// `scheme://HOST:PORT`: the host (an IPv6 address without its brackets) and port.
    pub fn host_port(&self) -> Result<(String, u16), TransportError> {
        let rest = self.required_target("HOST:PORT")?;
        let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| self.invalid("an IPv6 host needs a closing ']'"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| self.invalid("expected ':PORT' after the host"))?;
            (host, port)
        } else {
            rest.rsplit_once(':')
                .ok_or_else(|| self.invalid("expected HOST:PORT"))?
        };
        if host.is_empty() {
            return Err(self.invalid("the host is empty"));
        }
        let port = port
            .parse::<u16>()
            .map_err(|_| self.invalid(format!("'{port}' is not a port number (0-65535)")))?;
        Ok((host.to_owned(), port))
    }

    /// `scheme:///abs/path`: the absolute path.
    pub fn absolute_path(&self) -> Result<PathBuf, TransportError> {
        match self.target() {
            Some(path) if path.starts_with('/') && path.len() > 1 => Ok(PathBuf::from(path)),
            _ => Err(self.invalid(format!(
                "{}:// needs an absolute path, as in {0}:///abs/path",
                self.scheme()
            ))),
        }
    }

    /// `scheme://NAME`: a name without '/' or NUL.
    pub fn name(&self) -> Result<String, TransportError> {
        check_name(self, self.required_target("NAME")?)
    }
}

/// `name` if it is a valid object name (not empty, no '/' or NUL).
pub(crate) fn check_name(address: &Address, name: &str) -> Result<String, TransportError> {
    if name.is_empty() {
        return Err(address.invalid("the name is empty"));
    }
    if name.contains('/') || name.contains('\0') {
        return Err(address.invalid("a name may not contain '/' or NUL"));
    }
    Ok(name.to_owned())
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> Address {
        let address: Address = text.parse().unwrap();
        assert_eq!(address.to_string(), text);
        address
    }

    #[test]
    fn parses_every_built_in_form() {
        let tcp = round_trip("tcp://127.0.0.1:7000");
        assert_eq!(tcp.scheme(), "tcp");
        assert_eq!(tcp.host_port().unwrap(), ("127.0.0.1".into(), 7000));
        assert_eq!(
            round_trip("tcp://[::1]:0").host_port().unwrap(),
            ("::1".into(), 0)
        );
        assert_eq!(
            round_trip("unix:///tmp/a.sock").absolute_path().unwrap(),
            PathBuf::from("/tmp/a.sock")
        );
        assert_eq!(round_trip("unix:@calc").rest(), "@calc");
        assert_eq!(round_trip("mem://calc").name().unwrap(), "calc");
        assert_eq!(round_trip("shm://calc").name().unwrap(), "calc");
        round_trip("shm:///run/calc.sock");
        round_trip("mmap:///tmp/seg");
        assert_eq!(round_trip("sysv-shm://calc").name().unwrap(), "calc");
        round_trip("sysv-shm:///run/calc.sock");
        assert_eq!(round_trip("stdio").scheme(), "stdio");
        let spawn = round_trip("spawn:calc-server --listen stdio");
        assert_eq!(spawn.scheme(), "spawn");
        assert_eq!(spawn.rest(), "calc-server --listen stdio");
        round_trip("fifo:///tmp/calc");
        round_trip("mq://calc");
        assert_eq!(round_trip("sysv-mq://calc").name().unwrap(), "calc");
        round_trip("tls://example.com:443");
    }

    #[test]
    fn unknown_scheme_lists_the_supported_ones() {
        // The forms first: a transport another test registers meanwhile only adds to the list.
        let forms = crate::supported_forms();
        let err = "http://example.com".parse::<Address>().unwrap_err();
        assert!(matches!(err, TransportError::UnsupportedScheme { .. }));
        let message = err.to_string();
        for form in forms {
            assert!(message.contains(&form), "{message} lacks {form}");
        }
        assert!("localhost:80".parse::<Address>().is_err());
        assert!("".parse::<Address>().is_err());
    }

    /// Schemes are case-insensitive, as in URLs: one address whatever the case of its scheme
    /// (the rest keeps its case: paths and names are case-sensitive).
    #[test]
    fn schemes_are_case_insensitive() {
        use std::hash::{BuildHasher, RandomState};
        let lower: Address = "tcp://h:1".parse().unwrap();
        for text in ["TCP://h:1", "Tcp://h:1"] {
            let address: Address = text.parse().unwrap();
            assert_eq!(address, lower, "{text}");
            assert_eq!(address.scheme(), "tcp");
            assert_eq!(address.to_string(), "tcp://h:1");
            let hasher = RandomState::new();
            assert_eq!(hasher.hash_one(&address), hasher.hash_one(&lower));
        }
        let path: Address = "UNIX:///tmp/A.sock".parse().unwrap();
        assert_eq!(path.to_string(), "unix:///tmp/A.sock");
        assert_eq!(Address::from_target("TCP", "h:1"), lower);
        assert!("STDIO".parse::<Address>().is_ok());
        assert!(
            "SYSV-SHM://Calc"
                .parse::<Address>()
                .unwrap()
                .name()
                .unwrap()
                == "Calc"
        );
    }

    #[test]
    fn malformed_addresses_say_what_is_wrong() {
        let cases = [
            ("tcp://127.0.0.1", "HOST:PORT"),
            ("tcp:127.0.0.1:80", "tcp://HOST:PORT"),
            ("tcp://:80", "host is empty"),
            ("tcp://h:99999", "not a port"),
            ("tcp://[::1:80", "closing ']'"),
            ("unix://relative.sock", "absolute path"),
            ("mem://", "name is empty"),
            ("mq://a/b", "may not contain"),
            ("sysv-shm://", "name is empty"),
            ("sysv-shm://a/b", "may not contain"),
            ("sysv-mq://", "name is empty"),
            ("spawn:", "needs a program"),
            ("stdio:x", "stdio"),
        ];
        for (text, expected) in cases {
            let err = text.parse::<Address>().unwrap_err();
            assert!(
                matches!(err, TransportError::InvalidAddress { .. }),
                "{text}: {err:?}"
            );
            assert!(err.to_string().contains(expected), "{text}: {err}");
        }
    }
}
