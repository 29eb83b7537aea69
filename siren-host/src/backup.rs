//! `sirend backup --to DIR` and `sirend restore --from DIR`.
//!
//! A backup directory (mode 0700: it holds the server's secret key and password hashes) holds:
//!
//! * `store/`: a consistent copy of the store ([`Storage::backup`]; a RocksDB checkpoint, made
//!   while the server runs, holding every write that returned before it began: so every message
//!   acknowledged to its sender before the backup began);
//! * `sek.key`: the Server Encryption Key (clients and peers know the server by it);
//! * `peer-keys.toml`: the pinned keys of peer servers, when there are any;
//! * `BACKUP`: what it is, of which server, when.
//!
//! Restoring copies these into an empty data directory of a stopped server; the store is then
//! opened and counted, so a restore that would not start is caught at once. PostgreSQL stores
//! are backed up with PostgreSQL's tools (`pg_dump`), which this module says.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, anyhow, bail};
use siren_api::storage::Storage;

use crate::config::Config;
use crate::{control, filemodes, keyfile, registry};

/// The file that marks a backup directory.
const MARK: &str = "BACKUP";

/// Writes a backup of `storage` (the store `config` names) into `dir`: a new directory or an
/// empty one, given as an absolute path (the server's working directory is not the caller's).
pub async fn write(config: &Config, storage: &dyn Storage, dir: &Path) -> anyhow::Result<String> {
    if !dir.is_absolute() {
        bail!("the backup directory must be an absolute path");
    }
    if dir.exists() && !is_empty(dir)? {
        bail!(
            "{} exists and is not empty; back up into a new directory",
            dir.display()
        );
    }
    filemodes::create_private_dir(dir)?;
    let store = dir.join("store");
    storage
        .backup(&store)
        .await
        .map_err(|e| anyhow!("{}", e.message))?;
    let sek = keyfile::read(&config.server.key_file)?;
    keyfile::create(&dir.join("sek.key"), &sek)?;
    let pins = config.server.data_dir.join("peer-keys.toml");
    if pins.exists() {
        std::fs::copy(&pins, dir.join("peer-keys.toml"))
            .with_context(|| format!("cannot copy {}", pins.display()))?;
    }
    let now = jiff::Timestamp::now();
    std::fs::write(
        dir.join(MARK),
        format!(
            "siren backup\nserver = {}\nstore = {}\nmade = {now}\n",
            config.server.name,
            storage.describe()
        ),
    )
    .with_context(|| format!("cannot write {}", dir.join(MARK).display()))?;
    let (files, bytes) = size_of(&store)?;
    Ok(format!(
        "backed up {} into {}: the store ({files} files, {bytes} bytes), the server key{}\n\
         It holds the server's secret key and password hashes: keep it as private as the data \
         directory.\nRestore with: sirend restore --from {}\n",
        storage.describe(),
        dir.display(),
        if pins.exists() {
            ", the peers' pinned keys"
        } else {
            ""
        },
        dir.display(),
    ))
}

/// Restores the backup in `from` into the empty data directory of the stopped server `config`
/// describes.
pub async fn restore(config: &Config, from: &Path) -> anyhow::Result<String> {
    let socket = control::socket_path(config);
    let status = control::wire::Request::Status {};
    if control::client::call(&socket, &status).await?.is_some() {
        bail!("sirend is running on this data directory; stop it first");
    }
    if config.storage.backend != "rocksdb" {
        bail!(
            "this configuration's store is {:?}: restore copies a RocksDB backup (restore a \
             PostgreSQL store with its own tools, e.g. `pg_restore` or `psql` of a `pg_dump`)",
            config.storage.backend
        );
    }
    if !from.join(MARK).is_file() || !from.join("store").is_dir() {
        bail!(
            "{} is not a backup made by `sirend backup` (no {MARK} file and store/)",
            from.display()
        );
    }
    let data_dir = &config.server.data_dir;
    let store = config.storage_path();
    for dir in [data_dir, &store] {
        if dir.exists() && !is_empty(dir)? {
            bail!(
                "{} is not empty; restore only into an empty data directory (move it away first)",
                dir.display()
            );
        }
    }
    let sek = keyfile::read(&from.join("sek.key"))?;
    let key_file = &config.server.key_file;
    if key_file.exists() {
        let current = keyfile::read(key_file)?;
        if current.public() != sek.public() {
            bail!(
                "{} holds another key ({}) than the backup's ({}): clients and peers know the \
                 server by the backup's; move that file away to restore it",
                key_file.display(),
                current.public(),
                sek.public()
            );
        }
    } else {
        keyfile::create(key_file, &sek)?;
    }
    filemodes::create_private_dir(data_dir)?;
    filemodes::create_private_dir(&store)?;
    copy_dir(&from.join("store"), &store)?;
    let pins = from.join("peer-keys.toml");
    if pins.exists() {
        std::fs::copy(&pins, data_dir.join("peer-keys.toml"))
            .with_context(|| format!("cannot copy {}", pins.display()))?;
    }
    // Open what was restored, as the server will: a broken copy shows now, not at start-up.
    let storage = registry::open_storage(config)
        .await
        .map_err(|e| anyhow!("the restored store does not open: {e}"))?;
    let accounts = storage.list_accounts().await.map_err(|e| anyhow!("{e}"))?;
    let queues = storage.queue_devices().await.map_err(|e| anyhow!("{e}"))?;
    storage.flush().await.map_err(|e| anyhow!("{e}"))?;
    Ok(format!(
        "restored {} into {}: {} accounts, {} queues, the server key {}\nStart it with: sirend run\n",
        from.display(),
        store.display(),
        accounts.len(),
        queues.len(),
        sek.public()
    ))
}

fn is_empty(dir: &Path) -> anyhow::Result<bool> {
    Ok(std::fs::read_dir(dir)
        .with_context(|| format!("cannot read {}", dir.display()))?
        .next()
        .is_none())
}

/// Copies the files under `from` into `to` (which exists), keeping them private.
fn copy_dir(from: &Path, to: &Path) -> anyhow::Result<()> {
    for entry in
        std::fs::read_dir(from).with_context(|| format!("cannot read {}", from.display()))?
    {
        let entry = entry?;
        let target: PathBuf = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            filemodes::create_private_dir(&target)?;
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)
                .with_context(|| format!("cannot copy {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// How many files and bytes are under `dir`.
fn size_of(dir: &Path) -> anyhow::Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            let (f, b) = size_of(&entry.path())?;
            files += f;
            bytes += b;
        } else {
            files += 1;
            bytes += entry.metadata()?.len();
        }
    }
    Ok((files, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_backup_restores_into_an_empty_directory_only() {
        let base = tempfile::tempdir().unwrap();
        let config_at = |dir: &str| {
            let mut c = Config::default();
            c.server.data_dir = base.path().join(dir).join("data");
            c.server.key_file = base.path().join(dir).join("sek.key");
            c
        };
        let source = config_at("a");
        let sek = siren_proto::keys::SekSecret::generate(&mut siren_proto::os_rng());
        std::fs::create_dir_all(base.path().join("a")).unwrap();
        keyfile::create(&source.server.key_file, &sek).unwrap();
        let storage = registry::open_storage(&source).await.unwrap();
        let user = siren_api::Username::parse("alice").unwrap();
        storage
            .put_account(&siren_api::storage::Account {
                user: user.clone(),
                created: 1,
                credential: Some("x".into()),
                credential_stamp: 1,
            })
            .await
            .unwrap();
        let backup = base.path().join("backup");
        let out = write(&source, storage.as_ref(), &backup).await.unwrap();
        assert!(out.contains("backed up rocksdb"), "{out}");
        assert!(
            write(&source, storage.as_ref(), &backup).await.is_err(),
            "not into a non-empty directory"
        );
        assert!(
            write(&source, storage.as_ref(), Path::new("relative"))
                .await
                .is_err()
        );

        let target = config_at("b");
        let out = restore(&target, &backup).await.unwrap();
        assert!(out.contains("1 accounts"), "{out}");
        assert_eq!(
            keyfile::read(&target.server.key_file).unwrap().public(),
            sek.public()
        );
        let again = restore(&target, &backup).await.unwrap_err().to_string();
        assert!(again.contains("is not empty"), "{again}");
        assert!(
            restore(&config_at("c"), base.path()).await.is_err(),
            "not a backup"
        );
    }
}
