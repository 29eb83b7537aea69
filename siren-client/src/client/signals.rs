//! Ephemeral signals (PROTOCOL.md §14): a `typing` notice sealed like a message to every live
//! device of a user, handed to the server as a `signal` (delivered only to sessions live at that
//! moment, never queued), and opened on arrival with every check a message gets except the
//! duplicate list: a signal is never acknowledged and its id is not remembered.

use anyhow::{Context as _, bail};
use siren_api::Uid;
use siren_proto::envelope::{Envelope, Sender as EnvSender};
use siren_proto::ids::MessageId;
use siren_proto::message::{ClientMessage, ServerMessage};
use siren_proto::plaintext::Plaintext;

use super::{Client, Event, Received};

impl Client {
    /// Sends `content` (normally [`Plaintext::Typing`]) as an ephemeral signal to every live
    /// device of `to` in the cached verified directory (looked up first when there is none;
    /// when `to` is this account, to its other devices). Returns the number of devices it was
    /// sealed to. The server answers the same whether or not any of them was online; a signal
    /// that finds no live session is dropped, never stored.
    pub async fn send_signal(&mut self, to: &Uid, content: &Plaintext) -> anyhow::Result<usize> {
        let directory = match self.profile.contact(to)?.directory {
            Some(directory) => directory,
            None => self.lookup(to).await?.directory,
        };
        let usk = self.secrets.usk().context("this device has no USK")?;
        let dek = self.secrets.dek().context("not logged in")?;
        let my_dek = dek.public();
        let me = self.uid().clone();
        let recipients: Vec<_> = directory
            .devices()
            .map(|record| record.dek)
            .filter(|d| to != &me || d != &my_dek)
            .collect();
        if recipients.is_empty() {
            return Ok(0);
        }
        let plaintext = content.encode();
        // The same counter as messages, saved before use so it never repeats.
        self.secrets.counter += 1;
        let ctr = self.secrets.counter;
        self.profile.save_secrets(&self.secrets)?;
        let mut rng = siren_proto::os_rng();
        let id = MessageId::random(&mut rng);
        let mut envelopes = Vec::with_capacity(recipients.len());
        for to_dek in &recipients {
            envelopes.push(Envelope::seal(
                EnvSender {
                    uid: &me,
                    usk: &usk,
                    dek: &my_dek,
                },
                to,
                to_dek,
                id,
                ctr,
                &plaintext,
                &mut rng,
            )?);
        }
        let answer = self
            .conn()?
            .request(|rid| ClientMessage::Signal {
                rid,
                msgs: envelopes,
            })
            .await?;
        match answer {
            ServerMessage::Ok { .. } => Ok(recipients.len()),
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
        let content = match Plaintext::decode(&plain) {
            Ok(c) => c,
            Err(e) => {
                return Ok(Some(Event::Refused {
                    from: env.from,
                    reason: format!("unreadable content: {e}"),
                }));
            }
        };
        Ok(Some(Event::Signal(Received {
            from: env.from,
            id: env.id,
            content,
        })))
    }
}
