//! The SEK file: the server's secret key as base64 text in a file only its owner can read.

use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

use anyhow::Context as _;
use siren_proto::keys::SekSecret;

use crate::filemodes;

/// Reads a SEK file, refusing one that others can read.
pub fn read(path: &Path) -> anyhow::Result<SekSecret> {
    filemodes::refuse_shared(path, "key file", filemodes::PRIVATE_FILE)?;
    let text = fs::read_to_string(path)
        .with_context(|| format!("cannot read key file {}", path.display()))?;
    let bytes = decode(text.trim()).with_context(|| {
        format!(
            "key file {} does not hold a base64 32-byte key",
            path.display()
        )
    })?;
    Ok(SekSecret::from_bytes(bytes))
}

fn decode(text: &str) -> anyhow::Result<[u8; 32]> {
    // Reuse the public-key parser: same encoding (standard base64 of 32 bytes).
    let key = siren_proto::keys::SekPublic::from_base64(text)?;
    Ok(*key.as_bytes())
}

/// Writes a new SEK file with mode 0600; refuses to overwrite an existing one.
pub fn create(path: &Path, key: &SekSecret) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        filemodes::create_private_dir(dir)?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create key file {}", path.display()))?;
    let text = siren_proto::keys::SekPublic::from_bytes(*key.to_bytes()).to_base64();
    writeln!(file, "{text}")?;
    file.sync_all()?;
    Ok(())
}

/// Reads the key file, or creates it with a fresh key if it does not exist (so that `sirend run`
/// works on a fresh machine). Returns the key and whether it was created.
pub fn read_or_create(path: &Path) -> anyhow::Result<(SekSecret, bool)> {
    if path.exists() {
        return Ok((read(path)?, false));
    }
    let key = SekSecret::generate(&mut siren_proto::os_rng());
    create(path, &key)?;
    Ok((key, true))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn create_read_and_refuse_loose_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sek.key");
        let (key, created) = read_or_create(&path).unwrap();
        assert!(created);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let (again, created) = read_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(again.public(), key.public());
        assert!(create(&path, &key).is_err(), "must not overwrite");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, "garbage").unwrap();
        assert!(read(&path).is_err());
    }
}
