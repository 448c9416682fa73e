//! The System V message-queue calls (`msgget`, `msgsnd`, `msgrcv`, `msgctl`): the only
//! `unsafe` of `sysv-mq://`, each call given a buffer it may read or write in full.

use nix::errno::Errno;

/// Bytes in front of a message's text: its `long` type (`mtype`).
const TYPE_LEN: usize = size_of::<libc::c_long>();

/// A message as `msgsnd` and `msgrcv` take it: a `long` type followed by up to `capacity`
/// bytes of text, aligned for the `long` (it is stored as `long`s).
#[derive(Debug)]
pub(super) struct MsgBuf {
    words: Vec<libc::c_long>,
    capacity: usize,
    /// Bytes of text loaded (sending) or received.
    len: usize,
}

impl MsgBuf {
    /// A buffer for messages of up to `capacity` bytes of text (all a receive may take).
    pub(super) fn new(capacity: usize) -> MsgBuf {
        MsgBuf {
            words: vec![0; 1 + capacity.div_ceil(TYPE_LEN)],
            capacity,
            len: 0,
        }
    }

    /// The message's type.
    // A `long` is 64 bits wide on some targets and not on others.
    #[allow(clippy::useless_conversion)]
    pub(super) fn mtype(&self) -> i64 {
        i64::from(self.words[0])
    }

    /// The message's text.
    pub(super) fn text(&self) -> &[u8] {
        &self.bytes()[TYPE_LEN..TYPE_LEN + self.len]
    }

    /// Loads a message of type `mtype` with `text` to send, growing the buffer if need be (a
    /// sender's buffer is as large as the largest message it sent).
    pub(super) fn load(&mut self, mtype: i64, text: &[u8]) {
        if text.len() > self.capacity {
            self.words.resize(1 + text.len().div_ceil(TYPE_LEN), 0);
            self.capacity = text.len();
        }
        self.words[0] = mtype as libc::c_long;
        self.bytes_mut()[TYPE_LEN..TYPE_LEN + text.len()].copy_from_slice(text);
        self.len = text.len();
    }

    fn bytes(&self) -> &[u8] {
        // SAFETY: the `long`s are plain integers, every byte of which is initialized; the
        // view covers exactly their bytes and borrows `self` for its life.
        unsafe {
            std::slice::from_raw_parts(self.words.as_ptr().cast(), self.words.len() * TYPE_LEN)
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`; any byte pattern is a valid `long`, so writes cannot break it.
        unsafe {
            std::slice::from_raw_parts_mut(
                self.words.as_mut_ptr().cast(),
                self.words.len() * TYPE_LEN,
            )
        }
    }
}

/// Creates a private queue (`IPC_PRIVATE`, mode 0600): its id.
pub(super) fn create() -> Result<i32, Errno> {
    // SAFETY: msgget takes no pointer.
    Errno::result(unsafe { libc::msgget(libc::IPC_PRIVATE, libc::IPC_CREAT | 0o600) })
}

/// Sends the message loaded in `buf`; `nowait` fails with `EAGAIN` instead of waiting for room.
/// Interrupted waits are resumed.
pub(super) fn send(id: i32, buf: &MsgBuf, nowait: bool) -> Result<(), Errno> {
    let flags = if nowait { libc::IPC_NOWAIT } else { 0 };
    loop {
        // SAFETY: `buf.words` holds the type and then `buf.len` bytes of text (`len` is at
        // most `capacity`, for which the words have room); msgsnd only reads them.
        let sent = unsafe { libc::msgsnd(id, buf.words.as_ptr().cast(), buf.len, flags) };
        match Errno::result(sent) {
            Err(Errno::EINTR) => continue,
            other => return other.map(drop),
        }
    }
}

/// Receives the first message of any type into `buf` (a longer one is cut to the buffer,
/// `MSG_NOERROR`); `nowait` fails with `ENOMSG` instead of waiting. Interrupted waits are
/// resumed.
pub(super) fn receive(id: i32, buf: &mut MsgBuf, nowait: bool) -> Result<(), Errno> {
    let flags = libc::MSG_NOERROR | if nowait { libc::IPC_NOWAIT } else { 0 };
    loop {
        // SAFETY: `buf.words` has room for the type and `capacity` bytes of text, all of
        // which msgrcv may write (it writes no more than `capacity` with `MSG_NOERROR`).
        let read =
            unsafe { libc::msgrcv(id, buf.words.as_mut_ptr().cast(), buf.capacity, 0, flags) };
        match Errno::result(read) {
            Err(Errno::EINTR) => continue,
            Err(errno) => return Err(errno),
            Ok(n) => {
                buf.len = (n as usize).min(buf.capacity);
                return Ok(());
            }
        }
    }
}

/// Waits until the queue holds a message, without taking it: a `msgrcv` of zero bytes, which
/// fails with `E2BIG` as soon as there is a message (and leaves it), or takes a message of no
/// text (`Ok`). Interrupted waits are resumed.
pub(super) fn wait_for_message(id: i32) -> Result<(), Errno> {
    let mut mtype: libc::c_long = 0;
    loop {
        // SAFETY: `mtype` has room for the type, and no text is asked for (a message with
        // text fails with E2BIG, nothing written), so msgrcv writes only the type; it outlives
        // the call.
        let read = unsafe { libc::msgrcv(id, (&raw mut mtype).cast(), 0, 0, 0) };
        match Errno::result(read) {
            Err(Errno::EINTR) => continue,
            Err(Errno::E2BIG) => return Ok(()),
            other => return other.map(drop),
        }
    }
}

/// The queue's state (`IPC_STAT`).
pub(super) fn stat(id: i32) -> Result<libc::msqid_ds, Errno> {
    // SAFETY: an all-zero `msqid_ds` is valid (integers only).
    let mut ds: libc::msqid_ds = unsafe { std::mem::zeroed() };
    // SAFETY: `ds` is a valid, writable `msqid_ds` that outlives the call.
    Errno::result(unsafe { libc::msgctl(id, libc::IPC_STAT, &mut ds) })?;
    Ok(ds)
}

/// Sets the queue's byte limit (`msg_qbytes`, `IPC_SET`); lowering it needs no privilege.
#[cfg(test)]
pub(super) fn set_qbytes(id: i32, bytes: u64) -> Result<(), Errno> {
    let mut ds = stat(id)?;
    ds.msg_qbytes = bytes as libc::msglen_t;
    // SAFETY: `ds` is a valid `msqid_ds` that outlives the call, which only reads it.
    Errno::result(unsafe { libc::msgctl(id, libc::IPC_SET, &mut ds) }).map(drop)
}

/// Has `hook` run when the process exits normally (`atexit`: the end of `main`, or
/// `std::process::exit`).
pub(super) fn at_exit(hook: extern "C" fn()) -> Result<(), Errno> {
    // SAFETY: `hook` is a plain function with the C calling convention, valid for the whole
    // life of the process; atexit only stores it.
    if unsafe { libc::atexit(hook) } == 0 {
        Ok(())
    } else {
        Err(Errno::ENOMEM)
    }
}

/// Removes the queue (`IPC_RMID`): waiting senders and receivers fail with `EIDRM`.
pub(super) fn remove(id: i32) -> Result<(), Errno> {
    // SAFETY: IPC_RMID reads no buffer; a null pointer is allowed.
    Errno::result(unsafe { libc::msgctl(id, libc::IPC_RMID, std::ptr::null_mut()) }).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_goes_through_a_private_queue_and_the_queue_goes() {
        let id = create().unwrap();
        let ds = stat(id).unwrap();
        assert_eq!(ds.msg_perm.mode & 0o777, 0o600);
        assert_eq!(ds.msg_perm.__key, libc::IPC_PRIVATE);
        let mut out = MsgBuf::new(100);
        out.load(7, b"hello");
        send(id, &out, true).unwrap();
        let mut back = MsgBuf::new(3);
        receive(id, &mut back, true).unwrap();
        assert_eq!(
            (back.mtype(), back.text()),
            (7, &b"hel"[..]),
            "cut to the buffer"
        );
        assert_eq!(receive(id, &mut back, true), Err(Errno::ENOMSG));
        // Waiting for a message leaves it in the queue, and takes one of no text.
        send(id, &out, true).unwrap();
        wait_for_message(id).unwrap();
        out.load(3, b"");
        send(id, &out, true).unwrap();
        let mut big = MsgBuf::new(100);
        receive(id, &mut big, true).unwrap();
        assert_eq!((big.mtype(), big.text()), (7, &b"hello"[..]));
        wait_for_message(id).unwrap();
        assert_eq!(receive(id, &mut big, true), Err(Errno::ENOMSG));
        remove(id).unwrap();
        assert!(matches!(
            wait_for_message(id),
            Err(Errno::EINVAL | Errno::EIDRM)
        ));
        assert!(matches!(stat(id), Err(Errno::EINVAL | Errno::EIDRM)));
        assert!(matches!(
            send(id, &out, true),
            Err(Errno::EINVAL | Errno::EIDRM)
        ));
    }
}
