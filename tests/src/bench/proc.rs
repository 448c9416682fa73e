//! Child processes: spawning this binary again, guards that always kill and reap, watchdogs
//! that bound every blocking wait, CPU pinning and resident memory.

use std::ffi::OsString;
use std::io::{self, Read};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A child process that is killed and reaped when dropped, whatever happened before.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    what: String,
}

impl ChildGuard {
    /// Runs `exe args...` with stdout piped (and stdin piped when `stdin`), stderr inherited.
    pub fn spawn(exe: &Path, args: &[OsString], stdin: bool, what: &str) -> anyhow::Result<Self> {
        let child = Command::new(exe)
            .args(args)
            .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("spawn {what}"))?;
        Ok(ChildGuard {
            child: Some(child),
            what: what.to_owned(),
        })
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// What this child is, for messages.
    pub fn what(&self) -> &str {
        &self.what
    }

    /// The child's stdout, once.
    pub fn take_stdout(&mut self) -> anyhow::Result<ChildStdout> {
        self.child
            .as_mut()
            .and_then(|c| c.stdout.take())
            .with_context(|| format!("{}: no stdout", self.what))
    }

    /// The child's stdin, once (only when spawned with `stdin`).
    pub fn take_stdin(&mut self) -> anyhow::Result<ChildStdin> {
        self.child
            .as_mut()
            .and_then(|c| c.stdin.take())
            .with_context(|| format!("{}: no stdin", self.what))
    }

    /// Reads the next line the child prints (its address, `ready`, a result) within `limit`;
    /// the watchdog kills the child if it takes longer.
    pub fn read_line_within(
        &mut self,
        stdout: &mut ChildStdout,
        limit: Duration,
    ) -> anyhow::Result<String> {
        let _dog = Watchdog::arm(self.pid(), limit);
        let line = read_line(stdout).with_context(|| format!("{}: read its output", self.what))?;
        match line {
            Some(line) => Ok(line),
            None => bail!("{} ended before printing a line", self.what),
        }
    }

    /// Waits for the child to exit on its own for at most `limit`, then kills it.
    pub fn finish(mut self, limit: Duration) -> anyhow::Result<ExitStatus> {
        let mut child = self.child.take().context("child already finished")?;
        match wait_bounded(&mut child, limit)? {
            Some(status) => Ok(status),
            None => {
                kill_and_reap(&mut child);
                bail!("{} did not exit within {limit:?}", self.what)
            }
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_and_reap(&mut child);
        }
    }
}

/// Asks the child to stop (SIGTERM: a server removes its socket files and queues), then kills
/// it if it has not exited within two seconds.
fn kill_and_reap(child: &mut Child) {
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    if matches!(wait_bounded(child, Duration::from_secs(2)), Ok(Some(_))) {
        return;
    }
    let _ = child.kill();
    // SIGKILL is not ignorable; the bound only guards against a process stuck in the kernel.
    let _ = wait_bounded(child, Duration::from_secs(5));
}

/// Polls `child` until it exits or `limit` passes (`None`).
pub fn wait_bounded(child: &mut Child, limit: Duration) -> io::Result<Option<ExitStatus>> {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_micros(200);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Reads one line byte by byte (no read-ahead, so the stream stays usable for raw data);
/// `None` at end of stream before any byte.
pub fn read_line(input: &mut impl Read) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match input.read(&mut byte)? {
            0 if line.is_empty() => return Ok(None),
            0 => break,
            _ if byte[0] == b'\n' => break,
            _ => line.push(byte[0]),
        }
        if line.len() > 4096 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        }
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Kills a process with SIGKILL if it is not disarmed (dropped) within a time limit, so that
/// no blocking read or wait on it can hang: the read then sees end of stream.
#[derive(Debug)]
pub struct Watchdog {
    disarm: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    fired: Arc<AtomicBool>,
}

impl Watchdog {
    /// Watches process `pid` for `limit`.
    pub fn arm(pid: u32, limit: Duration) -> Watchdog {
        let (disarm, disarmed) = mpsc::channel::<()>();
        let fired = Arc::new(AtomicBool::new(false));
        let flag = fired.clone();
        let thread = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = disarmed.recv_timeout(limit) {
                flag.store(true, Ordering::SeqCst);
                let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
        });
        Watchdog {
            disarm: Some(disarm),
            thread: Some(thread),
            fired,
        }
    }

    /// Whether the limit passed and the process was killed.
    pub fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.disarm.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Where the client and the servers run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Cpus {
    /// The CPU of the measuring client (this process and the extra client processes).
    pub client: Option<usize>,
    /// The CPU of every server process.
    pub server: Option<usize>,
}

impl Cpus {
    /// The CPUs for `pin`: `same` puts everything on the first allowed CPU, `split` the
    /// client on the first and the servers on the second (the first if there is only one).
    pub fn choose(pin: super::cli::Pin) -> anyhow::Result<Cpus> {
        use super::cli::Pin;
        if pin == Pin::None {
            return Ok(Cpus {
                client: None,
                server: None,
            });
        }
        let allowed = sched_getaffinity(Pid::from_raw(0)).context("sched_getaffinity")?;
        let cpus: Vec<usize> = (0..CpuSet::count())
            .filter(|&c| allowed.is_set(c).unwrap_or(false))
            .take(2)
            .collect();
        let first = *cpus.first().context("no CPU allowed")?;
        let second = if pin == Pin::Split {
            *cpus.get(1).unwrap_or(&first)
        } else {
            first
        };
        Ok(Cpus {
            client: Some(first),
            server: Some(second),
        })
    }
}

/// Pins the calling thread (and the threads it starts later) to `cpu`.
pub fn pin_to(cpu: Option<usize>) -> anyhow::Result<()> {
    if let Some(cpu) = cpu {
        let mut set = CpuSet::new();
        set.set(cpu).context("CPU number out of range")?;
        sched_setaffinity(Pid::from_raw(0), &set).with_context(|| format!("pin to CPU {cpu}"))?;
    }
    Ok(())
}

/// A child's setup: die with the parent (so no server outlives an interrupted run) and pin.
pub fn child_setup(cpu: Option<usize>) -> anyhow::Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("PR_SET_PDEATHSIG")?;
    pin_to(cpu)
}

/// The resident set size of process `pid` in KiB (`VmRSS` in `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmRSS")
}

/// The peak resident set size of process `pid` in KiB (`VmHWM` in `/proc/PID/status`).
pub fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    status_kib(pid, "VmHWM")
}

/// The `field` line of `/proc/PID/status`, in KiB.
fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} line in /proc/{pid}/status"))
}

/// How many descriptors process `pid` holds open (entries of `/proc/PID/fd`).
pub fn open_fds(pid: u32) -> anyhow::Result<usize> {
    let dir = format!("/proc/{pid}/fd");
    Ok(std::fs::read_dir(&dir)
        .with_context(|| format!("read {dir}"))?
        .count())
}

/// Raises this process's soft `RLIMIT_NOFILE` to its hard limit (children inherit it), for
/// runs that hold thousands of descriptors; returns the new soft limit.
pub fn raise_nofile_limit() -> anyhow::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).context("getrlimit(RLIMIT_NOFILE)")?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).context("setrlimit(RLIMIT_NOFILE)")?;
    }
    Ok(hard)
}

/// `--cpu N` arguments for a child pinned to `cpu`.
pub fn cpu_args(cpu: Option<usize>) -> Vec<OsString> {
    cpu.map(|c| vec!["--cpu".into(), c.to_string().into()])
        .unwrap_or_default()
}
