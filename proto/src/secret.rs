//! Reading a password from a file, the same way for every daemon: the agent's data store
//! password and the Sentinel endpoint's. Passwords come from files (or the environment), never
//! from the command line, which every user of the host can read in /proc/PID/cmdline.
use std::path::Path;

/// The password in the file at `path`: read once, one trailing newline (LF or CRLF) dropped. A
/// file that cannot be read or holds nothing is an error, saying which (the caller names its
/// setting). A file every user may read is used, with a warning.
pub fn read_password_file(path: &Path) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let password = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if password.is_empty() {
        return Err(format!("{} holds no password", path.display()));
    }
    if let Ok(meta) = std::fs::metadata(path)
        && meta.permissions().mode() & 0o004 != 0
    {
        tracing::warn!(path = %path.display(), "a password file is readable by every user: chmod 600 it");
    }
    Ok(password.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_file_loses_one_trailing_newline_and_must_hold_something() {
        let dir = std::env::temp_dir().join(format!("vigil-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (text, want) in [
            ("s3cret\n", "s3cret"),
            ("s3cret\r\n", "s3cret"),
            ("s3cret", "s3cret"),
            ("two words \n\n", "two words \n"),
        ] {
            let path = dir.join("p");
            std::fs::write(&path, text).unwrap();
            assert_eq!(read_password_file(&path).as_deref(), Ok(want), "{text:?}");
        }
        let empty = dir.join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = read_password_file(&empty).unwrap_err();
        assert!(e.contains("holds no password"), "{e}");
        let e = read_password_file(&dir.join("missing")).unwrap_err();
        assert!(e.contains("cannot read"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
