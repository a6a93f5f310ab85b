//! One client's pub/sub: SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE and PUNSUBSCRIBE, their
//! confirmations, and the announcements delivered to them. Confirmations and messages are
//! out-of-band replies ([`Reply::Push`]): push frames over RESP3, arrays over RESP2, as Redis
//! sends them.
use super::{
    glob::glob,
    resp::{Reply, text},
    topology::Event,
};

/// Subscriptions per client.
pub const MAX_SUBSCRIPTIONS: usize = 64;
/// Bytes of channel names and patterns per client: one pattern as long as a request allows, or
/// many short ones (Sentinel's channels are a few bytes; its clients subscribe to `*` or a
/// handful), so a client holds at most this much in subscriptions however it subscribes.
pub const MAX_SUBSCRIPTION_BYTES: usize = super::resp::MAX_BULK;

/// Whether a RESP2 client with subscriptions may run `cmd` (upper case): Redis allows only these
/// in that state, since their replies cannot be told apart from messages otherwise. RESP3
/// clients may run anything.
pub fn allowed_while_subscribed(cmd: &str) -> bool {
    matches!(
        cmd,
        "SUBSCRIBE" | "PSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "PING" | "QUIT"
    )
}

/// The error Redis gives a RESP2 subscriber for any other command (`name` as `sentinel|myid`).
pub fn not_allowed(name: &str) -> Reply {
    Reply::Error(format!(
        "ERR Can't execute '{name}': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET \
         are allowed in this context"
    ))
}

#[derive(Default)]
pub struct Subscriptions {
    channels: Vec<Vec<u8>>,
    patterns: Vec<Vec<u8>>,
}

impl Subscriptions {
    pub fn count(&self) -> usize {
        self.channels.len() + self.patterns.len()
    }

    pub fn channels(&self) -> usize {
        self.channels.len()
    }

    pub fn patterns(&self) -> usize {
        self.patterns.len()
    }

    /// Answers SUBSCRIBE, PSUBSCRIBE, UNSUBSCRIBE or PUNSUBSCRIBE (`cmd` upper case): one
    /// confirmation per name, as Redis sends them.
    pub fn handle(&mut self, cmd: &str, args: &[Vec<u8>]) -> Vec<Reply> {
        let pattern = cmd.starts_with('P');
        let kind = cmd.to_ascii_lowercase();
        let names = &args[1..];
        if cmd.ends_with("UNSUBSCRIBE") {
            let list = if pattern {
                &self.patterns
            } else {
                &self.channels
            };
            let names: Vec<Vec<u8>> = if names.is_empty() {
                list.clone()
            } else {
                names.to_vec()
            };
            if names.is_empty() {
                // Nothing to leave: Redis still confirms, with no name.
                return vec![confirm(&kind, Reply::Nil, self.count())];
            }
            names
                .into_iter()
                .map(|name| {
                    self.list(pattern).retain(|c| *c != name);
                    confirm(&kind, Reply::Bulk(name), self.count())
                })
                .collect()
        } else if names.is_empty() {
            vec![Reply::Error(format!(
                "ERR wrong number of arguments for '{kind}' command"
            ))]
        } else {
            names
                .iter()
                .map(|name| {
                    let room = self.count() < MAX_SUBSCRIPTIONS
                        && self.bytes() + name.len() <= MAX_SUBSCRIPTION_BYTES;
                    let list = self.list(pattern);
                    if !list.contains(name) {
                        if !room {
                            return Reply::Error(format!(
                                "ERR a client may hold at most {MAX_SUBSCRIPTIONS} subscriptions \
                                 of {MAX_SUBSCRIPTION_BYTES} bytes in all"
                            ));
                        }
                        list.push(name.clone());
                    }
                    confirm(&kind, Reply::bulk(name), self.count())
                })
                .collect()
        }
    }

    /// The bytes of names it holds.
    fn bytes(&self) -> usize {
        self.channels
            .iter()
            .chain(&self.patterns)
            .map(Vec::len)
            .sum()
    }

    fn list(&mut self, pattern: bool) -> &mut Vec<Vec<u8>> {
        if pattern {
            &mut self.patterns
        } else {
            &mut self.channels
        }
    }

    /// The messages `e` makes for this client: one per matching channel or pattern.
    pub fn deliveries(&self, e: &Event) -> Vec<Reply> {
        let channel = e.channel.name().as_bytes();
        let mut out = Vec::new();
        if self.channels.iter().any(|c| c == channel) {
            out.push(Reply::Push(vec![
                Reply::bulk("message"),
                Reply::bulk(channel),
                Reply::bulk(&e.message),
            ]));
        }
        for p in self.patterns.iter().filter(|p| glob(p, channel)) {
            out.push(Reply::Push(vec![
                Reply::bulk("pmessage"),
                Reply::bulk(p),
                Reply::bulk(channel),
                Reply::bulk(&e.message),
            ]));
        }
        out
    }
}

fn confirm(kind: &str, name: Reply, count: usize) -> Reply {
    Reply::Push(vec![Reply::bulk(kind), name, Reply::Int(count as i64)])
}

/// PING from a RESP2 subscriber: Redis answers `pong` and the message as a two-element array.
pub fn subscribed_pong(args: &[Vec<u8>]) -> Reply {
    let message = args.get(1).map(|m| text(m)).unwrap_or_default();
    Reply::Array(vec![Reply::bulk("pong"), Reply::bulk(message)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentinel::topology::Channel;

    fn words(w: &[&str]) -> Vec<Vec<u8>> {
        w.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    fn encoded(replies: &[Reply], proto: u8) -> Vec<u8> {
        let mut out = Vec::new();
        replies.iter().for_each(|r| r.encode_as(&mut out, proto));
        out
    }

    fn event(channel: Channel) -> Event {
        Event {
            datastore: "cache".into(),
            epoch: 4,
            channel,
            node: "a".into(),
            message: "cache 127.0.0.1 7001 127.0.0.1 7000".into(),
        }
    }

    #[test]
    fn subscriptions_get_matching_events_only() {
        let mut subs = Subscriptions::default();
        assert_eq!(
            subs.handle("PSUBSCRIBE", &words(&["PSUBSCRIBE", "*"]))
                .len(),
            1
        );
        subs.handle("SUBSCRIBE", &words(&["SUBSCRIBE", "+switch-master"]));
        assert_eq!(subs.deliveries(&event(Channel::SwitchMaster)).len(), 2);
        assert_eq!(subs.deliveries(&event(Channel::Sdown)).len(), 1);
        assert!(glob(b"+*", b"+sdown") && !glob(b"+*", b"-sdown") && glob(b"?sdown", b"-sdown"));
    }

    #[test]
    fn confirmations_and_messages_are_pushes_in_resp3_and_arrays_in_resp2() {
        let mut subs = Subscriptions::default();
        let confirmed = subs.handle("PSUBSCRIBE", &words(&["PSUBSCRIBE", "*"]));
        assert_eq!(
            encoded(&confirmed, 3),
            b">3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:1\r\n"
        );
        assert_eq!(
            encoded(&confirmed, 2),
            b"*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:1\r\n"
        );
        let e = Event {
            message: "master cache 127.0.0.1 7000".into(),
            ..event(Channel::Sdown)
        };
        let m = subs.deliveries(&e);
        let three = b">4\r\n$8\r\npmessage\r\n$1\r\n*\r\n$6\r\n+sdown\r\n$27\r\nmaster cache 127.0.0.1 7000\r\n";
        assert_eq!(encoded(&m, 3), three);
        assert_eq!(encoded(&m, 2)[0], b'*');
        assert_eq!(encoded(&m, 2)[1..], three[1..]);
        let mut subs = Subscriptions::default();
        subs.handle("SUBSCRIBE", &words(&["SUBSCRIBE", "+sdown"]));
        assert_eq!(
            encoded(&subs.deliveries(&e), 3),
            b">3\r\n$7\r\nmessage\r\n$6\r\n+sdown\r\n$27\r\nmaster cache 127.0.0.1 7000\r\n"
        );
    }

    #[test]
    fn unsubscribing_confirms_each_name_and_nothing_as_a_nil_name() {
        let mut subs = Subscriptions::default();
        subs.handle("SUBSCRIBE", &words(&["SUBSCRIBE", "a", "b"]));
        subs.handle("PSUBSCRIBE", &words(&["PSUBSCRIBE", "*"]));
        assert_eq!((subs.channels(), subs.patterns()), (2, 1));
        let left = subs.handle("UNSUBSCRIBE", &words(&["UNSUBSCRIBE"]));
        assert_eq!(
            encoded(&left, 3),
            b">3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:2\r\n>3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:1\r\n"
        );
        let none = subs.handle("UNSUBSCRIBE", &words(&["UNSUBSCRIBE"]));
        assert_eq!(
            encoded(&none, 2),
            b"*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:1\r\n"
        );
        assert_eq!(
            encoded(&none, 3),
            b">3\r\n$11\r\nunsubscribe\r\n_\r\n:1\r\n"
        );
        let p = subs.handle("PUNSUBSCRIBE", &words(&["PUNSUBSCRIBE", "*", "nope"]));
        assert_eq!(p.len(), 2);
        assert_eq!(subs.count(), 0);
        assert!(matches!(
            &subs.handle("SUBSCRIBE", &words(&["SUBSCRIBE"]))[..],
            [Reply::Error(e)] if e.contains("'subscribe'")
        ));
    }

    #[test]
    fn subscriptions_are_bounded() {
        let mut subs = Subscriptions::default();
        for i in 0..MAX_SUBSCRIPTIONS + 10 {
            subs.handle(
                "SUBSCRIBE",
                &[b"SUBSCRIBE".to_vec(), i.to_string().into_bytes()],
            );
        }
        assert_eq!(subs.count(), MAX_SUBSCRIPTIONS);
        let refused = subs.handle("SUBSCRIBE", &words(&["SUBSCRIBE", "one-more"]));
        assert!(matches!(&refused[..], [Reply::Error(e)] if e.contains("at most 64")));
        // However long the names, a client holds at most MAX_SUBSCRIPTION_BYTES of them.
        let mut subs = Subscriptions::default();
        let star = vec![b'*'; MAX_SUBSCRIPTION_BYTES];
        let kept = subs.handle("PSUBSCRIBE", &[b"PSUBSCRIBE".to_vec(), star.clone()]);
        assert!(matches!(&kept[..], [Reply::Push(_)]));
        let refused = subs.handle("PSUBSCRIBE", &words(&["PSUBSCRIBE", "x"]));
        assert!(matches!(&refused[..], [Reply::Error(_)]));
        assert_eq!((subs.count(), subs.bytes()), (1, MAX_SUBSCRIPTION_BYTES));
    }

    #[test]
    fn a_resp2_subscriber_is_limited_to_pub_sub_and_ping() {
        assert!(allowed_while_subscribed("PING") && allowed_while_subscribed("PUNSUBSCRIBE"));
        assert!(!allowed_while_subscribed("SENTINEL") && !allowed_while_subscribed("CLIENT"));
        assert_eq!(
            encoded(&[subscribed_pong(&words(&["PING"]))], 2),
            b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
        );
        assert_eq!(
            encoded(&[subscribed_pong(&words(&["PING", "hi"]))], 2),
            b"*2\r\n$4\r\npong\r\n$2\r\nhi\r\n"
        );
    }
}
