//! The messages on the rendezvous socket `@rpc-sysv-mq/NAME` before the queues are used.
//!
//! Hello, client to server: `[HELLO 8][reserved 8]`. The server answers with a welcome,
//! `[WELCOME 8][token u64 LE][msgsize u64 LE][to-server id i32 LE][to-client id i32 LE]`, or
//! with a refusal, `[REFUSED 8][length u16 LE][reason, zero-padded to 246 bytes]`, and closes
//! (a system limit's refusal is the limit's name, a NUL and the detail; see [`limit_of`]).
//! Nothing else is ever written on the socket: afterwards its end tells that the peer is gone.

use std::io::{self, Read};

use tokio::io::AsyncReadExt;

/// Bytes of a hello.
pub(super) const HELLO_LEN: usize = 16;
const HELLO: &[u8; 8] = b"rpcsvmqH";
const WELCOME: &[u8; 8] = b"rpcsvmqW";
const REFUSED: &[u8; 8] = b"rpcsvmqR";
/// Bytes of a welcome, and of a refusal.
const WELCOME_LEN: usize = 32;
const REFUSAL_LEN: usize = 256;

/// The hello a client sends.
pub(super) fn hello() -> [u8; HELLO_LEN] {
    let mut message = [0u8; HELLO_LEN];
    message[..8].copy_from_slice(HELLO);
    message
}

/// Checks a received hello.
pub(super) fn check_hello(data: &[u8; HELLO_LEN]) -> io::Result<()> {
    if &data[..8] == HELLO {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "the client did not send a sysv-mq hello",
        ))
    }
}

/// What a server tells a client it admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Welcome {
    /// Put in every message of the connection.
    pub(super) token: u64,
    /// The largest message, both ways.
    pub(super) msgsize: usize,
    /// The queue the client writes to.
    pub(super) to_server: i32,
    /// The queue the client reads.
    pub(super) to_client: i32,
}

/// The welcome the server answers with.
pub(super) fn welcome(w: Welcome) -> [u8; WELCOME_LEN] {
    let mut message = [0u8; WELCOME_LEN];
    message[..8].copy_from_slice(WELCOME);
    message[8..16].copy_from_slice(&w.token.to_le_bytes());
    message[16..24].copy_from_slice(&(w.msgsize as u64).to_le_bytes());
    message[24..28].copy_from_slice(&w.to_server.to_le_bytes());
    message[28..32].copy_from_slice(&w.to_client.to_le_bytes());
    message
}

/// The refusal the server answers with, saying why.
pub(super) fn refusal(reason: &str) -> [u8; REFUSAL_LEN] {
    let mut message = [0u8; REFUSAL_LEN];
    message[..8].copy_from_slice(REFUSED);
    let mut len = reason.len().min(REFUSAL_LEN - 10);
    while !reason.is_char_boundary(len) {
        len -= 1;
    }
    message[8..10].copy_from_slice(&(len as u16).to_le_bytes());
    message[10..10 + len].copy_from_slice(&reason.as_bytes()[..len]);
    message
}

/// The limits a server may refuse a client for, by name.
const LIMITS: [&str; 3] = ["kernel.msgmni", "kernel.msgmnb", "kernel.msgmax"];

/// The reason of a refusal for a system limit: its name, a NUL, the detail.
pub(super) fn limit_refusal(limit: &str, detail: &str) -> String {
    format!("{limit}\0{detail}")
}

/// The limit and detail of a refusal for a system limit ([`limit_refusal`]).
pub(super) fn limit_of(reason: &str) -> Option<(&'static str, String)> {
    let (limit, detail) = reason.split_once('\0')?;
    let limit = LIMITS.into_iter().find(|known| *known == limit)?;
    Some((limit, detail.to_owned()))
}

/// The server's answer: its welcome, or its reason for refusing us.
pub(super) type Answer = Result<Welcome, String>;

fn bad_answer() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        "the server did not answer with a sysv-mq welcome",
    )
}

/// How many more bytes follow the magic `head`.
fn rest_len(head: &[u8; 8]) -> io::Result<usize> {
    match head {
        WELCOME => Ok(WELCOME_LEN - 8),
        REFUSED => Ok(REFUSAL_LEN - 8),
        _ => Err(bad_answer()),
    }
}

fn parse(head: &[u8; 8], rest: &[u8]) -> io::Result<Answer> {
    if head == REFUSED {
        let len = usize::from(u16::from_le_bytes([rest[0], rest[1]])).min(rest.len() - 2);
        return Ok(Err(String::from_utf8_lossy(&rest[2..2 + len]).into_owned()));
    }
    let u64_at = |at: usize| u64::from_le_bytes(rest[at..at + 8].try_into().expect("8 bytes"));
    let i32_at = |at: usize| i32::from_le_bytes(rest[at..at + 4].try_into().expect("4 bytes"));
    Ok(Ok(Welcome {
        token: u64_at(0),
        msgsize: usize::try_from(u64_at(8)).map_err(|_| bad_answer())?,
        to_server: i32_at(16),
        to_client: i32_at(20),
    }))
}

/// Reads the server's answer.
pub(super) async fn read_answer(stream: &mut tokio::net::UnixStream) -> io::Result<Answer> {
    let mut head = [0u8; 8];
    stream.read_exact(&mut head).await?;
    let mut rest = vec![0u8; rest_len(&head)?];
    stream.read_exact(&mut rest).await?;
    parse(&head, &rest)
}

/// Reads the server's answer on a blocking socket.
pub(super) fn read_answer_blocking(mut stream: impl Read) -> io::Result<Answer> {
    let mut head = [0u8; 8];
    stream.read_exact(&mut head)?;
    let mut rest = vec![0u8; rest_len(&head)?];
    stream.read_exact(&mut rest)?;
    parse(&head, &rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn welcomes_and_refusals_round_trip() {
        let w = Welcome {
            token: 0xdead_beef_1234,
            msgsize: 8192,
            to_server: 7,
            to_client: 65_536,
        };
        assert_eq!(read_answer_blocking(&welcome(w)[..]).unwrap(), Ok(w));
        let refused = read_answer_blocking(&refusal("not you")[..]).unwrap();
        assert_eq!(refused, Err("not you".to_owned()));
        let long = "é".repeat(300);
        let cut = read_answer_blocking(&refusal(&long)[..])
            .unwrap()
            .unwrap_err();
        assert!(long.starts_with(&cut) && cut.len() >= 240, "{}", cut.len());
        assert!(read_answer_blocking(&hello()[..]).is_err());
        let limit = read_answer_blocking(&refusal(&limit_refusal("kernel.msgmni", "full"))[..])
            .unwrap()
            .unwrap_err();
        assert_eq!(limit_of(&limit), Some(("kernel.msgmni", "full".to_owned())));
        assert_eq!(limit_of("kernel.other\0x"), None);
        assert_eq!(limit_of("not you"), None);
        assert!(check_hello(&hello()).is_ok());
        assert!(check_hello(&[0; HELLO_LEN]).is_err());
    }
}
