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
        sock_state: member_offset(&btf, "sock_common", "skc_state")?,
        sock_protocol: member_offset(&btf, "sock", "sk_protocol")?,
        tcp_copied_seq: member_offset(&btf, "tcp_sock", "copied_seq")?,
    })
}

/// Byte offset of `member` in `struct name`, looking through anonymous structs and unions. A
/// member the programs cannot read with one plain load (a bitfield) is an error.
pub fn member_offset(btf: &Btf, name: &str, member: &str) -> Result<u32> {
    let missing = || AgentError::Btf(format!("no member {name}.{member}"));
    let types = btf.resolve_types_by_name(name).map_err(|_| missing())?;
    for ty in types {
        if let Type::Struct(s) = ty
            && let Some((bits, bitfield)) = find_member(btf, &s, member)
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

/// Bit offset of `member` inside `s`, and whether it is a bitfield, descending into anonymous
/// members (bounded by BTF depth).
fn find_member(btf: &Btf, s: &btf_rs::Struct, member: &str) -> Option<(u32, bool)> {
    for m in &s.members {
        let m_name = btf.resolve_name(m).unwrap_or_default();
        if m_name == member {
            // With kind_flag set, every member carries a size; 0 means a plain member.
            return Some((m.bit_offset(), m.bitfield_size().unwrap_or(0) != 0));
        }
        if m_name.is_empty()
            && let Ok(Type::Struct(inner) | Type::Union(inner)) = btf.resolve_chained_type(m)
            && let Some((off, bitfield)) = find_member(btf, &inner, member)
        {
            return Some((m.bit_offset() + off, bitfield));
        }
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
        // skc_state follows the port pair and the family.
        assert!(offsets.sock_state > offsets.sock_num, "{offsets:?}");
        // struct sock begins with its sock_common, so sk_protocol lies past it.
        assert!(offsets.sock_protocol > offsets.sock_state, "{offsets:?}");
        // tcp_sock begins with a whole inet_connection_sock, which begins with the struct sock.
        assert!(
            offsets.tcp_copied_seq > offsets.sock_protocol + 256,
            "{offsets:?}"
        );
        let btf = Btf::from_file(VMLINUX_BTF).expect("btf");
        assert!(member_offset(&btf, "task_struct", "no_such_member_here").is_err());
    }
}
