//! The two tokio runtimes every async client figure is measured on: the multi-threaded one
//! exactly as `#[tokio::main]` builds it (what users get), and a current-thread one.

use anyhow::Context as _;
use serde::Serialize;
use tokio::runtime::Runtime;

/// Which runtime a figure was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RuntimeKind {
    /// `Builder::new_multi_thread().enable_all().build()`: what `#[tokio::main]` builds, no
    /// worker count or other tuning. The measuring loop runs in `block_on` on the main thread
    /// (as `#[tokio::main] async fn main` does); spawned tasks run on the workers.
    MultiThread,
    /// `Builder::new_current_thread().enable_all().build()`: everything on the main thread.
    CurrentThread,
}

impl RuntimeKind {
    /// Both, in report order: the default first.
    pub const ALL: [RuntimeKind; 2] = [RuntimeKind::MultiThread, RuntimeKind::CurrentThread];

    /// The label in reports.
    pub fn label(self) -> &'static str {
        match self {
            RuntimeKind::MultiThread => "multi-thread (#[tokio::main] default)",
            RuntimeKind::CurrentThread => "current-thread",
        }
    }

    fn build(self) -> std::io::Result<Runtime> {
        match self {
            RuntimeKind::MultiThread => tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build(),
            RuntimeKind::CurrentThread => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build(),
        }
    }
}

/// The report labels of both runtimes.
pub fn labels() -> PerRuntime<&'static str> {
    PerRuntime {
        multi_thread: RuntimeKind::MultiThread.label(),
        current_thread: RuntimeKind::CurrentThread.label(),
    }
}

/// One figure (or set of figures) per runtime.
#[derive(Debug, Clone, Serialize)]
pub struct PerRuntime<T> {
    /// On the default multi-threaded runtime.
    pub multi_thread: T,
    /// On a current-thread runtime.
    pub current_thread: T,
}

impl<T> PerRuntime<T> {
    /// The figure of `kind`.
    pub fn get(&self, kind: RuntimeKind) -> &T {
        match kind {
            RuntimeKind::MultiThread => &self.multi_thread,
            RuntimeKind::CurrentThread => &self.current_thread,
        }
    }
}

/// The measuring process's two client runtimes, built once (after the process is pinned, so
/// the multi-threaded one has a worker per CPU the client may use, as it would for a user
/// whose process is placed the same way).
#[derive(Debug)]
pub struct Runtimes {
    multi_thread: Runtime,
    current_thread: Runtime,
}

impl Runtimes {
    /// Builds both.
    pub fn new() -> anyhow::Result<Runtimes> {
        Ok(Runtimes {
            multi_thread: RuntimeKind::MultiThread
                .build()
                .context("build the multi-thread client runtime")?,
            current_thread: RuntimeKind::CurrentThread
                .build()
                .context("build the current-thread client runtime")?,
        })
    }

    /// The runtime of `kind`.
    pub fn get(&self, kind: RuntimeKind) -> &Runtime {
        match kind {
            RuntimeKind::MultiThread => &self.multi_thread,
            RuntimeKind::CurrentThread => &self.current_thread,
        }
    }

    /// Worker threads of the multi-threaded runtime.
    pub fn workers(&self) -> usize {
        self.multi_thread.metrics().num_workers()
    }

    /// Runs `measure` on each runtime in turn, the default first.
    pub fn each<T>(
        &self,
        mut measure: impl FnMut(RuntimeKind, &Runtime) -> anyhow::Result<T>,
    ) -> anyhow::Result<PerRuntime<T>> {
        let multi_thread = measure(RuntimeKind::MultiThread, &self.multi_thread)?;
        let current_thread = measure(RuntimeKind::CurrentThread, &self.current_thread)?;
        Ok(PerRuntime {
            multi_thread,
            current_thread,
        })
    }
}
