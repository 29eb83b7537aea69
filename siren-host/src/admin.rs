//! Administration: `sirend init`, the DNS records to publish, and the admin commands (`sirend
//! user|devices|sessions|queue|federation|status`), which run inside the running server through
//! its admin socket or on the store directly ([`crate::control`]).

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context as _, anyhow, bail};
use siren_api::ServerName;
use siren_proto::keys::{SekPublic, SekSecret};

use crate::config::Config;
use crate::control::commands::Ops;
use crate::control::wire::Request;
use crate::{control, filemodes, keyfile, registry};

/// The DNS records that let clients and peers find this server (PROTOCOL.md §4): one SRV
/// record naming the server itself on `port`, or, for a cluster, one per node in `nodes`.
pub fn dns_records(
    name: &ServerName,
    port: u16,
    sek: &SekPublic,
    nodes: &[crate::config::ClusterNode],
) -> String {
    let mut out = String::new();
    if nodes.is_empty() {
        out.push_str(&format!(
            "_siren._tcp.{name}. 3600 IN SRV 10 0 {port} {name}.\n"
        ));
    }
    for node in nodes {
        out.push_str(&format!(
            "_siren._tcp.{name}. 3600 IN SRV {} {} {} {}.\n",
            node.priority, node.weight, node.port, node.host
        ));
    }
    out.push_str(&format!(
        "_siren-key.{name}. 3600 IN TXT \"v=siren1; k={sek}\"\n"
    ));
    out
}

/// Writes `sirend.toml` and a fresh SEK into `dir`; refuses to overwrite either.
pub fn init(
    dir: &Path,
    name: &ServerName,
    listen: SocketAddr,
    web: SocketAddr,
) -> anyhow::Result<String> {
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
    std::fs::write(&config_path, Config::template(name, listen, web))
        .with_context(|| format!("cannot write {}", config_path.display()))?;
    Ok(format!(
        "wrote {config}\nwrote {key} (keep it secret)\n\n\
         Publish these DNS records so clients and servers can find {name}:\n\n{records}\n\
         Clients that do not use DNS need the address and this key:\n  --server {listen} --server-key {sek}\n\n\
         Next: sirend user add alice --config {config}\n      sirend run --config {config}\n\
         The web client will be at http://{web}/\n",
        config = config_path.display(),
        key = key_path.display(),
        records = dns_records(name, listen.port(), &sek.public(), &[]),
        sek = sek.public(),
    ))
}

/// Runs an admin command: inside the running server when one answers on its admin socket, else
/// on the store directly (the same code, the same output; see [`crate::control`]). Returns
/// what to print.
///
/// `user passwd` and `user del` end the user's sessions: their devices cannot resume, and the
/// live ones are closed at once by a running server (or, for a server on a shared PostgreSQL
/// store that this command did not reach, within `[auth] recheck_interval_secs`). `user del`
/// also removes the user's devices, their queues and the roster (see
/// [`crate::accounts::forget_user`]).
pub async fn command(config: &Config, request: Request) -> anyhow::Result<String> {
    let socket = control::socket_path(config);
    if let Some(response) = control::client::call(&socket, &request).await? {
        if response.ok {
            return Ok(response.output);
        }
        bail!("{}", response.error);
    }
    if matches!(
        request,
        Request::Status {} | Request::FederationLinks {} | Request::Reload {}
    ) {
        bail!(
            "sirend is not running (no server answers on {})",
            socket.display()
        );
    }
    filemodes::create_private_dir(&config.server.data_dir)?;
    let storage = registry::open_storage(config).await.map_err(|e| {
        anyhow!(
            "{e}\n(another process has the store open, and no server answers on {}: another \
             `sirend` command, or a sirend still starting)",
            socket.display()
        )
    })?;
    let credentials = registry::open_credentials(config, storage.clone())
        .await
        .map_err(|e| anyhow!("{e}"))?;
    Ops::offline(config.clone(), storage, credentials)
        .run(request)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_look_like_protocol_md() {
        let name = ServerName::parse("alpha.test").unwrap();
        let sek = SekPublic::from_bytes([0; 32]);
        let r = dns_records(&name, 7453, &sek, &[]);
        assert!(r.contains("_siren._tcp.alpha.test. 3600 IN SRV 10 0 7453 alpha.test."));
        assert!(r.contains(&format!(
            "_siren-key.alpha.test. 3600 IN TXT \"v=siren1; k={sek}\""
        )));
        // A cluster: one SRV record per node, with its priority and weight; one key.
        let node = |host: &str, priority, weight| crate::config::ClusterNode {
            host: host.into(),
            port: 7453,
            priority,
            weight,
        };
        let r = dns_records(
            &name,
            7453,
            &sek,
            &[
                node("n1.alpha.test", 10, 60),
                node("n2.alpha.test", 10, 40),
                node("n3.alpha.test", 20, 0),
            ],
        );
        assert_eq!(
            r,
            format!(
                "_siren._tcp.alpha.test. 3600 IN SRV 10 60 7453 n1.alpha.test.\n\
                 _siren._tcp.alpha.test. 3600 IN SRV 10 40 7453 n2.alpha.test.\n\
                 _siren._tcp.alpha.test. 3600 IN SRV 20 0 7453 n3.alpha.test.\n\
                 _siren-key.alpha.test. 3600 IN TXT \"v=siren1; k={sek}\"\n"
            )
        );
    }

    #[test]
    fn init_writes_a_valid_config_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let name = ServerName::parse("alpha.test").unwrap();
        let out = init(
            dir.path(),
            &name,
            "127.0.0.1:7453".parse().unwrap(),
            "127.0.0.1:7454".parse().unwrap(),
        )
        .unwrap();
        assert!(out.contains("_siren-key.alpha.test."));
        let config = Config::load(&dir.path().join("sirend.toml")).unwrap();
        assert_eq!(config.server.name, name);
        keyfile::read(&config.server.key_file).unwrap();
        assert!(
            init(
                dir.path(),
                &name,
                "127.0.0.1:7453".parse().unwrap(),
                "127.0.0.1:7454".parse().unwrap()
            )
            .is_err()
        );
    }
}
