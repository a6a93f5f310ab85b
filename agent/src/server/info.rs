//! What a Redis-protocol server says about itself: INFO sections, ROLE, and the flavour
//! (Redis, Valkey or Dragonfly). Pure parsers, so both reply shapes are unit-tested.
//!
//! The shapes differ: Dragonfly's ROLE says `replica` (Redis says `slave`) with a sync state of
//! connecting / preparation / full_sync / stable_sync; a Dragonfly primary's INFO has no
//! `master_repl_offset`; its replicas report `slave_repl_offset` (the sum of shard offsets).
use std::collections::BTreeMap;

use redis::Value;
use vigil_proto::HostPort;

use crate::error::{AgentError, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavour {
    Redis,
    Valkey,
    Dragonfly,
}

impl Flavour {
    /// From the fields of `INFO server`.
    pub fn detect(server: &BTreeMap<String, String>) -> Self {
        if server.contains_key("dragonfly_version") {
            Self::Dragonfly
        } else if server.contains_key("valkey_version")
            || server.get("server_name").is_some_and(|n| n == "valkey")
        {
            Self::Valkey
        } else {
            Self::Redis
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redis => "redis",
            Self::Valkey => "valkey",
            Self::Dragonfly => "dragonfly",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Primary,
    Replica,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
        }
    }
}

/// Where a replica is in syncing with its primary.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncState {
    /// Not connected to the primary yet (Redis connect/connecting/handshake, Dragonfly connecting).
    Connecting,
    /// Connected and copying the data set (Redis sync, Dragonfly preparation/full_sync).
    Syncing,
    /// Streaming changes (Redis connected, Dragonfly stable_sync/online).
    Online,
    /// A primary, or a state this parser does not know.
    None,
}

impl SyncState {
    fn parse(s: &str) -> Self {
        match s {
            "connect" | "connecting" | "handshake" => Self::Connecting,
            "sync" | "preparation" | "full_sync" => Self::Syncing,
            "connected" | "stable_sync" | "online" => Self::Online,
            _ => Self::None,
        }
    }
}

/// Role and replication state of one server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replication {
    pub role: Role,
    /// The replication offset (0 when the server does not report one, as a Dragonfly primary).
    pub offset: u64,
    /// A replica's link to its primary is up (always true for a primary).
    pub link_up: bool,
    /// Seconds since a replica last heard from its primary.
    pub last_io_secs: Option<u64>,
    /// How long a replica's link has been down by the server's own account
    /// (`master_link_down_since_seconds`, reported only while it is down). None: up, never up,
    /// or not reported (Dragonfly).
    pub link_down_secs: Option<u64>,
    pub sync: SyncState,
    /// A replica's primary.
    pub primary: Option<HostPort>,
    /// A primary's connected replicas.
    pub replicas: u32,
}

/// `key:value` lines of an INFO reply; section headers and blank lines are skipped.
pub fn parse_info(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn parse_role(s: &str) -> Result<Role> {
    match s {
        "master" | "primary" => Ok(Role::Primary),
        "slave" | "replica" => Ok(Role::Replica),
        other => Err(AgentError::UnknownRole(other.to_string())),
    }
}

fn number(map: &BTreeMap<String, String>, key: &str) -> Option<u64> {
    map.get(key).and_then(|v| v.trim().parse().ok())
}

/// Past this many seconds, `master_link_down_since_seconds` counts from the Unix epoch, not from
/// a link that went down: older servers report `now - 0` for a replica that was never linked
/// (Redis 7 reports -1, which is no number of seconds either). No link is down for 30 years.
const NEVER_LINKED_SECS: u64 = 1_000_000_000;

/// `master_link_down_since_seconds`: how long a replica's link has been down. None when the
/// server does not say (its link is up, or Dragonfly, which does not report it), or says it was
/// never up (-1, or seconds since the Unix epoch).
fn link_down_secs(info: &BTreeMap<String, String>) -> Option<u64> {
    number(info, "master_link_down_since_seconds").filter(|&s| s < NEVER_LINKED_SECS)
}

/// From the fields of `INFO replication`, either flavour.
pub fn replication_from_info(info: &BTreeMap<String, String>) -> Result<Replication> {
    let role = parse_role(info.get("role").ok_or(AgentError::NoRoleField)?)?;
    Ok(match role {
        Role::Primary => Replication {
            role,
            offset: number(info, "master_repl_offset").unwrap_or(0),
            link_up: true,
            last_io_secs: None,
            link_down_secs: None,
            sync: SyncState::None,
            primary: None,
            replicas: number(info, "connected_slaves").unwrap_or(0) as u32,
        },
        Role::Replica => {
            let link_up = info.get("master_link_status").is_some_and(|s| s == "up");
            let syncing = info
                .get("master_sync_in_progress")
                .is_some_and(|s| s == "1");
            Replication {
                role,
                offset: number(info, "slave_repl_offset")
                    .or_else(|| number(info, "master_repl_offset"))
                    .unwrap_or(0),
                link_up,
                last_io_secs: number(info, "master_last_io_seconds_ago"),
                link_down_secs: link_down_secs(info),
                sync: if syncing {
                    SyncState::Syncing
                } else if link_up {
                    SyncState::Online
                } else {
                    SyncState::Connecting
                },
                primary: match (info.get("master_host"), number(info, "master_port")) {
                    (Some(h), Some(p)) => u16::try_from(p).ok().map(|p| HostPort::new(h, p)),
                    _ => None,
                },
                replicas: 0,
            }
        }
    })
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// From a ROLE reply, either flavour. Redis: `[master, offset, [[ip, port, offset]..]]` or
/// `[slave, host, port, state, offset]`. Dragonfly: `[master, [[ip, port, state]..]]` or
/// `[replica, host, port, state]`.
pub fn replication_from_role(reply: &Value) -> Result<Replication> {
    let Value::Array(items) = reply else {
        return Err(AgentError::BadRoleReply("not an array"));
    };
    let kind = items
        .first()
        .and_then(text)
        .ok_or(AgentError::BadRoleReply("no role"))?;
    let role = parse_role(&kind)?;
    match role {
        Role::Primary => {
            let (offset, replicas) = match (items.get(1), items.get(2)) {
                (Some(Value::Int(o)), Some(Value::Array(r))) => (*o as u64, r.len()),
                (Some(Value::Array(r)), _) => (0, r.len()),
                _ => (0, 0),
            };
            Ok(Replication {
                role,
                offset,
                link_up: true,
                last_io_secs: None,
                link_down_secs: None,
                sync: SyncState::None,
                primary: None,
                replicas: replicas as u32,
            })
        }
        Role::Replica => {
            let host = items
                .get(1)
                .and_then(text)
                .ok_or(AgentError::BadRoleReply("no primary host"))?;
            let port = items
                .get(2)
                .and_then(text)
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or(AgentError::BadRoleReply("no primary port"))?;
            let state = items.get(3).and_then(text).unwrap_or_default();
            let sync = SyncState::parse(&state);
            Ok(Replication {
                role,
                offset: items
                    .get(4)
                    .and_then(text)
                    .and_then(|o| o.parse().ok())
                    .unwrap_or(0),
                link_up: sync == SyncState::Online,
                last_io_secs: None,
                link_down_secs: None,
                sync,
                primary: Some(HostPort::new(host, port)),
                replicas: 0,
            })
        }
    }
}

/// Memory use against the configured limit, from `INFO memory`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Memory {
    pub used: u64,
    /// 0 when no limit is set.
    pub max: u64,
}

pub fn memory_from_info(info: &BTreeMap<String, String>) -> Memory {
    Memory {
        used: number(info, "used_memory").unwrap_or(0),
        max: number(info, "maxmemory").unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    // Written from Dragonfly's ServerFamily::Info (replication section) and its docs.
    const DRAGONFLY_PRIMARY_INFO: &str = "# Replication\r\nrole:master\r\nconnected_slaves:1\r\n\
        slave0:ip=172.19.0.3,port=6379,state=stable_sync,lag=0\r\nmaster_replid:4c1f0e3b\r\n";
    const DRAGONFLY_REPLICA_INFO: &str = "# Replication\r\nrole:replica\r\nmaster_host:10.0.0.5\r\n\
        master_port:6379\r\nmaster_link_status:up\r\nmaster_last_io_seconds_ago:0\r\n\
        master_sync_in_progress:0\r\nslave_repl_offset:48213\r\nslave_priority:100\r\nslave_read_only:1\r\n";
    const REDIS_REPLICA_INFO: &str = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\nmaster_port:7000\r\n\
        master_link_status:down\r\nmaster_last_io_seconds_ago:-1\r\nmaster_sync_in_progress:0\r\n\
        slave_repl_offset:0\r\nmaster_repl_offset:0\r\n";

    #[test]
    fn dragonfly_primary_info_has_no_offset_and_counts_replicas() {
        let r = replication_from_info(&parse_info(DRAGONFLY_PRIMARY_INFO)).unwrap();
        assert_eq!(r.role, Role::Primary);
        assert_eq!(r.offset, 0);
        assert_eq!(r.replicas, 1);
        assert!(r.link_up);
    }

    #[test]
    fn dragonfly_replica_info_reports_the_summed_offset() {
        let r = replication_from_info(&parse_info(DRAGONFLY_REPLICA_INFO)).unwrap();
        assert_eq!(r.role, Role::Replica);
        assert_eq!(r.offset, 48213);
        assert!(r.link_up);
        assert_eq!(r.sync, SyncState::Online);
        assert_eq!(r.last_io_secs, Some(0));
        assert_eq!(r.primary, Some(HostPort::new("10.0.0.5", 6379)));
    }

    #[test]
    fn a_broken_redis_link_is_down_and_connecting() {
        let r = replication_from_info(&parse_info(REDIS_REPLICA_INFO)).unwrap();
        assert!(!r.link_up);
        assert_eq!(r.sync, SyncState::Connecting);
        // -1 means "never": not a number of seconds.
        assert_eq!(r.last_io_secs, None);
    }

    // As redis-server 7.0 reports them (genRedisInfoString): the field only while the link is
    // down, -1 when it never came up.
    const REDIS_REPLICA_DOWN_FOR_12S: &str = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\n\
        master_port:7000\r\nmaster_link_status:down\r\nmaster_last_io_seconds_ago:-1\r\n\
        master_sync_in_progress:0\r\nslave_read_repl_offset:5208\r\nslave_repl_offset:5208\r\n\
        master_link_down_since_seconds:12\r\nslave_priority:100\r\nslave_read_only:1\r\n";
    const REDIS_REPLICA_NEVER_LINKED: &str = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\n\
        master_port:1\r\nmaster_link_status:down\r\nmaster_last_io_seconds_ago:-1\r\n\
        master_sync_in_progress:0\r\nslave_repl_offset:400\r\nmaster_link_down_since_seconds:-1\r\n";
    const REDIS_REPLICA_UP: &str = "# Replication\r\nrole:slave\r\nmaster_host:127.0.0.1\r\n\
        master_port:7000\r\nmaster_link_status:up\r\nmaster_last_io_seconds_ago:1\r\n\
        master_sync_in_progress:0\r\nslave_repl_offset:5208\r\n";

    #[test]
    fn a_replica_says_how_long_its_link_has_been_down_unless_it_never_was_up() {
        let secs = |text: &str| {
            replication_from_info(&parse_info(text))
                .unwrap()
                .link_down_secs
        };
        assert_eq!(secs(REDIS_REPLICA_DOWN_FOR_12S), Some(12));
        assert_eq!(secs(REDIS_REPLICA_NEVER_LINKED), None, "-1: never");
        // An older server counting from the Unix epoch: never as well.
        let from_epoch = REDIS_REPLICA_DOWN_FOR_12S.replace(
            "master_link_down_since_seconds:12",
            "master_link_down_since_seconds:1764488400",
        );
        assert_eq!(secs(&from_epoch), None);
        // Up: not reported. Dragonfly does not report it at all: unknown.
        assert_eq!(secs(REDIS_REPLICA_UP), None);
        assert_eq!(secs(DRAGONFLY_REPLICA_INFO), None);
        assert_eq!(secs(REDIS_REPLICA_INFO), None);
    }

    #[test]
    fn dragonfly_role_replies_parse_in_every_sync_state() {
        for (state, sync) in [
            ("connecting", SyncState::Connecting),
            ("preparation", SyncState::Syncing),
            ("full_sync", SyncState::Syncing),
            ("stable_sync", SyncState::Online),
        ] {
            let reply = Value::Array(vec![
                bulk("replica"),
                bulk("10.0.0.5"),
                bulk("6379"),
                bulk(state),
            ]);
            let r = replication_from_role(&reply).unwrap();
            assert_eq!((r.role, r.sync), (Role::Replica, sync), "{state}");
            assert_eq!(r.link_up, sync == SyncState::Online, "{state}");
            assert_eq!(r.primary, Some(HostPort::new("10.0.0.5", 6379)));
        }
        let slave = Value::Array(vec![
            bulk("slave"),
            bulk("h"),
            bulk("1"),
            bulk("stable_sync"),
        ]);
        assert_eq!(replication_from_role(&slave).unwrap().role, Role::Replica);
        let primary = Value::Array(vec![
            bulk("master"),
            Value::Array(vec![Value::Array(vec![
                bulk("172.19.0.4"),
                bulk("6379"),
                bulk("stable_sync"),
            ])]),
        ]);
        let r = replication_from_role(&primary).unwrap();
        assert_eq!((r.role, r.replicas, r.offset), (Role::Primary, 1, 0));
    }

    #[test]
    fn redis_role_replies_carry_offsets() {
        let primary = Value::Array(vec![
            bulk("master"),
            Value::Int(3129659),
            Value::Array(vec![]),
        ]);
        assert_eq!(replication_from_role(&primary).unwrap().offset, 3129659);
        let replica = Value::Array(vec![
            bulk("slave"),
            bulk("127.0.0.1"),
            Value::Int(9753),
            bulk("connected"),
            Value::Int(3167038),
        ]);
        let r = replication_from_role(&replica).unwrap();
        assert_eq!(
            (r.offset, r.sync, r.link_up),
            (3167038, SyncState::Online, true)
        );
        assert_eq!(r.primary, Some(HostPort::new("127.0.0.1", 9753)));
    }

    #[test]
    fn bad_replies_are_errors_not_panics() {
        assert!(replication_from_role(&Value::Nil).is_err());
        assert!(replication_from_role(&Value::Array(vec![])).is_err());
        assert!(replication_from_role(&Value::Array(vec![bulk("sentinel")])).is_err());
        assert!(replication_from_role(&Value::Array(vec![bulk("slave")])).is_err());
        assert!(matches!(
            replication_from_info(&parse_info("# Replication\r\n")),
            Err(AgentError::NoRoleField)
        ));
    }

    #[test]
    fn flavour_comes_from_info_server() {
        let df = parse_info("# Server\r\nredis_version:6.2.11\r\ndragonfly_version:df-v1.14.0\r\n");
        assert_eq!(Flavour::detect(&df), Flavour::Dragonfly);
        let valkey = parse_info(
            "# Server\r\nredis_version:7.2.4\r\nserver_name:valkey\r\nvalkey_version:8.0.1\r\n",
        );
        assert_eq!(Flavour::detect(&valkey), Flavour::Valkey);
        assert_eq!(
            Flavour::detect(&parse_info("redis_version:7.0.15\r\n")),
            Flavour::Redis
        );
    }
}
