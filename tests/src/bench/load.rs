//! `--load N`: N busy-loop processes (`rpc-bench burn`) beside client and server for the whole
//! run, so the figures show a machine that has other work to do.

use std::ffi::OsString;
use std::io::Write;
use std::time::Duration;

use anyhow::ensure;

use super::env::Env;
use super::proc::ChildGuard;

/// The running busy-loop processes; each is killed when this is dropped.
#[derive(Debug)]
pub struct Load {
    burners: Vec<ChildGuard>,
}

impl Load {
    /// Starts `count` busy-loop processes and waits until each runs. Call it before this
    /// process pins itself: a child inherits the CPUs its parent may use, and the burners are
    /// meant to be unpinned.
    pub fn start(env: &Env, count: usize) -> anyhow::Result<Load> {
        let mut burners = Vec::with_capacity(count);
        for n in 0..count {
            let args: Vec<OsString> = vec!["burn".into()];
            let mut child = ChildGuard::spawn(&env.exe, &args, false, &format!("burner {n}"))?;
            let mut stdout = child.take_stdout()?;
            let line = child.read_line_within(&mut stdout, Duration::from_secs(10))?;
            ensure!(line == "burning", "{}: unexpected {line:?}", child.what());
            burners.push(child);
        }
        Ok(Load { burners })
    }

    /// How many busy-loop processes run.
    pub fn count(&self) -> usize {
        self.burners.len()
    }
}

/// `rpc-bench burn`: prints `burning`, then spins until killed.
pub fn burn() -> anyhow::Result<()> {
    let mut stdout = std::io::stdout();
    writeln!(stdout, "burning")?;
    stdout.flush()?;
    let mut x = 1u64;
    loop {
        x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
    }
}
