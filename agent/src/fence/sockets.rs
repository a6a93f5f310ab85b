//! Destroying the server's client connections from outside the server, with netlink sock_diag:
//! a dump (`SOCK_DIAG_BY_FAMILY`) of the TCP sockets whose local port is the server's, then
//! `SOCK_DESTROY` for each one the fence does not let through, named by its exact id (addresses,
//! ports, interface and cookie, so a connection that came and went meanwhile is never mistaken
//! for another). The kernel aborts the connection (`tcp_abort`): queued replies are thrown away
//! and an RST goes to the client, which fails over at once. This needs no help from the server,
//! so it works on a stopped one. Needs CAP_NET_ADMIN and CONFIG_INET_DIAG_DESTROY.
//!
//! The same dump, asked for listeners only, names the sockets listening on a port
//! ([`listener_inodes`]): the kernel looks only at its listening sockets, where reading
//! /proc/net/tcp walks every TCP socket of the host, milliseconds on a busy one.
//!
//! The messages are laid out by hand from include/uapi/linux/{netlink,sock_diag,inet_diag}.h:
//! the rust-netlink crates send every sock_diag message as `SOCK_DIAG_BY_FAMILY` and cannot
//! say `SOCK_DESTROY`.
use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    os::fd::{AsRawFd, OwnedFd},
    time::Duration,
};

use nix::sys::{
    socket::{
        AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto,
        setsockopt, socket, sockopt,
    },
    time::TimeVal,
};

use crate::error::{AgentError, Result};

// include/uapi/linux/netlink.h
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_DUMP: u16 = 0x300;
// include/uapi/linux/sock_diag.h
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const SOCK_DESTROY: u16 = 21;
// include/uapi/linux/inet_diag.h
const INET_DIAG_REQ_BYTECODE: u16 = 1;
const INET_DIAG_BC_S_EQ: u8 = 11;
/// `struct inet_diag_sockid`: sport, dport (big endian), src[4], dst[4] (big endian u32s),
/// if, cookie[2].
const SOCKID_LEN: usize = 48;
/// `struct inet_diag_req_v2`: family, protocol, ext, pad, states, then the sockid.
const REQ_LEN: usize = 8 + SOCKID_LEN;
/// `struct inet_diag_msg`: family, state, timer, retrans, the sockid, then five u32s.
const MSG_LEN: usize = 4 + SOCKID_LEN + 20;
const IPPROTO_TCP: u8 = 6;
const AF_INET: u8 = nix::libc::AF_INET as u8;
const AF_INET6: u8 = nix::libc::AF_INET6 as u8;

/// TCP states (include/net/tcp_states.h) whose sockets can still carry a reply: every state but
/// LISTEN (the server's listener stays), TIME_WAIT and CLOSE (nothing left to send).
/// SYN_RECV also brings the requests waiting for their handshake to finish.
const STATES: u32 = (1 << 1) // ESTABLISHED
    | (1 << 2) // SYN_SENT
    | (1 << 3) // SYN_RECV
    | (1 << 4) // FIN_WAIT1
    | (1 << 5) // FIN_WAIT2
    | (1 << 8) // CLOSE_WAIT
    | (1 << 9) // LAST_ACK
    | (1 << 11); // CLOSING

/// The LISTEN state (include/net/tcp_states.h), alone: a dump of listeners.
const LISTENING: u32 = 1 << 10;

/// No dump or destroy waits longer than this for the kernel.
const NETLINK_LIMIT: Duration = Duration::from_secs(1);

/// One TCP socket on the server's port, as the dump names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerSocket {
    pub family: u8,
    pub state: u8,
    /// The kernel's id of the socket, echoed back to destroy exactly this one.
    id: [u8; SOCKID_LEN],
    pub peer: SocketAddr,
    /// The socket's inode, as a process's file descriptors name it (`socket:[inode]`).
    pub inode: u64,
}

/// What [`destroy_unlisted`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Destroyed {
    /// Sockets the fence lets through, left alone.
    pub kept: usize,
    pub destroyed: usize,
    /// Sockets already gone when their turn came.
    pub gone: usize,
}

/// Destroys every TCP socket on local port `port` whose peer `keep` refuses.
pub fn destroy_unlisted(port: u16, keep: impl Fn(SocketAddr) -> bool) -> Result<Destroyed> {
    let link = Netlink::open()?;
    let mut done = Destroyed::default();
    for family in [AF_INET, AF_INET6] {
        for socket in link.dump(&dump_request(family, port))? {
            if keep(socket.peer) {
                done.kept += 1;
                continue;
            }
            match link.destroy(&socket) {
                Ok(()) => done.destroyed += 1,
                // Closed since the dump: nothing left to destroy.
                Err(nix::errno::Errno::ENOENT) => done.gone += 1,
                Err(e) => return Err(sock_diag_error("SOCK_DESTROY", e)),
            }
        }
    }
    Ok(done)
}

/// The TCP sockets on local port `port`, of both families.
pub fn server_sockets(port: u16) -> Result<Vec<ServerSocket>> {
    let link = Netlink::open()?;
    let mut all = link.dump(&dump_request(AF_INET, port))?;
    all.extend(link.dump(&dump_request(AF_INET6, port))?);
    Ok(all)
}

/// The inodes of the TCP sockets listening on local port `port`, of both families. A dump needs
/// no capability.
pub fn listener_inodes(port: u16) -> Result<Vec<u64>> {
    let link = Netlink::open()?;
    let mut inodes = Vec::new();
    for family in [AF_INET, AF_INET6] {
        let request = request(family, port, LISTENING);
        inodes.extend(link.dump(&request)?.into_iter().map(|s| s.inode));
    }
    Ok(inodes)
}

fn sock_diag_error(what: &str, e: nix::errno::Errno) -> AgentError {
    AgentError::io(format!("netlink sock_diag {what}"), e.into())
}

struct Netlink {
    fd: OwnedFd,
}

impl Netlink {
    fn open() -> Result<Self> {
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkSockDiag,
        )
        .map_err(|e| sock_diag_error("socket", e))?;
        setsockopt(
            &fd,
            sockopt::ReceiveTimeout,
            &TimeVal::new(NETLINK_LIMIT.as_secs() as _, 0),
        )
        .map_err(|e| sock_diag_error("SO_RCVTIMEO", e))?;
        Ok(Self { fd })
    }

    fn send(&self, message: &[u8]) -> nix::Result<()> {
        sendto(
            self.fd.as_raw_fd(),
            message,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .map(|_| ())
    }

    fn dump(&self, request: &[u8]) -> Result<Vec<ServerSocket>> {
        self.send(request).map_err(|e| sock_diag_error("dump", e))?;
        let mut sockets = Vec::new();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())
                .map_err(|e| sock_diag_error("dump", e))?;
            for (kind, payload) in messages(&buf[..n]) {
                match kind {
                    NLMSG_DONE => return Ok(sockets),
                    NLMSG_ERROR => {
                        let errno = error_code(payload);
                        if errno != 0 {
                            return Err(sock_diag_error(
                                "dump",
                                nix::errno::Errno::from_raw(errno),
                            ));
                        }
                    }
                    SOCK_DIAG_BY_FAMILY => sockets.extend(parse_socket(payload)),
                    _ => {}
                }
            }
        }
    }

    fn destroy(&self, socket: &ServerSocket) -> nix::Result<()> {
        self.send(&destroy_request(socket))?;
        let mut buf = [0u8; 512];
        let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
        for (kind, payload) in messages(&buf[..n]) {
            if kind == NLMSG_ERROR {
                return match error_code(payload) {
                    0 => Ok(()),
                    errno => Err(nix::errno::Errno::from_raw(errno)),
                };
            }
        }
        Err(nix::errno::Errno::EPROTO)
    }
}

/// A netlink header for a `len`-byte body.
fn header(kind: u16, flags: u16, body_len: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(NLMSG_HDRLEN + body_len);
    m.extend_from_slice(&((NLMSG_HDRLEN + body_len) as u32).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&1u32.to_ne_bytes()); // sequence: one request at a time
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel fills ours in
    m
}

/// A dump of `family`'s TCP sockets in [`STATES`] whose local port is `port`.
fn dump_request(family: u8, port: u16) -> Vec<u8> {
    request(family, port, STATES)
}

/// A dump of `family`'s TCP sockets in `states` whose local port is `port`. The port filter is
/// inet_diag bytecode, as `ss sport = :PORT` sends: one comparison, whose "yes" jumps to the end
/// of the program (accept) and whose "no" jumps past it (reject).
fn request(family: u8, port: u16, states: u32) -> Vec<u8> {
    let bytecode: [u8; 8] = {
        let mut b = [0u8; 8];
        b[0] = INET_DIAG_BC_S_EQ;
        b[1] = 8; // yes: the end of the program
        b[2..4].copy_from_slice(&12u16.to_ne_bytes()); // no: past the end
        // The second op carries the port in its `no` field.
        b[6..8].copy_from_slice(&port.to_ne_bytes());
        b
    };
    let attr_len = 4 + bytecode.len();
    let mut m = header(
        SOCK_DIAG_BY_FAMILY,
        NLM_F_REQUEST | NLM_F_DUMP,
        REQ_LEN + attr_len,
    );
    m.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]);
    m.extend_from_slice(&states.to_ne_bytes());
    m.extend_from_slice(&[0u8; SOCKID_LEN]);
    m.extend_from_slice(&(attr_len as u16).to_ne_bytes());
    m.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
    m.extend_from_slice(&bytecode);
    m
}

/// `SOCK_DESTROY` of exactly the socket the dump named.
fn destroy_request(socket: &ServerSocket) -> Vec<u8> {
    let mut m = header(SOCK_DESTROY, NLM_F_REQUEST | NLM_F_ACK, REQ_LEN);
    m.extend_from_slice(&[socket.family, IPPROTO_TCP, 0, 0]);
    // The kernel finds the socket by its id alone; the states are not looked at.
    m.extend_from_slice(&u32::MAX.to_ne_bytes());
    m.extend_from_slice(&socket.id);
    m
}

/// The (type, payload) of each netlink message in `buf`.
fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(buf[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(buf[4..6].try_into().ok()?);
        if len < NLMSG_HDRLEN || len > buf.len() {
            return None;
        }
        let payload = &buf[NLMSG_HDRLEN..len];
        // Messages start on 4-byte boundaries.
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        Some((kind, payload))
    })
}

/// The errno of an NLMSG_ERROR payload (0 for an acknowledgement).
fn error_code(payload: &[u8]) -> i32 {
    payload
        .get(0..4)
        .and_then(|b| b.try_into().ok())
        .map_or(nix::libc::EPROTO, |b| -i32::from_ne_bytes(b))
}

/// One `inet_diag_msg`: its id, then expires, rqueue, wqueue, uid and inode (u32 each).
fn parse_socket(payload: &[u8]) -> Option<ServerSocket> {
    if payload.len() < MSG_LEN {
        return None;
    }
    let (family, state) = (payload[0], payload[1]);
    let id: [u8; SOCKID_LEN] = payload[4..4 + SOCKID_LEN].try_into().ok()?;
    let dport = u16::from_be_bytes([id[2], id[3]]);
    let dst = &id[20..36];
    let ip = match family {
        AF_INET => IpAddr::V4(Ipv4Addr::new(dst[0], dst[1], dst[2], dst[3])),
        AF_INET6 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(dst).ok()?)),
        _ => return None,
    };
    let inode = payload.get(MSG_LEN - 4..MSG_LEN)?.try_into().ok()?;
    Some(ServerSocket {
        family,
        state,
        id,
        peer: SocketAddr::new(ip, dport),
        inode: u64::from(u32::from_ne_bytes(inode)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An inet_diag_msg as the kernel sends it, for an IPv4 socket 127.0.0.1:6379 <-
    /// 127.0.0.1:40000 in ESTABLISHED.
    fn message() -> Vec<u8> {
        let mut m = vec![AF_INET, 1, 0, 0];
        m.extend_from_slice(&6379u16.to_be_bytes());
        m.extend_from_slice(&40000u16.to_be_bytes());
        m.extend_from_slice(&[127, 0, 0, 1]);
        m.extend_from_slice(&[0; 12]);
        m.extend_from_slice(&[127, 0, 0, 1]);
        m.extend_from_slice(&[0; 12]);
        m.extend_from_slice(&0u32.to_ne_bytes()); // if
        m.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]); // cookie
        m.extend_from_slice(&[0; 16]); // expires, rqueue, wqueue, uid
        m.extend_from_slice(&4242u32.to_ne_bytes()); // inode
        m
    }

    #[test]
    fn a_dumped_socket_names_its_peer_and_is_destroyed_by_its_exact_id() {
        let socket = parse_socket(&message()).expect("a socket");
        assert_eq!(socket.peer, "127.0.0.1:40000".parse().unwrap());
        assert_eq!(socket.state, 1);
        assert_eq!(socket.inode, 4242);
        let destroy = destroy_request(&socket);
        let (kind, body) = messages(&destroy).next().expect("one message");
        assert_eq!(kind, SOCK_DESTROY);
        assert_eq!(body.len(), REQ_LEN);
        assert_eq!(
            &body[8..],
            &message()[4..4 + SOCKID_LEN],
            "the id, cookie included"
        );
    }

    #[test]
    fn the_dump_asks_for_one_local_port_and_no_listener() {
        let m = dump_request(AF_INET6, 6379);
        let (kind, body) = messages(&m).next().expect("one message");
        assert_eq!(kind, SOCK_DIAG_BY_FAMILY);
        assert_eq!(body[0], AF_INET6);
        let states = u32::from_ne_bytes(body[4..8].try_into().unwrap());
        assert_eq!(states & (1 << 10), 0, "never the listener");
        assert_ne!(states & (1 << 1), 0);
        let bytecode = &body[REQ_LEN + 4..];
        assert_eq!(bytecode[0], INET_DIAG_BC_S_EQ);
        assert_eq!(u16::from_ne_bytes([bytecode[6], bytecode[7]]), 6379);
    }

    #[test]
    fn the_listener_dump_asks_for_one_local_port_and_listeners_only() {
        let m = request(AF_INET, 6380, LISTENING);
        let (kind, body) = messages(&m).next().expect("one message");
        assert_eq!(kind, SOCK_DIAG_BY_FAMILY);
        assert_eq!(u32::from_ne_bytes(body[4..8].try_into().unwrap()), 1 << 10);
        let bytecode = &body[REQ_LEN + 4..];
        assert_eq!(u16::from_ne_bytes([bytecode[6], bytecode[7]]), 6380);
    }

    #[test]
    fn messages_split_on_their_lengths() {
        let mut buf = header(NLMSG_DONE, 0, 4);
        buf.extend_from_slice(&0i32.to_ne_bytes());
        let mut error = header(NLMSG_ERROR, 0, 4);
        error.extend_from_slice(&(-nix::libc::ENOENT).to_ne_bytes());
        buf.extend_from_slice(&error);
        let all: Vec<(u16, i32)> = messages(&buf).map(|(k, p)| (k, error_code(p))).collect();
        assert_eq!(all, vec![(NLMSG_DONE, 0), (NLMSG_ERROR, nix::libc::ENOENT)]);
    }
}
