//! How the page's records are sealed before IndexedDB sees them (pure: no browser API, so it is
//! unit-tested natively).
//!
//! * The **lock** (`lock`, the one record in clear): a random salt and the random 32-byte store
//!   key sealed under keys derived from the passphrase — argon2id
//!   ([`siren_client_core::at_rest::passphrase_key`]), then HKDF under
//!   [`BROWSER_LOCK_LABEL`]. A wrong passphrase fails to open it; changing the passphrase would
//!   re-seal only the lock.
//! * Every other record: its **name** (`secrets`, `contact/alice@alpha.test`, …) appears only as
//!   a keyed hash (`r/<hex>`), so the database does not list whom the person talks to; its
//!   **value** is CBOR sealed with XSalsa20-Poly1305 (a random nonce each) under the store key
//!   (HKDF under [`BROWSER_STORE_LABEL`]), and the plaintext starts with the keyed hash of the
//!   record's database key, so a record moved to another key does not open.
//! * The **history** is laid out as `siren`'s `history.redb` is: a message is
//!   `m/<chat tag>/<at, 16 hex digits>/<id tag>` (one conversation is one key range, in the
//!   order it was recorded), `i/<chat tag>/<id tag>` holds when it was first recorded (so a later
//!   state replaces it in place), tags being keyed hashes; values sealed as every record. In
//!   clear, as there: how many conversations and messages, and when each was recorded.

use rand_core::CryptoRng;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use siren_client_core::at_rest::{
    BROWSER_LOCK_LABEL, BROWSER_STORE_LABEL, HistoryKeys, TAG_LEN, passphrase_key,
};
use siren_client_core::model::Chat;
use siren_proto::ids::MessageId;
use zeroize::Zeroizing;

/// The database key of the lock.
pub const LOCK_KEY: &str = "lock";
/// The lock's format.
const LOCK_VERSION: u8 = 1;

/// Why a record could not be sealed or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// The passphrase does not open the lock.
    #[error("wrong passphrase")]
    WrongPassphrase,
    /// A record does not open under the store key, or is not what its key says.
    #[error("the stored {0} is damaged")]
    Damaged(String),
    /// The passphrase could not be stretched.
    #[error("{0}")]
    Kdf(#[from] siren_client_core::at_rest::KdfError),
    /// A value could not be encoded.
    #[error("cannot encode {0}")]
    Encode(String),
}

/// The lock record, as stored (CBOR, not sealed: it holds only the salt and the sealed key).
#[derive(Serialize, Deserialize)]
pub struct Lock {
    /// Its format.
    v: u8,
    /// The argon2id salt.
    salt: [u8; 16],
    /// The store key, sealed.
    sealed: Vec<u8>,
}

impl Lock {
    /// Encodes the lock.
    pub fn to_bytes(&self) -> Result<Vec<u8>, SealError> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out).map_err(|_| SealError::Encode("the lock".into()))?;
        Ok(out)
    }

    /// Decodes a stored lock.
    pub fn from_bytes(bytes: &[u8]) -> Result<Lock, SealError> {
        let lock: Lock =
            ciborium::from_reader(bytes).map_err(|_| SealError::Damaged("lock".into()))?;
        if lock.v != LOCK_VERSION {
            return Err(SealError::Damaged(format!("lock (format {})", lock.v)));
        }
        Ok(lock)
    }
}

/// The keys of an unlocked store.
pub struct Sealer {
    keys: HistoryKeys,
}

impl Sealer {
    /// A new store: a random store key, locked under `passphrase`.
    pub fn create(
        passphrase: &str,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<(Sealer, Lock), SealError> {
        let mut salt = [0u8; 16];
        rng.fill_bytes(&mut salt);
        let mut store_key = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(store_key.as_mut());
        let lock_keys =
            HistoryKeys::derive_for(&*passphrase_key(passphrase, &salt)?, BROWSER_LOCK_LABEL);
        let lock = Lock {
            v: LOCK_VERSION,
            salt,
            sealed: lock_keys.seal(store_key.as_ref(), rng),
        };
        Ok((Sealer::from_store_key(&store_key), lock))
    }

    /// Opens the store `lock` locks with `passphrase`.
    pub fn unlock(lock: &Lock, passphrase: &str) -> Result<Sealer, SealError> {
        let lock_keys = HistoryKeys::derive_for(
            &*passphrase_key(passphrase, &lock.salt)?,
            BROWSER_LOCK_LABEL,
        );
        let opened = lock_keys
            .open(&lock.sealed)
            .map_err(|_| SealError::WrongPassphrase)?;
        let store_key: Zeroizing<[u8; 32]> = Zeroizing::new(
            opened
                .as_slice()
                .try_into()
                .map_err(|_| SealError::Damaged("lock".into()))?,
        );
        Ok(Sealer::from_store_key(&store_key))
    }

    fn from_store_key(store_key: &[u8; 32]) -> Sealer {
        Sealer {
            keys: HistoryKeys::derive_for(store_key, BROWSER_STORE_LABEL),
        }
    }

    /// The database key of the record named `name`.
    pub fn key(&self, name: &str) -> String {
        format!("r/{}", hex::encode(self.keys.name_tag(name)))
    }

    /// The database key prefix of the messages of conversation `chat`.
    pub fn message_prefix(&self, chat: &Chat) -> String {
        format!("m/{}/", hex::encode(self.keys.chat_tag(chat)))
    }

    /// The database key of message `id` of conversation `chat`, first recorded `at`.
    pub fn message_key(&self, chat: &Chat, at: u64, id: &MessageId) -> String {
        format!(
            "{}{at:016x}/{}",
            self.message_prefix(chat),
            hex::encode(self.keys.id_tag(id))
        )
    }

    /// The database key holding when message `id` of conversation `chat` was first recorded.
    pub fn recorded_key(&self, chat: &Chat, id: &MessageId) -> String {
        format!(
            "i/{}/{}",
            hex::encode(self.keys.chat_tag(chat)),
            hex::encode(self.keys.id_tag(id))
        )
    }

    /// Seals `value` to be stored under the database key `key`.
    pub fn seal<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        rng: &mut (impl CryptoRng + ?Sized),
    ) -> Result<Vec<u8>, SealError> {
        let mut plain = Zeroizing::new(self.keys.name_tag(key).to_vec());
        ciborium::into_writer(value, &mut *plain).map_err(|_| SealError::Encode(key.into()))?;
        Ok(self.keys.seal(&plain, rng))
    }

    /// Opens what [`Sealer::seal`] sealed for the database key `key`; `what` names it in errors.
    pub fn open<T: DeserializeOwned>(
        &self,
        key: &str,
        sealed: &[u8],
        what: &str,
    ) -> Result<T, SealError> {
        let damaged = || SealError::Damaged(what.into());
        let plain = self.keys.open(sealed).map_err(|_| damaged())?;
        let (bound, cbor) = plain.split_at_checked(TAG_LEN).ok_or_else(damaged)?;
        if bound != self.keys.name_tag(key) {
            return Err(damaged());
        }
        ciborium::from_reader(cbor).map_err(|_| damaged())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rng() -> impl CryptoRng {
        siren_proto::os_rng()
    }

    #[test]
    fn the_passphrase_opens_the_lock_and_nothing_else_does() {
        let (sealer, lock) = Sealer::create("correct horse", &mut rng()).unwrap();
        let lock = Lock::from_bytes(&lock.to_bytes().unwrap()).unwrap();
        let again = Sealer::unlock(&lock, "correct horse").unwrap();
        let key = sealer.key("secrets");
        assert_eq!(key, again.key("secrets"));
        let sealed = sealer.seal(&key, &42u64, &mut rng()).unwrap();
        assert_eq!(again.open::<u64>(&key, &sealed, "secrets").unwrap(), 42);
        assert!(matches!(
            Sealer::unlock(&lock, "correct horsf"),
            Err(SealError::WrongPassphrase)
        ));
        assert!(Lock::from_bytes(b"not a lock").is_err());
    }

    #[test]
    fn names_are_hidden_and_records_are_bound_to_their_keys() {
        let (sealer, _) = Sealer::create("pw", &mut rng()).unwrap();
        let alice = Chat::User(siren_api::Uid::parse("alice@alpha.test").unwrap());
        let contact = sealer.key(&format!("contact/{alice}"));
        assert!(contact.starts_with("r/") && !contact.contains("alice"));
        let id = MessageId::from_bytes([9; 16]);
        let item = sealer.message_key(&alice, 7, &id);
        assert!(item.starts_with(&sealer.message_prefix(&alice)) && !item.contains("alice"));
        assert!(item.contains("/0000000000000007/"));
        assert!(!sealer.recorded_key(&alice, &id).contains("0909"));

        let sealed = sealer.seal(&contact, "hello alice", &mut rng()).unwrap();
        assert!(!sealed.windows(5).any(|w| w == b"hello"));
        assert_eq!(
            sealer.open::<String>(&contact, &sealed, "contact").unwrap(),
            "hello alice"
        );
        // The same bytes under another key, altered bytes, or another store's key: refused.
        assert!(sealer.open::<String>(&item, &sealed, "item").is_err());
        let mut altered = sealed.clone();
        altered[30] ^= 1;
        assert!(
            sealer
                .open::<String>(&contact, &altered, "contact")
                .is_err()
        );
        let (other, _) = Sealer::create("pw", &mut rng()).unwrap();
        assert!(other.open::<String>(&contact, &sealed, "contact").is_err());
    }
}
