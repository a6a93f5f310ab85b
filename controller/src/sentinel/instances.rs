//! What SENTINEL MASTER(S) and REPLICAS say about each node: the fields Sentinel writes, in its
//! order, and the flags clients choose by. redis-py and redis-rs skip a master or replica whose
//! flags hold `s_down` or `o_down`; Lettuce and ioredis also skip `disconnected` replicas.
use super::{
    resp::Reply,
    topology::{Member, OtherSentinel, StoreView},
};

/// The flags of a node, in Sentinel's order (`s_down,o_down,master,slave,disconnected`).
fn flags(role: &str, s_down: bool, o_down: bool, disconnected: bool) -> String {
    let mut f = Vec::new();
    if s_down {
        f.push("s_down");
    }
    if o_down {
        f.push("o_down");
    }
    f.push(role);
    if disconnected {
        f.push("disconnected");
    }
    f.join(",")
}

/// The primary may not be named to clients: the controller judged it failed, or its agent says
/// it is down or unhealthy (the moment before that judgement, or while it waits).
pub fn primary_unusable(v: &StoreView, p: &Member) -> bool {
    v.primary_down || p.down
}

/// Sentinel's `status` of a master in INFO: `odown`, `sdown` or `ok`.
pub fn master_status(v: &StoreView, p: &Member) -> &'static str {
    if v.primary_down {
        "odown"
    } else if p.down {
        "sdown"
    } else {
        "ok"
    }
}

/// SENTINEL MASTER's fields for the primary `p` of `v`, with `others` other controllers'
/// endpoints. It keeps its address while it is down, with the flags that say so.
pub fn master_fields(v: &StoreView, p: &Member, others: usize) -> Reply {
    let flags = flags(
        "master",
        primary_unusable(v, p),
        v.primary_down,
        p.disconnected,
    );
    Reply::map([
        ("name", v.name.as_str()),
        ("ip", p.address.host.as_str()),
        ("port", &p.address.port.to_string()),
        ("runid", p.node.as_str()),
        ("flags", &flags),
        ("link-pending-commands", "0"),
        ("link-refcount", "1"),
        ("last-ping-sent", "0"),
        ("last-ok-ping-reply", "0"),
        ("last-ping-reply", "0"),
        ("down-after-milliseconds", "500"),
        ("info-refresh", "0"),
        ("role-reported", "master"),
        ("role-reported-time", "0"),
        ("config-epoch", &v.epoch.to_string()),
        ("num-slaves", &v.replicas.len().to_string()),
        ("num-other-sentinels", &others.to_string()),
        ("quorum", "1"),
        ("failover-timeout", "60000"),
        ("parallel-syncs", "1"),
    ])
}

/// SENTINEL SENTINELS' fields for another controller's endpoint `s`: the fields Sentinel
/// writes that clients read (name, ip, port, runid, flags).
pub fn sentinel_fields(s: &OtherSentinel) -> Reply {
    Reply::map([
        ("name", s.name.as_str()),
        ("ip", s.address.host.as_str()),
        ("port", &s.address.port.to_string()),
        ("runid", s.name.as_str()),
        ("flags", "sentinel"),
        ("link-pending-commands", "0"),
        ("link-refcount", "1"),
        ("last-ping-sent", "0"),
        ("last-ok-ping-reply", "0"),
        ("last-ping-reply", "0"),
        ("down-after-milliseconds", "500"),
        ("last-hello-message", "0"),
        ("voted-leader", "?"),
        ("voted-leader-epoch", "0"),
    ])
}

/// SENTINEL REPLICAS' fields for the replica `r`, with the primary `p` it follows. A
/// replica whose agent says it is down is `s_down` with its link in `err`; one whose agent has no
/// session is `disconnected`.
pub fn replica_fields(p: &Member, r: &Member) -> Reply {
    let flags = flags("slave", r.down, false, r.disconnected);
    let link = if r.down { "err" } else { "ok" };
    Reply::map([
        ("name", r.address.to_string().as_str()),
        ("ip", r.address.host.as_str()),
        ("port", &r.address.port.to_string()),
        ("runid", r.node.as_str()),
        ("flags", &flags),
        ("link-pending-commands", "0"),
        ("link-refcount", "1"),
        ("last-ping-sent", "0"),
        ("last-ok-ping-reply", "0"),
        ("last-ping-reply", "0"),
        ("down-after-milliseconds", "500"),
        ("info-refresh", "0"),
        ("role-reported", "slave"),
        ("role-reported-time", "0"),
        ("master-link-down-time", "0"),
        ("master-link-status", link),
        ("master-host", p.address.host.as_str()),
        ("master-port", &p.address.port.to_string()),
        ("slave-priority", "100"),
        ("slave-repl-offset", "0"),
        ("replica-announced", "1"),
    ])
}

#[cfg(test)]
pub(crate) mod tests {
    use vigil_proto::HostPort;

    use super::*;

    pub(crate) fn member(node: &str, port: u16, down: bool, disconnected: bool) -> Member {
        Member {
            node: node.into(),
            address: HostPort::new("127.0.0.1", port),
            down,
            disconnected,
        }
    }

    /// A field of a flat Sentinel map.
    pub(crate) fn field(reply: &Reply, key: &str) -> Option<String> {
        let Reply::Map(pairs) = reply else {
            return None;
        };
        pairs.iter().find_map(|(k, v)| match (k, v) {
            (Reply::Bulk(k), Reply::Bulk(v)) if k == key.as_bytes() => {
                Some(String::from_utf8_lossy(v).into_owned())
            }
            _ => None,
        })
    }

    fn view(primary_down: bool, primary: &Member) -> StoreView {
        StoreView {
            name: "cache".into(),
            epoch: 2,
            primary: Some(primary.clone()),
            replicas: vec![],
            primary_down,
            ..StoreView::default()
        }
    }

    #[test]
    fn master_flags_follow_the_judgement_and_the_agent() {
        let up = member("a", 7000, false, false);
        let down = member("a", 7000, true, false);
        let cases = [
            (false, &up, "master", "ok"),
            (false, &down, "s_down,master", "sdown"),
            (true, &down, "s_down,o_down,master", "odown"),
            (true, &up, "s_down,o_down,master", "odown"),
        ];
        for (judged, p, flags, status) in cases {
            let v = view(judged, p);
            assert_eq!(
                field(&master_fields(&v, p, 0), "flags").as_deref(),
                Some(flags)
            );
            assert_eq!(master_status(&v, p), status);
            assert_eq!(primary_unusable(&v, p), flags != "master");
        }
        let lost = member("a", 7000, false, true);
        let v = view(false, &lost);
        assert_eq!(
            field(&master_fields(&v, &lost, 0), "flags").as_deref(),
            Some("master,disconnected")
        );
        assert!(
            !primary_unusable(&v, &lost),
            "a lost agent alone does not hide the primary"
        );
    }

    #[test]
    fn replica_flags_and_link_say_down_and_disconnected_as_sentinel_writes_them() {
        let p = member("b", 7001, false, false);
        let cases = [
            (false, false, "slave", "ok"),
            (true, false, "s_down,slave", "err"),
            (false, true, "slave,disconnected", "ok"),
            (true, true, "s_down,slave,disconnected", "err"),
        ];
        for (down, disconnected, flags, link) in cases {
            let r = replica_fields(&p, &member("a", 7000, down, disconnected));
            assert_eq!(field(&r, "flags").as_deref(), Some(flags));
            assert_eq!(field(&r, "master-link-status").as_deref(), Some(link));
            assert_eq!(field(&r, "name").as_deref(), Some("127.0.0.1:7000"));
            assert_eq!(field(&r, "master-port").as_deref(), Some("7001"));
        }
    }
}
