//! The Personal Roster (PROTOCOL.md §15): read it verified, sign the next version.

use anyhow::{Context as _, bail};
use siren_api::Uid;
use siren_proto::message::{ClientMessage, ServerMessage};
use siren_proto::roster::{Contact, Roster};

use super::{Client, now};

impl Client {
    /// The account's roster as stored on the server, verified against this device's USK (the
    /// server cannot forge one).
    pub async fn roster(&mut self) -> anyhow::Result<Option<Roster>> {
        let answer = self
            .conn()?
            .request(|rid| ClientMessage::RosterGet { rid })
            .await?;
        let ServerMessage::Roster { roster, .. } = answer else {
            bail!("unexpected answer to roster_get: {answer:?}");
        };
        let Some(roster) = roster else {
            return Ok(None);
        };
        let usk = self.secrets.usk().context("this device has no USK")?;
        if &roster.uid != self.uid() || roster.usk != usk.public() {
            bail!("the server returned a roster that is not this account's");
        }
        roster
            .verify()
            .map_err(|e| anyhow::anyhow!("the stored roster does not verify: {e}"))?;
        Ok(Some(roster))
    }

    /// Changes the roster: `edit` gets the contacts and the block list; the result is signed as
    /// the next version and stored.
    pub async fn edit_roster(
        &mut self,
        edit: impl FnOnce(&mut Vec<Contact>, &mut Vec<Uid>) -> anyhow::Result<()>,
    ) -> anyhow::Result<Roster> {
        let current = self.roster().await?;
        let (mut contacts, mut blocked) = current
            .as_ref()
            .map(|r| (r.contacts.clone(), r.blocked.clone()))
            .unwrap_or_default();
        edit(&mut contacts, &mut blocked)?;
        let usk = self.secrets.usk().context("this device has no USK")?;
        let next = Roster::sign_next(
            &usk,
            self.uid().clone(),
            current.as_ref(),
            now(),
            contacts,
            blocked,
        );
        self.conn()?
            .request(|rid| ClientMessage::RosterPut {
                rid,
                roster: next.clone(),
            })
            .await?;
        Ok(next)
    }
}
