//! Listen-queue overflow on the server port.
//!
//! With the accept queue full the kernel drops new connections and counts them in TcpExt
//! ListenDrops. On this kernel class the common path (a SYN at a full queue) frees the packet with
//! `consume_skb` and no drop reason, so no tracepoint sees it, and kprobes are not available. The
//! agent samples instead: a rise in ListenDrops while our listener has connections waiting to be
//! accepted is counted as ours. (/proc/net/tcp does not show a listener's backlog limit, so "has
//! waiting connections" stands in for "is full"; two listeners overflowing in the same sample
//! would both be blamed.)
use procfs::net::TcpState;

/// What one sample found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow {
    /// Connections dropped since the last sample.
    pub drops: u64,
    /// Connections waiting in our accept queue now.
    pub queued: u64,
}

pub struct ListenQueue {
    port: u16,
    last_drops: Option<u64>,
}

impl ListenQueue {
    pub fn new(port: u16) -> Self {
        Self {
            port,
            last_drops: None,
        }
    }

    /// Compares ListenDrops with the last sample; `Some` when they rose while our queue is not empty.
    pub fn sample(&mut self) -> Option<Overflow> {
        let drops = std::fs::read_to_string("/proc/net/netstat")
            .ok()
            .and_then(|t| parse_listen_drops(&t))?;
        let before = self.last_drops.replace(drops)?;
        let new = drops.saturating_sub(before);
        if new == 0 {
            return None;
        }
        let queued = accept_queue(self.port)?;
        (queued > 0).then_some(Overflow { drops: new, queued })
    }
}

/// Connections waiting to be accepted on our listener(s) on `port`.
fn accept_queue(port: u16) -> Option<u64> {
    let mut entries = procfs::net::tcp().ok()?;
    entries.extend(procfs::net::tcp6().unwrap_or_default());
    let listeners = entries
        .iter()
        .filter(|e| e.state == TcpState::Listen && e.local_address.port() == port);
    // For a listener, rx_queue is the accept queue's length.
    Some(listeners.map(|e| u64::from(e.rx_queue)).sum())
}

/// TcpExt ListenDrops from the text of /proc/net/netstat (a header line, then a value line).
pub fn parse_listen_drops(netstat: &str) -> Option<u64> {
    let mut lines = netstat.lines();
    while let Some(header) = lines.next() {
        let values = lines.next()?;
        if !header.starts_with("TcpExt:") {
            continue;
        }
        let at = header.split_whitespace().position(|h| h == "ListenDrops")?;
        return values.split_whitespace().nth(at)?.parse().ok();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_drops_is_read_from_the_tcpext_pair_of_lines() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPHPHits\n\
                    TcpExt: 0 12 14 99\n\
                    IpExt: InNoRoutes ListenDrops\n\
                    IpExt: 1 2\n";
        assert_eq!(parse_listen_drops(text), Some(14));
        assert_eq!(parse_listen_drops("IpExt: A\nIpExt: 1\n"), None);
        assert_eq!(parse_listen_drops("TcpExt: ListenDrops\n"), None);
    }

    #[test]
    fn this_machines_netstat_parses() {
        let text = std::fs::read_to_string("/proc/net/netstat").expect("/proc/net/netstat");
        assert!(parse_listen_drops(&text).is_some());
    }
}
