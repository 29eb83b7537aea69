//! What arrives from the server, into the core: messages, presence, and notices (contact
//! requests, device approvals, directory changes, undeliverable messages).

use siren_client_core::model::{Banner, PendingApproval};
use siren_proto::message::Notice;
use siren_proto::plaintext::Plaintext;

use super::task::Driver;
use super::{Files, History, Snapshot};
use crate::{Event, Platform, Store};

impl<S: Store, P: Platform, H: History, F: Files, U: FnMut(Snapshot)> Driver<S, P, H, F, U> {
    /// One event of the session.
    pub(super) async fn event(&mut self, event: Event) -> anyhow::Result<()> {
        match event {
            // Checked by the session: from a member of the version held.
            Event::GroupMessage { message, .. } => {
                if let Plaintext::Group { group, msg, .. } = message.content {
                    let now = self.now();
                    self.core
                        .group_message(now, group, &message.from, message.id, *msg);
                }
            }
            Event::Message(m) => {
                let now = self.now();
                self.core.received(now, &m.from, m.id, m.content);
                if m.from != *self.client.uid() {
                    self.refresh_trust(&m.from).await;
                    // They write (or receipt): they may have accepted this user since.
                    if self.unsubscribed.contains(&m.from) {
                        self.subscribe(m.from).await;
                    }
                }
            }
            Event::Signal(m) => {
                let now = self.now();
                self.core.signal(now, &m.from, m.content);
            }
            Event::Refused { from, reason } => {
                self.core.banner(Banner::Problem(format!(
                    "a message from {from} was refused: {reason}"
                )));
            }
            Event::Presence { from, presence } => {
                self.core.presence(&from, Some(presence.status));
            }
            Event::Drained => {}
            // Told in the group's conversation; a problem also as a banner.
            Event::Group(news) => {
                self.refresh_groups().await;
                let now = self.now();
                let by = news.by().unwrap_or(self.client.uid()).clone();
                self.core.group_event(now, news.group, &by, news.text());
                if news.is_problem() {
                    self.core.banner(Banner::Problem(news.describe()));
                }
            }
            Event::Notice(notice) => self.notice(notice).await?,
        }
        Ok(())
    }

    async fn notice(&mut self, notice: Notice) -> anyhow::Result<()> {
        match notice {
            Notice::ContactRequest { from } => self.core.contact_request(&from),
            Notice::ApprovalRequest {
                new_dek,
                commit,
                name,
            } => {
                // Answer with a challenge at once: the code can then be shown as soon as the new
                // device reveals its nonce; nothing is handed over before the person says yes.
                // A stale request (that device gave up, or another device answered) fails
                // here and is dropped.
                if let Ok(state) = self
                    .client
                    .approval_challenge(new_dek, commit, name.clone())
                    .await
                {
                    self.approving.insert(*new_dek.as_bytes(), state);
                    self.core.approval_pending(PendingApproval {
                        new_dek,
                        name,
                        code: None,
                    });
                }
            }
            Notice::ApprovalReveal { from_dek, nonce } => {
                let uid = self.client.uid().clone();
                let Some(mine) = self.client.device() else {
                    return Ok(());
                };
                if let Some(state) = self.approving.get_mut(from_dek.as_bytes()) {
                    match state.reveal(&uid, mine, &from_dek, nonce) {
                        Some(code) => self.core.approval_pending(PendingApproval {
                            new_dek: from_dek,
                            name: state.name.clone(),
                            code: Some(code.to_string()),
                        }),
                        None => {
                            self.core.banner(Banner::Problem(
                                "a new device's answer did not match its request: refused".into(),
                            ));
                            if let Some(state) = self.approving.remove(from_dek.as_bytes()) {
                                let _ = self.client.approval_answer(&state, false).await;
                            }
                            self.core.approval_done(&from_dek);
                        }
                    }
                }
            }
            Notice::DirectoryChanged { uid, .. } if uid == *self.client.uid() => {
                self.refresh_devices().await;
            }
            Notice::DirectoryChanged { uid, .. } => match self.client.lookup(&uid).await {
                Ok(report) => {
                    if !report.added.is_empty() && !report.first {
                        self.core.key_changed(&uid);
                    }
                    self.refresh_trust(&uid).await;
                }
                Err(e) => self.core.banner(Banner::Problem(format!(
                    "cannot check {uid}'s new keys: {e:#}"
                ))),
            },
            Notice::Undeliverable { id, to, reason, .. } => {
                self.core
                    .send_failed(&id, &format!("{to}'s server gave it up: {reason}"));
            }
            _ => {}
        }
        Ok(())
    }
}
