//! Folds per-thread stopped/continued events into one stopped/continued transition of the
//! process. Pure, so it is unit-tested alone.

/// Folds per-thread stop/continue events into process-level transitions. The process is stopped
/// while any of its threads is: a thread still waking from the last SIGCONT must not end a stop
/// that began after it.
#[derive(Default)]
pub struct StopTracker {
    stopped: std::collections::HashSet<u32>,
}

impl StopTracker {
    /// Thread `tid` stopped. True when this is the process's transition to stopped.
    pub fn thread_stopped(&mut self, tid: u32) -> bool {
        let was_running = self.stopped.is_empty();
        // Bounded like the kernel's thread map.
        if self.stopped.len() < vigil_agent_ebpf::MAX_THREADS as usize {
            self.stopped.insert(tid);
        }
        was_running
    }

    /// Stopped thread `tid` ran again. True when this is the process's transition to running.
    pub fn thread_continued(&mut self, tid: u32) -> bool {
        self.stopped.remove(&tid) && self.stopped.is_empty()
    }

    pub fn is_stopped(&self) -> bool {
        !self.stopped.is_empty()
    }

    pub fn reset(&mut self) {
        self.stopped.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_fold_into_one_transition_per_process() {
        let mut s = StopTracker::default();
        assert!(s.thread_stopped(1));
        assert!(!s.thread_stopped(2));
        assert!(!s.thread_stopped(3));
        assert!(s.is_stopped());
        assert!(!s.thread_continued(2));
        assert!(!s.thread_continued(3));
        assert!(s.thread_continued(1));
        assert!(!s.is_stopped());
        // A thread that never stopped continuing is not a transition.
        assert!(!s.thread_continued(9));
    }

    #[test]
    fn a_late_continue_from_the_last_stop_does_not_end_a_new_one() {
        let mut s = StopTracker::default();
        // Round 1: both threads stop; SIGCONT wakes thread 1, thread 2 has not run yet.
        assert!(s.thread_stopped(1));
        assert!(!s.thread_stopped(2));
        assert!(!s.thread_continued(1));
        // Round 2 begins: thread 1 stops again; then thread 2 finally runs (a late continue).
        assert!(!s.thread_stopped(1));
        assert!(!s.thread_continued(2));
        assert!(s.is_stopped(), "the new stop must still hold");
    }
}
