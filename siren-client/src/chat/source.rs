//! What the chat UI needs from the rest of the client: the core's view and messages, the
//! connection line, and a way to ask for things. The driver (connection, history, files)
//! implements it; the UI only reads and asks.

use siren_api::Uid;
use siren_client_core::model::{Chat, ChatMessage};
use siren_client_core::{Command, View};

/// What the chat UI needs from the rest of the client.
///
/// Everything returned here may contain text from other people (names, message bodies, file
/// names, presence texts): the UI escapes it when drawing, an implementation passes it through
/// as it is.
pub trait ChatSource {
    /// The current view (conversations, contacts, requests, approvals, banners, status).
    fn view(&self) -> &View;
    /// Loaded messages of a conversation, oldest first.
    fn messages(&self, chat: &Chat) -> &[ChatMessage];
    /// Ask for older history of a conversation (arrives later through `changed`).
    fn load_older(&mut self, chat: &Chat);
    /// The safety number with `peer` (groups of digits), if its keys are known.
    fn safety_number(&self, peer: &Uid) -> Option<String>;
    /// The connection line: e.g. "connected as alice@example.org", "reconnecting in 4 s (…)".
    fn connection(&self) -> String;
    /// A person's request.
    fn command(&mut self, cmd: Command);
    /// Resolves when something changed (a message, a state, the connection); the UI redraws.
    ///
    /// The UI awaits it inside `tokio::select!` next to key input and a timer, so the future
    /// is dropped whenever something else happens first: it must be cancel-safe (e.g. a
    /// `tokio::sync::Notify` or a `watch` receiver), and it runs on the UI's own task (no `Send`
    /// needed).
    #[allow(async_fn_in_trait)] // awaited on the caller's task: no auto-trait bounds to name
    async fn changed(&mut self);
}
