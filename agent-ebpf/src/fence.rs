//! vigil's fence: two `cgroup_skb` programs, ingress and egress, that cut a deposed primary off
//! from its clients in the kernel, where a stopped or misbehaving server cannot get around them.
//!
//! An object of its own (the agent loads one per fence, with maps of its own, and pins it), and
//! attached to the server's cgroup only while the fence is up: no packet on the host pays for
//! it otherwise.
//!
//! Only TCP on the server's port is looked at (ingress: the destination port; egress: the
//! source port). There, a packet passes when its peer (ingress: source address and port; egress:
//! destination address and port) is in `FENCE_ALLOW`: the agent's own connections, and the
//! replicas' links of a primary fenced for a planned switchover. An egress packet with no TCP
//! payload passes too: an RST, FIN or bare ACK carries no reply, and the RST of a connection the
//! agent destroys must reach the client so it fails over at once. Everything else is dropped.
//!
//! Anything that is not IPv4 or IPv6 TCP passes: the fence is about the server's TCP port.
#![no_std]
#![no_main]

use aya_ebpf::{
    macros::{cgroup_skb, map},
    maps::{Array, HashMap, PerCpuArray},
    programs::SkBuffContext,
};
use vigil_agent_ebpf::{FenceConfig, MAX_FENCE_PEERS, PeerKey, fence_drop};

#[map]
static FENCE_CONFIG: Array<FenceConfig> = Array::with_max_entries(1, 0);
#[map]
static FENCE_ALLOW: HashMap<PeerKey, u32> = HashMap::with_max_entries(MAX_FENCE_PEERS, 0);
#[map]
static FENCE_DROPS: PerCpuArray<u64> = PerCpuArray::with_max_entries(fence_drop::LEN, 0);

/// cgroup_skb verdicts.
const PASS: i32 = 1;
const DROP: i32 = 0;

/// `IPPROTO_TCP` from include/uapi/linux/in.h.
const IPPROTO_TCP: u8 = 6;
/// IPv6 extension headers walked to find TCP: hop-by-hop options, routing, destination options
/// (include/uapi/linux/in6.h). Each starts with the next header and its length in 8-byte units,
/// not counting the first 8.
const IPV6_HOPOPTS: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_DSTOPTS: u8 = 60;
/// At most this many extension headers are walked; TCP from Linux carries none.
const IPV6_MAX_EXT: usize = 4;

/// Client traffic into the server: dropped unless its sender is allowed.
#[cgroup_skb(ingress)]
pub fn fence_ingress(ctx: SkBuffContext) -> i32 {
    filter(&ctx, true)
}

/// The server's traffic out: dropped when it carries bytes to a peer not allowed.
#[cgroup_skb(egress)]
pub fn fence_egress(ctx: SkBuffContext) -> i32 {
    filter(&ctx, false)
}

/// What the filter needs of one TCP packet, from the fenced socket's side.
struct Segment {
    local_port: u16,
    peer: PeerKey,
    /// Bytes of TCP payload.
    payload: u32,
}

#[inline(always)]
fn filter(ctx: &SkBuffContext, ingress: bool) -> i32 {
    let Some(cfg) = FENCE_CONFIG.get(0) else {
        return PASS;
    };
    if cfg.port == 0 {
        return PASS;
    }
    let Some(seg) = parse(ctx, ingress) else {
        return PASS;
    };
    if u32::from(seg.local_port) != cfg.port {
        return PASS;
    }
    if !ingress && seg.payload == 0 {
        return PASS;
    }
    // Only presence matters: the value (why the peer is allowed) is the agent's.
    if FENCE_ALLOW.get_ptr(seg.peer).is_some() {
        return PASS;
    }
    count_drop(if ingress {
        fence_drop::INGRESS
    } else {
        fence_drop::EGRESS
    });
    DROP
}

#[inline(always)]
fn count_drop(slot: u32) {
    if let Some(ptr) = FENCE_DROPS.get_ptr_mut(slot) {
        // SAFETY: a per-CPU slot, written only on this CPU, and these programs are not
        // preempted.
        unsafe { *ptr += 1 };
    }
}

/// The TCP segment in the packet, or None for anything else. cgroup_skb programs see the packet
/// from its network header on, in both directions.
#[inline(always)]
fn parse(ctx: &SkBuffContext, ingress: bool) -> Option<Segment> {
    let first: u8 = ctx.load(0).ok()?;
    match first >> 4 {
        4 => {
            let header_len = usize::from(first & 0x0f) * 4;
            if header_len < 20 {
                return None;
            }
            let protocol: u8 = ctx.load(9).ok()?;
            if protocol != IPPROTO_TCP {
                return None;
            }
            // Only the first fragment carries the TCP header (TCP sets DF, so this is rare).
            let fragment = u16::from_be(ctx.load::<u16>(6).ok()?);
            if fragment & 0x1fff != 0 {
                return None;
            }
            // The peer is the source coming in and the destination going out.
            let addr: [u8; 4] = ctx.load(if ingress { 12 } else { 16 }).ok()?;
            tcp(ctx, header_len, ingress, |port| PeerKey::v4(addr, port))
        }
        6 => {
            let mut next: u8 = ctx.load(6).ok()?;
            let mut offset = 40;
            for _ in 0..IPV6_MAX_EXT {
                if !matches!(next, IPV6_HOPOPTS | IPV6_ROUTING | IPV6_DSTOPTS) {
                    break;
                }
                let ext: [u8; 2] = ctx.load(offset).ok()?;
                next = ext[0];
                offset += (usize::from(ext[1]) + 1) * 8;
            }
            if next != IPPROTO_TCP {
                return None;
            }
            let addr: [u8; 16] = ctx.load(if ingress { 8 } else { 24 }).ok()?;
            tcp(ctx, offset, ingress, |port| PeerKey::v6(addr, port))
        }
        _ => None,
    }
}

/// The segment whose TCP header starts at `offset`; `peer` makes the key from the peer's port.
#[inline(always)]
fn tcp(
    ctx: &SkBuffContext,
    offset: usize,
    ingress: bool,
    peer: impl FnOnce(u16) -> PeerKey,
) -> Option<Segment> {
    let ports: [u8; 4] = ctx.load(offset).ok()?;
    let source = u16::from_be_bytes([ports[0], ports[1]]);
    let destination = u16::from_be_bytes([ports[2], ports[3]]);
    let data_offset: u8 = ctx.load(offset + 12).ok()?;
    let header_len = u32::from(data_offset >> 4) * 4;
    // skb->len counts from the network header, and a GSO packet's full length, so this is the
    // payload of every segment it becomes.
    let payload = ctx.len().saturating_sub(offset as u32 + header_len);
    let (local_port, peer_port) = if ingress {
        (destination, source)
    } else {
        (source, destination)
    };
    Some(Segment {
        local_port,
        peer: peer(peer_port),
        payload,
    })
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
