//! The client of `siren` and `siren chat`: the session code of [`siren_client_session`]
//! (login, approval, verified lookups, sealing and opening, roster, presence — the code the
//! browser runs too) on tokio, over TCP or the web listener's WebSocket ([`siren_net`]), keeping
//! its state in a [`Profile`] directory.

use std::collections::VecDeque;
use std::time::Duration;

use siren_api::Uid;
use siren_client_session::groups::GroupRecord;
use siren_net::{Connected, Receiver, Sender};
use siren_proto::handshake::{SessionRequest, StaticShared};
use siren_proto::ids::{GroupId, MessageId};
use siren_proto::keys::DekSecret;
use siren_proto::message::{ClientMessage, ServerMessage};

pub use siren_client_session::{
    ApprovalPrompt, Approving, CertificateLogin, Credentials, Event, LoginOutcome, LookupReport,
    Received, ServerRefused, TIMEOUT,
};
use siren_client_session::{
    ContactState, Link, Opened, Platform, RosterSeen, Secrets, SeenRequest, Store,
};

use crate::history::History;
use crate::profile::{Profile, Settings};

/// A client over one profile, on tokio.
pub type Client = siren_client_session::Client<Profile, Tokio>;

/// A client for an open profile.
pub fn open(profile: Profile) -> anyhow::Result<Client> {
    let secrets = profile.secrets()?;
    let seen = profile.seen()?;
    let uid = profile.settings.uid.clone();
    let platform = Tokio {
        settings: profile.settings.clone(),
        shared: None,
    };
    Ok(Client::with_state(uid, profile, platform, secrets, seen))
}

/// Opens the profile's local history ([`crate::history`]), creating the history seed in the
/// keys file first if this (older) profile has none.
pub async fn history(client: &mut Client) -> anyhow::Result<History> {
    let seed = client.history_seed().await?;
    Ok(History::open_in(client.store().dir(), &seed)?)
}

/// tokio, TCP or WebSocket connections to the server the profile names, the system clock.
pub struct Tokio {
    settings: Settings,
    /// The DEK's agreement with the server's key, kept across reconnections (computed again
    /// after a new login's DEK or a new server key).
    shared: Option<StaticShared>,
}

impl Platform for Tokio {
    type Link = NetLink;

    async fn open(
        &mut self,
        dek: &DekSecret,
        request: SessionRequest,
    ) -> anyhow::Result<Opened<NetLink>> {
        let s = &self.settings;
        let sek = s.sek()?;
        let shared = StaticShared::keep(&mut self.shared, dek, &sek)?;
        // `s.server` may be the web listener's `ws://…/ws` (for networks that pass only HTTP):
        // `connect` goes there, and the pinned key authenticates the session as over TCP. When
        // it cannot be reached, the other nodes of the server are tried in order; every one must
        // prove the same pinned key.
        let mut failed = Vec::new();
        let mut connected = None;
        for address in std::iter::once(&s.server).chain(&s.fallback) {
            let connecting =
                siren_net::connect_with(address, s.server_name(), shared, dek, request, TIMEOUT);
            match connecting.await {
                Ok(c) => {
                    connected = Some(c);
                    break;
                }
                Err(e) => failed.push(format!("{address}: {e:#}")),
            }
        }
        let Some(Connected {
            sender,
            receiver,
            rotated_sek,
            handshake_hash,
            ..
        }) = connected
        else {
            anyhow::bail!(
                "cannot open a session with {}: {}",
                s.server_name(),
                failed.join("; ")
            );
        };
        if rotated_sek.is_some() {
            crate::note!("note: the server announced a new key; update server_key in profile.toml");
        }
        Ok(Opened {
            link: NetLink {
                tx: sender,
                rx: receiver,
            },
            handshake_hash: *handshake_hash.as_bytes(),
        })
    }

    fn sleep(&self, duration: Duration) -> impl Future<Output = ()> + 'static {
        tokio::time::sleep(duration)
    }

    fn now_millis(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }
}

/// A session's encrypted frames over TCP or a WebSocket ([`siren_net`]).
pub struct NetLink {
    tx: Sender,
    rx: Receiver,
}

impl Link for NetLink {
    async fn send(&mut self, msg: &ClientMessage) -> anyhow::Result<()> {
        Ok(self.tx.send(msg).await?)
    }

    async fn recv(&mut self) -> anyhow::Result<Option<ServerMessage>> {
        match self.rx.recv::<ServerMessage>().await {
            Ok(msg) => Ok(Some(msg)),
            Err(siren_net::NetError::Decode(e))
                if matches!(
                    e.kind,
                    siren_proto::message::DecodeErrorKind::UnknownType(_)
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn set_max_frame(&mut self, max_frame: usize) {
        self.tx.set_max_frame(max_frame);
    }
}

/// The profile's files are written before each call returns.
impl Store for Profile {
    async fn secrets(&self) -> anyhow::Result<Secrets> {
        Profile::secrets(self)
    }
    async fn save_secrets(&mut self, secrets: &Secrets) -> anyhow::Result<()> {
        Profile::save_secrets(self, secrets)
    }
    async fn contact(&self, uid: &Uid) -> anyhow::Result<ContactState> {
        Profile::contact(self, uid)
    }
    async fn save_contact(&mut self, uid: &Uid, state: &ContactState) -> anyhow::Result<()> {
        Profile::save_contact(self, uid, state)
    }
    async fn roster_seen(&self) -> anyhow::Result<Option<RosterSeen>> {
        Profile::roster_seen(self)
    }
    async fn save_roster_seen(&mut self, seen: &RosterSeen) -> anyhow::Result<()> {
        Profile::save_roster_seen(self, seen)
    }
    async fn approval_requests(&self) -> anyhow::Result<Vec<SeenRequest>> {
        Profile::approval_requests(self)
    }
    async fn save_approval_requests(&mut self, requests: &[SeenRequest]) -> anyhow::Result<()> {
        Profile::save_approval_requests(self, requests)
    }
    async fn seen(&self) -> anyhow::Result<VecDeque<MessageId>> {
        Profile::seen(self)
    }
    async fn save_seen(&mut self, seen: &VecDeque<MessageId>) -> anyhow::Result<()> {
        Profile::save_seen(self, seen)
    }
    async fn group(&self, id: &GroupId) -> anyhow::Result<Option<GroupRecord>> {
        Profile::group(self, id)
    }
    async fn save_group(&mut self, id: &GroupId, record: &GroupRecord) -> anyhow::Result<()> {
        Profile::save_group(self, id, record)
    }
    async fn groups(&self) -> anyhow::Result<Vec<GroupId>> {
        Profile::groups(self)
    }
}
