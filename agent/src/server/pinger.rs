//! The local failure detector: RESP PINGs to the local server on a dedicated connection, every
//! outcome reported through a channel. It only measures; the verdict engine decides.
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::{
    sync::mpsc,
    time::{Instant, MissedTickBehavior, timeout},
};

use super::conn::ServerConn;

/// What one PING found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PingOutcome {
    Pong(Duration),
    /// No answer within the interval (the request may still be queued at the server).
    Timeout,
    /// Nothing listens at the address.
    Refused,
    /// The server refused our credentials.
    AuthFailed(String),
    Error(String),
}

/// What a failed connect or request says about the server.
pub(crate) fn classify_error(e: &redis::RedisError) -> PingOutcome {
    if e.kind() == redis::ErrorKind::AuthenticationFailed
        || e.code()
            .is_some_and(|c| c == "WRONGPASS" || c == "NOAUTH" || c == "NOPERM")
    {
        return PingOutcome::AuthFailed(e.to_string());
    }
    if e.is_connection_refusal() {
        return PingOutcome::Refused;
    }
    if e.is_timeout() {
        return PingOutcome::Timeout;
    }
    PingOutcome::Error(e.to_string())
}

/// One PING on `conn`, bounded by `limit`.
pub(crate) async fn ping(conn: &mut MultiplexedConnection, limit: Duration) -> PingOutcome {
    let started = Instant::now();
    match timeout(limit, redis::cmd("PING").query_async::<String>(conn)).await {
        Err(_) => PingOutcome::Timeout,
        Ok(Ok(_)) => PingOutcome::Pong(started.elapsed()),
        Ok(Err(e)) => classify_error(&e),
    }
}

/// Pings the local server every `interval` (each PING may take up to `interval`) and reports
/// every outcome. Reconnects after a broken connection, never faster than `interval`.
pub async fn local_pinger(server: ServerConn, interval: Duration, tx: mpsc::Sender<PingOutcome>) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut conn: Option<MultiplexedConnection> = None;
    loop {
        ticker.tick().await;
        let outcome = match conn.as_mut() {
            Some(c) => ping(c, interval).await,
            None => match server.connect(interval).await {
                Ok(mut c) => {
                    let outcome = ping(&mut c, interval).await;
                    conn = Some(c);
                    outcome
                }
                Err(outcome) => outcome,
            },
        };
        // A timed-out PING leaves the connection usable (the reply is dropped when it comes);
        // any other failure means a new connection next round.
        if !matches!(outcome, PingOutcome::Pong(_) | PingOutcome::Timeout) {
            conn = None;
        }
        if tx.send(outcome).await.is_err() {
            return; // the monitor is gone
        }
    }
}
