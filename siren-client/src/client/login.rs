//! Logging in: a fresh DEK per login, the first device creating the USK, a device with the USK
//! registering directly, and retiring the device's previous DEK; the recovery key.

use anyhow::{Context as _, bail};
use siren_proto::approval::ShortCode;
use siren_proto::handshake::SessionRequest;
use siren_proto::ids::SessionId;
use siren_proto::keys::{DekSecret, SekPublic, UskPublic, UskSecret};
use siren_proto::message::{ClientMessage, NextStep, ServerMessage};
use siren_proto::records::{DeviceRecordDraft, UserDirectory};
use siren_proto::transcript::Digest;

use super::{Client, Credentials, Event, LoginOutcome, now};
use crate::x509;

impl Client {
    /// Logs in with a password on this device with a fresh DEK (the spec's "freshly generated
    /// with each session"), and registers it:
    ///
    /// * the user's first device creates the USK;
    /// * a device that already holds the USK registers the new DEK with it, then drains the old
    ///   DEK's queue (the messages are returned) and revokes the old DEK;
    /// * a device without the USK asks the user's other devices for approval; `on_code` gets the
    ///   six-digit code to compare with the approving device.
    pub async fn login(
        &mut self,
        password: &str,
        device_name: Option<String>,
        on_code: &mut dyn FnMut(ShortCode),
    ) -> anyhow::Result<(LoginOutcome, Vec<Event>)> {
        self.login_with(Credentials::Password(password), device_name, on_code)
            .await
    }

    /// [`Client::login`] with a password or a client certificate.
    pub async fn login_with(
        &mut self,
        credentials: Credentials<'_>,
        device_name: Option<String>,
        on_code: &mut dyn FnMut(ShortCode),
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
        let mechs = match conn.recv().await? {
            ServerMessage::AuthMechanisms { mechs } => mechs,
            other => bail!("expected the mechanism list, got {other:?}"),
        };
        let (mech, what) = match credentials {
            Credentials::Password(_) => ("PLAIN", "password login"),
            Credentials::PasswordVia { mechanism, .. } => (mechanism, "that mechanism"),
            Credentials::Certificate(_) => (x509::MECHANISM, "certificate login (X509)"),
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
        let mut answer = conn
            .request(|rid| ClientMessage::AuthStart {
                rid,
                mech: mech.into(),
                data: creds.clone(),
            })
            .await?;
        if let ServerMessage::AuthChallenge { rid, .. } = answer {
            answer = conn
                .request(|_| ClientMessage::AuthStep {
                    rid,
                    data: creds.clone(),
                })
                .await?;
        }
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
                let usk = UskSecret::generate(&mut siren_proto::os_rng());
                self.secrets.usk = Some(*usk.to_bytes());
                // Save before registering: the USK must never be lost once published.
                self.profile.save_secrets(&self.secrets)?;
                self.register(&usk, &dek, 1, Digest::ZERO, device_name)
                    .await?;
                LoginOutcome::CreatedUser
            }
            NextStep::AwaitApproval { listing } => {
                let check = UserDirectory::check_listing(&uid, &listing, None).map_err(|e| {
                    anyhow::anyhow!("the server's listing of {uid} does not verify: {e}")
                })?;
                let directory = check.directory;
                let (usk, outcome) = match self.secrets.usk() {
                    Some(usk) => (usk, LoginOutcome::Registered),
                    None => {
                        let usk = self
                            .await_approval(&dek, &directory, device_name.clone(), on_code)
                            .await?;
                        self.secrets.usk = Some(*usk.to_bytes());
                        self.profile.save_secrets(&self.secrets)?;
                        (usk, LoginOutcome::Approved)
                    }
                };
                if directory.usk() != &usk.public() {
                    bail!(
                        "the directory of {uid} is signed by a different USK than this device holds"
                    );
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
        self.profile.save_secrets(&self.secrets)?;
        // The old DEK of this device: deliver what waits for it, then revoke it.
        let mut drained = Vec::new();
        if let Some((old_dek, old_sid)) = old
            && old_dek.public() != dek.public()
        {
            drained = self.retire(&old_dek, old_sid).await?;
        }
        Ok((outcome, drained))
    }

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
            ts: now(),
            name,
        }
        .sign(usk);
        self.conn()?
            .request(|rid| ClientMessage::Register {
                rid,
                record: record.clone(),
            })
            .await?;
        Ok(())
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
    pub fn import_recovery_key(&mut self, key: &str) -> anyhow::Result<UskPublic> {
        if self.secrets.usk.is_some() {
            bail!("this profile already has a signing key");
        }
        let seed = SekPublic::from_base64(key.trim())
            .context("a recovery key is 44 characters of base64")?;
        let usk = UskSecret::from_bytes(seed.as_bytes());
        self.secrets.usk = Some(*usk.to_bytes());
        self.profile.save_secrets(&self.secrets)?;
        Ok(usk.public())
    }
}
