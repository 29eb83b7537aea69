//! Leases between the nodes of a cluster (schema version 3): one holder at a time, renewed by
//! its holder, taken over once expired, and listed when expired until ended as done. Two
//! stores opened on one database stand for two nodes.

mod support;

use std::time::Duration;

use siren_api::storage::Storage;
use support::TestDb;

#[tokio::test]
async fn one_holder_at_a_time_and_an_expired_lease_is_taken_over() {
    let db = TestDb::create().await;
    let (one, two) = (db.open().await, db.open().await);
    let long = Duration::from_secs(60);
    let name = "outbox:beta.test";

    assert!(one.lease(name, "node-1", long).await.unwrap());
    assert!(!two.lease(name, "node-2", long).await.unwrap(), "held");
    assert!(one.lease(name, "node-1", long).await.unwrap(), "renewed");
    assert_eq!(
        two.expired_leases("outbox:").await.unwrap(),
        Vec::<String>::new()
    );

    // node-1 renews for a moment only, then stops renewing (it died): the lease lapses, is
    // listed as expired, and node-2 takes it; node-1 then has it no more.
    assert!(
        one.lease(name, "node-1", Duration::from_millis(50))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(two.expired_leases("outbox:").await.unwrap(), [name]);
    assert!(two.expired_leases("other:").await.unwrap().is_empty());
    assert!(two.lease(name, "node-2", long).await.unwrap(), "taken over");
    assert!(!one.lease(name, "node-1", long).await.unwrap());

    // Ending another holder's lease does nothing.
    one.end_lease(name, "node-1", true).await.unwrap();
    assert!(!one.lease(name, "node-1", long).await.unwrap());

    // Ended unfinished: expired at once, for another node to find.
    two.end_lease(name, "node-2", false).await.unwrap();
    assert_eq!(one.expired_leases("outbox:").await.unwrap(), [name]);
    assert!(one.lease(name, "node-1", long).await.unwrap());

    // Ended as done: forgotten.
    one.end_lease(name, "node-1", true).await.unwrap();
    assert!(one.expired_leases("outbox:").await.unwrap().is_empty());
    assert!(two.lease(name, "node-2", long).await.unwrap(), "free again");
}
