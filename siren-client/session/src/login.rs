//! Logging in: a fresh DEK per login, the first device creating the USK, a device with the USK
//! registering directly, and retiring the device's previous DEK; the recovery key.

use std::time::Duration;

use anyhow::{Context as _, bail};
use siren_api::ErrorCode;
use siren_proto::handshake::SessionRequest;
use siren_proto::ids::SessionId;
use siren_proto::keys::{DekSecret, SekPublic, UskPublic, UskSecret};
use siren_proto::message::{ClientMessage, NextStep, ServerMessage};
use siren_proto::records::{DeviceRecordDraft, DirectoryEntry};
use siren_proto::transcript::Digest;

use super::{
    ApprovalPrompt, Client, Credentials, Event, LoginOutcome, Platform, ServerRefused, Store,
    X509_MECHANISM,
};
use siren_proto::fingerprint::fingerprint;

impl<S: Store, P: Platform> Client<S, P> {
    /// Logs in with a password on this device with a fresh DEK (the spec's "freshly generated
    /// with each session"), and registers it:
    ///
    /// * the user's first device creates the USK;
    /// * a device that already holds the USK registers the new DEK with it, then drains the old
    ///   DEK's queue (the messages are returned) and revokes the old DEK;
    /// * a device without the USK asks the user's other devices for approval: `prompt` shows
    ///   the six-digit code to compare with the approving device, and once the USK arrived, asks
    ///   the person to confirm they approved the code on one of their devices (PROTOCOL.md §16).
    pub async fn login(
        &mut self,
        password: &str,
        device_name: Option<String>,
        prompt: &mut impl ApprovalPrompt,
    ) -> anyhow::Result<(LoginOutcome, Vec<Event>)> {
        self.login_with(Credentials::Password(password), device_name, prompt)
            .await
    }

    /// [`Client::login`] with a password or a client certificate.
    pub async fn login_with(
        &mut self,
        credentials: Credentials<'_>,
        device_name: Option<String>,
        prompt: &mut impl ApprovalPrompt,
    ) -> anyhow::Result<(LoginOutcome, Vec<Event>)> {
        let old = match (self.secrets.dek(), self.secrets.session) {
            (Some(dek), Some(sid)) => Some((dek, SessionId::from_bytes(sid))),
            _ => None,
        };
        let dek = DekSecret::generate(&mut siren_proto::os_rng());
        let (mut conn, welcome) = self.open(&dek, SessionRequest::Open).await?;
        let ServerMessage::Welcome { sid, .. } = welcome else {
            bail!("the server did not start with welcome");
        };
        let mechs = match conn.recv(&self.platform).await? {
            ServerMessage::AuthMechanisms { mechs } => mechs,
            other => bail!("expected the mechanism list, got {other:?}"),
        };
        let (mech, what) = match credentials {
            Credentials::Password(_) => ("PLAIN", "password login"),
            Credentials::PasswordVia { mechanism, .. } => (mechanism, "that mechanism"),
            Credentials::Certificate(_) => (X509_MECHANISM, "certificate login (X509)"),
        };
        if !mechs.iter().any(|m| m == mech) {
            bail!("the server does not offer {what} (it offers {mechs:?})");
        }
        let creds = match credentials {
            Credentials::Password(password) | Credentials::PasswordVia { password, .. } => {
                let user = self.uid().user().to_string();
                format!("\0{user}\0{password}").into_bytes()
            }
            Credentials::Certificate(cert) => {
                cert.response(&conn.channel_binding, dek.public().as_bytes(), self.uid())
            }
        };
        // A server checking too many logins at once answers 207 (`login_busy`) without
        // checking: try again after a growing pause (PROTOCOL.md §9.2).
        let mut pause = Duration::from_millis(250);
        let answer = loop {
            let platform = &self.platform;
            let attempt = async {
                let mut answer = conn
                    .request(platform, |rid| ClientMessage::AuthStart {
                        rid,
                        mech: mech.into(),
                        data: creds.clone(),
                    })
                    .await?;
                if let ServerMessage::AuthChallenge { rid, .. } = answer {
                    answer = conn
                        .request(platform, |_| ClientMessage::AuthStep {
                            rid,
                            data: creds.clone(),
                        })
                        .await?;
                }
                anyhow::Ok(answer)
            }
            .await;
            match attempt {
                Err(e)
                    if pause < Duration::from_secs(8)
                        && e.downcast_ref::<ServerRefused>()
                            .is_some_and(|r| r.code == ErrorCode::LoginBusy.as_u16()) =>
                {
                    self.platform.sleep(pause).await;
                    pause *= 2;
                }
                other => break other?,
            }
        };
        let ServerMessage::AuthSuccess { uid, next, .. } = answer else {
            bail!("unexpected answer to login: {answer:?}");
        };
        if &uid != self.uid() {
            bail!("the server logged us in as {uid}, not {}", self.uid());
        }
        self.conn = Some(conn);
        let outcome = match next {
            NextStep::Ready => LoginOutcome::AlreadyRegistered,
            NextStep::CreateUser => {
                self.check_new_account().await?;
                let usk = UskSecret::generate(&mut siren_proto::os_rng());
                // Saved before registering: the USK must never be lost once published.
                self.adopt_usk(&usk).await?;
                self.register(&usk, &dek, 1, Digest::ZERO, device_name)
                    .await?;
                LoginOutcome::CreatedUser
            }
            NextStep::AwaitApproval { listing } => {
                // Checked against what this profile remembers of its own account, like any
                // lookup: a device that holds the USK never signs on top of an old listing.
                let verified = self.verify_listing(&uid, &listing).await?;
                let directory = verified.report.directory.clone();
                let (usk, outcome) = match self.secrets.usk() {
                    Some(usk) => (usk, LoginOutcome::Registered),
                    None => {
                        let (usk, code) = self
                            .await_approval(&dek, &directory, device_name.clone(), prompt)
                            .await?;
                        let fp = fingerprint(usk.public().as_bytes());
                        if !prompt.confirm(code, &usk.public()).await {
                            bail!(
                                "not confirmed: the signing key {fp} was not stored and this device was not registered (if you approved code {code} on none of your devices, the approval did not come from you: do not trust this server)"
                            );
                        }
                        (usk, LoginOutcome::Approved)
                    }
                };
                if directory.usk() != &usk.public() {
                    bail!(
                        "the directory of {uid} is signed by a different USK than this device holds"
                    );
                }
                self.remember(verified).await?;
                if outcome == LoginOutcome::Approved {
                    self.adopt_usk(&usk).await?;
                }
                let head = directory.head();
                self.register(&usk, &dek, head.seq + 1, head.hash, device_name)
                    .await?;
                outcome
            }
            other => bail!("unsupported login step {other:?}"),
        };
        self.secrets.dek = Some(*dek.to_bytes());
        self.secrets.session = Some(*sid.as_bytes());
        self.store.save_secrets(&self.secrets).await?;
        // The old DEK of this device: deliver what waits for it, then revoke it.
        let mut drained = Vec::new();
        if let Some((old_dek, old_sid)) = old
            && old_dek.public() != dek.public()
        {
            drained = self.retire(&old_dek, old_sid).await?;
        }
        Ok((outcome, drained))
    }

    /// Registers `dek` with a record signed by `usk`, and moves the own-account cache along.
    async fn register(
        &mut self,
        usk: &UskSecret,
        dek: &DekSecret,
        seq: u64,
        prev: Digest,
        name: Option<String>,
    ) -> anyhow::Result<()> {
        let record = DeviceRecordDraft {
            uid: self.uid().clone(),
            dek: dek.public(),
            seq,
            prev,
            ts: self.now(),
            name,
        }
        .sign(usk);
        self.request(|rid| ClientMessage::Register {
            rid,
            record: record.clone(),
        })
        .await?;
        self.remember_own_entry(DirectoryEntry::Add(record)).await
    }

    /// Before making a new USK for `create_user`: the server says the account has no devices,
    /// which a profile that holds the account's USK, or has seen its directory, knows is false
    /// (a lying server, or one restored from an old backup).
    async fn check_new_account(&self) -> anyhow::Result<()> {
        let uid = self.uid();
        if let Some(usk) = self.secrets.usk() {
            bail!(
                "the server says {uid} has no devices yet (create_user), but this device holds the account's signing key {}: refusing to make a new one (a restored or lying server?)",
                fingerprint(usk.public().as_bytes())
            );
        }
        if let Some(known) = self.store.contact(uid).await?.directory {
            bail!(
                "the server says {uid} has no devices yet (create_user), but this profile has seen its directory at version {} with signing key {}: refusing to make a new key (a restored or lying server?)",
                known.head().seq,
                fingerprint(known.usk().as_bytes())
            );
        }
        Ok(())
    }

    /// Stores the account's USK in a profile that has none. A USK is never replaced: every
    /// path that obtains one (creation, approval, recovery key) goes through here.
    async fn adopt_usk(&mut self, usk: &UskSecret) -> anyhow::Result<()> {
        if let Some(held) = self.secrets.usk() {
            bail!(
                "this profile already holds the signing key {}; it is never replaced",
                fingerprint(held.public().as_bytes())
            );
        }
        self.secrets.usk = Some(*usk.to_bytes());
        self.store.save_secrets(&self.secrets).await
    }

    /// Drains the queue of this device's previous DEK through its old session, then revokes it
    /// from the new session. Returns what was delivered to the old DEK.
    async fn retire(&mut self, old: &DekSecret, old_sid: SessionId) -> anyhow::Result<Vec<Event>> {
        let mut events = Vec::new();
        let new_conn = self.conn.take();
        let new_secrets = (self.secrets.dek, self.secrets.session);
        if let Ok((conn, ServerMessage::Welcome { resumed: true, .. })) =
            self.open(old, SessionRequest::Resume(old_sid)).await
        {
            self.conn = Some(conn);
            self.secrets.dek = Some(*old.to_bytes());
            let drained = async {
                while let Some(e) = self.next_event(true).await? {
                    events.push(e);
                }
                self.bye().await
            }
            .await;
            self.secrets.dek = new_secrets.0;
            self.secrets.session = new_secrets.1;
            drained?;
        }
        self.conn = new_conn;
        self.revoke(&old.public()).await?;
        Ok(events)
    }

    /// The USK seed as a recovery key (base64), to keep offline: with it a new device joins
    /// without another device's approval.
    pub fn recovery_key(&self) -> anyhow::Result<String> {
        let usk = self
            .secrets
            .usk()
            .context("this device has no signing key")?;
        Ok(SekPublic::from_bytes(*usk.to_bytes()).to_base64())
    }

    /// Stores a recovery key in a profile that has no signing key yet; the next `login`
    /// registers this device with it.
    pub async fn import_recovery_key(&mut self, key: &str) -> anyhow::Result<UskPublic> {
        let seed = SekPublic::from_base64(key.trim())
            .context("a recovery key is 44 characters of base64")?;
        let usk = UskSecret::from_bytes(seed.as_bytes());
        self.adopt_usk(&usk).await?;
        Ok(usk.public())
    }
}
