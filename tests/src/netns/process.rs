//! [`HostProcess`]: a child started in a test host, its output lines collected, killed and
//! reaped on drop.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A child process whose stdout and stderr lines are collected as they come. Its stdin is a
/// pipe held open until [`close_stdin`](Self::close_stdin) or drop, so a child that watches
/// stdin (netem-delay, the replica client) also ends when the test process dies; every child
/// also gets SIGKILL as its parent death signal. Dropping it kills it (SIGKILL) and reaps it.
pub struct HostProcess {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Receiver<String>,
    /// Every line so far, stdout and stderr interleaved as they arrived, each with whether it
    /// came from stdout.
    log: Arc<Mutex<Vec<(bool, String)>>>,
    started: Instant,
}

impl HostProcess {
    /// Starts `command` (named `name` in messages). The child is also killed (SIGKILL) when the
    /// thread that started it ends, the test process killed with SIGKILL included.
    pub fn spawn(name: &str, mut command: Command) -> HostProcess {
        // SAFETY: the closure runs in the forked child before exec and only calls prctl(2),
        // which is async-signal-safe; it allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let mut child = command
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        let started = Instant::now();
        let (tx, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let stderr: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        for (is_stdout, stream) in [(true, stdout), (false, stderr)] {
            let tx = tx.clone();
            let log = log.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    log.lock().unwrap().push((is_stdout, line.clone()));
                    let _ = tx.send(line);
                }
            });
        }
        HostProcess {
            name: name.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            log,
            started,
        }
    }

    /// The child's pid (that of the program itself: `ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// When the child was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Waits at most `limit` for the next line that contains `needle`, skipping others;
    /// panics with the output so far if none comes.
    pub fn expect_line(&self, needle: &str, limit: Duration) -> String {
        self.wait_line(limit, |line| line.contains(needle))
            .unwrap_or_else(|| panic!("{} never printed {needle:?}:\n{}", self.name, self.output()))
    }

    /// The next line for which `accept` holds, waiting at most `limit`; `None` when none came
    /// in time or the child closed its output.
    pub fn wait_line(
        &self,
        limit: Duration,
        mut accept: impl FnMut(&str) -> bool,
    ) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if accept(&line) => return Some(line),
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return None,
            }
        }
    }

    /// Everything the child printed so far, one line each.
    pub fn output(&self) -> String {
        let log = self.log.lock().unwrap();
        log.iter()
            .map(|(_, line)| line.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// What the child printed on stdout so far, each line ended by a newline.
    pub fn stdout(&self) -> String {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|(is_stdout, _)| *is_stdout)
            .map(|(_, line)| format!("{line}\n"))
            .collect()
    }

    /// Waits at most `limit` for the child to exit and for its output to end; panics with
    /// its output if it does not.
    pub fn finish(&mut self, limit: Duration) -> ExitStatus {
        let status = self.wait_exit(limit).unwrap_or_else(|| {
            panic!(
                "{} still runs after {limit:?}:\n{}",
                self.name,
                self.output()
            )
        });
        // Drain: the reader threads end when the pipes close (bounded by `limit` again).
        while self.wait_line(limit, |_| false).is_some() {}
        status
    }

    /// Closes the child's stdin.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Its exit status if it has exited.
    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().expect("try_wait")
    }

    /// Waits at most `limit` for the child to exit; `None` if it still runs.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_exit() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Sends `signal` to the child.
    pub fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal)
            .unwrap_or_else(|e| panic!("signal {signal} to {}: {e}", self.name));
    }

    /// Kills the child with SIGKILL and reaps it.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for HostProcess {
    fn drop(&mut self) {
        self.kill_9();
    }
}
