//! The terminal for the length of a chat: raw mode, the alternate screen and bracketed paste
//! on entry, restored on the way out whatever the way (return, error, panic), and the loop that
//! redraws after every key, every change of the source and every second.

use std::io::Stdout;
use std::sync::Once;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use crossterm::event::{DisableBracketedPaste, EnableBracketedPaste, EventStream};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures_util::StreamExt as _;
use jiff::tz::TimeZone;
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;
use tokio::time::MissedTickBehavior;

use super::app::App;
use super::render;
use super::source::ChatSource;

/// The terminal's output. Everything drawn on it comes through [`render`], which escapes text
/// from elsewhere before it reaches a cell.
#[allow(clippy::disallowed_methods)]
fn stdout() -> Stdout {
    std::io::stdout()
}

/// Puts the terminal back as it was (best effort: this also runs from the panic hook).
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(
        stdout(),
        DisableBracketedPaste,
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// Raw mode and the alternate screen while alive.
struct Screen;

impl Screen {
    fn enter() -> anyhow::Result<Screen> {
        // A panic leaves through the hook before unwinding drops anything: restore there too,
        // so its message lands on a normal screen.
        static HOOK: Once = Once::new();
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                restore();
                previous(info);
            }));
        });
        enable_raw_mode().context("cannot put the terminal in raw mode (is this a terminal?)")?;
        let screen = Screen;
        execute!(stdout(), EnterAlternateScreen, EnableBracketedPaste)
            .context("cannot switch to the alternate screen")?;
        Ok(screen)
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        restore();
    }
}

/// Runs the chat UI on this terminal until the person quits (`/quit`, Ctrl-C) or input ends.
/// The terminal is restored on every way out, errors and panics included.
pub async fn run_chat<S: ChatSource>(mut source: S) -> anyhow::Result<()> {
    let _screen = Screen::enter()?;
    let mut terminal =
        Terminal::new(CrosstermBackend::new(stdout())).context("cannot draw on the terminal")?;
    terminal.clear()?;
    let mut app = App::new(TimeZone::system());
    let mut events = EventStream::new();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        app.sync(&mut source);
        terminal.draw(|frame| render::draw(frame, &mut app, &source))?;
        if app.quit {
            break;
        }
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => app.on_event(event, &mut source, Instant::now()),
                Some(Err(e)) => return Err(e).context("reading the terminal"),
                None => break,
            },
            () = source.changed() => {}
            _ = tick.tick() => app.tick(&mut source, Instant::now()),
        }
    }
    app.finish(&mut source);
    Ok(())
}
