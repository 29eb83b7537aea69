//! Administration: `sirend init`, the DNS records to publish, and user management for backends
//! that own their users (`sirend user add|passwd|del|list`; `passwd` and `del` end the user's
//! sessions, `del` removes the user's devices and data too).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use siren_api::auth::CredentialAdmin;
use siren_api::storage::Storage;
use siren_api::{ServerName, Username};
use siren_proto::keys::{SekPublic, SekSecret};

use crate::config::Config;
use crate::{accounts, filemodes, keyfile, registry};

/// The DNS records that let clients and peers find this server (PROTOCOL.md §4).
pub fn dns_records(name: &ServerName, port: u16, sek: &SekPublic) -> String {
    format!(
        "_siren._tcp.{name}. 3600 IN SRV 10 0 {port} {name}.\n\
         _siren-key.{name}. 3600 IN TXT \"v=siren1; k={sek}\"\n"
    )
}

/// Writes `sirend.toml` and a fresh SEK into `dir`; refuses to overwrite either.
pub fn init(dir: &Path, name: &ServerName, listen: SocketAddr) -> anyhow::Result<String> {
    filemodes::create_private_dir(dir)?;
    let config_path = dir.join("sirend.toml");
    if config_path.exists() {
        bail!(
            "{} already exists; not overwriting it",
            config_path.display()
        );
    }
    let key_path = dir.join("sek.key");
    if key_path.exists() {
        bail!("{} already exists; not overwriting it", key_path.display());
    }
    let sek = SekSecret::generate(&mut siren_proto::os_rng());
    keyfile::create(&key_path, &sek)?;
    std::fs::write(&config_path, Config::template(name, listen))
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    Ok(format!(
        "wrote {config}\nwrote {key} (keep it secret)\n\n\
         Publish these DNS records so clients and servers can find {name}:\n\n{records}\n\
         Clients that do not use DNS need the address and this key:\n  --server {listen} --server-key {sek}\n\n\
         Next: sirend user add alice --config {config}\n      sirend run --config {config}\n",
        config = config_path.display(),
        key = key_path.display(),
        records = dns_records(name, listen.port(), &sek.public()),
        sek = sek.public(),
    ))
}

/// Opens the configured store and credential backend, for user management.
async fn user_admin(
    config: &Config,
) -> anyhow::Result<(
    Arc<dyn Storage>,
    Arc<dyn siren_api::auth::CredentialBackend>,
)> {
    filemodes::create_private_dir(&config.server.data_dir)?;
    let storage = registry::open_storage(config).await.map_err(|e| {
        anyhow::anyhow!("{e}\n(is sirend running? stop it first: the store allows one process)")
    })?;
    let backend = registry::open_credentials(config, storage.clone())
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((storage, backend))
}

fn admin_of<'a>(
    backend: &'a dyn siren_api::auth::CredentialBackend,
    config: &Config,
) -> anyhow::Result<&'a dyn CredentialAdmin> {
    backend.admin().ok_or_else(|| {
        anyhow::anyhow!(
            "the credential backend {:?} does not manage users itself; manage them where they live",
            config.auth.credentials
        )
    })
}

/// What `sirend user` does.
pub enum UserCommand {
    /// Create a user (or fail if it exists).
    Add(Username, String),
    /// Change a user's password (or fail if it does not exist).
    Passwd(Username, String),
    /// Delete a user.
    Del(Username),
    /// List users.
    List,
}

/// Runs a user command; returns what to print.
///
/// `passwd` and `del` end the user's sessions: their devices cannot resume, and a running server
/// (on a shared PostgreSQL store) closes their live sessions within `[auth]
/// recheck_interval_secs`. `del` also removes the user's devices, their queues and the roster
/// (see [`accounts::forget_user`]).
pub async fn user(config: &Config, command: UserCommand) -> anyhow::Result<String> {
    let (storage, backend) = user_admin(config).await?;
    let admin = admin_of(backend.as_ref(), config)?;
    let err = |e: siren_api::Error| anyhow::anyhow!("{e}");
    match command {
        UserCommand::Add(user, password) => {
            if backend.user_exists(&user).await.map_err(err)? {
                bail!("user {user} already exists (use `sirend user passwd`)");
            }
            admin.set_password(&user, &password).await.map_err(err)?;
            Ok(format!("created {user}@{}\n", config.server.name))
        }
        UserCommand::Passwd(user, password) => {
            if !backend.user_exists(&user).await.map_err(err)? {
                bail!("no user {user}");
            }
            admin.set_password(&user, &password).await.map_err(err)?;
            let sessions = storage
                .delete_user_sessions(&user, None)
                .await
                .map_err(err)?;
            Ok(format!(
                "changed the password of {user}@{}; its devices must log in again \
                 ({sessions} sessions ended)\n",
                config.server.name
            ))
        }
        UserCommand::Del(user) => {
            // The account first: from here on nobody logs in as the user.
            let had_account = admin.delete_user(&user).await.map_err(err)?;
            let forgotten = accounts::forget_user(storage.as_ref(), &user)
                .await
                .map_err(err)?;
            if !had_account && forgotten.is_empty() {
                bail!("no user {user}");
            }
            Ok(format!(
                "deleted {user}@{}: {} devices, {} queued messages, {} sessions{}\n",
                config.server.name,
                forgotten.devices,
                forgotten.items,
                forgotten.sessions,
                if forgotten.roster { ", the roster" } else { "" }
            ))
        }
        UserCommand::List => {
            let users = admin.list_users().await.map_err(err)?;
            Ok(users.iter().map(|u| format!("{u}\n")).collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_look_like_protocol_md() {
        let name = ServerName::parse("alpha.test").unwrap();
        let sek = SekPublic::from_bytes([0; 32]);
        let r = dns_records(&name, 7453, &sek);
        assert!(r.contains("_siren._tcp.alpha.test. 3600 IN SRV 10 0 7453 alpha.test."));
        assert!(r.contains(&format!(
            "_siren-key.alpha.test. 3600 IN TXT \"v=siren1; k={sek}\""
        )));
    }

    #[test]
    fn init_writes_a_valid_config_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let name = ServerName::parse("alpha.test").unwrap();
        let out = init(dir.path(), &name, "127.0.0.1:7453".parse().unwrap()).unwrap();
        assert!(out.contains("_siren-key.alpha.test."));
        let config = Config::load(&dir.path().join("sirend.toml")).unwrap();
        assert_eq!(config.server.name, name);
        keyfile::read(&config.server.key_file).unwrap();
        assert!(init(dir.path(), &name, "127.0.0.1:7453".parse().unwrap()).is_err());
    }
}
