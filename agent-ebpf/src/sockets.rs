//! The socket hooks: server-port sockets hold a slot of `UNREAD` from accept to destroy, and the
//! agent's `scan_unread` runs stamp each slot with the age of the bytes waiting unread on it. The
//! read probe (`sock_recv_length`) learns which thread reads which socket, and with
//! `sk_data_ready` (attached only by `vigil-agent watch`) times each request from arrival to read.
use aya_ebpf::{
    bindings::BPF_TCP_LISTEN, helpers::bpf_jiffies64, macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use vigil_agent_ebpf::{
    Config, SCAN_BATCH, SockSlot, UNREAD_PROBES, UNREAD_SLOTS, counter, unread_slot,
};

use crate::{
    IPPROTO_TCP, LAST_READER, UNREAD, UNREAD_HIST, bpf_now, bump, config, current, hist_add,
    read_kernel,
};

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
pub(crate) fn claim_slot(sk: u64, cfg: &Config) -> Option<&'static mut SockSlot> {
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
        && read_kernel::<u8>(sk, cfg.btf.sock_state).map(u32::from) != Some(BPF_TCP_LISTEN)
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
pub(crate) fn forget_socket(sk: u64) {
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
/// context. `vigil-agent watch` alone attaches this, to time each request from arrival to read for its
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
/// `vigil-agent watch` keeps it on for its per-request unread ages.
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
