use super::*;
use crate::message::{decode_value, encode_value};

fn uid(s: &str) -> Uid {
    Uid::parse(s).unwrap()
}

struct Person {
    uid: Uid,
    usk: UskSecret,
}

fn person(name: &str, seed: u8) -> Person {
    Person {
        uid: uid(name),
        usk: UskSecret::from_bytes(&[seed; 32]),
    }
}

fn membership(title: &str, members: &[&Person], admins: &[&Person]) -> Membership {
    Membership {
        title: title.into(),
        members: members.iter().map(|p| p.uid.clone()).collect(),
        admins: admins.iter().map(|p| p.uid.clone()).collect(),
    }
}

struct World {
    alice: Person,
    bob: Person,
    carol: Person,
    dave: Person,
    v1: GroupState,
}

/// alice creates a group with bob and carol (on another server); alice is its admin.
fn world() -> World {
    let alice = person("alice@alpha.test", 1);
    let bob = person("bob@alpha.test", 2);
    let carol = person("carol@beta.test", 3);
    let dave = person("dave@beta.test", 4);
    let v1 = GroupState::create(
        &alice.usk,
        alice.uid.clone(),
        GroupId::from_bytes([7; 16]),
        1_000,
        membership("lunch", &[&carol, &alice, &bob], &[&alice]),
    )
    .unwrap();
    World {
        alice,
        bob,
        carol,
        dave,
        v1,
    }
}

/// A version 2 after `w.v1` naming `by` as its maker, signed with `signer`'s key whatever the
/// rules say (what a member's client that breaks them could send).
fn forged_v2(w: &World, signer: &Person, by: &Person, membership: Membership) -> GroupState {
    GroupState::sign(
        &signer.usk,
        by.uid.clone(),
        w.v1.group,
        2,
        w.v1.hash(),
        1_001,
        membership,
    )
}

#[test]
fn a_created_group_is_canonical_and_verifies_for_its_members() {
    let w = world();
    assert_eq!(w.v1.version, 1);
    assert_eq!(w.v1.prev, Digest::ZERO);
    // Members in ascending text order, whatever order the creator gave.
    assert_eq!(
        w.v1.members,
        [w.alice.uid.clone(), w.bob.uid.clone(), w.carol.uid.clone()]
    );
    w.v1.check_genesis(&w.alice.usk.public()).unwrap();
    // Through CBOR and back, unchanged and still verifying.
    let again: GroupState = decode_value(&encode_value(&w.v1)).unwrap();
    assert_eq!(again, w.v1);
    again.check_genesis(&w.alice.usk.public()).unwrap();
    // Another user's key does not verify it.
    assert_eq!(
        w.v1.check_genesis(&w.bob.usk.public()),
        Err(GroupError::BadSignature(w.alice.uid.clone()))
    );
}

#[test]
fn an_admin_changes_the_group_and_members_accept_the_next_version() {
    let w = world();
    let v2 =
        w.v1.next(
            &w.alice.usk,
            w.alice.uid.clone(),
            1_001,
            membership("lunch", &[&w.alice, &w.bob, &w.dave], &[&w.alice, &w.bob]),
        )
        .unwrap();
    assert_eq!((v2.version, v2.prev), (2, w.v1.hash()));
    v2.check_successor(&w.v1, &w.alice.usk.public()).unwrap();
    assert!(!v2.is_member(&w.carol.uid) && v2.is_admin(&w.bob.uid));
    // bob, now an admin, may make the next one.
    let v3 = v2
        .next(
            &w.bob.usk,
            w.bob.uid.clone(),
            1_002,
            membership("lunch on friday", &[&w.alice, &w.bob, &w.dave], &[&w.bob]),
        )
        .unwrap();
    v3.check_successor(&v2, &w.bob.usk.public()).unwrap();
}

/// A version made by a member who is not an admin is refused (a forged change), whatever it
/// changes — unless all it does is take that member out (leaving).
#[test]
fn a_change_signed_by_a_non_admin_is_refused_but_leaving_is_allowed() {
    let w = world();
    // bob (a member, not an admin) adds dave: GroupState::next refuses to make it, and a
    // member refuses it when it arrives signed all the same.
    let forged = w.v1.next(
        &w.bob.usk,
        w.bob.uid.clone(),
        1_001,
        membership("lunch", &[&w.alice, &w.bob, &w.carol, &w.dave], &[&w.alice]),
    );
    assert_eq!(
        forged,
        Err(GroupError::NotAdmin {
            by: w.bob.uid.clone(),
            version: 1
        })
    );
    let forged = forged_v2(
        &w,
        &w.bob,
        &w.bob,
        membership("lunch", &[&w.alice, &w.bob, &w.carol, &w.dave], &[&w.alice]),
    );
    assert!(matches!(
        forged.check_successor(&w.v1, &w.bob.usk.public()),
        Err(GroupError::NotAdmin { .. })
    ));
    // Making himself admin is no better.
    let forged = forged_v2(
        &w,
        &w.bob,
        &w.bob,
        membership("lunch", &[&w.alice, &w.bob, &w.carol], &[&w.alice, &w.bob]),
    );
    assert!(matches!(
        forged.check_successor(&w.v1, &w.bob.usk.public()),
        Err(GroupError::NotAdmin { .. })
    ));
    // Leaving: only himself out, nothing else changed.
    let left =
        w.v1.next(
            &w.bob.usk,
            w.bob.uid.clone(),
            1_001,
            membership("lunch", &[&w.alice, &w.carol], &[&w.alice]),
        )
        .unwrap();
    left.check_successor(&w.v1, &w.bob.usk.public()).unwrap();
    // Leaving and renaming the group on the way out is a change: refused.
    assert!(matches!(
        w.v1.next(
            &w.bob.usk,
            w.bob.uid.clone(),
            1_001,
            membership("bob was here", &[&w.alice, &w.carol], &[&w.alice]),
        ),
        Err(GroupError::NotAdmin { .. })
    ));
    // Taking someone else out while leaving: refused.
    assert!(matches!(
        w.v1.next(
            &w.bob.usk,
            w.bob.uid.clone(),
            1_001,
            membership("lunch", &[&w.alice], &[&w.alice]),
        ),
        Err(GroupError::NotAdmin { .. })
    ));
}

#[test]
fn a_version_signed_by_someone_else_than_it_names_is_refused() {
    let w = world();
    // carol's key, alice's name: the members check `by`'s key from their directory.
    let forged = forged_v2(
        &w,
        &w.carol,
        &w.alice,
        membership("lunch", &[&w.alice, &w.carol], &[&w.alice, &w.carol]),
    );
    assert_eq!(
        forged.check_successor(&w.v1, &w.alice.usk.public()),
        Err(GroupError::BadSignature(w.alice.uid.clone()))
    );
}

#[test]
fn rollbacks_forks_and_gaps_are_refused() {
    let w = world();
    let add = |title: &str| {
        w.v1.next(
            &w.alice.usk,
            w.alice.uid.clone(),
            1_001,
            membership(title, &[&w.alice, &w.bob, &w.carol], &[&w.alice]),
        )
        .unwrap()
    };
    let v2 = add("lunch");
    let v3 = v2
        .next(
            &w.alice.usk,
            w.alice.uid.clone(),
            1_002,
            membership("lunch", &[&w.alice, &w.bob], &[&w.alice]),
        )
        .unwrap();
    let key = w.alice.usk.public();
    // An older version, or the same one again, after v3.
    assert_eq!(
        w.v1.check_successor(&v3, &key),
        Err(GroupError::Rollback { have: 3, got: 1 })
    );
    assert_eq!(
        v3.check_successor(&v3, &key),
        Err(GroupError::Rollback { have: 3, got: 3 })
    );
    // A second version 2 (the admin signed two, or a server made one from an old key) does
    // not follow a member's version 2.
    let other_v2 = add("dinner");
    let other_v3 = other_v2
        .next(
            &w.alice.usk,
            w.alice.uid.clone(),
            1_002,
            membership("dinner", &[&w.alice, &w.carol], &[&w.alice]),
        )
        .unwrap();
    assert_eq!(
        other_v3.check_successor(&v2, &key),
        Err(GroupError::Fork { version: 3 })
    );
    // v3 offered to a member at v1: v2 is missing (a dropped update).
    let gap = v3.check_successor(&w.v1, &key);
    assert_eq!(gap, Err(GroupError::Gap { have: 1, got: 3 }));
    assert_eq!(
        gap.unwrap_err().to_string(),
        "versions 2 to 2 are missing (have 1, got 3)"
    );
    // Another group's version 2 does not follow this group's version 1.
    let other_group = GroupState::create(
        &w.alice.usk,
        w.alice.uid.clone(),
        GroupId::from_bytes([8; 16]),
        1_000,
        w.v1.membership(),
    )
    .unwrap()
    .next(&w.alice.usk, w.alice.uid.clone(), 1_001, w.v1.membership())
    .unwrap();
    assert_eq!(
        other_group.check_successor(&w.v1, &key),
        Err(GroupError::WrongGroup)
    );
}

#[test]
fn malformed_memberships_are_refused() {
    let w = world();
    let key = w.alice.usk.public();
    let resigned = |mut s: GroupState| {
        s.sig = w.alice.usk.sign(&s.signed_bytes());
        s
    };
    let mut unsorted = w.v1.clone();
    unsorted.members.reverse();
    let mut twice = w.v1.clone();
    twice.members.insert(0, w.alice.uid.clone());
    let mut no_admin = w.v1.clone();
    no_admin.admins.clear();
    let mut admin_outside = w.v1.clone();
    admin_outside.admins = vec![w.dave.uid.clone()];
    let mut long_title = w.v1.clone();
    long_title.title = "x".repeat(MAX_GROUP_TITLE + 1);
    let mut many = w.v1.clone();
    many.members = canonical(
        (0..=MAX_GROUP_MEMBERS)
            .map(|i| uid(&format!("u{i}@alpha.test")))
            .chain([w.alice.uid.clone()])
            .collect(),
    );
    let mut zero_version = w.v1.clone();
    zero_version.version = 0;
    for bad in [
        unsorted,
        twice,
        no_admin,
        admin_outside,
        long_title,
        many,
        zero_version,
    ] {
        let bad = resigned(bad);
        let refused = bad.check_genesis(&key);
        assert!(
            matches!(
                refused,
                Err(GroupError::Malformed(_) | GroupError::Limit { .. })
            ),
            "{bad:?}: {refused:?}"
        );
    }
}

#[test]
fn someone_added_takes_the_version_they_were_added_with_from_an_admin() {
    let w = world();
    let v2 =
        w.v1.next(
            &w.alice.usk,
            w.alice.uid.clone(),
            1_001,
            membership("lunch", &[&w.alice, &w.bob, &w.carol, &w.dave], &[&w.alice]),
        )
        .unwrap();
    v2.check_join(&w.dave.uid, &w.alice.usk.public()).unwrap();
    // A version that does not list dave is no invitation for him.
    assert!(matches!(
        w.v1.check_join(&w.dave.uid, &w.alice.usk.public()),
        Err(GroupError::NotAJoin(_))
    ));
    // bob (no admin) leaving makes a valid version 3, but dave cannot join by it: its signer
    // is not an admin.
    let v3 = v2
        .next(
            &w.bob.usk,
            w.bob.uid.clone(),
            1_002,
            membership("lunch", &[&w.alice, &w.carol, &w.dave], &[&w.alice]),
        )
        .unwrap();
    assert!(matches!(
        v3.check_join(&w.dave.uid, &w.bob.usk.public()),
        Err(GroupError::NotAJoin(_))
    ));
}
