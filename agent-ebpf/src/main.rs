//! vigil's kernel programs: they watch one server process (the target) and its TCP port.
//!
//! Every program first checks the target in `CONFIG`, so the agent can follow a restarted server
//! by rewriting that map, without reloading anything. Programs keep per-thread scheduler state in
//! `THREADS`, per-socket unread request bytes in the `UNREAD` slots, log2 histograms in per-CPU arrays, and
//! send discrete events through the `EVENTS` ring buffer. Stalls are the absence of events, so the
//! agent's classifier reads `UNREAD` and `THREADS` against the clock; nothing here waits.
//!
//! The hot paths (every context switch, wakeup and received segment on the host) are raw
//! tracepoints: they get the kernel's own pointers with no record built for them, and the kernel
//! never skips them for another BPF program running on the CPU. Socket reads are as frequent, so
//! their program (`sock_recv_length`) is attached only now and then, and `settle_unread`, which
//! the agent runs on demand, tells which stamped sockets were read since. Rare events use classic
//! tracepoints, whose ready-made records are simpler to read.
//!
//! Rust eBPF has no CO-RE relocations: tracepoint field offsets and kernel struct offsets come
//! from userspace (tracefs formats and BTF) in `CONFIG`.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::{map, raw_tracepoint, tracepoint},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{RawTracePointContext, TracePointContext},
};
use vigil_agent_ebpf::{
    BPF_F_MMAPABLE, Config, Event, HIST_BUCKETS, MAX_THREADS, RINGBUF_BYTES, SLOT_OTHER,
    SLOT_SERVER, SockSlot, ThreadState, UNREAD_SLOTS, counter, kind, thread_flags, thread_state,
    unread_slot,
};

#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(RINGBUF_BYTES, 0);
#[map]
static THREADS: HashMap<u32, ThreadState> = HashMap::with_max_entries(MAX_THREADS, 0);
#[map]
static UNREAD: Array<SockSlot> = Array::with_max_entries(UNREAD_SLOTS, BPF_F_MMAPABLE);
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
// prev_state as the raw sched_switch tracepoint passes it: the task's own __state bits.
const TASK_UNINTERRUPTIBLE: u64 = 0x2;
const TASK_STOPPED: u64 = 0x4;
const TASK_TRACED: u64 = 0x8;
const TASK_DEAD: u64 = 0x80; // the final switch of an exiting thread
const TASK_NOLOAD: u64 = 0x400; // with UNINTERRUPTIBLE: an idle kernel thread, not disk wait

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

/// A field of a kernel struct at `base + offset`, the offset taken from this kernel's BTF.
#[inline(always)]
fn read_kernel<T>(base: u64, offset: u32) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one is an error, never a fault.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T).ok() }
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
            bpf_probe_read_kernel(task.add(cfg.btf.task_exit_code as usize) as *const i32)
                .unwrap_or(-1)
        };
        emit(kind::EXITED, tgid, tid, code as u32 as u64, 0, bpf_now());
    }
    0
}

#[inline(always)]
fn bpf_now() -> u64 {
    unsafe { bpf_ktime_get_ns() }
}

/// Request bytes (or a FIN) were queued on a socket: `sk_data_ready(const struct sock *sk)`,
/// where the kernel wakes the socket's readers, in softirq context (so the socket, not `current`,
/// tells whose they are). Pure ACKs never get here. This runs for every socket on the host that
/// receives data, so a socket already in its slot costs one compare; only a new one pays for the
/// kernel reads that tell a server-port socket from any other.
#[raw_tracepoint(tracepoint = "sk_data_ready")]
pub fn sk_data_ready(ctx: RawTracePointContext) -> i32 {
    let Some(cfg) = config() else { return 0 };
    let sk = ctx.arg::<u64>(0);
    let Some(slot) = UNREAD.get_ptr_mut(unread_slot(sk)) else {
        return 0;
    };
    // SAFETY: a live slot of an array map. A racing writer is another CPU handling a socket of
    // the same slot; the worst a torn update does is hide one request's age.
    let slot = unsafe { &mut *slot };
    if slot.sk == sk {
        if slot.owner == SLOT_SERVER {
            stamp(slot, sk, cfg);
        }
        return 0;
    }
    if slot.first_unread_ns != 0 {
        return 0; // another socket's bytes wait in this slot: keep their age
    }
    match sock_owner(sk, cfg) {
        Some(SLOT_SERVER) => {
            slot.sk = sk;
            slot.owner = SLOT_SERVER;
            slot.reader_tid = 0;
            stamp(slot, sk, cfg);
        }
        // A server-port socket keeps its slot (and its reader) against other sockets.
        Some(SLOT_OTHER) if slot.owner != SLOT_SERVER => {
            slot.sk = sk;
            slot.owner = SLOT_OTHER;
            slot.reader_tid = 0;
        }
        _ => {}
    }
    0
}

/// New request bytes on a server socket start its unread age, unless older bytes still wait:
/// a stamp whose `copied_seq` has not moved means the server has read nothing since.
#[inline(always)]
fn stamp(slot: &mut SockSlot, sk: u64, cfg: &Config) {
    let copied = read_kernel::<u32>(sk, cfg.btf.tcp_copied_seq);
    if slot.first_unread_ns != 0 && copied == Some(slot.copied_seq) {
        return;
    }
    // An unreadable copied_seq (never seen on a live socket) restamps: that can hide an age,
    // never make one up.
    slot.copied_seq = copied.unwrap_or(0);
    slot.first_unread_ns = bpf_now();
}

/// Whether a stamp the agent saw still stands: `arg 0` is the slot, `arg 1` the stamp the agent
/// saw there. Returns 0 when it does (the server has read nothing of that socket since), and 1
/// when it does not: the slot was renewed or emptied meanwhile, or the server has read the
/// socket since, in which case the stamp is cleared. Never attached: the agent runs it
/// (`BPF_PROG_TEST_RUN`) before it trusts an old stamp, so no program has to run on every read
/// on the host.
#[raw_tracepoint]
pub fn settle_unread(ctx: RawTracePointContext) -> i32 {
    let Some(cfg) = config() else { return 1 };
    let stamp = ctx.arg::<u64>(1);
    let Some(slot) = UNREAD.get_ptr_mut(ctx.arg::<u64>(0) as u32) else {
        return 1;
    };
    // SAFETY: a live slot of an array map (see sk_data_ready).
    let slot = unsafe { &mut *slot };
    if stamp == 0 || slot.first_unread_ns != stamp || slot.owner != SLOT_SERVER {
        return 1; // renewed or emptied since the agent looked: its copy is stale
    }
    // A socket freed meanwhile reads as garbage or fails: either way its stamp goes, and
    // tcp_destroy_sock has emptied the slot already.
    let read_since = read_kernel::<u32>(slot.sk, cfg.btf.tcp_copied_seq)
        .is_none_or(|copied| copied != slot.copied_seq);
    if !read_since {
        return 0;
    }
    // Re-checked so a stamp an arrival just renewed stays; what is left is a window of a few
    // instructions, and a lost stamp only hides one request's age.
    if slot.first_unread_ns == stamp {
        slot.first_unread_ns = 0;
    }
    1
}

/// What a socket seen for the first time is: [`SLOT_SERVER`] for a TCP socket on the server port
/// that is not the listener, [`SLOT_OTHER`] for any other TCP socket, None for the rest. Only TCP
/// sockets are remembered, because only they are sure to pass `tcp_destroy_sock`, which frees
/// their slot before the address can be reused.
#[inline(always)]
fn sock_owner(sk: u64, cfg: &Config) -> Option<u32> {
    if read_kernel::<u16>(sk, cfg.btf.sock_protocol)? != IPPROTO_TCP {
        return None;
    }
    if read_kernel::<u16>(sk, cfg.btf.sock_num).map(u32::from)? != cfg.port {
        return Some(SLOT_OTHER);
    }
    // The listener turns readable when a connection waits to be accepted: not a request.
    match read_kernel::<u8>(sk, cfg.btf.sock_state).map(i32::from)? {
        TCP_LISTEN => None,
        _ => Some(SLOT_SERVER),
    }
}

/// Forgets a socket that is closing: it has nothing left to read.
#[inline(always)]
fn forget_socket(sk: u64) {
    if let Some(slot) = UNREAD.get_ptr_mut(unread_slot(sk)) {
        // SAFETY: a live slot of an array map.
        let slot = unsafe { &mut *slot };
        if slot.sk == sk {
            slot.first_unread_ns = 0;
            slot.sk = 0;
            slot.owner = 0;
            slot.reader_tid = 0;
        }
    }
}

/// `tcp_destroy_sock(struct sock *sk)`: the last word on a TCP socket. A raw tracepoint, so it is
/// never skipped and a closed socket cannot leave a stale request behind.
#[raw_tracepoint(tracepoint = "tcp_destroy_sock")]
pub fn tcp_destroy_sock(ctx: RawTracePointContext) -> i32 {
    if config().is_some() {
        forget_socket(ctx.arg::<u64>(0));
    }
    0
}

/// The server read from a socket, so its unread bytes are consumed: `sock_recv_length(struct
/// sock *sk, int ret, int flags)`. Every read on the host lands here, so the daemon attaches it
/// only in short windows, to learn which thread reads which socket; `vigil watch` keeps it on
/// for its per-request unread ages.
#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn sock_recv_length(ctx: RawTracePointContext) -> i32 {
    let Some(cfg) = config() else { return 0 };
    // 0 is a read of the FIN: that consumes what was waiting too.
    if (ctx.arg::<u64>(1) as i32) < 0 {
        return 0;
    }
    // The socket's slot turns away all but the server's sockets before anything else is asked.
    let sk = ctx.arg::<u64>(0);
    let Some(slot) = UNREAD.get_ptr_mut(unread_slot(sk)) else {
        return 0;
    };
    // SAFETY: a live slot of an array map (see sk_data_ready).
    let slot = unsafe { &mut *slot };
    if slot.sk != sk || slot.owner != SLOT_SERVER {
        return 0; // not a server-port socket with a slot: the server's own links, a pipe, ...
    }
    let first = slot.first_unread_ns;
    if first != 0 {
        slot.first_unread_ns = 0;
        if cfg.unread_histogram != 0 {
            hist_add(&UNREAD_HIST, bpf_now().saturating_sub(first));
        }
    }
    let (tgid, tid) = current();
    if tgid != cfg.tgid {
        return 0;
    }
    if slot.reader_tid != tid {
        slot.reader_tid = tid;
    }
    if let Some(last) = LAST_READER.get_ptr_mut(0) {
        // SAFETY: a live u32 slot of an array map; a racing writer is another reader of the same
        // process, and either answer is a fine guess at the owner of a socket never read.
        unsafe {
            if *last != tid {
                *last = tid;
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
            forget_socket(sk);
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
