//! A profile: one account on one device, in one directory.
//!
//! ```text
//! <profile>/profile.toml     uid, server address, pinned server key (not secret)
//! <profile>/keys             the USK seed, the DEK secret, the session id, the message counter,
//!                            the history seed
//! <profile>/contacts/<uid>   verified directory of each user looked up (this account too),
//!                            revocations seen, replay windows
//! <profile>/roster           version and hash of the newest roster of this account seen
//! <profile>/seen             ids of recently received messages (duplicate detection)
//! <profile>/history.redb     the local message history, sealed under a key derived from the
//!                            history seed in `keys` ([`crate::history`])
//! <profile>/lock             held while a `siren` command uses the profile
//! ```
//!
//! Every file is created with mode 0600 inside a 0700 directory. The `keys` file is either
//! protected by a passphrase (argon2id stretches it into a key, XSalsa20-Poly1305 seals the
//! file), or, when the profile was created without one, stored in clear and protected only by
//! the file permissions. The passphrase comes from `SIREN_PASSPHRASE` or a prompt.

use std::collections::VecDeque;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use crypto_secretbox::aead::Aead;
use crypto_secretbox::{KeyInit, XSalsa20Poly1305};
use rand_core::Rng as _;
use serde::{Deserialize, Serialize};
use siren_api::{ServerName, Uid};
use siren_client_session::groups::GroupRecord;
use siren_proto::ids::{GroupId, MessageId};
use siren_proto::keys::SekPublic;
use siren_proto::message;
use zeroize::Zeroizing;

pub use siren_client_session::store::{ContactState, RosterSeen, Secrets, SeenRequest};

/// `profile.toml`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// The account.
    pub uid: Uid,
    /// `host:port` of the server.
    pub server: String,
    /// Other addresses of the same server (the other nodes DNS listed at `siren init`, in its
    /// order), tried in turn when `server` cannot be reached. Each must prove the pinned key.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallback: Vec<String>,
    /// The server's SEK, pinned at `siren init` (base64).
    pub server_key: String,
}

impl Settings {
    /// The pinned SEK.
    pub fn sek(&self) -> anyhow::Result<SekPublic> {
        SekPublic::from_base64(&self.server_key).context("profile.toml: server_key")
    }

    /// The server's name (from the UID).
    pub fn server_name(&self) -> &ServerName {
        self.uid.server()
    }
}

#[derive(Serialize, Deserialize, Default)]
struct SeenRequests {
    requests: Vec<SeenRequest>,
}

/// The `seen` file.
#[derive(Serialize, Deserialize)]
struct SeenIds {
    ids: VecDeque<MessageId>,
}

/// An open profile (holding its lock).
pub struct Profile {
    dir: PathBuf,
    /// `profile.toml`.
    pub settings: Settings,
    passphrase: Option<Zeroizing<String>>,
    _lock: fs::File,
}

const KEYS_MAGIC: &[u8; 8] = b"SIRENKY1";
const MODE_PLAIN: u8 = 0;
const MODE_PASSPHRASE: u8 = 1;
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

/// The key sealing the keys file ([`siren_client_core::at_rest::passphrase_key`]).
fn kdf(passphrase: &str, salt: &[u8; 16]) -> anyhow::Result<Zeroizing<[u8; 32]>> {
    Ok(siren_client_core::at_rest::passphrase_key(
        passphrase, salt,
    )?)
}

impl Profile {
    /// Creates a profile directory. With a passphrase, the keys file is encrypted.
    pub fn create(
        dir: &Path,
        settings: Settings,
        passphrase: Option<String>,
    ) -> anyhow::Result<Profile> {
        if dir.join("profile.toml").exists() {
            bail!("{} already holds a profile", dir.display());
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join("contacts"))
            .with_context(|| format!("cannot create {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
        let text = toml::to_string(&settings).context("cannot encode profile.toml")?;
        write_private(&dir.join("profile.toml"), text.as_bytes())?;
        let profile = Profile::lock(dir, settings, passphrase.map(Zeroizing::new))?;
        let mut secrets = Secrets::default();
        let _ = secrets.history_seed();
        profile.save_secrets(&secrets)?;
        Ok(profile)
    }

    /// Opens an existing profile and takes its lock (so two commands cannot interleave).
    pub fn open(dir: &Path, passphrase: Option<String>) -> anyhow::Result<Profile> {
        let text = fs::read_to_string(dir.join("profile.toml")).with_context(|| {
            format!(
                "no profile in {} (create one with `siren init`)",
                dir.display()
            )
        })?;
        let settings: Settings = toml::from_str(&text)
            .with_context(|| format!("{}/profile.toml is invalid", dir.display()))?;
        Profile::lock(dir, settings, passphrase.map(Zeroizing::new))
    }

    fn lock(
        dir: &Path,
        settings: Settings,
        passphrase: Option<Zeroizing<String>>,
    ) -> anyhow::Result<Profile> {
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join("lock"))
            .with_context(|| format!("cannot open {}/lock", dir.display()))?;
        lock.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "the profile {} is in use by another siren command",
                dir.display()
            )
        })?;
        Ok(Profile {
            dir: dir.to_owned(),
            settings,
            passphrase,
            _lock: lock,
        })
    }

    /// The profile directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the keys file is passphrase-protected.
    pub fn is_encrypted(&self) -> anyhow::Result<bool> {
        let bytes = fs::read(self.dir.join("keys")).context("cannot read the keys file")?;
        Ok(bytes.get(8) == Some(&MODE_PASSPHRASE))
    }

    /// Reads the secrets (asking for the passphrase through `passphrase` if needed).
    pub fn secrets(&self) -> anyhow::Result<Secrets> {
        let bytes =
            Zeroizing::new(fs::read(self.dir.join("keys")).context("cannot read the keys file")?);
        if bytes.len() < 9 || &bytes[..8] != KEYS_MAGIC {
            bail!("the keys file is not a Siren keys file");
        }
        let plain: Zeroizing<Vec<u8>> =
            match bytes[8] {
                MODE_PLAIN => Zeroizing::new(bytes[9..].to_vec()),
                MODE_PASSPHRASE => {
                    let Some(passphrase) = &self.passphrase else {
                        bail!("the keys are protected by a passphrase: set SIREN_PASSPHRASE");
                    };
                    let rest = &bytes[9..];
                    if rest.len() < 16 + 24 {
                        bail!("the keys file is truncated");
                    }
                    let (salt, rest) = rest.split_at(16);
                    let (nonce, ct) = rest.split_at(24);
                    let salt: [u8; 16] = salt.try_into().context("salt")?;
                    let key = kdf(passphrase, &salt)?;
                    let cipher = XSalsa20Poly1305::new(key.as_ref().into());
                    Zeroizing::new(cipher.decrypt(nonce.into(), ct).map_err(|_| {
                        anyhow::anyhow!("wrong passphrase (or a damaged keys file)")
                    })?)
                }
                other => bail!("unknown keys file mode {other}"),
            };
        message::decode_value(&plain).map_err(|e| anyhow::anyhow!("the keys file is damaged: {e}"))
    }

    /// Writes the secrets (encrypted if the profile has a passphrase).
    pub fn save_secrets(&self, secrets: &Secrets) -> anyhow::Result<()> {
        let plain = Zeroizing::new(message::encode_value(secrets));
        let mut out = KEYS_MAGIC.to_vec();
        match &self.passphrase {
            None => {
                out.push(MODE_PLAIN);
                out.extend_from_slice(&plain);
            }
            Some(passphrase) => {
                let mut rng = siren_proto::os_rng();
                let mut salt = [0u8; 16];
                let mut nonce = [0u8; 24];
                rng.fill_bytes(&mut salt);
                rng.fill_bytes(&mut nonce);
                let key = kdf(passphrase, &salt)?;
                let cipher = XSalsa20Poly1305::new(key.as_ref().into());
                let ct = cipher
                    .encrypt((&nonce).into(), plain.as_slice())
                    .map_err(|_| anyhow::anyhow!("cannot encrypt the keys"))?;
                out.push(MODE_PASSPHRASE);
                out.extend_from_slice(&salt);
                out.extend_from_slice(&nonce);
                out.extend_from_slice(&ct);
            }
        }
        write_private(&self.dir.join("keys"), &out)
    }

    fn contact_path(&self, uid: &Uid) -> PathBuf {
        self.dir.join("contacts").join(uid.to_string())
    }

    /// What the client remembers about `uid`.
    pub fn contact(&self, uid: &Uid) -> anyhow::Result<ContactState> {
        match fs::read(self.contact_path(uid)) {
            Ok(bytes) => message::decode_value(&bytes)
                .map_err(|e| anyhow::anyhow!("contact cache for {uid} is damaged: {e}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ContactState::default()),
            Err(e) => Err(e).with_context(|| format!("cannot read the contact cache for {uid}")),
        }
    }

    /// Stores what the client remembers about `uid`.
    pub fn save_contact(&self, uid: &Uid, state: &ContactState) -> anyhow::Result<()> {
        write_private(&self.contact_path(uid), &message::encode_value(state))
    }

    /// The newest roster version of this account seen so far, if any.
    pub fn roster_seen(&self) -> anyhow::Result<Option<RosterSeen>> {
        match fs::read(self.dir.join("roster")) {
            Ok(bytes) => message::decode_value(&bytes)
                .map(Some)
                .map_err(|e| anyhow::anyhow!("the roster file is damaged: {e}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).context("cannot read the roster file"),
        }
    }

    /// Stores the newest roster version seen.
    pub fn save_roster_seen(&self, seen: &RosterSeen) -> anyhow::Result<()> {
        write_private(&self.dir.join("roster"), &message::encode_value(seen))
    }

    /// Approval requests received and not yet answered, oldest first.
    pub fn approval_requests(&self) -> anyhow::Result<Vec<SeenRequest>> {
        match fs::read(self.dir.join("approvals")) {
            Ok(bytes) => message::decode_value::<SeenRequests>(&bytes)
                .map(|s| s.requests)
                .map_err(|e| anyhow::anyhow!("the approvals file is damaged: {e}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).context("cannot read the approvals file"),
        }
    }

    /// Replaces the unanswered approval requests.
    pub fn save_approval_requests(&self, requests: &[SeenRequest]) -> anyhow::Result<()> {
        let requests = requests.to_vec();
        write_private(
            &self.dir.join("approvals"),
            &message::encode_value(&SeenRequests { requests }),
        )
    }

    /// Ids of recently received messages, oldest first.
    pub fn seen(&self) -> anyhow::Result<VecDeque<MessageId>> {
        match fs::read(self.dir.join("seen")) {
            Ok(bytes) => message::decode_value::<SeenIds>(&bytes)
                .map(|s| s.ids)
                .map_err(|e| anyhow::anyhow!("the seen-ids file is damaged: {e}")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(VecDeque::new()),
            Err(e) => Err(e).context("cannot read the seen-ids file"),
        }
    }

    /// Replaces the ids of recently received messages.
    pub fn save_seen(&self, seen: &VecDeque<MessageId>) -> anyhow::Result<()> {
        let file = SeenIds { ids: seen.clone() };
        write_private(&self.dir.join("seen"), &message::encode_value(&file))
    }

    fn groups_dir(&self) -> PathBuf {
        self.dir.join("groups")
    }

    /// Group `id` as this device holds it (`groups/<id in hex>`).
    pub fn group(&self, id: &GroupId) -> anyhow::Result<Option<GroupRecord>> {
        match fs::read(self.groups_dir().join(id.to_hex())) {
            Ok(bytes) => message::decode_value(&bytes).map(Some).map_err(|e| {
                anyhow::anyhow!("the record of group {} is damaged: {e}", id.to_hex())
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("cannot read group {}", id.to_hex())),
        }
    }

    /// Stores group `id`.
    pub fn save_group(&self, id: &GroupId, record: &GroupRecord) -> anyhow::Result<()> {
        let dir = self.groups_dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        write_private(&dir.join(id.to_hex()), &message::encode_value(record))
    }

    /// The groups this device holds.
    pub fn groups(&self) -> anyhow::Result<Vec<GroupId>> {
        let entries = match fs::read_dir(self.groups_dir()) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).context("cannot list the groups"),
        };
        let mut ids = Vec::new();
        for entry in entries {
            let name = entry.context("cannot list the groups")?.file_name();
            // Each file is named by its group's id; anything else (a `.tmp`) is not a group.
            if let Some(id) = name.to_str().and_then(GroupId::from_hex) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            uid: Uid::parse("alice@alpha.test").unwrap(),
            server: "127.0.0.1:7453".into(),
            fallback: Vec::new(),
            server_key: SekPublic::from_bytes([9; 32]).to_base64(),
        }
    }

    #[test]
    fn passphrase_seals_the_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let profile = Profile::create(&path, settings(), Some("correct horse".into())).unwrap();
        let seed = [0x5a; 32];
        let secrets = Secrets {
            usk: Some(seed),
            counter: 7,
            ..Secrets::default()
        };
        profile.save_secrets(&secrets).unwrap();
        assert!(profile.is_encrypted().unwrap());
        let raw = fs::read(path.join("keys")).unwrap();
        assert!(
            !raw.windows(32).any(|w| w == seed),
            "the USK seed is in clear"
        );
        assert_eq!(
            fs::metadata(path.join("keys"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o700
        );
        drop(profile);

        let wrong = Profile::open(&path, Some("battery staple".into())).unwrap();
        let err = wrong.secrets().err().unwrap().to_string();
        assert!(err.contains("wrong passphrase"), "{err}");
        drop(wrong);
        let none = Profile::open(&path, None).unwrap();
        assert!(none.secrets().is_err());
        drop(none);
        let right = Profile::open(&path, Some("correct horse".into())).unwrap();
        let back = right.secrets().unwrap();
        assert_eq!(back.usk, Some(seed));
        assert_eq!(back.counter, 7);
        // A second command cannot use the profile at the same time.
        assert!(Profile::open(&path, Some("correct horse".into())).is_err());
    }

    #[test]
    fn without_passphrase_keys_are_plain_but_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        let profile = Profile::create(&path, settings(), None).unwrap();
        assert!(!profile.is_encrypted().unwrap());
        assert_eq!(
            fs::metadata(path.join("keys"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        assert!(
            Profile::create(&path, settings(), None).is_err(),
            "must not overwrite"
        );
    }
}
