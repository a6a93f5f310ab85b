//! The gate: which of the server's peers a fence lets through. It knows the local address of
//! every connection the agent opens to its server (registered before the connection's SYN
//! leaves, dropped when the connection does) and, while a fence is up, holds the fence's allow
//! map and keeps it in step: the agent's own connections always reach the server, fenced or not,
//! and a fence put up later finds them already listed.
//!
//! [`GatedStream`] is the agent's TCP stream to the server, carrying its registration.
use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll},
};

use aya::maps::MapData;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use vigil_agent_ebpf::{PeerKey, allow_tag};

use crate::error::{AgentError, Result};

/// The fence's allow map: peer -> why it is allowed ([`allow_tag`]).
pub type AllowMap = aya::maps::HashMap<MapData, PeerKey, u32>;

/// The allow map's key for a peer at `addr`.
pub fn peer_key(addr: SocketAddr) -> PeerKey {
    match addr {
        SocketAddr::V4(a) => PeerKey::v4(a.ip().octets(), a.port()),
        // An IPv4-mapped IPv6 address is already in the form v4 keys take.
        SocketAddr::V6(a) => PeerKey::v6(a.ip().octets(), a.port()),
    }
}

/// Shared by every connection the agent opens to its server and by the fence.
#[derive(Clone, Default)]
pub struct Gate(Arc<Mutex<Inner>>);

#[derive(Default)]
struct Inner {
    /// The agent's open connections, by local address (a count, in case one is ever reused).
    local: HashMap<SocketAddr, u32>,
    /// The replicas' links let through, while a fence with `keep_replicas` is up.
    replicas: Vec<PeerKey>,
    /// The fence's allow map while a fence is up.
    allow: Option<AllowMap>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("Gate")
            .field("local", &inner.local.len())
            .field("fenced", &inner.allow.is_some())
            .finish()
    }
}

// One gate is shared by clones of a ServerConn: two are the same when they share it.
impl PartialEq for Gate {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}
impl Eq for Gate {}

/// Writes one peer into the allow map; a full map is logged, as the peer then stays out.
fn allow(map: &mut AllowMap, key: PeerKey, tag: u32) {
    if let Err(e) = map.insert(key, tag, 0) {
        tracing::error!(peer = ?key, error = %e, "could not let a peer through the fence");
    }
}

impl Gate {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lets the agent's connection from `local` through any fence, now and later, until the
    /// registration is dropped. Call it before connecting, so the SYN passes a fence already up.
    pub fn register(&self, local: SocketAddr) -> Registration {
        let mut inner = self.lock();
        *inner.local.entry(local).or_default() += 1;
        if let Some(map) = inner.allow.as_mut() {
            allow(map, peer_key(local), allow_tag::AGENT);
        }
        Registration {
            gate: self.clone(),
            local,
        }
    }

    fn unregister(&self, local: SocketAddr) {
        let mut inner = self.lock();
        let Some(count) = inner.local.get_mut(&local) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        inner.local.remove(&local);
        if let Some(map) = inner.allow.as_mut() {
            // Absent already is fine: the point is that it is not there.
            let _ = map.remove(&peer_key(local));
        }
    }

    /// Takes the allow map of a fence being put up (or found pinned at start) and lists the
    /// agent's connections in it. Entries of an agent before this one are dropped: those
    /// connections are gone, and a client may reuse their ports. Replicas listed stay listed.
    pub fn open(&self, mut map: AllowMap) -> Result<()> {
        let entries: Vec<(PeerKey, u32)> = map.iter().filter_map(|entry| entry.ok()).collect();
        for (key, _) in entries.iter().filter(|(_, tag)| *tag == allow_tag::AGENT) {
            map.remove(key).map_err(|source| AgentError::Map {
                name: "FENCE_ALLOW",
                source,
            })?;
        }
        let mut inner = self.lock();
        for &local in inner.local.keys() {
            allow(&mut map, peer_key(local), allow_tag::AGENT);
        }
        inner.replicas = entries
            .iter()
            .filter(|(_, tag)| *tag == allow_tag::REPLICA)
            .map(|(key, _)| *key)
            .collect();
        inner.allow = Some(map);
        Ok(())
    }

    /// Lets exactly `replicas` through besides the agent (none: a fence without
    /// `keep_replicas`). Does nothing while no fence is up.
    pub fn set_replicas(&self, replicas: &[SocketAddr]) {
        let wanted: Vec<PeerKey> = replicas.iter().map(|&r| peer_key(r)).collect();
        let mut inner = self.lock();
        let Inner {
            replicas: current,
            allow: Some(map),
            ..
        } = &mut *inner
        else {
            return;
        };
        for old in current.iter().filter(|r| !wanted.contains(r)) {
            // Absent already is fine: the point is that it is not there.
            let _ = map.remove(old);
        }
        for &new in &wanted {
            allow(map, new, allow_tag::REPLICA);
        }
        *current = wanted;
    }

    /// Gives the allow map back (the fence is coming down).
    pub fn close(&self) -> Option<AllowMap> {
        let mut inner = self.lock();
        inner.replicas.clear();
        inner.allow.take()
    }

    /// Whether the fence lets `peer` through (false while no fence is up).
    pub fn allows(&self, peer: &PeerKey) -> bool {
        self.lock()
            .allow
            .as_ref()
            .is_some_and(|map| map.get(peer, 0).is_ok())
    }

    /// Whether `local` is one of the agent's open connections.
    pub fn is_registered(&self, local: SocketAddr) -> bool {
        self.lock().local.contains_key(&local)
    }
}

/// A connection's place in the gate, given back when dropped.
pub struct Registration {
    gate: Gate,
    local: SocketAddr,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.gate.unregister(self.local);
    }
}

/// The agent's TCP stream to its server, let through any fence for as long as it lives.
pub struct GatedStream {
    stream: TcpStream,
    _registration: Option<Registration>,
}

impl GatedStream {
    pub fn new(stream: TcpStream, registration: Option<Registration>) -> Self {
        Self {
            stream,
            _registration: registration,
        }
    }
}

impl AsyncRead for GatedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for GatedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6};

    use super::*;

    #[test]
    fn ipv4_peers_are_keyed_as_ipv4_mapped_ipv6() {
        let v4 = peer_key(SocketAddr::from((Ipv4Addr::new(10, 0, 0, 7), 6379)));
        assert_eq!(
            v4.addr,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 0, 0, 7]
        );
        assert_eq!(v4.port, 6379);
        // A dual-stack server sees an IPv4 client as ::ffff:a.b.c.d: the same key.
        let mapped = Ipv4Addr::new(10, 0, 0, 7).to_ipv6_mapped();
        let v6 = peer_key(SocketAddr::V6(SocketAddrV6::new(mapped, 6379, 0, 0)));
        assert_eq!(v4, v6);
        let loopback = peer_key(SocketAddr::from((Ipv6Addr::LOCALHOST, 40000)));
        assert_eq!(loopback.addr, Ipv6Addr::LOCALHOST.octets());
        assert_eq!(loopback.port, 40000);
        // The kernel side builds keys from packet bytes with the same functions.
        assert_eq!(PeerKey::v4([10, 0, 0, 7], 6379), v4);
    }

    #[test]
    fn registrations_last_as_long_as_their_connection() {
        let gate = Gate::default();
        let a: SocketAddr = "127.0.0.1:40001".parse().unwrap();
        let first = gate.register(a);
        let second = gate.register(a);
        assert!(gate.is_registered(a));
        drop(first);
        assert!(
            gate.is_registered(a),
            "one connection from there is still open"
        );
        drop(second);
        assert!(!gate.is_registered(a));
        // With no fence up, nothing is let through: there is nothing to pass.
        assert!(!gate.allows(&peer_key(a)));
    }
}
