use super::*;
use crate::keys::DekSecret;
use crate::testing::TestRng;

fn alice() -> Uid {
    Uid::parse("alice@alpha.test").unwrap()
}

struct User {
    rng: TestRng,
    usk: UskSecret,
}

impl User {
    fn new(seed: u64) -> Self {
        let mut rng = TestRng::seeded(seed);
        let usk = UskSecret::generate(&mut rng);
        User { rng, usk }
    }

    fn record(&mut self, seq: u64, prev: Digest) -> DeviceRecord {
        DeviceRecordDraft {
            uid: alice(),
            dek: DekSecret::generate(&mut self.rng).public(),
            seq,
            prev,
            ts: 1_700_000_000 + seq,
            name: Some(format!("device {seq}")),
        }
        .sign(&self.usk)
    }
}

#[test]
fn chain_grows_and_lists() {
    let mut u = User::new(1);
    let first = u.record(1, Digest::ZERO);
    let mut dir = UserDirectory::genesis(first.clone()).unwrap();
    let second = u.record(2, dir.head().hash);
    dir.apply(DirectoryEntry::Add(second.clone())).unwrap();
    let revoke = DeviceRevocation::sign(&u.usk, alice(), first.dek, 3, dir.head().hash, 5);
    dir.apply(DirectoryEntry::Revoke(revoke)).unwrap();
    assert_eq!(dir.head().seq, 3);
    assert!(!dir.is_live(&first.dek));
    assert!(dir.is_live(&second.dek));
    let listing = dir.listing();
    assert_eq!(listing.records, vec![second.clone()]);
    assert_eq!(listing.revoked.len(), 1);

    // A client with no cache accepts the listing and sees the live device as new.
    let check = UserDirectory::check_listing(&alice(), &listing, None).unwrap();
    assert_eq!(check.added, vec![second.dek]);
    assert_eq!(check.directory, dir);
}

#[test]
fn server_refuses_rollback_fork_and_foreign_keys() {
    let mut u = User::new(2);
    let first = u.record(1, Digest::ZERO);
    let mut dir = UserDirectory::genesis(first.clone()).unwrap();
    let head1 = dir.head();
    dir.apply(DirectoryEntry::Add(u.record(2, head1.hash)))
        .unwrap();

    // Replaying an entry at an old position is a rollback.
    assert!(matches!(
        dir.apply(DirectoryEntry::Add(u.record(2, head1.hash))),
        Err(RecordError::Rollback { have: 2, got: 2 })
    ));
    // Skipping a position, or naming the wrong previous hash, is a fork.
    assert!(matches!(
        dir.apply(DirectoryEntry::Add(u.record(4, dir.head().hash))),
        Err(RecordError::Fork { expected: 3, .. })
    ));
    assert!(matches!(
        dir.apply(DirectoryEntry::Add(u.record(3, head1.hash))),
        Err(RecordError::Fork { expected: 3, .. })
    ));
    // Another USK cannot add devices.
    let mut mallory = User::new(3);
    let forged = mallory.record(3, dir.head().hash);
    assert_eq!(
        dir.apply(DirectoryEntry::Add(forged)),
        Err(RecordError::KeyMismatch)
    );
    // A record whose fields were changed after signing fails.
    let mut edited = u.record(3, dir.head().hash);
    edited.ts += 1;
    assert_eq!(
        dir.apply(DirectoryEntry::Add(edited)),
        Err(RecordError::BadSignature)
    );
    // The genesis must be seq 1 with a zero prev.
    assert_eq!(
        UserDirectory::genesis(u.record(2, Digest::ZERO)),
        Err(RecordError::BadGenesis)
    );
    // Revoking something that is not live.
    let stranger = DekSecret::generate(&mut u.rng).public();
    let r = DeviceRevocation::sign(&u.usk, alice(), stranger, 3, dir.head().hash, 1);
    assert_eq!(
        dir.apply(DirectoryEntry::Revoke(r)),
        Err(RecordError::UnknownDevice)
    );
}

#[test]
fn client_detects_rollback_fork_removal_and_key_change() {
    let mut u = User::new(4);
    let first = u.record(1, Digest::ZERO);
    let mut dir = UserDirectory::genesis(first.clone()).unwrap();
    let old_listing = dir.listing();
    let cached = UserDirectory::check_listing(&alice(), &old_listing, None)
        .unwrap()
        .directory;

    let second = u.record(2, dir.head().hash);
    dir.apply(DirectoryEntry::Add(second.clone())).unwrap();
    let revoke = DeviceRevocation::sign(&u.usk, alice(), first.dek, 3, dir.head().hash, 9);
    dir.apply(DirectoryEntry::Revoke(revoke)).unwrap();
    let new_listing = dir.listing();

    let check = UserDirectory::check_listing(&alice(), &new_listing, Some(&cached)).unwrap();
    assert_eq!(check.added, vec![second.dek]);
    assert_eq!(check.removed, vec![first.dek]);

    // The server later serves the old listing again: rollback.
    assert!(matches!(
        UserDirectory::check_listing(&alice(), &old_listing, Some(&check.directory)),
        Err(RecordError::Rollback { have: 3, got: 1 })
    ));

    // A different chain with the same length: fork.
    let mut other = User::new(4); // same USK, different device keys
    other.rng = TestRng::seeded(99);
    let f1 = other.record(1, Digest::ZERO);
    let forked = UserDirectory::genesis(f1).unwrap().listing();
    assert!(matches!(
        UserDirectory::check_listing(&alice(), &forked, Some(&cached)),
        Err(RecordError::Fork { .. })
    ));

    // A listing under a new USK is a key change the client must not accept silently.
    let mut mallory = User::new(5);
    let m1 = mallory.record(1, Digest::ZERO);
    let mut mdir = UserDirectory::genesis(m1).unwrap();
    for seq in 2..=5 {
        let r = mallory.record(seq, mdir.head().hash);
        mdir.apply(DirectoryEntry::Add(r)).unwrap();
    }
    assert_eq!(
        UserDirectory::check_listing(&alice(), &mdir.listing(), Some(&cached)).err(),
        Some(RecordError::KeyMismatch)
    );
}

#[test]
fn client_refuses_a_revoked_device_listed_live_again() {
    let mut u = User::new(7);
    let first = u.record(1, Digest::ZERO);
    let mut dir = UserDirectory::genesis(first.clone()).unwrap();
    let gone = u.record(2, dir.head().hash);
    dir.apply(DirectoryEntry::Add(gone.clone())).unwrap();
    let revoke = DeviceRevocation::sign(&u.usk, alice(), gone.dek, 3, dir.head().hash, 9);
    dir.apply(DirectoryEntry::Revoke(revoke)).unwrap();
    let later = u.record(4, dir.head().hash);
    dir.apply(DirectoryEntry::Add(later.clone())).unwrap();
    let honest = dir.listing();
    let cached = UserDirectory::check_listing(&alice(), &honest, None)
        .unwrap()
        .directory;
    // The same head, with the revocation left out and the revoked record live again: every
    // entry verifies and the head is among them, but the device cannot come back.
    let mut lie = honest.clone();
    lie.revoked.clear();
    lie.records.push(gone.clone());
    assert!(UserDirectory::check_listing(&alice(), &lie, None).is_ok());
    assert_eq!(
        UserDirectory::check_listing(&alice(), &lie, Some(&cached)).err(),
        Some(RecordError::Resurrected { have: 4, got: 2 })
    );
    // A device registered after the cached head is new, not resurrected.
    let newer = u.record(5, dir.head().hash);
    dir.apply(DirectoryEntry::Add(newer.clone())).unwrap();
    let check = UserDirectory::check_listing(&alice(), &dir.listing(), Some(&cached)).unwrap();
    assert_eq!(check.added, vec![newer.dek]);
}

#[test]
fn listing_must_be_self_consistent() {
    let mut u = User::new(6);
    let first = u.record(1, Digest::ZERO);
    let mut dir = UserDirectory::genesis(first).unwrap();
    dir.apply(DirectoryEntry::Add(u.record(2, dir.head().hash)))
        .unwrap();
    let good = dir.listing();

    let mut no_head = good.clone();
    no_head.head.seq = 7;
    assert!(UserDirectory::check_listing(&alice(), &no_head, None).is_err());

    let mut bad_hash = good.clone();
    bad_hash.head.hash = Digest::ZERO;
    assert!(UserDirectory::check_listing(&alice(), &bad_hash, None).is_err());

    let mut mixed = good.clone();
    let mut mallory = User::new(7);
    mixed.records.push(mallory.record(1, Digest::ZERO));
    assert_eq!(
        UserDirectory::check_listing(&alice(), &mixed, None).err(),
        Some(RecordError::KeyMismatch)
    );

    let bob = Uid::parse("bob@alpha.test").unwrap();
    assert!(matches!(
        UserDirectory::check_listing(&bob, &good, None),
        Err(RecordError::WrongUser { .. })
    ));

    let empty = DirectoryListing {
        records: vec![],
        ..good
    };
    assert!(UserDirectory::check_listing(&alice(), &empty, None).is_err());
}

#[test]
fn directory_state_round_trips_through_the_cbor_profile() {
    let mut u = User::new(8);
    let first = u.record(1, Digest::ZERO);
    let mut dir = UserDirectory::genesis(first).unwrap();
    dir.apply(DirectoryEntry::Add(u.record(2, dir.head().hash)))
        .unwrap();
    let bytes = crate::message::encode_value(&dir);
    let back: UserDirectory = crate::message::decode_value(&bytes).unwrap();
    assert_eq!(back, dir);
}
