//! Adding a device (PROTOCOL.md §16): the new device's side (commit, reveal, open the USK
//! transfer) and the approving device's side (challenge, compare codes, grant or deny).

use std::time::Duration;

use anyhow::{Context as _, bail};
use siren_proto::approval::{self, ApprovalTranscript, ShortCode, UskTransfer};
use siren_proto::keys::{DekPublic, DekSecret, UskSecret};
use siren_proto::message::{ClientMessage, Notice};
use siren_proto::records::UserDirectory;
use siren_proto::transcript::Digest;

use crate::platform::within;

use super::{ApprovalPrompt, Client, Event, Platform, Store};

impl<S: Store, P: Platform> Client<S, P> {
    /// The next approval notice for this (new) device, pinging while waiting.
    async fn next_notice(&mut self) -> anyhow::Result<Notice> {
        loop {
            let timer = self.platform.sleep(Duration::from_secs(30));
            match within(timer, self.next_event(false)).await {
                Some(Ok(Some(Event::Notice(n)))) => return Ok(n),
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(e),
                None => self.ping().await?,
            }
        }
    }

    /// The new device's side of an approval (PROTOCOL.md §16): commit, answer the first
    /// challenge with the reveal, show the code, and open the USK transfer. Returns the USK and
    /// the code shown; the caller asks the person to confirm before keeping the USK.
    pub(super) async fn await_approval(
        &mut self,
        dek: &DekSecret,
        directory: &UserDirectory,
        name: Option<String>,
        prompt: &mut impl ApprovalPrompt,
    ) -> anyhow::Result<(UskSecret, ShortCode)> {
        let uid = self.uid().clone();
        let mut rng = siren_proto::os_rng();
        let new_nonce = approval::random_nonce(&mut rng);
        let commit = approval::commitment(&uid, &dek.public(), &new_nonce);
        self.request(|rid| ClientMessage::ApprovalRequest {
            rid,
            commit,
            name: name.clone(),
        })
        .await?;
        let published: Vec<DekPublic> = directory.devices().map(|r| r.dek).collect();
        let mut transcript: Option<ApprovalTranscript> = None;
        loop {
            match self.next_notice().await? {
                Notice::ApprovalChallenge { from_dek, nonce } if transcript.is_none() => {
                    if !published.contains(&from_dek) {
                        continue; // not one of the user's published devices
                    }
                    self.request(|rid| ClientMessage::ApprovalReveal {
                        rid,
                        to: from_dek,
                        nonce: new_nonce,
                    })
                    .await?;
                    let t = ApprovalTranscript {
                        uid: uid.clone(),
                        new_dek: dek.public(),
                        existing_dek: from_dek,
                        commit,
                        existing_nonce: nonce,
                        new_nonce,
                    };
                    prompt.show_code(t.short_code());
                    transcript = Some(t);
                }
                Notice::ApprovalGrant { transfer } => {
                    let Some(t) = &transcript else { continue };
                    let usk = transfer
                        .open(dek, t, directory.usk(), &published)
                        .map_err(|e| {
                            anyhow::anyhow!(
                                "the signing key sent by the other device does not check out: {e}"
                            )
                        })?;
                    return Ok((usk, t.short_code()));
                }
                Notice::ApprovalDeny { .. } => bail!("the other device denied this login"),
                _ => {}
            }
        }
    }

    /// The approving side: waits up to `wait` for an approval request, answers it, and when the
    /// new device reveals its nonce, asks `decide` (given the new device's name and the code)
    /// whether to hand over the USK.
    pub async fn approve_next(
        &mut self,
        wait: Duration,
        decide: &mut dyn FnMut(Option<&str>, ShortCode) -> bool,
    ) -> anyhow::Result<bool> {
        let usk = self.secrets.usk().context("this device has no USK")?;
        let my_dek = self.secrets.dek().context("not logged in")?.public();
        let uid = self.uid().clone();
        let deadline = self
            .platform
            .now_millis()
            .saturating_add(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX));
        // (new device, its commitment and name, our nonce)
        let mut pending: Option<(DekPublic, Digest, Option<String>, approval::ApprovalNonce)> =
            None;
        // Requests that `recv` or `listen` already took from the queue, newest first: the first
        // one the server still has pending is answered.
        let saved = self.store.approval_requests().await?;
        self.store.save_approval_requests(&[]).await?;
        for req in saved.into_iter().rev() {
            let nonce = approval::random_nonce(&mut siren_proto::os_rng());
            let to = req.new_dek;
            if self
                .request(|rid| ClientMessage::ApprovalChallenge { rid, to, nonce })
                .await
                .is_ok()
            {
                pending = Some((req.new_dek, req.commit, req.name, nonce));
                break;
            }
        }
        loop {
            let left = Duration::from_millis(deadline.saturating_sub(self.platform.now_millis()));
            let timer = self.platform.sleep(left.min(Duration::from_secs(30)));
            let notice = match within(timer, self.next_event(false)).await {
                Some(Ok(Some(Event::Notice(n)))) => n,
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e),
                None if left.is_zero() => bail!("no approval request arrived within {wait:?}"),
                None => {
                    self.ping().await?;
                    continue;
                }
            };
            match notice {
                Notice::ApprovalRequest {
                    new_dek,
                    commit,
                    name,
                } => {
                    let nonce = approval::random_nonce(&mut siren_proto::os_rng());
                    let sent = self
                        .request(|rid| ClientMessage::ApprovalChallenge {
                            rid,
                            to: new_dek,
                            nonce,
                        })
                        .await;
                    if sent.is_ok() {
                        pending = Some((new_dek, commit, name, nonce));
                    } // else: a stale request (that device gave up); wait for another
                }
                Notice::ApprovalReveal { from_dek, nonce } => {
                    let Some((new_dek, commit, name, existing_nonce)) = pending.clone() else {
                        continue;
                    };
                    if from_dek != new_dek {
                        continue;
                    }
                    let genuine = approval::check_reveal(&commit, &uid, &new_dek, &nonce);
                    let t = ApprovalTranscript {
                        uid: uid.clone(),
                        new_dek,
                        existing_dek: my_dek,
                        commit,
                        existing_nonce,
                        new_nonce: nonce,
                    };
                    if genuine && decide(name.as_deref(), t.short_code()) {
                        let transfer = UskTransfer::seal(&usk, &t, &mut siren_proto::os_rng())?;
                        self.request(|rid| ClientMessage::ApprovalGrant {
                            rid,
                            transfer: transfer.clone(),
                        })
                        .await?;
                        return Ok(true);
                    }
                    self.request(|rid| ClientMessage::ApprovalDeny { rid, to: new_dek })
                        .await?;
                    return Ok(false);
                }
                _ => {}
            }
        }
    }

    /// Step 1 of approving a device one step at a time (for an interactive driver that keeps
    /// reading its session meanwhile): answers an `approval_request` with a challenge. Keep the
    /// returned state; hand it the new device's reveal with [`Approving::reveal`].
    pub async fn approval_challenge(
        &mut self,
        new_dek: DekPublic,
        commit: Digest,
        name: Option<String>,
    ) -> anyhow::Result<Approving> {
        let nonce = approval::random_nonce(&mut siren_proto::os_rng());
        self.request(|rid| ClientMessage::ApprovalChallenge {
            rid,
            to: new_dek,
            nonce,
        })
        .await?;
        Ok(Approving {
            new_dek,
            commit,
            name,
            nonce,
            transcript: None,
        })
    }

    /// Last step: hands over the USK (`approve`) or denies the new device. Approving needs the
    /// code: [`Approving::reveal`] must have succeeded.
    pub async fn approval_answer(
        &mut self,
        state: &Approving,
        approve: bool,
    ) -> anyhow::Result<()> {
        let new_dek = state.new_dek;
        match (&state.transcript, approve) {
            (Some(t), true) => {
                let usk = self.secrets.usk().context("this device has no USK")?;
                let transfer = UskTransfer::seal(&usk, t, &mut siren_proto::os_rng())?;
                self.request(|rid| ClientMessage::ApprovalGrant { rid, transfer })
                    .await?;
            }
            (None, true) => bail!("the new device has not shown its code yet"),
            (_, false) => {
                self.request(|rid| ClientMessage::ApprovalDeny { rid, to: new_dek })
                    .await?;
            }
        }
        Ok(())
    }
}

/// An approval in progress on the approving device (see [`Client::approval_challenge`]).
#[derive(Debug, Clone)]
pub struct Approving {
    /// The new device.
    pub new_dek: DekPublic,
    commit: Digest,
    /// The name it gave.
    pub name: Option<String>,
    nonce: approval::ApprovalNonce,
    transcript: Option<ApprovalTranscript>,
}

impl Approving {
    /// Step 2: the new device revealed its nonce (`approval_reveal` from `from_dek`). Returns the
    /// six-digit code to compare with the new device's, or `None` when the reveal is not from
    /// this device or does not match its commitment (then nothing may be approved).
    pub fn reveal(
        &mut self,
        uid: &siren_api::Uid,
        existing_dek: DekPublic,
        from_dek: &DekPublic,
        nonce: approval::ApprovalNonce,
    ) -> Option<ShortCode> {
        if *from_dek != self.new_dek
            || !approval::check_reveal(&self.commit, uid, &self.new_dek, &nonce)
        {
            return None;
        }
        let t = ApprovalTranscript {
            uid: uid.clone(),
            new_dek: self.new_dek,
            existing_dek,
            commit: self.commit,
            existing_nonce: self.nonce,
            new_nonce: nonce,
        };
        let code = t.short_code();
        self.transcript = Some(t);
        Some(code)
    }
}
