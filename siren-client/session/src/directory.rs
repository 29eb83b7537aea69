//! The directory: verified lookups compared with what the profile remembers, and revoking one of
//! this account's devices.
//!
//! The server is not trusted to show every revocation: the profile remembers each revocation it
//! ever saw (a device gone from a newer listing, one in a listing's `revoked` list, one this
//! device signed), and a listing is refused when it shows such a device as live again, when its
//! head is older than the cached one or forks from it, or when it lists as live a device at or
//! below the cached head that the cache did not show as live (PROTOCOL.md §11).

use anyhow::{Context as _, bail};
use siren_api::Uid;
use siren_proto::keys::DekPublic;
use siren_proto::message::{ClientMessage, ServerMessage};
use siren_proto::records::{DeviceRevocation, DirectoryEntry, DirectoryListing, UserDirectory};

use super::{Client, LookupReport, Platform, Store};
use crate::store::ContactState;
use siren_proto::fingerprint::fingerprint;

/// A listing checked against what the profile remembers about its user, not stored yet.
pub(super) struct Verified {
    uid: Uid,
    state: ContactState,
    pub(super) report: LookupReport,
}

impl<S: Store, P: Platform> Client<S, P> {
    /// Looks `uid` up, verifies every record against one USK, checks the listing against what
    /// the profile remembers (no rollback, fork, key change or revoked device live again) and
    /// updates the cache.
    pub async fn lookup(&mut self, uid: &Uid) -> anyhow::Result<LookupReport> {
        let answer = self
            .request(|rid| ClientMessage::Lookup {
                rid,
                uid: uid.clone(),
            })
            .await?;
        let ServerMessage::Directory { listing, .. } = answer else {
            bail!("unexpected answer to lookup: {answer:?}");
        };
        let verified = self.verify_listing(uid, &listing).await?;
        self.remember(verified).await
    }

    /// Checks a listing of `uid` against the profile's cache of that user.
    pub(super) async fn verify_listing(
        &self,
        uid: &Uid,
        listing: &DirectoryListing,
    ) -> anyhow::Result<Verified> {
        let mut state = self.store.contact(uid).await?;
        let first = state.directory.is_none();
        let check = UserDirectory::check_listing(uid, listing, state.directory.as_ref())
            .map_err(|e| anyhow::anyhow!("the directory of {uid} does not verify: {e}"))?;
        // A device seen revoked once is never trusted again, even if the server shows it again.
        if let Some(back) = check
            .directory
            .devices()
            .find(|r| state.revoked.contains(&r.dek))
        {
            bail!(
                "the server lists device {} of {uid} as live, but this profile saw it revoked: refusing the listing",
                fingerprint(back.dek.as_bytes())
            );
        }
        state.remember_revoked(
            check
                .removed
                .iter()
                .copied()
                .chain(listing.revoked.iter().map(|r| r.dek)),
        );
        for gone in &check.removed {
            state.windows.retain(|(d, _)| d != gone);
        }
        state.directory = Some(check.directory.clone());
        Ok(Verified {
            uid: uid.clone(),
            state,
            report: LookupReport {
                directory: check.directory,
                added: check.added,
                removed: check.removed,
                first,
            },
        })
    }

    /// Stores a verified listing as the cache of its user.
    pub(super) async fn remember(&mut self, verified: Verified) -> anyhow::Result<LookupReport> {
        self.store
            .save_contact(&verified.uid, &verified.state)
            .await?;
        Ok(verified.report)
    }

    /// After this device appended an entry to its own account's chain, the cache follows: a
    /// later listing that leaves the entry out is older than the cache, and a revoked device is
    /// remembered as revoked.
    pub(super) async fn remember_own_entry(&mut self, entry: DirectoryEntry) -> anyhow::Result<()> {
        let me = self.uid().clone();
        let mut state = self.store.contact(&me).await?;
        if let DirectoryEntry::Revoke(r) = &entry {
            state.remember_revoked([r.dek]);
        }
        match (state.directory.as_mut(), entry) {
            // A cache behind the server's chain stays as it is (the entry does not continue
            // it); the next lookup brings it forward.
            (Some(directory), entry) => {
                let _ = directory.apply(entry);
            }
            // The first device's first record starts the cache.
            (None, DirectoryEntry::Add(record)) => {
                state.directory = UserDirectory::genesis(record).ok();
            }
            (None, DirectoryEntry::Revoke(_)) => {}
        }
        self.store.save_contact(&me, &state).await
    }

    /// Remembers that the person compared `uid`'s safety number: the USK of the verified
    /// directory this device holds is marked verified (until the user's USK changes).
    pub async fn mark_verified(&mut self, uid: &Uid) -> anyhow::Result<()> {
        let mut state = self.store.contact(uid).await?;
        state.verified = state.directory.as_ref().map(|d| *d.usk());
        self.store.save_contact(uid, &state).await
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
        let revocation =
            DeviceRevocation::sign(&usk, me, *device, head.seq + 1, head.hash, self.now());
        self.request(|rid| ClientMessage::Revoke {
            rid,
            revocation: revocation.clone(),
        })
        .await?;
        self.remember_own_entry(DirectoryEntry::Revoke(revocation))
            .await
    }
}
