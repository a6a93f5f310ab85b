//! The commands the endpoint answers, as Redis Sentinel does: PING, ROLE, HELLO, SELECT and
//! QUIT here; AUTH ([`super::auth`]), INFO ([`super::info`]), CLIENT ([`super::clients`]) and
//! SENTINEL ([`super::subcommands`]) in their own files; pub/sub is [`super::subscriptions`].
//! Anything else is an error reply.
use super::{
    auth,
    clients::{self, Session},
    endpoint::{Endpoint, REDIS_VERSION},
    info,
    resp::{Reply, text},
    subcommands::{self, masters},
};

/// Every command the endpoint knows (upper case), pub/sub included.
pub fn is_known(cmd: &str) -> bool {
    matches!(
        cmd,
        "PING"
            | "ROLE"
            | "HELLO"
            | "INFO"
            | "CLIENT"
            | "AUTH"
            | "SELECT"
            | "QUIT"
            | "SENTINEL"
            | "SUBSCRIBE"
            | "PSUBSCRIBE"
            | "UNSUBSCRIBE"
            | "PUNSUBSCRIBE"
    )
}

/// Redis' reply to a command it does not have, naming the first arguments.
pub fn unknown(args: &[Vec<u8>]) -> Reply {
    let mut words = String::new();
    for a in args.iter().skip(1) {
        if words.len() >= 128 {
            break;
        }
        let room = 128 - words.len();
        words.push_str(&format!(
            "'{}' ",
            text(a).chars().take(room).collect::<String>()
        ));
    }
    let cmd: String = args
        .first()
        .map(|c| text(c).chars().take(128).collect())
        .unwrap_or_default();
    Reply::Error(format!(
        "ERR unknown command '{cmd}', with args beginning with: {words}"
    ))
}

fn arity(name: &str) -> Reply {
    Reply::Error(format!(
        "ERR wrong number of arguments for '{name}' command"
    ))
}

/// The answer to one command from the client of `session` (pub/sub is handled by the caller).
pub fn answer(args: &[Vec<u8>], session: &mut Session, endpoint: &Endpoint) -> Reply {
    let Some(cmd) = args.first() else {
        return Reply::Error("ERR empty command".into());
    };
    let cmd = text(cmd).to_ascii_uppercase();
    match cmd.as_str() {
        "PING" => match args.len() {
            1 => Reply::Simple("PONG".into()),
            2 => Reply::Bulk(args[1].clone()),
            _ => arity("ping"),
        },
        "ROLE" => Reply::Array(vec![
            Reply::bulk("sentinel"),
            Reply::Array(
                masters(&endpoint.published)
                    .iter()
                    .map(|(v, _)| Reply::bulk(&v.name))
                    .collect(),
            ),
        ]),
        "HELLO" => hello(args, session, endpoint),
        "INFO" => info::answer(args, endpoint),
        "CLIENT" => clients::answer(args, session, &endpoint.clients),
        "AUTH" => auth::answer(args, session, endpoint.options.credentials.as_ref()),
        // A Sentinel has one database, and clients select 0 out of habit.
        "SELECT" | "QUIT" => Reply::Simple("OK".into()),
        "SENTINEL" => subcommands::answer(args, endpoint),
        _ => unknown(args),
    }
}

/// `HELLO [protover [AUTH user pass] [SETNAME name]]`: authenticates when asked, switches the
/// protocol (without a version, keeps it) and answers with the server's description, as
/// Sentinel does (no `role`). Before authentication, only with AUTH.
fn hello(args: &[Vec<u8>], session: &mut Session, endpoint: &Endpoint) -> Reply {
    let mut proto = session.info.resp;
    if let Some(v) = args.get(1) {
        match text(v).parse::<i64>() {
            Ok(v @ 2..=3) => proto = v as u8,
            Ok(_) => return Reply::Error("NOPROTO unsupported protocol version".into()),
            Err(_) => {
                return Reply::Error(
                    "ERR Protocol version is not an integer or out of range".into(),
                );
            }
        }
    }
    let mut name = None;
    let mut credentials = None;
    let mut i = 2;
    while i < args.len() {
        let opt = text(&args[i]);
        let more = args.len() - 1 - i;
        if opt.eq_ignore_ascii_case("AUTH") && more >= 2 {
            credentials = Some((&args[i + 1], &args[i + 2]));
            i += 3;
        } else if opt.eq_ignore_ascii_case("SETNAME") && more >= 1 {
            match clients::checked_word(&args[i + 1], "Client names") {
                Ok(n) => name = Some(n),
                Err(e) => return e,
            }
            i += 2;
        } else {
            return Reply::Error(format!("ERR Syntax error in HELLO option '{opt}'"));
        }
    }
    if let Some((user, password)) = credentials
        && let Err(e) = auth::authenticate(
            session,
            endpoint.options.credentials.as_ref(),
            user,
            password,
        )
    {
        return e;
    }
    if !session.authenticated {
        return Reply::Error(auth::HELLO_NOAUTH.into());
    }
    if let Some(name) = name {
        session.info.name = name;
    }
    session.info.resp = proto;
    Reply::Map(vec![
        (Reply::bulk("server"), Reply::bulk("redis")),
        (Reply::bulk("version"), Reply::bulk(REDIS_VERSION)),
        (Reply::bulk("proto"), Reply::Int(proto.into())),
        (Reply::bulk("id"), Reply::Int(session.info.id as i64)),
        (Reply::bulk("mode"), Reply::bulk("sentinel")),
        (Reply::bulk("modules"), Reply::Array(vec![])),
    ])
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use vigil_proto::HostPort;

    use super::*;
    use crate::sentinel::{
        clients::ClientInfo,
        topology::{Member, Published, StoreView},
    };

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
            ..StoreView::default()
        });
        p
    }

    pub(crate) fn endpoint(p: &Arc<Published>) -> Endpoint {
        Endpoint::new(
            Arc::clone(p),
            "127.0.0.1:26379".parse().unwrap(),
            Default::default(),
        )
    }

    pub(crate) fn session(e: &Endpoint) -> Session {
        Session::new(ClientInfo::new(
            e.clients.next_id(),
            "127.0.0.1:50000".into(),
            "127.0.0.1:26379".into(),
            9,
        ))
    }

    fn ask(e: &Endpoint, words: &[&str]) -> Reply {
        ask_as(e, &mut session(e), words)
    }

    fn ask_as(e: &Endpoint, s: &mut Session, words: &[&str]) -> Reply {
        let args: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        answer(&args, s, e)
    }

    fn encoded(r: &Reply, proto: u8) -> Vec<u8> {
        let mut out = Vec::new();
        r.encode_as(&mut out, proto);
        out
    }

    #[test]
    fn ping_and_role() {
        let e = endpoint(&view());
        assert_eq!(ask(&e, &["PING"]), Reply::Simple("PONG".into()));
        assert_eq!(ask(&e, &["PING", "hi"]), Reply::bulk("hi"));
        assert!(matches!(ask(&e, &["PING", "a", "b"]), Reply::Error(_)));
        assert_eq!(
            ask(&e, &["ROLE"]),
            Reply::Array(vec![
                Reply::bulk("sentinel"),
                Reply::Array(vec![Reply::bulk("cache")])
            ])
        );
    }

    #[test]
    fn unknown_commands_are_refused_naming_their_first_arguments() {
        let e = endpoint(&view());
        assert_eq!(
            ask(&e, &["FLUSHALL"]),
            Reply::Error("ERR unknown command 'FLUSHALL', with args beginning with: ".into())
        );
        assert_eq!(
            ask(&e, &["SET", "k", "v"]),
            Reply::Error("ERR unknown command 'SET', with args beginning with: 'k' 'v' ".into())
        );
        // What a client sends is bounded in the error, whatever its size.
        let long = "x".repeat(10_000);
        let Reply::Error(err) = ask(&e, &["NOPE", &long, &long]) else {
            panic!()
        };
        assert!(err.len() < 400);
    }

    #[test]
    fn hello_switches_protocol_names_the_client_and_answers_as_sentinel() {
        let e = endpoint(&view());
        let mut s = session(&e);
        let id = s.info.id as i64;
        let reply = ask_as(&e, &mut s, &["HELLO", "3", "SETNAME", "app"]);
        assert_eq!(s.info.resp, 3);
        assert_eq!(s.info.name, "app");
        let Reply::Map(fields) = &reply else {
            panic!("HELLO is a map")
        };
        let keys: Vec<_> = fields.iter().map(|(k, _)| k.clone()).collect();
        assert_eq!(
            keys,
            ["server", "version", "proto", "id", "mode", "modules"].map(Reply::bulk)
        );
        assert!(fields.contains(&(Reply::bulk("proto"), Reply::Int(3))));
        assert!(fields.contains(&(Reply::bulk("id"), Reply::Int(id))));
        assert!(fields.contains(&(Reply::bulk("mode"), Reply::bulk("sentinel"))));
        // Without a version the protocol stays; AUTH as the default user is accepted without a
        // password set, as Redis' nopass default user accepts it.
        ask_as(&e, &mut s, &["HELLO"]);
        assert_eq!(s.info.resp, 3);
        ask_as(&e, &mut s, &["HELLO", "2", "AUTH", "default", "pw"]);
        assert_eq!(s.info.resp, 2);
        assert_eq!(
            ask_as(&e, &mut s, &["HELLO", "3", "AUTH", "other", "pw"]),
            Reply::Error(auth::WRONGPASS.into())
        );
        assert_eq!(s.info.resp, 2);
        for (words, err) in [
            (&["HELLO", "4"][..], "NOPROTO unsupported protocol version"),
            (
                &["HELLO", "x"],
                "ERR Protocol version is not an integer or out of range",
            ),
            (
                &["HELLO", "3", "FOO"],
                "ERR Syntax error in HELLO option 'FOO'",
            ),
        ] {
            assert_eq!(ask_as(&e, &mut s, words), Reply::Error(err.into()));
            assert_eq!(s.info.resp, 2, "a refused HELLO changes nothing");
        }
    }

    #[test]
    fn client_commands_answer_with_their_own_reply_types() {
        let e = endpoint(&view());
        let mut s = session(&e);
        assert_eq!(
            ask_as(&e, &mut s, &["CLIENT", "ID"]),
            Reply::Int(s.info.id as i64)
        );
        let nil = ask_as(&e, &mut s, &["CLIENT", "GETNAME"]);
        assert_eq!(
            (encoded(&nil, 2), encoded(&nil, 3)),
            (b"$-1\r\n".to_vec(), b"_\r\n".to_vec())
        );
        assert_eq!(
            ask_as(&e, &mut s, &["CLIENT", "SETINFO", "LIB-NAME", "redis-py"]),
            Reply::Simple("OK".into())
        );
        assert!(matches!(
            ask_as(&e, &mut s, &["AUTH", "x"]),
            Reply::Error(e) if e.starts_with("ERR AUTH <password> called without any password")
        ));
    }

    #[test]
    fn with_a_password_hello_authenticates_or_is_refused() {
        let p = view();
        let e = Endpoint::new(
            Arc::clone(&p),
            "127.0.0.1:26379".parse().unwrap(),
            crate::sentinel::endpoint::Options {
                credentials: Some(auth::Credentials::new("app", b"pw")),
                ..Default::default()
            },
        );
        let mut s = session(&e);
        s.authenticated = false;
        assert_eq!(
            ask_as(&e, &mut s, &["HELLO", "3"]),
            Reply::Error(auth::HELLO_NOAUTH.into())
        );
        assert_eq!(
            ask_as(&e, &mut s, &["HELLO", "3", "AUTH", "app", "nope"]),
            Reply::Error(auth::WRONGPASS.into())
        );
        assert_eq!((s.authenticated, s.info.resp), (false, 2));
        let Reply::Map(_) = ask_as(&e, &mut s, &["HELLO", "3", "AUTH", "app", "pw"]) else {
            panic!("HELLO with the right pair answers")
        };
        assert_eq!((s.authenticated, s.info.resp), (true, 3));
        assert_eq!(s.info.user, "app");
    }
}
