//! Message-queue tests under a uid of their own.
//!
//! POSIX message queues count against `RLIMIT_MSGQUEUE` per real uid (800 KiB by default;
//! raising it needs `CAP_SYS_RESOURCE`), shared by every process of that user: every other
//! test binary, and every other user of the machine that runs as the same uid (root, on a
//! shared CI machine), so how much of it is free is anyone's guess. So when we may switch users
//! (root), a test runs in a child: this same test binary, started with `--exact` on that one
//! test under a uid that no process uses, whose budget is therefore untouched (the kernel
//! keeps it per user). The test passes or fails with the child; afterwards we list the
//! namespace's queues and require that none the child named is left. Without the right to
//! switch users, the test runs in place on whatever its uid has left.
//!
//! Shared by the crate's unit tests, `rpc-transport/tests/mq_limits.rs` and the `rpc-tests`
//! integration tests (included by path: it uses only `std` and `nix`; each uses a part).

#![allow(dead_code)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// Set in the child: run the test itself.
const CHILD_ENV: &str = "RPC_MQ_OWN_UID_CHILD";
/// How long a child may take.
const CHILD_LIMIT: Duration = Duration::from_secs(180);

/// The name `--exact` takes for the test function `name` in the module `module` (as
/// `module_path!()` gives it, the crate's name first).
pub fn test_path(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_, rest)) => format!("{rest}::{name}"),
        None => name.to_owned(),
    }
}

/// Whether this process is such a child.
pub fn is_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// Whether any process runs with `uid` as its real uid now.
fn in_use(uid: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return true;
    };
    entries.filter_map(Result::ok).any(|entry| {
        std::fs::read_to_string(entry.path().join("status")).is_ok_and(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next()?.parse::<u32>().ok())
                == Some(uid)
        })
    })
}

/// A uid (and gid) no process uses: from a range of our own (by pid), a different one for
/// each child of this process, so children running at once do not share a budget either.
fn unused_uid() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let base = 0x5000_0000 + (std::process::id() % 0x10000) * 0x1000;
    loop {
        let uid = base + NEXT.fetch_add(1, Ordering::Relaxed) % 0x1000;
        if !in_use(uid) {
            return uid;
        }
    }
}

/// The names of every message queue of our IPC namespace, as `/dev/mqueue` lists them: read
/// there when an mqueue file system is mounted, otherwise from one mounted for a moment in a
/// private mount namespace (`unshare -m`, which needs `CAP_SYS_ADMIN`). `None` if neither
/// works.
pub fn queue_names() -> Option<Vec<String>> {
    if let Ok(entries) = std::fs::read_dir("/dev/mqueue") {
        return Some(
            entries
                .filter_map(|e| Some(e.ok()?.file_name().to_string_lossy().into_owned()))
                .collect(),
        );
    }
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "rpc-mqueue-view-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).ok()?;
    let output = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t mqueue none "$1" && ls -1A "$1""#)
        .args(["sh", &dir.to_string_lossy()])
        .output();
    let _ = std::fs::remove_dir(&dir);
    let output = output.ok().filter(|o| o.status.success())?;
    Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .collect(),
    )
}

/// Asserts that no queue whose name is `name` or starts with `name.` is left: looked up by
/// name, and in the namespace's list when it can be read.
pub fn assert_no_queue_of(name: &str) {
    let named = nix::mqueue::mq_open(
        format!("/{name}").as_str(),
        nix::mqueue::MQ_OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
        None,
    );
    match named {
        Ok(queue) => {
            let _ = nix::mqueue::mq_close(queue);
            panic!("/{name} is left");
        }
        Err(nix::errno::Errno::ENOENT) => {}
        Err(other) => panic!("mq_open /{name}: {other}"),
    }
    match queue_names() {
        Some(names) => {
            let left: Vec<&String> = names
                .iter()
                .filter(|n| *n == name || n.starts_with(&format!("{name}.")))
                .collect();
            assert!(left.is_empty(), "left under /dev/mqueue: {left:?}");
        }
        None => eprintln!("cannot list the queues (no /dev/mqueue, no unshare): looked up /{name}"),
    }
}

/// Runs the test `test` (as `--exact` takes it: see [`test_path`]) of this binary in a child
/// under an unused uid and returns `true` once it passed (panicking if it failed); `false` if
/// the caller is to run the test itself: in such a child, or when we may not switch users.
pub fn delegated(test: &str) -> bool {
    use std::os::unix::process::CommandExt;
    if is_child() {
        return false;
    }
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "NOTE: not root: {test} runs as our own uid, on what its RLIMIT_MSGQUEUE has left"
        );
        return false;
    }
    let uid = unused_uid();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .uid(uid)
        .gid(uid)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {test} as uid {uid}: {e}"));
    let pid = child.id();
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let give_up = Instant::now() + CHILD_LIMIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= give_up {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
    let passed = status.is_some_and(|s| s.success()) && stdout.contains("1 passed");
    assert!(
        passed,
        "{test} as uid {uid} (pid {pid}) {}:\n{stdout}\n{stderr}",
        if status.is_none() {
            "took too long"
        } else {
            "failed"
        }
    );
    // Every queue the child made is named after its pid (`NAME-PID-N`, reply queues
    // `NAME-PID-N.CLIENT.N`): none may be left.
    if let Some(names) = queue_names() {
        let tag = format!("-{pid}-");
        let left: Vec<&String> = names.iter().filter(|n| n.contains(&tag)).collect();
        assert!(left.is_empty(), "{test} as uid {uid} left queues: {left:?}");
    }
    true
}
