//! End-to-end messages: sealing to every device of a recipient, and opening what arrives
//! (sender verified against the directory, replay windows, duplicates dropped).

use std::collections::{BTreeSet, VecDeque};

use anyhow::{Context as _, bail};
use siren_api::{ErrorCode, Uid};
use siren_proto::envelope::{Envelope, Recipient, Sender as EnvSender};
use siren_proto::ids::MessageId;
use siren_proto::message::{ClientMessage, Notice, QueueItem, ServerMessage};
use siren_proto::plaintext::Plaintext;
use siren_proto::records::UserDirectory;

use super::{Client, Event, LookupReport, Platform, Received, ServerRefused, Store, server_error};
use crate::store::{APPROVAL_REQUESTS, SEEN_IDS, SeenRequest};
use zeroize::Zeroizing;

impl<S: Store, P: Platform> Client<S, P> {
    /// The lookup the last `send_text` made (new and removed devices of the recipient).
    pub fn last_lookup(&self) -> Option<&LookupReport> {
        self.last_lookup.as_ref()
    }

    /// Sends `text` to every device of `to`. Returns the message id and the number of devices;
    /// [`Client::last_lookup`] tells which devices were new or gone.
    pub async fn send_text(&mut self, to: &Uid, text: &str) -> anyhow::Result<(MessageId, usize)> {
        let id = MessageId::random(&mut siren_proto::os_rng());
        let content = Plaintext::Text {
            body: text.to_owned(),
            ts: self.now(),
        };
        let n = self.send_plaintext(to, id, &content).await?;
        Ok((id, n))
    }

    /// The verified devices of `to`: a fresh lookup, or — when `to`'s server is unreachable —
    /// the devices last verified (our server keeps the message in its outbox until it is back).
    pub(super) async fn recipients(&mut self, to: &Uid) -> anyhow::Result<LookupReport> {
        match self.lookup(to).await {
            Ok(report) => Ok(report),
            Err(e)
                if e.downcast_ref::<ServerRefused>()
                    .is_some_and(|r| r.code == ErrorCode::PeerUnreachable.as_u16()) =>
            {
                match self.store.contact(to).await?.directory {
                    Some(directory) => Ok(LookupReport {
                        directory,
                        added: Vec::new(),
                        removed: Vec::new(),
                        first: false,
                    }),
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    /// Seals `content` (any kind, PROTOCOL.md §12) as message `id` to every device of `to` and
    /// sends it; returns once the server acknowledged it (durable), with the number of devices.
    /// When `to` is this account, the message goes to every device of it but this one (copies;
    /// zero devices is not an error). [`Client::last_lookup`] tells which devices were new or
    /// gone.
    pub async fn send_plaintext(
        &mut self,
        to: &Uid,
        id: MessageId,
        content: &Plaintext,
    ) -> anyhow::Result<usize> {
        self.send_encoded(to, id, &content.encode()).await
    }

    /// As [`Client::send_plaintext`], for a payload already encoded (PROTOCOL.md §12) — or not
    /// well-formed at all, as a test of the receiving side needs.
    pub async fn send_encoded(
        &mut self,
        to: &Uid,
        id: MessageId,
        plaintext: &[u8],
    ) -> anyhow::Result<usize> {
        let report = self.recipients(to).await?;
        self.last_lookup = Some(report.clone());
        let envelopes = self
            .seal_to_devices(to, &report.directory, id, plaintext)
            .await?;
        if envelopes.is_empty() {
            return Ok(0);
        }
        let n = envelopes.len();
        let answer = self
            .request(|rid| ClientMessage::Send {
                rid,
                msgs: envelopes,
            })
            .await?;
        match answer {
            ServerMessage::SendAck { ids, .. } if ids.contains(&id) => Ok(n),
            other => bail!("unexpected answer to send: {other:?}"),
        }
    }

    /// Seals `plaintext` as message `id` to every device of `to` in `directory` (when `to` is
    /// this account, to every device but this one), under one fresh counter that is saved before
    /// use so it never repeats, even after a crash. No devices: no envelopes.
    pub(super) async fn seal_to_devices(
        &mut self,
        to: &Uid,
        directory: &UserDirectory,
        id: MessageId,
        plaintext: &[u8],
    ) -> anyhow::Result<Vec<Envelope>> {
        let usk = self.secrets.usk().context("this device has no USK")?;
        let dek = self.secrets.dek().context("not logged in")?;
        let my_dek = dek.public();
        let me = self.uid().clone();
        let targets: Vec<_> = directory
            .devices()
            .map(|r| r.dek)
            .filter(|d| !(to == &me && *d == my_dek))
            .collect();
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        self.secrets.counter += 1;
        let ctr = self.secrets.counter;
        self.store.save_secrets(&self.secrets).await?;
        let mut rng = siren_proto::os_rng();
        let mut envelopes = Vec::with_capacity(targets.len());
        for to_dek in &targets {
            envelopes.push(Envelope::seal(
                EnvSender {
                    uid: &me,
                    usk: &usk,
                    dek: &my_dek,
                },
                to,
                to_dek,
                id,
                ctr,
                plaintext,
                &mut rng,
            )?);
        }
        Ok(envelopes)
    }

    /// The next event. In `drain` mode, returns `None` once the queued backlog is delivered.
    pub async fn next_event(&mut self, drain: bool) -> anyhow::Result<Option<Event>> {
        loop {
            if let Some(event) = self.released.pop_front() {
                return Ok(Some(event));
            }
            self.conn()?.flush_acks().await?;
            let msg = self.next_server_message().await?;
            if drain && matches!(msg, ServerMessage::QueueDrained) {
                self.conn()?.flush_acks().await?;
                return Ok(None);
            }
            if let Some(event) = self.handle_server_message(msg).await? {
                return Ok(Some(event));
            }
        }
    }

    /// Waits for the next message from the server. Cancel-safe (nothing is lost when it is
    /// dropped unfinished), so a driver can wait for it in `tokio::select!` beside the person's
    /// commands; hand what it returns to [`Client::handle_server_message`].
    pub async fn next_server_message(&mut self) -> anyhow::Result<ServerMessage> {
        let conn = self.conn.as_mut().context("not connected")?;
        conn.next_message(&self.platform).await
    }

    /// Processes one message from the server: opens and checks a delivered envelope (and queues
    /// its acknowledgement), keeps approval requests. Returns the event to show, if any; more
    /// may follow from [`Client::released_event`]. Not cancel-safe: run it to completion.
    pub async fn handle_server_message(
        &mut self,
        msg: ServerMessage,
    ) -> anyhow::Result<Option<Event>> {
        match msg {
            ServerMessage::Deliver { seq, item } => {
                let event = self.receive(item).await?;
                self.conn()?.ack(seq).await?;
                Ok(event)
            }
            ServerMessage::Error { code, msg, .. } => Err(server_error(code, &msg)),
            ServerMessage::Event { from, presence, .. } => {
                Ok(Some(Event::Presence { from, presence }))
            }
            // Ephemeral: opened like a message, never acknowledged (it has no seq).
            ServerMessage::Signal { env } => self.receive_signal(env).await,
            ServerMessage::QueueDrained => Ok(Some(Event::Drained)),
            _ => Ok(None),
        }
    }

    /// An event released by the last message handled: a group message kept aside until the
    /// version that made its sender a member arrived (PROTOCOL.md §12.1). Take them all after
    /// each [`Client::handle_server_message`] ([`Client::next_event`] does).
    pub fn released_event(&mut self) -> Option<Event> {
        self.released.pop_front()
    }

    /// Opens one queue item. Returns `None` for a duplicate.
    async fn receive(&mut self, item: QueueItem) -> anyhow::Result<Option<Event>> {
        let env = match item {
            QueueItem::Message { env } => env,
            QueueItem::Notice { notice } => {
                if let Notice::ApprovalRequest {
                    new_dek,
                    commit,
                    name,
                } = &notice
                {
                    // Kept so that `devices approve` can answer it after `recv` took it.
                    let mut saved = self.store.approval_requests().await?;
                    saved.retain(|r| &r.new_dek != new_dek);
                    saved.push(SeenRequest {
                        new_dek: *new_dek,
                        commit: *commit,
                        name: name.clone(),
                    });
                    let excess = saved.len().saturating_sub(APPROVAL_REQUESTS);
                    self.store.save_approval_requests(&saved[excess..]).await?;
                }
                return Ok(Some(Event::Notice(notice)));
            }
            _ => return Ok(None),
        };
        if self.seen_set.contains(&env.id) {
            return Ok(None);
        }
        let plain = match self.open_verified(&env).await? {
            Ok(plain) => plain,
            Err(reason) => {
                return Ok(Some(Event::Refused {
                    from: env.from,
                    reason,
                }));
            }
        };
        let event = decoded(env.from, env.id, &plain, Event::Message);
        // Groups are the session's business: versions checked, asks answered, members only.
        let event = match event {
            Event::Message(received) => match received.content {
                Plaintext::GroupUpdate(state) => {
                    self.receive_group_update(&received.from, *state).await?
                }
                Plaintext::GroupSync { group, have } => {
                    self.answer_group_sync(&received.from, group, have).await?;
                    None
                }
                Plaintext::Group { .. } => self.receive_group_message(received).await?,
                _ => Some(Event::Message(received)),
            },
            other => Some(other),
        };
        remember_seen(&mut self.seen, &mut self.seen_set, env.id);
        self.store.save_seen(&self.seen).await?;
        Ok(event)
    }

    /// Opens an envelope addressed to this device, as PROTOCOL.md §12 says: the sending device
    /// must be live in a verified listing of the sender (the cache, or a fresh lookup), the
    /// signature must verify and the counter pass the sender device's replay window, which then
    /// moves (and is saved). `Ok(Err(reason))`: refused.
    pub(super) async fn open_verified(
        &mut self,
        env: &Envelope,
    ) -> anyhow::Result<Result<Zeroizing<Vec<u8>>, String>> {
        let mut state = self.store.contact(&env.from).await?;
        let known = state
            .directory
            .as_ref()
            .is_some_and(|d| d.is_live(&env.from_dek));
        if !known {
            if let Err(e) = self.lookup(&env.from.clone()).await {
                return Ok(Err(format!("cannot verify the sender: {e:#}")));
            }
            state = self.store.contact(&env.from).await?;
        }
        let Some(directory) = state.directory.clone() else {
            return Ok(Err("the sender has no verified directory".into()));
        };
        if !directory.is_live(&env.from_dek) || state.revoked.contains(&env.from_dek) {
            return Ok(Err(
                "the sending device is not a live device of the sender".into()
            ));
        }
        let dek = self.secrets.dek().context("not logged in")?;
        let me = self.uid().clone();
        let window = state.window(env.from_dek);
        let plain = match env.open(
            Recipient {
                uid: &me,
                dek: &dek,
            },
            directory.usk(),
            window,
        ) {
            Ok(p) => p,
            Err(e) => return Ok(Err(format!("{e}"))),
        };
        self.store.save_contact(&env.from, &state).await?;
        Ok(Ok(plain))
    }
}

/// An opened payload decoded into the event `kind` makes of it, or the refusal event saying it
/// is unreadable.
pub(super) fn decoded(
    from: Uid,
    id: MessageId,
    plain: &[u8],
    kind: fn(Received) -> Event,
) -> Event {
    match Plaintext::decode(plain) {
        Ok(content) => kind(Received { from, id, content }),
        Err(e) => Event::Refused {
            from,
            reason: format!("unreadable content: {e}"),
        },
    }
}

/// Remembers `id` as received, forgetting the oldest beyond [`SEEN_IDS`] (`seen` in order,
/// `set` for lookups: always the same ids).
fn remember_seen(seen: &mut VecDeque<MessageId>, set: &mut BTreeSet<MessageId>, id: MessageId) {
    if set.insert(id) {
        seen.push_back(id);
    }
    while seen.len() > SEEN_IDS {
        if let Some(old) = seen.pop_front() {
            set.remove(&old);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(i: u64) -> MessageId {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&i.to_be_bytes());
        MessageId::from_bytes(bytes)
    }

    #[test]
    fn the_newest_received_ids_are_remembered_and_no_more() {
        let (mut seen, mut set) = (VecDeque::new(), BTreeSet::new());
        for i in 0..SEEN_IDS as u64 + 5 {
            remember_seen(&mut seen, &mut set, id(i));
        }
        remember_seen(&mut seen, &mut set, id(SEEN_IDS as u64 + 4));
        assert_eq!(seen.len(), SEEN_IDS);
        assert_eq!(set.len(), SEEN_IDS);
        assert!(!set.contains(&id(4)) && set.contains(&id(5)));
        assert_eq!(seen.front(), Some(&id(5)));
        assert_eq!(seen.back(), Some(&id(SEEN_IDS as u64 + 4)));
    }
}
