//! vigil's kernel programs: they watch one server process (the target) and its TCP port.
//!
//! Every program first checks the target in `CONFIG`, so the agent can follow a restarted server
//! by rewriting that map, without reloading anything. Programs keep per-thread scheduler state in
//! `THREADS`, per-socket unread request bytes in `UNREAD`, log2 histograms in per-CPU arrays, and
//! send discrete events through the `EVENTS` ring buffer. Stalls are the absence of events, so the
//! agent's classifier reads `UNREAD` and `THREADS` against the clock; nothing here waits.
//!
//! Rust eBPF has no CO-RE relocations: tracepoint field offsets and the one kernel struct offset
//! we need come from userspace (tracefs formats and BTF) in `CONFIG`.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::{map, tracepoint},
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use vigil_agent_ebpf::{
    Config, Event, HIST_BUCKETS, MAX_READERS, MAX_THREADS, MAX_UNREAD, RINGBUF_BYTES, ThreadState,
    Unread, counter, kind, thread_flags, thread_state,
};

#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(RINGBUF_BYTES, 0);
#[map]
static THREADS: HashMap<u32, ThreadState> = HashMap::with_max_entries(MAX_THREADS, 0);
#[map]
static UNREAD: HashMap<u64, Unread> = HashMap::with_max_entries(MAX_UNREAD, 0);
#[map]
static READERS: LruHashMap<u64, u32> = LruHashMap::with_max_entries(MAX_READERS, 0);
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::LEN, 0);
#[map]
static LAST_READER: Array<u32> = Array::with_max_entries(1, 0);
#[map]
static RUNQ_HIST: PerCpuArray<u64> = PerCpuArray::with_max_entries(HIST_BUCKETS, 0);
#[map]
static UNREAD_HIST: PerCpuArray<u64> = PerCpuArray::with_max_entries(HIST_BUCKETS, 0);

const BPF_NOEXIST: u64 = 1;
const BPF_RB_FORCE_WAKEUP: u64 = 2;
const IPPROTO_TCP: u16 = 6;
const TCP_CLOSE: i32 = 7;
const TCP_LISTEN: i32 = 10;
// prev_state as the classic sched_switch tracepoint reports it (TASK_REPORT bits).
const REPORT_DISK: i64 = 0x2;
const REPORT_STOPPED: i64 = 0x4;
const REPORT_TRACED: i64 = 0x8;
const REPORT_DEAD: i64 = 0x10 | 0x20; // X and Z: the final switch of an exiting thread
const REPORT_PREEMPTED: i64 = 0x100;
// futex commands that put the caller to sleep (FUTEX_CMD_MASK applied).
const FUTEX_CMD_MASK: i64 = 0x7f;
const FUTEX_WAIT: i64 = 0;
const FUTEX_LOCK_PI: i64 = 6;
const FUTEX_WAIT_BITSET: i64 = 9;
const FUTEX_WAIT_REQUEUE_PI: i64 = 11;
const FUTEX_LOCK_PI2: i64 = 13;

#[inline(always)]
fn config() -> Option<&'static Config> {
    let cfg = CONFIG.get(0)?;
    if cfg.tgid == 0 { None } else { Some(cfg) }
}

#[inline(always)]
fn current() -> (u32, u32) {
    let id = bpf_get_current_pid_tgid();
    ((id >> 32) as u32, id as u32)
}

#[inline(always)]
fn read<T>(ctx: &TracePointContext, offset: u32) -> Option<T> {
    // SAFETY: the offset comes from this kernel's tracefs format for this tracepoint.
    unsafe { ctx.read_at::<T>(offset as usize).ok() }
}

#[inline(always)]
fn emit(kind: u32, pid: u32, tid: u32, value: u64, aux: u32, now: u64) {
    match EVENTS.reserve::<Event>(0) {
        Some(mut entry) => {
            entry.write(Event {
                kernel_ns: now,
                value,
                kind,
                pid,
                tid,
                aux,
            });
            // Events are rare and urgent: wake the agent now rather than when the buffer fills.
            entry.submit(BPF_RB_FORCE_WAKEUP);
        }
        None => bump(counter::EVENTS_DROPPED),
    }
}

#[inline(always)]
fn bump(index: u32) {
    if let Some(ptr) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it, and these programs are not preempted.
        unsafe { *ptr += 1 };
    }
}

/// floor(log2(v)) for v > 0, without loops or lookup tables (the verifier likes neither).
#[inline(always)]
fn log2(mut v: u64) -> u32 {
    let mut r = 0u32;
    let mut shift;
    shift = ((v > 0xFFFF_FFFF) as u32) << 5;
    v >>= shift;
    r |= shift;
    shift = ((v > 0xFFFF) as u32) << 4;
    v >>= shift;
    r |= shift;
    shift = ((v > 0xFF) as u32) << 3;
    v >>= shift;
    r |= shift;
    shift = ((v > 0xF) as u32) << 2;
    v >>= shift;
    r |= shift;
    shift = ((v > 0x3) as u32) << 1;
    v >>= shift;
    r |= shift;
    r | (v >> 1) as u32
}

#[inline(always)]
fn hist_add(hist: &PerCpuArray<u64>, value_ns: u64) {
    let bucket = if value_ns == 0 { 0 } else { log2(value_ns) };
    if let Some(slot) = hist.get_ptr_mut(bucket) {
        // SAFETY: per-CPU slot, only this CPU writes it, and preemption is off in these programs.
        unsafe { *slot += 1 };
    }
}

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
    let _ = THREADS.insert(tid, fresh, BPF_NOEXIST);
    THREADS.get_ptr_mut(tid)
}

#[tracepoint]
pub fn sched_switch(ctx: TracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    let now = unsafe { bpf_ktime_get_ns() };
    let (tgid, tid) = current();
    // At sched_switch `current` is still the task switching out.
    if tgid == cfg.tgid {
        switch_out(&ctx, cfg, tgid, tid, now);
    }
    if let Some(next) = read::<i32>(&ctx, cfg.tp.switch_next_pid) {
        switch_in(cfg, next as u32, now);
    }
    0
}

#[inline(always)]
fn switch_out(ctx: &TracePointContext, cfg: &Config, tgid: u32, tid: u32, now: u64) {
    let Some(prev_state) = read::<i64>(ctx, cfg.tp.switch_prev_state) else {
        return;
    };
    if prev_state & REPORT_DEAD != 0 {
        // sched_process_exit already forgot this thread; do not bring it back.
        let _ = THREADS.remove(tid);
        return;
    }
    let state = if prev_state == 0 || prev_state & REPORT_PREEMPTED != 0 {
        thread_state::RUNNABLE
    } else if prev_state & (REPORT_STOPPED | REPORT_TRACED) != 0 {
        thread_state::STOPPED
    } else if prev_state & REPORT_DISK != 0 {
        thread_state::DISK
    } else {
        // S (0x1), idle and parked all count as asleep.
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
        emit(kind::STOPPED, tgid, tid, prev_state as u64, 0, now);
    }
}

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

#[tracepoint]
pub fn sched_wakeup(ctx: TracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    let Some(pid) = read::<i32>(&ctx, cfg.tp.wakeup_pid) else {
        return 0;
    };
    let Some(entry) = THREADS.get_ptr_mut(pid as u32) else {
        return 0;
    };
    // SAFETY: a live entry of THREADS.
    let entry = unsafe { &mut *entry };
    match entry.state {
        thread_state::SLEEPING | thread_state::DISK | thread_state::STOPPED => {
            if entry.state == thread_state::STOPPED {
                entry.flags |= thread_flags::WAS_STOPPED;
            }
            entry.state = thread_state::RUNNABLE;
            entry.since_ns = unsafe { bpf_ktime_get_ns() };
        }
        // Already running or queued: a wakeup changes nothing.
        _ => {}
    }
    0
}

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
        let task = unsafe { bpf_get_current_task() } as *const u8;
        // SAFETY: `task` is the current task_struct; the offset comes from this kernel's BTF.
        let code: i32 = unsafe {
            bpf_probe_read_kernel(task.add(cfg.task_exit_code as usize) as *const i32).unwrap_or(-1)
        };
        emit(kind::EXITED, tgid, tid, code as u32 as u64, 0, bpf_now());
    }
    0
}

#[inline(always)]
fn bpf_now() -> u64 {
    unsafe { bpf_ktime_get_ns() }
}

#[inline(always)]
fn futex_waits(op: i64) -> bool {
    matches!(
        op & FUTEX_CMD_MASK,
        FUTEX_WAIT | FUTEX_LOCK_PI | FUTEX_WAIT_BITSET | FUTEX_WAIT_REQUEUE_PI | FUTEX_LOCK_PI2
    )
}

#[tracepoint]
pub fn futex_enter(ctx: TracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    let (tgid, tid) = current();
    if tgid != cfg.tgid {
        return 0;
    }
    let Some(op) = read::<i64>(&ctx, cfg.tp.futex_op) else {
        return 0;
    };
    if futex_waits(op) {
        let now = bpf_now();
        if let Some(entry) = thread_entry(tid, now) {
            // SAFETY: a live entry of THREADS, written by the thread it describes.
            unsafe { (*entry).futex_since_ns = now };
        }
    }
    0
}

#[tracepoint]
pub fn futex_exit(_ctx: TracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    let (tgid, tid) = current();
    if tgid != cfg.tgid {
        return 0;
    }
    if let Some(entry) = THREADS.get_ptr_mut(tid) {
        // SAFETY: a live entry of THREADS, written by the thread it describes.
        unsafe { (*entry).futex_since_ns = 0 };
    }
    0
}

/// Request bytes arrive on an established server-port socket (runs in softirq context, so the
/// socket, not `current`, tells whose they are).
#[tracepoint]
pub fn tcp_probe(ctx: TracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    let Some(sport) = read::<u16>(&ctx, cfg.tp.probe_sport) else {
        return 0;
    };
    if u32::from(sport) != cfg.port {
        return 0;
    }
    if read::<u16>(&ctx, cfg.tp.probe_data_len).unwrap_or(0) == 0 {
        return 0;
    }
    let Some(sk) = read::<u64>(&ctx, cfg.tp.probe_skaddr) else {
        return 0;
    };
    if UNREAD.get_ptr(sk).is_some() {
        return 0; // the oldest unread bytes already have their timestamp
    }
    let owner_tid = match READERS.get_ptr(sk) {
        // SAFETY: a live entry of READERS.
        Some(tid) => unsafe { *tid },
        None => last_reader(cfg),
    };
    let entry = Unread {
        first_ns: bpf_now(),
        owner_tid,
        _reserved: 0,
    };
    let _ = UNREAD.insert(sk, entry, BPF_NOEXIST);
    0
}

#[inline(always)]
fn last_reader(cfg: &Config) -> u32 {
    match LAST_READER.get(0) {
        Some(&tid) if tid != 0 => tid,
        _ => cfg.tgid, // nobody has read yet: the main thread
    }
}

/// The server read from a socket: its unread bytes are consumed.
#[tracepoint]
pub fn sock_recv_length(ctx: TracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    let (tgid, tid) = current();
    if tgid != cfg.tgid {
        return 0;
    }
    if read::<u16>(&ctx, cfg.tp.recv_protocol) != Some(IPPROTO_TCP) {
        return 0;
    }
    if read::<i32>(&ctx, cfg.tp.recv_ret).unwrap_or(0) <= 0 {
        return 0;
    }
    let Some(sk) = read::<u64>(&ctx, cfg.tp.recv_sk) else {
        return 0;
    };
    if let Some(pending) = UNREAD.get_ptr(sk) {
        // SAFETY: a live entry of UNREAD.
        let first = unsafe { (*pending).first_ns };
        hist_add(&UNREAD_HIST, bpf_now().saturating_sub(first));
        let _ = UNREAD.remove(sk);
    }
    // Remember who reads this socket; write only on change to keep the hot path to lookups.
    // SAFETY: a live entry of READERS.
    if READERS.get_ptr(sk).map(|t| unsafe { *t }) != Some(tid) {
        let _ = READERS.insert(sk, tid, 0);
    }
    if let Some(slot) = LAST_READER.get_ptr_mut(0) {
        // SAFETY: a live u32 slot of an array map; a racing writer is another reader of the same
        // process, and either answer is a fine guess at the owner.
        unsafe {
            if *slot != tid {
                *slot = tid;
            }
        }
    }
    0
}

#[tracepoint]
pub fn inet_sock_set_state(ctx: TracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    if read::<u16>(&ctx, cfg.tp.state_protocol) != Some(IPPROTO_TCP) {
        return 0;
    }
    let Some(sport) = read::<u16>(&ctx, cfg.tp.state_sport) else {
        return 0;
    };
    if u32::from(sport) != cfg.port {
        return 0;
    }
    let old = read::<i32>(&ctx, cfg.tp.state_oldstate).unwrap_or(0);
    let new = read::<i32>(&ctx, cfg.tp.state_newstate).unwrap_or(0);
    let now = bpf_now();
    if new == TCP_CLOSE {
        // A closed socket has nothing left to read: forget it.
        if let Some(sk) = read::<u64>(&ctx, cfg.tp.state_skaddr) {
            let _ = UNREAD.remove(sk);
            let _ = READERS.remove(sk);
        }
        if old == TCP_LISTEN {
            emit(kind::LISTENER_CLOSED, current().0, 0, 0, cfg.port, now);
        }
    } else if new == TCP_LISTEN {
        emit(
            kind::LISTENER_OPENED,
            current().0,
            current().1,
            0,
            cfg.port,
            now,
        );
    }
    0
}

#[tracepoint]
pub fn tcp_receive_reset(ctx: TracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    let Some(sport) = read::<u16>(&ctx, cfg.tp.rst_rx_sport) else {
        return 0;
    };
    if u32::from(sport) != cfg.port {
        return 0;
    }
    let peer = read::<u16>(&ctx, cfg.tp.rst_rx_dport).unwrap_or(0);
    emit(
        kind::RESET_RECEIVED,
        cfg.tgid,
        0,
        u64::from(peer),
        cfg.port,
        bpf_now(),
    );
    0
}

/// Port of a `struct sockaddr_in`/`sockaddr_in6` stored in a tracepoint record (network order).
#[inline(always)]
fn sockaddr_port(ctx: &TracePointContext, offset: u32) -> u16 {
    u16::from_be(read::<u16>(ctx, offset + 2).unwrap_or(0))
}

#[tracepoint]
pub fn tcp_send_reset(ctx: TracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    // The kernel stores the local side in saddr, also when it answers a packet with no socket.
    if u32::from(sockaddr_port(&ctx, cfg.tp.rst_tx_saddr)) != cfg.port {
        return 0;
    }
    let peer = sockaddr_port(&ctx, cfg.tp.rst_tx_daddr);
    emit(
        kind::RESET_SENT,
        cfg.tgid,
        0,
        u64::from(peer),
        cfg.port,
        bpf_now(),
    );
    0
}

#[tracepoint]
pub fn tcp_retransmit_skb(ctx: TracePointContext) -> u32 {
    let Some(cfg) = config() else { return 0 };
    let Some(sport) = read::<u16>(&ctx, cfg.tp.retrans_sport) else {
        return 0;
    };
    if u32::from(sport) != cfg.port {
        return 0;
    }
    let peer = read::<u16>(&ctx, cfg.tp.retrans_dport).unwrap_or(0);
    emit(
        kind::RETRANSMIT,
        cfg.tgid,
        0,
        u64::from(peer),
        cfg.port,
        bpf_now(),
    );
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: eBPF programs cannot panic at run time; the verifier rejects code that could.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
