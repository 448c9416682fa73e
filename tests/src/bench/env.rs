//! [`Env`]: what every measurement needs to start its processes: this binary's path, a
//! scratch directory removed at the end, and the CPUs to pin to.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::Context as _;

use super::proc::Cpus;
use crate::TestPki;

/// The run's environment.
#[derive(Debug)]
pub struct Env {
    /// This binary, re-executed for every child.
    pub exe: PathBuf,
    /// Where the client and servers run.
    pub cpus: Cpus,
    scratch: PathBuf,
    next: AtomicUsize,
    tls: OnceLock<TestPki>,
}

impl Env {
    /// Creates the scratch directory.
    pub fn new(cpus: Cpus) -> anyhow::Result<Env> {
        let exe = std::env::current_exe().context("find this binary")?;
        let scratch = std::env::temp_dir().join(format!("rpc-bench-{}", std::process::id()));
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("create {}", scratch.display()))?;
        Ok(Env {
            exe,
            cpus,
            scratch,
            next: AtomicUsize::new(0),
            tls: OnceLock::new(),
        })
    }

    /// The scratch directory.
    pub fn scratch(&self) -> &Path {
        &self.scratch
    }

    /// A fresh name, unique on this host while the run lasts: `{prefix}-{pid}-{n}`.
    pub fn unique(&self, prefix: &str) -> String {
        format!(
            "{prefix}-{}-{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        )
    }

    /// The run's `tls://` certificates (a CA, a server certificate for 127.0.0.1), made at
    /// the first use.
    pub fn tls(&self) -> &TestPki {
        self.tls.get_or_init(TestPki::new)
    }

    /// A fresh path in the scratch directory.
    pub fn path(&self, prefix: &str) -> PathBuf {
        self.scratch.join(self.unique(prefix))
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}
