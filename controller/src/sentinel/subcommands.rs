//! SENTINEL's subcommands, from the published view: get-master-addr-by-name, master, masters,
//! replicas (slaves), sentinels, myid, ckquorum and help. The subcommands that would change
//! Sentinel's configuration or the topology are refused: the controller owns both.
use super::{
    endpoint::Endpoint,
    instances::{master_fields, primary_unusable, replica_fields, sentinel_fields},
    resp::{Reply, text},
    topology::{Member, Published, StoreView},
};

/// The data stores with a primary: the masters this endpoint monitors, by name.
pub(super) fn masters(published: &Published) -> Vec<(StoreView, Member)> {
    published
        .all()
        .into_iter()
        .filter_map(|v| v.primary.clone().map(|p| (v, p)))
        .collect()
}

fn arity(name: &str) -> Reply {
    Reply::Error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// SENTINEL subcommands that change Sentinel's configuration or the topology: the controller
/// owns both, so they are refused with a word on where to go instead.
const REFUSED: &[&str] = &[
    "monitor",
    "remove",
    "set",
    "reset",
    "failover",
    "flushconfig",
    "config",
    "simulate-failure",
    "debug",
    "is-master-down-by-addr",
];

const HELP: &[&str] = &[
    "SENTINEL <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "CKQUORUM <master-name>",
    "    Check if the current Sentinel configuration is able to reach the quorum",
    "    needed to failover a master and the majority needed to authorize the",
    "    failover.",
    "GET-MASTER-ADDR-BY-NAME <master-name>",
    "    Return the ip and port number of the master with that name.",
    "MASTER <master-name>",
    "    Show the state and info of the specified master.",
    "MASTERS",
    "    Show a list of monitored masters and their state.",
    "MYID",
    "    Return the ID of the Sentinel instance.",
    "REPLICAS <master-name>",
    "    Show a list of replicas for this master and their state.",
    "SENTINELS <master-name>",
    "    Show a list of Sentinel instances for this master and their state.",
    "HELP",
    "    Print this help.",
];

/// The answer to `SENTINEL <subcommand> ...`.
pub fn answer(args: &[Vec<u8>], endpoint: &Endpoint) -> Reply {
    let Some(sub) = args.get(1).map(|a| text(a).to_ascii_lowercase()) else {
        return arity("sentinel");
    };
    let name = args.get(2).map(|a| text(a));
    let master = || -> Option<(StoreView, Member)> {
        let v = endpoint.published.get(name.as_deref()?)?;
        let p = v.primary.clone()?;
        Some((v, p))
    };
    let no_such = || Reply::Error("ERR No such master with that name".into());
    let wants = match sub.as_str() {
        "masters" | "myid" | "help" => 2,
        "master" | "replicas" | "slaves" | "sentinels" | "get-master-addr-by-name" | "ckquorum" => {
            3
        }
        s if REFUSED.contains(&s) => {
            return Reply::Error(format!(
                "ERR SENTINEL {} is not served here: vigil's controller owns the configuration \
                 and the topology (a planned switchover is `vigil failover`)",
                sub.to_ascii_uppercase()
            ));
        }
        _ => {
            return Reply::Error(format!(
                "ERR unknown subcommand '{}'. Try SENTINEL HELP.",
                text(&args[1]).chars().take(128).collect::<String>()
            ));
        }
    };
    if args.len() != wants {
        return arity(&format!("sentinel|{sub}"));
    }
    let others = endpoint.published.others();
    match sub.as_str() {
        // Nil while the primary is judged failed or its agent says it is down: clients treat
        // nil as "ask again" (redis-py and redis-rs already skip a master flagged down), which
        // is better than a dead, stopped or fenced address. SENTINEL MASTER still shows it,
        // flagged.
        "get-master-addr-by-name" => match master() {
            Some((v, p)) if !primary_unusable(&v, &p) => Reply::Array(vec![
                Reply::bulk(&p.address.host),
                Reply::bulk(p.address.port.to_string()),
            ]),
            _ => Reply::NilArray,
        },
        "masters" => Reply::Array(
            masters(&endpoint.published)
                .iter()
                .map(|(v, p)| master_fields(v, p, others.len()))
                .collect(),
        ),
        "master" => master().map_or_else(no_such, |(v, p)| master_fields(&v, &p, others.len())),
        "replicas" | "slaves" => master().map_or_else(no_such, |(v, p)| {
            Reply::Array(v.replicas.iter().map(|r| replica_fields(&p, r)).collect())
        }),
        // The other controllers' endpoints (none for a single controller): clients that list
        // every controller as a sentinel find the rest here.
        "sentinels" => master().map_or_else(no_such, |_| {
            Reply::Array(others.iter().map(sentinel_fields).collect())
        }),
        "myid" => Reply::bulk(&endpoint.myid),
        // The controllers elect their leader on etcd, not by Sentinel votes: every one that
        // answers can reach the quorum it needs, so it says OK with the number it knows of.
        "ckquorum" => master().map_or_else(no_such, |_| {
            Reply::Simple(format!(
                "OK {} usable Sentinels. Quorum and failover authorization can be reached",
                others.len() + 1
            ))
        }),
        _ => Reply::Array(HELP.iter().map(|l| Reply::Simple((*l).into())).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentinel::{
        commands::tests::{endpoint, view},
        instances::tests::{field, member},
    };

    fn ask(e: &Endpoint, words: &[&str]) -> Reply {
        let args: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        answer(&args, e)
    }

    fn encoded(r: &Reply, proto: u8) -> Vec<u8> {
        let mut out = Vec::new();
        r.encode_as(&mut out, proto);
        out
    }

    #[test]
    fn master_address_and_unknown_names() {
        let e = endpoint(&view());
        assert_eq!(
            ask(&e, &["SENTINEL", "get-master-addr-by-name", "cache"]),
            Reply::Array(vec![Reply::bulk("127.0.0.1"), Reply::bulk("7001")])
        );
        let nope = ask(&e, &["sentinel", "GET-MASTER-ADDR-BY-NAME", "nope"]);
        assert_eq!(nope, Reply::NilArray);
        assert_eq!(encoded(&nope, 2), b"*-1\r\n");
        assert_eq!(encoded(&nope, 3), b"_\r\n");
        assert!(matches!(
            ask(&e, &["SENTINEL", "master", "nope"]),
            Reply::Error(e) if e == "ERR No such master with that name"
        ));
    }

    #[test]
    fn a_primary_judged_failed_or_reported_down_is_never_named() {
        let p = view();
        let mut v = p.get("cache").unwrap();
        v.primary_down = true;
        p.set(v.clone());
        let e = endpoint(&p);
        assert_eq!(
            ask(&e, &["SENTINEL", "get-master-addr-by-name", "cache"]),
            Reply::NilArray
        );
        // MASTER and MASTERS still show it, flagged down, so clients that read flags skip it.
        let m = ask(&e, &["SENTINEL", "MASTER", "cache"]);
        assert_eq!(field(&m, "flags").as_deref(), Some("s_down,o_down,master"));
        assert_eq!(field(&m, "port").as_deref(), Some("7001"));
        let Reply::Array(all) = ask(&e, &["SENTINEL", "MASTERS"]) else {
            panic!("MASTERS is an array")
        };
        assert_eq!(
            field(&all[0], "flags").as_deref(),
            Some("s_down,o_down,master")
        );
        // The moment its agent says DOWN, before the reconciler's judgement is published.
        v.primary_down = false;
        v.primary.as_mut().unwrap().down = true;
        p.set(v);
        assert_eq!(
            ask(&e, &["SENTINEL", "get-master-addr-by-name", "cache"]),
            Reply::NilArray
        );
    }

    #[test]
    fn masters_carry_the_fields_clients_check() {
        let e = endpoint(&view());
        let Reply::Array(masters) = ask(&e, &["SENTINEL", "MASTERS"]) else {
            panic!()
        };
        for (k, v) in [
            ("name", "cache"),
            ("ip", "127.0.0.1"),
            ("port", "7001"),
            ("flags", "master"),
            ("num-other-sentinels", "0"),
            ("config-epoch", "3"),
            ("num-slaves", "1"),
            ("quorum", "1"),
        ] {
            assert_eq!(field(&masters[0], k).as_deref(), Some(v), "{k}");
        }
        // A map in RESP3, a flat array in RESP2.
        assert_eq!(encoded(&masters[0], 3)[0], b'%');
        assert!(encoded(&masters[0], 2).starts_with(b"*40\r\n"));
    }

    #[test]
    fn replicas_flag_the_dead_and_the_disconnected() {
        let p = Published::new();
        p.set(StoreView {
            name: "cache".into(),
            epoch: 2,
            primary: Some(member("n1", 7001, false, false)),
            replicas: vec![
                member("n0", 7000, true, false),
                member("n2", 7002, false, false),
                member("n3", 7003, false, true),
            ],
            primary_down: false,
            ..StoreView::default()
        });
        let e = endpoint(&p);
        for sub in ["REPLICAS", "slaves"] {
            let Reply::Array(rs) = ask(&e, &["SENTINEL", sub, "cache"]) else {
                panic!("{sub} is an array")
            };
            let flags: Vec<_> = rs.iter().map(|r| field(r, "flags").unwrap()).collect();
            assert_eq!(flags, ["s_down,slave", "slave", "slave,disconnected"]);
            let links: Vec<_> = rs
                .iter()
                .map(|r| field(r, "master-link-status").unwrap())
                .collect();
            assert_eq!(links, ["err", "ok", "ok"]);
        }
        assert!(matches!(
            ask(&e, &["SENTINEL", "replicas", "nope"]),
            Reply::Error(_)
        ));
    }

    #[test]
    fn myid_is_40_hex_and_the_same_for_the_same_endpoint() {
        let p = view();
        let Reply::Bulk(id) = ask(&endpoint(&p), &["SENTINEL", "MYID"]) else {
            panic!("MYID is a bulk string")
        };
        assert_eq!(id.len(), 40);
        assert!(id.iter().all(u8::is_ascii_hexdigit));
        assert_eq!(
            ask(&endpoint(&p), &["sentinel", "myid"]),
            Reply::Bulk(id),
            "a restart on the same address keeps the id"
        );
    }

    #[test]
    fn ckquorum_is_sentinels_ok_for_a_known_master_and_its_error_otherwise() {
        let e = endpoint(&view());
        let ok = ask(&e, &["SENTINEL", "CKQUORUM", "cache"]);
        assert_eq!(
            encoded(&ok, 2),
            b"+OK 1 usable Sentinels. Quorum and failover authorization can be reached\r\n"
        );
        assert!(matches!(
            ask(&e, &["SENTINEL", "ckquorum", "nope"]),
            Reply::Error(e) if e == "ERR No such master with that name"
        ));
        assert!(matches!(
            ask(&e, &["SENTINEL", "ckquorum"]),
            Reply::Error(e) if e == "ERR wrong number of arguments for 'sentinel|ckquorum' command"
        ));
    }

    #[test]
    fn sentinels_and_help() {
        let e = endpoint(&view());
        assert_eq!(
            ask(&e, &["SENTINEL", "SENTINELS", "cache"]),
            Reply::Array(vec![])
        );
        assert!(matches!(ask(&e, &["SENTINEL", "HELP"]), Reply::Array(l) if l.len() > 5));
    }

    #[test]
    fn subcommands_that_change_things_are_refused_and_arity_is_checked() {
        let e = endpoint(&view());
        for sub in ["FAILOVER", "monitor", "REMOVE", "set", "reset", "config"] {
            assert!(matches!(
                ask(&e, &["SENTINEL", sub, "cache"]),
                Reply::Error(e) if e.contains("is not served here")
            ));
        }
        assert!(matches!(
            ask(&e, &["SENTINEL", "nope"]),
            Reply::Error(e) if e == "ERR unknown subcommand 'nope'. Try SENTINEL HELP."
        ));
        assert!(matches!(
            ask(&e, &["SENTINEL"]),
            Reply::Error(e) if e == "ERR wrong number of arguments for 'sentinel' command"
        ));
        assert!(matches!(
            ask(&e, &["SENTINEL", "masters", "x"]),
            Reply::Error(e) if e.contains("'sentinel|masters'")
        ));
    }
}
