//! The scheduler hooks: each thread of the target's state (running, runnable, asleep, in disk
//! wait, stopped) with the time it entered it and its totals on CPU and on the run queue, in
//! `THREADS`; run-queue waits into `RUNQ_HIST` (and one event each past the threshold); stop,
//! continue and exit events.
use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_get_current_task,
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use vigil_agent_ebpf::{Config, ThreadState, counter, kind, thread_flags, thread_state};

use crate::{
    RUNQ_HIST, THREADS, bpf_now, bump, config, current, emit, hist_add, read, read_kernel,
};

// `prev_state` as the raw sched_switch tracepoint passes it: the task's own `__state` bits, as
// include/linux/sched.h defines them (no binding carries these).
const TASK_UNINTERRUPTIBLE: u64 = 0x2;
const TASK_STOPPED: u64 = 0x4;
const TASK_TRACED: u64 = 0x8;
/// The final switch of an exiting thread.
const TASK_DEAD: u64 = 0x80;
/// With UNINTERRUPTIBLE: an idle kernel thread, not disk wait.
const TASK_NOLOAD: u64 = 0x400;

/// The target thread's state entry, created on first sight.
#[inline(always)]
fn thread_entry(tid: u32, now: u64) -> Option<*mut ThreadState> {
    if let Some(ptr) = THREADS.get_ptr_mut(tid) {
        return Some(ptr);
    }
    let fresh = ThreadState {
        since_ns: now,
        state: thread_state::RUNNING,
        ..ThreadState::default()
    };
    let _ = THREADS.insert(tid, fresh, u64::from(BPF_NOEXIST));
    THREADS.get_ptr_mut(tid)
}

/// `sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next,
/// unsigned int prev_state)`.
#[raw_tracepoint(tracepoint = "sched_switch")]
pub fn sched_switch(ctx: RawTracePointContext) -> i32 {
    let Some(cfg) = config() else { return 0 };
    // At sched_switch `current` is still the task switching out.
    let (tgid, tid) = current();
    let next = task_ids(ctx.arg::<u64>(2), cfg).filter(|&(next_tgid, _)| next_tgid == cfg.tgid);
    if tgid != cfg.tgid && next.is_none() {
        return 0; // most switches on the host are none of our business
    }
    let now = bpf_now();
    if tgid == cfg.tgid {
        let preempted = ctx.arg::<u64>(0) & 0xff != 0;
        switch_out(preempted, ctx.arg::<u64>(3) & 0xffff_ffff, tgid, tid, now);
    }
    if let Some((_, next_tid)) = next {
        switch_in(cfg, next_tid, now);
    }
    0
}

/// (tgid, pid) of a task, in one read: `pid` and `tgid` are adjacent in task_struct (the agent
/// checks this in BTF before loading).
#[inline(always)]
fn task_ids(task: u64, cfg: &Config) -> Option<(u32, u32)> {
    let ids = read_kernel::<u64>(task, cfg.btf.task_pid)?;
    Some(((ids >> 32) as u32, ids as u32))
}

/// The target's thread `tid` switched out: its new state, and an event the first time it stops.
#[inline(always)]
fn switch_out(preempted: bool, prev_state: u64, tgid: u32, tid: u32, now: u64) {
    if prev_state & TASK_DEAD != 0 {
        // sched_process_exit already forgot this thread; do not bring it back.
        let _ = THREADS.remove(tid);
        return;
    }
    let state = if preempted || prev_state == 0 {
        thread_state::RUNNABLE
    } else if prev_state & (TASK_STOPPED | TASK_TRACED) != 0 {
        thread_state::STOPPED
    } else if prev_state & TASK_UNINTERRUPTIBLE != 0 && prev_state & TASK_NOLOAD == 0 {
        thread_state::DISK
    } else {
        // S, idle and parked all count as asleep.
        thread_state::SLEEPING
    };
    let Some(entry) = thread_entry(tid, now) else {
        return;
    };
    // SAFETY: a live entry of THREADS; only the CPU running this thread writes it now.
    let entry = unsafe { &mut *entry };
    if entry.state == thread_state::RUNNING {
        entry.oncpu_ns += now.saturating_sub(entry.since_ns);
    }
    let newly_stopped = state == thread_state::STOPPED && entry.state != thread_state::STOPPED;
    entry.state = state;
    entry.since_ns = now;
    if newly_stopped {
        emit(kind::STOPPED, tgid, tid, prev_state, 0, now);
    }
}

/// The target's thread `tid` is about to run: how long it waited for a CPU, and an event when it
/// runs again after a stop.
#[inline(always)]
fn switch_in(cfg: &Config, tid: u32, now: u64) {
    let Some(entry) = THREADS.get_ptr_mut(tid) else {
        return;
    };
    // SAFETY: a live entry of THREADS for a thread about to run on this CPU.
    let entry = unsafe { &mut *entry };
    if entry.state == thread_state::RUNNABLE {
        let waited = now.saturating_sub(entry.since_ns);
        entry.runq_ns += waited;
        hist_add(&RUNQ_HIST, waited);
        if waited >= cfg.runq_threshold_ns {
            emit(kind::RUNQ_LATENCY, cfg.tgid, tid, waited, 0, now);
        }
    }
    if entry.state == thread_state::STOPPED || entry.flags & thread_flags::WAS_STOPPED != 0 {
        entry.flags &= !thread_flags::WAS_STOPPED;
        emit(kind::CONTINUED, cfg.tgid, tid, 0, 0, now);
    }
    entry.state = thread_state::RUNNING;
    entry.since_ns = now;
}

/// `sched_wakeup(struct task_struct *p)`.
#[raw_tracepoint(tracepoint = "sched_wakeup")]
pub fn sched_wakeup(ctx: RawTracePointContext) -> i32 {
    let Some(cfg) = config() else { return 0 };
    let Some((tgid, pid)) = task_ids(ctx.arg::<u64>(0), cfg) else {
        return 0;
    };
    if tgid != cfg.tgid {
        return 0;
    }
    let Some(entry) = THREADS.get_ptr_mut(pid) else {
        return 0;
    };
    // SAFETY: a live entry of THREADS. A thread is woken and switched under its run queue's
    // lock, so no other program writes this entry meanwhile.
    let entry = unsafe { &mut *entry };
    match entry.state {
        thread_state::SLEEPING | thread_state::DISK | thread_state::STOPPED => {
            if entry.state == thread_state::STOPPED {
                entry.flags |= thread_flags::WAS_STOPPED;
            }
            entry.state = thread_state::RUNNABLE;
            entry.since_ns = bpf_now();
        }
        // Already running or queued: a wakeup changes nothing.
        _ => {}
    }
    0
}

/// A thread of the target exits; with `group_dead`, the whole process, and its exit code (the
/// raw one wait(2) decodes) goes to the agent.
#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    let (tgid, tid) = current();
    if tgid != cfg.tgid {
        return 0;
    }
    let _ = THREADS.remove(tid);
    bump(counter::EXITED_THREADS);
    let group_dead = read::<u8>(&ctx, cfg.tp.exit_group_dead).unwrap_or(0) != 0;
    if group_dead {
        // SAFETY: a helper with no arguments; it returns the current task_struct's address.
        let task = unsafe { bpf_get_current_task() };
        // The offset comes from this kernel's BTF.
        let code = read_kernel::<i32>(task, cfg.btf.task_exit_code).unwrap_or(-1);
        emit(kind::EXITED, tgid, tid, code as u32 as u64, 0, bpf_now());
    }
    0
}
