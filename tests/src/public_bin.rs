//! [`PublicBin`]: a copy of a workspace binary that any user can run, for tests that drop
//! privileges. The checkout, and so `target/`, may lie under a directory that only its owner can
//! enter (a clone in /root, mode 0700), where a process running as nobody cannot reach the binary.
use std::{
    fs::Permissions,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::workspace_bin;

/// A workspace binary copied into a fresh directory under /tmp, the directory and the copy both
/// mode 0755. The directory and the copy are removed on drop.
pub struct PublicBin {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl PublicBin {
    /// Copies the workspace binary `name`, found as [`workspace_bin`] finds it.
    pub fn copy_of(name: &str) -> Result<Self> {
        let original = workspace_bin(name)?;
        // /tmp itself, not $TMPDIR, which may be as private as the checkout.
        let dir = tempfile::Builder::new()
            .prefix("vigil-bin-")
            .tempdir_in("/tmp")
            .context("making a directory under /tmp")?;
        std::fs::set_permissions(dir.path(), Permissions::from_mode(0o755))?;
        let path = dir.path().join(name);
        // cp writes the copy from its own process. Were it written from here, a child that another
        // test thread forks meanwhile could inherit the open file, and running the copy would then
        // fail with "Text file busy".
        let status = Command::new("cp")
            .arg(&original)
            .arg(&path)
            .status()
            .context("running cp")?;
        if !status.success() {
            bail!(
                "cp {} {} failed ({status})",
                original.display(),
                path.display()
            );
        }
        std::fs::set_permissions(&path, Permissions::from_mode(0o755))?;
        Ok(Self { path, _dir: dir })
    }

    /// Where the copy is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}
