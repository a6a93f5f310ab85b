//! Kernel struct offsets from BTF (/sys/kernel/btf/vmlinux).
//!
//! Rust eBPF programs get no CO-RE relocations, so every kernel struct field the programs read
//! has its offset resolved here at start-up and passed in through `CONFIG`.
use std::path::Path;

use btf_rs::{Backend, Btf, Type};
use vigil_agent_ebpf::BtfOffsets;

use crate::error::{AgentError, Result};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The kernel struct offsets the programs need, in bytes.
pub fn kernel_offsets() -> Result<BtfOffsets> {
    let path = Path::new(VMLINUX_BTF);
    if !path.exists() {
        return Err(AgentError::NoBtf(path.into()));
    }
    // Mapped and read lazily, the kernel's BTF costs the agent a few MiB; parsed into memory, it
    // would set the agent's peak RSS. Kernels before 6.16 cannot map it: parse it there.
    let btf = Btf::from_file_with_backend(path, Backend::Mmap)
        .or_else(|_| Btf::from_file(path))
        .map_err(|e| AgentError::Btf(format!("parsing {VMLINUX_BTF}: {e}")))?;
    let task_pid = member_offset(&btf, "task_struct", "pid")?;
    // The programs read pid and tgid as one u64; every kernel so far declares them side by side.
    if member_offset(&btf, "task_struct", "tgid")? != task_pid + 4 {
        return Err(AgentError::Btf(
            "task_struct.tgid does not directly follow task_struct.pid on this kernel".into(),
        ));
    }
    Ok(BtfOffsets {
        task_exit_code: member_offset(&btf, "task_struct", "exit_code")?,
        task_pid,
        sock_num: member_offset(&btf, "sock_common", "skc_num")?,
        sock_dport: member_offset(&btf, "sock_common", "skc_dport")?,
        sock_state: member_offset(&btf, "sock_common", "skc_state")?,
        sock_protocol: member_offset(&btf, "sock", "sk_protocol")?,
        tcp_copied_seq: member_offset(&btf, "tcp_sock", "copied_seq")?,
        tcp_rcv_nxt: member_offset(&btf, "tcp_sock", "rcv_nxt")?,
        tcp_lrcvtime: member_offset(&btf, "tcp_sock", "inet_conn")?
            + member_path_offset(&btf, "inet_connection_sock", &["icsk_ack", "lrcvtime"])?,
        _pad: 0,
    })
}

/// Byte offset of `member` in `struct name`, looking through anonymous structs and unions. A
/// member the programs cannot read with one plain load (a bitfield) is an error.
pub fn member_offset(btf: &Btf, name: &str, member: &str) -> Result<u32> {
    let missing = || AgentError::Btf(format!("no member {name}.{member}"));
    let types = btf.resolve_types_by_name(name).map_err(|_| missing())?;
    for ty in types {
        if let Type::Struct(s) = ty
            && let Some((bits, bitfield, _)) = find_member(btf, &s, member)
        {
            if bitfield || bits % 8 != 0 {
                return Err(AgentError::Btf(format!(
                    "{name}.{member} is a bitfield on this kernel"
                )));
            }
            return Ok(bits / 8);
        }
    }
    Err(missing())
}

/// Byte offset of a member of a member: `path` names one member per level, each but the last a
/// struct or union (`["icsk_ack", "lrcvtime"]` is `icsk_ack.lrcvtime`).
pub fn member_path_offset(btf: &Btf, name: &str, path: &[&str]) -> Result<u32> {
    let dotted = path.join(".");
    let missing = || AgentError::Btf(format!("no member {name}.{dotted}"));
    let types = btf.resolve_types_by_name(name).map_err(|_| missing())?;
    let mut current = types
        .into_iter()
        .find_map(|ty| match ty {
            Type::Struct(s) => Some(s),
            _ => None,
        })
        .ok_or_else(missing)?;
    let mut bits = 0;
    for (depth, member) in path.iter().enumerate() {
        let (offset, bitfield, ty) = find_member(btf, &current, member).ok_or_else(missing)?;
        bits += offset;
        if depth + 1 == path.len() {
            if bitfield || bits % 8 != 0 {
                return Err(AgentError::Btf(format!(
                    "{name}.{dotted} is a bitfield on this kernel"
                )));
            }
            return Ok(bits / 8);
        }
        current = match ty {
            Some(Type::Struct(inner) | Type::Union(inner)) => inner,
            _ => return Err(missing()),
        };
    }
    Err(missing())
}

/// Bit offset of `member` inside `s`, whether it is a bitfield, and its type (through typedefs
/// and qualifiers), descending into anonymous members (bounded by BTF depth).
fn find_member(btf: &Btf, s: &btf_rs::Struct, member: &str) -> Option<(u32, bool, Option<Type>)> {
    for m in &s.members {
        let m_name = btf.resolve_name(m).unwrap_or_default();
        if m_name == member {
            // With kind_flag set, every member carries a size; 0 means a plain member.
            let bitfield = m.bitfield_size().unwrap_or(0) != 0;
            return Some((m.bit_offset(), bitfield, resolved_type(btf, m)));
        }
        if m_name.is_empty()
            && let Some(Type::Struct(inner) | Type::Union(inner)) = resolved_type(btf, m)
            && let Some((off, bitfield, ty)) = find_member(btf, &inner, member)
        {
            return Some((m.bit_offset() + off, bitfield, ty));
        }
    }
    None
}

/// A member's type with typedefs and qualifiers looked through (bounded by BTF depth).
fn resolved_type(btf: &Btf, m: &btf_rs::Member) -> Option<Type> {
    let mut ty = btf.resolve_chained_type(m).ok()?;
    for _ in 0..16 {
        ty = match ty {
            Type::Typedef(_) | Type::Const(_) | Type::Volatile(_) | Type::Restrict(_) => {
                btf.resolve_chained_type(ty.as_btf_type()?).ok()?
            }
            other => return Some(other),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reads this machine's kernel BTF: a parser test against the real thing, not a fixture.
    #[test]
    fn resolves_offsets_from_this_kernels_btf() {
        if !Path::new(VMLINUX_BTF).exists() {
            panic!("{VMLINUX_BTF} is missing: vigil needs a kernel with BTF");
        }
        let offsets = kernel_offsets().expect("offsets");
        // exit_code and pid are deep inside task_struct.
        assert!(offsets.task_exit_code > 256, "{offsets:?}");
        assert!(offsets.task_pid > 256, "{offsets:?}");
        // skc_num sits inside anonymous unions of sock_common, after the addresses and the hash.
        assert!((8..64).contains(&offsets.sock_num), "{offsets:?}");
        // skc_dport and skc_num share the port pair, the peer's port first.
        assert_eq!(offsets.sock_dport + 2, offsets.sock_num, "{offsets:?}");
        // skc_state follows the port pair and the family.
        assert!(offsets.sock_state > offsets.sock_num, "{offsets:?}");
        // struct sock begins with its sock_common, so sk_protocol lies past it.
        assert!(offsets.sock_protocol > offsets.sock_state, "{offsets:?}");
        // tcp_sock begins with a whole inet_connection_sock, which begins with the struct sock.
        assert!(
            offsets.tcp_copied_seq > offsets.sock_protocol + 256,
            "{offsets:?}"
        );
        // rcv_nxt is tcp_sock's own too; lrcvtime sits in the inet_connection_sock before both.
        assert!(
            offsets.tcp_rcv_nxt > offsets.sock_protocol + 256,
            "{offsets:?}"
        );
        assert!(
            offsets.tcp_lrcvtime > offsets.sock_protocol
                && offsets.tcp_lrcvtime < offsets.tcp_copied_seq.min(offsets.tcp_rcv_nxt),
            "{offsets:?}"
        );
        let btf = Btf::from_file(VMLINUX_BTF).expect("btf");
        assert!(member_offset(&btf, "task_struct", "no_such_member_here").is_err());
        // A path through a named member that is not a struct stops there.
        assert!(member_path_offset(&btf, "task_struct", &["pid", "x"]).is_err());
        assert_eq!(
            member_path_offset(&btf, "task_struct", &["pid"]).expect("pid"),
            offsets.task_pid
        );
    }
}
