//! The screen: the conversation list on the left; on the right the open conversation (a header,
//! its messages, a typing line); under them a banner line (key changes, problems), the status
//! line and the compose box; windows (help, safety number, device approval) over everything.
//!
//! Every string that came from elsewhere goes through [`shown`] or [`shown_lines`] before it
//! reaches a cell. Nothing here indexes by a size: any terminal size, down to 0×0, draws.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph, Wrap};
use siren_api::Uid;
use siren_client_core::model::{
    Banner, Body, Chat, ChatMessage, ConversationSummary, FileProgress, MessageState, View,
};
use siren_proto::message::PresenceStatus;

use super::app::{App, Entry, Popup, entries};
use super::clock::hh_mm;
use super::escape::{shown, shown_lines};
use super::help;
use super::source::ChatSource;
use super::wrap::{Cells, wrap_chars, wrap_words};

/// The compose box grows up to this many rows of text.
const MAX_COMPOSE_ROWS: usize = 5;
/// The conversation list's width on a terminal of 60 columns or more (a third below that).
const LIST_WIDTH: u16 = 24;
/// Continuation lines of a message start this far in (under the text, past "HH:MM ").
const INDENT: &str = "      ";

fn dim() -> Style {
    Style::new().fg(Color::DarkGray)
}

fn bold() -> Style {
    Style::new().add_modifier(Modifier::BOLD)
}

/// Draws the whole screen; records the scroll bounds in `app` for the keys that follow.
pub(crate) fn draw<S: ChatSource>(frame: &mut Frame<'_>, app: &mut App, src: &S) {
    let area = frame.area();
    let view = src.view();
    let (compose_rows, cursor) = compose_rows(app, area.width);
    let compose_height = compose_rows.len().clamp(1, MAX_COMPOSE_ROWS) + 1;
    let banner = banner_line(view, app);
    let [main, banner_area, status_area, compose_area] = Layout::vertical([
        Constraint::Min(0),
        Constraint::Length(u16::from(banner.is_some())),
        Constraint::Length(1),
        Constraint::Length(u16::try_from(compose_height).unwrap_or(2)),
    ])
    .areas(area);
    let list_width = if area.width >= 60 {
        LIST_WIDTH
    } else {
        area.width / 3
    };
    let [list_area, conversation_area] =
        Layout::horizontal([Constraint::Length(list_width), Constraint::Min(0)]).areas(main);

    draw_list(frame, app, view, list_area);
    draw_conversation(frame, app, src, conversation_area);
    if let Some(line) = banner {
        frame.render_widget(Paragraph::new(line), banner_area);
    }
    frame.render_widget(Paragraph::new(status_line(app, src)), status_area);
    draw_compose(frame, app, view, compose_rows, cursor, compose_area);
    match app.popup.clone() {
        Some(Popup::Help) => draw_help(frame, area),
        Some(Popup::Verify { peer }) => draw_verify(frame, src, &peer, area),
        Some(Popup::Approve { new_dek }) => draw_approve(frame, view, &new_dek, area),
        None => {}
    }
}

// ---- the conversation list ---------------------------------------------------------------------

fn presence_mark(p: Option<&PresenceStatus>) -> Span<'static> {
    match p {
        Some(PresenceStatus::Available) => Span::styled("●", Style::new().fg(Color::Green)),
        Some(PresenceStatus::Away) => Span::styled("◐", Style::new().fg(Color::Yellow)),
        Some(PresenceStatus::Busy) => Span::styled("⊖", Style::new().fg(Color::Red)),
        Some(PresenceStatus::Offline) => Span::styled("○", dim()),
        None => Span::raw(" "),
    }
}

fn presence_word(p: &PresenceStatus) -> &'static str {
    match p {
        PresenceStatus::Available => "available",
        PresenceStatus::Away => "away",
        PresenceStatus::Busy => "busy",
        PresenceStatus::Offline => "offline",
    }
}

/// A conversation's name as listed: the roster name if any, else the user id; a group's is
/// `# ` and its title.
fn title(chat: &Chat, summary: Option<&ConversationSummary>) -> String {
    let name = summary.and_then(|s| s.name.as_deref());
    match (chat, name) {
        (Chat::Group(_), Some(name)) => format!("# {}", shown(name)),
        (Chat::Group(g), None) => {
            format!("# {}", siren_client_core::engine::display_name(g, ""))
        }
        (Chat::User(_), Some(name)) => shown(name),
        (Chat::User(uid), None) => shown(&uid.to_string()),
    }
}

fn list_line(e: &Entry<'_>) -> Line<'static> {
    let s = e.summary;
    let mut spans = vec![
        presence_mark(s.and_then(|s| s.presence.as_ref())),
        Span::raw(" "),
        Span::raw(title(&e.chat, s)),
    ];
    if let Some(n) = s.map(|s| s.unread).filter(|n| *n > 0) {
        spans.push(Span::styled(format!(" ({n})"), bold()));
    }
    if e.request {
        spans.push(Span::styled(" ?", bold().fg(Color::Yellow)));
    }
    if s.is_some_and(|s| s.key_changed) {
        spans.push(Span::styled(" !", bold().fg(Color::Red)));
    }
    if s.is_some_and(|s| s.blocked) {
        spans.push(Span::styled(" ⊘", Style::new().fg(Color::Red)));
    }
    Line::from(spans)
}

fn draw_list(frame: &mut Frame<'_>, app: &App, view: &View, area: Rect) {
    let list = entries(view);
    let selected = app
        .selected
        .as_ref()
        .and_then(|s| list.iter().position(|e| e.chat == *s));
    let items: Vec<ListItem<'static>> = list.iter().map(|e| ListItem::new(list_line(e))).collect();
    let widget = List::new(items)
        .block(Block::new().borders(Borders::RIGHT).border_style(dim()))
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    let mut state = ListState::default().with_selected(selected);
    frame.render_stateful_widget(widget, area, &mut state);
}

// ---- the open conversation ---------------------------------------------------------------------

/// A group's header: its title, how many members, and whether this account is still one.
fn group_header(me: &Uid, chat: &Chat, summary: Option<&ConversationSummary>) -> Line<'static> {
    let mut spans = vec![Span::styled(title(chat, summary), bold())];
    match summary.and_then(|s| s.group.as_ref()) {
        Some(g) if g.members.contains(me) => {
            let n = g.members.len();
            spans.push(Span::styled(
                format!(" · {n} member{}", if n == 1 { "" } else { "s" }),
                dim(),
            ));
        }
        Some(_) => spans.push(Span::styled(
            " · you are no longer a member",
            bold().fg(Color::Red),
        )),
        None => {}
    }
    Line::from(spans)
}

fn header_line(peer: &Uid, summary: Option<&ConversationSummary>, request: bool) -> Line<'static> {
    let mut spans = vec![Span::styled(shown(&peer.to_string()), bold())];
    if let Some(s) = summary {
        if let Some(name) = &s.name {
            spans.push(Span::raw(format!(" ({})", shown(name))));
        }
        if let Some(p) = &s.presence {
            spans.push(Span::styled(format!(" · {}", presence_word(p)), dim()));
        }
        if s.key_changed {
            spans.push(Span::styled(
                " · keys changed: /verify",
                bold().fg(Color::Red),
            ));
        } else if s.verified {
            spans.push(Span::styled(" · verified ✓", Style::new().fg(Color::Green)));
        } else {
            spans.push(Span::styled(" · not verified", dim()));
        }
        if s.blocked {
            spans.push(Span::styled(" · blocked", Style::new().fg(Color::Red)));
        }
    }
    if request {
        spans.push(Span::styled(
            " · contact request: /accept or /refuse",
            bold().fg(Color::Yellow),
        ));
    }
    Line::from(spans)
}

fn human_size(size: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if size < 1024 {
        return format!("{size} B");
    }
    let mut value = size as f64 / 1024.0;
    let mut unit = "KiB";
    for next in UNITS.iter().skip(1) {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = next;
    }
    format!("{value:.1} {unit}")
}

/// How far a file got, in words, and in what colour.
fn progress(p: &FileProgress) -> (String, Style) {
    match p {
        FileProgress::Sending { sent, of } => (format!("sending {sent}/{of}"), dim()),
        FileProgress::Sent => ("sent".to_owned(), dim()),
        FileProgress::Receiving { have, of } => (format!("receiving {have}/{of}"), dim()),
        FileProgress::Complete => (
            "received: /save keeps it".to_owned(),
            Style::new().fg(Color::Cyan),
        ),
        FileProgress::Saved { path } => (
            format!("saved to {}", shown(path)),
            Style::new().fg(Color::Green),
        ),
        FileProgress::Failed(why) => (
            format!("failed: {}", shown(why)),
            Style::new().fg(Color::Red),
        ),
    }
}

/// The mark after one of this account's messages.
fn state_mark(state: &MessageState) -> Option<(String, Style)> {
    match state {
        MessageState::Sending => Some(("…".to_owned(), dim())),
        MessageState::Sent => Some(("✓".to_owned(), dim())),
        MessageState::Delivered => Some(("✓✓".to_owned(), Style::new())),
        MessageState::Read => Some(("✓✓ read".to_owned(), Style::new().fg(Color::Green))),
        MessageState::Failed(why) => {
            Some((format!("! failed: {}", shown(why)), bold().fg(Color::Red)))
        }
        MessageState::Unread | MessageState::Seen => None,
    }
}

/// One message as rows of `width` columns.
fn message_rows(m: &ChatMessage, them: &str, app: &App, width: usize) -> Vec<Line<'static>> {
    let mut first = Cells::default();
    first
        .push(&hh_mm(m.at, &app.tz), dim())
        .push(" ", Style::new());
    if let Body::Event(text) = &m.body {
        first.push(
            &format!("* {}", shown(text)),
            dim().add_modifier(Modifier::ITALIC),
        );
        return wrap_words(&first, width);
    }
    if m.outgoing {
        first.push("you", bold().fg(Color::Cyan));
    } else {
        first.push(them, bold().fg(Color::Magenta));
    }
    first.push(": ", Style::new());
    let mut lines = vec![first];
    match &m.body {
        Body::Text(text) => {
            for (i, line) in shown_lines(text).iter().enumerate() {
                if i > 0 {
                    let mut next = Cells::default();
                    next.push(INDENT, Style::new());
                    lines.push(next);
                }
                if let Some(cells) = lines.last_mut() {
                    cells.push(line, Style::new());
                }
            }
        }
        Body::File {
            name,
            size,
            progress: p,
            ..
        } => {
            let (what, style) = progress(p);
            if let Some(cells) = lines.last_mut() {
                cells
                    .push("[file] ", bold())
                    .push(&shown(name), Style::new())
                    .push(&format!(" ({}) ", human_size(*size)), dim())
                    .push(&what, style);
            }
        }
        Body::Deleted => {
            if let Some(cells) = lines.last_mut() {
                cells.push("message deleted", dim().add_modifier(Modifier::ITALIC));
            }
        }
        Body::Unsupported(kind) => {
            if let Some(cells) = lines.last_mut() {
                cells.push(
                    &format!("unsupported message ({})", shown(kind)),
                    dim().add_modifier(Modifier::ITALIC),
                );
            }
        }
        Body::Event(_) => {}
    }
    if let Some(cells) = lines.last_mut() {
        if m.edited {
            cells.push(" (edited)", dim());
        }
        if m.outgoing
            && let Some((mark, style)) = state_mark(&m.state)
        {
            cells.push(" ", Style::new()).push(&mark, style);
        }
    }
    lines.iter().flat_map(|c| wrap_words(c, width)).collect()
}

fn draw_conversation<S: ChatSource>(frame: &mut Frame<'_>, app: &mut App, src: &S, area: Rect) {
    let [header_area, messages_area, typing_area] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(0),
        Constraint::Length(1),
    ])
    .areas(area);
    let view = src.view();
    let Some(chat) = app.selected.clone() else {
        app.max_scroll = 0;
        app.page = usize::from(messages_area.height);
        let welcome = vec![
            Line::styled("No conversation open.", bold()),
            Line::raw("/chat USER starts one (USER is name@server); /chat GROUP opens a group."),
            Line::raw("F1 shows the keys and commands."),
        ];
        frame.render_widget(
            Paragraph::new(welcome).wrap(Wrap { trim: false }),
            Rect {
                y: header_area.y,
                height: area.height,
                ..area
            },
        );
        return;
    };
    let summary = view.conversations.iter().find(|c| c.chat == chat);
    let header = match &chat {
        Chat::User(peer) => {
            let request = view.requests.iter().any(|r| r.from == *peer);
            header_line(peer, summary, request)
        }
        Chat::Group(_) => group_header(&view.me, &chat, summary),
    };
    frame.render_widget(Paragraph::new(header), header_area);

    // In a group, each message says who wrote it.
    let them = match (&chat, summary.and_then(|s| s.name.as_deref())) {
        (Chat::User(_), Some(name)) => shown(name),
        (Chat::User(peer), None) => shown(peer.user().as_str()),
        (Chat::Group(_), _) => String::new(),
    };
    let width = usize::from(messages_area.width);
    let height = usize::from(messages_area.height);
    let rows: Vec<Line<'static>> = src
        .messages(&chat)
        .iter()
        .flat_map(|m| {
            let sender;
            let who = if m.group.is_some() {
                sender = shown(m.peer.user().as_str());
                &sender
            } else {
                &them
            };
            message_rows(m, who, app, width)
        })
        .collect();
    app.page = height;
    app.max_scroll = rows.len().saturating_sub(height);
    app.scroll = app.scroll.min(app.max_scroll);
    let end = rows.len().saturating_sub(app.scroll);
    let start = end.saturating_sub(height);
    let mut shown_rows: Vec<Line<'static>> = vec![Line::raw(""); height - (end - start)];
    shown_rows.extend(rows.get(start..end).unwrap_or_default().iter().cloned());
    frame.render_widget(Paragraph::new(shown_rows), messages_area);

    let typing = if app.scroll > 0 {
        Line::styled(
            format!("↓ {} more rows below (PgDn)", app.scroll),
            Style::new().fg(Color::Yellow),
        )
    } else if summary.is_some_and(|s| s.typing) {
        Line::styled(
            format!("{them} is typing…"),
            dim().add_modifier(Modifier::ITALIC),
        )
    } else {
        Line::raw("")
    };
    frame.render_widget(Paragraph::new(typing), typing_area);
}

// ---- banner, status line, compose box ----------------------------------------------------------

/// The banner to show: a key change first (the open conversation's if there is one), else the
/// newest other banner unless dismissed.
fn banner_line(view: &View, app: &App) -> Option<Line<'static>> {
    let changed: Vec<&Uid> = view
        .banners
        .iter()
        .filter_map(|b| match b {
            Banner::KeyChanged { uid } => Some(uid),
            _ => None,
        })
        .collect();
    let key = changed
        .iter()
        .find(|u| app.selected.as_ref().and_then(Chat::user) == Some(**u))
        .or(changed.first());
    if let Some(uid) = key {
        let uid = shown(&uid.to_string());
        return Some(Line::styled(
            format!(
                "⚠ the keys of {uid} changed: compare the safety number (/verify {uid}) before trusting them"
            ),
            bold().fg(Color::White).bg(Color::Red),
        ));
    }
    let last = view.banners.last()?;
    if app.dismissed.as_ref() == Some(last) {
        return None;
    }
    let (text, style) = match last {
        Banner::Problem(t) => (format!("problem: {}", shown(t)), bold().fg(Color::Red)),
        Banner::Info(t) => (shown(t), Style::new().fg(Color::Cyan)),
        Banner::KeyChanged { .. } => return None,
    };
    Some(Line::from(vec![
        Span::styled(text, style),
        Span::styled(" (Esc hides)", dim()),
    ]))
}

fn status_line<S: ChatSource>(app: &App, src: &S) -> Line<'static> {
    let view = src.view();
    let bar = Style::new().fg(Color::White).bg(Color::DarkGray);
    let mut spans = vec![Span::styled(shown(&src.connection()), bar)];
    let sep = || Span::styled(" · ", bar);
    if let Some(note) = &app.note {
        spans.push(sep());
        let style = if note.error {
            bar.fg(Color::LightRed).add_modifier(Modifier::BOLD)
        } else {
            bar.fg(Color::LightGreen)
        };
        spans.push(Span::styled(shown(&note.text), style));
    } else if !view.approvals.is_empty() {
        spans.push(sep());
        spans.push(Span::styled(
            format!(
                "{} new device(s) of yours waiting: /approve",
                view.approvals.len()
            ),
            bar.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ));
    } else if let Some(r) = view.requests.first() {
        let uid = shown(&r.from.to_string());
        spans.push(sep());
        spans.push(Span::styled(
            format!("contact request from {uid}: /accept {uid} or /refuse {uid}"),
            bar.fg(Color::Yellow).add_modifier(Modifier::BOLD),
        ));
    }
    spans.push(Span::styled(" · F1 help", bar));
    Line::from(spans).style(bar)
}

/// The compose box's text as rows of `width` columns, and the cursor's row and column.
fn compose_rows(app: &App, width: u16) -> (Vec<Line<'static>>, (usize, usize)) {
    let width = usize::from(width);
    let text = app.compose.text();
    let cursor = app.compose.cursor();
    if text.is_empty() {
        let hint = Line::styled("write a message; /chat USER; F1 help", dim());
        return (vec![hint], (0, 0));
    }
    let mut rows = Vec::new();
    let mut at = (0, 0);
    let mut start = 0;
    for line in text.split('\n') {
        let end = start + line.len();
        let here = (start..=end).contains(&cursor).then(|| {
            let before = line.get(..cursor - start).unwrap_or(line);
            shown(before).chars().count()
        });
        let mut cells = Cells::default();
        cells.push(&shown(line), Style::new());
        let (wrapped, cursor_at) = wrap_chars(&cells, width, here);
        if let Some((row, col)) = cursor_at {
            at = (rows.len() + row, col);
        }
        rows.extend(wrapped);
        start = end + 1;
    }
    (rows, at)
}

fn draw_compose(
    frame: &mut Frame<'_>,
    app: &App,
    view: &View,
    rows: Vec<Line<'static>>,
    (row, col): (usize, usize),
    area: Rect,
) {
    let to = match &app.selected {
        Some(Chat::User(peer)) => format!("to {}", shown(&peer.to_string())),
        Some(chat @ Chat::Group(_)) => {
            let summary = view.conversations.iter().find(|c| c.chat == *chat);
            format!("to {}", title(chat, summary))
        }
        None => "no conversation open".to_owned(),
    };
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(dim())
        .title(Span::styled(
            format!(" {to} · Enter sends · Alt-Enter new line "),
            dim(),
        ));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let visible = usize::from(inner.height).max(1);
    let first = (row + 1).saturating_sub(visible);
    let window: Vec<Line<'static>> = rows.into_iter().skip(first).take(visible).collect();
    frame.render_widget(Paragraph::new(window), inner);
    if app.popup.is_none() {
        let x = u16::try_from(col).unwrap_or(u16::MAX);
        let y = u16::try_from(row - first).unwrap_or(u16::MAX);
        if x < inner.width && y < inner.height {
            frame.set_cursor_position(Position::new(inner.x + x, inner.y + y));
        }
    }
}

// ---- windows -----------------------------------------------------------------------------------

/// A rectangle of at most `width`×`height` in the middle of `area`.
fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    }
}

fn window(frame: &mut Frame<'_>, rect: Rect, title: &str, lines: Vec<Line<'static>>) {
    frame.render_widget(Clear, rect);
    let block = Block::bordered().title(Span::styled(format!(" {title} "), bold()));
    frame.render_widget(
        Paragraph::new(lines)
            .block(block)
            .wrap(Wrap { trim: false }),
        rect,
    );
}

fn draw_help(frame: &mut Frame<'_>, area: Rect) {
    let key_width = help::ENTRIES
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0)
        + 2;
    let lines: Vec<Line<'static>> = help::ENTRIES
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                Span::styled(format!("{k:<key_width$}"), bold()),
                Span::raw(*what),
            ])
        })
        .collect();
    let height = u16::try_from(lines.len() + 2).unwrap_or(u16::MAX);
    window(frame, centered(area, 78, height), help::TITLE, lines);
}

fn draw_verify<S: ChatSource>(frame: &mut Frame<'_>, src: &S, peer: &Uid, area: Rect) {
    let uid = shown(&peer.to_string());
    let lines = match src.safety_number(peer) {
        Some(number) => vec![
            Line::raw(format!("Safety number with {uid}:")),
            Line::raw(""),
            Line::styled(shown(&number), bold()),
            Line::raw(""),
            Line::raw("Compare it with theirs, in person or on a call you trust."),
            Line::styled("y: they match, mark verified · any other key: close", dim()),
        ],
        None => vec![
            Line::raw(format!("The keys of {uid} are not known yet.")),
            Line::raw("Try again once a message went through."),
            Line::styled("any key: close", dim()),
        ],
    };
    window(frame, centered(area, 64, 10), "verify", lines);
}

fn draw_approve(
    frame: &mut Frame<'_>,
    view: &View,
    new_dek: &siren_proto::keys::DekPublic,
    area: Rect,
) {
    let Some(a) = view.approvals.iter().find(|a| a.new_dek == *new_dek) else {
        return;
    };
    let name = a.name.as_deref().map_or("(no name)".to_owned(), shown);
    let mut lines = vec![
        Line::raw("A new device wants to join your account:"),
        Line::styled(name, bold()),
        Line::styled(
            format!(
                "key {}",
                crate::fingerprint::fingerprint(new_dek.as_bytes())
            ),
            dim(),
        ),
        Line::raw(""),
    ];
    match &a.code {
        Some(code) => {
            lines.push(Line::from(vec![
                Span::raw("Code: "),
                Span::styled(shown(code), bold().fg(Color::Yellow)),
            ]));
            lines.push(Line::raw(
                "Approve only if the new device shows the same code.",
            ));
            lines.push(Line::styled(
                "y: approve · n or Enter: deny · Esc: later",
                dim(),
            ));
        }
        None => {
            lines.push(Line::raw("Waiting for the code…"));
            lines.push(Line::styled("n or Enter: deny · Esc: later", dim()));
        }
    }
    window(frame, centered(area, 64, 11), "approve a new device", lines);
}
