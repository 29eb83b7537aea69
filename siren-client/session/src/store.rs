//! What a device keeps (its keys, what it verified about each user, the newest roster it saw,
//! approval requests, ids of messages received, the groups it is in) and the [`Store`] a driver keeps it in: a
//! profile directory for `siren`, IndexedDB in the browser.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};
use siren_api::Uid;
use siren_proto::envelope::ReplayWindow;
use siren_proto::ids::{GroupId, MessageId};
use siren_proto::keys::{DekPublic, DekSecret, UskPublic, UskSecret};
use siren_proto::records::UserDirectory;
use zeroize::Zeroizing;

use crate::groups::GroupRecord;

/// How many received message ids are remembered for duplicate detection.
pub const SEEN_IDS: usize = 10_000;
/// How many unanswered approval requests are kept (the newest).
pub const APPROVAL_REQUESTS: usize = 16;

/// Where a device keeps its state. Each `save_*` must be durable when it returns: the session
/// acknowledges a message to the server only after what it learned from it is saved, and
/// never reuses a message counter it saved.
#[allow(async_fn_in_trait)] // the futures' Send-ness follows the implementation's
pub trait Store {
    /// The secrets as last saved.
    async fn secrets(&self) -> anyhow::Result<Secrets>;
    /// Replaces the secrets.
    async fn save_secrets(&mut self, secrets: &Secrets) -> anyhow::Result<()>;
    /// What the device remembers about `uid` (empty for a user never looked up).
    async fn contact(&self, uid: &Uid) -> anyhow::Result<ContactState>;
    /// Replaces what the device remembers about `uid`.
    async fn save_contact(&mut self, uid: &Uid, state: &ContactState) -> anyhow::Result<()>;
    /// The newest roster version seen, if any.
    async fn roster_seen(&self) -> anyhow::Result<Option<RosterSeen>>;
    /// Replaces the newest roster version seen.
    async fn save_roster_seen(&mut self, seen: &RosterSeen) -> anyhow::Result<()>;
    /// Approval requests received and not yet answered, oldest first.
    async fn approval_requests(&self) -> anyhow::Result<Vec<SeenRequest>>;
    /// Replaces the unanswered approval requests (the session keeps at most
    /// [`APPROVAL_REQUESTS`]).
    async fn save_approval_requests(&mut self, requests: &[SeenRequest]) -> anyhow::Result<()>;
    /// Ids of recently received messages, oldest first.
    async fn seen(&self) -> anyhow::Result<VecDeque<MessageId>>;
    /// Replaces the ids of recently received messages (the session keeps at most
    /// [`SEEN_IDS`]).
    async fn save_seen(&mut self, seen: &VecDeque<MessageId>) -> anyhow::Result<()>;
    /// Group `id` as this device holds it (PROTOCOL.md §12.1).
    async fn group(&self, id: &GroupId) -> anyhow::Result<Option<GroupRecord>>;
    /// Stores group `id`.
    async fn save_group(&mut self, id: &GroupId, record: &GroupRecord) -> anyhow::Result<()>;
    /// The groups this device holds.
    async fn groups(&self) -> anyhow::Result<Vec<GroupId>>;
}

/// What the device keeps secret.
#[derive(Default, Serialize, Deserialize)]
pub struct Secrets {
    /// The user's signing key seed, once created or received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usk: Option<[u8; 32]>,
    /// This device's current DEK secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dek: Option<[u8; 32]>,
    /// The session id bound to that DEK.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<[u8; 16]>,
    /// The last message counter used by this device.
    #[serde(default)]
    pub counter: u64,
    /// This device's history seed: the key of the local history is derived from it
    /// (`siren_client_core::at_rest`). Created with the profile (or on first use, for older
    /// profiles); never leaves the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<[u8; 32]>,
}

impl Drop for Secrets {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        if let Some(k) = self.usk.as_mut() {
            k.zeroize();
        }
        if let Some(k) = self.dek.as_mut() {
            k.zeroize();
        }
        if let Some(k) = self.history.as_mut() {
            k.zeroize();
        }
    }
}

impl Secrets {
    /// The USK, if this device has it.
    pub fn usk(&self) -> Option<UskSecret> {
        self.usk.as_ref().map(UskSecret::from_bytes)
    }

    /// The DEK, if this device has logged in.
    pub fn dek(&self) -> Option<DekSecret> {
        self.dek.map(DekSecret::from_bytes)
    }

    /// The history seed, created (at random) if this profile has none yet. Returns whether it
    /// was created: the caller must then save the secrets before using it.
    pub fn history_seed(&mut self) -> (Zeroizing<[u8; 32]>, bool) {
        if let Some(seed) = self.history {
            return (Zeroizing::new(seed), false);
        }
        let mut seed = Zeroizing::new([0u8; 32]);
        rand_core::Rng::fill_bytes(&mut siren_proto::os_rng(), seed.as_mut());
        self.history = Some(*seed);
        (seed, true)
    }
}

/// What the client remembers about one contact.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ContactState {
    /// The last verified directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub directory: Option<UserDirectory>,
    /// DEKs seen revoked (gone from a newer listing, in a listing's revocations, or revoked by
    /// this device): never used again.
    #[serde(default)]
    pub revoked: Vec<DekPublic>,
    /// Replay windows per sender device.
    #[serde(default)]
    pub windows: Vec<(DekPublic, ReplayWindow)>,
    /// The USK whose safety number the person compared and marked verified (`siren chat`'s
    /// `/verify`); the mark holds only while the user's USK is this one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified: Option<UskPublic>,
}

impl ContactState {
    /// Remembers DEKs as revoked (each once): they are never used again, whatever a later
    /// listing says.
    pub fn remember_revoked(&mut self, deks: impl IntoIterator<Item = DekPublic>) {
        for dek in deks {
            if !self.revoked.contains(&dek) {
                self.revoked.push(dek);
            }
        }
    }

    /// The replay window of one sender device (created empty).
    pub fn window(&mut self, dek: DekPublic) -> &mut ReplayWindow {
        let i = match self.windows.iter().position(|(d, _)| *d == dek) {
            Some(i) => i,
            None => {
                self.windows.push((dek, ReplayWindow::default()));
                self.windows.len() - 1
            }
        };
        &mut self.windows[i].1
    }
}

/// The newest version of this account's roster the profile has seen (read verified or signed
/// here): a server that later returns an older or a different one is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RosterSeen {
    /// Its version.
    pub version: u64,
    /// Its hash (PROTOCOL.md §15).
    pub hash: siren_proto::transcript::Digest,
}

/// An approval request seen by `recv` or `listen`, kept for `siren devices approve`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeenRequest {
    /// The new device.
    pub new_dek: DekPublic,
    /// Its commitment.
    pub commit: siren_proto::transcript::Digest,
    /// Its name, if given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}
