//! `spawn:PROGRAM ARGS`: starts the server as a child with pipes on its stdin and stdout.
//!
//! A spawned child lives exactly as long as its connection: when both halves are gone the
//! child reads end-of-file on stdin, and a reaper thread waits for it (sending SIGTERM if it
//! lingers past [`REAP_GRACE`], SIGKILL after as long again), so no child is left running or
//! unreaped while this process lives. When the child dies first, its stdout closes and the
//! connection ends at once (unless a grandchild inherited that stdout and keeps it open).

use std::io;
use std::os::fd::OwnedFd;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::TransportConfig;
use crate::address::Address;
use crate::blocking::BlockingConnection;
use crate::connection::{Connection, PeerInfo};
use crate::error::TransportError;
use crate::pipe::{Shared, async_connection, blocking_connection};
use crate::transport::{Acceptor, BoxFuture, Transport};

/// How long a spawned child may take to exit after its stdin closes before it is asked to stop
/// with SIGTERM, and again after that before SIGKILL.
pub const REAP_GRACE: Duration = Duration::from_secs(5);

/// The `spawn` transport (a client's address only).
pub(crate) struct Spawn;

impl Transport for Spawn {
    fn scheme(&self) -> &str {
        "spawn"
    }

    fn forms(&self) -> Vec<String> {
        vec!["spawn:PROGRAM ARGS...".into()]
    }

    fn check(&self, address: &Address) -> Result<(), TransportError> {
        command_of(address).map(drop)
    }

    fn connect<'a>(
        &'a self,
        address: &'a Address,
        config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Connection, TransportError>> {
        Box::pin(async move { spawn(command_of(address)?, config).await })
    }

    fn bind<'a>(
        &'a self,
        address: &'a Address,
        _config: &'a TransportConfig,
    ) -> BoxFuture<'a, Result<Box<dyn Acceptor>, TransportError>> {
        Box::pin(std::future::ready(Err(address.invalid(
            "`spawn:` is a client's address; the server it starts listens on `stdio`",
        ))))
    }

    fn connect_blocking(
        &self,
        address: &Address,
        config: &TransportConfig,
        _timeout: Duration,
    ) -> Result<BlockingConnection, TransportError> {
        spawn_blocking(command_of(address)?, config)
    }
}

/// The command a `spawn:PROGRAM ARGS` address names (arguments split on white space).
fn command_of(address: &Address) -> Result<Command, TransportError> {
    let mut words = address.rest().split_whitespace();
    let program = words
        .next()
        .ok_or_else(|| address.invalid("spawn: needs a program to run"))?;
    let mut command = Command::new(program);
    command.args(words);
    Ok(command)
}

/// Waits for a spawned child once both halves of its connection are gone.
#[derive(Debug)]
pub(crate) struct ChildReaper {
    child: Mutex<Option<Child>>,
}

impl ChildReaper {
    fn shared(child: Child) -> Shared {
        Arc::new(ChildReaper {
            child: Mutex::new(Some(child)),
        })
    }
}

impl ChildReaper {
    /// Starts reaping now: once both halves are gone, or as soon as the child closed its
    /// stdout (it died, or ended the connection), so a dead child is not left a zombie while
    /// the client still holds the connection. Only the first call does anything.
    pub(crate) fn start(&self) {
        let Some(mut child) = self.child.lock().map(|mut c| c.take()).unwrap_or(None) else {
            return;
        };
        // The pipes are closed by now (the halves drop their descriptors before this), so the
        // child reads end-of-file; give it time to exit on its own, then ask it to stop
        // (SIGTERM: a server finishes its calls and removes its files), then kill it.
        let reap = move || {
            if exits_within(&mut child, REAP_GRACE) {
                return;
            }
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            tracing::warn!(%pid, "spawned server ignored end-of-file; sending SIGTERM");
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            if exits_within(&mut child, REAP_GRACE) {
                return;
            }
            tracing::warn!(%pid, "spawned server ignored SIGTERM; killing it");
            let _ = child.kill();
            let _ = child.wait();
        };
        if std::thread::Builder::new()
            .name("rpc-reaper".into())
            .spawn(reap)
            .is_err()
        {
            tracing::warn!("cannot start a reaper thread; the child may stay a zombie");
        }
    }
}

impl Drop for ChildReaper {
    fn drop(&mut self) {
        self.start();
    }
}

/// Waits up to `limit` for `child` to exit, reaping it; whether it did (or cannot be waited for).
fn exits_within(child: &mut Child, limit: Duration) -> bool {
    let until = Instant::now() + limit;
    let mut pause = Duration::from_millis(1);
    loop {
        match child.try_wait() {
            Ok(Some(_)) | Err(_) => return true,
            Ok(None) if Instant::now() >= until => return false,
            Ok(None) => std::thread::sleep(pause),
        }
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

/// A spawned child's pipes: (write to its stdin, read its stdout), its pid, and its reaper.
fn spawn_child(mut command: Command) -> io::Result<(OwnedFd, OwnedFd, u32, Shared)> {
    command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = command.spawn()?;
    let pid = child.id();
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        unreachable!("both streams were asked to be piped");
    };
    Ok((stdin.into(), stdout.into(), pid, ChildReaper::shared(child)))
}

/// Spawns `command` with pipes on its stdin and stdout and returns the connection to it. The
/// child's stderr is inherited. Dropping the connection closes the child's stdin and reaps it.
pub async fn spawn(
    command: Command,
    config: &TransportConfig,
) -> Result<Connection, TransportError> {
    let (to_child, from_child, pid, reaper) = spawn_child_checked(command)?;
    async_connection(to_child, from_child, Some(reaper), config, child_peer(pid))
}

fn child_peer(pid: u32) -> PeerInfo {
    PeerInfo::Local {
        pid: Some(pid as i32),
        uid: Some(nix::unistd::getuid().as_raw()),
    }
}

fn spawn_child_checked(
    command: Command,
) -> Result<(OwnedFd, OwnedFd, u32, Shared), TransportError> {
    let shown = format!("spawn:{}", command.get_program().to_string_lossy());
    spawn_child(command).map_err(|source| TransportError::Connect {
        address: shown,
        source,
    })
}

/// Spawns `command` with pipes on its stdin and stdout and returns a blocking connection to
/// it; see [`spawn`].
pub fn spawn_blocking(
    command: Command,
    config: &TransportConfig,
) -> Result<BlockingConnection, TransportError> {
    let (to_child, from_child, pid, reaper) = spawn_child_checked(command)?;
    blocking_connection(to_child, from_child, Some(reaper), config, child_peer(pid))
}
