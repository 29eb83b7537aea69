//! The task that owns the page's session: it waits for the server's messages and the page's
//! commands at once (the session's `next_server_message` is cancel-safe), so a command never
//! waits for a message to arrive and a message is never lost to a command.

use std::pin::pin;
use std::time::Duration;

use futures_channel::{mpsc, oneshot};
use futures_util::StreamExt as _;
use futures_util::future::{Either, select};
use siren_api::Uid;
use siren_client_session::{ApprovalPrompt, Client, Event, LoginOutcome, Platform as _};
use siren_proto::approval::ShortCode;
use siren_proto::keys::UskPublic;
use siren_proto::message::ServerMessage;
use siren_proto::plaintext::Plaintext;

use crate::platform::Browser;
use crate::store::{Conversation, DeviceStore, HistoryItem};

/// The page's session.
pub type WebSession = Client<DeviceStore, Browser>;

/// An answer to the page: what happened, or why it failed (shown to the person as is).
pub type Reply<T> = oneshot::Sender<Result<T, String>>;

/// What the page asks of the session.
pub enum Command {
    /// Log in with the account's password (the first device of an account only, in this step).
    Login {
        /// The password.
        password: String,
        /// The name the account's other devices see.
        device_name: Option<String>,
        /// How it went.
        reply: Reply<LoginOutcome>,
    },
    /// Send a text.
    SendText {
        /// To whom.
        to: Uid,
        /// What.
        text: String,
        /// The message id (hex) and the number of devices it was sealed to.
        reply: Reply<(String, usize)>,
    },
    /// The conversations, the most recent first.
    Conversations {
        /// The list.
        reply: Reply<Vec<Conversation>>,
    },
    /// A conversation's history, oldest first; marks it read.
    History {
        /// With whom.
        peer: Uid,
        /// Its items.
        reply: Reply<Vec<HistoryItem>>,
    },
}

/// What the session tells the page, besides answers.
#[derive(Debug)]
pub enum Update {
    /// Something arrived.
    Event(Event),
    /// The connection ended (the session stays resumable, and is resumed by itself).
    Disconnected(String),
    /// The connection is back (the session resumed).
    Connected,
    /// Something could not be kept on this device (the browser's storage failed).
    Failed(String),
}

/// Ping the server after this long without traffic (PROTOCOL.md §10.3 asks for 60 s).
const PING_AFTER: Duration = Duration::from_secs(60);
/// The first wait before resuming a lost connection; doubled each failure up to
/// [`BACKOFF_MAX`], reset once connected.
const BACKOFF_START: Duration = Duration::from_secs(1);
/// The longest wait before trying again.
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Runs the session until the page drops its handle. A lost connection is resumed by itself
/// (the session stays the server's), with backoff; commands that need the server fail
/// meanwhile, and say so.
pub async fn run(
    mut client: WebSession,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut update: impl FnMut(Update),
) {
    // The first resumption (a page just unlocked) at once; after a loss, with backoff.
    let mut backoff = Duration::ZERO;
    loop {
        if client.is_connected()
            && let Err(e) = client.flush_acks().await
        {
            client.disconnect();
            update(Update::Disconnected(format!("{e:#}")));
        }
        let logged_in = client.device().is_some();
        let step = if client.is_connected() {
            // The timer borrows nothing: armed first, it can run beside the session's wait.
            let idle = pin!(client.platform().sleep(PING_AFTER));
            let server = pin!(client.next_server_message());
            match select(pin!(commands.next()), select(server, idle)).await {
                Either::Left((command, _)) => Step::Command(command),
                Either::Right((Either::Left((msg, _)), _)) => Step::Server(msg),
                Either::Right((Either::Right(((), _)), _)) => Step::Idle,
            }
        } else if logged_in {
            let wait = pin!(client.platform().sleep(backoff));
            match select(pin!(commands.next()), wait).await {
                Either::Left((command, _)) => Step::Command(command),
                Either::Right(((), _)) => Step::Resume,
            }
        } else {
            Step::Command(commands.next().await)
        };
        match step {
            Step::Command(None) => {
                let _ = client.bye().await;
                return;
            }
            Step::Command(Some(command)) => execute(&mut client, command, &mut update).await,
            Step::Server(Ok(msg)) => match client.handle_server_message(msg).await {
                Ok(Some(event)) => {
                    // Kept before it is acknowledged (at the top of the loop).
                    if let Err(e) = keep(&client, &event).await {
                        update(Update::Failed(format!("{e:#}")));
                    }
                    update(Update::Event(event));
                }
                Ok(None) => {}
                Err(e) => {
                    client.disconnect();
                    update(Update::Disconnected(format!("{e:#}")));
                }
            },
            Step::Server(Err(e)) => {
                client.disconnect();
                update(Update::Disconnected(format!("{e:#}")));
            }
            Step::Idle => {
                if let Err(e) = client.ping().await {
                    client.disconnect();
                    update(Update::Disconnected(format!("{e:#}")));
                }
            }
            Step::Resume => match client.connect().await {
                Ok(()) => {
                    backoff = BACKOFF_START;
                    update(Update::Connected);
                }
                Err(e) => {
                    backoff = (backoff * 2).clamp(BACKOFF_START, BACKOFF_MAX);
                    update(Update::Disconnected(format!(
                        "{e:#}; trying again in {} s",
                        backoff.as_secs()
                    )));
                }
            },
        }
    }
}

/// What the session's task does next.
#[allow(clippy::large_enum_variant)] // one at a time, moved straight into its handler
enum Step {
    Server(anyhow::Result<ServerMessage>),
    Command(Option<Command>),
    /// Nothing for [`PING_AFTER`].
    Idle,
    /// Time to resume the lost connection.
    Resume,
}

async fn execute(client: &mut WebSession, command: Command, update: &mut impl FnMut(Update)) {
    match command {
        Command::Login {
            password,
            device_name,
            reply,
        } => {
            let result = client
                .login(&password, device_name, &mut NoApprovalYet)
                .await;
            let result = match result {
                Ok((outcome, drained)) => {
                    // What the previous DEK's queue still held (a re-login drains it).
                    for event in drained {
                        if let Err(e) = keep(client, &event).await {
                            update(Update::Failed(format!("{e:#}")));
                        }
                        update(Update::Event(event));
                    }
                    Ok(outcome)
                }
                Err(e) => Err(e),
            };
            let _ = reply.send(result.map_err(|e| format!("{e:#}")));
        }
        Command::SendText { to, text, reply } => {
            let result = match client.send_text(&to, &text).await {
                Ok((id, devices)) => {
                    let item = HistoryItem {
                        outgoing: true,
                        id: id.to_string(),
                        at: client.platform().now_millis(),
                        text,
                    };
                    // The server holds it: a failure to keep it here is reported, not a
                    // failure to send.
                    if let Err(e) = client.store().append(&to, &item).await {
                        update(Update::Failed(format!("{e:#}")));
                    }
                    Ok((item.id, devices))
                }
                Err(e) => Err(e),
            };
            let _ = reply.send(result.map_err(|e| format!("{e:#}")));
        }
        Command::Conversations { reply } => {
            let result = client.store().conversations().await;
            let _ = reply.send(result.map_err(|e| format!("{e:#}")));
        }
        Command::History { peer, reply } => {
            let result = match client.store().history(&peer).await {
                Ok(items) => client.store().mark_read(&peer).await.map(|()| items),
                Err(e) => Err(e),
            };
            let _ = reply.send(result.map_err(|e| format!("{e:#}")));
        }
    }
}

/// Keeps what the history shows of `event` (received texts).
async fn keep(client: &WebSession, event: &Event) -> anyhow::Result<()> {
    if let Event::Message(received) = event
        && let Plaintext::Text { body, .. } = &received.content
    {
        let item = HistoryItem {
            outgoing: false,
            id: received.id.to_string(),
            at: client.platform().now_millis(),
            text: body.clone(),
        };
        client.store().append(&received.from, &item).await?;
    }
    Ok(())
}

/// This step logs in only an account's first device (or one that already holds the USK):
/// approving a new browser from another device comes with the page's approval screen.
struct NoApprovalYet;

impl ApprovalPrompt for NoApprovalYet {
    fn show_code(&mut self, _code: ShortCode) {}

    fn confirm(&mut self, _code: ShortCode, _usk: &UskPublic) -> bool {
        false
    }
}
