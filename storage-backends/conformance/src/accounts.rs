//! Checks of [`AccountStore`](siren_api::storage::AccountStore), and of the [`Storage`] methods
//! themselves.

use std::sync::Arc;

use siren_api::storage::{Account, Storage};

use crate::sample::{device, entry, ok, roster, user};

fn account(name: &str, created: u64, credential: Option<&str>) -> Account {
    Account {
        user: user(name),
        created,
        credential: credential.map(str::to_owned),
        credential_stamp: 0,
    }
}

/// An unknown user has no account, deleting it reports `false`, and the list is empty.
pub async fn account_missing_is_none(storage: Arc<dyn Storage>) {
    assert_eq!(ok(storage.account(&user("nobody")).await, "account"), None);
    assert!(!ok(
        storage.delete_account(&user("nobody")).await,
        "delete_account"
    ));
    assert!(ok(storage.list_accounts().await, "list_accounts").is_empty());
}

/// An account reads back as written, its credential stamp included (any 64-bit value);
/// putting again replaces it (without a second listing); an empty credential stays distinct
/// from none.
pub async fn account_round_trip(storage: Arc<dyn Storage>) {
    let first = Account {
        credential_stamp: u64::MAX,
        ..account(
            "alice",
            1_700_000_000,
            Some("$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA"),
        )
    };
    ok(storage.put_account(&first).await, "put_account");
    assert_eq!(
        ok(storage.account(&user("alice")).await, "account"),
        Some(first)
    );

    let replaced = Account {
        credential_stamp: 1 << 63,
        ..account("alice", 2, None)
    };
    ok(
        storage.put_account(&replaced).await,
        "put_account (replace)",
    );
    assert_eq!(
        ok(storage.account(&user("alice")).await, "account"),
        Some(replaced)
    );

    let empty = account("bob", 3, Some(""));
    ok(storage.put_account(&empty).await, "put_account");
    assert_eq!(
        ok(storage.account(&user("bob")).await, "account"),
        Some(empty)
    );
    assert_eq!(
        ok(storage.list_accounts().await, "list_accounts"),
        vec![user("alice"), user("bob")]
    );
}

/// `update_credential` replaces the credential only while it is still the one given, keeping
/// the creation time and the credential stamp; it changes nothing (and says so) for another
/// credential, an account without one, and a missing account.
pub async fn account_update_credential(storage: Arc<dyn Storage>) {
    let alice = Account {
        credential_stamp: 42,
        ..account("alice", 7, Some("old hash"))
    };
    ok(storage.put_account(&alice).await, "put_account");
    assert!(!ok(
        storage
            .update_credential(&user("alice"), "another hash", "new hash")
            .await,
        "update_credential (stale)"
    ));
    assert_eq!(
        ok(storage.account(&user("alice")).await, "account"),
        Some(alice.clone()),
        "a stale update changed the account"
    );
    assert!(ok(
        storage
            .update_credential(&user("alice"), "old hash", "new hash")
            .await,
        "update_credential"
    ));
    assert_eq!(
        ok(storage.account(&user("alice")).await, "account"),
        Some(Account {
            credential: Some("new hash".into()),
            ..alice
        })
    );
    assert!(!ok(
        storage
            .update_credential(&user("alice"), "old hash", "newer hash")
            .await,
        "update_credential (already replaced)"
    ));
    ok(
        storage.put_account(&account("bob", 1, None)).await,
        "put_account",
    );
    for name in ["bob", "nobody"] {
        assert!(!ok(
            storage.update_credential(&user(name), "", "x").await,
            "update_credential (no credential)"
        ));
    }
    assert_eq!(
        ok(storage.account(&user("bob")).await, "account"),
        Some(account("bob", 1, None))
    );
    assert_eq!(ok(storage.account(&user("nobody")).await, "account"), None);
}

/// Deleting removes that account only, reports `true` once and `false` afterwards.
pub async fn account_delete(storage: Arc<dyn Storage>) {
    for name in ["alice", "bob"] {
        ok(
            storage.put_account(&account(name, 1, None)).await,
            "put_account",
        );
    }
    assert!(ok(
        storage.delete_account(&user("alice")).await,
        "delete_account"
    ));
    assert_eq!(ok(storage.account(&user("alice")).await, "account"), None);
    assert!(
        ok(storage.account(&user("bob")).await, "account").is_some(),
        "deleting alice removed bob"
    );
    assert!(!ok(
        storage.delete_account(&user("alice")).await,
        "delete_account (again)"
    ));
    assert_eq!(
        ok(storage.list_accounts().await, "list_accounts"),
        vec![user("bob")]
    );
}

/// `list_accounts` is sorted (by `Username`'s order), whatever the order of creation, including
/// names that are prefixes of one another and names with `.`, `-` and `_`.
pub async fn accounts_listed_sorted(storage: Arc<dyn Storage>) {
    let names = [
        "zed", "a", "a.b", "a-b", "ab", "a0", "a_b", "b", "aa", "0", "a.b.c", "z9",
    ];
    for name in names {
        ok(
            storage.put_account(&account(name, 1, None)).await,
            "put_account",
        );
    }
    let mut expected: Vec<_> = names.iter().map(|n| user(n)).collect();
    expected.sort();
    assert_eq!(ok(storage.list_accounts().await, "list_accounts"), expected);
}

/// `list_accounts` lists accounts only, not users that merely have directory entries, rosters or
/// sessions.
pub async fn accounts_list_only_accounts(storage: Arc<dyn Storage>) {
    ok(
        storage.put_account(&account("alice", 1, None)).await,
        "put_account",
    );
    ok(
        storage.append_entry(&user("bob"), &entry(1, "e")).await,
        "append_entry",
    );
    ok(
        storage.put_roster(&user("carol"), &roster(1, "r")).await,
        "put_roster",
    );
    ok(
        storage
            .put_session(&siren_api::storage::SessionRecord {
                id: [4; 16],
                device: device(4),
                user: Some(user("dave")),
                last_seen: 1,
                credential_stamp: None,
            })
            .await,
        "put_session",
    );
    assert_eq!(
        ok(storage.list_accounts().await, "list_accounts"),
        vec![user("alice")]
    );
}

/// `describe` says something, and `flush` succeeds and keeps what was written readable.
pub async fn storage_describe_and_flush(storage: Arc<dyn Storage>) {
    assert!(!storage.describe().trim().is_empty(), "empty description");
    ok(
        storage.put_account(&account("alice", 1, None)).await,
        "put_account",
    );
    ok(storage.flush().await, "flush");
    assert!(ok(storage.account(&user("alice")).await, "account").is_some());
}
