//! The core's effects, carried out. Effects that need the server wait in order while the
//! driver is offline; the others (history, files) are done at once.

use siren_client_core::effect::Effect;
use siren_client_core::model::Banner;
use siren_proto::roster::Contact;

use super::task::{Driver, PAGE};
use super::{Files, History, Snapshot};
use crate::{Platform, ServerRefused, Store};

/// Whether an effect needs the server.
fn needs_server(effect: &Effect) -> bool {
    matches!(
        effect,
        Effect::Send { .. }
            | Effect::SendGroup { .. }
            | Effect::Signal { .. }
            | Effect::AddContact(_)
            | Effect::Block(_)
            | Effect::Unblock(_)
            | Effect::AnswerApproval { .. }
    )
}

impl<S: Store, P: Platform, H: History, F: Files, U: FnMut(Snapshot)> Driver<S, P, H, F, U> {
    /// Local effects now; the rest wait for a connection. Signals (typing) are not kept: they
    /// matter only now.
    pub(super) async fn offline_effects(&mut self) {
        loop {
            let effects = self.core.take_effects();
            if effects.is_empty() {
                return;
            }
            for effect in effects {
                if matches!(effect, Effect::Signal { .. }) {
                    continue;
                }
                if needs_server(&effect) {
                    self.waiting.push_back(effect);
                } else {
                    self.local(effect).await;
                }
            }
        }
    }

    /// Every effect, in order, the waiting ones first. A connection failure stops here with an
    /// error, the unfinished effects kept for the next connection.
    pub(super) async fn online_effects(&mut self) -> anyhow::Result<()> {
        loop {
            let fresh = self.core.take_effects();
            self.waiting.extend(fresh);
            let Some(effect) = self.waiting.pop_front() else {
                return Ok(());
            };
            if !needs_server(&effect) {
                self.local(effect).await;
                continue;
            }
            if let Err(e) = self.remote(&effect).await {
                if e.downcast_ref::<ServerRefused>().is_some() {
                    self.refused(&effect, &format!("{e:#}"));
                } else {
                    // The connection failed: try again after reconnecting.
                    if !matches!(effect, Effect::Signal { .. }) {
                        self.waiting.push_front(effect);
                    }
                    return Err(e);
                }
            }
        }
    }

    /// The server refused an effect for good.
    fn refused(&mut self, effect: &Effect, why: &str) {
        match effect {
            Effect::Send { id, .. } | Effect::SendGroup { id, .. } => {
                self.core.send_failed(id, why);
            }
            Effect::Signal { .. } => {}
            _ => self.core.banner(Banner::Problem(why.to_owned())),
        }
    }

    /// An effect that needs the server.
    async fn remote(&mut self, effect: &Effect) -> anyhow::Result<()> {
        match effect {
            Effect::Send { to, id, content } => {
                self.client.send_plaintext(to, *id, content).await?;
                self.core.sent(&[*id]);
                if let Some(report) = self.client.last_lookup()
                    && !report.added.is_empty()
                    && !report.first
                    && to != self.client.uid()
                {
                    self.core.key_changed(to);
                    self.refresh_trust(to).await;
                } else if to != self.client.uid() && !self.safety.contains_key(to) {
                    // Sent, so looked up: the safety number with them is known now.
                    self.refresh_trust(to).await;
                }
            }
            Effect::SendGroup { group, id, content } => {
                let sent = self
                    .client
                    .send_to_group(group, *id, content.clone())
                    .await?;
                self.core.sent(&[*id]);
                for (who, why) in sent.skipped {
                    self.core.banner(Banner::Problem(format!(
                        "a group message could not be sealed to {who}: {why}"
                    )));
                }
            }
            Effect::Signal { to, content } => {
                self.client.send_signal(to, content).await?;
            }
            Effect::AddContact(uid) => {
                let uid = uid.clone();
                self.client
                    .edit_roster(|contacts, blocked| {
                        blocked.retain(|b| *b != uid);
                        if !contacts.iter().any(|c| c.uid == uid) {
                            contacts.push(Contact {
                                uid: uid.clone(),
                                name: None,
                                presence: true,
                            });
                        }
                        Ok(())
                    })
                    .await?;
                self.refresh_roster().await?;
            }
            Effect::Block(uid) => {
                let uid = uid.clone();
                self.client
                    .edit_roster(|_, blocked| {
                        if !blocked.contains(&uid) {
                            blocked.push(uid.clone());
                        }
                        Ok(())
                    })
                    .await?;
                self.refresh_roster().await?;
            }
            Effect::Unblock(uid) => {
                let uid = uid.clone();
                self.client
                    .edit_roster(|_, blocked| {
                        blocked.retain(|b| *b != uid);
                        Ok(())
                    })
                    .await?;
                self.refresh_roster().await?;
            }
            Effect::AnswerApproval { new_dek, approve } => {
                let Some(state) = self.approving.remove(new_dek.as_bytes()) else {
                    self.core.banner(Banner::Problem(
                        "that device's request is no longer pending".into(),
                    ));
                    return Ok(());
                };
                let result = self.client.approval_answer(&state, *approve).await;
                self.core.approval_done(new_dek);
                match result {
                    Ok(()) if *approve => {
                        self.core
                            .banner(Banner::Info("the new device was approved".into()));
                    }
                    Ok(()) => {
                        self.core
                            .banner(Banner::Info("the new device was refused".into()));
                    }
                    Err(e) => return Err(e),
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// An effect done on this machine.
    async fn local(&mut self, effect: Effect) {
        match effect {
            Effect::Store(msg) => {
                if let Some(history) = self.history.as_mut()
                    && let Err(e) = history.store(&msg).await
                {
                    self.problem(format!("cannot write the history: {e:#}"));
                }
            }
            Effect::LoadHistory {
                chat,
                before,
                limit,
            } => {
                let page = match &self.history {
                    Some(h) => h.page(&chat, before.as_ref(), limit.min(PAGE * 4)).await,
                    None => Ok((Vec::new(), false)),
                };
                match page {
                    Ok((msgs, more)) => self.core.history_loaded(&chat, msgs, more),
                    Err(e) => {
                        self.core.history_loaded(&chat, Vec::new(), false);
                        self.problem(format!("cannot read the history: {e:#}"));
                    }
                }
            }
            Effect::SaveFile { file, name, data } => match self.files.save(&name, &data).await {
                Ok(place) => self.core.file_saved(&file, place),
                Err(e) => self
                    .core
                    .file_save_failed(file, name, data, &format!("{e:#}")),
            },
            Effect::ReadFile { to, path } => match self.files.read(&path).await {
                Ok((name, data)) => {
                    let now = self.now();
                    self.core
                        .send_file(now, &to, &name, &data, &mut siren_proto::os_rng());
                }
                Err(e) => self.problem(format!("cannot send {path}: {e:#}")),
            },
            Effect::MarkVerified(uid) => {
                if let Err(e) = self.client.mark_verified(&uid).await {
                    self.problem(format!("cannot remember the verification: {e:#}"));
                }
                self.refresh_trust(&uid).await;
            }
            Effect::SetReadReceipts(on) => self.options.read_receipts = on,
            // The server's effects never get here.
            _ => {}
        }
    }
}
