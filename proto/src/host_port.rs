//! `HOST:PORT`, the one way vigil writes an address: a server, an address a node advertises, a
//! peer, a primary to replicate from. Parsed here and nowhere else.
use std::{fmt, str::FromStr};

use crate::{
    error::ProtoError,
    limits::{MAX_ADDRESS_LEN, floor_char_boundary},
};

/// Longest host accepted: a full DNS name (RFC 1035).
pub const MAX_HOST_LEN: usize = 253;

/// How much of a long address its error shows.
const SHOWN_OF_LONG: usize = 64;

/// An address as its error shows it: whole if short, else its start only, since an address sent
/// over the network may be long, and the error is logged and sent back.
fn shown(s: &str) -> String {
    if s.len() <= SHOWN_OF_LONG {
        return s.to_string();
    }
    let mut start = s[..floor_char_boundary(s, SHOWN_OF_LONG)].to_string();
    start.push('…');
    start
}

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
        if s.len() > MAX_ADDRESS_LEN {
            return Err(ProtoError::Address {
                address: shown(s),
                reason: "longer than any HOST:PORT (261 characters)",
            });
        }
        let bad = |reason| ProtoError::Address {
            address: shown(s),
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
        if host.contains(['[', ']']) {
            return Err(bad("the host has a bracket inside"));
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
            "[[::1]:1",
            "a]:1",
            long.as_str(),
        ] {
            let e = text.parse::<HostPort>().unwrap_err();
            assert!(
                matches!(&e, ProtoError::Address { address, .. } if *address == shown(text)),
                "{text}: {e}"
            );
        }
    }

    #[test]
    fn an_address_of_megabytes_is_refused_with_its_start_only() {
        let huge = format!("{}:6379", "h".repeat(3 << 20));
        let e = huge.parse::<HostPort>().unwrap_err();
        assert!(e.to_string().len() < 200, "{e}");
        let port_of_zeros = format!("h:{}1", "0".repeat(3 << 20));
        assert!(port_of_zeros.parse::<HostPort>().is_err());
    }
}

#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any text parses or is refused, never panics; what parses is within the bounds and
        /// prints back to itself.
        #[test]
        fn fuzz_host_port_any_text(text in prop_oneof![
            any::<String>(),
            "[\\[\\]a-z0-9:. -]{0,24}",
            "[a-z]{0,300}:[0-9]{0,8}",
        ]) {
            if let Ok(hp) = text.parse::<HostPort>() {
                prop_assert!(!hp.host.is_empty() && hp.host.len() <= MAX_HOST_LEN);
                prop_assert!(hp.port > 0);
                prop_assert!(hp.to_string().len() <= MAX_ADDRESS_LEN);
                prop_assert_eq!(hp.to_string().parse::<HostPort>(), Ok(hp));
            }
        }

        /// Every well-formed address parses to its host and port.
        #[test]
        fn fuzz_host_port_valid_round_trips(
            host in "[a-z0-9][a-z0-9.-]{0,252}",
            v6 in "[0-9a-f]{1,4}(:[0-9a-f]{0,4}){1,7}",
            port in 1u16..,
            bracketed in any::<bool>(),
        ) {
            let host = if bracketed { v6 } else { host };
            let hp = HostPort::new(host, port);
            prop_assert_eq!(hp.to_string().parse::<HostPort>(), Ok(hp));
        }
    }
}
