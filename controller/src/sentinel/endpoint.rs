//! What every client of the endpoint shares: the published view, who the endpoint says it is
//! (SENTINEL MYID's id, INFO's run id, its address and start), the connected clients, and the
//! counters INFO reports.
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use super::{auth::Credentials, clients::Clients, topology::Published};

/// The Redis version the endpoint answers as (HELLO, INFO): the Sentinel of Redis 7.0, whose
/// replies it follows.
pub const REDIS_VERSION: &str = "7.0.0";

/// Connections the endpoint serves at once (Redis' default `maxclients`); one more is told so
/// and closed.
pub const DEFAULT_MAX_CLIENTS: usize = 10_000;

/// Seconds a client without subscriptions may stay silent before it is closed (Redis'
/// `timeout`; subscribers are exempt, as there). Redis never closes one by default; here a
/// client that vanished without a FIN (a crashed host, a NAT that forgot it) or that connects
/// and sits would otherwise hold a descriptor and one of the endpoint's clients for ever. Five
/// minutes is longer than any client in Sentinel mode waits between questions, and those
/// clients reconnect on their own when a pooled connection was closed.
pub const DEFAULT_IDLE_TIMEOUT_SECS: u64 = 300;

/// What the endpoint asks of its clients and how many it serves.
#[derive(Clone, Debug)]
pub struct Options {
    /// The user and password a client must AUTH with; None: every client is the default user.
    pub credentials: Option<Credentials>,
    /// A client without subscriptions silent this long is closed; None: never.
    pub idle_timeout: Option<Duration>,
    pub max_clients: usize,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            credentials: None,
            idle_timeout: Some(Duration::from_secs(DEFAULT_IDLE_TIMEOUT_SECS)),
            max_clients: DEFAULT_MAX_CLIENTS,
        }
    }
}

/// The counters INFO's Stats section reports.
#[derive(Default)]
pub struct Stats {
    pub connections: AtomicU64,
    pub rejected: AtomicU64,
    pub commands: AtomicU64,
    pub errors: AtomicU64,
}

impl Stats {
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn read(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

pub struct Endpoint {
    pub published: Arc<Published>,
    /// SENTINEL MYID: 40 hex characters, the same on every start of this controller.
    pub myid: String,
    /// INFO's run_id: 40 hex characters, new on every start (exporters see restarts by it).
    pub run_id: String,
    pub listen: SocketAddr,
    pub started: Instant,
    pub clients: Clients,
    pub stats: Stats,
    pub options: Options,
}

impl Endpoint {
    pub fn new(published: Arc<Published>, listen: SocketAddr, options: Options) -> Self {
        let myid = sentinel_id(&host_name(), listen);
        let since_epoch = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let run_id = hex40(&[
            myid.as_bytes(),
            &std::process::id().to_le_bytes(),
            &since_epoch.to_le_bytes(),
        ]);
        Self {
            published,
            myid,
            run_id,
            listen,
            started: Instant::now(),
            clients: Clients::default(),
            stats: Stats::default(),
            options,
        }
    }
}

/// The endpoint's Sentinel id, from what stays the same across restarts of one controller and
/// differs between controllers: the host's name and the address the endpoint listens on. Nothing
/// new is persisted for it; it changes only if one of those does.
pub fn sentinel_id(host: &str, listen: SocketAddr) -> String {
    hex40(&[
        b"vigil sentinel endpoint",
        host.as_bytes(),
        listen.to_string().as_bytes(),
    ])
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default()
}

/// 40 hex characters from `parts`: three 64-bit FNV-1a hashes, each seeded with its lane. FNV
/// is defined by its constants, so the id is the same from build to build (std's hasher is not
/// promised to be); it only has to be stable and spread, not secret.
fn hex40(parts: &[&[u8]]) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hex = String::with_capacity(48);
    for lane in 0u8..3 {
        let mut h = OFFSET;
        for byte in std::iter::once(lane).chain(parts.iter().flat_map(|p| {
            // The length first, so ("ab", "c") and ("a", "bc") differ.
            (p.len() as u64)
                .to_le_bytes()
                .into_iter()
                .chain(p.iter().copied())
        })) {
            h ^= u64::from(byte);
            h = h.wrapping_mul(PRIME);
        }
        hex.push_str(&format!("{h:016x}"));
    }
    hex.truncate(40);
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sentinel_id_is_40_hex_stable_and_differs_by_host_and_address() {
        let a: SocketAddr = "0.0.0.0:26379".parse().unwrap();
        let b: SocketAddr = "0.0.0.0:26380".parse().unwrap();
        let id = sentinel_id("ctl-1", a);
        assert_eq!(id.len(), 40);
        assert!(
            id.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_eq!(id, sentinel_id("ctl-1", a));
        assert_ne!(id, sentinel_id("ctl-2", a));
        assert_ne!(id, sentinel_id("ctl-1", b));
        // Fixed by the FNV constants and the inputs: a change here changes every deployed
        // controller's id.
        assert_eq!(id, "ae1bab3ea15396ac48fb2b955d4fc8ad8e8b6e91");
        assert_ne!(hex40(&[b"ab", b"c"]), hex40(&[b"a", b"bc"]));
    }
}
