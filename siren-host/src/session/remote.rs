//! Requests another server answers (a `lookup` of one of its users), run beside the session
//! loop: the session keeps answering its other requests (`ping` included) meanwhile, and each
//! such request ends within `[federation] request_timeout_secs` (PROTOCOL.md §17). Their answers
//! may therefore come after the answers of later requests.

use siren_api::Uid;
use siren_api::federation::Direction;
use siren_proto::message::{RequestId, ServerMessage};
use tokio::task::JoinSet;

use super::Session;

/// Most requests to other servers one session has running; beyond this it stops reading.
const MAX_RUNNING: usize = 8;

/// The running requests to other servers, each ending in the answer to send. The set is made
/// when the first starts and dropped when the last ends (a `JoinSet` allocates when made, and
/// most sessions never ask another server anything).
#[derive(Default)]
pub(super) struct Remote {
    running: Option<JoinSet<ServerMessage>>,
}

impl Remote {
    /// Whether the session should wait for answers before reading more requests.
    pub(super) fn is_full(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| r.len() >= MAX_RUNNING)
    }

    /// The next answer ready (pending forever while nothing runs, for `select!`).
    pub(super) async fn next(&mut self) -> Option<ServerMessage> {
        let Some(running) = self.running.as_mut().filter(|r| !r.is_empty()) else {
            return std::future::pending().await;
        };
        let next = running.join_next().await;
        if running.is_empty() {
            self.running = None;
        }
        match next {
            Some(Ok(answer)) => Some(answer),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "a request to another server failed");
                None
            }
            None => None,
        }
    }
}

impl Session {
    /// Starts looking `uid` (a user of another server) up over the link to its server.
    pub(super) fn lookup_remote(&mut self, rid: RequestId, uid: Uid) {
        let shared = self.shared.clone();
        let running = self.remote.running.get_or_insert_with(JoinSet::new);
        running.spawn(async move {
            let proxied = match shared
                .remote_allowed(uid.server(), Direction::Outbound)
                .await
            {
                Ok(()) => shared.links.lookup(&uid).await,
                Err(e) => Err(e),
            };
            match proxied {
                Ok(listing) => ServerMessage::Directory { rid, listing },
                Err(e) => ServerMessage::Error {
                    rid: Some(rid),
                    code: e.code.as_u16(),
                    msg: e.message,
                },
            }
        });
    }
}
