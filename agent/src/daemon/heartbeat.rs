//! When the next unchanged verdict is due: the agent's own heartbeat after the last verdict it
//! sent, or the slower pace the controller gave it while that verdict is quiet (see
//! [`vigil_proto::heartbeat`]).
use std::{pin::Pin, time::Duration};

use tokio::time::{Instant, Sleep};
use vigil_proto::heartbeat::period;

pub struct Heartbeat {
    own: Duration,
    /// The slow pace from the latest desired state; 0: none.
    quiet_ms: u32,
    /// The last verdict sent was quiet, and when it was sent.
    quiet: bool,
    sent_at: Instant,
    /// Fires when the next verdict is due.
    pub due: Pin<Box<Sleep>>,
}

impl Heartbeat {
    pub fn new(own: Duration) -> Self {
        Self {
            own,
            quiet_ms: 0,
            quiet: false,
            sent_at: Instant::now(),
            due: Box::pin(tokio::time::sleep(own)),
        }
    }

    /// A verdict went out now; `quiet` says whether it had nothing to report.
    pub fn sent(&mut self, quiet: bool) {
        self.quiet = quiet;
        self.sent_at = Instant::now();
        self.reset();
    }

    /// The controller's slow pace for quiet verdicts, from its desired state.
    pub fn pace(&mut self, quiet_ms: u32) {
        if quiet_ms != self.quiet_ms {
            self.quiet_ms = quiet_ms;
            self.reset();
        }
    }

    /// The time between unchanged verdicts now.
    fn period(&self) -> Duration {
        period(self.own, self.quiet_ms, self.quiet)
    }

    fn reset(&mut self) {
        let at = self.sent_at + self.period();
        self.due.as_mut().reset(at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWN: Duration = Duration::from_millis(100);

    #[tokio::test(start_paused = true)]
    async fn a_quiet_verdict_is_due_again_at_the_slow_pace_and_any_other_at_the_agents_own() {
        let mut h = Heartbeat::new(OWN);
        h.pace(1_000);
        h.sent(true);
        assert_eq!(h.due.deadline() - h.sent_at, Duration::from_millis(1_000));
        h.sent(false);
        assert_eq!(h.due.deadline() - h.sent_at, OWN);
    }

    #[tokio::test(start_paused = true)]
    async fn a_pace_taken_back_makes_the_next_beat_due_at_the_own_heartbeat() {
        let mut h = Heartbeat::new(OWN);
        h.pace(1_000);
        h.sent(true);
        h.pace(0);
        assert_eq!(h.due.deadline() - h.sent_at, OWN);
    }
}
