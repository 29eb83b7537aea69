//! The core itself: one device's chat state and the rules that move it.
//!
//! Inputs are what the driver learned (an opened message, a signal, a server answer, the time)
//! and what the person asked ([`Command`]); outputs are the [`View`] and [`Effect`]s. Rules:
//! - an outgoing message goes `Sending` → `Sent` (the server's `send_ack`) → `Delivered` → `Read`
//!   (receipts), never backwards;
//! - every message this device sends also goes, as a `copy`, to the account's other devices;
//! - a new incoming message from an accepted peer is answered with a `delivered` receipt; seeing
//!   it sends a `read` receipt (unless switched off) and tells the account's other devices;
//! - nothing — receipts, typing — goes to a blocked user, nor to someone whose contact request
//!   was not accepted (a stranger learns nothing about when their message was seen);
//! - typing shows for 10 seconds unless renewed or ended;
//! - files: see [`crate::files`].

use std::collections::{BTreeMap, BTreeSet};

use rand_core::CryptoRng;
use siren_api::Uid;
use siren_proto::ids::{FileId, GroupId, MessageId};
use siren_proto::keys::DekPublic;
use siren_proto::message::PresenceStatus;
use siren_proto::plaintext::{MAX_RECEIPT_IDS, Plaintext, ReceiptState};

use crate::command::Command;
use crate::conversation::Conversation;
use crate::effect::Effect;
use crate::files::{self, ChunkOutcome, Receiving};
use crate::model::{
    Banner, Body, Chat, ChatMessage, ContactRequest, ConversationSummary, FileProgress,
    GroupSummary, MessageState, Millis, PendingApproval, Status, View,
};

/// How long "typing" shows without a renewal.
pub const TYPING_MILLIS: Millis = 10_000;
/// Banners kept (the oldest go first).
const MAX_BANNERS: usize = 20;
/// Messages loaded when a conversation is opened or scrolled.
pub const PAGE: usize = 100;

/// What this device knows about another user.
#[derive(Debug, Default, Clone)]
struct Contact {
    /// In the roster's contacts.
    contact: bool,
    /// In the roster's blocked list.
    blocked: bool,
    name: Option<String>,
    presence: Option<PresenceStatus>,
    verified: bool,
    key_changed: bool,
}

/// One device's chat state. See the module documentation for the rules.
pub struct Core {
    me: Uid,
    status: Status,
    read_receipts: bool,
    convs: BTreeMap<Chat, Conversation>,
    contacts: BTreeMap<Uid, Contact>,
    /// The groups this device holds, as the driver last said.
    groups: BTreeMap<GroupId, GroupSummary>,
    requests: BTreeSet<Uid>,
    approvals: Vec<PendingApproval>,
    banners: Vec<Banner>,
    receiving: Receiving,
    /// Outgoing messages by id → conversation (for acks and receipts).
    outgoing: BTreeMap<MessageId, Chat>,
    /// Chunk message id → the file message it belongs to.
    chunk_of: BTreeMap<MessageId, MessageId>,
    /// Outgoing files in transfer: file message → (chunks acknowledged, chunks).
    sending: BTreeMap<MessageId, (u32, u32)>,
    /// Delivered receipts not sent yet, per peer.
    pending_delivered: BTreeMap<Uid, Vec<MessageId>>,
    effects: Vec<Effect>,
    view: View,
    id_seed: [u8; 32],
    id_counter: u64,
}

impl Core {
    /// The state of a device of `me` that knows nothing yet.
    pub fn new(me: Uid, read_receipts: bool, rng: &mut (impl CryptoRng + ?Sized)) -> Core {
        let mut id_seed = [0u8; 32];
        rng.fill_bytes(&mut id_seed);
        Core {
            id_seed,
            id_counter: 0,
            view: View {
                me: me.clone(),
                status: Status::Connecting,
                conversations: Vec::new(),
                requests: Vec::new(),
                approvals: Vec::new(),
                banners: Vec::new(),
            },
            me,
            status: Status::Connecting,
            read_receipts,
            convs: BTreeMap::new(),
            contacts: BTreeMap::new(),
            groups: BTreeMap::new(),
            requests: BTreeSet::new(),
            approvals: Vec::new(),
            banners: Vec::new(),
            receiving: Receiving::default(),
            outgoing: BTreeMap::new(),
            chunk_of: BTreeMap::new(),
            sending: BTreeMap::new(),
            pending_delivered: BTreeMap::new(),
            effects: Vec::new(),
        }
    }

    /// What to draw.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// The loaded messages of a conversation, oldest first.
    pub fn messages(&self, chat: &Chat) -> &[ChatMessage] {
        self.convs.get(chat).map_or(&[], |c| c.messages.as_slice())
    }

    /// Whether read receipts are sent.
    pub fn read_receipts(&self) -> bool {
        self.read_receipts
    }

    /// Effects to carry out, in order (pending delivered receipts included).
    pub fn take_effects(&mut self) -> Vec<Effect> {
        let pending = std::mem::take(&mut self.pending_delivered);
        for (peer, ids) in pending {
            for chunk in ids.chunks(MAX_RECEIPT_IDS) {
                self.send_receipt(&peer, ReceiptState::Delivered, chunk.to_vec(), 0);
            }
        }
        std::mem::take(&mut self.effects)
    }

    // ---- what the driver learned ----------------------------------------------------------

    /// The connection's state changed.
    pub fn set_status(&mut self, status: Status) {
        self.status = status;
        self.refresh();
    }

    /// The roster as verified by the driver: contacts (with names) and blocked users.
    pub fn set_roster(&mut self, contacts: Vec<(Uid, Option<String>)>, blocked: Vec<Uid>) {
        for c in self.contacts.values_mut() {
            c.contact = false;
            c.blocked = false;
        }
        for (uid, name) in contacts {
            let c = self.contacts.entry(uid).or_default();
            c.contact = true;
            c.name = name;
        }
        for uid in blocked {
            self.contacts.entry(uid).or_default().blocked = true;
        }
        let settled: Vec<Uid> = self
            .requests
            .iter()
            .filter(|u| {
                self.contacts
                    .get(*u)
                    .is_some_and(|c| c.contact || c.blocked)
            })
            .cloned()
            .collect();
        for u in settled {
            self.requests.remove(&u);
        }
        self.refresh();
    }

    /// What the person decided about a user's keys before (restored from the profile).
    pub fn set_trust(&mut self, uid: &Uid, verified: bool, key_changed: bool) {
        let c = self.contacts.entry(uid.clone()).or_default();
        c.verified = verified;
        c.key_changed = key_changed;
        self.refresh();
    }

    /// Whether the person verified `uid`'s current signing key (a key-change warning stays
    /// until they acknowledge it with [`crate::Command::MarkVerified`]).
    pub fn set_verified(&mut self, uid: &Uid, verified: bool) {
        self.contacts.entry(uid.clone()).or_default().verified = verified;
        self.refresh();
    }

    /// A user's devices or signing key changed since they were last seen: warn.
    pub fn key_changed(&mut self, uid: &Uid) {
        let c = self.contacts.entry(uid.clone()).or_default();
        c.key_changed = true;
        c.verified = false;
        if !self
            .banners
            .iter()
            .any(|b| matches!(b, Banner::KeyChanged { uid: u } if u == uid))
        {
            self.banner(Banner::KeyChanged { uid: uid.clone() });
        }
        self.refresh();
    }

    /// A contact's presence.
    pub fn presence(&mut self, from: &Uid, status: Option<PresenceStatus>) {
        self.contacts.entry(from.clone()).or_default().presence = status;
        self.refresh();
    }

    /// The server says `from` is not in the contacts and wrote first.
    pub fn contact_request(&mut self, from: &Uid) {
        if from != &self.me && !self.settled(from) && !self.group_only(from) {
            self.requests.insert(from.clone());
        }
        self.refresh();
    }

    /// A member of a group this device holds who never wrote to this account alone: the
    /// server's contact request for them came with their group traffic (it cannot tell), and is
    /// not shown until they write here directly.
    fn group_only(&self, uid: &Uid) -> bool {
        self.groups.values().any(|g| g.members.contains(uid))
            && !self
                .convs
                .get(&Chat::User(uid.clone()))
                .is_some_and(|c| c.messages.iter().any(|m| !m.outgoing))
    }

    /// A new device of this account waits for approval (or its code arrived).
    pub fn approval_pending(&mut self, approval: PendingApproval) {
        match self
            .approvals
            .iter_mut()
            .find(|a| a.new_dek == approval.new_dek)
        {
            Some(a) => *a = approval,
            None => self.approvals.push(approval),
        }
        self.refresh();
    }

    /// An approval ended (answered here or elsewhere, or withdrawn).
    pub fn approval_done(&mut self, new_dek: &DekPublic) {
        self.approvals.retain(|a| a.new_dek != *new_dek);
        self.refresh();
    }

    /// Something to tell the person.
    pub fn banner(&mut self, banner: Banner) {
        self.banners.push(banner);
        if self.banners.len() > MAX_BANNERS {
            let extra = self.banners.len() - MAX_BANNERS;
            self.banners.drain(..extra);
        }
        self.refresh();
    }

    /// Messages of a conversation read from history (the newest when `more` was asked for
    /// nothing older, or older ones when scrolling). `more`: history holds older ones still.
    pub fn history_loaded(&mut self, chat: &Chat, msgs: Vec<ChatMessage>, more: bool) {
        let conv = self.convs.entry(chat.clone()).or_default();
        let msgs: Vec<ChatMessage> = msgs
            .into_iter()
            .filter(|m| m.chat() == *chat)
            .map(|mut m| {
                // A transfer cannot go on after a restart: its chunks were held in memory.
                if let Body::File { progress, .. } = &mut m.body
                    && matches!(
                        progress,
                        FileProgress::Receiving { .. }
                            | FileProgress::Complete
                            | FileProgress::Sending { .. }
                    )
                    && !self.sending.contains_key(&m.id)
                {
                    *progress = FileProgress::Failed("interrupted when the client stopped".into());
                }
                m
            })
            .collect();
        for m in &msgs {
            if m.outgoing {
                self.outgoing.insert(m.id, chat.clone());
            }
        }
        conv.prepend(msgs);
        conv.more_history = more;
        conv.recount_unread();
        self.refresh();
    }

    /// The server committed these messages (`send_ack`).
    pub fn sent(&mut self, ids: &[MessageId]) {
        for id in ids {
            if let Some(file_msg) = self.chunk_of.remove(id) {
                self.chunk_sent(file_msg);
                continue;
            }
            self.raise(id, MessageState::Sent);
        }
        self.refresh();
    }

    /// A message could not be sent.
    pub fn send_failed(&mut self, id: &MessageId, why: &str) {
        if let Some(file_msg) = self.chunk_of.remove(id) {
            self.chunk_of.retain(|_, m| *m != file_msg);
            self.sending.remove(&file_msg);
            self.set_file_progress(&file_msg, FileProgress::Failed(why.to_owned()));
        } else if let Some(chat) = self.outgoing.get(id).cloned()
            && let Some(m) = self.convs.get_mut(&chat).and_then(|c| c.get_mut(id))
            && m.state.rank() < MessageState::Sent.rank()
        {
            m.state = MessageState::Failed(why.to_owned());
            let m = m.clone();
            self.effects.push(Effect::Store(m));
        }
        self.refresh();
    }

    /// A received file was saved.
    pub fn file_saved(&mut self, file: &FileId, path: String) {
        if let Some(id) = self.file_message(file) {
            self.set_file_progress(&id, FileProgress::Saved { path: path.clone() });
        }
        self.banner(Banner::Info(format!("file saved: {path}")));
    }

    /// Saving a file failed: it stays complete, to try again.
    pub fn file_save_failed(&mut self, file: FileId, name: String, data: Vec<u8>, why: &str) {
        self.receiving.put_back(file, name, data);
        self.banner(Banner::Problem(format!("cannot save the file: {why}")));
    }

    /// The clock moved: typing lines expire, stalled files are given up.
    pub fn tick(&mut self, now: Millis) {
        for conv in self.convs.values_mut() {
            if conv.typing_until.is_some_and(|t| t <= now) {
                conv.typing_until = None;
            }
        }
        for outcome in self.receiving.expire(now) {
            self.file_outcome(outcome);
        }
        self.refresh();
    }

    /// An end-to-end message arrived, opened and verified: `from` sent `content` with id `id`.
    pub fn received(&mut self, now: Millis, from: &Uid, id: MessageId, content: Plaintext) {
        if *from == self.me {
            self.on_own_device(now, content);
        } else if !self.is_blocked(from) {
            self.on_peer_message(now, from, id, content);
        }
        self.refresh();
    }

    /// An ephemeral signal arrived (typing).
    pub fn signal(&mut self, now: Millis, from: &Uid, content: Plaintext) {
        if let Plaintext::Typing { typing } = content
            && !self.is_blocked(from)
            && let Some(conv) = self.convs.get_mut(&Chat::User(from.clone()))
        {
            conv.typing_until = typing.then_some(now.saturating_add(TYPING_MILLIS));
        }
        self.refresh();
    }

    /// The groups this device holds changed (or were read at start): their memberships as held.
    pub fn set_groups(&mut self, groups: Vec<(GroupId, GroupSummary)>) {
        self.groups = groups.into_iter().collect();
        let group_only: Vec<Uid> = self
            .requests
            .iter()
            .filter(|u| self.group_only(u))
            .cloned()
            .collect();
        for uid in group_only {
            self.requests.remove(&uid);
        }
        self.refresh();
    }

    /// A message to group `group` from `from` (a member of the version held, checked by the
    /// driver: PROTOCOL.md §12.1), with id `id`; `content` is what the `group` plaintext
    /// carried. Never receipted: a group message is no conversation with its sender.
    pub fn group_message(
        &mut self,
        now: Millis,
        group: GroupId,
        from: &Uid,
        id: MessageId,
        content: Plaintext,
    ) {
        let chat = Chat::Group(group);
        if *from == self.me {
            // Sent from another device of this account (the fan-out reaches them).
            self.own_message(now, &chat, id, content);
        } else if !self.is_blocked(from) {
            // A kind this client does not know shows as such (PROTOCOL.md §12.1); anything else
            // (receipts, typing, copies) means nothing in a group.
            if let Some(Plaintext::Unsupported { kind }) = self.said(now, &chat, from, id, content)
            {
                let body = Body::Unsupported(short_kind(&kind));
                self.incoming(now, &chat, from, id, now / 1000, body);
            }
        }
        self.refresh();
    }

    /// Something happened to group `group` (made by `by`): told in its conversation as a line
    /// (`text`), recorded like a message.
    pub fn group_event(&mut self, now: Millis, group: GroupId, by: &Uid, text: String) {
        let msg = ChatMessage {
            id: self.receipt_id(),
            peer: by.clone(),
            group: Some(group),
            outgoing: false,
            ts: now / 1000,
            at: self.recorded_at(&Chat::Group(group), now),
            body: Body::Event(text),
            state: MessageState::Seen,
            edited: false,
        };
        self.convs
            .entry(Chat::Group(group))
            .or_default()
            .insert(msg.clone());
        self.effects.push(Effect::Store(msg));
        self.refresh();
    }

    // ---- what the person asked --------------------------------------------------------------

    /// Carries out a command of the person.
    pub fn command(&mut self, now: Millis, cmd: Command, rng: &mut (impl CryptoRng + ?Sized)) {
        match cmd {
            Command::Open(chat) => self.open(&chat),
            Command::SendText { to, body } => self.send_text(now, &to, body, rng),
            Command::SetTyping {
                to: Chat::User(to),
                typing,
            } => {
                if self.accepted(&to) && !self.is_blocked(&to) {
                    self.effects.push(Effect::Signal {
                        to,
                        content: Plaintext::Typing { typing },
                    });
                }
            }
            // Typing is never told to a group.
            Command::SetTyping { .. } => {}
            Command::MarkRead(chat) => self.mark_read(now, &chat),
            Command::SendFile { to, path } => self.effects.push(Effect::ReadFile { to, path }),
            Command::SaveFile(file) => match self.receiving.take_complete(&file) {
                Some((name, data)) => self.effects.push(Effect::SaveFile { file, name, data }),
                None => self.banner(Banner::Problem(
                    "that file is not complete (or was saved already)".into(),
                )),
            },
            Command::Edit { chat, id, body } => self.edit(now, &chat, id, Some(body), rng),
            Command::Delete { chat, id } => self.edit(now, &chat, id, None, rng),
            Command::AcceptContact(uid) => {
                let was = self.accepted(&uid) && !self.is_blocked(&uid);
                self.requests.remove(&uid);
                let c = self.contacts.entry(uid.clone()).or_default();
                c.contact = true;
                c.blocked = false;
                self.effects.push(Effect::AddContact(uid.clone()));
                if !was {
                    self.receipts_held_back(now, &uid);
                }
            }
            Command::Block(uid) => {
                self.requests.remove(&uid);
                self.contacts.entry(uid.clone()).or_default().blocked = true;
                if let Some(conv) = self.convs.get_mut(&Chat::User(uid.clone())) {
                    conv.typing_until = None;
                }
                self.pending_delivered.remove(&uid);
                self.effects.push(Effect::Block(uid));
            }
            Command::Unblock(uid) => {
                self.contacts.entry(uid.clone()).or_default().blocked = false;
                self.effects.push(Effect::Unblock(uid));
            }
            Command::ShowSafetyNumber(_) => {}
            Command::MarkVerified(uid) => {
                let c = self.contacts.entry(uid.clone()).or_default();
                c.verified = true;
                c.key_changed = false;
                self.banners
                    .retain(|b| !matches!(b, Banner::KeyChanged { uid: u } if *u == uid));
                self.effects.push(Effect::MarkVerified(uid));
            }
            Command::AnswerApproval { new_dek, approve } => {
                self.approvals.retain(|a| a.new_dek != new_dek);
                self.effects
                    .push(Effect::AnswerApproval { new_dek, approve });
            }
            Command::SetReadReceipts(on) => {
                self.read_receipts = on;
                self.effects.push(Effect::SetReadReceipts(on));
            }
        }
        self.refresh();
    }

    /// The driver read a file the person asked to send: seal it, send the manifest, then the
    /// chunks.
    pub fn send_file(
        &mut self,
        now: Millis,
        to: &Chat,
        name: &str,
        data: &[u8],
        rng: &mut (impl CryptoRng + ?Sized),
    ) {
        let mut key = [0u8; 32];
        rng.fill_bytes(&mut key);
        let file = FileId::random(rng);
        let prepared = match files::prepare(file, name, data, key, now / 1000) {
            Ok(p) => p,
            Err(e) => {
                self.banner(Banner::Problem(format!("cannot send {name}: {e}")));
                return;
            }
        };
        let id = MessageId::random(rng);
        let of = prepared.manifest.chunks;
        let body = Body::File {
            file,
            name: name.to_owned(),
            size: prepared.manifest.size,
            progress: FileProgress::Sending { sent: 0, of },
        };
        let manifest = Plaintext::File(Box::new(prepared.manifest));
        if !self.new_outgoing(now, to, id, body, manifest, rng) {
            self.refresh();
            return;
        }
        self.sending.insert(id, (0, of));
        for chunk in prepared.chunks {
            let chunk_id = MessageId::random(rng);
            self.chunk_of.insert(chunk_id, id);
            self.effects.push(send_effect(to, chunk_id, chunk));
        }
        if of == 0 {
            self.sending.remove(&id);
            self.set_file_progress(&id, FileProgress::Sent);
        }
        self.refresh();
    }

    // ---- rules ------------------------------------------------------------------------------

    fn open(&mut self, chat: &Chat) {
        if !self.convs.contains_key(chat) {
            self.convs.insert(chat.clone(), Conversation::default());
            self.effects.push(Effect::LoadHistory {
                chat: chat.clone(),
                before: None,
                limit: PAGE,
            });
        }
    }

    /// Asks for older messages of a conversation; false if history has none.
    pub fn load_older(&mut self, chat: &Chat) -> bool {
        let Some(conv) = self.convs.get(chat) else {
            return false;
        };
        if !conv.more_history {
            return false;
        }
        self.effects.push(Effect::LoadHistory {
            chat: chat.clone(),
            before: conv.messages.first().cloned(),
            limit: PAGE,
        });
        true
    }

    fn send_text(
        &mut self,
        now: Millis,
        to: &Chat,
        body: String,
        rng: &mut (impl CryptoRng + ?Sized),
    ) {
        if body.trim().is_empty() {
            return;
        }
        let id = MessageId::random(rng);
        let content = Plaintext::Text {
            body: body.clone(),
            ts: now / 1000,
        };
        self.new_outgoing(now, to, id, Body::Text(body), content, rng);
    }

    /// Records an outgoing message and sends it: to a user with a copy to this account's other
    /// devices; to a group (whose fan-out reaches them already) only if this account is still
    /// a member of the version held. False if it was not sent.
    fn new_outgoing(
        &mut self,
        now: Millis,
        chat: &Chat,
        id: MessageId,
        body: Body,
        content: Plaintext,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> bool {
        let to = match chat {
            Chat::User(to) => to,
            Chat::Group(group) => {
                let Some(summary) = self.groups.get(group) else {
                    self.banner(Banner::Problem(
                        "this device does not hold that group".into(),
                    ));
                    return false;
                };
                if !summary.members.contains(&self.me) {
                    self.banner(Banner::Problem(format!(
                        "you are no longer a member of {}: nothing was sent",
                        group_name(group, summary)
                    )));
                    return false;
                }
                let msg = self.outgoing_message(now, chat, id, body);
                self.convs.entry(chat.clone()).or_default().insert(msg);
                self.effects.push(Effect::SendGroup {
                    group: *group,
                    id,
                    content,
                });
                return true;
            }
        };
        if !self.contacts.get(to).is_some_and(|c| c.contact) && *to != self.me {
            // Writing to someone accepts them (as answering a contact request does).
            let was = self.accepted(to) && !self.is_blocked(to);
            self.requests.remove(to);
            let c = self.contacts.entry(to.clone()).or_default();
            c.contact = true;
            c.blocked = false;
            self.effects.push(Effect::AddContact(to.clone()));
            if !was {
                self.receipts_held_back(now, to);
            }
        }
        let msg = self.outgoing_message(now, chat, id, body);
        self.convs.entry(chat.clone()).or_default().insert(msg);
        self.send_with_copy(to, id, content, rng);
        true
    }

    /// When a new message of `chat` is recorded: now, or just after the conversation's last one
    /// (messages recorded in one millisecond keep the order they came in).
    fn recorded_at(&self, chat: &Chat, now: Millis) -> Millis {
        self.convs
            .get(chat)
            .map_or(now, |c| now.max(c.last_at.saturating_add(1)))
    }

    /// A new outgoing message of `chat`, recorded (in `outgoing` and history).
    fn outgoing_message(
        &mut self,
        now: Millis,
        chat: &Chat,
        id: MessageId,
        body: Body,
    ) -> ChatMessage {
        let msg = ChatMessage {
            id,
            peer: chat.user().unwrap_or(&self.me).clone(),
            group: chat.group().copied(),
            outgoing: true,
            ts: now / 1000,
            at: self.recorded_at(chat, now),
            body,
            state: MessageState::Sending,
            edited: false,
        };
        self.outgoing.insert(id, chat.clone());
        self.effects.push(Effect::Store(msg.clone()));
        msg
    }

    fn send_with_copy(
        &mut self,
        to: &Uid,
        id: MessageId,
        content: Plaintext,
        rng: &mut (impl CryptoRng + ?Sized),
    ) {
        let copy = Plaintext::Copy {
            to: to.clone(),
            id,
            msg: Box::new(content.clone()),
        };
        self.effects.push(Effect::Send {
            to: to.clone(),
            id,
            content,
        });
        self.effects.push(Effect::Send {
            to: self.me.clone(),
            id: MessageId::random(rng),
            content: copy,
        });
    }

    fn edit(
        &mut self,
        now: Millis,
        chat: &Chat,
        id: MessageId,
        body: Option<String>,
        rng: &mut (impl CryptoRng + ?Sized),
    ) {
        let Some(m) = self.convs.get_mut(chat).and_then(|c| c.get_mut(&id)) else {
            return;
        };
        if !m.outgoing || !matches!(m.body, Body::Text(_)) {
            return;
        }
        let content = match body {
            Some(text) => {
                m.body = Body::Text(text.clone());
                m.edited = true;
                Plaintext::Edit {
                    of: id,
                    body: text,
                    ts: now / 1000,
                }
            }
            None => {
                m.body = Body::Deleted;
                Plaintext::Delete {
                    of: id,
                    ts: now / 1000,
                }
            }
        };
        let stored = m.clone();
        self.effects.push(Effect::Store(stored));
        let edit_id = MessageId::random(rng);
        match chat {
            Chat::User(peer) => self.send_with_copy(peer, edit_id, content, rng),
            Chat::Group(group) => self.effects.push(Effect::SendGroup {
                group: *group,
                id: edit_id,
                content,
            }),
        }
    }

    fn mark_read(&mut self, now: Millis, chat: &Chat) {
        let Some(conv) = self.convs.get_mut(chat) else {
            return;
        };
        let mut ids = Vec::new();
        for m in conv.messages.iter_mut() {
            if m.state == MessageState::Unread {
                m.state = MessageState::Seen;
                ids.push(m.id);
                self.effects.push(Effect::Store(m.clone()));
            }
        }
        conv.unread = 0;
        if ids.is_empty() {
            return;
        }
        for chunk in ids.chunks(MAX_RECEIPT_IDS) {
            // The account's other devices mark them seen too.
            let me = self.me.clone();
            self.send_receipt(&me, ReceiptState::Read, chunk.to_vec(), now);
            // Never to a group's members: who read what in a group is not told.
            if self.read_receipts
                && let Chat::User(peer) = chat
            {
                self.send_receipt(peer, ReceiptState::Read, chunk.to_vec(), now);
            }
        }
    }

    /// `peer` was just accepted: the receipts held back while they were a stranger go now
    /// (delivered for every message of theirs, read for those already seen here).
    fn receipts_held_back(&mut self, now: Millis, peer: &Uid) {
        let Some(conv) = self.convs.get(&Chat::User(peer.clone())) else {
            return;
        };
        let incoming = conv.messages.iter().filter(|m| !m.outgoing);
        let delivered: Vec<MessageId> = incoming.clone().map(|m| m.id).collect();
        let read: Vec<MessageId> = incoming
            .filter(|m| m.state == MessageState::Seen)
            .map(|m| m.id)
            .collect();
        for chunk in delivered.chunks(MAX_RECEIPT_IDS) {
            self.send_receipt(peer, ReceiptState::Delivered, chunk.to_vec(), now);
        }
        if self.read_receipts {
            for chunk in read.chunks(MAX_RECEIPT_IDS) {
                self.send_receipt(peer, ReceiptState::Read, chunk.to_vec(), now);
            }
        }
    }

    /// Sends a receipt, if the rules allow it (never to a blocked or unaccepted user).
    fn send_receipt(&mut self, to: &Uid, state: ReceiptState, ids: Vec<MessageId>, now: Millis) {
        if *to != self.me && (self.is_blocked(to) || !self.accepted(to)) {
            return;
        }
        let id = self.receipt_id();
        self.effects.push(Effect::Send {
            to: to.clone(),
            id,
            content: Plaintext::Receipt {
                state,
                ids,
                ts: now / 1000,
            },
        });
    }

    /// A fresh id for a message the person never sees acknowledged (receipts): SHA-256 of a
    /// random seed and a counter, unpredictable to others and never repeated.
    fn receipt_id(&mut self) -> MessageId {
        use sha2::{Digest as _, Sha256};
        self.id_counter += 1;
        let mut h = Sha256::new();
        h.update(b"siren/v1/client-receipt-id");
        h.update(self.id_seed);
        h.update(self.id_counter.to_be_bytes());
        let digest: [u8; 32] = h.finalize().into();
        let mut id = [0u8; 16];
        for (d, s) in id.iter_mut().zip(digest) {
            *d = s;
        }
        MessageId::from_bytes(id)
    }

    fn on_own_device(&mut self, now: Millis, content: Plaintext) {
        match content {
            Plaintext::Copy { to, id, msg } => {
                if to == self.me {
                    return;
                }
                self.own_message(now, &Chat::User(to), id, *msg);
            }
            Plaintext::Receipt {
                state: ReceiptState::Read,
                ids,
                ..
            } => {
                // Seen on another device of this account.
                let wanted: BTreeSet<MessageId> = ids.into_iter().collect();
                for conv in self.convs.values_mut() {
                    let mut changed = false;
                    for m in conv.messages.iter_mut() {
                        if m.state == MessageState::Unread && wanted.contains(&m.id) {
                            m.state = MessageState::Seen;
                            self.effects.push(Effect::Store(m.clone()));
                            changed = true;
                        }
                    }
                    if changed {
                        conv.recount_unread();
                    }
                }
            }
            _ => {}
        }
    }

    /// What this account sent in `chat` from another device (a `copy`'s message, or its own
    /// group message): recorded as sent, edits and withdrawals applied.
    fn own_message(&mut self, now: Millis, chat: &Chat, id: MessageId, content: Plaintext) {
        let me = self.me.clone();
        match content {
            Plaintext::Text { body, ts } => self.copied(now, chat, id, ts, Body::Text(body)),
            Plaintext::File(m) => {
                let body = Body::File {
                    file: m.file,
                    name: m.name.clone(),
                    size: m.size,
                    progress: FileProgress::Sent,
                };
                self.copied(now, chat, id, m.ts, body);
            }
            Plaintext::Edit { of, body, .. } => self.apply_edit(chat, &of, &me, true, Some(body)),
            Plaintext::Delete { of, .. } => self.apply_edit(chat, &of, &me, true, None),
            _ => {}
        }
    }

    /// A message this account sent from another device.
    fn copied(&mut self, now: Millis, chat: &Chat, id: MessageId, ts: u64, body: Body) {
        let msg = ChatMessage {
            id,
            peer: chat.user().unwrap_or(&self.me).clone(),
            group: chat.group().copied(),
            outgoing: true,
            ts,
            at: self.recorded_at(chat, now),
            body,
            state: MessageState::Sent,
            edited: false,
        };
        if self
            .convs
            .entry(chat.clone())
            .or_default()
            .insert(msg.clone())
        {
            self.outgoing.insert(id, chat.clone());
            self.effects.push(Effect::Store(msg));
        }
    }

    /// What `from` says in `chat` alike with one user or in a group — a text, a file and its
    /// chunks, an edit, a withdrawal —, carried out; any other content is handed back.
    fn said(
        &mut self,
        now: Millis,
        chat: &Chat,
        from: &Uid,
        id: MessageId,
        content: Plaintext,
    ) -> Option<Plaintext> {
        match content {
            Plaintext::Text { body, ts } => {
                self.incoming(now, chat, from, id, ts, Body::Text(body));
            }
            Plaintext::File(manifest) => self.incoming_file(now, chat, from, id, &manifest),
            Plaintext::FileChunk { file, index, data } => {
                let outcome = self.receiving.chunk(from, file, index, &data, now);
                self.file_outcome(outcome);
            }
            Plaintext::Edit { of, body, .. } => {
                self.apply_edit(chat, &of, from, false, Some(body));
            }
            Plaintext::Delete { of, .. } => self.apply_edit(chat, &of, from, false, None),
            other => return Some(other),
        }
        None
    }

    fn on_peer_message(&mut self, now: Millis, from: &Uid, id: MessageId, content: Plaintext) {
        let chat = Chat::User(from.clone());
        let Some(content) = self.said(now, &chat, from, id, content) else {
            return;
        };
        match content {
            Plaintext::Receipt { state, ids, .. } => {
                let to = match state {
                    ReceiptState::Delivered => MessageState::Delivered,
                    ReceiptState::Read => MessageState::Read,
                };
                for id in ids {
                    // Only messages sent to this peer: a receipt cannot touch another
                    // conversation.
                    if self.outgoing.get(&id) == Some(&chat) {
                        self.raise(&id, to.clone());
                    }
                }
            }
            // Typing travels only as an ephemeral signal (PROTOCOL.md §12): one that arrived
            // through the queue is stale, and ignored.
            Plaintext::Typing { .. } => {}
            // A copy is only meaningful from this account's own devices.
            Plaintext::Copy { .. } => {}
            // Group traffic is checked by the session (PROTOCOL.md §12.1) and comes in through
            // `group_message`, never answered with a receipt: it is no conversation with its
            // sender.
            Plaintext::Group { .. } | Plaintext::GroupUpdate(_) | Plaintext::GroupSync { .. } => {}
            Plaintext::Unsupported { kind } => {
                let body = Body::Unsupported(short_kind(&kind));
                self.incoming(now, &chat, from, id, now / 1000, body);
            }
            other => {
                let kind = short_kind(other.kind());
                self.incoming(now, &chat, from, id, now / 1000, Body::Unsupported(kind));
            }
        }
    }

    /// A file's manifest from `from` in `chat`: the transfer starts.
    fn incoming_file(
        &mut self,
        now: Millis,
        chat: &Chat,
        from: &Uid,
        id: MessageId,
        manifest: &siren_proto::plaintext::FileManifest,
    ) {
        let progress = match self.receiving.start(from, manifest, id, now) {
            Ok(()) => FileProgress::Receiving {
                have: 0,
                of: manifest.chunks,
            },
            Err(e) => FileProgress::Failed(e.to_string()),
        };
        let body = Body::File {
            file: manifest.file,
            name: manifest.name.clone(),
            size: manifest.size,
            progress,
        };
        self.incoming(now, chat, from, id, manifest.ts, body);
        if let Some(outcome) = self.receiving.complete_if_empty(from, manifest.file) {
            self.file_outcome(outcome);
        }
    }

    /// A new message from `from` in `chat`. A user's message is answered with a `delivered`
    /// receipt once they are accepted (or shows as a contact request); a group's never is.
    fn incoming(
        &mut self,
        now: Millis,
        chat: &Chat,
        from: &Uid,
        id: MessageId,
        ts: u64,
        body: Body,
    ) {
        let msg = ChatMessage {
            id,
            peer: from.clone(),
            group: chat.group().copied(),
            outgoing: false,
            ts,
            at: self.recorded_at(chat, now),
            body,
            state: MessageState::Unread,
            edited: false,
        };
        let conv = self.convs.entry(chat.clone()).or_default();
        if !conv.insert(msg.clone()) {
            return;
        }
        conv.unread = conv.unread.saturating_add(1);
        conv.typing_until = None;
        self.effects.push(Effect::Store(msg));
        if chat.group().is_some() {
            return;
        }
        if self.accepted(from) {
            self.pending_delivered
                .entry(from.clone())
                .or_default()
                .push(id);
        } else if !self.settled(from) {
            self.requests.insert(from.clone());
        }
    }

    /// An edit (or, without `body`, a withdrawal) by `from` of message `of` in `chat`;
    /// `outgoing`: `from` is this account.
    fn apply_edit(
        &mut self,
        chat: &Chat,
        of: &MessageId,
        from: &Uid,
        outgoing: bool,
        body: Option<String>,
    ) {
        let Some(m) = self.convs.get_mut(chat).and_then(|c| c.get_mut(of)) else {
            return;
        };
        // Only the sender's own text messages can be edited or withdrawn (in a group, not
        // another member's).
        if m.outgoing != outgoing
            || (!outgoing && m.peer != *from)
            || !matches!(m.body, Body::Text(_))
        {
            return;
        }
        match body {
            Some(text) => {
                m.body = Body::Text(text);
                m.edited = true;
            }
            None => m.body = Body::Deleted,
        }
        let m = m.clone();
        self.effects.push(Effect::Store(m));
    }

    /// Moves an outgoing message forward (never back).
    fn raise(&mut self, id: &MessageId, to: MessageState) {
        let Some(chat) = self.outgoing.get(id).cloned() else {
            return;
        };
        let Some(m) = self.convs.get_mut(&chat).and_then(|c| c.get_mut(id)) else {
            return;
        };
        let forward = match &m.state {
            MessageState::Failed(_) => to == MessageState::Sent || to.rank() > 2,
            s => s.rank() < to.rank() && to.rank() <= MessageState::Read.rank(),
        };
        if forward {
            m.state = to;
            let m = m.clone();
            self.effects.push(Effect::Store(m));
        }
    }

    fn chunk_sent(&mut self, file_msg: MessageId) {
        let Some((sent, of)) = self.sending.get_mut(&file_msg) else {
            return;
        };
        *sent += 1;
        let progress = if *sent >= *of {
            self.sending.remove(&file_msg);
            FileProgress::Sent
        } else {
            FileProgress::Sending {
                sent: *sent,
                of: *of,
            }
        };
        self.set_file_progress(&file_msg, progress);
    }

    fn file_outcome(&mut self, outcome: ChunkOutcome) {
        match outcome {
            ChunkOutcome::Unknown => {}
            ChunkOutcome::Progress { msg, have, of } => {
                self.set_file_progress(&msg, FileProgress::Receiving { have, of });
            }
            ChunkOutcome::Complete { msg } => {
                self.set_file_progress(&msg, FileProgress::Complete);
            }
            ChunkOutcome::Failed { msg, why } => {
                self.set_file_progress(&msg, FileProgress::Failed(why.to_string()));
                self.banner(Banner::Problem(format!(
                    "a file could not be received: {why}"
                )));
            }
        }
    }

    fn set_file_progress(&mut self, id: &MessageId, progress: FileProgress) {
        for conv in self.convs.values_mut() {
            if let Some(m) = conv.get_mut(id) {
                if let Body::File { progress: p, .. } = &mut m.body {
                    *p = progress;
                    let m = m.clone();
                    self.effects.push(Effect::Store(m));
                }
                return;
            }
        }
    }

    fn file_message(&self, file: &FileId) -> Option<MessageId> {
        self.convs.values().find_map(|c| {
            c.messages.iter().rev().find_map(|m| match &m.body {
                Body::File { file: f, .. } if f == file => Some(m.id),
                _ => None,
            })
        })
    }

    fn is_blocked(&self, uid: &Uid) -> bool {
        self.contacts.get(uid).is_some_and(|c| c.blocked)
    }

    /// A contact, or someone this account wrote to.
    fn accepted(&self, uid: &Uid) -> bool {
        self.contacts.get(uid).is_some_and(|c| c.contact)
            || self
                .convs
                .get(&Chat::User(uid.clone()))
                .is_some_and(|c| c.messages.iter().any(|m| m.outgoing))
    }

    /// Accepted or blocked: no contact request to show.
    fn settled(&self, uid: &Uid) -> bool {
        self.accepted(uid) || self.is_blocked(uid)
    }

    /// Rebuilds the view from the state.
    fn refresh(&mut self) {
        let empty = Conversation::default();
        let groups_without = self
            .groups
            .keys()
            .map(|g| Chat::Group(*g))
            .filter(|chat| !self.convs.contains_key(chat))
            .map(|chat| (chat, &empty));
        let mut conversations: Vec<ConversationSummary> = self
            .convs
            .iter()
            .map(|(chat, conv)| (chat.clone(), conv))
            .chain(groups_without)
            .map(|(chat, conv)| match &chat {
                Chat::User(peer) => {
                    let c = self.contacts.get(peer).cloned().unwrap_or_default();
                    ConversationSummary {
                        chat,
                        name: c.name,
                        group: None,
                        unread: conv.unread,
                        preview: conv.preview(),
                        last_at: conv.last_at,
                        presence: c.presence,
                        typing: conv.typing_until.is_some() && !c.blocked,
                        verified: c.verified,
                        key_changed: c.key_changed,
                        blocked: c.blocked,
                    }
                }
                Chat::Group(id) => {
                    let group = self.groups.get(id).cloned();
                    ConversationSummary {
                        name: group.as_ref().map(|g| group_name(id, g)),
                        chat,
                        group,
                        unread: conv.unread,
                        preview: conv.preview(),
                        last_at: conv.last_at,
                        presence: None,
                        typing: false,
                        verified: false,
                        key_changed: false,
                        blocked: false,
                    }
                }
            })
            .collect();
        conversations.sort_by(|a, b| b.last_at.cmp(&a.last_at).then(a.chat.cmp(&b.chat)));
        self.view = View {
            me: self.me.clone(),
            status: self.status.clone(),
            conversations,
            requests: self
                .requests
                .iter()
                .map(|u| ContactRequest { from: u.clone() })
                .collect(),
            approvals: self.approvals.clone(),
            banners: self.banners.clone(),
        };
    }
}

/// The effect that sends `content` as message `id` in `chat` (without a copy).
fn send_effect(chat: &Chat, id: MessageId, content: Plaintext) -> Effect {
    match chat {
        Chat::User(to) => Effect::Send {
            to: to.clone(),
            id,
            content,
        },
        Chat::Group(group) => Effect::SendGroup {
            group: *group,
            id,
            content,
        },
    }
}

/// A group's name as shown: its title, or its id's first digits when it has none.
pub fn group_name(id: &GroupId, group: &GroupSummary) -> String {
    display_name(id, &group.title)
}

/// A group's name as shown from its id and title: the title, or `group` and the id's first
/// eight digits when it has none.
pub fn display_name(id: &GroupId, title: &str) -> String {
    if title.is_empty() {
        format!("group {}", id.to_hex().get(..8).unwrap_or_default())
    } else {
        title.to_owned()
    }
}

/// The longest kind name kept for an unsupported message (a sender chooses it).
const MAX_SHOWN_KIND: usize = 32;

/// An unknown kind as kept and shown: at most [`MAX_SHOWN_KIND`] characters, then "…".
fn short_kind(kind: &str) -> String {
    match kind.char_indices().nth(MAX_SHOWN_KIND) {
        Some((cut, _)) => format!("{}…", &kind[..cut]),
        None => kind.to_owned(),
    }
}
