//! Pending device approvals (PROTOCOL.md §16). The server only relays the exchange between the
//! new device and the user's existing devices; this table limits the relaying to devices of the
//! same user with an approval actually pending, and ends it on grant, denial or timeout.

use std::collections::HashMap;
use std::sync::Mutex;

use siren_api::Username;
use siren_proto::keys::DekPublic;

/// Most approvals pending at once on a server.
const MAX_PENDING: usize = 10_000;

/// New devices waiting for approval, by their DEK.
#[derive(Default)]
pub struct Approvals {
    pending: Mutex<HashMap<DekPublic, Username>>,
}

impl Approvals {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<DekPublic, Username>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `new_dek` of `user` waits for approval. False if the table is full.
    pub fn open(&self, new_dek: DekPublic, user: Username) -> bool {
        let mut t = self.table();
        if t.len() >= MAX_PENDING && !t.contains_key(&new_dek) {
            return false;
        }
        t.insert(new_dek, user);
        true
    }

    /// Whether `new_dek` waits for approval by a device of `user`.
    pub fn is_pending(&self, new_dek: &DekPublic, user: &Username) -> bool {
        self.table().get(new_dek) == Some(user)
    }

    /// Ends the approval of `new_dek` (granted, denied, timed out, or the device went away).
    pub fn close(&self, new_dek: &DekPublic) {
        self.table().remove(new_dek);
    }
}
