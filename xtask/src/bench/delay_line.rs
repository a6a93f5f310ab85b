//! A delay line for a kernel without netem: iptables sends each packet of a node's link to
//! netfilter's queue (`NFQUEUE`), and a thread in that node's namespace lets it go (`NF_ACCEPT`)
//! once it has waited its delay, give or take the jitter, in the order it came. The packet
//! itself never leaves the kernel; the thread sees only its id. The thread runs at SCHED_FIFO so
//! the delay is the link's, not the scheduler's.
//!
//! The netlink messages (nfnetlink's queue subsystem, include/uapi/linux/netfilter/
//! nfnetlink_queue.h) are laid out by hand, as `agent::fence::sockets` does for sock_diag.
use std::{
    collections::VecDeque,
    os::fd::{AsRawFd, OwnedFd},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, recv, sendto, socket,
};

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NFNL_SUBSYS_QUEUE: u16 = 3;
const NFQNL_MSG_PACKET: u16 = 0;
const NFQNL_MSG_VERDICT: u16 = 1;
const NFQNL_MSG_CONFIG: u16 = 2;
const NFQA_PACKET_HDR: u16 = 1;
const NFQA_VERDICT_HDR: u16 = 2;
const NFQA_CFG_CMD: u16 = 1;
const NFQA_CFG_PARAMS: u16 = 2;
const NFQNL_CFG_CMD_BIND: u8 = 1;
/// Only the packet's metadata comes up: its id is all a delay needs.
const NFQNL_COPY_META: u8 = 1;
const NF_ACCEPT: u32 = 1;
/// How often a thread with nothing due looks whether it should stop.
const IDLE: Duration = Duration::from_millis(20);

/// The threads of a delay line, one per namespace; stopped on drop.
pub struct DelayLine {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl DelayLine {
    /// Starts a thread in each of `namespaces` holding the packets of `queues` for `delay` ±
    /// `jitter`. Returns once each has bound its queues.
    pub fn start(
        namespaces: &[String],
        queues: &[u16],
        delay: Duration,
        jitter: Duration,
    ) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut line = Self {
            stop: Arc::clone(&stop),
            threads: Vec::new(),
        };
        for (n, netns) in namespaces.iter().enumerate() {
            let (ready_tx, ready) = std::sync::mpsc::channel();
            let (netns, queues, stop) = (netns.clone(), queues.to_vec(), Arc::clone(&stop));
            line.threads.push(std::thread::spawn(move || {
                let bound = Queue::open(&netns, &queues);
                match bound {
                    Ok(queue) => {
                        let _ = ready_tx.send(Ok(()));
                        queue.run(delay, jitter, n as u64 + 1, &stop);
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                    }
                }
            }));
            ready
                .recv()
                .context("the delay line's thread ended")?
                .with_context(|| format!("the delay line in {}", namespaces[n]))?;
        }
        Ok(line)
    }
}

impl Drop for DelayLine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A netlink socket bound to netfilter's queues in one namespace.
struct Queue {
    fd: OwnedFd,
}

impl Queue {
    /// Enters `netns` (this thread only), raises the thread to SCHED_FIFO, opens the socket there
    /// and binds `queues`.
    fn open(netns: &str, queues: &[u16]) -> Result<Self> {
        super::lab::enter_path(&format!("/var/run/netns/{netns}"))?;
        let param = nix::libc::sched_param { sched_priority: 20 };
        // SAFETY: sched_setscheduler on the calling thread (0) with a valid parameter; failing
        // only leaves the thread at the normal policy.
        let _ = unsafe { nix::libc::sched_setscheduler(0, nix::libc::SCHED_FIFO, &param) };
        let fd = socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkNetFilter,
        )
        .context("a netfilter netlink socket")?;
        let q = Self { fd };
        for &queue in queues {
            q.configure(queue, NFQA_CFG_CMD, &[NFQNL_CFG_CMD_BIND, 0, 0, 0])?;
            let mut params = 0xffffu32.to_be_bytes().to_vec();
            params.push(NFQNL_COPY_META);
            q.configure(queue, NFQA_CFG_PARAMS, &params)?;
        }
        Ok(q)
    }

    fn configure(&self, queue: u16, attr: u16, value: &[u8]) -> Result<()> {
        let mut m = message(NFQNL_MSG_CONFIG, NLM_F_REQUEST | NLM_F_ACK, queue);
        attribute(&mut m, attr, value);
        finish(&mut m);
        self.send(&m)?;
        let mut buf = [0u8; 512];
        let n = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::empty())
            .context("netfilter queue: no acknowledgement")?;
        for (kind, payload) in messages(&buf[..n]) {
            if kind == NLMSG_ERROR {
                let errno = payload
                    .get(0..4)
                    .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                if errno != 0 {
                    bail!(
                        "netfilter queue {queue}: {}",
                        std::io::Error::from_raw_os_error(-errno)
                    );
                }
            }
        }
        Ok(())
    }

    fn send(&self, m: &[u8]) -> Result<()> {
        sendto(
            self.fd.as_raw_fd(),
            m,
            &NetlinkAddr::new(0, 0),
            MsgFlags::empty(),
        )
        .context("netfilter queue: sending")?;
        Ok(())
    }

    fn accept(&self, queue: u16, id: u32) {
        let mut m = message(NFQNL_MSG_VERDICT, NLM_F_REQUEST, queue);
        let mut verdict = NF_ACCEPT.to_be_bytes().to_vec();
        verdict.extend_from_slice(&id.to_be_bytes());
        attribute(&mut m, NFQA_VERDICT_HDR, &verdict);
        finish(&mut m);
        let _ = self.send(&m);
    }

    /// Holds each packet until it is due, then lets it go; until `stop`.
    fn run(&self, delay: Duration, jitter: Duration, seed: u64, stop: &AtomicBool) {
        let mut rng = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        // Per queue, in arrival order: (due, queue, id). A packet is never let go before one
        // that came earlier on its queue, so the line does not reorder a flow.
        let mut held: Vec<VecDeque<(Instant, u16, u32)>> = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            for q in &mut held {
                while q.front().is_some_and(|(due, _, _)| *due <= now) {
                    if let Some((_, queue, id)) = q.pop_front() {
                        self.accept(queue, id);
                    }
                }
            }
            let next = held
                .iter()
                .filter_map(|q| q.front())
                .map(|(d, _, _)| *d)
                .min();
            let wait = next.map_or(IDLE, |d| d.saturating_duration_since(Instant::now()));
            if !self.readable(wait) {
                continue;
            }
            let Ok(n) = recv(self.fd.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT) else {
                continue;
            };
            let now = Instant::now();
            for (kind, payload) in messages(&buf[..n]) {
                if kind != (NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_PACKET) || payload.len() < 4 {
                    continue;
                }
                let queue = u16::from_be_bytes([payload[2], payload[3]]);
                let Some(id) = packet_id(&payload[4..]) else {
                    continue;
                };
                // Uniform in delay ± jitter.
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                let span = jitter.as_nanos() as u64 * 2 + 1;
                let offset = Duration::from_nanos(rng % span);
                let due = now + delay + offset - jitter;
                let slot = usize::from(queue);
                if held.len() <= slot {
                    held.resize_with(slot + 1, VecDeque::new);
                }
                let last = held[slot].back().map_or(due, |(d, _, _)| *d);
                held[slot].push_back((due.max(last), queue, id));
            }
        }
    }

    /// Waits up to `wait` for the socket to have something to read.
    fn readable(&self, wait: Duration) -> bool {
        let mut pfd = nix::libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: nix::libc::POLLIN,
            revents: 0,
        };
        let ts = nix::libc::timespec {
            tv_sec: wait.as_secs() as nix::libc::time_t,
            tv_nsec: wait.subsec_nanos() as nix::libc::c_long,
        };
        // SAFETY: one pollfd that lives across the call, a valid timespec, no signal mask.
        let n = unsafe { nix::libc::ppoll(&mut pfd, 1, &ts, std::ptr::null()) };
        n > 0
    }
}

/// A netlink header and nfgenmsg for queue subsystem message `kind` on `queue`; its length is
/// set by [`finish`].
fn message(kind: u16, flags: u16, queue: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(64);
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(&(NFNL_SUBSYS_QUEUE << 8 | kind).to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // sequence
    m.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
    // nfgenmsg: AF_UNSPEC, version 0, the queue (big endian).
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&queue.to_be_bytes());
    m
}

fn attribute(m: &mut Vec<u8>, kind: u16, value: &[u8]) {
    m.extend_from_slice(&((4 + value.len()) as u16).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(value);
    m.resize(m.len().next_multiple_of(4), 0);
}

fn finish(m: &mut [u8]) {
    let len = (m.len() as u32).to_ne_bytes();
    m[..4].copy_from_slice(&len);
}

/// The (type, payload) of each netlink message in `buf`.
fn messages(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < NLMSG_HDRLEN {
            return None;
        }
        let len = u32::from_ne_bytes(buf[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(buf[4..6].try_into().ok()?);
        if len < NLMSG_HDRLEN || len > buf.len() {
            return None;
        }
        let payload = &buf[NLMSG_HDRLEN..len];
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        Some((kind, payload))
    })
}

/// The packet id in a queued packet's attributes (NFQA_PACKET_HDR: id, hw protocol, hook).
fn packet_id(mut attrs: &[u8]) -> Option<u32> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            return None;
        }
        if kind == NFQA_PACKET_HDR && len >= 8 {
            return Some(u32::from_be_bytes([attrs[4], attrs[5], attrs[6], attrs[7]]));
        }
        attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_verdict_names_its_queue_and_packet() {
        let mut m = message(NFQNL_MSG_VERDICT, NLM_F_REQUEST, 1);
        let mut v = NF_ACCEPT.to_be_bytes().to_vec();
        v.extend_from_slice(&77u32.to_be_bytes());
        attribute(&mut m, NFQA_VERDICT_HDR, &v);
        finish(&mut m);
        let (kind, payload) = messages(&m).next().expect("one message");
        assert_eq!(kind, NFNL_SUBSYS_QUEUE << 8 | NFQNL_MSG_VERDICT);
        assert_eq!(&payload[2..4], &1u16.to_be_bytes());
        assert_eq!(u32::from_be_bytes(payload[12..16].try_into().unwrap()), 77);
        assert_eq!(m.len(), NLMSG_HDRLEN + 4 + 12);
    }

    #[test]
    fn a_queued_packets_id_is_read_from_its_header() {
        let mut attrs = Vec::new();
        attribute(&mut attrs, 9, &[1, 2, 3]);
        attribute(&mut attrs, NFQA_PACKET_HDR, &[0, 0, 1, 2, 8, 0, 3]);
        assert_eq!(packet_id(&attrs), Some(258));
        assert_eq!(packet_id(&[]), None);
    }
}
