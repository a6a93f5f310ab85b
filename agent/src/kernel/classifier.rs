//! Names a stall by what the kernel programs record.
//!
//! [`Classifier`] looks at the clock: when the oldest unread request on the server port has
//! waited past the threshold, it names the stall by what the thread that should read it is
//! doing: stopped, blocked in a futex (deadlock suspected), runnable (starved), on CPU (busy), or
//! asleep in another syscall or disk wait (blocked). Pure, so it is unit-tested alone.
use vigil_agent_ebpf::{ThreadState, thread_state};

use super::event::KernelEvent;

/// The oldest unread request on the server port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Unread {
    /// When its bytes arrived (CLOCK_MONOTONIC ns).
    pub first_ns: u64,
    /// The thread expected to read it.
    pub owner_tid: u32,
    /// The port of the client that sent it (0: not known).
    pub peer_port: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StallClass {
    Stopped,
    DeadlockSuspected,
    Starved,
    Busy,
    Blocked,
}

impl StallClass {
    /// The event a stall of this class is reported as.
    pub fn event(self) -> KernelEvent {
        match self {
            Self::Stopped => KernelEvent::Stopped,
            Self::DeadlockSuspected => KernelEvent::DeadlockSuspected,
            Self::Starved => KernelEvent::Starved,
            Self::Busy => KernelEvent::Busy,
            Self::Blocked => KernelEvent::Blocked,
        }
    }
}

/// A stall as the classifier sees it at one tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stall {
    pub class: StallClass,
    /// Age of the oldest unread request.
    pub age_ns: u64,
    /// The thread expected to read it.
    pub owner_tid: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Requests went unread past the threshold.
    Began(Stall),
    /// The owner's activity changed while requests stay unread.
    Changed(Stall),
    /// The server read the requests again; `age_ns` is the oldest age last seen.
    Cleared { age_ns: u64, owner_tid: u32 },
}

/// Time in `state` up to `now`, counting the ongoing stretch.
fn total_in(t: &ThreadState, state: u32, total: u64, now: u64) -> u64 {
    if t.state == state {
        total + now.saturating_sub(t.since_ns)
    } else {
        total
    }
}

/// Names a stall by the owner thread's state now and, while it is on or waiting for a CPU, by
/// where its time went since `base` (taken at `base_ns`): mostly waiting = starved. `in_futex`
/// says the owner, asleep, is inside a futex wait (the caller asks procfs).
pub fn classify(
    now: u64,
    base: Option<(&ThreadState, u64)>,
    owner: Option<&ThreadState>,
    in_futex: bool,
) -> StallClass {
    // An owner the kernel never saw run is not reading: as good as blocked.
    let Some(cur) = owner else {
        return StallClass::Blocked;
    };
    match cur.state {
        thread_state::STOPPED => StallClass::Stopped,
        thread_state::RUNNING | thread_state::RUNNABLE => {
            let (cpu0, runq0) = base.map_or((0, 0), |(b, at)| {
                (
                    total_in(b, thread_state::RUNNING, b.oncpu_ns, at),
                    total_in(b, thread_state::RUNNABLE, b.runq_ns, at),
                )
            });
            let cpu = total_in(cur, thread_state::RUNNING, cur.oncpu_ns, now).saturating_sub(cpu0);
            let runq =
                total_in(cur, thread_state::RUNNABLE, cur.runq_ns, now).saturating_sub(runq0);
            if runq > cpu {
                StallClass::Starved
            } else {
                StallClass::Busy
            }
        }
        thread_state::SLEEPING if in_futex => StallClass::DeadlockSuspected,
        _ => StallClass::Blocked,
    }
}

/// Ticks a new class must hold before a change is reported: a server resuming from a stop runs
/// for a moment before it reads, and that moment is not a busy server.
pub const CHANGE_CONFIRM_TICKS: u32 = 5;

struct Episode {
    first_ns: u64,
    owner_tid: u32,
    base: Option<(ThreadState, u64)>,
    reported: Option<StallClass>,
    /// A class different from the reported one, and for how many ticks in a row it was seen.
    pending: Option<(StallClass, u32)>,
    age_ns: u64,
}

/// Watches the oldest unread request from tick to tick.
pub struct Classifier {
    threshold_ns: u64,
    episode: Option<Episode>,
}

impl Classifier {
    pub fn new(threshold_ns: u64) -> Self {
        Self {
            threshold_ns,
            episode: None,
        }
    }

    /// Requests unread this long make a stall.
    pub fn threshold_ns(&self) -> u64 {
        self.threshold_ns
    }

    /// Age of the oldest unread request at the last tick, or 0.
    pub fn oldest_age_ns(&self) -> u64 {
        self.episode.as_ref().map_or(0, |e| e.age_ns)
    }

    /// When the oldest unread request will cross the threshold, if it has not yet.
    pub fn pending_deadline_ns(&self) -> Option<u64> {
        self.episode
            .as_ref()
            .filter(|e| e.reported.is_none())
            .map(|e| e.first_ns + self.threshold_ns)
    }

    /// Forgets everything, e.g. when the target changes.
    pub fn reset(&mut self) {
        self.episode = None;
    }

    /// One look at the clock. `oldest` is the oldest unread request now, `owner` the scheduler
    /// state of its owner thread now, `in_futex` whether that owner sleeps in a futex wait (only
    /// needed once the request is past the threshold).
    pub fn tick(
        &mut self,
        now: u64,
        oldest: Option<Unread>,
        owner: Option<ThreadState>,
        in_futex: bool,
    ) -> Option<Decision> {
        let Some(oldest) = oldest else {
            let ended = self.episode.take()?;
            return ended.reported.map(|_| Decision::Cleared {
                age_ns: ended.age_ns,
                owner_tid: ended.owner_tid,
            });
        };
        let age_ns = now.saturating_sub(oldest.first_ns);
        let same = self
            .episode
            .as_ref()
            .is_some_and(|e| e.first_ns == oldest.first_ns);
        if !same {
            let previous = self.episode.take();
            // The old oldest request was read. If the new one is still young, the stall is over;
            // if it is old too, the stall goes on and keeps its report.
            let carried = previous
                .as_ref()
                .and_then(|p| p.reported)
                .filter(|_| age_ns >= self.threshold_ns);
            self.episode = Some(Episode {
                first_ns: oldest.first_ns,
                owner_tid: oldest.owner_tid,
                base: owner.map(|o| (o, now)),
                reported: carried,
                pending: None,
                age_ns,
            });
            if let Some(p) = previous
                && p.reported.is_some()
                && carried.is_none()
            {
                return Some(Decision::Cleared {
                    age_ns: p.age_ns,
                    owner_tid: p.owner_tid,
                });
            }
        }
        let episode = self.episode.as_mut()?;
        episode.age_ns = age_ns;
        if age_ns < self.threshold_ns {
            return None;
        }
        let base = episode.base.as_ref().map(|(b, at)| (b, *at));
        let class = classify(now, base, owner.as_ref(), in_futex);
        let stall = Stall {
            class,
            age_ns,
            owner_tid: episode.owner_tid,
        };
        match episode.reported {
            None => {
                episode.reported = Some(class);
                Some(Decision::Began(stall))
            }
            Some(before) if before != class => {
                let seen = match episode.pending {
                    Some((pending, n)) if pending == class => n + 1,
                    _ => 1,
                };
                if seen < CHANGE_CONFIRM_TICKS {
                    episode.pending = Some((class, seen));
                    return None;
                }
                episode.pending = None;
                episode.reported = Some(class);
                Some(Decision::Changed(stall))
            }
            Some(_) => {
                episode.pending = None;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const T: u64 = 100 * MS;

    fn thread(state: u32, since_ns: u64) -> ThreadState {
        ThreadState {
            state,
            since_ns,
            ..ThreadState::default()
        }
    }

    fn unread(first_ns: u64) -> Option<Unread> {
        Some(Unread {
            first_ns,
            owner_tid: 7,
            peer_port: 40_000,
        })
    }

    #[test]
    fn each_owner_state_names_its_stall() {
        let now = 1_000 * MS;
        assert_eq!(
            classify(now, None, Some(&thread(thread_state::STOPPED, 0)), false),
            StallClass::Stopped
        );
        assert_eq!(
            classify(now, None, Some(&thread(thread_state::SLEEPING, 0)), false),
            StallClass::Blocked
        );
        assert_eq!(
            classify(now, None, Some(&thread(thread_state::DISK, 0)), false),
            StallClass::Blocked
        );
        assert_eq!(
            classify(now, None, Some(&thread(thread_state::SLEEPING, 0)), true),
            StallClass::DeadlockSuspected
        );
        // A futex wait matters only while asleep: a running owner is busy whatever procfs said.
        assert_eq!(
            classify(now, None, Some(&thread(thread_state::RUNNING, 0)), true),
            StallClass::Busy
        );
        assert_eq!(
            classify(now, None, Some(&thread(thread_state::RUNNING, 0)), false),
            StallClass::Busy
        );
        assert_eq!(
            classify(now, None, Some(&thread(thread_state::RUNNABLE, 0)), false),
            StallClass::Starved
        );
        assert_eq!(classify(now, None, None, false), StallClass::Blocked);
    }

    #[test]
    fn each_stall_class_is_reported_as_its_event() {
        for (class, event) in [
            (StallClass::Stopped, KernelEvent::Stopped),
            (
                StallClass::DeadlockSuspected,
                KernelEvent::DeadlockSuspected,
            ),
            (StallClass::Starved, KernelEvent::Starved),
            (StallClass::Busy, KernelEvent::Busy),
            (StallClass::Blocked, KernelEvent::Blocked),
        ] {
            assert_eq!(class.event(), event, "{class:?}");
        }
    }

    #[test]
    fn a_busy_thread_preempted_for_a_moment_is_still_busy() {
        // On CPU for 300 ms of the window, then queued for the last 1 ms.
        let base = ThreadState {
            state: thread_state::RUNNING,
            since_ns: 0,
            ..Default::default()
        };
        let now = 301 * MS;
        let cur = ThreadState {
            state: thread_state::RUNNABLE,
            since_ns: 300 * MS,
            oncpu_ns: 300 * MS,
            ..Default::default()
        };
        assert_eq!(
            classify(now, Some((&base, 0)), Some(&cur), false),
            StallClass::Busy
        );
    }

    #[test]
    fn a_thread_mostly_waiting_for_a_cpu_is_starved_even_when_running_now() {
        let base = ThreadState {
            state: thread_state::RUNNABLE,
            since_ns: 0,
            ..Default::default()
        };
        let now = 200 * MS;
        // Queued 190 ms, on CPU for the last 10 ms.
        let cur = ThreadState {
            state: thread_state::RUNNING,
            since_ns: 190 * MS,
            runq_ns: 190 * MS,
            ..Default::default()
        };
        assert_eq!(
            classify(now, Some((&base, 0)), Some(&cur), false),
            StallClass::Starved
        );
    }

    #[test]
    fn nothing_is_reported_below_the_threshold() {
        let mut c = Classifier::new(T);
        let owner = Some(thread(thread_state::SLEEPING, 0));
        assert_eq!(c.tick(10 * MS, unread(0), owner, false), None);
        assert_eq!(c.tick(99 * MS, unread(0), owner, false), None);
        assert_eq!(c.oldest_age_ns(), 99 * MS);
        // Read before the threshold: nothing to clear either.
        assert_eq!(c.tick(100 * MS, None, owner, false), None);
    }

    #[test]
    fn a_stall_begins_once_changes_and_clears() {
        let mut c = Classifier::new(T);
        let sleeping = Some(thread(thread_state::SLEEPING, 0));
        assert_eq!(c.tick(50 * MS, unread(0), sleeping, false), None);
        let began = c.tick(100 * MS, unread(0), sleeping, false);
        assert_eq!(
            began,
            Some(Decision::Began(Stall {
                class: StallClass::Blocked,
                age_ns: 100 * MS,
                owner_tid: 7
            }))
        );
        // The same state is not repeated.
        assert_eq!(c.tick(101 * MS, unread(0), sleeping, false), None);
        // The owner is stopped now: a change, once it has held for CHANGE_CONFIRM_TICKS ticks.
        let stopped = Some(thread(thread_state::STOPPED, 101 * MS));
        let mut now = 101 * MS;
        for _ in 1..CHANGE_CONFIRM_TICKS {
            now += MS;
            assert_eq!(c.tick(now, unread(0), stopped, false), None);
        }
        now += MS;
        let changed = c.tick(now, unread(0), stopped, false);
        assert!(
            matches!(changed, Some(Decision::Changed(s)) if s.class == StallClass::Stopped),
            "{changed:?}"
        );
        // Requests read: cleared with the last age seen.
        let cleared = Some(Decision::Cleared {
            age_ns: now,
            owner_tid: 7,
        });
        assert_eq!(c.tick(now + MS, None, stopped, false), cleared);
        assert_eq!(c.tick(now + 2 * MS, None, stopped, false), None);
    }

    #[test]
    fn a_brief_change_is_not_reported() {
        let mut c = Classifier::new(T);
        let stopped = Some(thread(thread_state::STOPPED, 0));
        assert!(
            matches!(c.tick(100 * MS, unread(0), stopped, false), Some(Decision::Began(s)) if s.class == StallClass::Stopped)
        );
        // SIGCONT: the thread runs for a couple of ticks before it reads the request.
        let running = Some(thread(thread_state::RUNNING, 101 * MS));
        assert_eq!(c.tick(102 * MS, unread(0), running, false), None);
        assert_eq!(c.tick(103 * MS, unread(0), running, false), None);
        assert_eq!(
            c.tick(104 * MS, None, running, false),
            Some(Decision::Cleared {
                age_ns: 103 * MS,
                owner_tid: 7
            })
        );
    }

    #[test]
    fn a_younger_request_left_after_a_read_ends_the_stall() {
        let mut c = Classifier::new(T);
        let busy = Some(thread(thread_state::RUNNING, 0));
        assert!(matches!(
            c.tick(150 * MS, unread(0), busy, false),
            Some(Decision::Began(_))
        ));
        // The old request was read; one that arrived 140 ms in is 10 ms old.
        assert_eq!(
            c.tick(150 * MS, unread(140 * MS), busy, false),
            Some(Decision::Cleared {
                age_ns: 150 * MS,
                owner_tid: 7
            })
        );
        assert_eq!(c.tick(160 * MS, unread(140 * MS), busy, false), None);
    }

    #[test]
    fn an_older_request_left_after_a_read_continues_the_stall() {
        let mut c = Classifier::new(T);
        let busy = Some(thread(thread_state::RUNNING, 0));
        assert!(matches!(
            c.tick(300 * MS, unread(0), busy, false),
            Some(Decision::Began(_))
        ));
        // One socket was read but another has waited 200 ms: still the same stall, no new report.
        assert_eq!(c.tick(301 * MS, unread(101 * MS), busy, false), None);
        assert_eq!(c.oldest_age_ns(), 200 * MS);
    }
}
