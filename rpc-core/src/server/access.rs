//! [`Access`]: which local users may connect. Checked on every connection whose transport
//! knows the peer's credentials (Unix sockets and shared memory by `SO_PEERCRED`, FIFOs by
//! the owner of the client's FIFOs, message queues by `SO_PEERCRED` on the rendezvous socket),
//! before the handshake reveals anything about the service.

use rpc_transport::PeerInfo;

/// The users and groups a server admits over local transports, besides its own effective
/// uid, which is always admitted. Empty (the default): only the server's own user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Access {
    /// Further uids admitted.
    pub uids: Vec<u32>,
    /// Gids whose members (by the peer's primary gid) are admitted.
    pub gids: Vec<u32>,
}

impl Access {
    /// Whether the peer may connect; `Err` says why not, for the peer and the log.
    pub(crate) fn admits(&self, peer: &PeerInfo) -> Result<(), String> {
        let own = nix::unistd::geteuid().as_raw();
        let (uid, gid) = match peer {
            PeerInfo::Unix { uid, gid, .. } => (*uid, Some(*gid)),
            PeerInfo::Local { uid: Some(uid), .. } => (*uid, None),
            // A spawned child or a stdio parent holds the pipes already; TCP peers are
            // judged by address or certificate; an in-process peer is ourselves.
            _ => return Ok(()),
        };
        if uid == own || self.uids.contains(&uid) || gid.is_some_and(|gid| self.gids.contains(&gid))
        {
            return Ok(());
        }
        let who = match gid {
            Some(gid) => format!("uid {uid} (gid {gid})"),
            None => format!("uid {uid}"),
        };
        Err(format!(
            "access denied: {who} may not connect; the server admits uid {own}{}{} (Server::allow_uids, Server::allow_gids)",
            list(", uids ", &self.uids),
            list(", gids ", &self.gids),
        ))
    }
}

fn list(label: &str, ids: &[u32]) -> String {
    if ids.is_empty() {
        return String::new();
    }
    let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
    format!("{label}{}", ids.join(" "))
}
