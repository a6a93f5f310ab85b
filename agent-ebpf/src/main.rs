//! vigil's kernel programs: they watch one server process (the target) and its TCP port.
//!
//! Every program first checks the target in `CONFIG`, so the agent can follow a restarted server
//! by rewriting that map, without reloading anything. Programs keep per-thread scheduler state in
//! `THREADS`, per-socket unread request bytes in the `UNREAD` slots, log2 histograms in per-CPU
//! arrays, and send discrete events through the `EVENTS` ring buffer. Stalls are the absence of
//! events, so the agent's classifier reads `UNREAD` and `THREADS` against the clock; nothing here
//! waits.
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
//!
//! The programs, by hook family:
//! - [`scheduler`]: `sched_switch`, `sched_wakeup`, `sched_process_exit`: thread states, run-queue
//!   waits, stops, continues and the exit.
//! - [`sockets`]: the `UNREAD` slots, `scan_unread`, `sk_data_ready`, `sock_recv_length` and
//!   `tcp_destroy_sock`: requests the server has not read.
//! - [`tcp_events`]: `inet_sock_set_state`, `tcp_receive_reset`, `tcp_send_reset`,
//!   `tcp_retransmit_skb`: accepted connections, the listener, resets and retransmits.
//!
//! This file holds the maps and the small helpers they all share; the types shared with the agent
//! are in the library (`lib.rs`).
#![no_std]
#![no_main]

mod scheduler;
mod sockets;
mod tcp_events;

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_RB_FORCE_WAKEUP},
    helpers::{bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use vigil_agent_ebpf::{
    Config, Event, HIST_BUCKETS, MAX_THREADS, RINGBUF_BYTES, SockSlot, ThreadState, UNREAD_SLOTS,
    counter,
};

#[map]
static CONFIG: Array<Config> = Array::with_max_entries(1, 0);
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(RINGBUF_BYTES, 0);
#[map]
static THREADS: HashMap<u32, ThreadState> = HashMap::with_max_entries(MAX_THREADS, 0);
// Mappable: the agent scans every slot each tick with plain loads, not a syscall per slot.
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

/// `IPPROTO_TCP` from include/uapi/linux/in.h (the bindings do not carry it): `sk_protocol` and
/// the `protocol` field of inet_sock_set_state hold it for TCP sockets.
const IPPROTO_TCP: u16 = 6;

/// The target's configuration, or None while the agent points the programs at no target.
#[inline(always)]
fn config() -> Option<&'static Config> {
    let cfg = CONFIG.get(0)?;
    if cfg.tgid == 0 { None } else { Some(cfg) }
}

/// (tgid, pid) of the task running now: the process and the thread.
#[inline(always)]
fn current() -> (u32, u32) {
    let id = bpf_get_current_pid_tgid();
    ((id >> 32) as u32, id as u32)
}

/// CLOCK_MONOTONIC in ns, the clock the agent reads too.
#[inline(always)]
fn bpf_now() -> u64 {
    // SAFETY: a helper with no arguments that only reads the clock.
    unsafe { bpf_ktime_get_ns() }
}

/// A field of a classic tracepoint's record at `offset`.
#[inline(always)]
fn read<T>(ctx: &TracePointContext, offset: u32) -> Option<T> {
    // SAFETY: the offset comes from this kernel's tracefs format for this tracepoint, and
    // read_at goes through bpf_probe_read_kernel, so a bad offset is an error, never a fault.
    unsafe { ctx.read_at::<T>(offset as usize).ok() }
}

/// A field of a kernel struct at `base + offset`, the offset taken from this kernel's BTF.
#[inline(always)]
fn read_kernel<T>(base: u64, offset: u32) -> Option<T> {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one is an error, never a fault.
    unsafe { bpf_probe_read_kernel((base + u64::from(offset)) as *const T).ok() }
}

/// Sends one event to the agent, or counts it as dropped when the ring buffer is full.
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
            entry.submit(u64::from(BPF_RB_FORCE_WAKEUP));
        }
        None => bump(counter::EVENTS_DROPPED),
    }
}

/// Adds one to a `COUNTERS` slot on this CPU.
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

/// Counts `value_ns` in its log2 bucket of `hist`, on this CPU.
#[inline(always)]
fn hist_add(hist: &PerCpuArray<u64>, value_ns: u64) {
    let bucket = if value_ns == 0 { 0 } else { log2(value_ns) };
    if let Some(slot) = hist.get_ptr_mut(bucket) {
        // SAFETY: per-CPU slot, only this CPU writes it, and preemption is off in these programs.
        unsafe { *slot += 1 };
    }
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
