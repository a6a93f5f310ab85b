//! vigil's kernel programs: they watch one server process (the target) and its TCP port.
//!
//! Every program first checks the target in `CONFIG`, so the agent can follow a restarted server
//! by rewriting that map, without reloading anything. Programs keep per-thread scheduler state in
//! `THREADS`, per-socket unread request bytes in the `UNREAD` slots, log2 histograms in per-CPU arrays, and
//! send discrete events through the `EVENTS` ring buffer. Stalls are the absence of events, so the
//! agent's classifier reads `UNREAD` and `THREADS` against the clock; nothing here waits.
//!
//! The hot paths (every context switch and wakeup on the host) are raw tracepoints: they get the
//! kernel's own pointers with no record built for them, and the kernel never skips them for
//! another BPF program running on the CPU. No program runs on every received segment: server
//! sockets take a slot when accepted, and `scan_unread`, which the agent runs every tick, reads
//! their sequence numbers to tell which have bytes waiting. Socket reads are as frequent as
//! segments, so their program (`sock_recv_length`) is attached only now and then. Rare events use
//! classic tracepoints, whose ready-made records are simpler to read.
//!
//! Rust eBPF has no CO-RE relocations: tracepoint field offsets and kernel struct offsets come
//! from userspace (tracefs formats and BTF) in `CONFIG`.
#![no_std]
#![no_main]

use aya_ebpf::{
    helpers::{
        bpf_get_current_pid_tgid, bpf_get_current_task, bpf_jiffies64, bpf_ktime_get_ns,
        bpf_probe_read_kernel,
    },
    macros::{map, raw_tracepoint, tracepoint},
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::{RawTracePointContext, TracePointContext},
};
use vigil_agent_ebpf::{
    BPF_F_MMAPABLE, Config, Event, HIST_BUCKETS, MAX_THREADS, RINGBUF_BYTES, SCAN_BATCH, SockSlot,
    ThreadState, UNREAD_PROBES, UNREAD_SLOTS, counter, kind, thread_flags, thread_state,
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
const TCP_ESTABLISHED: i32 = 1;
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

/// The slot of the socket at kernel address `sk`, if it has one.
#[inline(always)]
fn find_slot(sk: u64) -> Option<&'static mut SockSlot> {
    let home = unread_slot(sk);
    for i in 0..UNREAD_PROBES {
        let slot = UNREAD.get_ptr_mut((home + i) & (UNREAD_SLOTS - 1))?;
        // SAFETY: a live slot of an array map. A racing writer is another CPU handling a socket
        // of the same slots; the worst a torn update does is hide one request's age.
        let slot = unsafe { &mut *slot };
        if slot.sk == sk {
            return Some(slot);
        }
    }
    None
}

/// Gives the server-port socket `sk` a slot (its own if it has one already), or counts it as
/// untracked when all its slots are taken. Two CPUs taking the same free slot at once is
/// possible: one socket then goes untracked until the read probe sees it again.
#[inline(always)]
fn claim_slot(sk: u64, cfg: &Config) -> Option<&'static mut SockSlot> {
    if let Some(slot) = find_slot(sk) {
        return Some(slot);
    }
    let home = unread_slot(sk);
    for i in 0..UNREAD_PROBES {
        let slot = UNREAD.get_ptr_mut((home + i) & (UNREAD_SLOTS - 1))?;
        // SAFETY: as in find_slot.
        let slot = unsafe { &mut *slot };
        if slot.sk == 0 {
            let peer = read_kernel::<u16>(sk, cfg.btf.sock_dport).unwrap_or(0);
            *slot = SockSlot {
                sk,
                scanned_ns: bpf_now(),
                peer_port: u32::from(u16::from_be(peer)),
                ..SockSlot::default()
            };
            return Some(slot);
        }
    }
    bump(counter::SOCKETS_UNTRACKED);
    None
}

/// Whether `sk` is a TCP socket on the server port that the server reads from: not the
/// listener, which turns readable when a connection waits to be accepted.
#[inline(always)]
fn is_server_socket(sk: u64, cfg: &Config) -> bool {
    read_kernel::<u16>(sk, cfg.btf.sock_protocol) == Some(IPPROTO_TCP)
        && read_kernel::<u16>(sk, cfg.btf.sock_num).map(u32::from) == Some(cfg.port)
        && read_kernel::<u8>(sk, cfg.btf.sock_state).map(i32::from) != Some(TCP_LISTEN)
}

/// The slot of `sk` if it has one, else a new one if it is a server socket; None for the rest
/// (the server's own links, a pipe, another process's socket, ...) and when the slots are full.
#[inline(always)]
fn server_slot(sk: u64, cfg: &Config) -> Option<&'static mut SockSlot> {
    if let Some(slot) = find_slot(sk) {
        return Some(slot);
    }
    if !is_server_socket(sk, cfg) {
        return None;
    }
    claim_slot(sk, cfg)
}

/// Forgets a socket that is closing: it has nothing left to read.
#[inline(always)]
fn forget_socket(sk: u64) {
    if let Some(slot) = find_slot(sk) {
        *slot = SockSlot::default();
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

/// Looks at the slots the agent names, each as an index + 1 in one argument (0: none), and
/// brings their stamps up to date: a socket with bytes waiting keeps its stamp while the server
/// has read nothing since it was set, and gets a new one otherwise; a socket with nothing waiting
/// loses its stamp. Never attached: the agent runs it (`BPF_PROG_TEST_RUN`) every tick, so no
/// program has to run on every arrival or read on the host.
#[raw_tracepoint]
pub fn scan_unread(ctx: RawTracePointContext) -> i32 {
    let Some(cfg) = config() else { return 0 };
    let now = bpf_now();
    // SAFETY: a helper with no arguments.
    let jiffies = unsafe { bpf_jiffies64() } as u32;
    // One call per argument: ctx offsets must be constants to the verifier.
    scan_slot(ctx.arg::<u64>(0), cfg, now, jiffies);
    scan_slot(ctx.arg::<u64>(1), cfg, now, jiffies);
    scan_slot(ctx.arg::<u64>(2), cfg, now, jiffies);
    scan_slot(ctx.arg::<u64>(3), cfg, now, jiffies);
    scan_slot(ctx.arg::<u64>(4), cfg, now, jiffies);
    scan_slot(ctx.arg::<u64>(5), cfg, now, jiffies);
    scan_slot(ctx.arg::<u64>(6), cfg, now, jiffies);
    scan_slot(ctx.arg::<u64>(7), cfg, now, jiffies);
    scan_slot(ctx.arg::<u64>(8), cfg, now, jiffies);
    scan_slot(ctx.arg::<u64>(9), cfg, now, jiffies);
    scan_slot(ctx.arg::<u64>(10), cfg, now, jiffies);
    scan_slot(ctx.arg::<u64>(11), cfg, now, jiffies);
    0
}

const _: () = assert!(SCAN_BATCH == 12);

#[inline(always)]
fn scan_slot(arg: u64, cfg: &Config, now: u64, jiffies: u32) {
    let Some(index) = arg.checked_sub(1) else {
        return;
    };
    let Some(slot) = UNREAD.get_ptr_mut(index as u32) else {
        return;
    };
    // SAFETY: a live slot of an array map (see find_slot).
    let slot = unsafe { &mut *slot };
    let sk = slot.sk;
    if sk == 0 {
        return;
    }
    let since = slot.scanned_ns;
    slot.scanned_ns = now;
    // A socket freed meanwhile reads as garbage or fails: tcp_destroy_sock has emptied its slot
    // already, and at worst one stamp is wrong until the next scan.
    let (Some(copied), Some(next)) = (
        read_kernel::<u32>(sk, cfg.btf.tcp_copied_seq),
        read_kernel::<u32>(sk, cfg.btf.tcp_rcv_nxt),
    ) else {
        slot.first_unread_ns = 0;
        return;
    };
    if copied == next {
        slot.first_unread_ns = 0; // everything that arrived was read
        return;
    }
    if slot.first_unread_ns != 0 && slot.copied_seq == copied {
        return; // nothing read since the stamp: it stands
    }
    // New bytes wait. They arrived after the last scan that saw this socket read up, and no
    // earlier than the last data did (lrcvtime, a jiffy late to round up, not down): the later
    // of the two never makes a request older than it is. A waiting FIN leaves lrcvtime at the
    // last data, so the scan bound is the one that holds for it.
    let last_data = read_kernel::<u32>(sk, cfg.btf.tcp_lrcvtime)
        .map(|at| {
            let ago = u64::from(jiffies.wrapping_sub(at).saturating_sub(1));
            now.saturating_sub(ago * u64::from(cfg.jiffy_ns))
        })
        .unwrap_or(now);
    slot.copied_seq = copied;
    slot.first_unread_ns = last_data.max(since).min(now);
}

/// Bytes (or a FIN) were queued on a socket: `sk_data_ready(const struct sock *sk)`, in softirq
/// context. `vigil watch` alone attaches this, to time each request from arrival to read for its
/// summary; the daemon's stall detection needs no program here.
#[raw_tracepoint(tracepoint = "sk_data_ready")]
pub fn sk_data_ready(ctx: RawTracePointContext) -> i32 {
    let Some(cfg) = config() else { return 0 };
    let Some(slot) = server_slot(ctx.arg::<u64>(0), cfg) else {
        return 0;
    };
    if slot.arrived_ns == 0 {
        slot.arrived_ns = bpf_now();
    }
    0
}

/// The server read from a socket: `sock_recv_length(struct sock *sk, int ret, int flags)`. Every
/// read on the host lands here, so the daemon attaches it only in short windows, to learn which
/// thread reads which socket and to give a slot to server sockets accepted before it looked;
/// `vigil watch` keeps it on for its per-request unread ages.
#[raw_tracepoint(tracepoint = "sock_recv_length")]
pub fn sock_recv_length(ctx: RawTracePointContext) -> i32 {
    let Some(cfg) = config() else { return 0 };
    // 0 is a read of the FIN: that consumes what was waiting too.
    if (ctx.arg::<u64>(1) as i32) < 0 {
        return 0;
    }
    let (tgid, tid) = current();
    if tgid != cfg.tgid {
        return 0; // most reads on the host are other processes'
    }
    let Some(slot) = server_slot(ctx.arg::<u64>(0), cfg) else {
        return 0;
    };
    let arrived = slot.arrived_ns;
    if arrived != 0 {
        slot.arrived_ns = 0;
        if cfg.unread_histogram != 0 {
            hist_add(&UNREAD_HIST, bpf_now().saturating_sub(arrived));
        }
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
    if new == TCP_ESTABLISHED {
        // The server accepted a connection: from now on each scan looks at it.
        if let Some(sk) = read::<u64>(&ctx, cfg.tp.state_skaddr) {
            let _ = claim_slot(sk, cfg);
        }
    } else if new == TCP_CLOSE {
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
