//! The types the kernel programs share with the agent: the watching programs (`src/main.rs` and
//! the hook families beside it) and the fence (`src/fence.rs`, an object of its own).
//!
//! Every type is `#[repr(C)]`, padding-free and plain old data, so the kernel writes it and
//! userspace reads it byte for byte. Field order is chosen so no padding is needed; the
//! `const` assertions at the bottom keep it that way.
#![no_std]

/// Largest number of threads of the target process tracked at once.
pub const MAX_THREADS: u32 = 4096;
/// Slots of the `UNREAD` array (a power of two): each server-port socket hashes to a home slot by
/// its kernel address and takes the first free one of [`UNREAD_PROBES`] from there. A socket
/// that finds none is not tracked (counted in [`counter::SOCKETS_UNTRACKED`]): that can only
/// hide a stall, never invent one.
pub const UNREAD_SLOT_BITS: u32 = 11;
pub const UNREAD_SLOTS: u32 = 1 << UNREAD_SLOT_BITS;
/// Slots looked at from a socket's home slot.
pub const UNREAD_PROBES: u32 = 4;
/// Slot indexes one `scan_unread` run takes: a raw tracepoint's test run passes 12 arguments.
pub const SCAN_BATCH: usize = 12;
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
    /// Server-port sockets that found no free `UNREAD` slot.
    pub const SOCKETS_UNTRACKED: u32 = 2;
    pub const LEN: u32 = 3;
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
    /// `struct sock_common.skc_dport` (the peer's port, network order).
    pub sock_dport: u32,
    /// `struct sock_common.skc_state` (a u8: TCP_ESTABLISHED, TCP_LISTEN, ...).
    pub sock_state: u32,
    /// `struct sock.sk_protocol` (a u16: IPPROTO_TCP, ...).
    pub sock_protocol: u32,
    /// `struct tcp_sock.copied_seq` (a u32: the sequence number the reader has reached).
    pub tcp_copied_seq: u32,
    /// `struct tcp_sock.rcv_nxt` (a u32: the sequence number the kernel expects next). Bytes
    /// wait unread while it differs from `copied_seq`.
    pub tcp_rcv_nxt: u32,
    /// `struct inet_connection_sock.icsk_ack.lrcvtime` (a u32: jiffies when data last arrived).
    pub tcp_lrcvtime: u32,
    pub _pad: u32,
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
    /// 1 to count every read's unread age in `UNREAD_HIST` (for `vigil-agent watch`'s summary,
    /// which also attaches the programs on every arrival and read that this takes); the daemon
    /// leaves it 0.
    pub unread_histogram: u32,
    /// Length of one jiffy in ns (`clock_getres(CLOCK_MONOTONIC_COARSE)`): `lrcvtime` counts
    /// jiffies.
    pub jiffy_ns: u32,
}

/// Most peers a fence lets through at once: the agent's own connections (a handful) and the
/// replicas' links of a primary fenced for a planned switchover.
pub const MAX_FENCE_PEERS: u32 = 1024;

/// What a fence is, in [`FenceConfig::kind`]: the rule that lifts it depends on it.
pub mod fence_kind {
    /// Ordered by the controller (a Fence command): lifted by a demotion or an Unfence.
    pub const ORDERED: u32 = 1;
    /// Put up by the agent itself when its lease ran out without a quorum: also lifted when the
    /// controller says this node is the primary at the epoch the fence began at.
    pub const SELF: u32 = 2;
}

/// Flags in [`FenceConfig::flags`].
pub mod fence_flags {
    /// The replicas' links of the fenced primary are let through (a planned switchover).
    pub const KEEP_REPLICAS: u32 = 1;
}

/// Why a peer is in the fence's allow map (the map's value): a restarted agent drops the entries
/// of the agent before it, whose connections are gone and whose ports a client may reuse.
pub mod allow_tag {
    /// One of the agent's own connections to the server.
    pub const AGENT: u32 = 1;
    /// A replica's replication link to the fenced primary.
    pub const REPLICA: u32 = 2;
}

/// Slots of the fence's per-CPU drop counters.
pub mod fence_drop {
    pub const INGRESS: u32 = 0;
    pub const EGRESS: u32 = 1;
    pub const LEN: u32 = 2;
}

/// A TCP peer of the server: the key of the fence's allow map. IPv4 addresses are stored
/// IPv4-mapped (`::ffff:a.b.c.d`), so one key type serves both families, and a dual-stack server
/// sees an IPv4 client the same way whichever family its socket has.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PeerKey {
    /// The peer's address in network order, IPv4 mapped into IPv6.
    pub addr: [u8; 16],
    /// The peer's TCP port, host order (a u32 so the key has no padding).
    pub port: u32,
}

impl PeerKey {
    /// The key of an IPv4 peer; `addr` in network order, as in the packet.
    #[inline(always)]
    pub const fn v4(addr: [u8; 4], port: u16) -> Self {
        let [a, b, c, d] = addr;
        Self {
            addr: [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, a, b, c, d],
            port: port as u32,
        }
    }

    /// The key of an IPv6 peer; `addr` in network order, as in the packet.
    #[inline(always)]
    pub const fn v6(addr: [u8; 16], port: u16) -> Self {
        Self {
            addr,
            port: port as u32,
        }
    }
}

/// The fence's state, in the single slot of its `FENCE_CONFIG` array. The programs read only the
/// port; the rest is the record a restarted agent needs to apply the same lifting rule.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FenceConfig {
    /// The epoch the fence began at.
    pub epoch: u64,
    /// The server's TCP port; 0 lets everything through.
    pub port: u32,
    /// One of [`fence_kind`].
    pub kind: u32,
    /// [`fence_flags`].
    pub flags: u32,
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

/// One slot of the `UNREAD` array: a server-port socket, when its oldest unread request bytes
/// arrived (0 when none wait), how far the server had read it then, and the thread seen reading
/// it.
///
/// No program runs on every arrival or read. A socket takes its slot when the server accepts it
/// (or, for one accepted before the agent looked, when the read probe sees the server read it),
/// and the agent's `scan_unread` runs look at each socket's sequence numbers every tick: bytes
/// wait unread while `rcv_nxt` differs from `copied_seq`.
///
/// A slot fills a whole cache line, so the kernel updating one socket's slot never moves the
/// line of another's between CPUs.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SockSlot {
    /// Kernel address of the socket, 0 for a free slot.
    pub sk: u64,
    /// When the oldest unread bytes arrived, as closely as the scan can tell (never earlier than
    /// they did), or 0.
    pub first_unread_ns: u64,
    /// When the last scan looked at this slot (or the socket took it): bytes a scan finds unread
    /// for the first time arrived after it.
    pub scanned_ns: u64,
    /// `vigil-agent watch` only: when bytes arrived that the server has not read yet, or 0.
    pub arrived_ns: u64,
    /// The thread seen reading this socket (while the read probe was attached), or 0.
    pub reader_tid: u32,
    /// The socket's `tcp_sock.copied_seq` (how far the server had read) when `first_unread_ns`
    /// was set: while it has not moved, the server has read nothing since.
    pub copied_seq: u32,
    /// The client's port (host order), so a stall can say whose request waits.
    pub peer_port: u32,
    pub _pad32: u32,
    pub _pad: [u64; 2],
}

/// The home `UNREAD` slot of the socket at kernel address `sk` (Fibonacci hashing: socket
/// addresses share their low bits, so the high bits of the product pick the slot).
#[inline(always)]
pub fn unread_slot(sk: u64) -> u32 {
    (sk.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> (64 - UNREAD_SLOT_BITS)) as u32
}

// Padding-free: each size is the plain sum of its fields.
const _: () = assert!(core::mem::size_of::<Event>() == 8 + 8 + 4 * 4);
const _: () = assert!(core::mem::size_of::<TpOffsets>() == 12 * 4);
const _: () = assert!(core::mem::size_of::<BtfOffsets>() == 10 * 4);
const _: () = assert!(core::mem::size_of::<Config>() == 8 + 2 * 4 + 10 * 4 + 12 * 4 + 2 * 4);
const _: () = assert!(core::mem::size_of::<ThreadState>() == 3 * 8 + 2 * 4);
const _: () = assert!(core::mem::size_of::<SockSlot>() == 4 * 8 + 4 * 4 + 2 * 8);
const _: () = assert!(core::mem::size_of::<SockSlot>() == 64);
const _: () = assert!(core::mem::size_of::<PeerKey>() == 16 + 4);
const _: () = assert!(core::mem::size_of::<FenceConfig>() == 8 + 4 * 4);

#[cfg(feature = "user")]
mod pod {
    // Each type is #[repr(C)], made only of integers, and has no padding (the size assertions
    // above), so every byte pattern is a valid value.

    // SAFETY: as above.
    unsafe impl aya::Pod for super::Event {}
    // SAFETY: as above; its `btf` and `tp` members are such types too.
    unsafe impl aya::Pod for super::Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::BtfOffsets {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::ThreadState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::SockSlot {}
    // SAFETY: as above (a byte array and an integer, no padding).
    unsafe impl aya::Pod for super::PeerKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FenceConfig {}
}
