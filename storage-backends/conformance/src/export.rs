//! Checks of [`ExportStore`](siren_api::storage::ExportStore): everything stored can be listed,
//! and a roster can be imported as is into a store that has none for that user.

use std::sync::Arc;

use siren_api::ErrorCode;
use siren_api::storage::{SessionRecord, Storage};

use crate::sample::{device, entry, item, ok, refused, roster, user};

/// An empty store lists nothing.
pub async fn export_empty(storage: Arc<dyn Storage>) {
    assert!(ok(storage.directory_users().await, "directory_users").is_empty());
    assert!(ok(storage.roster_users().await, "roster_users").is_empty());
    assert!(ok(storage.queue_devices().await, "queue_devices").is_empty());
    assert!(ok(storage.sessions().await, "sessions").is_empty());
}

/// Users with directory entries or rosters, devices with queued items and sessions are listed
/// sorted, each once, and only those (a device whose queue was emptied is not listed).
pub async fn export_lists_everything_once(storage: Arc<dyn Storage>) {
    // "bob" and "bobby": one user's name is a prefix of another's.
    for name in ["carol", "bob", "bobby"] {
        let u = user(name);
        for seq in 1..=3 {
            ok(storage.append_entry(&u, &entry(seq, name)).await, "append");
        }
    }
    ok(
        storage.put_roster(&user("zed"), &roster(1, "z")).await,
        "put_roster",
    );
    ok(
        storage.put_roster(&user("bob"), &roster(1, "b")).await,
        "put_roster",
    );
    let many: Vec<_> = (0..300).map(|i| item(7, 100, format!("m{i}"))).collect();
    ok(storage.enqueue(&many).await, "enqueue");
    ok(
        storage
            .enqueue(&[item(3, 100, "x"), item(9, 100, "y")])
            .await,
        "enqueue",
    );
    ok(storage.purge(&device(9)).await, "purge");
    let sessions: Vec<SessionRecord> = [2u8, 1]
        .iter()
        .map(|&n| SessionRecord {
            id: [n; 16],
            device: device(n),
            user: (n == 1).then(|| user("bob")),
            last_seen: 10 + u64::from(n),
            credential_stamp: (n == 1).then_some(u64::MAX),
        })
        .collect();
    for s in &sessions {
        ok(storage.put_session(s).await, "put_session");
    }

    assert_eq!(
        ok(storage.directory_users().await, "directory_users"),
        vec![user("bob"), user("bobby"), user("carol")]
    );
    assert_eq!(
        ok(storage.roster_users().await, "roster_users"),
        vec![user("bob"), user("zed")]
    );
    assert_eq!(
        ok(storage.queue_devices().await, "queue_devices"),
        vec![device(3), device(7)]
    );
    let mut expected = sessions;
    expected.sort_by_key(|s| s.id);
    assert_eq!(ok(storage.sessions().await, "sessions"), expected);
}

/// `import_roster` stores any version for a user without a roster, and refuses (with
/// `Rollback`, changing nothing) when the user has one.
pub async fn export_import_roster(storage: Arc<dyn Storage>) {
    let alice = user("alice");
    ok(
        storage.import_roster(&alice, &roster(7, "v7")).await,
        "import_roster",
    );
    assert_eq!(
        ok(storage.roster(&alice).await, "roster"),
        Some(roster(7, "v7"))
    );
    refused(
        storage.import_roster(&alice, &roster(9, "v9")).await,
        ErrorCode::Rollback,
        "import over an existing roster",
    );
    // The imported version continues like any other.
    ok(storage.put_roster(&alice, &roster(8, "v8")).await, "put v8");
    assert_eq!(
        ok(storage.roster(&alice).await, "roster"),
        Some(roster(8, "v8"))
    );
}
