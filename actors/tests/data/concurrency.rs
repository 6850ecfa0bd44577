//! Concurrent writers on one realm, through the storage seams directly so
//! that the transactions really overlap (on PostgreSQL, each runs on its own
//! pooled connection). The memory store passes trivially: it serialises
//! everything; these tests are about the PostgreSQL locks.

use futures_util::future::{join, join_all};
use parsec_actors::backend::{RealmGrantedRole, RealmUpdateRolesError, UserRevocation, VlobCreateError};
use parsec_protocol::cmds::authenticated as req;
use parsec_protocol::types::*;

use crate::common::*;

fn create_req(realm_id: Uuid, timestamp: DateTime) -> req::VlobCreate {
    req::VlobCreate {
        realm_id,
        encryption_revision: 1,
        vlob_id: Uuid::new_v4(),
        timestamp,
        blob: b"x".to_vec(),
    }
}

#[actix_web::test]
async fn concurrent_creates_get_consecutive_checkpoints() {
    let (env, alice) = Env::start().await;
    let (realm_id, _) = env.create_realm(&alice).await;
    let author = &alice.client.device_id;
    let reqs: Vec<req::VlobCreate> = (0..50).map(|_| create_req(realm_id, now())).collect();

    let results = join_all(reqs.iter().map(|r| env.backends.vlob.create(&env.org, author, r))).await;
    let mut checkpoints: Vec<u64> = results.into_iter().map(|r| r.expect("every create succeeds")).collect();
    checkpoints.sort_unstable();
    assert_eq!(checkpoints, (1..=50).collect::<Vec<u64>>());

    // The change log agrees: every vlob once, the last checkpoint current.
    let changes = env
        .backends
        .vlob
        .poll_changes(&env.org, &alice.user_id(), realm_id, 0)
        .await
        .unwrap();
    assert_eq!(changes.current_checkpoint, 50);
    assert_eq!(changes.changes.len(), 50);
    assert!(reqs.iter().all(|r| changes.changes.get(&r.vlob_id) == Some(&1)));
}

/// Bob writes while alice makes him READER. The downgrade's certificate is
/// older than the writes: if any write lands first, the downgrade must be
/// refused (it must come after bob's last write); if the downgrade lands
/// first, every write must be refused. Both succeeding would mean a write
/// was authorised by a role that was already gone, or a downgrade that did
/// not see a write.
#[actix_web::test]
async fn write_racing_a_downgrade_is_before_it_or_refused() {
    let (env, alice) = Env::start().await;
    let bob = env.add_user("bob@dev1", UserProfile::Standard).await;
    let (mut downgrades_won, mut writes_won) = (0, 0);
    for round in 0..=10 {
        let (realm_id, _) = env.create_realm(&alice).await;
        env.share(&alice, realm_id, &bob, Some(RealmRole::Contributor), at(-20))
            .await;
        let downgraded_on = at(-10);
        let written_on = at(-5);
        let downgrade = RealmGrantedRole {
            realm_id,
            user_id: bob.user_id(),
            role: Some(RealmRole::Reader),
            certificate: alice.role_cert(realm_id, &bob.user_id(), Some(RealmRole::Reader), downgraded_on),
            granted_by: alice.client.device_id.clone(),
            granted_on: downgraded_on,
        };
        let reqs: Vec<req::VlobCreate> = (0..10).map(|_| create_req(realm_id, written_on)).collect();
        let write = |r| env.backends.vlob.create(&env.org, &bob.client.device_id, r);
        // The downgrade starts before, amid, or after the writes.
        let (first, rest) = reqs.split_at(round);
        let ((before, role), after) = join(
            join(
                join_all(first.iter().map(write)),
                env.backends.realm.update_roles(&env.org, downgrade, None),
            ),
            join_all(rest.iter().map(write)),
        )
        .await;
        let writes: Vec<Result<u64, VlobCreateError>> = before.into_iter().chain(after).collect();

        match role {
            Ok(_) => {
                downgrades_won += 1;
                for w in &writes {
                    assert!(
                        matches!(w, Err(VlobCreateError::NotAllowed)),
                        "write after the downgrade: {w:?}"
                    );
                }
            }
            Err(RealmUpdateRolesError::RequireGreaterTimestamp(t)) => {
                writes_won += 1;
                assert_eq!(t, written_on);
                let mut checkpoints: Vec<u64> = writes
                    .into_iter()
                    .map(|w| w.expect("no downgrade: every write succeeds"))
                    .collect();
                checkpoints.sort_unstable();
                assert_eq!(checkpoints, (1..=10).collect::<Vec<u64>>());
            }
            Err(e) => panic!("unexpected downgrade outcome: {e:?}"),
        }
    }
    eprintln!("downgrade first: {downgrades_won} rounds, writes first: {writes_won} rounds");
    assert_eq!(downgrades_won + writes_won, 11);
}

/// Alice shares a realm with a message while the target is being revoked:
/// the share either lands first or sees the revocation, and neither side
/// fails (no deadlock between the organization, realm and user row locks).
#[actix_web::test]
async fn share_racing_a_revocation() {
    let (env, alice) = Env::start().await;
    let (realm_id, _) = env.create_realm(&alice).await;
    let (mut shares_won, mut revocations_won) = (0, 0);
    for round in 0..20 {
        let target = env.add_user(&format!("user{round}@dev1"), UserProfile::Standard).await;
        let granted_on = at(-10);
        let share = RealmGrantedRole {
            realm_id,
            user_id: target.user_id(),
            role: Some(RealmRole::Reader),
            certificate: alice.role_cert(realm_id, &target.user_id(), Some(RealmRole::Reader), granted_on),
            granted_by: alice.client.device_id.clone(),
            granted_on,
        };
        let revocation = UserRevocation {
            user_id: target.user_id(),
            revoked_on: now(),
            revoked_user_certificate: b"revoked".to_vec(),
            revoked_user_certifier: alice.client.device_id.clone(),
        };
        let share = env
            .backends
            .realm
            .update_roles(&env.org, share, Some(b"welcome".to_vec()));
        let revoke = env.backends.user.revoke_user(&env.org, revocation);
        let (shared, revoked) = if round % 2 == 0 {
            join(share, revoke).await
        } else {
            let (r, s) = join(revoke, share).await;
            (s, r)
        };
        revoked.expect("the revocation succeeds");
        match shared {
            Ok(Some(m)) => {
                assert_eq!(m.index, 1);
                shares_won += 1;
            }
            Err(RealmUpdateRolesError::UserRevoked) => revocations_won += 1,
            other => panic!("unexpected share outcome: {other:?}"),
        }
    }
    eprintln!("share first: {shares_won} rounds, revocation first: {revocations_won} rounds");
}
