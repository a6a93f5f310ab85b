//! The data folder of the file backend: created private (0700, its state files 0600, both
//! tightened when an older controller left them laxer, since they name every node of every data
//! store), and locked by one controller at a time. Two controllers on one folder would each
//! believe it holds the epochs, and could each promote a replica: the second one must not start.
use std::{
    fs::{self, File},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt},
    path::{Path, PathBuf},
};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{ControllerError, Result};

/// The folder's mode: the controller's user alone.
pub const DIR_MODE: u32 = 0o700;
/// A state file's mode.
pub const FILE_MODE: u32 = 0o600;
/// The file whose lock the running controller holds.
pub const LOCK_FILE: &str = "lock";

/// The data folder, locked for as long as this lives (the kernel drops the lock when the process
/// ends, however it ends, so a crash leaves no stale lock behind).
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: Flock<File>,
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> ControllerError {
    move |source| ControllerError::Io { context, source }
}

impl DataDir {
    /// Creates `path` (0700) if need be, tightens it and its state files, and takes its lock; a
    /// folder another controller holds is an error naming it.
    pub fn open(path: &Path) -> Result<Self> {
        let shown = path.display();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(path)
            .map_err(io(format!("creating the data folder {shown}")))?;
        fs::set_permissions(path, fs::Permissions::from_mode(DIR_MODE))
            .map_err(io(format!("making the data folder {shown} private")))?;
        let lock_path = path.join(LOCK_FILE);
        let file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(FILE_MODE)
            .open(&lock_path)
            .map_err(io(format!("opening {}", lock_path.display())))?;
        let lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
            if errno == nix::errno::Errno::EWOULDBLOCK {
                ControllerError::DataDirLocked(path.into())
            } else {
                io(format!("locking {}", lock_path.display()))(errno.into())
            }
        })?;
        // Only once it is ours: the files are another controller's business until then.
        for entry in fs::read_dir(path).map_err(io(format!("reading {shown}")))? {
            let entry = entry.map_err(io(format!("reading {shown}")))?;
            let file = entry.path();
            if entry.file_type().is_ok_and(|t| t.is_file()) {
                fs::set_permissions(&file, fs::Permissions::from_mode(FILE_MODE))
                    .map_err(io(format!("making {} private", file.display())))?;
            }
        }
        Ok(Self {
            path: path.into(),
            _lock: lock,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn the_folder_and_its_files_are_made_private_and_locked_once() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("data");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        let old = dir.join("cache.json");
        fs::write(&old, b"{}").unwrap();
        fs::set_permissions(&old, fs::Permissions::from_mode(0o644)).unwrap();

        let held = DataDir::open(&dir).unwrap();
        assert_eq!(mode(&dir), DIR_MODE);
        assert_eq!(mode(&old), FILE_MODE);
        assert_eq!(mode(&dir.join(LOCK_FILE)), FILE_MODE);
        // A second holder (flock locks belong to the open file, so this counts) is refused,
        // by name; the first one's drop frees the folder.
        let second = DataDir::open(&dir).unwrap_err();
        assert!(matches!(&second, ControllerError::DataDirLocked(p) if p == &dir));
        assert!(second.to_string().contains(&dir.display().to_string()));
        drop(held);
        DataDir::open(&dir).unwrap();
    }

    #[test]
    fn a_new_folder_is_created_private() {
        let parent = tempfile::tempdir().unwrap();
        let dir = parent.path().join("a").join("b");
        let _held = DataDir::open(&dir).unwrap();
        assert_eq!(mode(&dir), DIR_MODE);
    }
}
