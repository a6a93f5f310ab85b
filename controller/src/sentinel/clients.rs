//! The endpoint's clients: each one's state (id, name, library, protocol, subscriptions), the
//! registry CLIENT LIST and INFO read, and the CLIENT subcommands: ID, GETNAME, SETNAME,
//! SETINFO, INFO, LIST, HELP. KILL, PAUSE and the rest change other clients or the server, and
//! are refused.
use std::{
    collections::BTreeMap,
    sync::{
        Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use super::{
    resp::{Reply, text},
    subscriptions::Subscriptions,
};

/// A client name, library name or version may not be longer: the endpoint holds one of each
/// per client, and names are words, not documents.
pub const MAX_NAME: usize = 256;

/// What CLIENT LIST says about one client.
#[derive(Clone, Debug)]
pub struct ClientInfo {
    /// Unique per connection, never reused while the controller runs.
    pub id: u64,
    pub addr: String,
    pub laddr: String,
    pub fd: i32,
    pub name: String,
    pub lib_name: String,
    pub lib_ver: String,
    /// 2 until HELLO 3.
    pub resp: u8,
    pub created: Instant,
    pub last_active: Instant,
    /// The last command, as `client|setname`; `NULL` before the first.
    pub cmd: String,
    pub sub: usize,
    pub psub: usize,
    /// The user it authenticated as (the default user until then, as Redis shows it).
    pub user: String,
}

impl ClientInfo {
    pub fn new(id: u64, addr: String, laddr: String, fd: i32) -> Self {
        let now = Instant::now();
        Self {
            id,
            addr,
            laddr,
            fd,
            name: String::new(),
            lib_name: String::new(),
            lib_ver: String::new(),
            resp: 2,
            created: now,
            last_active: now,
            cmd: "NULL".into(),
            sub: 0,
            psub: 0,
            user: super::auth::DEFAULT_USER.into(),
        }
    }

    /// One line of CLIENT LIST, with the fields and order of Redis 7.2 (the buffers and memory
    /// Redis counts are not tracked here and read 0).
    pub fn line(&self, now: Instant) -> String {
        let age = now.duration_since(self.created).as_secs();
        let idle = now.duration_since(self.last_active).as_secs();
        let flags = if self.sub + self.psub > 0 { "P" } else { "N" };
        format!(
            "id={} addr={} laddr={} fd={} name={} age={age} idle={idle} flags={flags} db=0 \
             sub={} psub={} ssub=0 multi=-1 qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 \
             rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={} user={} redir=-1 resp={} \
             lib-name={} lib-ver={}\n",
            self.id,
            self.addr,
            self.laddr,
            self.fd,
            self.name,
            self.sub,
            self.psub,
            self.cmd,
            self.user,
            self.resp,
            self.lib_name,
            self.lib_ver,
        )
    }
}

/// One connected client's state, owned by its connection task.
pub struct Session {
    pub info: ClientInfo,
    pub subs: Subscriptions,
    /// Whether it may run commands: at once without a password, after AUTH with one.
    pub authenticated: bool,
}

impl Session {
    /// An authenticated session: the endpoint's connection starts it unauthenticated when a
    /// password is set.
    pub fn new(info: ClientInfo) -> Self {
        Self {
            info,
            subs: Subscriptions::default(),
            authenticated: true,
        }
    }

    pub fn resp3(&self) -> bool {
        self.info.resp >= 3
    }

    /// Notes a command about to run: when, and its name as CLIENT LIST shows it.
    pub fn started(&mut self, args: &[Vec<u8>]) {
        self.info.last_active = Instant::now();
        self.info.cmd = command_name(args);
    }
}

/// A command's name as Redis writes it in CLIENT LIST and its errors: lower case, with the
/// subcommand of a container command (`client|setname`, `sentinel|masters`). Bounded: it is the
/// client's own bytes.
pub fn command_name(args: &[Vec<u8>]) -> String {
    const MAX: usize = 64;
    let word = |i: usize| -> String {
        args.get(i)
            .map(|a| text(a).to_lowercase().chars().take(MAX).collect())
            .unwrap_or_default()
    };
    let cmd = word(0);
    match (cmd.as_str(), args.len()) {
        ("client" | "sentinel", 2..) => format!("{cmd}|{}", word(1)),
        _ => cmd,
    }
}

/// The clients connected now, as CLIENT LIST and INFO see them. Each connection keeps its own
/// [`Session`] and copies its [`ClientInfo`] here after each command.
#[derive(Default)]
pub struct Clients {
    last_id: AtomicU64,
    live: Mutex<BTreeMap<u64, ClientInfo>>,
}

impl Clients {
    /// A new id, unique for the life of the controller.
    pub fn next_id(&self) -> u64 {
        self.last_id.fetch_add(1, Ordering::Relaxed) + 1
    }

    pub fn update(&self, info: &ClientInfo) {
        self.lock().insert(info.id, info.clone());
    }

    pub fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub fn all(&self) -> Vec<ClientInfo> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, ClientInfo>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn arity(sub: &str) -> Reply {
    Reply::Error(format!(
        "ERR wrong number of arguments for 'client|{sub}' command"
    ))
}

const HELP: &[&str] = &[
    "CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
    "GETNAME",
    "    Return the name of the current connection.",
    "ID",
    "    Return the ID of the current connection.",
    "INFO",
    "    Return information about the current client connection.",
    "LIST [TYPE (NORMAL|PUBSUB)] [ID <id> [<id> ...]]",
    "    Return information about client connections.",
    "SETINFO <LIB-NAME|LIB-VER> <value>",
    "    Set client meta attributes.",
    "SETNAME <name>",
    "    Assign the name <name> to the current connection.",
    "HELP",
    "    Print this help.",
];

/// The answer to `CLIENT <subcommand> ...` for the client of `session`.
pub fn answer(args: &[Vec<u8>], session: &mut Session, clients: &Clients) -> Reply {
    let Some(sub) = args.get(1).map(|a| text(a).to_ascii_lowercase()) else {
        return Reply::Error("ERR wrong number of arguments for 'client' command".into());
    };
    match (sub.as_str(), args.len()) {
        ("id", 2) => Reply::Int(session.info.id as i64),
        ("getname", 2) if session.info.name.is_empty() => Reply::Nil,
        ("getname", 2) => Reply::bulk(&session.info.name),
        ("setname", 3) => match checked_word(&args[2], "Client names") {
            Ok(name) => {
                session.info.name = name;
                Reply::Simple("OK".into())
            }
            Err(e) => e,
        },
        ("setinfo", 4) => {
            let attr = text(&args[2]).to_ascii_lowercase();
            let value = match checked_word(&args[3], &attr) {
                Ok(v) => v,
                Err(e) => return e,
            };
            match attr.as_str() {
                "lib-name" => session.info.lib_name = value,
                "lib-ver" => session.info.lib_ver = value,
                _ => {
                    return Reply::Error(format!("ERR Unrecognized option '{}'", text(&args[2])));
                }
            }
            Reply::Simple("OK".into())
        }
        ("info", 2) => Reply::Verbatim(session.info.line(Instant::now())),
        ("list", _) => list(&args[2..], session, clients),
        ("help", 2) => Reply::Array(HELP.iter().map(|l| Reply::Simple((*l).into())).collect()),
        ("id" | "getname" | "setname" | "setinfo" | "info" | "help", _) => arity(&sub),
        _ => Reply::Error(format!(
            "ERR unknown subcommand '{}'. Try CLIENT HELP.",
            text(&args[1]).chars().take(128).collect::<String>()
        )),
    }
}

/// A client name or library attribute as Redis takes it (printable ASCII without spaces, here
/// also at most [`MAX_NAME`] bytes), or the error Redis gives.
pub fn checked_word(value: &[u8], what: &str) -> Result<String, Reply> {
    if value.len() > MAX_NAME {
        return Err(Reply::Error(format!(
            "ERR {what} cannot be longer than {MAX_NAME} bytes"
        )));
    }
    if !value.iter().all(|c| (b'!'..=b'~').contains(c)) {
        return Err(Reply::Error(format!(
            "ERR {what} cannot contain spaces, newlines or special characters."
        )));
    }
    Ok(text(value))
}

/// CLIENT LIST, optionally `TYPE normal|pubsub` and `ID <id> ...`.
fn list(filters: &[Vec<u8>], session: &Session, clients: &Clients) -> Reply {
    clients.update(&session.info);
    let mut kind: Option<bool> = None;
    let mut ids: Option<Vec<u64>> = None;
    let syntax = || Reply::Error("ERR syntax error".into());
    match filters {
        [] => {}
        [t, k] if text(t).eq_ignore_ascii_case("type") => {
            kind = match text(k).to_ascii_lowercase().as_str() {
                "normal" => Some(false),
                "pubsub" => Some(true),
                // Sentinel clients are never replicas or primaries of this endpoint.
                "master" | "replica" | "slave" => return Reply::Verbatim(String::new()),
                other => return Reply::Error(format!("ERR Unknown client type '{other}'")),
            }
        }
        [i, rest @ ..] if text(i).eq_ignore_ascii_case("id") && !rest.is_empty() => {
            let parsed: Option<Vec<u64>> = rest.iter().map(|r| text(r).parse().ok()).collect();
            match parsed {
                Some(p) => ids = Some(p),
                None => return Reply::Error("ERR Invalid client ID".into()),
            }
        }
        _ => return syntax(),
    }
    let now = Instant::now();
    let lines: String = clients
        .all()
        .iter()
        .filter(|c| kind.is_none_or(|pubsub| (c.sub + c.psub > 0) == pubsub))
        .filter(|c| ids.as_ref().is_none_or(|ids| ids.contains(&c.id)))
        .map(|c| c.line(now))
        .collect();
    Reply::Verbatim(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[&str]) -> Vec<Vec<u8>> {
        w.iter().map(|w| w.as_bytes().to_vec()).collect()
    }

    fn session(clients: &Clients) -> Session {
        let s = Session::new(ClientInfo::new(
            clients.next_id(),
            "127.0.0.1:50000".into(),
            "127.0.0.1:26379".into(),
            9,
        ));
        clients.update(&s.info);
        s
    }

    #[test]
    fn ids_are_unique_integers_and_names_start_unset() {
        let clients = Clients::default();
        let (mut a, mut b) = (session(&clients), session(&clients));
        let id = |s: &mut Session| answer(&words(&["CLIENT", "ID"]), s, &clients);
        let (ia, ib) = (id(&mut a), id(&mut b));
        assert!(matches!((&ia, &ib), (Reply::Int(x), Reply::Int(y)) if x != y && *x > 0));
        assert_eq!(
            answer(&words(&["client", "getname"]), &mut a, &clients),
            Reply::Nil
        );
    }

    #[test]
    fn setname_is_what_getname_answers_and_an_empty_name_clears_it() {
        let clients = Clients::default();
        let mut s = session(&clients);
        let ok = Reply::Simple("OK".into());
        assert_eq!(
            answer(&words(&["CLIENT", "SETNAME", "app-1"]), &mut s, &clients),
            ok
        );
        assert_eq!(
            answer(&words(&["CLIENT", "GETNAME"]), &mut s, &clients),
            Reply::bulk("app-1")
        );
        assert_eq!(
            answer(&words(&["CLIENT", "SETNAME", ""]), &mut s, &clients),
            ok
        );
        assert_eq!(
            answer(&words(&["CLIENT", "GETNAME"]), &mut s, &clients),
            Reply::Nil
        );
        assert!(matches!(
            answer(&words(&["CLIENT", "SETNAME", "a b"]), &mut s, &clients),
            Reply::Error(e) if e.contains("cannot contain spaces")
        ));
        let long = "x".repeat(MAX_NAME + 1);
        assert!(matches!(
            answer(&words(&["CLIENT", "SETNAME", &long]), &mut s, &clients),
            Reply::Error(_)
        ));
        assert!(matches!(
            answer(&words(&["CLIENT", "SETNAME"]), &mut s, &clients),
            Reply::Error(e) if e.contains("wrong number of arguments for 'client|setname'")
        ));
    }

    #[test]
    fn setinfo_is_accepted_and_shows_in_client_info() {
        let clients = Clients::default();
        let mut s = session(&clients);
        for (attr, value) in [("LIB-NAME", "redis-py"), ("lib-ver", "8.1.0")] {
            assert_eq!(
                answer(
                    &words(&["CLIENT", "SETINFO", attr, value]),
                    &mut s,
                    &clients
                ),
                Reply::Simple("OK".into())
            );
        }
        assert!(matches!(
            answer(&words(&["CLIENT", "SETINFO", "color", "red"]), &mut s, &clients),
            Reply::Error(e) if e == "ERR Unrecognized option 'color'"
        ));
        s.started(&words(&["CLIENT", "INFO"]));
        let Reply::Verbatim(line) = answer(&words(&["CLIENT", "INFO"]), &mut s, &clients) else {
            panic!("CLIENT INFO is text")
        };
        assert!(line.starts_with(&format!("id={} addr=127.0.0.1:50000 ", s.info.id)));
        for field in [
            " laddr=127.0.0.1:26379 ",
            " name= ",
            " cmd=client|info ",
            " resp=2 ",
            " lib-name=redis-py lib-ver=8.1.0\n",
        ] {
            assert!(line.contains(field), "{field:?} not in {line:?}");
        }
    }

    #[test]
    fn client_list_has_a_line_per_client_and_filters_by_type_and_id() {
        let clients = Clients::default();
        let mut a = session(&clients);
        let mut b = session(&clients);
        b.info.psub = 1;
        clients.update(&b.info);
        let list = |s: &mut Session, w: &[&str]| match answer(&words(w), s, &clients) {
            Reply::Verbatim(t) => t,
            other => panic!("{other:?}"),
        };
        let all = list(&mut a, &["CLIENT", "LIST"]);
        assert_eq!(all.lines().count(), 2);
        assert!(all.contains(" flags=P ") && all.contains(" flags=N "));
        let pubsub = list(&mut a, &["CLIENT", "LIST", "TYPE", "pubsub"]);
        assert!(pubsub.starts_with(&format!("id={} ", b.info.id)) && pubsub.lines().count() == 1);
        let id = a.info.id.to_string();
        let one = list(&mut b, &["CLIENT", "LIST", "ID", &id]);
        assert!(one.starts_with(&format!("id={id} ")) && one.lines().count() == 1);
        clients.remove(b.info.id);
        assert_eq!(list(&mut a, &["CLIENT", "LIST"]).lines().count(), 1);
    }

    #[test]
    fn changing_other_clients_is_refused() {
        let clients = Clients::default();
        let mut s = session(&clients);
        for cmd in [
            &["CLIENT", "KILL", "ID", "1"][..],
            &["CLIENT", "PAUSE", "1000"],
            &["CLIENT", "NOPE"],
        ] {
            assert!(matches!(
                answer(&words(cmd), &mut s, &clients),
                Reply::Error(e) if e.starts_with("ERR unknown subcommand")
            ));
        }
        assert!(matches!(
            answer(&words(&["CLIENT"]), &mut s, &clients),
            Reply::Error(_)
        ));
    }

    #[test]
    fn command_names_read_as_in_redis() {
        assert_eq!(
            command_name(&words(&["CLIENT", "SetName", "x"])),
            "client|setname"
        );
        assert_eq!(
            command_name(&words(&["SENTINEL", "MASTERS"])),
            "sentinel|masters"
        );
        assert_eq!(command_name(&words(&["PING"])), "ping");
        assert_eq!(command_name(&words(&["sentinel"])), "sentinel");
        assert_eq!(command_name(&[vec![b'A'; 1000]]).len(), 64);
    }
}
