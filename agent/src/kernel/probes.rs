//! The userspace half of the kernel programs: load and attach them, point them at a target
//! (and re-point them when the server restarts), drain the event ring buffer with tokio, and
//! read the per-thread, per-socket and histogram maps.
use std::{path::Path, time::Duration};

use aya::{
    Ebpf,
    maps::{Array, HashMap, MapData, PerCpuArray, PerCpuValues, RingBuf},
    programs::{
        RawTracePoint, RawTracePointRunOptions, TestRun, TracePoint,
        raw_trace_point::RawTracePointLinkId,
    },
    util::nr_cpus,
};
use tokio::io::{Interest, unix::AsyncFd};
use vigil_agent_ebpf::{
    Config, Event, HIST_BUCKETS, SCAN_BATCH, ThreadState, counter, thread_state,
};

use super::{btf, classifier::Unread, clock::monotonic_ns, slots::UnreadSlots, tracefs};
use crate::{
    error::{AgentError, Result},
    host::target,
};

/// `BPF_NOEXIST` from include/uapi/linux/bpf.h (aya does not export it): an update that only
/// creates an entry, never replaces one.
const BPF_NOEXIST: u64 = 1;

static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/vigil-probes"));

/// Raw tracepoints on the hot paths: (program, tracepoint name).
const RAW_PROGRAMS: &[(&str, &str)] = &[
    ("sched_switch", "sched_switch"),
    ("sched_wakeup", "sched_wakeup"),
    ("tcp_destroy_sock", "tcp_destroy_sock"),
];

/// Runs on every segment with data on the host: attached only by `vigil-agent watch`
/// (`every_read`), to time each request from arrival to read.
const ARRIVAL_PROGRAM: (&str, &str) = ("sk_data_ready", "sk_data_ready");

/// The read probe: it runs on every socket read on the host, so it is attached only while the
/// agent wants to learn which thread reads which socket (see [`Probes::set_read_probe`]).
const READ_PROGRAM: (&str, &str) = ("sock_recv_length", "sock_recv_length");

/// Never attached: run every tick to bring the sockets' unread stamps up to date (see
/// [`Probes::oldest_unread`]).
const SCAN_PROGRAM: &str = "scan_unread";

/// Classic tracepoints for the rare events: (program, tracepoint category, tracepoint name).
const PROGRAMS: &[(&str, &str, &str)] = &[
    ("sched_process_exit", "sched", "sched_process_exit"),
    ("inet_sock_set_state", "sock", "inet_sock_set_state"),
    ("tcp_receive_reset", "tcp", "tcp_receive_reset"),
    ("tcp_send_reset", "tcp", "tcp_send_reset"),
    ("tcp_retransmit_skb", "tcp", "tcp_retransmit_skb"),
];

/// The length of one jiffy, the unit of the kernel's TCP receive timestamps: the resolution of
/// the coarse clock, which ticks with jiffies.
fn jiffy_ns() -> Result<u32> {
    let res = nix::time::clock_getres(nix::time::ClockId::CLOCK_MONOTONIC_COARSE)
        .map_err(|e| AgentError::io("reading the coarse clock's resolution", e.into()))?;
    let ns = res.tv_sec() as u64 * 1_000_000_000 + res.tv_nsec() as u64;
    u32::try_from(ns).ok().filter(|&ns| ns > 0).ok_or_else(|| {
        AgentError::io(
            "reading the coarse clock's resolution",
            std::io::Error::other(format!("a jiffy of {ns} ns")),
        )
    })
}

/// Checks what loading needs, so the operator gets one clear line instead of a verifier dump.
pub fn preflight() -> Result<()> {
    if !Path::new(btf::VMLINUX_BTF).exists() {
        return Err(AgentError::NoBtf(btf::VMLINUX_BTF.into()));
    }
    tracefs::ensure_mounted()
}

pub struct Probes {
    // Owns the loaded programs and their links: dropping it detaches everything.
    ebpf: Ebpf,
    /// The read probe's link while it is attached.
    read_link: Option<RawTracePointLinkId>,
    config: Config,
    config_map: Array<MapData, Config>,
    events: AsyncFd<RingBuf<MapData>>,
    threads: HashMap<MapData, u32, ThreadState>,
    unread: UnreadSlots,
    last_reader: Array<MapData, u32>,
    counters: PerCpuArray<MapData, u64>,
    runq_hist: PerCpuArray<MapData, u64>,
    unread_hist: PerCpuArray<MapData, u64>,
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> AgentError {
    move |source| AgentError::Map { name, source }
}

fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T> {
    let map = ebpf
        .take_map(name)
        .ok_or(AgentError::MissingFromObject(name))?;
    T::try_from(map).map_err(map_err(name))
}

impl Probes {
    /// Loads and attaches every program, the read probe only with `every_read` (which also
    /// counts every read's unread age). They do nothing until [`Probes::set_target`].
    /// Must run inside a tokio runtime (the ring buffer is registered with its reactor).
    pub fn load(runq_threshold: Duration, every_read: bool) -> Result<Self> {
        preflight()?;
        let offsets = btf::kernel_offsets()?;
        let config = Config {
            runq_threshold_ns: runq_threshold.as_nanos() as u64,
            tgid: 0,
            port: 0,
            btf: offsets,
            tp: tracefs::tracepoint_offsets()?,
            unread_histogram: u32::from(every_read),
            jiffy_ns: jiffy_ns()?,
        };
        // Through the agent's one loader, which keeps no kernel BTF: the programs have no CO-RE
        // relocations (offsets come through CONFIG).
        let mut ebpf = super::loader::load(OBJECT)?;
        for &(name, tracepoint) in RAW_PROGRAMS {
            let err = |source| AgentError::Program { name, source };
            let program = raw_program(&mut ebpf, name)?;
            program.load().map_err(err)?;
            program.attach(tracepoint).map_err(err)?;
        }
        for &(name, category, tracepoint) in PROGRAMS {
            let err = |source| AgentError::Program { name, source };
            let program = ebpf
                .program_mut(name)
                .ok_or(AgentError::MissingFromObject(name))?;
            let program: &mut TracePoint = program.try_into().map_err(err)?;
            program.load().map_err(err)?;
            program.attach(category, tracepoint).map_err(err)?;
        }
        for name in [ARRIVAL_PROGRAM.0, READ_PROGRAM.0, SCAN_PROGRAM] {
            raw_program(&mut ebpf, name)?
                .load()
                .map_err(|source| AgentError::Program { name, source })?;
        }
        let mut config_map: Array<MapData, Config> = take(&mut ebpf, "CONFIG")?;
        config_map.set(0, config, 0).map_err(map_err("CONFIG"))?;
        let ring: RingBuf<MapData> = take(&mut ebpf, "EVENTS")?;
        // SAFETY: the ring buffer's fd is owned by `ring`, which the AsyncFd owns until dropped.
        let events =
            unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }.map_err(|e| {
                AgentError::io("registering the event ring buffer with tokio", e.into())
            })?;
        let mut probes = Self {
            read_link: None,
            config,
            config_map,
            events,
            threads: take(&mut ebpf, "THREADS")?,
            unread: match ebpf.take_map("UNREAD") {
                Some(aya::maps::Map::Array(data)) => UnreadSlots::map(data)?,
                _ => return Err(AgentError::MissingFromObject("UNREAD")),
            },
            last_reader: take(&mut ebpf, "LAST_READER")?,
            counters: take(&mut ebpf, "COUNTERS")?,
            runq_hist: take(&mut ebpf, "RUNQ_HIST")?,
            unread_hist: take(&mut ebpf, "UNREAD_HIST")?,
            ebpf,
        };
        if every_read {
            probes.set_read_probe(true)?;
            let (name, tracepoint) = ARRIVAL_PROGRAM;
            raw_program(&mut probes.ebpf, name)?
                .attach(tracepoint)
                .map_err(|source| AgentError::Program { name, source })?;
        }
        // Stall detection needs the scan run: a kernel that refuses it fails here, at start.
        probes.scan(&[0; SCAN_BATCH])?;
        Ok(probes)
    }

    /// Attaches (`on`) or detaches the read probe. While it is attached, each server read records
    /// its thread as the socket's reader, and clears the socket's stamp at once.
    pub fn set_read_probe(&mut self, on: bool) -> Result<()> {
        let (name, tracepoint) = READ_PROGRAM;
        let err = |source| AgentError::Program { name, source };
        let program = raw_program(&mut self.ebpf, name)?;
        match (on, self.read_link.take()) {
            (true, None) => self.read_link = Some(program.attach(tracepoint).map_err(err)?),
            (false, Some(link)) => program.detach(link).map_err(err)?,
            (_, link) => self.read_link = link, // already as asked
        }
        Ok(())
    }

    pub fn read_probe_attached(&self) -> bool {
        self.read_link.is_some()
    }

    /// Runs `scan_unread` on up to [`SCAN_BATCH`] slots, each given as its index + 1 (0: none).
    fn scan(&mut self, slots: &[u64; SCAN_BATCH]) -> Result<()> {
        let name = SCAN_PROGRAM;
        let program = raw_program(&mut self.ebpf, name)?;
        let mut opts = RawTracePointRunOptions::new();
        opts.args = *slots;
        program
            .test_run(opts)
            .map_err(|source| AgentError::Program { name, source })?;
        Ok(())
    }

    /// Points every program at `pid` and `port`, forgetting all state about the previous target.
    pub fn set_target(&mut self, pid: u32, port: u16) -> Result<()> {
        // Quiet the programs first so nothing about the old target lands in the cleared maps.
        let mut config = self.config;
        config.tgid = 0;
        self.config_map
            .set(0, config, 0)
            .map_err(map_err("CONFIG"))?;
        clear(&mut self.threads);
        self.unread.clear();
        self.last_reader
            .set(0, 0, 0)
            .map_err(map_err("LAST_READER"))?;
        let cpus = nr_cpus().map_err(|(_, e)| AgentError::io("counting CPUs", e))?;
        for i in 0..counter::LEN {
            let zeros = PerCpuValues::try_from(vec![0u64; cpus])
                .map_err(|e| AgentError::io("per-CPU zeros", e))?;
            self.counters
                .set(i, zeros, 0)
                .map_err(map_err("COUNTERS"))?;
        }
        config.tgid = pid;
        config.port = u32::from(port);
        self.config_map
            .set(0, config, 0)
            .map_err(map_err("CONFIG"))?;
        self.config = config;
        // Threads that have not switched since now would be unknown until they do: seed them.
        let now = monotonic_ns();
        for t in target::threads(pid)? {
            let state = match t.state {
                'R' => thread_state::RUNNING,
                'D' => thread_state::DISK,
                'T' | 't' => thread_state::STOPPED,
                _ => thread_state::SLEEPING,
            };
            let seed = ThreadState {
                since_ns: now,
                state,
                ..ThreadState::default()
            };
            // A thread the kernel already recorded knows better than procfs.
            match self.threads.insert(t.tid, seed, BPF_NOEXIST) {
                Ok(()) | Err(aya::maps::MapError::SyscallError(_)) => {}
                Err(e) => return Err(map_err("THREADS")(e)),
            }
        }
        Ok(())
    }

    /// Waits for kernel events and appends every one available to `out`.
    pub async fn next_events(&mut self, out: &mut Vec<Event>) -> Result<()> {
        let mut guard = self
            .events
            .readable_mut()
            .await
            .map_err(|e| AgentError::io("waiting on the event ring buffer", e))?;
        let ring = guard.get_inner_mut();
        while let Some(item) = ring.next() {
            if item.len() >= size_of::<Event>() {
                // SAFETY: the kernel wrote an `Event` (Pod) at the start of this record.
                out.push(unsafe { std::ptr::read_unaligned(item.as_ptr().cast::<Event>()) });
            }
        }
        guard.clear_ready();
        Ok(())
    }

    /// The oldest unread request on the server port, if any, with the thread expected to read
    /// it: the socket's last reader, else the target's last reader, else its main thread. Scans
    /// every tracked socket first, one `scan_unread` run per [`SCAN_BATCH`] sockets.
    pub fn oldest_unread(&mut self) -> Result<Option<Unread>> {
        let tracked: Vec<u64> = self.unread.tracked().map(|i| u64::from(i) + 1).collect();
        for chunk in tracked.chunks(SCAN_BATCH) {
            let mut slots = [0; SCAN_BATCH];
            slots[..chunk.len()].copy_from_slice(chunk);
            self.scan(&slots)?;
        }
        let Some(oldest) = self
            .unread
            .pending()
            .min_by_key(|slot| slot.first_unread_ns)
        else {
            return Ok(None);
        };
        let owner_tid = Some(oldest.reader_tid)
            .filter(|&t| t != 0)
            .or_else(|| self.last_reader.get(&0, 0).ok().filter(|&t| t != 0))
            .unwrap_or(self.config.tgid);
        Ok(Some(Unread {
            first_ns: oldest.first_unread_ns,
            owner_tid,
            peer_port: u16::try_from(oldest.peer_port).unwrap_or(0),
        }))
    }

    pub fn thread(&self, tid: u32) -> Option<ThreadState> {
        self.threads.get(&tid, 0).ok()
    }

    fn counter(&self, index: u32) -> u64 {
        self.counters
            .get(&index, 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    /// Threads of the target seen exiting since it was set.
    pub fn exited_threads(&self) -> u64 {
        self.counter(counter::EXITED_THREADS)
    }

    /// Events the kernel could not queue because the ring buffer was full.
    pub fn dropped_events(&self) -> u64 {
        self.counter(counter::EVENTS_DROPPED)
    }

    /// Server-port sockets seen since the target was set that found no free slot.
    pub fn untracked_sockets(&self) -> u64 {
        self.counter(counter::SOCKETS_UNTRACKED)
    }

    /// Run-queue waits of the target's threads: bucket i counts waits in [2^i, 2^(i+1)) ns.
    pub fn runq_histogram(&self) -> Vec<u64> {
        sum_histogram(&self.runq_hist)
    }

    /// Ages of request bytes when the server read them, in the same log2 buckets.
    pub fn unread_histogram(&self) -> Vec<u64> {
        sum_histogram(&self.unread_hist)
    }
}

fn raw_program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut RawTracePoint> {
    ebpf.program_mut(name)
        .ok_or(AgentError::MissingFromObject(name))?
        .try_into()
        .map_err(|source| AgentError::Program { name, source })
}

fn sum_histogram(map: &PerCpuArray<MapData, u64>) -> Vec<u64> {
    (0..HIST_BUCKETS)
        .map(|i| map.get(&i, 0).map(|v| v.iter().sum()).unwrap_or(0))
        .collect()
}

fn clear<K: aya::Pod, V: aya::Pod>(map: &mut HashMap<MapData, K, V>) {
    let keys: Vec<K> = map.keys().filter_map(|k| k.ok()).collect();
    for key in keys {
        // A key the kernel removed meanwhile is already gone, which is what we want.
        let _ = map.remove(&key);
    }
}
