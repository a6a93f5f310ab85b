//! What both daemons' health endpoints share: the main loop's heartbeat ([`Beat`]) that
//! `/healthz` reads, and the shape of every health answer ([`answer`]): 200 or 503 with a small
//! JSON body saying why, which a load balancer, a Kubernetes probe or an operator with curl reads
//! alike.
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use axum::http::{StatusCode, header};
use tokio::time::Instant;

/// `/healthz` fails once the main loop has not turned for this long. Both daemons' loops turn at
/// least every second when idle, so this is a loop that is stuck, not one that is slow; it is
/// long enough that a host under load does not get a healthy daemon restarted.
pub const LOOP_STALE: Duration = Duration::from_secs(5);

/// When the main loop last turned: written by the loop, read by `/healthz`.
#[derive(Debug)]
pub struct Beat {
    base: Instant,
    /// Milliseconds from `base` to the last turn.
    last_ms: AtomicU64,
}

impl Default for Beat {
    fn default() -> Self {
        Self::new()
    }
}

impl Beat {
    /// A heartbeat that has just beaten: a daemon is alive while it starts.
    pub fn new() -> Self {
        Self {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    /// The loop turned now.
    pub fn beat(&self) {
        let ms = Instant::now()
            .saturating_duration_since(self.base)
            .as_millis() as u64;
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long ago the loop last turned.
    pub fn age(&self) -> Duration {
        let last = self.base + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        Instant::now().saturating_duration_since(last)
    }

    /// The loop turned within [`LOOP_STALE`].
    pub fn alive(&self) -> bool {
        self.age() < LOOP_STALE
    }
}

/// A health endpoint's answer.
pub type Answer = (StatusCode, [(header::HeaderName, &'static str); 1], String);

/// 200 with `body` (JSON) when `ok`, else 503 with it.
pub fn answer(ok: bool, body: String) -> Answer {
    let code = if ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body + "\n",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_loop_that_stops_beating_is_no_longer_alive() {
        let beat = Beat::new();
        assert!(beat.alive(), "alive while it starts");
        tokio::time::advance(LOOP_STALE - Duration::from_millis(1)).await;
        assert!(beat.alive());
        tokio::time::advance(Duration::from_millis(2)).await;
        assert!(!beat.alive(), "no turn for longer than LOOP_STALE");
        beat.beat();
        assert!(beat.alive());
        assert_eq!(beat.age(), Duration::ZERO);
    }

    #[test]
    fn an_answer_is_200_or_503_with_its_body() {
        let (code, _, body) = answer(true, "{}".into());
        assert_eq!((code, body.as_str()), (StatusCode::OK, "{}\n"));
        let (code, _, _) = answer(false, "{}".into());
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    }
}
