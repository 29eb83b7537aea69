//! Pending device approvals (PROTOCOL.md §16). The server only relays the exchange between the
//! new device and the user's existing devices; this table limits the relaying to devices of the
//! same user with an approval actually pending, and ends it on grant, denial or timeout.
//!
//! The table is bounded three ways, so that nobody can fill it for everyone else: server-wide,
//! per account (one account cannot take every slot) and per client address (one address cannot
//! either, whatever accounts it uses).

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use siren_api::Username;
use siren_proto::keys::DekPublic;

use crate::admission::AddrKey;

/// Most approvals pending at once on a server.
const MAX_PENDING: usize = 10_000;

/// Why an approval could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// The account has its maximum of devices waiting.
    Account,
    /// The client address has its maximum of devices waiting.
    Address,
    /// The server has its maximum.
    Server,
}

struct Pending {
    user: Username,
    addr: Option<AddrKey>,
}

/// New devices waiting for approval, by their DEK.
pub struct Approvals {
    per_account: AtomicUsize,
    per_address: AtomicUsize,
    pending: Mutex<HashMap<DekPublic, Pending>>,
}

impl Approvals {
    /// A table allowing `per_account` devices per account and `per_address` per client address
    /// to wait at once.
    pub fn new(per_account: usize, per_address: usize) -> Self {
        Approvals {
            per_account: AtomicUsize::new(per_account),
            per_address: AtomicUsize::new(per_address),
            pending: Mutex::new(HashMap::new()),
        }
    }

    /// Changes the bounds (a reload); devices already waiting stay.
    pub fn set_limits(&self, per_account: usize, per_address: usize) {
        self.per_account.store(per_account, Ordering::Relaxed);
        self.per_address.store(per_address, Ordering::Relaxed);
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<DekPublic, Pending>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records that `new_dek` of `user`, connected from `addr`, waits for approval.
    pub fn open(
        &self,
        new_dek: DekPublic,
        user: Username,
        addr: Option<AddrKey>,
    ) -> Result<(), Full> {
        let mut t = self.table();
        if !t.contains_key(&new_dek) {
            if t.len() >= MAX_PENDING {
                return Err(Full::Server);
            }
            if t.values().filter(|p| p.user == user).count()
                >= self.per_account.load(Ordering::Relaxed)
            {
                return Err(Full::Account);
            }
            let per_address = self.per_address.load(Ordering::Relaxed);
            if addr.is_some() && t.values().filter(|p| p.addr == addr).count() >= per_address {
                return Err(Full::Address);
            }
        }
        t.insert(new_dek, Pending { user, addr });
        Ok(())
    }

    /// Whether `new_dek` waits for approval by a device of `user`.
    pub fn is_pending(&self, new_dek: &DekPublic, user: &Username) -> bool {
        self.table().get(new_dek).is_some_and(|p| &p.user == user)
    }

    /// Ends the approval of `new_dek` (granted, denied, timed out, or the device went away).
    pub fn close(&self, new_dek: &DekPublic) {
        self.table().remove(new_dek);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_per_account_and_per_address() {
        let a = Approvals::new(2, 3);
        let alice = Username::parse("alice").unwrap();
        let bob = Username::parse("bob").unwrap();
        let here = Some(AddrKey::V4([192, 0, 2, 1]));
        let there = Some(AddrKey::V4([192, 0, 2, 2]));
        let dek = |b: u8| DekPublic::from_bytes([b; 32]);
        assert_eq!(a.open(dek(1), alice.clone(), here), Ok(()));
        assert_eq!(a.open(dek(2), alice.clone(), there), Ok(()));
        assert_eq!(a.open(dek(3), alice.clone(), there), Err(Full::Account));
        // Re-opening one already pending is not a new one.
        assert_eq!(a.open(dek(2), alice.clone(), there), Ok(()));
        assert_eq!(a.open(dek(4), bob.clone(), here), Ok(()));
        assert_eq!(a.open(dek(5), bob.clone(), here), Ok(()));
        let carol = Username::parse("carol").unwrap();
        assert_eq!(a.open(dek(6), carol.clone(), here), Err(Full::Address));
        assert_eq!(a.open(dek(6), carol, there), Ok(()));
        a.close(&dek(1));
        assert_eq!(a.open(dek(3), alice, there), Ok(()));
    }
}
