//! Parsing and printing of transport addresses (`tcp://HOST:PORT`, `unix:///path`, ...).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::TransportError;

/// The address forms this crate understands, one line each, for error messages and docs.
pub const SUPPORTED_FORMS: &[&str] = &[
    "tcp://HOST:PORT",
    "tls://HOST:PORT",
    "unix:///abs/path.sock",
    "unix:@abstract-name",
    "mem://NAME",
    "shm://NAME",
    "shm:///abs/rendezvous.sock",
    "mmap:///abs/file",
    "stdio",
    "spawn:PROGRAM ARGS...",
    "fifo:///abs/dir",
    "mq://NAME",
];

/// Where a connection goes or a listener listens.
///
/// Parse one with [`str::parse`]; `Display` prints it back in the same form.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Address {
    /// `tcp://HOST:PORT`: TCP, with `TCP_NODELAY`. HOST may be a name, an IPv4 or a bracketed IPv6 address.
    Tcp {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// Port; 0 asks the listener for any free port.
        port: u16,
    },
    /// `tls://HOST:PORT`: TCP with TLS.
    Tls {
        /// Host name or IP address (IPv6 without brackets).
        host: String,
        /// Port; 0 asks the listener for any free port.
        port: u16,
    },
    /// `unix:///abs/path.sock`: a Unix domain socket bound to a file system path.
    Unix(PathBuf),
    /// `unix:@name`: a Unix domain socket in Linux's abstract namespace.
    UnixAbstract(String),
    /// `mem://NAME`: an in-process connection, for tests and same-process services.
    Mem(String),
    /// `shm://NAME`: shared memory, rendezvous socket in the per-user runtime directory.
    ShmNamed(String),
    /// `shm:///abs/rendezvous.sock`: shared memory, rendezvous socket at an explicit path.
    ShmPath(PathBuf),
    /// `mmap:///abs/file`: shared-memory rings in a mapping of a regular file.
    Mmap(PathBuf),
    /// `stdio`: serve one connection on this process's stdin/stdout.
    Stdio,
    /// `spawn:PROGRAM ARGS...`: spawn the server as a child connected by anonymous pipes.
    Spawn {
        /// The program to run.
        program: String,
        /// Its arguments, split on white space.
        args: Vec<String>,
    },
    /// `fifo:///abs/dir`: named pipes in a directory owned by the server.
    Fifo(PathBuf),
    /// `mq://NAME`: POSIX message queues.
    Mq(String),
}

impl Address {
    /// The scheme as written in the address (`"tcp"`, `"unix"`, `"stdio"`, ...).
    pub fn scheme(&self) -> &'static str {
        match self {
            Address::Tcp { .. } => "tcp",
            Address::Tls { .. } => "tls",
            Address::Unix(_) | Address::UnixAbstract(_) => "unix",
            Address::Mem(_) => "mem",
            Address::ShmNamed(_) | Address::ShmPath(_) => "shm",
            Address::Mmap(_) => "mmap",
            Address::Stdio => "stdio",
            Address::Spawn { .. } => "spawn",
            Address::Fifo(_) => "fifo",
            Address::Mq(_) => "mq",
        }
    }
}

fn invalid(address: &str, reason: impl Into<String>) -> TransportError {
    TransportError::InvalidAddress {
        address: address.to_owned(),
        reason: reason.into(),
    }
}

fn parse_host_port(address: &str, rest: &str) -> Result<(String, u16), TransportError> {
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| invalid(address, "an IPv6 host needs a closing ']'"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| invalid(address, "expected ':PORT' after the host"))?;
        (host, port)
    } else {
        rest.rsplit_once(':')
            .ok_or_else(|| invalid(address, "expected HOST:PORT"))?
    };
    if host.is_empty() {
        return Err(invalid(address, "the host is empty"));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| invalid(address, format!("'{port}' is not a port number (0-65535)")))?;
    Ok((host.to_owned(), port))
}

fn parse_abs_path(address: &str, rest: &str, what: &str) -> Result<PathBuf, TransportError> {
    if !rest.starts_with('/') || rest.len() < 2 {
        return Err(invalid(
            address,
            format!("{what} needs an absolute path, as in scheme:///abs/path"),
        ));
    }
    Ok(PathBuf::from(rest))
}

fn parse_name(address: &str, rest: &str) -> Result<String, TransportError> {
    if rest.is_empty() {
        return Err(invalid(address, "the name is empty"));
    }
    if rest.contains('/') || rest.contains('\0') {
        return Err(invalid(address, "a name may not contain '/' or NUL"));
    }
    Ok(rest.to_owned())
}

impl FromStr for Address {
    type Err = TransportError;

    fn from_str(address: &str) -> Result<Self, Self::Err> {
        if address == "stdio" {
            return Ok(Address::Stdio);
        }
        if let Some(command) = address.strip_prefix("spawn:") {
            let mut words = command.split_whitespace().map(str::to_owned);
            let program = words
                .next()
                .ok_or_else(|| invalid(address, "spawn: needs a program to run"))?;
            return Ok(Address::Spawn {
                program,
                args: words.collect(),
            });
        }
        if let Some(name) = address.strip_prefix("unix:@") {
            return parse_name(address, name).map(Address::UnixAbstract);
        }
        let (scheme, rest) =
            address
                .split_once("://")
                .ok_or_else(|| TransportError::UnsupportedScheme {
                    address: address.to_owned(),
                })?;
        match scheme {
            "tcp" => parse_host_port(address, rest).map(|(host, port)| Address::Tcp { host, port }),
            "tls" => parse_host_port(address, rest).map(|(host, port)| Address::Tls { host, port }),
            "unix" => parse_abs_path(address, rest, "unix://").map(Address::Unix),
            "mem" => parse_name(address, rest).map(Address::Mem),
            "shm" if rest.starts_with('/') => {
                parse_abs_path(address, rest, "shm://").map(Address::ShmPath)
            }
            "shm" => parse_name(address, rest).map(Address::ShmNamed),
            "mmap" => parse_abs_path(address, rest, "mmap://").map(Address::Mmap),
            "fifo" => parse_abs_path(address, rest, "fifo://").map(Address::Fifo),
            "mq" => parse_name(address, rest).map(Address::Mq),
            _ => Err(TransportError::UnsupportedScheme {
                address: address.to_owned(),
            }),
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn host(h: &str) -> String {
            if h.contains(':') {
                format!("[{h}]")
            } else {
                h.to_owned()
            }
        }
        match self {
            Address::Tcp { host: h, port } => write!(f, "tcp://{}:{port}", host(h)),
            Address::Tls { host: h, port } => write!(f, "tls://{}:{port}", host(h)),
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
            Address::UnixAbstract(name) => write!(f, "unix:@{name}"),
            Address::Mem(name) => write!(f, "mem://{name}"),
            Address::ShmNamed(name) => write!(f, "shm://{name}"),
            Address::ShmPath(path) => write!(f, "shm://{}", path.display()),
            Address::Mmap(path) => write!(f, "mmap://{}", path.display()),
            Address::Stdio => f.write_str("stdio"),
            Address::Spawn { program, args } => {
                write!(f, "spawn:{program}")?;
                args.iter().try_for_each(|a| write!(f, " {a}"))
            }
            Address::Fifo(path) => write!(f, "fifo://{}", path.display()),
            Address::Mq(name) => write!(f, "mq://{name}"),
        }
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
    fn parses_every_documented_form() {
        assert_eq!(
            round_trip("tcp://127.0.0.1:7000"),
            Address::Tcp {
                host: "127.0.0.1".into(),
                port: 7000
            }
        );
        assert_eq!(
            round_trip("tcp://[::1]:0"),
            Address::Tcp {
                host: "::1".into(),
                port: 0
            }
        );
        assert_eq!(
            round_trip("unix:///tmp/a.sock"),
            Address::Unix("/tmp/a.sock".into())
        );
        assert_eq!(
            round_trip("unix:@calc"),
            Address::UnixAbstract("calc".into())
        );
        assert_eq!(round_trip("mem://calc"), Address::Mem("calc".into()));
        assert_eq!(round_trip("shm://calc"), Address::ShmNamed("calc".into()));
        assert_eq!(
            round_trip("shm:///run/calc.sock"),
            Address::ShmPath("/run/calc.sock".into())
        );
        assert_eq!(
            round_trip("mmap:///tmp/seg"),
            Address::Mmap("/tmp/seg".into())
        );
        assert_eq!(round_trip("stdio"), Address::Stdio);
        assert_eq!(
            round_trip("spawn:calc-server --listen stdio"),
            Address::Spawn {
                program: "calc-server".into(),
                args: vec!["--listen".into(), "stdio".into()]
            }
        );
        assert_eq!(
            round_trip("fifo:///tmp/calc"),
            Address::Fifo("/tmp/calc".into())
        );
        assert_eq!(round_trip("mq://calc"), Address::Mq("calc".into()));
    }

    #[test]
    fn unknown_scheme_lists_the_supported_ones() {
        let err = "http://example.com".parse::<Address>().unwrap_err();
        assert!(matches!(err, TransportError::UnsupportedScheme { .. }));
        let message = err.to_string();
        for form in SUPPORTED_FORMS {
            assert!(message.contains(form), "{message} lacks {form}");
        }
        assert!("localhost:80".parse::<Address>().is_err());
    }

    #[test]
    fn malformed_addresses_say_what_is_wrong() {
        let cases = [
            ("tcp://127.0.0.1", "HOST:PORT"),
            ("tcp://:80", "host is empty"),
            ("tcp://h:99999", "not a port"),
            ("tcp://[::1:80", "closing ']'"),
            ("unix://relative.sock", "absolute path"),
            ("mem://", "name is empty"),
            ("mq://a/b", "may not contain"),
            ("spawn:", "needs a program"),
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
