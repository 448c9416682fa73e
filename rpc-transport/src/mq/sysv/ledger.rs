//! The ledger: which System V queues a server process made, so that those of a server killed
//! before it could remove them are reclaimed by the next one.
//!
//! System V queues outlive every process (nothing closes them when their users die), so a
//! server writes a record per connection before the client learns its queues: a file
//! `PID-START-TOKEN` in the user's runtime directory (`$XDG_RUNTIME_DIR/rpc-sysv-mq` when that
//! is ours, else `/tmp/rpc-sysv-mq-UID`; mode 0700 and owned by us, or the server runs
//! without a ledger), holding each
//! queue's id and creation time. `PID` and `START` (the process's start time in clock ticks
//! since boot, `/proc/PID/stat`) name the server process, so a record whose process is gone
//! is known to be stale even once the pid is reused. The record goes when the connection has
//! removed both queues. Every `bind` reclaims the records of dead processes, whatever their
//! name: each queue still there with the recorded creation time and our uid is removed, then
//! the record. Only small plain files of ours are read as records (no symbolic link is
//! followed, no FIFO waited on). A killed server's queues usually go sooner: its clients see it die and remove
//! them (`link.rs`); the ledger covers the rest (its clients killed too, say).

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::queue::{Queue, own_uid};

/// The directory of records.
pub(super) fn dir() -> io::Result<PathBuf> {
    let uid = own_uid();
    let ours = |path: &Path| {
        fs::symlink_metadata(path)
            .is_ok_and(|m| m.is_dir() && m.uid() == uid && m.mode() & 0o022 == 0)
    };
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(base) if ours(Path::new(&base)) => Path::new(&base).join("rpc-sysv-mq"),
        _ => std::env::temp_dir().join(format!("rpc-sysv-mq-{uid}")),
    };
    match fs::DirBuilder::new().mode(0o700).create(&dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let meta = fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o077 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} must be a directory of user {uid} with mode 0700",
                dir.display()
            ),
        ));
    }
    Ok(dir)
}

/// A process's start time, in clock ticks since boot: field 22 of `/proc/PID/stat`.
fn start_time(pid: u32) -> io::Result<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name (field 2) may hold anything but ends at the last ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19)?.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/PID/stat"))
}

/// Whether the process `pid` that started at `start` still runs. When `/proc` cannot tell,
/// it is presumed alive (its queues are left alone).
fn alive(pid: u32, start: u64) -> bool {
    match start_time(pid) {
        Ok(now) => now == start,
        Err(e) if e.kind() == io::ErrorKind::NotFound => false,
        Err(_) => true,
    }
}

/// This process, as records name it: `PID-START`.
fn this_process() -> &'static str {
    static THIS: OnceLock<String> = OnceLock::new();
    THIS.get_or_init(|| {
        let pid = std::process::id();
        format!("{pid}-{}", start_time(pid).unwrap_or(0))
    })
}

/// The ledger of this process's server connections, in [`dir`].
#[derive(Debug, Clone)]
pub(super) struct Ledger {
    dir: PathBuf,
}

/// One connection's record; deleted on drop.
#[derive(Debug)]
pub(super) struct Record {
    path: PathBuf,
}

impl Drop for Record {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

impl Ledger {
    /// The ledger in [`dir`].
    pub(super) fn open() -> io::Result<Ledger> {
        Ok(Ledger { dir: dir()? })
    }

    /// Records `queues` of the connection `token` (written before the client learns of
    /// them).
    pub(super) fn record(&self, token: u64, queues: &[&Queue]) -> io::Result<Record> {
        let path = self.dir.join(format!("{}-{token:016x}", this_process()));
        let mut text = String::new();
        for queue in queues {
            text.push_str(&format!("{} {}\n", queue.id(), queue.ctime()));
        }
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        let record = Record { path };
        file.write_all(text.as_bytes())?;
        Ok(record)
    }

    /// Reclaims the records of processes that are gone: removes each of their queues still
    /// there, then the record. Returns how many queues it removed.
    pub(super) fn reclaim(&self) -> usize {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let mut removed = 0;
        for entry in entries.filter_map(Result::ok) {
            let name = entry.file_name();
            let Some((pid, start)) = owner_of(&name.to_string_lossy()) else {
                continue;
            };
            if alive(pid, start) {
                continue;
            }
            let path = entry.path();
            let Some(text) = read_record(&path) else {
                tracing::debug!(
                    path = %path.display(),
                    "not a sysv-mq ledger record (not a small plain file of ours): left alone"
                );
                continue;
            };
            for (id, ctime) in text.lines().filter_map(parse_line) {
                if Queue::recorded(id, ctime).remove() {
                    removed += 1;
                }
            }
            let _ = fs::remove_file(&path);
        }
        if removed > 0 {
            tracing::info!(
                queues = removed,
                "removed System V queues left by sysv-mq servers that were killed"
            );
        }
        removed
    }

    /// The records of this process, for tests.
    #[cfg(test)]
    pub(super) fn own_records(&self) -> Vec<PathBuf> {
        let prefix = format!("{}-", this_process());
        fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect()
    }

    #[cfg(test)]
    pub(super) fn path(&self) -> &Path {
        &self.dir
    }
}

/// The most a record holds: a line per queue, two queues.
const RECORD_MAX: u64 = 1024;

/// The text of the record at `path`, if it is one: a plain file of ours (a symbolic link is
/// not followed, a FIFO not waited on) of at most [`RECORD_MAX`] bytes.
fn read_record(path: &Path) -> Option<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.uid() != own_uid() || meta.len() > RECORD_MAX {
        return None;
    }
    let mut text = String::new();
    file.take(RECORD_MAX).read_to_string(&mut text).ok()?;
    Some(text)
}

/// `PID-START-TOKEN`: the pid and start time.
fn owner_of(name: &str) -> Option<(u32, u64)> {
    let mut parts = name.split('-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    u64::from_str_radix(parts.next()?, 16).ok()?;
    parts.next().is_none().then_some((pid, start))
}

/// `ID CTIME`.
fn parse_line(line: &str) -> Option<(i32, i64)> {
    let (id, ctime) = line.split_once(' ')?;
    Some((id.parse().ok()?, ctime.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_name_their_process_and_queues() {
        assert_eq!(owner_of("12-345-00000000000000ff"), Some((12, 345)));
        assert_eq!(owner_of("12-345"), None);
        assert_eq!(owner_of("x-345-ff"), None);
        assert_eq!(parse_line("42 1700000000"), Some((42, 1_700_000_000)));
        assert_eq!(parse_line("42"), None);
        let pid = std::process::id();
        assert!(alive(pid, start_time(pid).unwrap()));
        assert!(!alive(pid, start_time(pid).unwrap() + 1), "a reused pid");
    }

    #[test]
    fn the_directory_is_ours_alone() {
        let dir = dir().unwrap();
        let meta = fs::metadata(&dir).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        assert_eq!(meta.uid(), own_uid());
    }
}
