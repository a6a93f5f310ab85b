//! The protocol's bounds: how long each string a peer may send is, how many nodes one data store
//! may have, and how large a message each side decodes. Everything the network can make a daemon
//! hold is bounded by these, in this one place; the controller refuses a Hello past any of them,
//! and the agent checks its own settings against them so that a real agent is never refused.
//!
//! The decoder limits follow from the rest: the largest message an agent sends (a Hello with
//! every field at its bound, or an ack with the longest error) is far below
//! [`MAX_AGENT_MESSAGE_BYTES`], and the largest desired state (a data store of
//! [`MAX_NODES_PER_DATASTORE`] nodes, every id and address at its bound) is far below
//! [`MAX_CONTROLLER_MESSAGE_BYTES`] (a test of the controller builds it and checks).
use crate::host_port::MAX_HOST_LEN;

/// Longest data store name (letters, digits, `-`, `_`, `.`): it names a state file and etcd keys.
pub const MAX_DATASTORE_NAME_LEN: usize = 64;
/// Longest node id an agent may claim.
pub const MAX_NODE_ID_LEN: usize = 128;
/// Longest `HOST:PORT`: the longest host in brackets, a colon and five digits.
pub const MAX_ADDRESS_LEN: usize = MAX_HOST_LEN + 2 + 1 + 5;
/// Longest zone name an agent may claim.
pub const MAX_ZONE_LEN: usize = 128;
/// Longest version string (an agent's in its Hello, a controller's in its Welcome).
pub const MAX_VERSION_LEN: usize = 64;
/// Longest error an agent's command ack carries; a longer one is cut (on a character boundary)
/// by the agent before it is sent, and by the controller if it still arrives longer.
pub const MAX_ACK_ERROR_LEN: usize = 1024;
/// Most nodes one data store may have. A hello naming one more is refused, so a flood of forged
/// node ids cannot grow a data store's topology (nor the desired state every agent is sent)
/// without bound. It is also the width of a verdict's peer bitmasks: every peer has its bit.
pub const MAX_NODES_PER_DATASTORE: usize = 64;

/// Largest gRPC message the controller decodes (from agents and the CLI): a Hello with every
/// field at its bound is under 1 KiB, an ack under 1.2 KiB, a verdict under 100 bytes. A larger
/// message is refused at its length prefix, before its body is held.
pub const MAX_AGENT_MESSAGE_BYTES: usize = 16 * 1024;
/// Largest gRPC message an agent decodes from a controller: the largest desired state (about
/// 26 KiB) with a wide margin. It must stay well above that: a desired state an agent cannot
/// decode drops every agent of the data store.
pub const MAX_CONTROLLER_MESSAGE_BYTES: usize = 1024 * 1024;

/// What is wrong with a name or address of at most `max` bytes, if anything. Control
/// characters are refused too: every name is logged, and labels metrics.
pub fn field_problem(value: &str, max: usize) -> Option<String> {
    if value.len() > max {
        Some(format!("is longer than {max} bytes"))
    } else if value.chars().any(char::is_control) {
        Some("has control characters".into())
    } else {
        None
    }
}

/// Data store names become file names, so they are kept to a safe alphabet.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_DATASTORE_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.')
}

/// The largest character boundary of `s` at or below `at`.
pub fn floor_char_boundary(s: &str, at: usize) -> usize {
    let mut end = at.min(s.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// `s` cut to at most `max` bytes, on a character boundary.
pub fn truncate(s: &mut String, max: usize) {
    s.truncate(floor_char_boundary(s, max));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_whole_characters_within_the_bound() {
        let mut s = "ééé".to_string(); // 6 bytes
        truncate(&mut s, 3);
        assert_eq!(s, "é");
        let mut short = "ab".to_string();
        truncate(&mut short, 3);
        assert_eq!(short, "ab");
    }

    #[test]
    fn the_longest_address_fits_its_bound() {
        let longest = format!("[{}]:65535", "a".repeat(MAX_HOST_LEN));
        assert_eq!(longest.len(), MAX_ADDRESS_LEN);
    }
}
