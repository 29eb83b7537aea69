//! Checks of [`DirectoryStore`](siren_api::storage::DirectoryStore): the append rules that keep
//! a user's chain from forking.

use std::sync::Arc;

use siren_api::ErrorCode;
use siren_api::storage::{Storage, StoredEntry};

/// How many writers race for each number.
const RACERS: usize = 8;

use crate::sample::{entry, finished, ok, refused, user};

/// A user without entries has an empty chain.
pub async fn directory_empty(storage: Arc<dyn Storage>) {
    assert!(ok(storage.entries(&user("alice")).await, "entries").is_empty());
}

/// The first entry must be number 1: 0 and 2 are refused with `Rollback` and leave nothing.
pub async fn directory_first_entry_is_1(storage: Arc<dyn Storage>) {
    let alice = user("alice");
    for seq in [0, 2, u64::MAX] {
        refused(
            storage.append_entry(&alice, &entry(seq, "x")).await,
            ErrorCode::Rollback,
            &format!("entry {seq} on an empty chain"),
        );
    }
    assert!(ok(storage.entries(&alice).await, "entries").is_empty());
    ok(
        storage.append_entry(&alice, &entry(1, "first")).await,
        "append_entry 1",
    );
    assert_eq!(
        ok(storage.entries(&alice).await, "entries"),
        vec![entry(1, "first")]
    );
}

/// `delete_entries` removes the user's whole chain and no one else's, and a new chain starts
/// at 1 again.
pub async fn directory_delete_entries(storage: Arc<dyn Storage>) {
    // "bob" and "bobby": one user's name is a prefix of another's.
    for name in ["bob", "bobby"] {
        for seq in 1..=3 {
            ok(
                storage.append_entry(&user(name), &entry(seq, name)).await,
                "append_entry",
            );
        }
    }
    assert_eq!(
        ok(storage.delete_entries(&user("bob")).await, "delete_entries"),
        3
    );
    assert!(ok(storage.entries(&user("bob")).await, "entries").is_empty());
    assert_eq!(
        ok(storage.entries(&user("bobby")).await, "entries").len(),
        3,
        "deleting bob's chain touched bobby's"
    );
    assert_eq!(
        ok(storage.delete_entries(&user("bob")).await, "delete_entries"),
        0
    );
    refused(
        storage.append_entry(&user("bob"), &entry(4, "old")).await,
        ErrorCode::Rollback,
        "entry 4 after the chain was deleted",
    );
    ok(
        storage.append_entry(&user("bob"), &entry(1, "new")).await,
        "append_entry 1 after deletion",
    );
    assert_eq!(
        ok(storage.entries(&user("bob")).await, "entries"),
        vec![entry(1, "new")]
    );
}

/// After entries 1 and 2, entry 4 is refused; entry 3 is then accepted.
pub async fn directory_gap_refused(storage: Arc<dyn Storage>) {
    let alice = user("alice");
    for seq in [1, 2] {
        ok(
            storage.append_entry(&alice, &entry(seq, "e")).await,
            "append_entry",
        );
    }
    refused(
        storage.append_entry(&alice, &entry(4, "gap")).await,
        ErrorCode::Rollback,
        "entry 4 after entry 2",
    );
    assert_eq!(ok(storage.entries(&alice).await, "entries").len(), 2);
    ok(
        storage.append_entry(&alice, &entry(3, "e")).await,
        "append_entry 3",
    );
    assert_eq!(ok(storage.entries(&alice).await, "entries").len(), 3);
}

/// An entry whose number is taken is refused, and the stored entry stays as it was.
pub async fn directory_duplicate_refused(storage: Arc<dyn Storage>) {
    let alice = user("alice");
    ok(
        storage.append_entry(&alice, &entry(1, "original")).await,
        "append_entry 1",
    );
    refused(
        storage.append_entry(&alice, &entry(1, "fork")).await,
        ErrorCode::Rollback,
        "a second entry 1",
    );
    ok(
        storage.append_entry(&alice, &entry(2, "second")).await,
        "append_entry 2",
    );
    for seq in [1, 2] {
        refused(
            storage.append_entry(&alice, &entry(seq, "fork")).await,
            ErrorCode::Rollback,
            &format!("a second entry {seq}"),
        );
    }
    assert_eq!(
        ok(storage.entries(&alice).await, "entries"),
        vec![entry(1, "original"), entry(2, "second")]
    );
}

/// A long chain (past 255, where a number needs a second byte) comes back in chain order with
/// every field intact: kinds, devices, and bytes from empty to 4 KiB.
pub async fn directory_entries_in_order(storage: Arc<dyn Storage>) {
    let alice = user("alice");
    let expected: Vec<StoredEntry> = (1..=260u64)
        .map(|seq| {
            let len = match seq {
                7 => 0,
                100 => 4096,
                _ => (seq % 50) as usize,
            };
            entry(seq, vec![(seq % 256) as u8; len])
        })
        .collect();
    for e in &expected {
        ok(storage.append_entry(&alice, e).await, "append_entry");
    }
    assert_eq!(ok(storage.entries(&alice).await, "entries"), expected);
}

/// Chains of different users do not mix, even when one username is a prefix of another.
pub async fn directory_users_independent(storage: Arc<dyn Storage>) {
    let names = ["al", "al-1", "alice", "al.x", "al0"];
    for name in names {
        ok(
            storage.append_entry(&user(name), &entry(1, name)).await,
            "append_entry 1",
        );
    }
    ok(
        storage.append_entry(&user("al"), &entry(2, "al 2")).await,
        "append_entry 2",
    );
    // alice's chain is at 1, whatever al's is at.
    refused(
        storage.append_entry(&user("alice"), &entry(3, "x")).await,
        ErrorCode::Rollback,
        "alice's entry 3 after al's entry 2",
    );
    ok(
        storage
            .append_entry(&user("alice"), &entry(2, "alice 2"))
            .await,
        "append_entry 2",
    );
    assert_eq!(
        ok(storage.entries(&user("al")).await, "entries"),
        vec![entry(1, "al"), entry(2, "al 2")]
    );
    assert_eq!(
        ok(storage.entries(&user("alice")).await, "entries"),
        vec![entry(1, "alice"), entry(2, "alice 2")]
    );
    for name in ["al-1", "al.x", "al0"] {
        assert_eq!(
            ok(storage.entries(&user(name)).await, "entries"),
            vec![entry(1, name)]
        );
    }
}

/// Eight devices racing (released together) to append the same entry number: exactly one wins,
/// the others get `Rollback`, and the chain holds the winner's entry; for entries 1 to 10.
pub async fn directory_concurrent_appends_one_wins(storage: Arc<dyn Storage>) {
    let alice = user("alice");
    for seq in 1..=10u64 {
        let mut tasks = tokio::task::JoinSet::new();
        let start = Arc::new(tokio::sync::Barrier::new(RACERS));
        for racer in 0..RACERS as u8 {
            let storage = Arc::clone(&storage);
            let start = Arc::clone(&start);
            let alice = alice.clone();
            tasks.spawn(async move {
                start.wait().await;
                let e = entry(seq, vec![racer]);
                (racer, storage.append_entry(&alice, &e).await)
            });
        }
        let mut winners = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (racer, result) = finished(joined);
            match result {
                Ok(()) => winners.push(racer),
                Err(e) => assert_eq!(e.code, ErrorCode::Rollback, "a losing append: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "entry {seq}: winners {winners:?}");
        let entries = ok(storage.entries(&alice).await, "entries");
        assert_eq!(entries.len() as u64, seq);
        assert_eq!(entries.last(), Some(&entry(seq, vec![winners[0]])));
    }
}
