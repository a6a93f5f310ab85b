//! The local failure detector: RESP PINGs to the local server on a dedicated connection, every
//! outcome reported through a channel. It only measures; the verdict engine decides.
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use tokio::{sync::mpsc, time::MissedTickBehavior};

use super::{
    conn::{ServerConn, ping},
    ping_outcome::PingOutcome,
};

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
