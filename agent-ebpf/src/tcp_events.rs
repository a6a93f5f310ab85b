//! The TCP event hooks on the server port: accepted connections take an `UNREAD` slot and closed
//! ones give it back, and the listener closing or opening, resets either way, and retransmits go
//! to the agent as events.
use aya_ebpf::{
    bindings::{BPF_TCP_CLOSE, BPF_TCP_ESTABLISHED, BPF_TCP_LISTEN},
    macros::tracepoint,
    programs::TracePointContext,
};
use vigil_agent_ebpf::kind;

use crate::{
    IPPROTO_TCP, bpf_now, config, current, emit, read,
    sockets::{claim_slot, forget_socket},
};

/// A server-port socket changed TCP state: accepted (it takes a slot), closed (it gives its slot
/// back; a closed listener is an event), or listening (an event: maybe a restarted server).
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
    // Read as u32: the record's `int` states are small non-negative TCP states.
    let old = read::<u32>(&ctx, cfg.tp.state_oldstate).unwrap_or(0);
    let new = read::<u32>(&ctx, cfg.tp.state_newstate).unwrap_or(0);
    let now = bpf_now();
    if new == BPF_TCP_ESTABLISHED {
        // The server accepted a connection: from now on each scan looks at it.
        if let Some(sk) = read::<u64>(&ctx, cfg.tp.state_skaddr) {
            let _ = claim_slot(sk, cfg);
        }
    } else if new == BPF_TCP_CLOSE {
        // A closed socket has nothing left to read: forget it.
        if let Some(sk) = read::<u64>(&ctx, cfg.tp.state_skaddr) {
            forget_socket(sk);
        }
        if old == BPF_TCP_LISTEN {
            emit(kind::LISTENER_CLOSED, current().0, 0, 0, cfg.port, now);
        }
    } else if new == BPF_TCP_LISTEN {
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

/// A reset arrived on a server-port socket.
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

/// The kernel sent a reset from the server port.
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

/// A segment from the server port was retransmitted.
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
