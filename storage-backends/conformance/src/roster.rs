//! Checks of [`RosterStore`](siren_api::storage::RosterStore): versions only move forward, one
//! at a time.

use std::sync::Arc;

use siren_api::ErrorCode;
use siren_api::storage::Storage;

/// How many writers race for each number.
const RACERS: usize = 8;

use crate::sample::{finished, ok, refused, roster, user};

/// A user without a roster has none.
pub async fn roster_missing_is_none(storage: Arc<dyn Storage>) {
    assert_eq!(ok(storage.roster(&user("alice")).await, "roster"), None);
}

/// The first roster must be version 1: 0 and 2 are refused with `Rollback` and store nothing.
pub async fn roster_first_version_is_1(storage: Arc<dyn Storage>) {
    let alice = user("alice");
    for version in [0, 2, u64::MAX] {
        refused(
            storage.put_roster(&alice, &roster(version, "r")).await,
            ErrorCode::Rollback,
            &format!("roster version {version} with none stored"),
        );
    }
    assert_eq!(ok(storage.roster(&alice).await, "roster"), None);
    ok(
        storage.put_roster(&alice, &roster(1, "v1")).await,
        "put_roster v1",
    );
    assert_eq!(
        ok(storage.roster(&alice).await, "roster"),
        Some(roster(1, "v1"))
    );
}

/// `delete_roster` removes that user's roster only, reports `true` once and `false`
/// afterwards; the user's next roster is version 1 again.
pub async fn roster_delete(storage: Arc<dyn Storage>) {
    for name in ["alice", "bob"] {
        ok(
            storage.put_roster(&user(name), &roster(1, name)).await,
            "put_roster",
        );
    }
    ok(
        storage.put_roster(&user("alice"), &roster(2, "v2")).await,
        "put_roster v2",
    );
    assert!(ok(
        storage.delete_roster(&user("alice")).await,
        "delete_roster"
    ));
    assert_eq!(ok(storage.roster(&user("alice")).await, "roster"), None);
    assert_eq!(
        ok(storage.roster(&user("bob")).await, "roster"),
        Some(roster(1, "bob"))
    );
    assert!(!ok(
        storage.delete_roster(&user("alice")).await,
        "delete_roster (again)"
    ));
    ok(
        storage.put_roster(&user("alice"), &roster(1, "anew")).await,
        "put_roster v1 after deletion",
    );
}

/// After version 1, only version 2 is accepted: a repeat (stale), an older one and a skip are
/// refused and leave the stored roster as it was.
pub async fn roster_next_version_only(storage: Arc<dyn Storage>) {
    let alice = user("alice");
    ok(
        storage.put_roster(&alice, &roster(1, "v1")).await,
        "put_roster v1",
    );
    ok(
        storage.put_roster(&alice, &roster(2, "v2")).await,
        "put_roster v2",
    );
    for version in [2, 1, 0, 4] {
        refused(
            storage.put_roster(&alice, &roster(version, "bad")).await,
            ErrorCode::Rollback,
            &format!("roster version {version} over version 2"),
        );
    }
    assert_eq!(
        ok(storage.roster(&alice).await, "roster"),
        Some(roster(2, "v2"))
    );
    ok(
        storage.put_roster(&alice, &roster(3, "")).await,
        "put_roster v3",
    );
    assert_eq!(
        ok(storage.roster(&alice).await, "roster"),
        Some(roster(3, ""))
    );
}

/// Users' rosters are separate, even when one username is a prefix of another.
pub async fn roster_users_independent(storage: Arc<dyn Storage>) {
    ok(
        storage.put_roster(&user("al"), &roster(1, "al")).await,
        "put_roster",
    );
    ok(
        storage.put_roster(&user("al"), &roster(2, "al 2")).await,
        "put_roster",
    );
    refused(
        storage.put_roster(&user("alice"), &roster(3, "x")).await,
        ErrorCode::Rollback,
        "alice's version 3 after al's version 2",
    );
    ok(
        storage
            .put_roster(&user("alice"), &roster(1, "alice"))
            .await,
        "put_roster",
    );
    assert_eq!(
        ok(storage.roster(&user("al")).await, "roster"),
        Some(roster(2, "al 2"))
    );
    assert_eq!(
        ok(storage.roster(&user("alice")).await, "roster"),
        Some(roster(1, "alice"))
    );
}

/// Eight devices racing (released together) to store the next version: exactly one wins, and
/// its roster is stored; for versions 1 to 10.
pub async fn roster_concurrent_puts_one_wins(storage: Arc<dyn Storage>) {
    let alice = user("alice");
    for version in 1..=10u64 {
        let mut tasks = tokio::task::JoinSet::new();
        let start = Arc::new(tokio::sync::Barrier::new(RACERS));
        for racer in 0..RACERS as u8 {
            let storage = Arc::clone(&storage);
            let start = Arc::clone(&start);
            let alice = alice.clone();
            tasks.spawn(async move {
                start.wait().await;
                let r = roster(version, vec![racer]);
                (racer, storage.put_roster(&alice, &r).await)
            });
        }
        let mut winners = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let (racer, result) = finished(joined);
            match result {
                Ok(()) => winners.push(racer),
                Err(e) => assert_eq!(e.code, ErrorCode::Rollback, "a losing put: {e}"),
            }
        }
        assert_eq!(winners.len(), 1, "version {version}: winners {winners:?}");
        assert_eq!(
            ok(storage.roster(&alice).await, "roster"),
            Some(roster(version, vec![winners[0]]))
        );
    }
}
