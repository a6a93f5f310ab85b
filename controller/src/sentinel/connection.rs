//! One Sentinel client's connection: its read buffer and RESP framing, its protocol version
//! (RESP2 until `HELLO 3`), and its subscriptions, with the announcements delivered to them. A
//! protocol error or an oversized request closes this client only.
use std::sync::Arc;

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::broadcast::error::RecvError,
};

use super::{
    commands::{answer, text},
    resp::{self, Reply},
    topology::{Event, Published},
};

/// A client's unread bytes may not grow past this (a few maximal frames).
const MAX_BUFFER: usize = 4 * resp::MAX_BULK;
/// Subscriptions per client.
const MAX_SUBSCRIPTIONS: usize = 64;

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
        let channel = e.channel.name().as_bytes();
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

pub(super) async fn client(
    mut stream: TcpStream,
    published: Arc<Published>,
) -> std::io::Result<()> {
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
    use crate::sentinel::{commands::tests::view, topology::Channel};

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
            channel: Channel::SwitchMaster,
            node: "a".into(),
            message: "cache 127.0.0.1 7001 127.0.0.1 7000".into(),
        };
        assert_eq!(subs.deliveries(&e).len(), 2);
        let sdown = Event {
            channel: Channel::Sdown,
            ..e
        };
        assert_eq!(subs.deliveries(&sdown).len(), 1);
        assert!(glob(b"+*", b"+sdown") && !glob(b"+*", b"-sdown") && glob(b"?sdown", b"-sdown"));
    }
}
