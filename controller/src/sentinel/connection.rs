//! One Sentinel client's connection: its read buffer and RESP framing, its session (protocol
//! version, name, authentication, subscriptions), the announcements delivered to its
//! subscriptions, and its idle timeout. A protocol error or an oversized request closes this
//! client only.
//!
//! What one client can make the endpoint hold is bounded: its unread bytes by [`MAX_BUFFER`]
//! (before authentication by Redis' smaller bounds, [`resp::UNAUTHENTICATED`]), its
//! subscriptions by [`MAX_SUBSCRIPTIONS`](super::subscriptions::MAX_SUBSCRIPTIONS) names of
//! [`MAX_SUBSCRIPTION_BYTES`](super::subscriptions::MAX_SUBSCRIPTION_BYTES) in all, and the
//! replies to one read by what one read can ask (each is written before the next read).
use std::sync::Arc;

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt},
    sync::broadcast::error::RecvError,
    time::Instant,
};

use super::{
    auth,
    clients::{ClientInfo, Session, command_name},
    commands,
    endpoint::{Endpoint, Stats},
    resp::{self, Reply, text},
    subscriptions::{allowed_while_subscribed, not_allowed, subscribed_pong},
};

/// A client's unread bytes may not grow past this (a few maximal frames).
const MAX_BUFFER: usize = 4 * resp::MAX_BULK;

/// Where a client connects from, as CLIENT LIST shows it.
pub(super) struct Peer {
    pub addr: String,
    pub laddr: String,
    pub fd: i32,
}

/// Takes the client out of the registry however its connection ends.
struct Registered<'a> {
    endpoint: &'a Endpoint,
    id: u64,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.endpoint.clients.remove(self.id);
    }
}

async fn send(stream: &mut (impl AsyncWrite + Unpin), out: &[u8]) -> std::io::Result<()> {
    stream.write_all(out).await?;
    // A TLS stream holds records until flushed.
    stream.flush().await
}

/// Serves one client on `stream` (plain TCP, or TLS once its handshake is done) until it leaves,
/// errs, or stays idle past the endpoint's timeout.
pub(super) async fn client(
    mut stream: impl AsyncRead + AsyncWrite + Unpin,
    peer: Peer,
    endpoint: Arc<Endpoint>,
) -> std::io::Result<()> {
    let mut session = Session::new(ClientInfo::new(
        endpoint.clients.next_id(),
        peer.addr,
        peer.laddr,
        peer.fd,
    ));
    session.authenticated = endpoint.options.credentials.is_none();
    endpoint.clients.update(&session.info);
    let _registered = Registered {
        endpoint: &endpoint,
        id: session.info.id,
    };
    let mut events = endpoint.published.subscribe();
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let idle_timeout = endpoint.options.idle_timeout;
    let mut last_read = Instant::now();
    loop {
        let mut out = Vec::new();
        // Redis' `timeout`: a client that sends nothing for this long is closed, unless it
        // subscribes (a subscriber listens, and may rightly say nothing for days).
        let idle_at = idle_timeout.map(|t| last_read + t);
        let may_idle_out = idle_at.is_some() && session.subs.count() == 0;
        tokio::select! {
            n = stream.read(&mut chunk) => {
                let n = n?;
                if n == 0 {
                    return Ok(());
                }
                last_read = Instant::now();
                buf.extend_from_slice(&chunk[..n]);
                loop {
                    let limits = if session.authenticated {
                        resp::AUTHENTICATED
                    } else {
                        resp::UNAUTHENTICATED
                    };
                    let args = match resp::parse_command_within(&buf, &limits) {
                        Ok(None) => break,
                        Ok(Some((args, used))) => {
                            buf.drain(..used);
                            args
                        }
                        Err(e) => {
                            Reply::Error(format!("ERR {e}")).encode(&mut out);
                            send(&mut stream, &out).await?;
                            return Ok(());
                        }
                    };
                    if args.is_empty() {
                        continue;
                    }
                    let was_subscribed = session.subs.count() > 0;
                    let replies = run(&args, &mut session, &endpoint);
                    if !was_subscribed && session.subs.count() > 0 {
                        // Announcements from now on only: drop what was sent before this
                        // client subscribed, as Redis' pub/sub would never have delivered it.
                        events = events.resubscribe();
                    }
                    let proto = session.info.resp;
                    for r in &replies {
                        if matches!(r, Reply::Error(_)) {
                            Stats::count(&endpoint.stats.errors);
                        }
                        r.encode_as(&mut out, proto);
                    }
                    if text(&args[0]).eq_ignore_ascii_case("QUIT") {
                        send(&mut stream, &out).await?;
                        return Ok(());
                    }
                }
                if buf.len() > MAX_BUFFER {
                    Reply::Error("ERR Protocol error: request too large".into()).encode(&mut out);
                    send(&mut stream, &out).await?;
                    return Ok(());
                }
            }
            e = events.recv(), if session.subs.count() > 0 => match e {
                Ok(e) => session
                    .subs
                    .deliveries(&e)
                    .iter()
                    .for_each(|r| r.encode_as(&mut out, session.info.resp)),
                // A subscriber too slow for the backlog misses events, as with Redis' pub/sub.
                Err(RecvError::Lagged(_)) => {}
                Err(RecvError::Closed) => return Ok(()),
            },
            _ = tokio::time::sleep_until(idle_at.unwrap_or(last_read)), if may_idle_out => {
                tracing::debug!(id = session.info.id, addr = %session.info.addr, "sentinel client idle past the timeout: closed");
                return Ok(());
            }
        }
        if !out.is_empty() {
            send(&mut stream, &out).await?;
        }
    }
}

/// Runs one command for the client of `session`: its replies, in order.
fn run(args: &[Vec<u8>], session: &mut Session, endpoint: &Endpoint) -> Vec<Reply> {
    Stats::count(&endpoint.stats.commands);
    session.started(args);
    let cmd = text(&args[0]).to_ascii_uppercase();
    let replies = if !commands::is_known(&cmd) {
        vec![commands::unknown(args)]
    } else if !session.authenticated && !auth::allowed_before_auth(&cmd) {
        vec![Reply::Error(auth::NOAUTH.into())]
    } else if !session.resp3() && session.subs.count() > 0 && !allowed_while_subscribed(&cmd) {
        vec![not_allowed(&command_name(args))]
    } else {
        match cmd.as_str() {
            "SUBSCRIBE" | "PSUBSCRIBE" | "UNSUBSCRIBE" | "PUNSUBSCRIBE" => {
                let r = session.subs.handle(&cmd, args);
                session.info.sub = session.subs.channels();
                session.info.psub = session.subs.patterns();
                r
            }
            "PING" if !session.resp3() && session.subs.count() > 0 && args.len() <= 2 => {
                vec![subscribed_pong(args)]
            }
            _ => vec![commands::answer(args, session, endpoint)],
        }
    };
    endpoint.clients.update(&session.info);
    replies
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentinel::commands::tests::{endpoint, session, view};

    fn words(w: &[&str]) -> Vec<Vec<u8>> {
        w.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    fn wire(replies: &[Reply], proto: u8) -> Vec<u8> {
        let mut out = Vec::new();
        replies.iter().for_each(|r| r.encode_as(&mut out, proto));
        out
    }

    #[test]
    fn a_resp2_subscriber_may_only_ping_and_manage_subscriptions() {
        let e = endpoint(&view());
        let mut s = session(&e);
        run(&words(&["SUBSCRIBE", "+switch-master"]), &mut s, &e);
        assert_eq!(
            wire(&run(&words(&["PING"]), &mut s, &e), 2),
            b"*2\r\n$4\r\npong\r\n$0\r\n\r\n"
        );
        assert_eq!(
            run(&words(&["SENTINEL", "MYID"]), &mut s, &e),
            vec![Reply::Error(
                "ERR Can't execute 'sentinel|myid': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / \
                 PING / QUIT / RESET are allowed in this context"
                    .into()
            )]
        );
        assert!(matches!(
            &run(&words(&["FLUSHALL"]), &mut s, &e)[..],
            [Reply::Error(e)] if e.starts_with("ERR unknown command")
        ));
        run(&words(&["UNSUBSCRIBE"]), &mut s, &e);
        assert_eq!(
            run(&words(&["PING"]), &mut s, &e),
            vec![Reply::Simple("PONG".into())]
        );
    }

    #[test]
    fn a_resp3_subscriber_runs_any_command_and_gets_push_confirmations() {
        let e = endpoint(&view());
        let mut s = session(&e);
        run(&words(&["HELLO", "3"]), &mut s, &e);
        let confirmed = run(&words(&["PSUBSCRIBE", "*"]), &mut s, &e);
        assert_eq!(
            wire(&confirmed, 3),
            b">3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:1\r\n"
        );
        assert_eq!(
            run(
                &words(&["SENTINEL", "get-master-addr-by-name", "cache"]),
                &mut s,
                &e
            ),
            vec![Reply::Array(vec![
                Reply::bulk("127.0.0.1"),
                Reply::bulk("7001")
            ])]
        );
        assert_eq!(
            run(&words(&["PING"]), &mut s, &e),
            vec![Reply::Simple("PONG".into())]
        );
    }

    #[test]
    fn before_auth_only_auth_hello_and_quit_run_and_unknown_commands_are_still_unknown() {
        let e = Endpoint::new(
            view(),
            "127.0.0.1:26379".parse().unwrap(),
            crate::sentinel::endpoint::Options {
                credentials: Some(auth::Credentials::new("default", b"pw")),
                ..Default::default()
            },
        );
        let mut s = session(&e);
        s.authenticated = false;
        let noauth = vec![Reply::Error(auth::NOAUTH.into())];
        for cmd in [
            &["PING"][..],
            &["SENTINEL", "get-master-addr-by-name", "cache"],
            &["PSUBSCRIBE", "*"],
            &["CLIENT", "LIST"],
            &["INFO"],
        ] {
            assert_eq!(run(&words(cmd), &mut s, &e), noauth, "{cmd:?}");
        }
        assert_eq!(s.subs.count(), 0);
        assert!(matches!(
            &run(&words(&["FLUSHALL"]), &mut s, &e)[..],
            [Reply::Error(e)] if e.starts_with("ERR unknown command")
        ));
        assert_eq!(
            run(&words(&["AUTH", "nope"]), &mut s, &e),
            vec![Reply::Error(auth::WRONGPASS.into())]
        );
        assert_eq!(
            run(&words(&["AUTH", "pw"]), &mut s, &e),
            vec![Reply::Simple("OK".into())]
        );
        assert_eq!(
            run(&words(&["PING"]), &mut s, &e),
            vec![Reply::Simple("PONG".into())]
        );
    }

    #[test]
    fn the_registry_follows_each_command_and_the_subscriptions() {
        let e = endpoint(&view());
        let mut s = session(&e);
        run(&words(&["CLIENT", "SETNAME", "watcher"]), &mut s, &e);
        run(&words(&["PSUBSCRIBE", "*"]), &mut s, &e);
        let all = e.clients.all();
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].name.as_str(), all[0].psub, all[0].cmd.as_str()),
            ("watcher", 1, "psubscribe")
        );
        assert_eq!(Stats::read(&e.stats.commands), 2);
    }
}
