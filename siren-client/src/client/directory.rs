//! The directory: verified lookups compared with the cache, and revoking one of this account's
//! devices.

use anyhow::{Context as _, bail};
use siren_api::Uid;
use siren_proto::keys::DekPublic;
use siren_proto::message::{ClientMessage, ServerMessage};
use siren_proto::records::{DeviceRevocation, UserDirectory};

use super::{Client, LookupReport, now};

impl Client {
    /// Looks `uid` up, verifies every record against one USK, compares with the cache and
    /// updates it. A changed USK is refused.
    pub async fn lookup(&mut self, uid: &Uid) -> anyhow::Result<LookupReport> {
        let answer = self
            .conn()?
            .request(|rid| ClientMessage::Lookup {
                rid,
                uid: uid.clone(),
            })
            .await?;
        let ServerMessage::Directory { listing, .. } = answer else {
            bail!("unexpected answer to lookup: {answer:?}");
        };
        let mut state = self.profile.contact(uid)?;
        let check = UserDirectory::check_listing(uid, &listing, state.directory.as_ref())
            .map_err(|e| anyhow::anyhow!("the directory of {uid} does not verify: {e}"))?;
        // A device seen removed once is never trusted again, even if the server shows it again.
        if check.added.iter().any(|d| state.revoked.contains(d)) {
            bail!("the server lists a revoked device of {uid} as live again; refusing");
        }
        state.revoked.extend(check.removed.iter().copied());
        for gone in &check.removed {
            state.windows.retain(|(d, _)| d != gone);
        }
        state.directory = Some(check.directory.clone());
        self.profile.save_contact(uid, &state)?;
        Ok(LookupReport {
            directory: check.directory,
            added: check.added,
            removed: check.removed,
        })
    }

    /// Revokes one of this account's devices (signed with the USK).
    pub async fn revoke(&mut self, device: &DekPublic) -> anyhow::Result<()> {
        let usk = self.secrets.usk().context("this device has no USK")?;
        let me = self.uid().clone();
        let own = self.lookup(&me).await?.directory;
        if !own.is_live(device) {
            bail!("that device is not a live device of {me}");
        }
        let head = own.head();
        let revocation = DeviceRevocation::sign(&usk, me, *device, head.seq + 1, head.hash, now());
        self.conn()?
            .request(|rid| ClientMessage::Revoke {
                rid,
                revocation: revocation.clone(),
            })
            .await?;
        Ok(())
    }
}
