//! Checks that what a store holds survives closing it (dropping the store value) and opening it
//! again on the same data, through a [`PersistentBackend`].
//!
//! Synced writes are reopened without a flush; where an acknowledgement (which need not be
//! synced) must survive, the store is flushed first, as the host does at shutdown.

use siren_api::ErrorCode;
use siren_api::storage::{
    Account, AccountStore, DirectoryStore, QueueStore, RosterStore, SessionRecord, SessionStore,
    Storage,
};

use crate::PersistentBackend;
use crate::sample::{device, entry, item, ok, refused, roster, user};

/// Accounts survive a reopen, and a deleted one stays deleted.
pub async fn reopen_keeps_accounts<B: PersistentBackend>(backend: &B) {
    let alice = Account {
        user: user("alice"),
        created: 17,
        credential: Some("$argon2id$secret".into()),
        credential_stamp: 0x8000_0000_0000_0001,
    };
    let bob = Account {
        user: user("bob"),
        created: 18,
        credential: None,
        credential_stamp: 0,
    };
    let store = backend.open().await;
    ok(store.put_account(&alice).await, "put_account");
    ok(store.put_account(&bob).await, "put_account");
    ok(
        store
            .put_account(&Account {
                user: user("carol"),
                created: 19,
                credential: None,
                credential_stamp: 3,
            })
            .await,
        "put_account",
    );
    assert!(ok(
        store.delete_account(&user("carol")).await,
        "delete_account"
    ));
    drop(store);

    let store = backend.open().await;
    assert_eq!(
        ok(store.account(&user("alice")).await, "account"),
        Some(alice)
    );
    assert_eq!(ok(store.account(&user("bob")).await, "account"), Some(bob));
    assert_eq!(ok(store.account(&user("carol")).await, "account"), None);
    assert_eq!(
        ok(store.list_accounts().await, "list_accounts"),
        vec![user("alice"), user("bob")]
    );
}

/// Directory chains survive a reopen, and the append rules continue from where they were.
pub async fn reopen_keeps_directory<B: PersistentBackend>(backend: &B) {
    let alice = user("alice");
    let store = backend.open().await;
    let chain: Vec<_> = (1..=3).map(|seq| entry(seq, format!("e{seq}"))).collect();
    for e in &chain {
        ok(store.append_entry(&alice, e).await, "append_entry");
    }
    drop(store);

    let store = backend.open().await;
    assert_eq!(ok(store.entries(&alice).await, "entries"), chain);
    refused(
        store.append_entry(&alice, &entry(3, "fork")).await,
        ErrorCode::Rollback,
        "a second entry 3 after reopening",
    );
    refused(
        store.append_entry(&alice, &entry(1, "fork")).await,
        ErrorCode::Rollback,
        "a second entry 1 after reopening",
    );
    ok(
        store.append_entry(&alice, &entry(4, "e4")).await,
        "append_entry 4",
    );
    assert_eq!(ok(store.entries(&alice).await, "entries").len(), 4);
}

/// Queue items survive a reopen with their numbers, expiry and bytes (acknowledged ones stay
/// gone once flushed); the expiry index survives too; new numbers are higher than every
/// surviving one.
pub async fn reopen_keeps_queue<B: PersistentBackend>(backend: &B) {
    let store = backend.open().await;
    let a: Vec<u64> = ok(
        store
            .enqueue(
                &(0..5u8)
                    .map(|i| item(1, 100 + u64::from(i), vec![i]))
                    .collect::<Vec<_>>(),
            )
            .await,
        "enqueue",
    );
    let b = ok(
        store
            .enqueue(&[item(2, 500, "b0"), item(2, 600, "b1")])
            .await,
        "enqueue",
    );
    assert_eq!(ok(store.ack(&device(1), &[a[1]]).await, "ack"), 1);
    ok(store.flush().await, "flush");
    let before_a = ok(store.pending(&device(1), 0, 100).await, "pending");
    let before_b = ok(store.pending(&device(2), 0, 100).await, "pending");
    assert_eq!(before_a.len(), 4);
    drop(store);

    let store = backend.open().await;
    assert_eq!(
        ok(store.pending(&device(1), 0, 100).await, "pending"),
        before_a
    );
    assert_eq!(
        ok(store.pending(&device(2), 0, 100).await, "pending"),
        before_b
    );
    assert_eq!(ok(store.count(&device(1)).await, "count"), 4);

    let highest_a = before_a.iter().map(|i| i.seq).max().unwrap_or(0);
    let new_a = ok(store.enqueue(&[item(1, 900, "new")]).await, "enqueue")[0];
    assert!(
        new_a > highest_a,
        "new number {new_a} after surviving {highest_a}"
    );
    assert!(!a.contains(&new_a), "number {new_a} reused");
    let new_b = ok(store.enqueue(&[item(2, 900, "new")]).await, "enqueue")[0];
    assert!(new_b > b[1], "new number {new_b} after surviving {}", b[1]);

    // Expiring at 104 removes device 1's items 100, 102, 103 and 104 (101 was acknowledged).
    assert_eq!(ok(store.expire(104, 100).await, "expire"), 4);
    assert_eq!(ok(store.count(&device(1)).await, "count"), 1);
    assert_eq!(ok(store.expire(600, 100).await, "expire"), 2);
    assert_eq!(ok(store.count(&device(2)).await, "count"), 1);
}

/// A number is never handed out twice, even after every item holding one was removed (by ack,
/// purge or sweep) and the store reopened.
pub async fn reopen_keeps_seqs_above_removed_items<B: PersistentBackend>(backend: &B) {
    let store = backend.open().await;
    let acked = ok(
        store.enqueue(&[item(1, 10, "a"), item(1, 10, "b")]).await,
        "enqueue",
    );
    assert_eq!(ok(store.ack(&device(1), &acked).await, "ack"), 2);
    let purged = ok(
        store.enqueue(&[item(2, 10, "a"), item(2, 10, "b")]).await,
        "enqueue",
    );
    assert_eq!(ok(store.purge(&device(2)).await, "purge"), 2);
    let expired = ok(
        store.enqueue(&[item(3, 10, "a"), item(3, 10, "b")]).await,
        "enqueue",
    );
    assert_eq!(ok(store.expire(10, 100).await, "expire"), 2);
    ok(store.flush().await, "flush");
    drop(store);

    let store = backend.open().await;
    for (n, before) in [(1, acked), (2, purged), (3, expired)] {
        let new = ok(store.enqueue(&[item(n, 10, "new")]).await, "enqueue")[0];
        let highest = before.iter().copied().max().unwrap_or(0);
        assert!(
            new > highest,
            "device {n}: number {new} after {highest} was returned and removed"
        );
    }
}

/// Sessions survive a reopen; a deleted one stays deleted.
pub async fn reopen_keeps_sessions<B: PersistentBackend>(backend: &B) {
    let one = SessionRecord {
        id: [1; 16],
        device: device(1),
        user: Some(user("alice")),
        last_seen: 1234,
        credential_stamp: Some(u64::MAX - 1),
    };
    let two = SessionRecord {
        id: [2; 16],
        device: device(2),
        user: None,
        last_seen: 99,
        credential_stamp: None,
    };
    let store = backend.open().await;
    ok(store.put_session(&one).await, "put_session");
    ok(store.put_session(&two).await, "put_session");
    ok(
        store
            .put_session(&SessionRecord {
                id: [3; 16],
                ..two.clone()
            })
            .await,
        "put_session",
    );
    assert!(ok(store.delete_session(&[3; 16]).await, "delete_session"));
    drop(store);

    let store = backend.open().await;
    assert_eq!(ok(store.session(&[1; 16]).await, "session"), Some(one));
    assert_eq!(ok(store.session(&[2; 16]).await, "session"), Some(two));
    assert_eq!(ok(store.session(&[3; 16]).await, "session"), None);
    assert_eq!(ok(store.expire_sessions(100).await, "expire_sessions"), 1);
}

/// Rosters survive a reopen, and the version rule continues from the stored version.
pub async fn reopen_keeps_rosters<B: PersistentBackend>(backend: &B) {
    let alice = user("alice");
    let store = backend.open().await;
    ok(
        store.put_roster(&alice, &roster(1, "v1")).await,
        "put_roster",
    );
    ok(
        store.put_roster(&alice, &roster(2, "v2")).await,
        "put_roster",
    );
    drop(store);

    let store = backend.open().await;
    assert_eq!(
        ok(store.roster(&alice).await, "roster"),
        Some(roster(2, "v2"))
    );
    refused(
        store.put_roster(&alice, &roster(2, "stale")).await,
        ErrorCode::Rollback,
        "a second version 2 after reopening",
    );
    ok(
        store.put_roster(&alice, &roster(3, "v3")).await,
        "put_roster v3",
    );
}
