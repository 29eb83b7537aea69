//! `siren chat`: the interactive terminal UI (ratatui on crossterm). It draws what a
//! [`ChatSource`] shows — the client core's view and messages, the connection — and turns keys
//! and `/commands` into the core's [`Command`](siren_client_core::Command)s; it keeps no chat
//! state of its own.
//!
//! | module | what |
//! |---|---|
//! | [`source`] | the [`ChatSource`] trait the driver implements |
//! | `app` | the UI's own state (open conversation, compose box, scrolling, windows) and keys |
//! | `commands` | `/command` parsing |
//! | `render` | layout and widgets |
//! | `wrap` | text broken into rows as the terminal shows them |
//! | `compose` | the compose box's text and cursor |
//! | `help` | the help screen's content |
//! | `clock` | message times (`HH:MM`, local) |
//! | [`escape`] | text from elsewhere made safe to draw |
//! | `run` | the terminal (raw mode, alternate screen, always restored) and the event loop |

mod app;
mod clock;
mod commands;
mod compose;
pub mod escape;
mod help;
mod render;
mod run;
pub mod source;
mod wrap;

pub use run::run_chat;
pub use source::ChatSource;

#[cfg(test)]
mod tests;
