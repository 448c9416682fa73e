//! `stdio`: the spawned child's side, one connection on this process's stdin and stdout.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use nix::fcntl::OFlag;

use crate::TransportConfig;
use crate::address::Address;
use crate::connection::{Connection, PeerInfo};
use crate::error::TransportError;
use crate::pipe::async_connection;
use crate::transport::{Acceptor, BoxFuture, Transport};

/// The `stdio` transport (a server's address only).
pub(crate) struct Stdio;

impl Transport for Stdio {
    fn scheme(&self) -> &str {
        "stdio"
    }

    fn forms(&self) -> Vec<String> {
        vec!["stdio".into()]
    }

    fn check(&self, address: &Address) -> Result<(), TransportError> {
        if address.as_str() == "stdio" {
            Ok(())
        } else {
            Err(address.invalid("`stdio` takes nothing after it"))
        }
    }

    fn connect<'a>(
        &'a self,
        address: &'a Address,
        _config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Connection, TransportError>> {
        Box::pin(std::future::ready(Err(address.invalid(
            "`stdio` is a server's address; a client starts that server with `spawn:PROGRAM ARGS`",
        ))))
    }

    fn bind<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Acceptor>, TransportError>> {
        Box::pin(async move {
            let acceptor = StdioAcceptor::bind(address, config)?;
            Ok(Box::new(acceptor) as Box<dyn Acceptor>)
        })
    }
}

/// The server side of `stdio`: this process's stdin and stdout, handed out once.
struct StdioAcceptor {
    connection: Mutex<Option<Connection>>,
}

/// Set once a listener has taken this process's stdin and stdout.
static STDIO_TAKEN: AtomicBool = AtomicBool::new(false);

impl StdioAcceptor {
    /// Takes this process's stdin and stdout for one connection. Descriptors 0 and 1 are then
    /// pointed at `/dev/null` and stderr, so a stray `println!` cannot corrupt the stream.
    fn bind(address: &Address, config: &TransportConfig) -> Result<StdioAcceptor, TransportError> {
        let bind_error = |source: io::Error| TransportError::Bind {
            address: address.to_string(),
            source,
        };
        if STDIO_TAKEN.swap(true, Ordering::SeqCst) {
            return Err(TransportError::AddressInUse {
                address: address.to_string(),
            });
        }
        let parent = PeerInfo::Local {
            pid: Some(nix::unistd::getppid().as_raw()),
            uid: Some(nix::unistd::getuid().as_raw()),
        };
        let connection = take_stdio()
            .map_err(TransportError::Io)
            .and_then(|(input, output)| async_connection(output, input, None, config, parent))
            .map_err(|e| {
                STDIO_TAKEN.store(false, Ordering::SeqCst);
                match e {
                    TransportError::Io(e) => bind_error(e),
                    other => other,
                }
            })?;
        Ok(StdioAcceptor {
            connection: Mutex::new(Some(connection)),
        })
    }
}

impl Acceptor for StdioAcceptor {
    fn local_address(&self) -> Address {
        Address::split("stdio").expect("a bare word is an address")
    }

    /// The one connection; [`TransportError::Closed`] after it (the listener is done).
    fn accept(&self) -> BoxFuture<'_, Result<Connection, TransportError>> {
        let taken = self.connection.lock().map(|mut c| c.take()).unwrap_or(None);
        Box::pin(std::future::ready(taken.ok_or(TransportError::Closed)))
    }
}

/// Takes stdin and stdout for the connection and returns private descriptors of them; then
/// descriptor 0 becomes `/dev/null` and descriptor 1 a copy of stderr. Both must be pipes;
/// nothing is changed if they are not.
///
/// The pipes are reopened through `/proc/self/fd`, which gives this process open file
/// descriptions of its own: making them non-blocking then cannot affect another process
/// sharing the inherited ones (a shell pipeline's other members).
fn take_stdio() -> io::Result<(OwnedFd, OwnedFd)> {
    let stdin = io::stdin();
    let stdout = io::stdout();
    for (fd, name) in [(stdin.as_fd(), "stdin"), (stdout.as_fd(), "stdout")] {
        let kind = nix::sys::stat::fstat(fd)?.st_mode & nix::libc::S_IFMT;
        if kind != nix::libc::S_IFIFO {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{name} is not a pipe; `stdio` serves the pipes a `spawn:` client makes"),
            ));
        }
    }
    let reopen = |fd: BorrowedFd<'_>, flags: OFlag| -> io::Result<OwnedFd> {
        let path = format!("/proc/self/fd/{}", fd.as_raw_fd());
        match nix::fcntl::open(
            path.as_str(),
            flags | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(private) => Ok(private),
            // No /proc: share the inherited description after all.
            Err(_) => fd.try_clone_to_owned(),
        }
    };
    let input = reopen(stdin.as_fd(), OFlag::O_RDONLY)?;
    let output = reopen(stdout.as_fd(), OFlag::O_WRONLY)?;
    // Hold the locks so no other thread writes to stdout while it is being redirected.
    let _in = stdin.lock();
    let mut out = stdout.lock();
    out.flush()?;
    let null = std::fs::File::open("/dev/null")?;
    nix::unistd::dup2_stdin(null.as_fd())?;
    nix::unistd::dup2_stdout(io::stderr().as_fd())?;
    Ok((input, output))
}
