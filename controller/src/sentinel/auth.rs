//! Who may use the endpoint: Redis' `requirepass` with one ACL user. With a password set, a
//! client must `AUTH [user] password` (or `HELLO 3 AUTH user password`) before anything but
//! AUTH, HELLO and QUIT, which Redis also answers before authentication; without one, every
//! client is the default user and AUTH answers as Redis does for a default user without a
//! password.
use ring::digest::{SHA256, digest};
use subtle::ConstantTimeEq;

use super::{
    clients::Session,
    resp::{Reply, text},
};

/// The user a password-only `AUTH` authenticates as, as in Redis.
pub const DEFAULT_USER: &str = "default";

/// Longest password accepted: an unauthenticated client's bulk strings are at most this long
/// (Redis' own bound before authentication), so a longer one could never be sent.
pub const MAX_PASSWORD: usize = super::resp::UNAUTHENTICATED.max_bulk;

pub const NOAUTH: &str = "NOAUTH Authentication required.";
pub const WRONGPASS: &str = "WRONGPASS invalid username-password pair or user is disabled.";
pub const HELLO_NOAUTH: &str = "NOAUTH HELLO must be called with the client already \
     authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to \
     authenticate the client and select the RESP protocol version at the same time";
const NO_PASSWORD: &str = "ERR AUTH <password> called without any password configured for the \
     default user. Are you sure your configuration is correct?";

/// The one user and password the endpoint accepts. The password is kept as its SHA-256 only, as
/// Redis' ACL keeps it, so the comparison takes the same time whatever its length or the guess.
#[derive(Clone)]
pub struct Credentials {
    user: String,
    digest: [u8; 32],
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, bytes).as_ref());
    out
}

impl Credentials {
    pub fn new(user: &str, password: &[u8]) -> Self {
        Self {
            user: user.to_string(),
            digest: sha256(password),
        }
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// Whether `user` and `password` are the pair, compared in constant time (both are checked
    /// whichever is wrong, and the names through their digests too).
    pub fn check(&self, user: &[u8], password: &[u8]) -> bool {
        let user_ok = sha256(user).ct_eq(&sha256(self.user.as_bytes()));
        let password_ok = sha256(password).ct_eq(&self.digest);
        (user_ok & password_ok).into()
    }
}

/// Whether a client that has not authenticated may run `cmd` (upper case): Redis' no-auth
/// commands.
pub fn allowed_before_auth(cmd: &str) -> bool {
    matches!(cmd, "AUTH" | "HELLO" | "QUIT")
}

/// Checks `user`/`password` for the client of `session` and marks it authenticated as `user` if
/// they are right; the error to send otherwise. Without credentials configured, only the default
/// user exists and takes any password, as a Redis default user with `nopass`.
pub fn authenticate(
    session: &mut Session,
    credentials: Option<&Credentials>,
    user: &[u8],
    password: &[u8],
) -> Result<(), Reply> {
    let ok = match credentials {
        Some(c) => c.check(user, password),
        None => user == DEFAULT_USER.as_bytes(),
    };
    if !ok {
        return Err(Reply::Error(WRONGPASS.into()));
    }
    session.authenticated = true;
    session.info.user = text(user);
    Ok(())
}

/// `AUTH password` (as the default user) or `AUTH user password`, answered as Redis does.
pub fn answer(args: &[Vec<u8>], session: &mut Session, credentials: Option<&Credentials>) -> Reply {
    let (user, password) = match args {
        [_] => {
            return Reply::Error("ERR wrong number of arguments for 'auth' command".into());
        }
        [_, password] => {
            if credentials.is_none() {
                return Reply::Error(NO_PASSWORD.into());
            }
            (DEFAULT_USER.as_bytes(), password)
        }
        [_, user, password] => (user.as_slice(), password),
        _ => return Reply::Error("ERR syntax error".into()),
    };
    match authenticate(session, credentials, user, password) {
        Ok(()) => Reply::Simple("OK".into()),
        Err(e) => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sentinel::clients::ClientInfo;

    fn session(authenticated: bool) -> Session {
        let mut s = Session::new(ClientInfo::new(1, String::new(), String::new(), 3));
        s.authenticated = authenticated;
        s
    }

    fn auth(s: &mut Session, c: Option<&Credentials>, words: &[&str]) -> Reply {
        let args: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
        answer(&args, s, c)
    }

    #[test]
    fn the_right_pair_authenticates_and_anything_else_is_wrongpass() {
        let c = Credentials::new("app", b"s3cret");
        let ok = Reply::Simple("OK".into());
        let wrong = Reply::Error(WRONGPASS.into());
        for words in [
            &["AUTH", "s3cret"][..],
            &["AUTH", "app", "nope"],
            &["AUTH", "default", "s3cret"],
            &["AUTH", "app", "s3cret "],
            &["AUTH", "app", ""],
        ] {
            let mut s = session(false);
            assert_eq!(auth(&mut s, Some(&c), words), wrong, "{words:?}");
            assert!(!s.authenticated, "{words:?}");
        }
        let mut s = session(false);
        assert_eq!(auth(&mut s, Some(&c), &["AUTH", "app", "s3cret"]), ok);
        assert!(s.authenticated);
        assert_eq!(s.info.user, "app");
        let d = Credentials::new(DEFAULT_USER, b"pw");
        let mut s = session(false);
        assert_eq!(auth(&mut s, Some(&d), &["AUTH", "pw"]), ok);
        assert_eq!(s.info.user, "default");
        assert_eq!(
            auth(&mut s, Some(&d), &["AUTH", "a", "b", "c"]),
            Reply::Error("ERR syntax error".into())
        );
        assert!(format!("{d:?}").contains("redacted") && !format!("{d:?}").contains("pw"));
    }

    #[test]
    fn without_a_password_auth_answers_as_redis_with_a_nopass_default_user() {
        let mut s = session(true);
        let Reply::Error(e) = auth(&mut s, None, &["AUTH", "x"]) else {
            panic!("AUTH without a password configured is an error")
        };
        assert!(
            e.starts_with("ERR AUTH <password> called without any password configured"),
            "{e}"
        );
        assert_eq!(
            auth(&mut s, None, &["AUTH", "someone", "x"]),
            Reply::Error(WRONGPASS.into())
        );
        assert_eq!(
            auth(&mut s, None, &["AUTH", "default", "anything"]),
            Reply::Simple("OK".into())
        );
        assert!(
            matches!(auth(&mut s, None, &["AUTH"]), Reply::Error(e) if e.contains("wrong number"))
        );
    }

    #[test]
    fn only_auth_hello_and_quit_run_before_authentication() {
        for cmd in ["AUTH", "HELLO", "QUIT"] {
            assert!(allowed_before_auth(cmd));
        }
        for cmd in ["PING", "SENTINEL", "CLIENT", "INFO", "SUBSCRIBE", "ROLE"] {
            assert!(!allowed_before_auth(cmd));
        }
    }
}
