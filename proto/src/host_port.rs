//! `HOST:PORT`, the one way vigil writes an address: a server, an address a node advertises, a
//! peer, a primary to replicate from. Parsed here and nowhere else.
use std::{fmt, str::FromStr};

use crate::error::ProtoError;

/// Longest host accepted: a full DNS name (RFC 1035).
pub const MAX_HOST_LEN: usize = 253;

/// A host (name, IPv4, or IPv6 written in brackets) and a port from 1 to 65535.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostPort {
    /// The host without brackets (`::1`, not `[::1]`).
    pub host: String,
    pub port: u16,
}

impl HostPort {
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }
}

impl FromStr for HostPort {
    type Err = ProtoError;

    fn from_str(s: &str) -> Result<Self, ProtoError> {
        let bad = |reason| ProtoError::Address {
            address: s.to_string(),
            reason,
        };
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let host = match host.strip_prefix('[') {
            Some(inner) => inner
                .strip_suffix(']')
                .ok_or_else(|| bad("an opening [ has no closing ]"))?,
            None if host.contains(':') => return Err(bad("write an IPv6 host in brackets")),
            None => host,
        };
        if host.is_empty() {
            return Err(bad("the host is empty"));
        }
        if host.len() > MAX_HOST_LEN {
            return Err(bad("the host is longer than 253 characters"));
        }
        if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("the host has white space or control characters"));
        }
        let port = port
            .parse::<u16>()
            .ok()
            .filter(|&p| p > 0)
            .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?;
        Ok(Self::new(host, port))
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports_parse_and_print_back() {
        for (text, host, port) in [
            ("127.0.0.1:6379", "127.0.0.1", 6379),
            ("cache-0.cache.svc:7000", "cache-0.cache.svc", 7000),
            ("[::1]:6380", "::1", 6380),
            ("h:1", "h", 1),
            ("h:65535", "h", 65535),
        ] {
            let hp: HostPort = text.parse().unwrap();
            assert_eq!((hp.host.as_str(), hp.port), (host, port), "{text}");
            assert_eq!(hp.to_string(), text);
        }
    }

    #[test]
    fn everything_else_is_an_error_that_names_the_address() {
        let long = format!("{}:1", "h".repeat(MAX_HOST_LEN + 1));
        for text in [
            "",
            "nohost",
            ":6379",
            "h:",
            "h:0",
            "h:65536",
            "h:-1",
            "h:abc",
            "::1:6379",
            "[::1:6379",
            "[]:6379",
            "a b:1",
            long.as_str(),
        ] {
            let e = text.parse::<HostPort>().unwrap_err();
            assert!(
                matches!(&e, ProtoError::Address { address, .. } if address == text),
                "{text}: {e}"
            );
        }
    }
}
