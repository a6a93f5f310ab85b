//! A one-shot timer at an exact CLOCK_MONOTONIC instant, for the moments a threshold is crossed
//! (a stop turning 100 ms old, the oldest unread request turning 100 ms old). tokio's timers
//! round to whole milliseconds; a timerfd fires within microseconds.
use nix::sys::{
    time::TimeSpec,
    timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags},
};
use std::os::fd::{AsFd, AsRawFd, RawFd};

use tokio::io::{Interest, unix::AsyncFd};

use crate::error::{AgentError, Result};

/// tokio's AsyncFd wants AsRawFd, which nix's TimerFd does not implement.
struct Timer(TimerFd);

impl AsRawFd for Timer {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

pub struct Deadline {
    fd: AsyncFd<Timer>,
    armed: Option<u64>,
}

impl Deadline {
    /// Must run inside a tokio runtime.
    pub fn new() -> Result<Self> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )
        .map_err(|e| AgentError::io("creating a timerfd", e.into()))?;
        // SAFETY: the timerfd is owned by `timer`, which the AsyncFd owns until it is dropped.
        let fd = unsafe { AsyncFd::register_with_interest(Timer(timer), Interest::READABLE) }
            .map_err(|e| AgentError::io("registering the timerfd with tokio", e.into()))?;
        Ok(Self { fd, armed: None })
    }

    /// Fires once at `at_ns` (CLOCK_MONOTONIC), replacing any earlier arming; None disarms.
    pub fn arm(&mut self, at_ns: Option<u64>) {
        if at_ns == self.armed {
            return;
        }
        self.armed = at_ns;
        let timer = &self.fd.get_ref().0;
        let result = match at_ns {
            Some(ns) => {
                let at = TimeSpec::new((ns / 1_000_000_000) as i64, (ns % 1_000_000_000) as i64);
                timer.set(
                    Expiration::OneShot(at),
                    TimerSetTimeFlags::TFD_TIMER_ABSTIME,
                )
            }
            None => timer.unset(),
        };
        if let Err(e) = result {
            // The 1 ms tick still catches the crossing; only precision is lost.
            tracing::warn!(error = %e, "could not arm the deadline timer");
        }
    }

    /// Waits until the armed instant. Cancel-safe; pending forever while disarmed.
    pub async fn wait(&mut self) {
        if self.armed.is_none() {
            return std::future::pending().await;
        }
        loop {
            let Ok(mut guard) = self.fd.readable().await else {
                return std::future::pending().await;
            };
            let fired = guard.try_io(|fd| {
                let mut expirations = [0u8; 8];
                nix::unistd::read(&fd.get_ref().0, &mut expirations).map_err(std::io::Error::from)
            });
            if let Ok(Ok(_)) = fired {
                self.armed = None;
                return;
            }
        }
    }
}
