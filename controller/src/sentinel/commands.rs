//! The Sentinel commands the endpoint answers: PING, ROLE, HELLO, CLIENT, AUTH, SELECT, QUIT,
//! and SENTINEL get-master-addr-by-name / master / masters / replicas / slaves / sentinels, from
//! the published view. Anything else, mutating commands included, is an error reply.
use super::{
    resp::Reply,
    topology::{Member, Published, StoreView},
};

pub(super) fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

fn master_fields(v: &StoreView, p: &Member) -> Reply {
    let (ip, port) = (p.address.host.as_str(), p.address.port.to_string());
    let flags = if v.primary_down {
        "master,s_down,o_down"
    } else {
        "master"
    };
    Reply::map([
        ("name", v.name.as_str()),
        ("ip", ip),
        ("port", &port),
        ("runid", p.node.as_str()),
        ("flags", flags),
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
        ("num-other-sentinels", "0"),
        ("quorum", "1"),
        ("failover-timeout", "60000"),
        ("parallel-syncs", "1"),
    ])
}

fn replica_fields(v: &StoreView, r: &Member) -> Reply {
    let (mip, mport) = v.primary.as_ref().map_or(("?", "0".to_string()), |p| {
        (p.address.host.as_str(), p.address.port.to_string())
    });
    Reply::map([
        ("name", r.address.to_string().as_str()),
        ("ip", r.address.host.as_str()),
        ("port", &r.address.port.to_string()),
        ("runid", r.node.as_str()),
        ("flags", "slave"),
        ("master-link-status", "ok"),
        ("master-host", mip),
        ("master-port", &mport),
        ("slave-priority", "100"),
        ("slave-repl-offset", "0"),
    ])
}

/// The answer to one command (subscriptions are handled by the caller).
pub fn answer(args: &[Vec<u8>], published: &Published) -> Reply {
    let Some(cmd) = args.first() else {
        return Reply::Error("ERR empty command".into());
    };
    let cmd = text(cmd).to_ascii_uppercase();
    let arg = |i: usize| args.get(i).map(|a| text(a));
    match cmd.as_str() {
        "PING" => match arg(1) {
            Some(m) => Reply::bulk(m),
            None => Reply::Simple("PONG".into()),
        },
        "ROLE" => Reply::Array(vec![
            Reply::bulk("sentinel"),
            Reply::Array(
                published
                    .all()
                    .into_iter()
                    .map(|v| Reply::bulk(v.name))
                    .collect(),
            ),
        ]),
        "HELLO" => match arg(1).as_deref() {
            None | Some("2") | Some("3") => Reply::Map(vec![
                (Reply::bulk("server"), Reply::bulk("redis")),
                (Reply::bulk("version"), Reply::bulk("7.0.0")),
                (
                    Reply::bulk("proto"),
                    Reply::Int(arg(1).and_then(|p| p.parse().ok()).unwrap_or(2)),
                ),
                (Reply::bulk("id"), Reply::Int(1)),
                (Reply::bulk("mode"), Reply::bulk("sentinel")),
                (Reply::bulk("role"), Reply::bulk("sentinel")),
                (Reply::bulk("modules"), Reply::Array(vec![])),
            ]),
            Some(_) => Reply::Error("NOPROTO unsupported protocol version".into()),
        },
        // Client metadata (redis-py sends CLIENT SETINFO on connect) and AUTH are accepted.
        "CLIENT" | "AUTH" | "SELECT" => Reply::Simple("OK".into()),
        "QUIT" => Reply::Simple("OK".into()),
        "SENTINEL" => sentinel(args, published),
        _ => Reply::Error(format!("ERR unknown command '{}'", text(&args[0]))),
    }
}

fn sentinel(args: &[Vec<u8>], published: &Published) -> Reply {
    let sub = args
        .get(1)
        .map(|a| text(a).to_ascii_lowercase())
        .unwrap_or_default();
    let name = args.get(2).map(|a| text(a));
    let store = |name: &Option<String>| name.as_deref().and_then(|n| published.get(n));
    match sub.as_str() {
        "get-master-addr-by-name" => match store(&name).and_then(|v| v.primary) {
            Some(p) => Reply::Array(vec![
                Reply::bulk(&p.address.host),
                Reply::bulk(p.address.port.to_string()),
            ]),
            None => Reply::NilArray,
        },
        "masters" => Reply::Array(
            published
                .all()
                .iter()
                .filter_map(|v| v.primary.as_ref().map(|p| master_fields(v, p)))
                .collect(),
        ),
        "master" => match store(&name) {
            Some(v) => match &v.primary {
                Some(p) => master_fields(&v, p),
                None => Reply::Error("ERR No such master with that name".into()),
            },
            None => Reply::Error("ERR No such master with that name".into()),
        },
        "replicas" | "slaves" => match store(&name) {
            Some(v) => Reply::Array(v.replicas.iter().map(|r| replica_fields(&v, r)).collect()),
            None => Reply::Error("ERR No such master with that name".into()),
        },
        "sentinels" => match store(&name) {
            Some(_) => Reply::Array(vec![]),
            None => Reply::Error("ERR No such master with that name".into()),
        },
        "" => Reply::Error("ERR wrong number of arguments for 'sentinel' command".into()),
        other => Reply::Error(format!("ERR unknown sentinel subcommand '{other}'")),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use vigil_proto::HostPort;

    use super::*;

    pub(crate) fn view() -> Arc<Published> {
        let p = Published::new();
        p.set(StoreView {
            name: "cache".into(),
            epoch: 3,
            primary: Some(Member {
                node: "b".into(),
                address: HostPort::new("127.0.0.1", 7001),
                down: false,
                disconnected: false,
            }),
            replicas: vec![Member {
                node: "a".into(),
                address: HostPort::new("127.0.0.1", 7000),
                down: false,
                disconnected: false,
            }],
            primary_down: false,
        });
        p
    }

    fn ask(p: &Published, words: &[&str]) -> Reply {
        answer(
            &words
                .iter()
                .map(|w| w.as_bytes().to_vec())
                .collect::<Vec<_>>(),
            p,
        )
    }

    #[test]
    fn master_address_and_unknown_names() {
        let p = view();
        assert_eq!(
            ask(&p, &["SENTINEL", "get-master-addr-by-name", "cache"]),
            Reply::Array(vec![Reply::bulk("127.0.0.1"), Reply::bulk("7001")])
        );
        assert_eq!(
            ask(&p, &["sentinel", "GET-MASTER-ADDR-BY-NAME", "nope"]),
            Reply::NilArray
        );
        assert!(matches!(
            ask(&p, &["SENTINEL", "master", "nope"]),
            Reply::Error(_)
        ));
        assert!(
            matches!(ask(&p, &["FLUSHALL"]), Reply::Error(e) if e.starts_with("ERR unknown command"))
        );
        assert_eq!(ask(&p, &["PING"]), Reply::Simple("PONG".into()));
    }

    #[test]
    fn masters_carry_the_fields_clients_check() {
        let p = view();
        let Reply::Array(masters) = ask(&p, &["SENTINEL", "MASTERS"]) else {
            panic!()
        };
        let Reply::Map(fields) = &masters[0] else {
            panic!()
        };
        let words: Vec<String> = fields
            .iter()
            .flat_map(|(k, v)| [k, v])
            .map(|f| match f {
                Reply::Bulk(b) => text(b),
                _ => String::new(),
            })
            .collect();
        for (k, v) in [
            ("name", "cache"),
            ("ip", "127.0.0.1"),
            ("port", "7001"),
            ("flags", "master"),
            ("num-other-sentinels", "0"),
        ] {
            let i = words
                .iter()
                .position(|w| w == k)
                .unwrap_or_else(|| panic!("no {k}"));
            assert_eq!(words[i + 1], v);
        }
    }
}
