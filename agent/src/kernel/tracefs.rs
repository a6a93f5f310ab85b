//! tracefs: mounting it when absent, and reading tracepoint record layouts from `format` files.
//!
//! The kernel programs read classic tracepoint records at offsets taken from here, so a kernel
//! that moves a field keeps working, and one that drops a field fails at start-up with a message
//! naming it instead of reading garbage.
use std::{collections::HashMap, path::Path};

use vigil_agent_ebpf::TpOffsets;

use crate::error::{AgentError, Result};

pub const TRACEFS: &str = "/sys/kernel/tracing";

/// Mounts tracefs at [`TRACEFS`] unless it is already there.
pub fn ensure_mounted() -> Result<()> {
    let root = Path::new(TRACEFS);
    if root.join("events").is_dir() {
        return Ok(());
    }
    tracing::info!(path = TRACEFS, "tracefs is not mounted; mounting it");
    nix::mount::mount(
        Some("tracefs"),
        root,
        Some("tracefs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .map_err(|e| AgentError::Tracefs {
        path: root.into(),
        reason: e.desc().to_string(),
    })
}

/// Field name -> byte offset, from the text of a tracepoint `format` file.
pub fn parse_field_offsets(format: &str) -> HashMap<String, u32> {
    let mut fields = HashMap::new();
    for line in format.lines() {
        let mut decl = None;
        let mut offset = None;
        for part in line.trim().split(';') {
            let part = part.trim();
            if let Some(d) = part.strip_prefix("field:") {
                decl = Some(d);
            } else if let Some(o) = part.strip_prefix("offset:") {
                offset = o.parse::<u32>().ok();
            }
        }
        if let (Some(decl), Some(offset)) = (decl, offset) {
            // "const void * skaddr", "char prev_comm[16]", "__u8 saddr[28]": the name is the last word.
            let name = decl.rsplit([' ', '*']).next().unwrap_or(decl);
            let name = name.split('[').next().unwrap_or(name);
            fields.insert(name.to_string(), offset);
        }
    }
    fields
}

fn read_format(event: &str) -> Result<String> {
    let path = Path::new(TRACEFS).join("events").join(event).join("format");
    std::fs::read_to_string(&path).map_err(|e| AgentError::Tracepoint {
        event: event.to_string(),
        reason: format!("cannot read {}: {e}", path.display()),
    })
}

struct Format {
    event: &'static str,
    fields: HashMap<String, u32>,
}

impl Format {
    fn load(event: &'static str) -> Result<Self> {
        Ok(Self {
            event,
            fields: parse_field_offsets(&read_format(event)?),
        })
    }

    fn get(&self, field: &str) -> Result<u32> {
        self.fields
            .get(field)
            .copied()
            .ok_or_else(|| AgentError::Tracepoint {
                event: self.event.to_string(),
                reason: format!("this kernel's record has no field `{field}`"),
            })
    }
}

/// Offsets of every classic tracepoint field the kernel programs read.
pub fn tracepoint_offsets() -> Result<TpOffsets> {
    let exit = Format::load("sched/sched_process_exit")?;
    let state = Format::load("sock/inet_sock_set_state")?;
    let rst_rx = Format::load("tcp/tcp_receive_reset")?;
    let rst_tx = Format::load("tcp/tcp_send_reset")?;
    let retrans = Format::load("tcp/tcp_retransmit_skb")?;
    Ok(TpOffsets {
        exit_group_dead: exit.get("group_dead")?,
        state_skaddr: state.get("skaddr")?,
        state_oldstate: state.get("oldstate")?,
        state_newstate: state.get("newstate")?,
        state_sport: state.get("sport")?,
        state_protocol: state.get("protocol")?,
        rst_rx_sport: rst_rx.get("sport")?,
        rst_rx_dport: rst_rx.get("dport")?,
        rst_tx_saddr: rst_tx.get("saddr")?,
        rst_tx_daddr: rst_tx.get("daddr")?,
        retrans_sport: retrans.get("sport")?,
        retrans_dport: retrans.get("dport")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHED_SWITCH: &str = "name: sched_switch
ID: 329
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:char prev_comm[16];\toffset:8;\tsize:16;\tsigned:0;
\tfield:pid_t prev_pid;\toffset:24;\tsize:4;\tsigned:1;
\tfield:long prev_state;\toffset:32;\tsize:8;\tsigned:1;
\tfield:const void * skaddr;\toffset:128;\tsize:8;\tsigned:0;
\tfield:pid_t next_pid;\toffset:56;\tsize:4;\tsigned:1;

print fmt: \"prev_comm=%s\", REC->prev_comm
";

    #[test]
    fn field_offsets_come_from_format_lines() {
        let fields = parse_field_offsets(SCHED_SWITCH);
        assert_eq!(fields.get("prev_comm"), Some(&8));
        assert_eq!(fields.get("prev_state"), Some(&32));
        assert_eq!(fields.get("next_pid"), Some(&56));
        assert_eq!(fields.get("skaddr"), Some(&128));
        assert_eq!(fields.get("common_pid"), Some(&4));
        assert_eq!(fields.get("print"), None);
    }
}
