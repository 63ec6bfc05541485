//! One story each: the lease machine's rules, driven by hand in virtual time.

use std::time::{Duration, Instant};

use sitebucket_fleet::{
    shard_of, Action, KvOp, KvOutcome, LeaseConfig, Leases, OpId, Shard, StopReason,
};

const TTL: Duration = Duration::from_secs(12);

fn config(worker: &str, shards: u32) -> LeaseConfig {
    let mut config = LeaseConfig::new(worker, TTL);
    config.shards = shards;
    config
}

/// Drains the actions up to the next `Wait` or `Finished`, which is returned last.
fn drain(leases: &mut Leases) -> Vec<Action> {
    let mut actions = Vec::new();
    loop {
        let action = leases.poll_action();
        let last = matches!(action, Action::Wait(_) | Action::Finished);
        actions.push(action);
        if last {
            return actions;
        }
    }
}

fn creates(actions: &[Action]) -> Vec<(OpId, Shard)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Kv(KvOp::CreateLease { id, shard }) => Some((*id, *shard)),
            _ => None,
        })
        .collect()
}

fn wait_of(actions: &[Action]) -> Instant {
    match actions.last() {
        Some(Action::Wait(at)) => *at,
        other => panic!("expected a Wait last, got {other:?}"),
    }
}

/// Answers every heartbeat put among `actions`.
fn answer_heartbeats(leases: &mut Leases, now: Instant, actions: &[Action]) {
    for action in actions {
        if let Action::Kv(KvOp::PutHeartbeat { id }) = action {
            leases.handle_kv_result(now, *id, KvOutcome::Written(1));
        }
    }
}

/// A lone worker with `shards` shards, run until it holds them all. Returns it, the time, and
/// the revision of each shard's lease.
fn lone_worker_holding_all(shards: u32) -> (Leases, Instant, Vec<u64>) {
    let start = Instant::now();
    let mut leases = Leases::new(config("a", shards), start).expect("valid");
    let mut now = start;
    let mut revisions = vec![0; shards as usize];
    let mut next_revision = 100;
    while leases.owned().len() < shards as usize {
        let actions = drain(&mut leases);
        answer_heartbeats(&mut leases, now, &actions);
        let mut answered = false;
        for (id, shard) in creates(&actions) {
            next_revision += 1;
            revisions[shard as usize] = next_revision;
            leases.handle_kv_result(now, id, KvOutcome::Written(next_revision));
            answered = true;
            // One shard taken at a time, so the taking order is known.
            now += Duration::from_millis(10);
        }
        if !answered {
            now = now.max(wait_of(&actions));
            leases.handle_timeout(now);
        }
        assert!(
            now < start + TTL * 2,
            "a lone worker did not take every shard"
        );
    }
    let actions = drain(&mut leases);
    assert_eq!(
        actions
            .iter()
            .filter(|a| matches!(a, Action::Start(_)))
            .count(),
        shards as usize
    );
    answer_heartbeats(&mut leases, now, &actions);
    (leases, now, revisions)
}

#[test]
fn a_lone_worker_takes_every_shard_after_its_first_heartbeat() {
    let start = Instant::now();
    let mut leases = Leases::new(config("a", 4), start).expect("valid");
    let first = drain(&mut leases);
    assert!(matches!(first[0], Action::Kv(KvOp::PutHeartbeat { .. })));
    assert!(
        creates(&first).is_empty(),
        "no create before the others' heartbeats are seen"
    );
    let (leases, _, _) = lone_worker_holding_all(4);
    assert_eq!(leases.owned(), vec![0, 1, 2, 3]);
}

#[test]
fn a_refused_renewal_stops_the_shard_at_once() {
    let (mut leases, mut now, revisions) = lone_worker_holding_all(1);
    let renewal = loop {
        let actions = drain(&mut leases);
        if let Some(Action::Kv(KvOp::UpdateLease { id, revision, .. })) = actions
            .iter()
            .find(|a| matches!(a, Action::Kv(KvOp::UpdateLease { .. })))
        {
            assert_eq!(
                *revision, revisions[0],
                "renewed with the revision last written"
            );
            break *id;
        }
        now = wait_of(&actions);
        leases.handle_timeout(now);
    };
    leases.handle_kv_result(now, renewal, KvOutcome::Conflict);
    let actions = drain(&mut leases);
    assert_eq!(
        actions[0],
        Action::Stop {
            shard: 0,
            reason: StopReason::RenewalFailed
        }
    );
    assert!(leases.owned().is_empty());
}

#[test]
fn an_unanswered_renewal_stops_the_shard_before_the_lease_can_expire() {
    let (mut leases, mut now, _) = lone_worker_holding_all(1);
    let taken = now;
    // Nothing is ever answered from here on: the engine is unreachable.
    let stopped = loop {
        let actions = drain(&mut leases);
        if actions
            .iter()
            .any(|a| matches!(a, Action::Stop { shard: 0, .. }))
        {
            break now;
        }
        now = wait_of(&actions);
        leases.handle_timeout(now);
        assert!(
            now < taken + TTL,
            "still streaming a TTL after the last confirmed write"
        );
    };
    // The create was sent before `taken`, so this is within TTL − margin of it.
    let config = leases.config().clone();
    assert!(stopped <= taken + config.ttl - config.margin);
}

#[test]
fn surplus_is_released_most_recently_taken_first() {
    let (mut leases, now, revisions) = lone_worker_holding_all(4);
    // Shards were taken one at a time; find the order from the stats-free way: the owned
    // list is sorted, so record which shard each create named, in order.
    let order: Vec<Shard> = {
        let mut by_revision: Vec<(u64, Shard)> = revisions
            .iter()
            .enumerate()
            .map(|(s, r)| (*r, s as Shard))
            .collect();
        by_revision.sort_unstable();
        by_revision.into_iter().map(|(_, s)| s).collect()
    };
    // A second worker appears: the target drops to 2.
    leases.handle_heartbeat_seen(now, "b");
    assert_eq!(leases.target(), 2);
    let actions = drain(&mut leases);
    let stopped: Vec<Shard> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Stop {
                shard,
                reason: StopReason::Released,
            } => Some(*shard),
            _ => None,
        })
        .collect();
    assert_eq!(stopped, vec![order[3], order[2]]);
    let deletes: Vec<(Shard, u64)> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Kv(KvOp::DeleteLease {
                shard, revision, ..
            }) => Some((*shard, *revision)),
            _ => None,
        })
        .collect();
    assert_eq!(
        deletes,
        vec![
            (order[3], revisions[order[3] as usize]),
            (order[2], revisions[order[2] as usize])
        ],
        "each release deletes with the revision last written"
    );
}

#[test]
fn targets_add_up_to_the_shard_count() {
    let now = Instant::now();
    for shards in [1, 2, 7, 16, 64, 100] {
        for workers in 1..=9usize {
            let names: Vec<String> = (0..workers).map(|i| format!("w{i}")).collect();
            let total: u32 = names
                .iter()
                .map(|me| {
                    let mut leases = Leases::new(config(me, shards), now).expect("valid");
                    for other in &names {
                        leases.handle_heartbeat_seen(now, other);
                    }
                    leases.target()
                })
                .sum();
            assert_eq!(total, shards, "{workers} workers over {shards} shards");
        }
    }
}

#[test]
fn a_heartbeat_not_seen_for_its_ttl_no_longer_counts() {
    let now = Instant::now();
    let mut leases = Leases::new(config("a", 64), now).expect("valid");
    leases.handle_heartbeat_seen(now, "b");
    assert_eq!(leases.live_workers(), vec!["a", "b"]);
    leases.handle_timeout(now + leases.config().heartbeat_ttl);
    assert_eq!(leases.live_workers(), vec!["a"]);
    assert_eq!(leases.target(), 64);
}

#[test]
fn a_create_answered_after_its_timeout_is_given_back() {
    let start = Instant::now();
    let mut leases = Leases::new(config("a", 1), start).expect("valid");
    let mut now = start;
    let (id, shard) = loop {
        let actions = drain(&mut leases);
        if let Some(first) = creates(&actions).first() {
            break *first;
        }
        now = wait_of(&actions);
        leases.handle_timeout(now);
    };
    now += leases.config().op_timeout;
    leases.handle_timeout(now);
    let _ = drain(&mut leases);
    leases.handle_kv_result(now, id, KvOutcome::Written(7));
    let actions = drain(&mut leases);
    assert!(
        actions.iter().any(|a| matches!(
            a,
            Action::Kv(KvOp::DeleteLease { shard: s, revision: 7, .. }) if *s == shard
        )),
        "the late lease is deleted: {actions:?}"
    );
    assert!(!actions.iter().any(|a| matches!(a, Action::Start(_))));
}

#[test]
fn someone_else_writing_a_held_lease_stops_it() {
    let (mut leases, now, revisions) = lone_worker_holding_all(2);
    leases.handle_lease_seen(now, 1, Some("intruder"), revisions[1] + 50);
    let actions = drain(&mut leases);
    assert_eq!(
        actions[0],
        Action::Stop {
            shard: 1,
            reason: StopReason::TakenOver
        }
    );
    // An old event (a revision before ours) changes nothing.
    leases.handle_lease_seen(now, 0, Some("previous"), revisions[0] - 1);
    assert!(leases.owns(0));
}

#[test]
fn shutdown_stops_everything_and_finishes_once_released() {
    let (mut leases, now, _) = lone_worker_holding_all(3);
    leases.shutdown(now);
    let actions = drain(&mut leases);
    let stops = actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::Stop {
                    reason: StopReason::Shutdown,
                    ..
                }
            )
        })
        .count();
    assert_eq!(stops, 3);
    let ops: Vec<OpId> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Kv(op @ (KvOp::DeleteLease { .. } | KvOp::DeleteHeartbeat { .. })) => {
                Some(op.id())
            }
            _ => None,
        })
        .collect();
    assert_eq!(ops.len(), 4, "three leases and the heartbeat: {actions:?}");
    for id in ops {
        leases.handle_kv_result(now, id, KvOutcome::Deleted);
    }
    assert_eq!(leases.poll_action(), Action::Finished);
}

#[test]
fn the_shard_hash_never_changes() {
    // Every worker of a fleet must agree on it, across versions: these values are fixed.
    let pinned: Vec<Shard> = [0u64, 1, 12, 783_214, 1 << 53, u64::MAX]
        .iter()
        .map(|u| shard_of(*u, 64))
        .collect();
    assert_eq!(pinned, PINNED);
    // And it spreads users evenly: 64,000 consecutive ids, no shard off by more than 15%.
    let mut counts = [0u32; 64];
    for user in 0..64_000 {
        counts[shard_of(user, 64) as usize] += 1;
    }
    assert!(
        counts.iter().all(|c| (850..=1150).contains(c)),
        "{counts:?}"
    );
}

const PINNED: [Shard; 6] = [47, 1, 3, 41, 15, 32];

#[test]
fn impossible_timings_are_refused_with_a_reason() {
    let mut config = LeaseConfig::new("a", TTL);
    config.renew_every = TTL;
    let error = config
        .validate()
        .expect_err("renewing once a TTL cannot keep a lease");
    assert!(error.to_string().contains("renew_every"), "{error}");
    let error = LeaseConfig::new("a.b", TTL).validate().expect_err("a dot");
    assert!(error.to_string().contains("worker name"), "{error}");
    assert!(LeaseConfig::new("w-1_x", TTL).validate().is_ok());
}
