//! [`Fixture`]: a test-only program built from this workspace (such as the deadlock fixture),
//! stopped on drop.
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

use crate::{stop_child, workspace_bin};

/// A test-only process started from one of this workspace's binaries, stopped on drop.
pub struct Fixture {
    child: Child,
}

impl Fixture {
    pub fn spawn(bin: &str, args: &[&str]) -> Result<Self> {
        let path = workspace_bin(bin)?;
        let child = Command::new(&path)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting {}", path.display()))?;
        Ok(Self { child })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}
