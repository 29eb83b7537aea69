//! The signed Personal Roster (PROTOCOL.md §15): `roster_get` and `roster_put`.

use siren_api::{Error, ErrorCode, Username};
use siren_proto::message::{RequestId, ServerMessage};
use siren_proto::roster::Roster;

use super::{Outcome, Session};

impl Session {
    pub(super) async fn roster_get(
        &mut self,
        rid: RequestId,
        user: &Username,
    ) -> Result<(), Outcome> {
        match self.shared.rosters.get(user).await {
            Ok(roster) => {
                let roster = roster.map(|r| (*r).clone());
                self.send(&ServerMessage::Roster { rid, roster }).await
            }
            Err(e) => self.error(Some(rid), &e).await,
        }
    }

    pub(super) async fn roster_put(
        &mut self,
        rid: RequestId,
        user: &Username,
        roster: Roster,
    ) -> Result<(), Outcome> {
        let result = match self.shared.directory.get(user).await {
            Ok(Some(dir)) => {
                self.shared
                    .rosters
                    .put(&self.uid(user), dir.usk(), roster)
                    .await
            }
            Ok(None) => Err(Error::new(
                ErrorCode::UnknownDevice,
                "no devices registered",
            )),
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => self.ok(rid).await,
            Err(e) => self.error(Some(rid), &e).await,
        }
    }
}
