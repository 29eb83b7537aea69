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
        credential_stamp: None,
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

    let logged_in = SessionRecord {
        credential_stamp: Some(u64::MAX),
        ..session(1, Some("alice"), 20)
    };
    ok(
        storage.put_session(&logged_in).await,
        "put_session (replace)",
    );
    assert_eq!(
        ok(storage.session(&[1; 16]).await, "session"),
        Some(logged_in.clone())
    );

    let other = SessionRecord {
        credential_stamp: Some(0),
        ..session(2, Some("bob"), u64::MAX)
    };
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

/// `delete_user_sessions` forgets the sessions logged in as that user (only those of the given
/// device, if one is given), whatever their stamp, and no others: not another user's, not
/// sessions that never logged in. It returns how many it forgot.
pub async fn sessions_deleted_by_user(storage: Arc<dyn Storage>) {
    // alice on devices 1, 2 and 3 (3 twice), bob on 4, an anonymous session on device 1.
    let sessions = [
        (1, Some("alice"), Some(7)),
        (2, Some("alice"), None),
        (3, Some("alice"), Some(8)),
        (4, Some("bob"), Some(7)),
        (5, None, None),
    ];
    for (n, name, stamp) in sessions {
        let mut s = session(n, name, 10);
        s.credential_stamp = stamp;
        if n == 5 {
            s.device = device(1);
        }
        ok(storage.put_session(&s).await, "put_session");
    }
    ok(
        storage
            .put_session(&SessionRecord {
                id: [6; 16],
                ..session(3, Some("alice"), 11)
            })
            .await,
        "put_session",
    );
    assert_eq!(
        ok(
            storage
                .delete_user_sessions(&user("alice"), Some(&device(3)))
                .await,
            "delete_user_sessions (one device)"
        ),
        2
    );
    for gone in [[3; 16], [6; 16]] {
        assert_eq!(ok(storage.session(&gone).await, "session"), None);
    }
    assert!(ok(storage.session(&[1; 16]).await, "session").is_some());
    assert_eq!(
        ok(
            storage.delete_user_sessions(&user("alice"), None).await,
            "delete_user_sessions"
        ),
        2
    );
    for gone in [[1; 16], [2; 16]] {
        assert_eq!(ok(storage.session(&gone).await, "session"), None);
    }
    for kept in [[4; 16], [5; 16]] {
        assert!(
            ok(storage.session(&kept).await, "session").is_some(),
            "deleting alice's sessions removed another one"
        );
    }
    assert_eq!(
        ok(
            storage.delete_user_sessions(&user("alice"), None).await,
            "delete_user_sessions (again)"
        ),
        0
    );
}
