//! The UI's own state (which conversation is open, the compose box, scrolling, the open window,
//! the status note) and what keys do to it: each key either edits that state or becomes a
//! [`Command`] for the [`ChatSource`].

use std::time::{Duration, Instant};

use crossterm::event::{Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use jiff::tz::TimeZone;
use siren_api::Uid;
use siren_client_core::Command;
use siren_client_core::model::{Banner, Body, Chat, ConversationSummary, FileProgress, View};
use siren_proto::keys::DekPublic;

use super::commands::{self, Slash};
use super::compose::Compose;
use super::source::ChatSource;

/// A typing notification is renewed this often while the person keeps typing (the peer shows
/// "typing" for 10 s after each).
const TYPING_RENEW: Duration = Duration::from_secs(5);
/// "Stopped typing" is sent after this long without a key.
const TYPING_IDLE: Duration = Duration::from_secs(5);

/// A window drawn over everything; it takes the keys while open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Popup {
    /// The help screen.
    Help,
    /// The safety number with a user; `y` marks it verified.
    Verify {
        /// With whom.
        peer: Uid,
    },
    /// A new device of this account waiting for approval; `y` approves, `n` denies.
    Approve {
        /// The new device.
        new_dek: DekPublic,
    },
}

/// A line for the status bar from the UI itself (what a command did, or why it could not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Note {
    /// What to say (may contain typed text: escaped when drawn).
    pub text: String,
    /// Said as an error.
    pub error: bool,
}

/// One line of the conversation list.
#[derive(Debug, Clone)]
pub(crate) struct Entry<'a> {
    /// With whom, or which group.
    pub chat: Chat,
    /// The conversation, if the core has one.
    pub summary: Option<&'a ConversationSummary>,
    /// An unanswered contact request.
    pub request: bool,
}

/// The conversation list: the core's conversations (most recent first), then contact requests
/// that have no conversation yet.
pub(crate) fn entries(view: &View) -> Vec<Entry<'_>> {
    let is_request = |peer: &Uid| view.requests.iter().any(|r| r.from == *peer);
    let mut out: Vec<Entry<'_>> = view
        .conversations
        .iter()
        .map(|c| Entry {
            chat: c.chat.clone(),
            summary: Some(c),
            request: c.chat.user().is_some_and(is_request),
        })
        .collect();
    for r in &view.requests {
        if !view
            .conversations
            .iter()
            .any(|c| c.chat.user() == Some(&r.from))
        {
            out.push(Entry {
                chat: Chat::User(r.from.clone()),
                summary: None,
                request: true,
            });
        }
    }
    out
}

/// Typing notifications sent for the open conversation.
#[derive(Debug)]
struct Typing {
    chat: Chat,
    sent_at: Instant,
    last_key: Instant,
}

/// The UI's state.
pub(crate) struct App {
    /// The open conversation.
    pub selected: Option<Chat>,
    /// The message being written.
    pub compose: Compose,
    /// Rows scrolled up from the newest message.
    pub scroll: usize,
    /// The most `scroll` can be (set when drawing: rows of the conversation beyond one screen).
    pub max_scroll: usize,
    /// Rows of messages on screen (set when drawing).
    pub page: usize,
    /// The window drawn over everything.
    pub popup: Option<Popup>,
    /// The status note.
    pub note: Option<Note>,
    /// The banner the person dismissed (Esc); shown again only when another one comes.
    pub dismissed: Option<Banner>,
    /// The person asked to quit.
    pub quit: bool,
    /// Times are shown in this zone.
    pub tz: TimeZone,
    typing: Option<Typing>,
    /// The conversation and loaded message count when older history was last asked for (asked
    /// again only once something arrived).
    older_asked: Option<(Chat, usize)>,
    /// The conversation, unread count and loaded message count last marked read.
    read_marked: Option<(Chat, u32, usize)>,
}

impl App {
    /// A UI showing times in `tz`, nothing open yet.
    pub fn new(tz: TimeZone) -> App {
        App {
            selected: None,
            compose: Compose::default(),
            scroll: 0,
            max_scroll: 0,
            page: 0,
            popup: None,
            note: None,
            dismissed: None,
            quit: false,
            tz,
            typing: None,
            older_asked: None,
            read_marked: None,
        }
    }

    fn info(&mut self, text: impl Into<String>) {
        self.note = Some(Note {
            text: text.into(),
            error: false,
        });
    }

    fn error(&mut self, text: impl Into<String>) {
        self.note = Some(Note {
            text: text.into(),
            error: true,
        });
    }

    // ---- keeping up with the source ----------------------------------------------------------

    /// Brings the UI in line with the source before drawing: opens the first conversation if
    /// none is open, marks the open conversation read, closes an approval window whose request
    /// went away.
    pub fn sync<S: ChatSource>(&mut self, src: &mut S) {
        if self.selected.is_none()
            && let Some(first) = entries(src.view()).first()
        {
            self.selected = Some(first.chat.clone());
        }
        if let Some(Popup::Approve { new_dek }) = &self.popup
            && !src.view().approvals.iter().any(|a| a.new_dek == *new_dek)
        {
            self.popup = None;
            self.info("that device's approval request ended");
        }
        if let Some(chat) = self.selected.clone() {
            let unread = src
                .view()
                .conversations
                .iter()
                .find(|c| c.chat == chat)
                .map_or(0, |c| c.unread);
            let mark = (chat.clone(), unread, src.messages(&chat).len());
            if unread > 0 && self.read_marked.as_ref() != Some(&mark) {
                self.read_marked = Some(mark);
                src.command(Command::MarkRead(chat));
            }
        }
    }

    /// Once a second: ends "typing" after a pause.
    pub fn tick<S: ChatSource>(&mut self, src: &mut S, now: Instant) {
        if self
            .typing
            .as_ref()
            .is_some_and(|t| now.saturating_duration_since(t.last_key) >= TYPING_IDLE)
        {
            self.stop_typing(src);
        }
    }

    /// Before leaving: nobody should see this person typing any more.
    pub fn finish<S: ChatSource>(&mut self, src: &mut S) {
        self.stop_typing(src);
    }

    // ---- input ----------------------------------------------------------------------------------

    /// One terminal event.
    pub fn on_event<S: ChatSource>(&mut self, event: Event, src: &mut S, now: Instant) {
        match event {
            Event::Key(key) => self.on_key(key, src, now),
            Event::Paste(text) if self.popup.is_none() => {
                self.compose.paste(&text);
                self.typed(src, now);
            }
            // A resize needs only the redraw that follows every event.
            _ => {}
        }
    }

    /// One key.
    pub fn on_key<S: ChatSource>(&mut self, key: KeyEvent, src: &mut S, now: Instant) {
        if key.kind == KeyEventKind::Release {
            return;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        if ctrl && matches!(key.code, KeyCode::Char('c' | 'C')) {
            self.quit = true;
            return;
        }
        if let Some(popup) = self.popup.take() {
            self.popup_key(popup, key, src);
            return;
        }
        match key.code {
            KeyCode::F(1) => self.popup = Some(Popup::Help),
            KeyCode::Char('?') if self.compose.is_empty() && !ctrl && !alt => {
                self.popup = Some(Popup::Help)
            }
            KeyCode::Enter if alt => self.edit(src, now, |c| c.insert('\n')),
            KeyCode::Char('j') if ctrl => self.edit(src, now, |c| c.insert('\n')),
            KeyCode::Enter => self.submit(src),
            KeyCode::Tab | KeyCode::Down => self.switch(src, 1),
            KeyCode::Char('n') if ctrl => self.switch(src, 1),
            KeyCode::BackTab | KeyCode::Up => self.switch(src, -1),
            KeyCode::Char('p') if ctrl => self.switch(src, -1),
            KeyCode::PageUp => self.scroll_up(src),
            KeyCode::PageDown => {
                self.scroll = self.scroll.saturating_sub(self.page_step());
            }
            KeyCode::Esc => {
                self.note = None;
                self.dismissed = src.view().banners.last().cloned();
            }
            KeyCode::Left => self.compose.left(),
            KeyCode::Right => self.compose.right(),
            KeyCode::Home => self.compose.home(),
            KeyCode::End => self.compose.end(),
            KeyCode::Backspace => self.edit(src, now, Compose::backspace),
            KeyCode::Delete => self.edit(src, now, Compose::delete),
            KeyCode::Char('u') if ctrl => self.edit(src, now, Compose::kill_to_line_start),
            KeyCode::Char(c) if !ctrl => self.edit(src, now, |b| b.insert(c)),
            _ => {}
        }
    }

    fn popup_key<S: ChatSource>(&mut self, popup: Popup, key: KeyEvent, src: &mut S) {
        let yes = matches!(key.code, KeyCode::Char('y' | 'Y'));
        match popup {
            Popup::Help => {}
            Popup::Verify { peer } => {
                if yes {
                    if src.safety_number(&peer).is_some() {
                        self.info(format!("{peer} marked verified"));
                        src.command(Command::MarkVerified(peer));
                    } else {
                        self.error(format!(
                            "{peer}'s keys are not known yet: nothing to verify"
                        ));
                    }
                }
            }
            Popup::Approve { new_dek } => {
                let code = src
                    .view()
                    .approvals
                    .iter()
                    .find(|a| a.new_dek == new_dek)
                    .map(|a| a.code.is_some());
                match (key.code, code) {
                    (_, None) => self.info("that device's approval request ended"),
                    (KeyCode::Char('y' | 'Y'), Some(true)) => {
                        src.command(Command::AnswerApproval {
                            new_dek,
                            approve: true,
                        });
                        self.info("new device approved");
                    }
                    (KeyCode::Char('y' | 'Y'), Some(false)) => {
                        // Nothing to compare yet: approving blind is what the code prevents.
                        self.popup = Some(Popup::Approve { new_dek });
                    }
                    (KeyCode::Esc, Some(_)) => self.info("approval left for later (/approve)"),
                    (_, Some(_)) => {
                        src.command(Command::AnswerApproval {
                            new_dek,
                            approve: false,
                        });
                        self.info("new device denied");
                    }
                }
            }
        }
    }

    /// Edits the compose box, then tells the peer about typing.
    fn edit<S: ChatSource>(&mut self, src: &mut S, now: Instant, f: impl FnOnce(&mut Compose)) {
        f(&mut self.compose);
        self.typed(src, now);
    }

    /// The compose box changed: start, renew or end "typing" for the open conversation.
    fn typed<S: ChatSource>(&mut self, src: &mut S, now: Instant) {
        let text = self.compose.text();
        // Typing is told only in a conversation with one user.
        let Some(chat) = self.selected.clone().filter(|c| c.user().is_some()) else {
            return;
        };
        if text.trim().is_empty() || text.starts_with('/') {
            self.stop_typing(src);
            return;
        }
        match &mut self.typing {
            Some(t) if t.chat == chat => {
                t.last_key = now;
                if now.saturating_duration_since(t.sent_at) >= TYPING_RENEW {
                    t.sent_at = now;
                    src.command(Command::SetTyping {
                        to: chat,
                        typing: true,
                    });
                }
            }
            _ => {
                self.stop_typing(src);
                src.command(Command::SetTyping {
                    to: chat.clone(),
                    typing: true,
                });
                self.typing = Some(Typing {
                    chat,
                    sent_at: now,
                    last_key: now,
                });
            }
        }
    }

    fn stop_typing<S: ChatSource>(&mut self, src: &mut S) {
        if let Some(t) = self.typing.take() {
            src.command(Command::SetTyping {
                to: t.chat,
                typing: false,
            });
        }
    }

    fn page_step(&self) -> usize {
        self.page.saturating_sub(1).max(1)
    }

    /// PgUp: up a page; at the top, ask for older history (once per arrival).
    fn scroll_up<S: ChatSource>(&mut self, src: &mut S) {
        self.scroll = self.scroll.saturating_add(self.page_step());
        if self.scroll >= self.max_scroll {
            self.scroll = self.max_scroll;
            if let Some(chat) = self.selected.clone() {
                let asked = (chat.clone(), src.messages(&chat).len());
                if self.older_asked.as_ref() != Some(&asked) {
                    self.older_asked = Some(asked);
                    src.load_older(&chat);
                }
            }
        }
    }

    /// Opens the next (`step` 1) or previous (-1) conversation of the list.
    fn switch<S: ChatSource>(&mut self, src: &mut S, step: isize) {
        let list = entries(src.view());
        if list.is_empty() {
            return;
        }
        let n = list.len();
        let at = self
            .selected
            .as_ref()
            .and_then(|s| list.iter().position(|e| e.chat == *s));
        let next = match at {
            Some(i) => (i + n).saturating_add_signed(step) % n,
            None => 0,
        };
        let chat = list.get(next).map(|e| e.chat.clone());
        if let Some(chat) = chat {
            self.open(src, chat);
        }
    }

    /// Makes `chat` the open conversation (asking the core to open it if it has none loaded).
    fn open<S: ChatSource>(&mut self, src: &mut S, chat: Chat) {
        if self.selected.as_ref() != Some(&chat) {
            self.stop_typing(src);
            self.scroll = 0;
        }
        if src.messages(&chat).is_empty() {
            src.command(Command::Open(chat.clone()));
        }
        self.selected = Some(chat);
    }

    /// `/chat GROUP`: the group whose title is `name` (or whose id starts with it).
    fn open_group<S: ChatSource>(&mut self, src: &mut S, name: &str) {
        let wanted = name.to_ascii_lowercase();
        let found: Vec<Chat> = src
            .view()
            .conversations
            .iter()
            .filter(|c| {
                c.chat.group().is_some_and(|g| {
                    c.name.as_deref() == Some(name)
                        || (wanted.len() >= 4 && g.to_hex().starts_with(&wanted))
                })
            })
            .map(|c| c.chat.clone())
            .collect();
        match found.as_slice() {
            [chat] => self.open(src, chat.clone()),
            [] => self.error(format!(
                "no group {name:?} on this device (siren group create makes one; a user id has an @)"
            )),
            _ => self.error(format!("several groups are called {name:?}: give the first digits of its id")),
        }
    }

    // ---- Enter ------------------------------------------------------------------------------------

    /// Enter: send the message, or run the `/command`.
    fn submit<S: ChatSource>(&mut self, src: &mut S) {
        let text = self.compose.take();
        if text.trim().is_empty() {
            return;
        }
        self.note = None;
        if text.trim_start().starts_with('/') && !text.trim_start().starts_with("//") {
            match commands::parse(&text) {
                Ok(slash) => self.run(slash, src),
                Err(e) => {
                    self.error(e.to_string());
                    self.compose.paste(&text);
                }
            }
            return;
        }
        // "//…" sends a text that starts with "/".
        let body = match text.trim_start().strip_prefix('/') {
            Some(rest) if rest.starts_with('/') => rest.to_owned(),
            _ => text.clone(),
        };
        let Some(to) = self.selected.clone() else {
            self.error("no conversation open: /chat USER|GROUP opens one");
            self.compose.paste(&text);
            return;
        };
        self.stop_typing(src);
        self.scroll = 0;
        src.command(Command::SendText { to, body });
    }

    /// The user a command names, or the open conversation's (a group's is no user).
    fn target(&mut self, given: Option<Uid>, usage: &str) -> Option<Uid> {
        let uid = given.or_else(|| self.selected.as_ref().and_then(|c| c.user().cloned()));
        if uid.is_none() {
            match &self.selected {
                Some(Chat::Group(_)) => self.error(format!("this is a group: {usage}")),
                _ => self.error(format!("no conversation open: {usage}")),
            }
        }
        uid
    }

    /// The open conversation, for commands about it.
    fn open_chat(&mut self) -> Option<Chat> {
        if self.selected.is_none() {
            self.error("no conversation open: /chat USER|GROUP first");
        }
        self.selected.clone()
    }

    fn run<S: ChatSource>(&mut self, slash: Slash, src: &mut S) {
        match slash {
            Slash::Chat(uid) => self.open(src, Chat::User(uid)),
            Slash::Group(name) => self.open_group(src, &name),
            Slash::Accept(who) => {
                if let Some(uid) = self.target(who, "/accept USER") {
                    self.info(format!("{uid} accepted as a contact"));
                    src.command(Command::AcceptContact(uid));
                }
            }
            Slash::Refuse(who) => {
                if let Some(uid) = self.target(who, "/refuse USER") {
                    self.info(format!(
                        "{uid} refused and blocked (/unblock {uid} undoes it)"
                    ));
                    src.command(Command::Block(uid));
                }
            }
            Slash::Block(who) => {
                if let Some(uid) = self.target(who, "/block USER") {
                    self.info(format!("{uid} blocked"));
                    src.command(Command::Block(uid));
                }
            }
            Slash::Unblock(who) => {
                if let Some(uid) = self.target(who, "/unblock USER") {
                    self.info(format!("{uid} unblocked"));
                    src.command(Command::Unblock(uid));
                }
            }
            Slash::Verify(who) => {
                if let Some(uid) = self.target(who, "/verify USER") {
                    src.command(Command::ShowSafetyNumber(uid.clone()));
                    self.popup = Some(Popup::Verify { peer: uid });
                }
            }
            Slash::Approve => match src.view().approvals.first() {
                Some(a) => self.popup = Some(Popup::Approve { new_dek: a.new_dek }),
                None => self.info("no new device is waiting for approval"),
            },
            Slash::File(path) => {
                if let Some(to) = self.open_chat() {
                    self.info(format!("sending {path}"));
                    src.command(Command::SendFile { to, path });
                }
            }
            Slash::Save => self.save(src),
            Slash::Edit(text) => self.change_last(src, Some(text)),
            Slash::Delete => self.change_last(src, None),
            Slash::Receipts(on) => {
                self.info(if on {
                    "read receipts on"
                } else {
                    "read receipts off"
                });
                src.command(Command::SetReadReceipts(on));
            }
            Slash::Help => self.popup = Some(Popup::Help),
            Slash::Quit => self.quit = true,
        }
    }

    /// `/edit TEXT` (`Some`) or `/delete` (`None`): this account's last text message in the
    /// open conversation.
    fn change_last<S: ChatSource>(&mut self, src: &mut S, body: Option<String>) {
        let Some(chat) = self.open_chat() else {
            return;
        };
        let last = src
            .messages(&chat)
            .iter()
            .rev()
            .find(|m| m.outgoing && matches!(m.body, Body::Text(_)))
            .map(|m| m.id);
        match (last, body) {
            (None, _) => self.error("no message of yours to change in this conversation"),
            (Some(id), Some(body)) => {
                self.info("your last message was edited");
                src.command(Command::Edit { chat, id, body });
            }
            (Some(id), None) => {
                self.info("your last message was withdrawn");
                src.command(Command::Delete { chat, id });
            }
        }
    }

    /// `/save`: the last received file of the open conversation.
    fn save<S: ChatSource>(&mut self, src: &mut S) {
        let Some(chat) = self.open_chat() else {
            return;
        };
        let last = src
            .messages(&chat)
            .iter()
            .rev()
            .find_map(|m| match &m.body {
                Body::File {
                    file,
                    name,
                    progress,
                    ..
                } if !m.outgoing => Some((*file, name.clone(), progress.clone())),
                _ => None,
            });
        match last {
            None => self.error("no received file in this conversation"),
            Some((file, name, FileProgress::Complete)) => {
                self.info(format!("saving {name}"));
                src.command(Command::SaveFile(file));
            }
            Some((_, name, FileProgress::Saved { path })) => {
                self.info(format!("{name} is already saved to {path}"))
            }
            Some((_, name, FileProgress::Receiving { have, of })) => {
                self.error(format!("{name} is not complete yet ({have}/{of})"))
            }
            Some((_, name, FileProgress::Failed(why))) => {
                self.error(format!("{name} failed: {why}"))
            }
            Some((_, name, FileProgress::Sending { .. } | FileProgress::Sent)) => {
                self.error(format!("{name} is not a received file"))
            }
        }
    }
}
