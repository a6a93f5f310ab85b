//! RESP for the Sentinel-compatible endpoint: a bounded request parser (arrays of bulk strings,
//! and inline commands) and a reply encoder for RESP2 and, after `HELLO 3`, RESP3 (which clients
//! such as redis-py 8 ask for by default).
//!
//! The parser never panics and never grows without bound: garbage and oversized frames are
//! errors (the connection is closed), and a half-sent frame is "need more bytes".
use crate::error::ControllerError;

/// A command's argument as text (bytes that are not UTF-8 replaced), as every command reads its
/// words.
pub fn text(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

/// Bounds on one request. Sentinel commands are a few short words.
pub const MAX_ARGS: usize = 64;
pub const MAX_BULK: usize = 64 * 1024;
pub const MAX_LINE: usize = 64 * 1024;

/// How many arguments, and how long each, one request may have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_args: usize,
    pub max_bulk: usize,
    /// Whether these are the bounds before authentication (errors say so, as Redis' do).
    pub unauthenticated: bool,
}

/// An authenticated client's bounds (or any client's, without a password).
pub const AUTHENTICATED: Limits = Limits {
    max_args: MAX_ARGS,
    max_bulk: MAX_BULK,
    unauthenticated: false,
};

/// Before authentication, Redis' own bounds (networking.c): 10 arguments of 16 KiB at most, so
/// a client without the password cannot make the endpoint buffer much.
pub const UNAUTHENTICATED: Limits = Limits {
    max_args: 10,
    max_bulk: 16 * 1024,
    unauthenticated: true,
};

fn find_crlf(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|p| from + p)
}

fn parse_int(bytes: &[u8]) -> Result<i64, ControllerError> {
    std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or(ControllerError::Protocol("invalid length"))
}

/// A command's arguments and the bytes it took.
pub type Parsed = (Vec<Vec<u8>>, usize);

/// One complete command from the front of `buf` and the bytes it used; Ok(None) when `buf` holds
/// only part of one.
pub fn parse_command(buf: &[u8]) -> Result<Option<Parsed>, ControllerError> {
    parse_command_within(buf, &AUTHENTICATED)
}

/// [`parse_command`] within `limits`.
pub fn parse_command_within(
    buf: &[u8],
    limits: &Limits,
) -> Result<Option<Parsed>, ControllerError> {
    let too_large = |what: &'static str| {
        if limits.unauthenticated {
            ControllerError::Unauthenticated(what)
        } else {
            ControllerError::TooLarge(what)
        }
    };
    if buf.is_empty() {
        return Ok(None);
    }
    let Some(end) = find_crlf(buf, 0) else {
        return if buf.len() > MAX_LINE {
            Err(ControllerError::TooLarge("line"))
        } else {
            Ok(None)
        };
    };
    if end > MAX_LINE {
        return Err(ControllerError::TooLarge("line"));
    }
    if buf[0] != b'*' {
        // Inline command: words separated by spaces (as redis-cli and telnet send).
        let line = std::str::from_utf8(&buf[..end])
            .map_err(|_| ControllerError::Protocol("inline command is not UTF-8"))?;
        let args: Vec<Vec<u8>> = line
            .split_ascii_whitespace()
            .map(|w| w.as_bytes().to_vec())
            .collect();
        if args.len() > limits.max_args {
            return Err(too_large("inline command"));
        }
        return Ok(Some((args, end + 2)));
    }
    let count = parse_int(&buf[1..end])?;
    if count < 0 {
        return Err(ControllerError::Protocol("negative array length"));
    }
    let count = count as usize;
    if count > limits.max_args {
        return Err(too_large("array"));
    }
    let mut at = end + 2;
    let mut args = Vec::with_capacity(count);
    for _ in 0..count {
        let Some(&marker) = buf.get(at) else {
            return Ok(None);
        };
        if marker != b'$' {
            return Err(ControllerError::Protocol("expected '$'"));
        }
        let Some(end) = find_crlf(buf, at) else {
            return if buf.len() - at > 32 {
                Err(ControllerError::Protocol("bulk length line too long"))
            } else {
                Ok(None)
            };
        };
        let len = parse_int(&buf[at + 1..end])?;
        if len < 0 {
            return Err(ControllerError::Protocol("negative bulk length"));
        }
        let len = len as usize;
        if len > limits.max_bulk {
            return Err(too_large("bulk string"));
        }
        let start = end + 2;
        let Some(stop) = start.checked_add(len) else {
            return Err(ControllerError::TooLarge("bulk string"));
        };
        if buf.len() < stop + 2 {
            return Ok(None);
        }
        if &buf[stop..stop + 2] != b"\r\n" {
            return Err(ControllerError::Protocol(
                "bulk string not followed by CRLF",
            ));
        }
        args.push(buf[start..stop].to_vec());
        at = stop + 2;
    }
    Ok(Some((args, at)))
}

/// A reply, encodable in either protocol version.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Reply>),
    NilArray,
    /// Field/value pairs: a RESP3 map, or a flat array in RESP2 (as Sentinel returns its maps).
    Map(Vec<(Reply, Reply)>),
    /// An out-of-band message (pub/sub): a RESP3 push, or an array in RESP2.
    Push(Vec<Reply>),
    /// Text for people (CLIENT INFO, CLIENT LIST): a RESP3 verbatim string, or a bulk string.
    Verbatim(String),
}

impl Reply {
    pub fn bulk(s: impl AsRef<[u8]>) -> Self {
        Self::Bulk(s.as_ref().to_vec())
    }

    /// Field/value bulk strings, as Sentinel returns its maps.
    pub fn map<K: AsRef<str>, V: AsRef<str>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self::Map(
            pairs
                .into_iter()
                .map(|(k, v)| (Self::bulk(k.as_ref()), Self::bulk(v.as_ref())))
                .collect(),
        )
    }

    /// RESP2.
    pub fn encode(&self, out: &mut Vec<u8>) {
        self.encode_as(out, 2);
    }

    /// RESP2 or RESP3, by `proto`.
    pub fn encode_as(&self, out: &mut Vec<u8>, proto: u8) {
        let resp3 = proto >= 3;
        match self {
            Self::Simple(s) => out.extend_from_slice(format!("+{}\r\n", one_line(s)).as_bytes()),
            Self::Error(s) => out.extend_from_slice(format!("-{}\r\n", one_line(s)).as_bytes()),
            Self::Int(i) => out.extend_from_slice(format!(":{i}\r\n").as_bytes()),
            Self::Bulk(b) => bulk(out, b),
            Self::Verbatim(text) if resp3 => {
                out.extend_from_slice(format!("={}\r\ntxt:", text.len() + 4).as_bytes());
                out.extend_from_slice(text.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Self::Verbatim(text) => bulk(out, text.as_bytes()),
            Self::Nil if resp3 => out.extend_from_slice(b"_\r\n"),
            Self::Nil => out.extend_from_slice(b"$-1\r\n"),
            Self::NilArray if resp3 => out.extend_from_slice(b"_\r\n"),
            Self::NilArray => out.extend_from_slice(b"*-1\r\n"),
            Self::Array(items) | Self::Push(items) => {
                let marker = if resp3 && matches!(self, Self::Push(_)) {
                    '>'
                } else {
                    '*'
                };
                out.extend_from_slice(format!("{marker}{}\r\n", items.len()).as_bytes());
                for i in items {
                    i.encode_as(out, proto);
                }
            }
            Self::Map(pairs) => {
                let (marker, len) = if resp3 {
                    ('%', pairs.len())
                } else {
                    ('*', pairs.len() * 2)
                };
                out.extend_from_slice(format!("{marker}{len}\r\n").as_bytes());
                for (k, v) in pairs {
                    k.encode_as(out, proto);
                    v.encode_as(out, proto);
                }
            }
        }
    }
}

fn bulk(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(format!("${}\r\n", b.len()).as_bytes());
    out.extend_from_slice(b);
    out.extend_from_slice(b"\r\n");
}

/// A simple string or error is one line: a client's own words echoed in an error (an unknown
/// command's name, say) must not end the frame early, so CR and LF become spaces, as Redis does.
fn one_line(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['\r', '\n']) {
        s.replace(['\r', '\n'], " ").into()
    } else {
        s.into()
    }
}

/// How a client sends a command (used by tests and the fuzz properties).
pub fn encode_command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    Reply::Array(args.iter().map(Reply::bulk).collect()).encode(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn commands_parse_whole_or_not_at_all() {
        let cmd = encode_command(&[b"SENTINEL", b"get-master-addr-by-name", b"cache"]);
        let (args, used) = parse_command(&cmd).unwrap().unwrap();
        assert_eq!(used, cmd.len());
        assert_eq!(
            args,
            vec![
                b"SENTINEL".to_vec(),
                b"get-master-addr-by-name".to_vec(),
                b"cache".to_vec()
            ]
        );
        for cut in 0..cmd.len() {
            assert_eq!(parse_command(&cmd[..cut]).unwrap(), None, "cut at {cut}");
        }
        assert_eq!(
            parse_command(b"PING\r\n").unwrap(),
            Some((vec![b"PING".to_vec()], 6))
        );
    }

    #[test]
    fn garbage_and_oversize_are_errors() {
        assert!(parse_command(b"*2\r\n:1\r\n").is_err());
        assert!(parse_command(b"*-5\r\n").is_err());
        assert!(parse_command(b"*x\r\n").is_err());
        assert!(parse_command(b"*1\r\n$3\r\nabcXX").is_err());
        assert!(matches!(
            parse_command(format!("*{}\r\n", MAX_ARGS + 1).as_bytes()),
            Err(ControllerError::TooLarge("array"))
        ));
        assert!(matches!(
            parse_command(format!("*1\r\n${}\r\n", MAX_BULK + 1).as_bytes()),
            Err(ControllerError::TooLarge("bulk string"))
        ));
        assert!(matches!(
            parse_command(&vec![b'a'; MAX_LINE + 1]),
            Err(ControllerError::TooLarge("line"))
        ));
        assert!(parse_command(b"*1\r\n$99999999999999999999\r\n").is_err());
    }

    #[test]
    fn before_authentication_requests_are_bounded_as_redis_bounds_them() {
        let eleven = format!("*{}\r\n", UNAUTHENTICATED.max_args + 1);
        let e = parse_command_within(eleven.as_bytes(), &UNAUTHENTICATED).unwrap_err();
        assert_eq!(
            e.to_string(),
            "Protocol error: unauthenticated multibulk length"
        );
        let long = format!("*1\r\n${}\r\n", UNAUTHENTICATED.max_bulk + 1);
        let e = parse_command_within(long.as_bytes(), &UNAUTHENTICATED).unwrap_err();
        assert_eq!(e.to_string(), "Protocol error: unauthenticated bulk length");
        // Once authenticated, the usual bounds.
        assert_eq!(parse_command(long.as_bytes()).unwrap(), None);
        let auth = encode_command(&[b"AUTH", b"app", b"pw"]);
        assert!(
            parse_command_within(&auth, &UNAUTHENTICATED)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn maps_nulls_and_pushes_differ_by_protocol() {
        let m = Reply::map([("ip", "127.0.0.1")]);
        let (mut two, mut three) = (Vec::new(), Vec::new());
        m.encode_as(&mut two, 2);
        m.encode_as(&mut three, 3);
        assert_eq!(two, b"*2\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n");
        assert_eq!(three, b"%1\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n");
        let (mut two, mut three) = (Vec::new(), Vec::new());
        Reply::NilArray.encode_as(&mut two, 2);
        Reply::NilArray.encode_as(&mut three, 3);
        assert_eq!(
            (two.as_slice(), three.as_slice()),
            (&b"*-1\r\n"[..], &b"_\r\n"[..])
        );
        let mut push = Vec::new();
        Reply::Push(vec![Reply::bulk("message")]).encode_as(&mut push, 3);
        assert_eq!(push, b">1\r\n$7\r\nmessage\r\n");
    }

    #[test]
    fn verbatim_text_and_pushes_fall_back_to_bulk_and_array_in_resp2() {
        let text = Reply::Verbatim("id=1 name=\n".into());
        let (mut two, mut three) = (Vec::new(), Vec::new());
        text.encode_as(&mut two, 2);
        text.encode_as(&mut three, 3);
        assert_eq!(two, b"$11\r\nid=1 name=\n\r\n");
        assert_eq!(three, b"=15\r\ntxt:id=1 name=\n\r\n");
        let push = Reply::Push(vec![Reply::bulk("message"), Reply::Int(1)]);
        let (mut two, mut three) = (Vec::new(), Vec::new());
        push.encode_as(&mut two, 2);
        push.encode_as(&mut three, 3);
        assert_eq!(two, b"*2\r\n$7\r\nmessage\r\n:1\r\n");
        assert_eq!(three, b">2\r\n$7\r\nmessage\r\n:1\r\n");
        let (mut two, mut three) = (Vec::new(), Vec::new());
        Reply::Nil.encode_as(&mut two, 2);
        Reply::Nil.encode_as(&mut three, 3);
        assert_eq!(
            (two.as_slice(), three.as_slice()),
            (&b"$-1\r\n"[..], &b"_\r\n"[..])
        );
    }

    #[test]
    fn errors_and_simple_strings_stay_on_one_line() {
        let mut out = Vec::new();
        Reply::Error("ERR unknown command 'A\r\nB'".into()).encode(&mut out);
        Reply::Simple("O\nK".into()).encode(&mut out);
        assert_eq!(out, b"-ERR unknown command 'A  B'\r\n+O K\r\n");
    }

    #[test]
    fn replies_encode_as_resp2() {
        let mut out = Vec::new();
        Reply::Array(vec![Reply::bulk("127.0.0.1"), Reply::bulk("6379")]).encode(&mut out);
        Reply::NilArray.encode(&mut out);
        Reply::Error("ERR x".into()).encode(&mut out);
        assert_eq!(
            out,
            b"*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6379\r\n*-1\r\n-ERR x\r\n"
        );
    }

    proptest! {
        // Whatever arrives, the parser answers without panicking, and never claims more bytes
        // than it was given.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(Some((_, used))) = parse_command(&bytes) {
                prop_assert!(used <= bytes.len());
            }
        }

        // Well-formed commands round-trip, and every prefix of one is incomplete, not an error.
        #[test]
        fn well_formed_commands_round_trip(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8)) {
            let refs: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let wire = encode_command(&refs);
            let parsed = parse_command(&wire).unwrap().unwrap();
            prop_assert_eq!(parsed.0, args);
            prop_assert_eq!(parsed.1, wire.len());
            for cut in 0..wire.len() {
                prop_assert_eq!(parse_command(&wire[..cut]).unwrap(), None);
            }
        }

        // Garbage after a valid command does not change what the command was.
        #[test]
        fn trailing_garbage_is_left_for_later(tail in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut wire = encode_command(&[b"PING"]);
            let len = wire.len();
            wire.extend_from_slice(&tail);
            let (args, used) = parse_command(&wire).unwrap().unwrap();
            prop_assert_eq!(args, vec![b"PING".to_vec()]);
            prop_assert_eq!(used, len);
        }
    }
}
