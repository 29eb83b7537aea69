//! File modes: what `sirend` writes is readable by its own user only (the store holds argon2
//! hashes, `sek.key` the server's secret key, `peer-keys.toml` the pinned keys of peers), and it
//! refuses to run on a key, data directory or store that other users can read.

use std::fs;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::Path;

use anyhow::{Context as _, bail};

/// The mode of a private directory.
pub const PRIVATE_DIR: u32 = 0o700;
/// The mode of a private file.
pub const PRIVATE_FILE: u32 = 0o600;

/// Sets the process's file creation mask to 077, so everything created from now on is private to
/// this user: directories 0700, files 0600. `sirend` calls it first thing in `main`, before any
/// thread starts, so it covers every command (`init`, `run`, `user`, `migrate-store`) and the
/// files libraries create on their own (RocksDB's tables, logs and lock file).
pub fn private_umask() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
}

/// Creates `dir` and any missing parents with mode 0700 (whatever the umask; an existing
/// directory keeps its mode, and [`refuse_shared`] checks it).
pub fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Refuses `path` (a file or directory, named `what` in the message) if any user other than its
/// owner may read, write or enter it; the message gives the `chmod` that makes it `private`.
pub fn refuse_shared(path: &Path, what: &str, private: u32) -> anyhow::Result<()> {
    let meta =
        fs::metadata(path).with_context(|| format!("cannot read the {what} {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{what} {path} is readable by other users (mode {mode:o}); run `chmod {private:o} {path}`",
            path = path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dirs_are_created_0700_and_shared_ones_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        create_private_dir(&dir).unwrap();
        for d in [root.path().join("a"), dir.clone()] {
            assert_eq!(
                fs::metadata(&d).unwrap().permissions().mode() & 0o777,
                PRIVATE_DIR
            );
        }
        refuse_shared(&dir, "data directory", PRIVATE_DIR).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o750)).unwrap();
        let err = refuse_shared(&dir, "data directory", PRIVATE_DIR)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mode 750") && err.contains(&format!("chmod 700 {}", dir.display())),
            "{err}"
        );
    }
}
