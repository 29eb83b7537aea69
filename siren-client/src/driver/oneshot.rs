//! The client core for the one-shot commands (`siren recv`, `siren listen`, the messages `siren
//! login` prints): what arrives goes through the same [`Core`] as in `siren chat`, so the
//! same rules apply — delivered receipts to accepted, unblocked senders (never to strangers),
//! edits, deletions, receipts and own-device copies applied to the conversations, records
//! written to the sealed history — and a line printed counts as read on this account's other
//! devices. Read receipts to others stay with the interactive client (a printed line is not a
//! person who read it).

use siren_api::Uid;
use siren_client_core::effect::Effect;
use siren_client_core::model::Chat;
use siren_client_core::{Command, Core};
use siren_proto::message::Notice;
use siren_proto::plaintext::Plaintext;

use super::{PAGE, now_millis};
use crate::client::{Client, Event};
use crate::history::History;

/// Conversations loaded from the history at start (the most recent first).
const CONVERSATIONS: usize = 200;

/// The core behind one one-shot command.
pub struct OneShot {
    core: Core,
    me: Uid,
    history: Option<History>,
    /// Conversations whose messages were shown since the last [`OneShot::flush`].
    shown: Vec<Chat>,
}

impl OneShot {
    /// A core with this account's roster and the newest history of its recent conversations
    /// (so receipts, edits and deletions apply to the messages they name). Problems reading the
    /// history come back as warnings; the command goes on without it.
    pub async fn start(
        client: &mut Client,
        history: Option<History>,
    ) -> anyhow::Result<(OneShot, Vec<String>)> {
        let me = client.uid().clone();
        let mut core = Core::new(me.clone(), false, &mut siren_proto::os_rng());
        let (contacts, blocked) = client
            .roster()
            .await?
            .map(|r| (r.contacts, r.blocked))
            .unwrap_or_default();
        core.set_roster(
            contacts.into_iter().map(|c| (c.uid, c.name)).collect(),
            blocked,
        );
        let mut warnings = Vec::new();
        if let Some(h) = &history {
            match h.conversations() {
                Ok(entries) => {
                    for entry in entries.into_iter().take(CONVERSATIONS) {
                        match h.page(&entry.chat, None, PAGE) {
                            Ok((msgs, more)) => core.history_loaded(&entry.chat, msgs, more),
                            Err(e) => warnings.push(format!("cannot read the history: {e}")),
                        }
                    }
                }
                Err(e) => warnings.push(format!("cannot read the history: {e}")),
            }
        }
        match client.group_summaries().await {
            Ok(groups) => core.set_groups(groups),
            Err(e) => warnings.push(format!("cannot read this device's groups: {e:#}")),
        }
        // Loading asks for nothing to be done.
        core.take_effects();
        Ok((
            OneShot {
                core,
                me,
                history,
                shown: Vec::new(),
            },
            warnings,
        ))
    }

    /// One event, after the command printed it.
    pub fn event(&mut self, event: &Event) {
        let now = now_millis();
        match event {
            Event::Message(m) => {
                self.core.received(now, &m.from, m.id, m.content.clone());
                self.shown(Chat::User(m.from.clone()));
            }
            Event::GroupMessage { message, .. } => {
                if let Plaintext::Group { group, msg, .. } = &message.content {
                    let content = msg.as_ref().clone();
                    self.core
                        .group_message(now, *group, &message.from, message.id, content);
                    self.shown(Chat::Group(*group));
                }
            }
            Event::Group(news) => {
                let by = news.by().cloned().unwrap_or_else(|| self.me.clone());
                self.core.group_event(now, news.group, &by, news.text());
            }
            Event::Presence { from, presence } => self.core.presence(from, Some(presence.status)),
            Event::Notice(Notice::ContactRequest { from }) => self.core.contact_request(from),
            _ => {}
        }
    }

    fn shown(&mut self, chat: Chat) {
        if !self.shown.contains(&chat) {
            self.shown.push(chat);
        }
    }

    /// Carries out what the core asks for: receipts (and read marks for this account's other
    /// devices) are sealed and sent, records written. Returns warnings to print; a receipt that
    /// cannot be sent is not worth failing a command for.
    pub async fn flush(&mut self, client: &mut Client) -> Vec<String> {
        let now = now_millis();
        for peer in std::mem::take(&mut self.shown) {
            self.core
                .command(now, Command::MarkRead(peer), &mut siren_proto::os_rng());
        }
        let mut warnings = Vec::new();
        for effect in self.core.take_effects() {
            match effect {
                Effect::Send { to, id, content } => {
                    if let Err(e) = client.send_plaintext(&to, id, &content).await {
                        warnings.push(format!("cannot send a receipt to {to}: {e:#}"));
                    }
                }
                Effect::Store(msg) => {
                    if let Some(h) = self.history.as_mut()
                        && let Err(e) = h.store(&msg)
                    {
                        warnings.push(format!(
                            "message {} not kept in the history: {e}",
                            msg.id.to_hex()
                        ));
                    }
                }
                // Nothing a received message asks for needs more (files are assembled and saved
                // by `siren chat`).
                _ => {}
            }
        }
        warnings
    }
}
