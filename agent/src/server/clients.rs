//! The server's clients: which replicas are attached (CLIENT LIST TYPE replica, read just before
//! a fence that keeps them), and disconnecting the clients of a server that stops being the
//! primary, so that clients in Sentinel mode look the primary up again at once instead of
//! getting READONLY from a replica for as long as they stay connected.
use std::{
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use redis::aio::MultiplexedConnection;
use tokio::time::timeout;

use crate::error::{AgentError, Result};

/// The address in one CLIENT LIST line's `addr=` field: `127.0.0.1:50412`, or an IPv6 one, which
/// Redis writes bracketed (`[::1]:50412`) and older servers bare (`::1:50412`).
pub fn client_address(line: &str) -> Option<SocketAddr> {
    let addr = line
        .split_whitespace()
        .find_map(|field| field.strip_prefix("addr="))?;
    if let Ok(a) = addr.parse() {
        return Some(a);
    }
    // Bare IPv6: the port follows the last colon.
    let (ip, port) = addr.rsplit_once(':')?;
    Some(SocketAddr::new(
        ip.parse::<IpAddr>().ok()?,
        port.parse().ok()?,
    ))
}

/// Every client address in a CLIENT LIST reply.
pub fn client_addresses(list: &str) -> Vec<SocketAddr> {
    list.lines().filter_map(client_address).collect()
}

/// The addresses of the replicas attached to this server, asked within `limit`.
pub async fn replicas(
    conn: &mut MultiplexedConnection,
    limit: Duration,
) -> Result<Vec<SocketAddr>> {
    let list: String = timeout(
        limit,
        redis::cmd("CLIENT")
            .arg("LIST")
            .arg("TYPE")
            .arg("replica")
            .query_async(conn),
    )
    .await
    .map_err(|_| AgentError::NoAnswer(limit))??;
    Ok(client_addresses(&list))
}

/// The commands that disconnect a demoted server's clients: its normal clients but the one
/// asking, and its pub/sub clients (Sentinel-mode clients watch for `+switch-master` elsewhere,
/// but a subscriber left on a replica never hears of the change).
pub fn disconnect_commands() -> [redis::Cmd; 2] {
    let mut normal = redis::cmd("CLIENT");
    normal
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes");
    let mut pubsub = redis::cmd("CLIENT");
    pubsub.arg("KILL").arg("TYPE").arg("pubsub");
    [normal, pubsub]
}

/// What [`disconnect`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Disconnected {
    /// Clients the server said it disconnected.
    pub killed: usize,
    /// The server refused a filter (Dragonfly's CLIENT KILL knows ADDR, LADDR and ID, not TYPE):
    /// its clients are still connected, and the caller disconnects them another way.
    pub refused: bool,
}

/// Disconnects the server's clients (see [`disconnect_commands`]), each command bounded by
/// `limit`. A server that does not know a filter is reported as such, not failed: the demotion
/// it follows has happened.
pub async fn disconnect(conn: &mut MultiplexedConnection, limit: Duration) -> Disconnected {
    let mut done = Disconnected::default();
    for cmd in disconnect_commands() {
        match timeout(limit, cmd.query_async::<i64>(conn)).await {
            Ok(Ok(n)) => done.killed += usize::try_from(n).unwrap_or(0),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "the server refused CLIENT KILL TYPE");
                done.refused = true;
            }
            Err(_) => tracing::warn!(
                ?limit,
                "the server did not answer CLIENT KILL; its clients stay until they reconnect"
            ),
        }
    }
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_addresses_come_from_the_addr_field() {
        let list = "\
id=5 addr=127.0.0.1:50412 laddr=127.0.0.1:6379 fd=9 name= age=3 flags=S db=0 cmd=replconf
id=6 addr=[::1]:50414 laddr=[::1]:6379 fd=10 name= age=3 flags=S db=0 cmd=replconf
id=7 addr=::1:50416 fd=11 name= age=1 flags=S
id=8 addr=nonsense fd=12
";
        assert_eq!(
            client_addresses(list),
            vec![
                "127.0.0.1:50412".parse::<SocketAddr>().unwrap(),
                "[::1]:50414".parse().unwrap(),
                "[::1]:50416".parse().unwrap(),
            ]
        );
        // laddr= is the server's own side, never the client's.
        assert_eq!(client_address("id=1 laddr=127.0.0.1:6379 fd=3"), None);
        assert!(client_addresses("").is_empty());
    }

    #[test]
    fn a_demotion_disconnects_normal_and_pubsub_clients_but_not_the_agent() {
        let words: Vec<Vec<String>> = disconnect_commands()
            .iter()
            .map(|cmd| {
                cmd.args_iter()
                    .map(|arg| match arg {
                        redis::Arg::Simple(b) => String::from_utf8_lossy(b).into_owned(),
                        other => panic!("not a plain argument: {other:?}"),
                    })
                    .collect()
            })
            .collect();
        assert_eq!(
            words,
            vec![
                vec!["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"],
                vec!["CLIENT", "KILL", "TYPE", "pubsub"],
            ]
        );
    }
}
