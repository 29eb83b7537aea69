//! The Personal Roster (PROTOCOL.md §15): read it verified, sign the next version.
//!
//! The server is not trusted to return the newest version: the profile keeps the highest
//! (version, hash) it has seen, refuses an older or a different roster, and so never signs an
//! edit on top of an old one (which would silently undo a block).

use anyhow::{Context as _, bail};
use siren_api::Uid;
use siren_proto::message::{ClientMessage, ServerMessage};
use siren_proto::roster::{Contact, Roster};

use super::{Client, Platform, Store};
use crate::store::RosterSeen;

impl<S: Store, P: Platform> Client<S, P> {
    /// The account's roster as stored on the server, verified against this device's USK (the
    /// server cannot forge one).
    pub async fn roster(&mut self) -> anyhow::Result<Option<Roster>> {
        let answer = self.request(|rid| ClientMessage::RosterGet { rid }).await?;
        let ServerMessage::Roster { roster, .. } = answer else {
            bail!("unexpected answer to roster_get: {answer:?}");
        };
        let seen = self.store.roster_seen().await?;
        let Some(roster) = roster else {
            if let Some(seen) = seen {
                bail!(
                    "the server has no roster for {}, but this device saw version {}: refusing (a rollback)",
                    self.uid(),
                    seen.version
                );
            }
            return Ok(None);
        };
        let usk = self.secrets.usk().context("this device has no USK")?;
        if &roster.uid != self.uid() || roster.usk != usk.public() {
            bail!("the server returned a roster that is not this account's");
        }
        roster
            .verify()
            .map_err(|e| anyhow::anyhow!("the stored roster does not verify: {e}"))?;
        let got = RosterSeen {
            version: roster.version,
            hash: roster.hash(),
        };
        match seen {
            Some(seen) if got.version < seen.version => bail!(
                "the server returned roster version {}, older than version {} this device saw: refusing (a rollback)",
                got.version,
                seen.version
            ),
            Some(seen) if got.version == seen.version && got.hash != seen.hash => bail!(
                "the server returned a roster version {} that differs from the version {} this device saw: refusing (a fork)",
                got.version,
                seen.version
            ),
            Some(seen) if seen == got => {}
            _ => self.store.save_roster_seen(&got).await?,
        }
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
            self.now(),
            contacts,
            blocked,
        );
        self.request(|rid| ClientMessage::RosterPut {
            rid,
            roster: next.clone(),
        })
        .await?;
        self.store
            .save_roster_seen(&RosterSeen {
                version: next.version,
                hash: next.hash(),
            })
            .await?;
        Ok(next)
    }
}
