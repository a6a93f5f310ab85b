//! Telling a service manager how a daemon is doing, systemd's `Type=notify` protocol
//! (sd_notify(3)), through the `sd-notify` crate: `READY=1` once the daemon serves, `WATCHDOG=1`
//! from its main loop, `STATUS=` lines an operator reads in `systemctl status`, `STOPPING=1` on
//! the way out, and `EXTEND_TIMEOUT_USEC=` while a start waits on something outside the daemon.
//!
//! Nothing is sent unless the service manager set `NOTIFY_SOCKET`; the watchdog is on only when
//! it also set `WATCHDOG_USEC` (and `WATCHDOG_PID`, if set, names this process).
use std::{sync::atomic::AtomicBool, time::Duration};

use sd_notify::NotifyState;
use tokio::time::{Interval, MissedTickBehavior};

/// The daemon's side of the notification socket.
#[derive(Debug)]
pub struct Notifier {
    /// `NOTIFY_SOCKET` was set: a service manager listens.
    enabled: bool,
    /// The service manager's watchdog timeout, when it set one.
    watchdog: Option<Duration>,
    /// A failed send was warned about already: later ones are said at debug level, so a gone
    /// service manager does not flood the log every watchdog period.
    warned: AtomicBool,
}

impl Notifier {
    /// What the service manager asked for, from the environment it started the daemon with.
    pub fn from_env() -> Self {
        Self {
            enabled: std::env::var_os("NOTIFY_SOCKET").is_some(),
            watchdog: sd_notify::watchdog_enabled().filter(|d| !d.is_zero()),
            warned: AtomicBool::new(false),
        }
    }

    /// A notifier that sends nothing (tests, and tools that are no daemons).
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            watchdog: None,
            warned: AtomicBool::new(false),
        }
    }

    /// How often the main loop must send `WATCHDOG=1`: half the service manager's timeout, as
    /// sd_watchdog_enabled(3) advises, so one late ping is not yet a missed one. None when the
    /// watchdog is off.
    pub fn watchdog_period(&self) -> Option<Duration> {
        self.watchdog
            .filter(|_| self.enabled)
            .map(|timeout| (timeout / 2).max(Duration::from_millis(1)))
    }

    /// A timer that fires every [`Notifier::watchdog_period`], or never when the watchdog is
    /// off: the arm of the main loop's `select!` that sends `WATCHDOG=1`.
    pub fn watchdog_timer(&self) -> WatchdogTimer {
        WatchdogTimer(self.watchdog_period().map(|period| {
            let mut i = tokio::time::interval(period);
            // A loop that was held up pings once when it comes back, not a burst.
            i.set_missed_tick_behavior(MissedTickBehavior::Delay);
            i
        }))
    }

    /// `READY=1`: the daemon serves. `status` says how it is, in a few words.
    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// `STATUS=`: how the daemon is doing, shown by `systemctl status`.
    pub fn status(&self, status: &str) {
        self.send(&[NotifyState::Status(status)]);
    }

    /// `WATCHDOG=1`: the main loop turns.
    pub fn watchdog(&self) {
        if self.watchdog.is_some() {
            self.send(&[NotifyState::Watchdog]);
        }
    }

    /// `EXTEND_TIMEOUT_USEC=`: a start that waits on something outside the daemon (its server
    /// not listening yet) asks for `by` more before the service manager gives up on it.
    pub fn extend_start(&self, by: Duration, status: &str) {
        let usec = u32::try_from(by.as_micros()).unwrap_or(u32::MAX);
        self.send(&[
            NotifyState::ExtendTimeoutUsec(usec),
            NotifyState::Status(status),
        ]);
    }

    /// `STOPPING=1`: the daemon is on its way out.
    pub fn stopping(&self, status: &str) {
        self.send(&[NotifyState::Stopping, NotifyState::Status(status)]);
    }

    fn send(&self, states: &[NotifyState]) {
        if !self.enabled {
            return;
        }
        if let Err(e) = sd_notify::notify(states) {
            let first = !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed);
            if first {
                tracing::warn!(error = %e, "could not notify the service manager (NOTIFY_SOCKET)");
            } else {
                tracing::debug!(error = %e, "could not notify the service manager (NOTIFY_SOCKET)");
            }
        }
    }
}

/// The watchdog's timer; see [`Notifier::watchdog_timer`].
#[derive(Debug)]
pub struct WatchdogTimer(Option<Interval>);

impl WatchdogTimer {
    /// Waits for the next ping; pending for ever when the watchdog is off. Cancel-safe.
    pub async fn tick(&mut self) {
        match &mut self.0 {
            Some(interval) => {
                interval.tick().await;
            }
            None => std::future::pending().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_is_pinged_at_half_its_timeout_and_only_with_a_socket() {
        let n = Notifier {
            enabled: true,
            watchdog: Some(Duration::from_secs(10)),
            warned: AtomicBool::new(false),
        };
        assert_eq!(n.watchdog_period(), Some(Duration::from_secs(5)));
        let no_socket = Notifier {
            enabled: false,
            ..n
        };
        assert_eq!(no_socket.watchdog_period(), None);
        assert_eq!(Notifier::disabled().watchdog_period(), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_watchdog_timer_without_a_watchdog_never_fires() {
        let mut off = Notifier::disabled().watchdog_timer();
        let fired = tokio::time::timeout(Duration::from_secs(3600), off.tick()).await;
        assert!(fired.is_err());
    }
}
