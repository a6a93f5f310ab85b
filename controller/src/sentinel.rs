//! A Redis-Sentinel-compatible endpoint, so clients in Sentinel mode (redis-py, redis-rs, Jedis,
//! ioredis, Lettuce) find the primary and follow failovers with no code change.
//!
//! It answers PING, SENTINEL get-master-addr-by-name / master / masters / replicas / slaves /
//! sentinels, ROLE, HELLO, CLIENT and AUTH (accepted), and SUBSCRIBE / PSUBSCRIBE with the events
//! the reconcilers announce (`+switch-master`, `+sdown`, `-sdown`, `+odown`). A client sending
//! garbage, an oversized frame or an unknown command gets a RESP error; a protocol error closes
//! that client only.
use std::sync::Arc;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::broadcast::error::RecvError,
};

use crate::{
    resp::{self, Reply},
    topology::{Event, Member, Published, StoreView},
};

/// A client's unread bytes may not grow past this (a few maximal frames).
const MAX_BUFFER: usize = 4 * resp::MAX_BULK;
/// Subscriptions per client.
const MAX_SUBSCRIPTIONS: usize = 64;

pub async fn serve(listener: TcpListener, published: Arc<Published>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "sentinel endpoint: accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let published = Arc::clone(&published);
        tokio::spawn(async move {
            if let Err(e) = client(stream, published).await {
                tracing::debug!(%peer, error = %e, "sentinel client closed");
            }
        });
    }
}

fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

fn master_fields(v: &StoreView, p: &Member) -> Reply {
    let (ip, port) = p.host_port();
    let flags = if v.primary_down {
        "master,s_down,o_down"
    } else {
        "master"
    };
    Reply::map([
        ("name", v.name.as_str()),
        ("ip", ip),
        ("port", port),
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
    let (ip, port) = r.host_port();
    let (mip, mport) = v.primary.as_ref().map_or(("?", "0"), Member::host_port);
    Reply::map([
        ("name", r.address.as_str()),
        ("ip", ip),
        ("port", port),
        ("runid", r.node.as_str()),
        ("flags", "slave"),
        ("master-link-status", "ok"),
        ("master-host", mip),
        ("master-port", mport),
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
            Some(p) => {
                let (ip, port) = p.host_port();
                Reply::Array(vec![Reply::bulk(ip), Reply::bulk(port)])
            }
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

/// Sentinel-style glob: `*`, `?` and literal characters (enough for `*`, `+*` and exact names).
pub fn glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob(rest, &text[1..]),
    }
}

#[derive(Default)]
struct Subscriptions {
    channels: Vec<Vec<u8>>,
    patterns: Vec<Vec<u8>>,
}

impl Subscriptions {
    fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    fn deliveries(&self, e: &Event) -> Vec<Reply> {
        let channel = e.channel.as_bytes();
        let mut out = Vec::new();
        if self.channels.iter().any(|c| c == channel) {
            out.push(Reply::Array(vec![
                Reply::bulk("message"),
                Reply::bulk(channel),
                Reply::bulk(&e.message),
            ]));
        }
        for p in self.patterns.iter().filter(|p| glob(p, channel)) {
            out.push(Reply::Array(vec![
                Reply::bulk("pmessage"),
                Reply::bulk(p),
                Reply::bulk(channel),
                Reply::bulk(&e.message),
            ]));
        }
        out
    }
}

async fn client(mut stream: TcpStream, published: Arc<Published>) -> std::io::Result<()> {
    let mut events = published.subscribe();
    let mut subs = Subscriptions::default();
    // RESP2 until the client asks for 3 with HELLO.
    let mut proto = 2u8;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        let mut out = Vec::new();
        tokio::select! {
            n = stream.read(&mut chunk) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    match resp::parse_command(&buf) {
                        Ok(None) => break,
                        Ok(Some((args, used))) => {
                            buf.drain(..used);
                            if args.is_empty() {
                                continue;
                            }
                            let quit = text(&args[0]).eq_ignore_ascii_case("QUIT");
                            let replies = subscribe_or_answer(&args, &mut subs, &published);
                            if text(&args[0]).eq_ignore_ascii_case("HELLO") && !matches!(replies.first(), Some(Reply::Error(_))) {
                                proto = if args.get(1).is_some_and(|v| v.as_slice() == b"3") { 3 } else { 2 };
                            }
                            replies.into_iter().for_each(|r| r.encode_as(&mut out, proto));
                            if quit {
                                stream.write_all(&out).await?;
                                return Ok(());
                            }
                        }
                        Err(e) => {
                            Reply::Error(format!("ERR {e}")).encode(&mut out);
                            stream.write_all(&out).await?;
                            return Ok(());
                        }
                    }
                }
                if buf.len() > MAX_BUFFER {
                    Reply::Error("ERR Protocol error: request too large".into()).encode(&mut out);
                    stream.write_all(&out).await?;
                    return Ok(());
                }
            }
            e = events.recv(), if subs.count() > 0 => match e {
                Ok(e) => subs.deliveries(&e).iter().for_each(|r| r.encode_as(&mut out, proto)),
                // A subscriber too slow for the backlog misses events, as with Redis' pub/sub.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return Ok(()),
            },
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }
    }
}

fn subscribe_or_answer(
    args: &[Vec<u8>],
    subs: &mut Subscriptions,
    published: &Published,
) -> Vec<Reply> {
    let cmd = text(&args[0]).to_ascii_uppercase();
    let confirm = |kind: &str, name: &[u8], count: usize| {
        Reply::Array(vec![
            Reply::bulk(kind),
            Reply::bulk(name),
            Reply::Int(count as i64),
        ])
    };
    match cmd.as_str() {
        "SUBSCRIBE" | "PSUBSCRIBE" if args.len() < 2 => {
            vec![Reply::Error(format!(
                "ERR wrong number of arguments for '{}' command",
                cmd.to_lowercase()
            ))]
        }
        "SUBSCRIBE" | "PSUBSCRIBE" => {
            let pattern = cmd == "PSUBSCRIBE";
            let mut replies = Vec::new();
            for name in &args[1..] {
                let list = if pattern {
                    &mut subs.patterns
                } else {
                    &mut subs.channels
                };
                if !list.contains(name) && subs_room(list.len()) {
                    list.push(name.clone());
                }
                let kind = if pattern { "psubscribe" } else { "subscribe" };
                replies.push(confirm(kind, name, subs.count()));
            }
            replies
        }
        "UNSUBSCRIBE" | "PUNSUBSCRIBE" => {
            let pattern = cmd == "PUNSUBSCRIBE";
            let kind = if pattern {
                "punsubscribe"
            } else {
                "unsubscribe"
            };
            let list = if pattern {
                &mut subs.patterns
            } else {
                &mut subs.channels
            };
            let names: Vec<Vec<u8>> = if args.len() > 1 {
                args[1..].to_vec()
            } else {
                list.clone()
            };
            let mut replies = Vec::new();
            for name in names {
                let list = if pattern {
                    &mut subs.patterns
                } else {
                    &mut subs.channels
                };
                list.retain(|c| *c != name);
                replies.push(confirm(kind, &name, subs.count()));
            }
            replies
        }
        _ => vec![answer(args, published)],
    }
}

fn subs_room(len: usize) -> bool {
    len < MAX_SUBSCRIPTIONS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view() -> Arc<Published> {
        let p = Published::new();
        p.set(StoreView {
            name: "cache".into(),
            epoch: 3,
            primary: Some(Member {
                node: "b".into(),
                address: "127.0.0.1:7001".into(),
            }),
            replicas: vec![Member {
                node: "a".into(),
                address: "127.0.0.1:7000".into(),
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

    #[test]
    fn subscriptions_get_matching_events_only() {
        let p = view();
        let mut subs = Subscriptions::default();
        let r = subscribe_or_answer(&[b"PSUBSCRIBE".to_vec(), b"*".to_vec()], &mut subs, &p);
        assert_eq!(r.len(), 1);
        subscribe_or_answer(
            &[b"SUBSCRIBE".to_vec(), b"+switch-master".to_vec()],
            &mut subs,
            &p,
        );
        let e = Event {
            datastore: "cache".into(),
            epoch: 4,
            channel: "+switch-master",
            node: "a".into(),
            message: "cache 127.0.0.1 7001 127.0.0.1 7000".into(),
        };
        assert_eq!(subs.deliveries(&e).len(), 2);
        let sdown = Event {
            channel: "+sdown",
            ..e
        };
        assert_eq!(subs.deliveries(&sdown).len(), 1);
        assert!(glob(b"+*", b"+sdown") && !glob(b"+*", b"-sdown") && glob(b"?sdown", b"-sdown"));
    }
}
