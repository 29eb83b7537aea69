//! The UI against a fake source: what it draws (ratatui's `TestBackend`) and what keys become.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crossterm::event::{Event, KeyCode, KeyEvent, KeyModifiers};
use jiff::tz::TimeZone;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use siren_api::Uid;
use siren_client_core::Command;
use siren_client_core::model::{
    Banner, Body, Chat, ChatMessage, ContactRequest, ConversationSummary, FileProgress,
    MessageState, PendingApproval, Status, View,
};
use siren_proto::ids::{FileId, MessageId};
use siren_proto::keys::DekPublic;
use siren_proto::message::PresenceStatus;

use super::app::{App, Popup};
use super::render;
use super::source::ChatSource;
use crate::terminal::is_escaped;

/// 2025-01-01T13:45:30Z.
const AT: u64 = 1_735_739_130_000;

struct Fake {
    view: View,
    msgs: BTreeMap<Chat, Vec<ChatMessage>>,
    commands: Vec<Command>,
    older: Vec<Chat>,
    safety: Option<String>,
}

impl ChatSource for Fake {
    fn view(&self) -> &View {
        &self.view
    }
    fn messages(&self, chat: &Chat) -> &[ChatMessage] {
        self.msgs.get(chat).map_or(&[], Vec::as_slice)
    }
    fn load_older(&mut self, chat: &Chat) {
        self.older.push(chat.clone());
    }
    fn safety_number(&self, _peer: &Uid) -> Option<String> {
        self.safety.clone()
    }
    fn connection(&self) -> String {
        format!("connected as {}", self.view.me)
    }
    fn command(&mut self, cmd: Command) {
        self.commands.push(cmd);
    }
    async fn changed(&mut self) {
        std::future::pending::<()>().await
    }
}

fn uid(s: &str) -> Uid {
    Uid::parse(s).unwrap()
}

fn user(s: &str) -> Chat {
    Chat::User(uid(s))
}

fn summary(peer: &str) -> ConversationSummary {
    ConversationSummary {
        chat: Chat::User(uid(peer)),
        group: None,
        name: None,
        unread: 0,
        preview: None,
        last_at: AT,
        presence: None,
        typing: false,
        verified: false,
        key_changed: false,
        blocked: false,
    }
}

fn msg(n: u8, peer: &str, outgoing: bool, body: Body, state: MessageState) -> ChatMessage {
    ChatMessage {
        id: MessageId::from_bytes([n; 16]),
        peer: uid(peer),
        group: None,
        outgoing,
        ts: AT / 1000,
        at: AT + u64::from(n),
        body,
        state,
        edited: false,
    }
}

fn text(s: &str) -> Body {
    Body::Text(s.to_owned())
}

fn empty() -> Fake {
    Fake {
        view: View {
            me: uid("alice@alpha.test"),
            status: Status::Online,
            conversations: Vec::new(),
            requests: Vec::new(),
            approvals: Vec::new(),
            banners: Vec::new(),
        },
        msgs: BTreeMap::new(),
        commands: Vec::new(),
        older: Vec::new(),
        safety: None,
    }
}

/// Alice, talking with bob; a conversation with carol whose keys changed; a request from dave.
fn busy() -> Fake {
    let mut f = empty();
    let mut bob = summary("bob@beta.test");
    bob.unread = 2;
    bob.presence = Some(PresenceStatus::Available);
    bob.typing = true;
    let mut carol = summary("carol@gamma.test");
    carol.key_changed = true;
    f.view.conversations = vec![bob, carol];
    f.view.requests = vec![ContactRequest {
        from: uid("dave@delta.test"),
    }];
    f.view.banners = vec![Banner::KeyChanged {
        uid: uid("carol@gamma.test"),
    }];
    let mut edited = msg(
        4,
        "bob@beta.test",
        false,
        text("fixed typo"),
        MessageState::Seen,
    );
    edited.edited = true;
    f.msgs.insert(
        user("bob@beta.test"),
        vec![
            msg(
                1,
                "bob@beta.test",
                true,
                text("hello bob"),
                MessageState::Sent,
            ),
            msg(
                2,
                "bob@beta.test",
                true,
                text("seen one"),
                MessageState::Read,
            ),
            msg(
                3,
                "bob@beta.test",
                false,
                text("hi alice\nsecond line"),
                MessageState::Unread,
            ),
            edited,
            msg(
                5,
                "bob@beta.test",
                false,
                Body::File {
                    file: FileId::from_bytes([5; 16]),
                    name: "photo.jpg".into(),
                    size: 3 * 1024 * 1024,
                    progress: FileProgress::Receiving { have: 3, of: 10 },
                },
                MessageState::Unread,
            ),
            msg(
                6,
                "bob@beta.test",
                true,
                text("lost"),
                MessageState::Failed("no route".into()),
            ),
            msg(7, "bob@beta.test", false, Body::Deleted, MessageState::Seen),
            msg(
                8,
                "bob@beta.test",
                false,
                Body::Unsupported("poll".into()),
                MessageState::Seen,
            ),
            msg(
                9,
                "bob@beta.test",
                true,
                text("on its way"),
                MessageState::Sending,
            ),
            msg(
                10,
                "bob@beta.test",
                true,
                text("got it"),
                MessageState::Delivered,
            ),
        ],
    );
    f
}

fn new_app() -> App {
    App::new(TimeZone::UTC)
}

/// Syncs and draws at `w`×`h`; the screen's rows as text.
fn draw(app: &mut App, src: &mut Fake, w: u16, h: u16) -> Vec<String> {
    app.sync(src);
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    terminal.draw(|f| render::draw(f, app, src)).unwrap();
    let buffer = terminal.backend().buffer();
    (0..h)
        .map(|y| {
            (0..w)
                .map(|x| buffer.cell((x, y)).map_or("", |c| c.symbol()))
                .collect()
        })
        .collect()
}

fn has(rows: &[String], needle: &str) -> bool {
    rows.iter().any(|r| r.contains(needle))
}

fn press(app: &mut App, src: &mut Fake, code: KeyCode, modifiers: KeyModifiers) {
    app.on_event(
        Event::Key(KeyEvent::new(code, modifiers)),
        src,
        Instant::now(),
    );
}

fn key(app: &mut App, src: &mut Fake, code: KeyCode) {
    press(app, src, code, KeyModifiers::NONE);
}

fn typed(app: &mut App, src: &mut Fake, s: &str) {
    for c in s.chars() {
        key(app, src, KeyCode::Char(c));
    }
}

/// Types a line and presses Enter.
fn enter(app: &mut App, src: &mut Fake, s: &str) {
    typed(app, src, s);
    key(app, src, KeyCode::Enter);
}

#[test]
fn the_screen_at_80x24_shows_list_conversation_marks_typing_banner_and_status() {
    let mut src = busy();
    let mut app = new_app();
    let rows = draw(&mut app, &mut src, 80, 24);
    let screen = rows.join("\n");
    for needle in [
        "● bob@beta.test (2)",
        "carol@gamma.test !",
        "dave@delta.test ?",
        "bob@beta.test · available · not verified",
        "13:45 you: hello bob ✓",
        "13:45 you: seen one ✓✓ read",
        "13:45 bob: hi alice",
        "      second line",
        "13:45 bob: fixed typo (edited)",
        "[file] photo.jpg (3.0 MiB) receiving 3/10",
        "you: lost ! failed: no route",
        "bob: message deleted",
        "bob: unsupported message (poll)",
        "you: on its way …",
        "you: got it ✓✓",
        "bob is typing…",
        "the keys of carol@gamma.test changed",
        "connected as alice@alpha.test",
        "contact request from dave@delta.test",
        "F1 help",
        "to bob@beta.test",
    ] {
        assert!(
            screen.contains(needle),
            "{needle:?} not on screen:\n{screen}"
        );
    }
    // The open conversation is seen: its messages are marked read (once).
    assert_eq!(src.commands, vec![Command::MarkRead(user("bob@beta.test"))]);
    draw(&mut app, &mut src, 80, 24);
    assert_eq!(src.commands.len(), 1);
}

#[test]
fn any_size_draws_without_panicking() {
    let mut src = busy();
    src.view.approvals = vec![PendingApproval {
        new_dek: DekPublic::from_bytes([7; 32]),
        name: Some("laptop".into()),
        code: Some("913 163".into()),
    }];
    src.view.banners.push(Banner::Problem("x".repeat(300)));
    src.safety = Some("12345 ".repeat(12));
    let mut app = new_app();
    typed(&mut app, &mut src, &"long line ".repeat(40));
    press(&mut app, &mut src, KeyCode::Enter, KeyModifiers::ALT);
    typed(&mut app, &mut src, "日本語 and more");
    let popups = [
        None,
        Some(Popup::Help),
        Some(Popup::Verify {
            peer: uid("bob@beta.test"),
        }),
        Some(Popup::Approve {
            new_dek: DekPublic::from_bytes([7; 32]),
        }),
    ];
    for popup in popups {
        for (w, h) in [
            (10, 3),
            (0, 0),
            (1, 1),
            (80, 0),
            (0, 24),
            (3, 40),
            (200, 4),
            (80, 24),
        ] {
            app.popup = popup.clone();
            app.scroll = 1000;
            draw(&mut app, &mut src, w, h);
            key(&mut app, &mut src, KeyCode::PageUp);
            draw(&mut app, &mut src, w, h);
        }
    }
}

#[test]
fn text_from_elsewhere_is_shown_escaped() {
    let mut src = empty();
    let evil = uid("eve@evil.test");
    let mut s = summary("eve@evil.test");
    s.name = Some("Eve\x1b[31m\u{202e}gnp".into());
    src.view.conversations = vec![s];
    src.view.banners = vec![Banner::Problem("bad\x1b]0;title\x07".into())];
    src.msgs.insert(
        Chat::User(evil.clone()),
        vec![
            msg(
                1,
                "eve@evil.test",
                false,
                text("a\x1b[2J\x1b[Hb\u{9b}c\u{2066}d\te"),
                MessageState::Seen,
            ),
            msg(
                2,
                "eve@evil.test",
                false,
                Body::File {
                    file: FileId::from_bytes([2; 16]),
                    name: "x\r\x1b[1Aname".into(),
                    size: 10,
                    progress: FileProgress::Failed("hash\x07".into()),
                },
                MessageState::Seen,
            ),
            msg(
                3,
                "eve@evil.test",
                true,
                text("mine"),
                MessageState::Failed("\x1b[0m".into()),
            ),
        ],
    );
    let mut app = new_app();
    app.on_event(
        Event::Paste("pasted\x1b[2J".into()),
        &mut src,
        Instant::now(),
    );
    // Wide enough that no needle below is broken across rows.
    let rows = draw(&mut app, &mut src, 160, 30);
    let screen = rows.join("\n");
    for needle in [
        "Eve\\u{1b}[31m\\u{202e}gnp",
        "a\\u{1b}[2J\\u{1b}[Hb\\u{9b}c\\u{2066}d\\te",
        "x\\r\\u{1b}[1Aname",
        "failed: hash\\u{7}",
        "! failed: \\u{1b}[0m",
        "problem: bad\\u{1b}]0;title\\u{7}",
    ] {
        assert!(
            screen.contains(needle),
            "{needle:?} not on screen:\n{screen}"
        );
    }
    // Pasted text keeps no control characters either.
    assert!(screen.contains("pasted[2J"), "{screen}");
    for row in &rows {
        assert!(
            !row.chars().any(is_escaped),
            "a control character reached a cell: {row:?}"
        );
    }
}

#[test]
fn enter_sends_alt_enter_and_ctrl_j_break_lines_and_typing_is_announced() {
    let mut src = empty();
    src.view.conversations = vec![summary("bob@beta.test")];
    let bob = uid("bob@beta.test");
    let mut app = new_app();
    draw(&mut app, &mut src, 80, 24);
    key(&mut app, &mut src, KeyCode::Enter); // nothing to send
    typed(&mut app, &mut src, "hi");
    press(&mut app, &mut src, KeyCode::Enter, KeyModifiers::ALT);
    typed(&mut app, &mut src, "there");
    press(
        &mut app,
        &mut src,
        KeyCode::Char('j'),
        KeyModifiers::CONTROL,
    );
    typed(&mut app, &mut src, "x");
    key(&mut app, &mut src, KeyCode::Backspace);
    let rows = draw(&mut app, &mut src, 80, 24);
    assert!(has(&rows, "there"), "{rows:#?}");
    key(&mut app, &mut src, KeyCode::Enter);
    assert_eq!(
        src.commands,
        vec![
            typing_to(bob.clone(), true),
            typing_to(bob.clone(), false),
            Command::SendText {
                to: Chat::User(bob.clone()),
                body: "hi\nthere\n".into()
            },
        ]
    );
    // "//" sends a text that starts with "/".
    src.commands.clear();
    enter(&mut app, &mut src, "//me waves");
    assert!(src.commands.contains(&Command::SendText {
        to: Chat::User(bob.clone()),
        body: "/me waves".into()
    }));
}

#[test]
fn typing_ends_after_a_pause_and_when_the_line_is_emptied() {
    let mut src = empty();
    src.view.conversations = vec![summary("bob@beta.test")];
    let bob = uid("bob@beta.test");
    let mut app = new_app();
    draw(&mut app, &mut src, 80, 24);
    let t0 = Instant::now();
    app.on_event(Event::Key(KeyEvent::from(KeyCode::Char('a'))), &mut src, t0);
    app.tick(&mut src, t0 + Duration::from_secs(1));
    assert_eq!(src.commands.len(), 1);
    app.tick(&mut src, t0 + Duration::from_secs(6));
    assert_eq!(
        src.commands,
        vec![typing_to(bob.clone(), true), typing_to(bob.clone(), false),]
    );
    src.commands.clear();
    app.on_event(Event::Key(KeyEvent::from(KeyCode::Char('b'))), &mut src, t0);
    app.on_event(Event::Key(KeyEvent::from(KeyCode::Backspace)), &mut src, t0);
    app.on_event(Event::Key(KeyEvent::from(KeyCode::Backspace)), &mut src, t0);
    assert_eq!(
        src.commands,
        vec![typing_to(bob.clone(), true), typing_to(bob, false),]
    );
}

#[test]
fn tab_ctrl_n_ctrl_p_and_arrows_switch_conversations() {
    let mut src = busy();
    let mut app = new_app();
    draw(&mut app, &mut src, 80, 24);
    assert_eq!(app.selected, Some(user("bob@beta.test")));
    key(&mut app, &mut src, KeyCode::Tab);
    assert_eq!(app.selected, Some(user("carol@gamma.test")));
    press(
        &mut app,
        &mut src,
        KeyCode::Char('n'),
        KeyModifiers::CONTROL,
    );
    // dave has only a request: opening it asks the core for the conversation.
    assert_eq!(app.selected, Some(user("dave@delta.test")));
    assert!(
        src.commands
            .contains(&Command::Open(user("dave@delta.test")))
    );
    key(&mut app, &mut src, KeyCode::Down);
    assert_eq!(app.selected, Some(user("bob@beta.test")));
    key(&mut app, &mut src, KeyCode::Up);
    assert_eq!(app.selected, Some(user("dave@delta.test")));
    press(
        &mut app,
        &mut src,
        KeyCode::Char('p'),
        KeyModifiers::CONTROL,
    );
    key(&mut app, &mut src, KeyCode::BackTab);
    assert_eq!(app.selected, Some(user("bob@beta.test")));
    let rows = draw(&mut app, &mut src, 80, 24);
    assert!(has(&rows, "hello bob"));
}

#[test]
fn slash_commands_become_core_commands() {
    let mut src = busy();
    src.view.approvals = vec![PendingApproval {
        new_dek: DekPublic::from_bytes([7; 32]),
        name: Some("laptop".into()),
        code: Some("913 163".into()),
    }];
    src.safety = Some("12345 67890".into());
    let mut app = new_app();
    draw(&mut app, &mut src, 80, 24);
    src.commands.clear();
    let (bob, dave, eve) = (
        uid("bob@beta.test"),
        uid("dave@delta.test"),
        uid("eve@evil.test"),
    );

    enter(&mut app, &mut src, "/chat dave@delta.test");
    assert_eq!(app.selected, Some(Chat::User(dave.clone())));
    enter(&mut app, &mut src, "/accept");
    enter(&mut app, &mut src, "/refuse eve@evil.test");
    enter(&mut app, &mut src, "/block eve@evil.test");
    enter(&mut app, &mut src, "/unblock eve@evil.test");
    enter(&mut app, &mut src, "/chat bob@beta.test");
    enter(&mut app, &mut src, "/file /tmp/a file.txt");
    enter(&mut app, &mut src, "/receipts off");
    enter(&mut app, &mut src, "/verify");
    let rows = draw(&mut app, &mut src, 80, 24);
    assert!(has(&rows, "12345 67890"), "{rows:#?}");
    key(&mut app, &mut src, KeyCode::Char('y'));
    enter(&mut app, &mut src, "/approve");
    let rows = draw(&mut app, &mut src, 80, 24);
    assert!(has(&rows, "913 163") && has(&rows, "laptop"), "{rows:#?}");
    key(&mut app, &mut src, KeyCode::Char('y'));
    assert_eq!(
        src.commands,
        vec![
            Command::Open(Chat::User(dave.clone())),
            Command::AcceptContact(dave),
            Command::Block(eve.clone()),
            Command::Block(eve.clone()),
            Command::Unblock(eve),
            Command::SendFile {
                to: Chat::User(bob.clone()),
                path: "/tmp/a file.txt".into()
            },
            Command::SetReadReceipts(false),
            Command::ShowSafetyNumber(bob.clone()),
            Command::MarkVerified(bob),
            Command::AnswerApproval {
                new_dek: DekPublic::from_bytes([7; 32]),
                approve: true
            },
        ]
    );
    enter(&mut app, &mut src, "/quit");
    assert!(app.quit);
}

#[test]
fn verification_and_approval_need_something_to_compare() {
    let mut src = busy();
    let new_dek = DekPublic::from_bytes([7; 32]);
    src.view.approvals = vec![PendingApproval {
        new_dek,
        name: None,
        code: None,
    }];
    let mut app = new_app();
    draw(&mut app, &mut src, 80, 24);
    src.commands.clear();
    // No safety number known: y verifies nothing.
    enter(&mut app, &mut src, "/verify");
    let rows = draw(&mut app, &mut src, 80, 24);
    assert!(has(&rows, "not known yet"), "{rows:#?}");
    key(&mut app, &mut src, KeyCode::Char('y'));
    assert!(
        !src.commands
            .iter()
            .any(|c| matches!(c, Command::MarkVerified(_)))
    );
    // No code yet: y approves nothing and the window stays; Esc leaves it for later.
    enter(&mut app, &mut src, "/approve");
    assert!(has(
        &draw(&mut app, &mut src, 80, 24),
        "Waiting for the code"
    ));
    key(&mut app, &mut src, KeyCode::Char('y'));
    assert!(matches!(app.popup, Some(Popup::Approve { .. })));
    key(&mut app, &mut src, KeyCode::Esc);
    assert!(app.popup.is_none());
    // Any key but y denies (y/N).
    enter(&mut app, &mut src, "/approve");
    key(&mut app, &mut src, KeyCode::Char('n'));
    assert_eq!(
        src.commands,
        vec![
            Command::ShowSafetyNumber(uid("bob@beta.test")),
            Command::AnswerApproval {
                new_dek,
                approve: false
            },
        ]
    );
    // Nothing pending: said so.
    src.view.approvals.clear();
    enter(&mut app, &mut src, "/approve");
    assert!(has(
        &draw(&mut app, &mut src, 80, 24),
        "no new device is waiting"
    ));
}

#[test]
fn save_takes_the_last_complete_received_file() {
    let mut src = busy();
    let bob = uid("bob@beta.test");
    let mut app = new_app();
    draw(&mut app, &mut src, 80, 24);
    src.commands.clear();
    enter(&mut app, &mut src, "/save");
    assert!(has(
        &draw(&mut app, &mut src, 80, 24),
        "photo.jpg is not complete yet (3/10)"
    ));
    let file = FileId::from_bytes([11; 16]);
    let done = Body::File {
        file,
        name: "done.txt".into(),
        size: 5,
        progress: FileProgress::Complete,
    };
    src.msgs
        .get_mut(&Chat::User(bob.clone()))
        .unwrap()
        .push(msg(11, "bob@beta.test", false, done, MessageState::Seen));
    enter(&mut app, &mut src, "/save");
    assert_eq!(src.commands, vec![Command::SaveFile(file)]);
    let saved = Body::File {
        file,
        name: "done.txt".into(),
        size: 5,
        progress: FileProgress::Saved {
            path: "/dl/done.txt".into(),
        },
    };
    src.msgs
        .get_mut(&Chat::User(bob.clone()))
        .unwrap()
        .last_mut()
        .unwrap()
        .body = saved;
    let rows = draw(&mut app, &mut src, 80, 24);
    assert!(has(&rows, "saved to /dl/done.txt"), "{rows:#?}");
}

#[test]
fn bad_commands_are_explained_in_the_status_line_and_the_text_is_kept() {
    let mut src = busy();
    let mut app = new_app();
    draw(&mut app, &mut src, 80, 24);
    src.commands.clear();
    enter(&mut app, &mut src, "/frobnicate now");
    let rows = draw(&mut app, &mut src, 80, 24);
    assert!(
        has(&rows, "unknown command /frobnicate; F1 lists them"),
        "{rows:#?}"
    );
    assert_eq!(app.compose.text(), "/frobnicate now");
    app.compose.take();
    enter(&mut app, &mut src, "/chat bob@");
    let rows = draw(&mut app, &mut src, 80, 24);
    assert!(
        has(&rows, "bob@ is not a user id (name@server)"),
        "{rows:#?}"
    );
    app.compose.take();
    // Without `@`, a group: none of that name here.
    enter(&mut app, &mut src, "/chat bob");
    let rows = draw(&mut app, &mut src, 80, 24);
    assert!(has(&rows, "no group \"bob\" on this device"), "{rows:#?}");
    app.compose.take();
    key(&mut app, &mut src, KeyCode::Esc);
    assert!(app.note.is_none());
    assert!(src.commands.is_empty());

    // Nothing open: a text is not lost, and the status says what to do.
    let mut src = empty();
    let mut app = new_app();
    enter(&mut app, &mut src, "hello");
    let rows = draw(&mut app, &mut src, 80, 24);
    assert!(
        has(&rows, "no conversation open: /chat USER|GROUP opens one"),
        "{rows:#?}"
    );
    assert!(has(&rows, "No conversation open."), "{rows:#?}");
    assert_eq!(app.compose.text(), "hello");
    assert!(src.commands.is_empty());
}

#[test]
fn f1_and_question_mark_on_an_empty_line_show_help() {
    let mut src = busy();
    let mut app = new_app();
    key(&mut app, &mut src, KeyCode::F(1));
    let rows = draw(&mut app, &mut src, 80, 24);
    for needle in [
        "keys and commands",
        "Alt-Enter, Ctrl-J",
        "PgUp",
        "/chat USER",
        "/approve",
        "/receipts on|off",
        "/quit",
    ] {
        assert!(has(&rows, needle), "{needle:?} not in help:\n{rows:#?}");
    }
    key(&mut app, &mut src, KeyCode::Char('x'));
    assert!(app.popup.is_none());
    assert!(
        app.compose.is_empty(),
        "the key that closes help is not typed"
    );
    key(&mut app, &mut src, KeyCode::Char('?'));
    assert_eq!(app.popup, Some(Popup::Help));
    key(&mut app, &mut src, KeyCode::Esc);
    typed(&mut app, &mut src, "why?");
    assert!(app.popup.is_none());
    assert_eq!(app.compose.text(), "why?");
    enter(&mut app, &mut src, "");
    app.compose.take();
    enter(&mut app, &mut src, "/help");
    assert_eq!(app.popup, Some(Popup::Help));
}

#[test]
fn paging_up_to_the_top_asks_for_older_history_once_per_arrival() {
    let mut src = empty();
    let bob = uid("bob@beta.test");
    src.view.conversations = vec![summary("bob@beta.test")];
    let many: Vec<ChatMessage> = (0..60)
        .map(|i| {
            msg(
                i,
                "bob@beta.test",
                false,
                text(&format!("message {i}")),
                MessageState::Seen,
            )
        })
        .collect();
    src.msgs.insert(Chat::User(bob.clone()), many);
    let mut app = new_app();
    let rows = draw(&mut app, &mut src, 80, 24);
    assert!(has(&rows, "message 59") && !has(&rows, "message 0 "));
    key(&mut app, &mut src, KeyCode::PageUp);
    let rows = draw(&mut app, &mut src, 80, 24);
    assert!(!has(&rows, "message 59"), "{rows:#?}");
    assert!(has(&rows, "more rows below (PgDn)"));
    assert!(src.older.is_empty());
    for _ in 0..10 {
        key(&mut app, &mut src, KeyCode::PageUp);
        draw(&mut app, &mut src, 80, 24);
    }
    let rows = draw(&mut app, &mut src, 80, 24);
    assert!(has(&rows, "message 0"), "{rows:#?}");
    assert_eq!(src.older, vec![Chat::User(bob.clone())]);
    // Older messages arrive: the view stays where it was, the next PgUp at the top asks again.
    src.msgs.get_mut(&Chat::User(bob.clone())).unwrap().insert(
        0,
        msg(
            200,
            "bob@beta.test",
            false,
            text("older"),
            MessageState::Seen,
        ),
    );
    draw(&mut app, &mut src, 80, 24);
    key(&mut app, &mut src, KeyCode::PageUp);
    draw(&mut app, &mut src, 80, 24);
    key(&mut app, &mut src, KeyCode::PageUp);
    assert_eq!(src.older, vec![Chat::User(bob.clone()), Chat::User(bob)]);
    for _ in 0..20 {
        key(&mut app, &mut src, KeyCode::PageDown);
    }
    let rows = draw(&mut app, &mut src, 80, 24);
    assert!(has(&rows, "message 59"), "{rows:#?}");
}

#[test]
fn ctrl_c_quits_even_in_a_window() {
    let mut src = busy();
    let mut app = new_app();
    key(&mut app, &mut src, KeyCode::F(1));
    press(
        &mut app,
        &mut src,
        KeyCode::Char('c'),
        KeyModifiers::CONTROL,
    );
    assert!(app.quit);
}

fn typing_to(to: Uid, typing: bool) -> Command {
    Command::SetTyping {
        to: Chat::User(to),
        typing,
    }
}
