//! Ephemeral signals (PROTOCOL.md §14): a `typing` notice sealed like a message to every live
//! device of a user, handed to the server as a `signal` (delivered only to sessions live at that
//! moment, never queued), and opened on arrival with every check a message gets except the
//! duplicate list: a signal is never acknowledged and its id is not remembered.

use anyhow::bail;
use siren_api::Uid;
use siren_proto::envelope::Envelope;
use siren_proto::ids::MessageId;
use siren_proto::message::{ClientMessage, ServerMessage};
use siren_proto::plaintext::Plaintext;

use super::messages::decoded;
use super::{Client, Event, Platform, Store};

impl<S: Store, P: Platform> Client<S, P> {
    /// Sends `content` (normally [`Plaintext::Typing`]) as an ephemeral signal to every live
    /// device of `to` in the cached verified directory (looked up first when there is none;
    /// when `to` is this account, to its other devices). Returns the number of devices it was
    /// sealed to. The server answers the same whether or not any of them was online; a signal
    /// that finds no live session is dropped, never stored.
    pub async fn send_signal(&mut self, to: &Uid, content: &Plaintext) -> anyhow::Result<usize> {
        let directory = match self.store.contact(to).await?.directory {
            Some(directory) => directory,
            None => self.lookup(to).await?.directory,
        };
        let plaintext = content.encode();
        let id = MessageId::random(&mut siren_proto::os_rng());
        // The same counter as messages.
        let envelopes = self.seal_to_devices(to, &directory, id, &plaintext).await?;
        if envelopes.is_empty() {
            return Ok(0);
        }
        let n = envelopes.len();
        let answer = self
            .request(|rid| ClientMessage::Signal {
                rid,
                msgs: envelopes,
            })
            .await?;
        match answer {
            ServerMessage::Ok { .. } => Ok(n),
            other => bail!("unexpected answer to signal: {other:?}"),
        }
    }

    /// Opens a signal: verified like a message (sender, signature, replay window), but not
    /// added to the list of seen ids.
    pub(super) async fn receive_signal(&mut self, env: Envelope) -> anyhow::Result<Option<Event>> {
        let plain = match self.open_verified(&env).await? {
            Ok(plain) => plain,
            Err(reason) => {
                return Ok(Some(Event::Refused {
                    from: env.from,
                    reason,
                }));
            }
        };
        Ok(Some(decoded(env.from, env.id, &plain, Event::Signal)))
    }
}
