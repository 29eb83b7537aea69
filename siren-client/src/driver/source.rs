//! The driver as the chat UI's [`ChatSource`]: the UI reads the latest snapshot and sends
//! requests; it never waits on the session's work.

use siren_api::Uid;
use siren_client_core::model::{Chat, ChatMessage};
use siren_client_core::{Command, View};

use super::{ChatHandle, Request};
use crate::chat::ChatSource;

impl ChatSource for ChatHandle {
    fn view(&self) -> &View {
        &self.snapshot().view
    }

    fn messages(&self, chat: &Chat) -> &[ChatMessage] {
        self.snapshot()
            .messages
            .get(chat)
            .map_or(&[], |m| m.as_slice())
    }

    fn load_older(&mut self, chat: &Chat) {
        self.request(Request::LoadOlder(chat.clone()));
    }

    fn safety_number(&self, peer: &Uid) -> Option<String> {
        self.snapshot().safety.get(peer).cloned()
    }

    fn connection(&self) -> String {
        self.snapshot().connection.clone()
    }

    fn command(&mut self, cmd: Command) {
        self.request(Request::Command(cmd));
    }

    async fn changed(&mut self) {
        if !ChatHandle::changed(self).await {
            // The driver stopped (the person quit, or it gave up: the last snapshot says why);
            // nothing will change any more.
            std::future::pending::<()>().await;
        }
    }
}
