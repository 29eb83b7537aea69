//! Checks of [`SessionStore`](siren_api::storage::SessionStore).

use std::sync::Arc;

use siren_api::storage::{SessionRecord, Storage};

use crate::sample::{device, ok, user};

fn session(n: u8, user_name: Option<&str>, last_seen: u64) -> SessionRecord {
    SessionRecord {
        id: [n; 16],
        device: device(n),
        user: user_name.map(user),
        last_seen,
    }
}

/// An unknown session is `None`, and deleting it reports `false`.
pub async fn session_missing_is_none(storage: Arc<dyn Storage>) {
    assert_eq!(ok(storage.session(&[9; 16]).await, "session"), None);
    assert!(!ok(
        storage.delete_session(&[9; 16]).await,
        "delete_session"
    ));
    assert_eq!(
        ok(storage.expire_sessions(u64::MAX).await, "expire_sessions"),
        0
    );
}

/// A session reads back as written, before and after login; putting again replaces it.
pub async fn session_round_trip(storage: Arc<dyn Storage>) {
    let anonymous = session(1, None, 10);
    ok(storage.put_session(&anonymous).await, "put_session");
    assert_eq!(
        ok(storage.session(&[1; 16]).await, "session"),
        Some(anonymous)
    );

    let logged_in = session(1, Some("alice"), 20);
    ok(
        storage.put_session(&logged_in).await,
        "put_session (replace)",
    );
    assert_eq!(
        ok(storage.session(&[1; 16]).await, "session"),
        Some(logged_in.clone())
    );

    let other = session(2, Some("bob"), u64::MAX);
    ok(storage.put_session(&other).await, "put_session");
    assert_eq!(ok(storage.session(&[2; 16]).await, "session"), Some(other));
    assert_eq!(
        ok(storage.session(&[1; 16]).await, "session"),
        Some(logged_in)
    );
}

/// Deleting forgets that session only, reporting `true` once and `false` afterwards.
pub async fn session_delete(storage: Arc<dyn Storage>) {
    for n in [1, 2] {
        ok(
            storage.put_session(&session(n, Some("alice"), 5)).await,
            "put_session",
        );
    }
    assert!(ok(storage.delete_session(&[1; 16]).await, "delete_session"));
    assert_eq!(ok(storage.session(&[1; 16]).await, "session"), None);
    assert!(!ok(
        storage.delete_session(&[1; 16]).await,
        "delete_session again"
    ));
    assert!(ok(storage.session(&[2; 16]).await, "session").is_some());
}

/// `expire_sessions(cutoff)` forgets exactly the sessions last seen before `cutoff` (not at it).
pub async fn sessions_expire_before_cutoff(storage: Arc<dyn Storage>) {
    for (n, seen) in [(1, 10), (2, 20), (3, 30), (4, 0)] {
        ok(
            storage.put_session(&session(n, None, seen)).await,
            "put_session",
        );
    }
    assert_eq!(
        ok(storage.expire_sessions(20).await, "expire_sessions(20)"),
        2
    );
    assert_eq!(ok(storage.session(&[1; 16]).await, "session"), None);
    assert_eq!(ok(storage.session(&[4; 16]).await, "session"), None);
    assert!(ok(storage.session(&[2; 16]).await, "session").is_some());
    assert!(ok(storage.session(&[3; 16]).await, "session").is_some());
    assert_eq!(
        ok(
            storage.expire_sessions(20).await,
            "expire_sessions(20) again"
        ),
        0
    );
    assert_eq!(
        ok(storage.expire_sessions(31).await, "expire_sessions(31)"),
        2
    );
    assert_eq!(ok(storage.session(&[3; 16]).await, "session"), None);
}
