//! Groups (PROTOCOL.md §12.1) on this device: the versions of each group's membership it holds,
//! checked as they arrive; the changes it makes; messages fanned out to every member device.
//!
//! The server is not trusted with any of it: a version is taken only if it follows the one held
//! (signed by an admin of it, or by a member who only leaves; chained by hash), a version number
//! seen before with other contents is refused as a fork, and a version that skips some is kept
//! aside while the missing ones are asked for (`group_sync`) — the person is told of each.
//! Messages count only from members of the version held.

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};
use siren_api::Uid;
use siren_proto::group::{GroupError, GroupState, Membership};
use siren_proto::ids::{GroupId, MessageId};
use siren_proto::keys::UskPublic;
use siren_proto::message::{ClientMessage, ServerMessage};
use siren_proto::plaintext::Plaintext;
use siren_proto::transcript::Digest;

use super::{Client, Event, Platform, Received, Store};

/// Most versions of a group kept whole (to answer `group_sync`); the hashes of all are kept.
pub const KEEP_VERSIONS: usize = 64;
/// Most versions kept aside past a gap.
pub const MAX_PENDING: usize = 16;
/// Most messages kept aside per group, waiting for the version that makes their sender a member.
pub const MAX_HELD: usize = 64;
/// Most envelopes in one `send` (PROTOCOL.md §20).
const SEND_BATCH: usize = 256;

/// What this device holds of one group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupRecord {
    /// The first version this device held (the one it was created or added with).
    pub first: u64,
    /// The hash of every version held since `first`, in order.
    pub hashes: Vec<Digest>,
    /// The newest versions, whole, the current one last (at most [`KEEP_VERSIONS`]).
    pub versions: Vec<GroupState>,
    /// Versions received past a gap, waiting for the missing ones.
    pub pending: Vec<GroupState>,
    /// Messages naming a version not held yet, from someone not a member of the one held:
    /// waiting for that version (at most [`MAX_HELD`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<HeldMessage>,
}

/// A group message kept aside until the version it names arrives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldMessage {
    /// Who sent it.
    pub from: Uid,
    /// Its id.
    pub id: MessageId,
    /// The version it names.
    pub version: u64,
    /// The `group` plaintext, encoded.
    pub content: Vec<u8>,
}

impl GroupRecord {
    fn new(state: GroupState) -> GroupRecord {
        GroupRecord {
            first: state.version,
            hashes: vec![state.hash()],
            versions: vec![state],
            pending: Vec::new(),
            held: Vec::new(),
        }
    }

    /// The version held now.
    pub fn current(&self) -> Option<&GroupState> {
        self.versions.last()
    }

    /// The hash of version `version`, if this device held it.
    fn hash_of(&self, version: u64) -> Option<&Digest> {
        let index = version.checked_sub(self.first)?;
        self.hashes.get(usize::try_from(index).ok()?)
    }

    fn push(&mut self, state: GroupState) {
        self.hashes.push(state.hash());
        self.versions.push(state);
        let excess = self.versions.len().saturating_sub(KEEP_VERSIONS);
        self.versions.drain(..excess);
    }

    /// The versions missing before the first one kept aside, if any is.
    pub fn missing(&self) -> Option<(u64, u64)> {
        let have = self.current()?.version;
        let next = self.pending.iter().map(|s| s.version).min()?;
        Some((have.saturating_add(1), next.saturating_sub(1)))
    }
}

/// What happened to a group, as the person is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupNews {
    /// This device now holds a group (created here, by another device of the account, or this
    /// account was added).
    Joined {
        /// Who made the version it joined with.
        by: Uid,
        /// That version.
        version: u64,
    },
    /// A new version: who made it and what it changed.
    Changed {
        /// Who made it.
        by: Uid,
        /// The new version.
        version: u64,
        /// Added members.
        added: Vec<Uid>,
        /// Removed members (or one who left: `by` itself).
        removed: Vec<Uid>,
        /// New admins.
        promoted: Vec<Uid>,
        /// Admins no more (still members).
        demoted: Vec<Uid>,
        /// The new title, if it changed.
        renamed: Option<String>,
    },
    /// Versions are missing between the one held and one received (an update was dropped or
    /// is late); they were asked for.
    Gap {
        /// The first missing version.
        from: u64,
        /// The last missing version.
        to: u64,
    },
    /// A version or message was refused.
    Refused {
        /// Who sent it.
        from: Uid,
        /// Why.
        reason: String,
    },
}

/// A group event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEvent {
    /// The group.
    pub group: GroupId,
    /// Its title (as of the version held after the event).
    pub title: String,
    /// What happened.
    pub news: GroupNews,
    /// Later versions taken at the same time, in order (those kept aside past a gap, once the
    /// missing one arrived): what each changed.
    pub then: Vec<GroupNews>,
}

/// A group's name as shown: its title, or its id's first digits when it has none.
pub fn display_name(group: &GroupId, title: &str) -> String {
    siren_client_core::engine::display_name(group, title)
}

impl GroupEvent {
    /// The group's name as shown.
    pub fn name(&self) -> String {
        display_name(&self.group, &self.title)
    }

    /// One line for the person: `[title] alice added carol`, and `; then …` for each later
    /// version taken at the same time.
    pub fn describe(&self) -> String {
        format!("[{}] {}", self.name(), self.text())
    }

    /// What happened, as told in the group's conversation: `alice added carol`, and `; then …`
    /// for each later version taken at the same time.
    pub fn text(&self) -> String {
        let mut line = news_text(&self.news);
        for later in &self.then {
            line.push_str("; then ");
            line.push_str(&news_text(later));
        }
        line
    }

    /// Who made it happen (who made the version, or sent what was refused); `None` for missing
    /// versions.
    pub fn by(&self) -> Option<&Uid> {
        match &self.news {
            GroupNews::Joined { by, .. } | GroupNews::Changed { by, .. } => Some(by),
            GroupNews::Refused { from, .. } => Some(from),
            GroupNews::Gap { .. } => None,
        }
    }

    /// A problem (a refused version or message, missing versions) rather than a change.
    pub fn is_problem(&self) -> bool {
        matches!(self.news, GroupNews::Refused { .. } | GroupNews::Gap { .. })
    }
}

/// What `news` says, for the person.
fn news_text(news: &GroupNews) -> String {
    let list = |uids: &[Uid]| {
        uids.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    match news {
        GroupNews::Joined { by, version } => {
            format!("you are in the group, added by {by} (version {version})")
        }
        GroupNews::Changed {
            by,
            removed,
            added,
            promoted,
            demoted,
            renamed,
            ..
        } if added.is_empty()
            && promoted.is_empty()
            && demoted.is_empty()
            && renamed.is_none()
            && removed == std::slice::from_ref(by) =>
        {
            format!("{by} left")
        }
        GroupNews::Changed {
            by,
            added,
            removed,
            promoted,
            demoted,
            renamed,
            ..
        } => {
            let mut parts = Vec::new();
            if !added.is_empty() {
                parts.push(format!("added {}", list(added)));
            }
            if !removed.is_empty() {
                parts.push(format!("removed {}", list(removed)));
            }
            if !promoted.is_empty() {
                parts.push(format!("made {} admin", list(promoted)));
            }
            if !demoted.is_empty() {
                parts.push(format!("made {} no longer admin", list(demoted)));
            }
            if let Some(title) = renamed {
                parts.push(format!("renamed the group {title:?}"));
            }
            if parts.is_empty() {
                parts.push("made a new version".into());
            }
            format!("{by} {}", parts.join("; "))
        }
        GroupNews::Gap { from, to } => format!(
            "versions {from} to {to} of the group are missing here (a server dropped or delayed them); asked a member for them"
        ),
        GroupNews::Refused { from, reason } => {
            format!("refused a group change or message from {from}: {reason}")
        }
    }
}

/// What sending a message to a group did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSent {
    /// The message's id.
    pub id: MessageId,
    /// Envelopes sent (one per member device but this one).
    pub devices: usize,
    /// Members it could not be sealed to, and why (their devices could not be looked up).
    pub skipped: Vec<(Uid, String)>,
}

/// The members a version adds and removes, the admins it adds and removes, its new title.
fn changes(before: &GroupState, after: &GroupState) -> GroupNews {
    let minus = |a: &[Uid], b: &[Uid]| a.iter().filter(|u| !b.contains(u)).cloned().collect();
    let promoted: Vec<Uid> = minus(&after.admins, &before.admins);
    GroupNews::Changed {
        by: after.by.clone(),
        version: after.version,
        added: minus(&after.members, &before.members),
        removed: minus(&before.members, &after.members),
        promoted,
        demoted: before
            .admins
            .iter()
            .filter(|a| !after.admins.contains(a) && after.members.contains(a))
            .cloned()
            .collect(),
        renamed: (after.title != before.title).then(|| after.title.clone()),
    }
}

impl<S: Store, P: Platform> Client<S, P> {
    /// The groups this device holds.
    pub async fn groups(&self) -> anyhow::Result<Vec<(GroupId, GroupRecord)>> {
        let mut out = Vec::new();
        for id in self.store.groups().await? {
            if let Some(record) = self.store.group(&id).await? {
                out.push((id, record));
            }
        }
        Ok(out)
    }

    /// The group `reference` names: its id in hex (or a prefix of at least four digits naming
    /// one group), or its exact title.
    pub async fn find_group(&self, reference: &str) -> anyhow::Result<(GroupId, GroupRecord)> {
        let wanted = reference.to_ascii_lowercase();
        let mut found: Vec<_> = self
            .groups()
            .await?
            .into_iter()
            .filter(|(id, record)| {
                (wanted.len() >= 4 && id.to_hex().starts_with(&wanted))
                    || record.current().is_some_and(|s| s.title == reference)
            })
            .collect();
        match found.len() {
            0 => bail!("no group {reference:?} on this device (see: siren group list)"),
            1 => Ok(found.remove(0)),
            n => bail!("{n} groups match {reference:?}: give more of the id"),
        }
    }

    /// Creates a group titled `title` with `members` (this account is added, and is its
    /// admin), and tells every member device.
    pub async fn create_group(&mut self, title: &str, members: &[Uid]) -> anyhow::Result<GroupId> {
        let usk = self.secrets.usk().context("this device has no USK")?;
        let me = self.uid().clone();
        let mut all = members.to_vec();
        all.push(me.clone());
        self.check_new_members(members).await?;
        let state = GroupState::create(
            &usk,
            me.clone(),
            GroupId::random(&mut siren_proto::os_rng()),
            self.now(),
            Membership {
                title: title.to_owned(),
                members: all,
                admins: vec![me],
            },
        )?;
        let id = state.group;
        self.store
            .save_group(&id, &GroupRecord::new(state.clone()))
            .await?;
        self.announce(&state, &[]).await?;
        Ok(id)
    }

    /// Makes the next version of group `id` (`change` edits the current membership) and tells
    /// every member device of the current and the new version. Refused if this account may
    /// not make that change.
    pub async fn change_group(
        &mut self,
        id: &GroupId,
        change: impl FnOnce(&mut Membership, &Uid) -> anyhow::Result<()>,
    ) -> anyhow::Result<GroupState> {
        let usk = self.secrets.usk().context("this device has no USK")?;
        let me = self.uid().clone();
        let mut record = self.store.group(id).await?.context("no such group")?;
        let current = record.current().context("an empty group record")?.clone();
        if !current.is_member(&me) {
            bail!("this account is no longer a member of this group");
        }
        if !record.pending.is_empty() {
            bail!("this device is missing versions of this group: wait until they arrive");
        }
        let mut membership = current.membership();
        change(&mut membership, &me)?;
        let added: Vec<Uid> = membership
            .members
            .iter()
            .filter(|u| !current.is_member(u))
            .cloned()
            .collect();
        self.check_new_members(&added).await?;
        let next = current
            .next(&usk, me, self.now(), membership)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        record.push(next.clone());
        self.store.save_group(id, &record).await?;
        self.announce(&next, &current.members).await?;
        Ok(next)
    }

    /// Looks up each user about to be added: a user who does not exist (or whose keys cannot
    /// be checked) is not written into a signed version nobody could then deliver to.
    async fn check_new_members(&mut self, users: &[Uid]) -> anyhow::Result<()> {
        for user in users {
            if user != self.uid() {
                self.lookup(user)
                    .await
                    .with_context(|| format!("cannot add {user}"))?;
            }
        }
        Ok(())
    }

    /// Leaves group `id`. The only admin of a group others remain in makes the first of them
    /// an admin on the way out.
    pub async fn leave_group(&mut self, id: &GroupId) -> anyhow::Result<GroupState> {
        self.change_group(id, |m, me| {
            m.members.retain(|u| u != me);
            let was_admin = m.admins.contains(me);
            m.admins.retain(|u| u != me);
            if m.members.is_empty() {
                bail!("you are its last member: nothing to leave (the group ends with you)");
            }
            if was_admin
                && m.admins.is_empty()
                && let Some(first) = m.members.iter().min_by_key(|u| u.to_string())
            {
                m.admins.push(first.clone());
            }
            Ok(())
        })
        .await
    }

    /// Sends `state` as a `group_update` to every device of its members and of `before` (the
    /// previous version's members: a removed member learns of it), this one excepted.
    async fn announce(&mut self, state: &GroupState, before: &[Uid]) -> anyhow::Result<()> {
        let mut to: Vec<Uid> = state.members.clone();
        to.extend(before.iter().filter(|u| !state.is_member(u)).cloned());
        let content = Plaintext::GroupUpdate(Box::new(state.clone()));
        let id = MessageId::random(&mut siren_proto::os_rng());
        let sent = self.fan_out(&to, id, &content.encode()).await?;
        if let Some((who, why)) = sent.skipped.first() {
            bail!(
                "the change is made, but {who} (and {} more) could not be told: {why}",
                sent.skipped.len() - 1
            );
        }
        Ok(())
    }

    /// The groups this device holds, as the chat screens list them (the version held of each).
    pub async fn group_summaries(
        &self,
    ) -> anyhow::Result<Vec<(GroupId, siren_client_core::model::GroupSummary)>> {
        Ok(self
            .groups()
            .await?
            .into_iter()
            .filter_map(|(id, record)| {
                let s = record.current()?;
                Some((
                    id,
                    siren_client_core::model::GroupSummary {
                        title: s.title.clone(),
                        members: s.members.clone(),
                        admins: s.admins.clone(),
                        version: s.version,
                    },
                ))
            })
            .collect())
    }

    /// Sends `content` (a `text`, `file`, `file_chunk`, `edit` or `delete`) to group `id` as
    /// message `msg_id`.
    pub async fn send_to_group(
        &mut self,
        id: &GroupId,
        msg_id: MessageId,
        content: Plaintext,
    ) -> anyhow::Result<GroupSent> {
        let record = self.store.group(id).await?.context("no such group")?;
        let current = record.current().context("an empty group record")?;
        if !current.is_member(self.uid()) {
            bail!("this account is no longer a member of this group");
        }
        let members = current.members.clone();
        let message = Plaintext::Group {
            group: *id,
            version: current.version,
            msg: Box::new(content),
        };
        self.fan_out(&members, msg_id, &message.encode()).await
    }

    /// Seals `plaintext` as message `id` to every device of every user in `to` (this device
    /// excepted) and sends the envelopes, [`SEND_BATCH`] at a time. A user whose devices
    /// cannot be looked up is skipped and reported.
    async fn fan_out(
        &mut self,
        to: &[Uid],
        id: MessageId,
        plaintext: &[u8],
    ) -> anyhow::Result<GroupSent> {
        let mut envelopes = Vec::new();
        let mut skipped = Vec::new();
        for user in to {
            let report = match self.recipients(user).await {
                Ok(report) => report,
                Err(e) => {
                    skipped.push((user.clone(), format!("{e:#}")));
                    continue;
                }
            };
            envelopes.extend(
                self.seal_to_devices(user, &report.directory, id, plaintext)
                    .await?,
            );
        }
        let devices = envelopes.len();
        while !envelopes.is_empty() {
            let batch: Vec<_> = envelopes.drain(..envelopes.len().min(SEND_BATCH)).collect();
            let answer = self
                .request(|rid| ClientMessage::Send { rid, msgs: batch })
                .await?;
            match answer {
                ServerMessage::SendAck { ids, .. } if ids.contains(&id) => {}
                other => bail!("unexpected answer to send: {other:?}"),
            }
        }
        Ok(GroupSent {
            id,
            devices,
            skipped,
        })
    }

    /// The USK of `uid` in this device's verified directory (looked up when not known yet).
    async fn usk_of(&mut self, uid: &Uid) -> anyhow::Result<UskPublic> {
        if uid == self.uid()
            && let Some(usk) = self.secrets.usk()
        {
            return Ok(usk.public());
        }
        if let Some(dir) = self.store.contact(uid).await?.directory {
            return Ok(*dir.usk());
        }
        Ok(*self.lookup(uid).await?.directory.usk())
    }

    /// A `group_update` from `from`: the version checked against the one held (PROTOCOL.md
    /// §12.1) and, if it follows, taken, with any kept aside that follow it.
    pub(super) async fn receive_group_update(
        &mut self,
        from: &Uid,
        state: GroupState,
    ) -> anyhow::Result<Option<Event>> {
        let me = self.uid().clone();
        let id = state.group;
        let event = |title: &str, news| {
            Ok(Some(Event::Group(GroupEvent {
                group: id,
                title: title.to_owned(),
                news,
                then: Vec::new(),
            })))
        };
        let refused = |title: &str, reason: String| {
            event(
                title,
                GroupNews::Refused {
                    from: from.clone(),
                    reason,
                },
            )
        };
        let usk = match self.usk_of(&state.by).await {
            Ok(usk) => usk,
            Err(e) => {
                return refused(
                    &state.title,
                    format!("cannot check {}'s key: {e:#}", state.by),
                );
            }
        };
        let Some(mut record) = self.store.group(&id).await? else {
            // Joining: taken on the word of the admin who made it.
            if let Err(e) = state.check_join(&me, &usk) {
                return refused(&state.title, e.to_string());
            }
            let news = GroupNews::Joined {
                by: state.by.clone(),
                version: state.version,
            };
            let title = state.title.clone();
            self.store.save_group(&id, &GroupRecord::new(state)).await?;
            return event(&title, news);
        };
        let current = record.current().context("an empty group record")?.clone();
        match state.check_successor(&current, &usk) {
            Ok(()) => {
                let news = changes(&current, &state);
                record.push(state);
                let then = self.apply_pending(&mut record).await;
                self.release_held(id, &mut record);
                let title = record
                    .current()
                    .map(|s| s.title.clone())
                    .unwrap_or_default();
                self.store.save_group(&id, &record).await?;
                Ok(Some(Event::Group(GroupEvent {
                    group: id,
                    title,
                    news,
                    then,
                })))
            }
            Err(GroupError::Rollback { .. })
                if record.hash_of(state.version) == Some(&state.hash()) =>
            {
                // A late copy of a version held already.
                Ok(None)
            }
            Err(GroupError::Rollback { have, got }) => refused(
                &current.title,
                format!(
                    "version {got} differs from the version {got} held (a rollback or a fork; holding {have})"
                ),
            ),
            Err(GroupError::Gap { have, got }) => {
                if record.pending.len() < MAX_PENDING
                    && !record.pending.iter().any(|p| p.version == got)
                {
                    record.pending.push(state);
                    self.store.save_group(&id, &record).await?;
                }
                self.ask_sync(from, id, have).await?;
                event(
                    &current.title,
                    GroupNews::Gap {
                        from: have.saturating_add(1),
                        to: got.saturating_sub(1),
                    },
                )
            }
            Err(e) => refused(&current.title, e.to_string()),
        }
    }

    /// Takes the versions kept aside that now follow, in order, and says what each changed;
    /// drops those that cannot follow.
    async fn apply_pending(&mut self, record: &mut GroupRecord) -> Vec<GroupNews> {
        let mut news = Vec::new();
        record.pending.sort_by_key(|s| s.version);
        while let Some(next) = record.pending.first().cloned() {
            let Some(current) = record.current().cloned() else {
                break;
            };
            if next.version > current.version.saturating_add(1) {
                break;
            }
            record.pending.remove(0);
            if next.version <= current.version {
                continue;
            }
            if let Ok(usk) = self.usk_of(&next.by).await
                && next.check_successor(&current, &usk).is_ok()
            {
                news.push(changes(&current, &next));
                record.push(next);
            }
        }
        news
    }

    /// The messages kept aside that name a version held now: a member's go out as group
    /// messages (after the event that made the version), anyone else's as refused.
    fn release_held(&mut self, group: GroupId, record: &mut GroupRecord) {
        let Some(current) = record.current().cloned() else {
            return;
        };
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut record.held)
            .into_iter()
            .partition(|h| h.version <= current.version);
        record.held = waiting;
        for held in ready {
            let Ok(content) = Plaintext::decode(&held.content) else {
                continue;
            };
            let event = if current.is_member(&held.from) {
                Event::GroupMessage {
                    group: display_name(&group, &current.title),
                    message: Received {
                        from: held.from,
                        id: held.id,
                        content,
                    },
                }
            } else {
                Event::Group(GroupEvent {
                    group,
                    title: current.title.clone(),
                    news: GroupNews::Refused {
                        reason: format!(
                            "from {}, who is not a member of version {} either",
                            held.from, current.version
                        ),
                        from: held.from,
                    },
                    then: Vec::new(),
                })
            };
            self.released.push_back(event);
        }
    }

    /// Asks `member` for the versions of group `id` after `have`.
    async fn ask_sync(&mut self, member: &Uid, id: GroupId, have: u64) -> anyhow::Result<()> {
        let ask = Plaintext::GroupSync { group: id, have };
        let msg = MessageId::random(&mut siren_proto::os_rng());
        self.fan_out(std::slice::from_ref(member), msg, &ask.encode())
            .await
            .map(drop)
    }

    /// A `group_sync` from `from`: the versions after `have` this device holds, each sent to
    /// `from` as a `group_update`. Only to a member of the current version or of version `have`
    /// (one that missed its own removal learns of it), and never past the first version that
    /// leaves `from` out: an ex-member learns nothing of the group after it.
    pub(super) async fn answer_group_sync(
        &mut self,
        from: &Uid,
        id: GroupId,
        have: u64,
    ) -> anyhow::Result<()> {
        let Some(record) = self.store.group(&id).await? else {
            return Ok(());
        };
        let member_now = record.current().is_some_and(|s| s.is_member(from));
        let member_then = record
            .versions
            .iter()
            .any(|s| s.version == have && s.is_member(from));
        if !member_now && !member_then {
            return Ok(());
        }
        let mut later = Vec::new();
        for state in record.versions.iter().filter(|s| s.version > have) {
            later.push(state.clone());
            if !state.is_member(from) {
                break;
            }
        }
        for state in later {
            let update = Plaintext::GroupUpdate(Box::new(state));
            let msg = MessageId::random(&mut siren_proto::os_rng());
            self.fan_out(std::slice::from_ref(from), msg, &update.encode())
                .await?;
        }
        Ok(())
    }

    /// A `group` message from `from`: shown only if `from` is a member of the version held; a
    /// newer version named by it means versions are missing, which are asked for.
    pub(super) async fn receive_group_message(
        &mut self,
        received: Received,
    ) -> anyhow::Result<Option<Event>> {
        let Plaintext::Group { group, version, .. } = &received.content else {
            return Ok(Some(Event::Message(received)));
        };
        // Checked below; until then it is only what the sender claims.
        let (group, version) = (*group, *version);
        let refused = |title: String, reason: String| {
            Ok(Some(Event::Group(GroupEvent {
                group,
                title,
                news: GroupNews::Refused {
                    from: received.from.clone(),
                    reason,
                },
                then: Vec::new(),
            })))
        };
        let Some(record) = self.store.group(&group).await? else {
            return refused(
                String::new(),
                "a message for a group this device is not in".into(),
            );
        };
        let mut record = record;
        let current = record.current().context("an empty group record")?.clone();
        if version > current.version && record.pending.is_empty() {
            self.ask_sync(&received.from, group, current.version)
                .await?;
        }
        if !current.is_member(&received.from)
            && version > current.version
            && record.held.len() < MAX_HELD
        {
            // Maybe added in a version not here yet: kept until it comes (or refused then).
            if !record.held.iter().any(|h| h.id == received.id) {
                record.held.push(HeldMessage {
                    from: received.from.clone(),
                    id: received.id,
                    version,
                    content: received.content.encode(),
                });
                self.store.save_group(&group, &record).await?;
            }
            return Ok(Some(Event::Group(GroupEvent {
                group,
                title: current.title.clone(),
                news: GroupNews::Gap {
                    from: current.version.saturating_add(1),
                    to: version,
                },
                then: Vec::new(),
            })));
        }
        if !current.is_member(&received.from) {
            let reason = if version > current.version {
                format!(
                    "from {}, not a member of version {} held here (it names version {version}: some are missing, and were asked for)",
                    received.from, current.version
                )
            } else {
                format!("from {}, who is not a member", received.from)
            };
            return refused(current.title.clone(), reason);
        }
        Ok(Some(Event::GroupMessage {
            group: display_name(&group, &current.title),
            message: received,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uid(s: &str) -> Uid {
        Uid::parse(s).unwrap()
    }

    #[test]
    fn a_record_remembers_every_hash_and_the_newest_versions() {
        let usk = siren_proto::keys::UskSecret::from_bytes(&[1; 32]);
        let alice = uid("alice@alpha.test");
        let membership = |n: u64| Membership {
            title: format!("v{n}"),
            members: vec![alice.clone()],
            admins: vec![alice.clone()],
        };
        let v1 = GroupState::create(
            &usk,
            alice.clone(),
            GroupId::from_bytes([1; 16]),
            0,
            membership(1),
        )
        .unwrap();
        let mut record = GroupRecord::new(v1.clone());
        let mut last = v1.clone();
        for n in 2..=(KEEP_VERSIONS as u64 + 5) {
            last = last.next(&usk, alice.clone(), n, membership(n)).unwrap();
            record.push(last.clone());
        }
        assert_eq!(record.versions.len(), KEEP_VERSIONS);
        assert_eq!(record.current(), Some(&last));
        assert_eq!(record.hash_of(1), Some(&v1.hash()));
        assert_eq!(record.hash_of(last.version), Some(&last.hash()));
        assert_eq!(record.hash_of(last.version + 1), None);
        assert_eq!(record.missing(), None);
        record.pending.push(GroupState {
            version: last.version + 3,
            ..last.clone()
        });
        assert_eq!(record.missing(), Some((last.version + 1, last.version + 2)));
        // Through the store's encoding and back.
        let bytes = siren_proto::message::encode_value(&record);
        let again: GroupRecord = siren_proto::message::decode_value(&bytes).unwrap();
        assert_eq!(again, record);
    }
}
