//! The types the kernel programs (`src/main.rs`) share with the agent.
//!
//! Every type is `#[repr(C)]`, padding-free and plain old data, so the kernel writes it and
//! userspace reads it byte for byte. Field order is chosen so no padding is needed; the
//! `const` assertions at the bottom keep it that way.
#![no_std]

/// Largest number of threads of the target process tracked at once.
pub const MAX_THREADS: u32 = 4096;
/// Slots of the `UNREAD` array (a power of two): each server-port socket hashes to one slot by
/// its kernel address. Two sockets sharing a slot can only hide a stall, never invent one.
pub const UNREAD_SLOT_BITS: u32 = 11;
pub const UNREAD_SLOTS: u32 = 1 << UNREAD_SLOT_BITS;
/// `BPF_F_MMAPABLE`: the agent maps `UNREAD` into memory and scans it without a syscall per slot.
pub const BPF_F_MMAPABLE: u32 = 1 << 10;
/// Buckets of the log2 histograms (bucket i counts values in [2^i, 2^(i+1)) ns).
pub const HIST_BUCKETS: u32 = 64;
/// Size of the event ring buffer, in bytes (a power of two, as the kernel requires).
pub const RINGBUF_BYTES: u32 = 256 * 1024;

/// Kinds of [`Event`].
pub mod kind {
    /// A thread of the target switched out in the stopped or traced state.
    pub const STOPPED: u32 = 1;
    /// A thread that had stopped was woken (SIGCONT) and ran again.
    pub const CONTINUED: u32 = 2;
    /// The last thread of the target exited. `value` is the raw exit code (as in wait(2)).
    pub const EXITED: u32 = 3;
    /// A thread waited on the run queue longer than the configured threshold. `value` is the wait in ns.
    pub const RUNQ_LATENCY: u32 = 4;
    /// The listening socket on the server port closed. `aux` is the port.
    pub const LISTENER_CLOSED: u32 = 5;
    /// A socket started listening on the server port; `pid` is the process that did it.
    pub const LISTENER_OPENED: u32 = 6;
    /// A reset arrived on a server-port socket. `aux` is the port, `value` the peer port.
    pub const RESET_RECEIVED: u32 = 7;
    /// The kernel sent a reset from the server port. `aux` is the port, `value` the peer port.
    pub const RESET_SENT: u32 = 8;
    /// A segment from the server port was retransmitted. `aux` is the port, `value` the peer port.
    pub const RETRANSMIT: u32 = 9;
}

/// Scheduler view of one thread, kept in the `THREADS` map.
pub mod thread_state {
    pub const RUNNING: u32 = 1;
    /// Woken or preempted, waiting on a run queue.
    pub const RUNNABLE: u32 = 2;
    /// Interruptible sleep (S): a syscall such as epoll_wait, nanosleep or futex (the agent
    /// asks procfs which one, and only when a stall needs naming).
    pub const SLEEPING: u32 = 3;
    /// Uninterruptible sleep (D): usually disk I/O.
    pub const DISK: u32 = 4;
    /// Stopped by a signal or a debugger (T / t).
    pub const STOPPED: u32 = 5;
}

/// Flags in [`ThreadState::flags`].
pub mod thread_flags {
    /// The thread was stopped and has been woken, but has not run yet.
    pub const WAS_STOPPED: u32 = 1;
}

/// Indexes into the `COUNTERS` per-CPU array map (userspace sums the CPUs).
pub mod counter {
    /// Threads of the target seen exiting since the target was set.
    pub const EXITED_THREADS: u32 = 0;
    /// Events dropped because the ring buffer was full.
    pub const EVENTS_DROPPED: u32 = 1;
    pub const LEN: u32 = 2;
}

/// One record in the `EVENTS` ring buffer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Event {
    /// `bpf_ktime_get_ns()` when the kernel saw it (CLOCK_MONOTONIC).
    pub kernel_ns: u64,
    /// Kind-specific value (see [`kind`]).
    pub value: u64,
    /// One of [`kind`].
    pub kind: u32,
    /// Process (thread group) id.
    pub pid: u32,
    /// Thread id, or 0 when the event is not about one thread.
    pub tid: u32,
    /// Kind-specific value (see [`kind`]).
    pub aux: u32,
}

/// Field offsets inside classic tracepoint records, read from tracefs `format` files at start-up
/// so the programs do not depend on one kernel's layout. Only the rare events use classic
/// tracepoints; the hot ones are raw tracepoints (see [`BtfOffsets`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TpOffsets {
    pub exit_group_dead: u32,
    pub state_skaddr: u32,
    pub state_oldstate: u32,
    pub state_newstate: u32,
    pub state_sport: u32,
    pub state_protocol: u32,
    pub rst_rx_sport: u32,
    pub rst_rx_dport: u32,
    pub rst_tx_saddr: u32,
    pub rst_tx_daddr: u32,
    pub retrans_sport: u32,
    pub retrans_dport: u32,
}

/// Offsets of the kernel struct fields the programs read, resolved from this kernel's BTF at
/// start-up (Rust eBPF gets no CO-RE relocations). The raw tracepoints on the hot paths get
/// pointers to these structs instead of a ready-made record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BtfOffsets {
    /// `struct task_struct.exit_code`.
    pub task_exit_code: u32,
    /// `struct task_struct.pid` (the thread id), directly followed by `tgid`: one 8-byte read
    /// gets both.
    pub task_pid: u32,
    /// `struct sock_common.skc_num` (the local port, host order).
    pub sock_num: u32,
    /// `struct sock_common.skc_state` (a u8: TCP_ESTABLISHED, TCP_LISTEN, ...).
    pub sock_state: u32,
    /// `struct sock.sk_protocol` (a u16: IPPROTO_TCP, ...).
    pub sock_protocol: u32,
    /// `struct tcp_sock.copied_seq` (a u32: the sequence number the reader has reached).
    pub tcp_copied_seq: u32,
}

/// Runtime configuration, in the single slot of the `CONFIG` array map. Userspace rewrites it to
/// follow a restarted server without reloading the programs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Config {
    /// Run-queue waits at or above this raise a [`kind::RUNQ_LATENCY`] event.
    pub runq_threshold_ns: u64,
    /// Target process (thread group) id; 0 disables every program.
    pub tgid: u32,
    /// Server TCP port; 0 disables the socket programs.
    pub port: u32,
    pub btf: BtfOffsets,
    pub tp: TpOffsets,
    /// 1 to count every read's unread age in `UNREAD_HIST` (for `vigil watch`'s summary); the
    /// daemon leaves it 0, because that costs a clock read and a map update per request.
    pub unread_histogram: u32,
    pub _pad: u32,
}

/// Per-thread scheduler state, in the `THREADS` hash map keyed by thread id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThreadState {
    /// When the current `state` began.
    pub since_ns: u64,
    /// Total time on CPU, up to `since_ns` when the thread is running now.
    pub oncpu_ns: u64,
    /// Total time runnable but waiting for a CPU, up to `since_ns` when runnable now.
    pub runq_ns: u64,
    /// One of [`thread_state`].
    pub state: u32,
    /// [`thread_flags`].
    pub flags: u32,
}

/// One slot of the `UNREAD` array: a socket, whether it is a server-port socket, when its oldest
/// unread request bytes arrived (0 when none wait), how far the server had read it then, and the
/// thread seen reading it.
///
/// No program runs on every read: a stamp stays after the server reads the bytes, and the
/// agent's `settle_unread` run clears the stamps whose socket was read since (`copied_seq` moved).
///
/// A slot fills a whole cache line: the kernel writes a socket's slot on every request, and
/// sockets sharing a line would add one more line bouncing between CPUs to each.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockSlot {
    /// Kernel address of the socket, 0 for a free slot.
    pub sk: u64,
    /// `bpf_ktime_get_ns()` when the oldest unread bytes arrived, or 0.
    pub first_unread_ns: u64,
    /// The thread seen reading this socket (while the read probe was attached), or 0.
    pub reader_tid: u32,
    /// [`SLOT_SERVER`] or [`SLOT_OTHER`].
    pub owner: u32,
    /// The socket's `tcp_sock.copied_seq` (how far the server had read) when `first_unread_ns`
    /// was set: while it has not moved, the server has read nothing since.
    pub copied_seq: u32,
    pub _pad32: u32,
    pub _pad: [u64; 4],
}

/// [`SockSlot::owner`] of a server-port socket (one the server accepted).
pub const SLOT_SERVER: u32 = 1;
/// [`SockSlot::owner`] of any other TCP socket: remembered so its next bytes skip the kernel
/// reads that told it apart. `tcp_destroy_sock` frees the slot, so a later socket at the same
/// address is looked at afresh.
pub const SLOT_OTHER: u32 = 2;

/// The `UNREAD` slot of the socket at kernel address `sk` (Fibonacci hashing: socket addresses
/// share their low bits, so the high bits of the product pick the slot).
#[inline(always)]
pub fn unread_slot(sk: u64) -> u32 {
    (sk.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - UNREAD_SLOT_BITS)) as u32
}

// Padding-free: each size is the plain sum of its fields.
const _: () = assert!(core::mem::size_of::<Event>() == 8 + 8 + 4 * 4);
const _: () = assert!(core::mem::size_of::<TpOffsets>() == 12 * 4);
const _: () = assert!(core::mem::size_of::<BtfOffsets>() == 6 * 4);
const _: () = assert!(core::mem::size_of::<Config>() == 8 + 2 * 4 + 6 * 4 + 12 * 4 + 2 * 4);
const _: () = assert!(core::mem::size_of::<ThreadState>() == 3 * 8 + 2 * 4);
const _: () = assert!(core::mem::size_of::<SockSlot>() == 2 * 8 + 4 * 4 + 4 * 8);
const _: () = assert!(core::mem::size_of::<SockSlot>() == 64);

#[cfg(feature = "user")]
mod pod {
    // SAFETY: each type is #[repr(C)], made only of integers, and has no padding (asserted above).
    unsafe impl aya::Pod for super::Event {}
    unsafe impl aya::Pod for super::Config {}
    unsafe impl aya::Pod for super::BtfOffsets {}
    unsafe impl aya::Pod for super::ThreadState {}
    unsafe impl aya::Pod for super::SockSlot {}
}
