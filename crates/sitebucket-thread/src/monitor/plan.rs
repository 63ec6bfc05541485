//! Planning: which users go to which stream. Pure functions of the follow lists, no
//! streams, locks or time, so each plan is tested on its own.

use std::collections::BTreeSet;

/// Sorted, duplicate-free lists of at most `limit` (at least 1) users covering `users`.
pub(super) fn shard(users: &[u64], limit: usize) -> Vec<Vec<u64>> {
    let users: BTreeSet<u64> = users.iter().copied().collect();
    let users: Vec<u64> = users.into_iter().collect();
    users.chunks(limit.max(1)).map(<[u64]>::to_vec).collect()
}

/// Where new users go.
#[derive(Debug, Default, PartialEq)]
pub(super) struct AddPlan {
    /// Existing streams (by index) to replace with these longer lists.
    pub(super) grow: Vec<(usize, Vec<u64>)>,
    /// New streams' lists.
    pub(super) new: Vec<Vec<u64>>,
}

pub(super) fn plan_add(current: &[&[u64]], users: &[u64], limit: usize) -> AddPlan {
    let limit = limit.max(1);
    let covered: BTreeSet<u64> = current.iter().flat_map(|s| s.iter().copied()).collect();
    let fresh: BTreeSet<u64> = users
        .iter()
        .copied()
        .filter(|u| !covered.contains(u))
        .collect();
    let mut fresh = fresh.into_iter().peekable();
    let mut plan = AddPlan::default();
    for (index, follow) in current.iter().enumerate() {
        if follow.len() >= limit || fresh.peek().is_none() {
            continue;
        }
        let room = limit - follow.len();
        let mut grown: Vec<u64> = follow.to_vec();
        grown.extend(fresh.by_ref().take(room));
        grown.sort_unstable();
        plan.grow.push((index, grown));
    }
    let rest: Vec<u64> = fresh.collect();
    plan.new = shard(&rest, limit);
    plan
}

/// Which streams lose users.
#[derive(Debug, Default, PartialEq)]
pub(super) struct RemovePlan {
    /// Streams (by index) to replace with these shorter, non-empty lists.
    pub(super) shrink: Vec<(usize, Vec<u64>)>,
    /// Indices (ascending) of streams left with no user.
    pub(super) close: Vec<usize>,
}

pub(super) fn plan_remove(current: &[&[u64]], users: &[u64]) -> RemovePlan {
    let gone: BTreeSet<u64> = users.iter().copied().collect();
    let mut plan = RemovePlan::default();
    for (index, follow) in current.iter().enumerate() {
        if !follow.iter().any(|u| gone.contains(u)) {
            continue;
        }
        let kept: Vec<u64> = follow
            .iter()
            .copied()
            .filter(|u| !gone.contains(u))
            .collect();
        if kept.is_empty() {
            plan.close.push(index);
        } else {
            plan.shrink.push((index, kept));
        }
    }
    plan
}

/// Which non-full streams to replace, and with what.
#[derive(Debug, PartialEq)]
pub(super) struct Consolidation {
    /// Indices (ascending) of the streams to close.
    pub(super) replace: Vec<usize>,
    /// The lists of the streams that take over their users.
    pub(super) with: Vec<Vec<u64>>,
}

pub(super) fn plan_consolidation(current: &[&[u64]], limit: usize) -> Option<Consolidation> {
    let limit = limit.max(1);
    let replace: Vec<usize> = (0..current.len())
        .filter(|&i| current[i].len() < limit)
        .collect();
    let users: Vec<u64> = replace
        .iter()
        .flat_map(|&i| current[i].iter().copied())
        .collect();
    let with = shard(&users, limit);
    (with.len() < replace.len()).then_some(Consolidation { replace, with })
}

/// The lists as slices, for the planners.
pub(super) fn slices(lists: &[Vec<u64>]) -> Vec<&[u64]> {
    lists.iter().map(Vec::as_slice).collect()
}

/// Emptying one stream into others through control: `to` lists each target and the users
/// it takes; together they are all of the source's users.
#[derive(Debug, PartialEq)]
pub(super) struct Move {
    pub(super) from: usize,
    pub(super) to: Vec<(usize, Vec<u64>)>,
}

/// Which streams to empty into which, through control, to save connections.
///
/// The least-full streams are emptied first, each only if the announced streams (the only
/// ones that take users through control) have room for all its users together, up to
/// `limit` each; the fullest targets are filled first, so few streams are left part full.
/// A stream that takes users is never emptied later, and an emptied one never takes any.
pub(super) fn plan_moves(current: &[Vec<u64>], announced: &[bool], limit: usize) -> Vec<Move> {
    #[derive(Clone, Copy, PartialEq)]
    enum Role {
        Free,
        Target,
        Emptied,
    }
    let n = current.len().min(announced.len());
    let mut size: Vec<usize> = current.iter().take(n).map(Vec::len).collect();
    let mut role = vec![Role::Free; n];
    let mut sources: Vec<usize> = (0..n).collect();
    sources.sort_by_key(|&i| (size[i], i));
    let mut moves = Vec::new();
    for source in sources {
        if role[source] != Role::Free || size[source] == 0 {
            continue;
        }
        let mut targets: Vec<usize> = (0..n)
            .filter(|&t| t != source && announced[t] && role[t] != Role::Emptied && size[t] < limit)
            .collect();
        targets.sort_by_key(|&t| (std::cmp::Reverse(size[t]), t));
        let room: usize = targets.iter().map(|&t| limit - size[t]).sum();
        if room < size[source] {
            continue;
        }
        let mut users = current[source].as_slice();
        let mut to = Vec::new();
        for target in targets {
            if users.is_empty() {
                break;
            }
            let take = (limit - size[target]).min(users.len());
            let (taken, rest) = users.split_at(take);
            to.push((target, taken.to_vec()));
            size[target] += take;
            role[target] = Role::Target;
            users = rest;
        }
        size[source] = 0;
        role[source] = Role::Emptied;
        moves.push(Move { from: source, to });
    }
    moves
}
#[cfg(test)]
mod tests {
    use super::*;

    fn covered(lists: &[Vec<u64>]) -> Vec<u64> {
        let mut all: Vec<u64> = lists.iter().flatten().copied().collect();
        all.sort_unstable();
        all
    }

    fn refs(lists: &[Vec<u64>]) -> Vec<&[u64]> {
        lists.iter().map(Vec::as_slice).collect()
    }

    /// Applies a plan the way the monitor does.
    fn apply_add(current: &[Vec<u64>], plan: AddPlan) -> Vec<Vec<u64>> {
        let mut after = current.to_vec();
        for (i, list) in plan.grow {
            after[i] = list;
        }
        after.extend(plan.new);
        after
    }

    fn apply_consolidation(current: &[Vec<u64>], plan: Consolidation) -> Vec<Vec<u64>> {
        let mut after: Vec<Vec<u64>> = current
            .iter()
            .enumerate()
            .filter(|(i, _)| !plan.replace.contains(i))
            .map(|(_, l)| l.clone())
            .collect();
        after.extend(plan.with);
        after
    }

    fn apply_remove(current: &[Vec<u64>], plan: RemovePlan) -> Vec<Vec<u64>> {
        let mut after: Vec<Option<Vec<u64>>> = current.iter().cloned().map(Some).collect();
        for (i, list) in plan.shrink {
            after[i] = Some(list);
        }
        for i in plan.close {
            after[i] = None;
        }
        after.into_iter().flatten().collect()
    }

    #[test]
    fn remove_shrinks_streams_and_closes_emptied_ones() {
        let current = vec![vec![1, 2, 3], vec![4, 5], vec![6]];
        let plan = plan_remove(&refs(&current), &[2, 4, 5, 99]);
        assert_eq!(plan.shrink, vec![(0, vec![1, 3])]);
        assert_eq!(plan.close, vec![1]);
        assert_eq!(plan_remove(&refs(&current), &[7]), RemovePlan::default());
    }

    #[test]
    fn shard_splits_into_sorted_full_lists_and_a_remainder() {
        let users: Vec<u64> = (1..=250).rev().collect();
        let shards = shard(&users, 100);
        assert_eq!(shards.len(), 3);
        assert_eq!(shards[0], (1..=100).collect::<Vec<_>>());
        assert_eq!(shards[1], (101..=200).collect::<Vec<_>>());
        assert_eq!(shards[2], (201..=250).collect::<Vec<_>>());
    }

    #[test]
    fn shard_drops_duplicates_and_handles_empty_and_exact() {
        assert_eq!(shard(&[5, 5, 3, 3, 3], 100), vec![vec![3, 5]]);
        assert!(shard(&[], 100).is_empty());
        assert_eq!(shard(&(0..200).collect::<Vec<_>>(), 100).len(), 2);
    }

    #[test]
    fn add_fills_non_full_streams_first_then_opens_new_ones() {
        let current = vec![(1..=100).collect::<Vec<u64>>(), (101..=150).collect()];
        let users: Vec<u64> = (151..=270).collect();
        let plan = plan_add(&refs(&current), &users, 100);
        assert_eq!(plan.grow, vec![(1, (101..=200).collect::<Vec<u64>>())]);
        assert_eq!(plan.new, vec![(201..=270).collect::<Vec<u64>>()]);
    }

    #[test]
    fn add_skips_users_already_covered_and_duplicates() {
        let current = vec![vec![1, 2, 3]];
        let plan = plan_add(&refs(&current), &[3, 2, 4, 4, 9], 100);
        assert_eq!(plan.grow, vec![(0, vec![1, 2, 3, 4, 9])]);
        assert!(plan.new.is_empty());
        assert_eq!(plan_add(&refs(&current), &[1, 2], 100), AddPlan::default());
    }

    #[test]
    fn add_to_an_empty_monitor_shards_everything() {
        let users: Vec<u64> = (0..1001).collect();
        let plan = plan_add(&[], &users, 100);
        assert!(plan.grow.is_empty());
        assert_eq!(plan.new.len(), 11);
        assert_eq!(covered(&plan.new), users);
    }

    #[test]
    fn consolidation_merges_non_full_streams_and_keeps_full_ones() {
        let current = vec![
            (1..=100).collect::<Vec<u64>>(),
            (101..=160).collect(),
            (161..=200).collect(),
            (201..=230).collect(),
        ];
        let plan = plan_consolidation(&refs(&current), 100).expect("three half streams merge");
        assert_eq!(plan.replace, vec![1, 2, 3]);
        assert_eq!(
            plan.with,
            vec![(101..=200).collect::<Vec<u64>>(), (201..=230).collect()]
        );
    }

    #[test]
    fn consolidation_does_nothing_when_it_saves_no_stream() {
        let full: Vec<u64> = (1..=100).collect();
        assert_eq!(plan_consolidation(&[full.as_slice()], 100), None);
        assert_eq!(plan_consolidation(&refs(&[full, vec![200]]), 100), None);
        let halves = vec![(1..=60).collect::<Vec<u64>>(), (61..=120).collect()];
        assert_eq!(plan_consolidation(&refs(&halves), 100), None);
        assert_eq!(plan_consolidation(&[], 100), None);
    }

    /// A small deterministic generator for the property checks below.
    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *state >> 33
    }

    #[test]
    fn every_plan_covers_each_user_exactly_once_within_the_limit() {
        let mut seed = 42;
        for round in 0..500 {
            let limit = 1 + (lcg(&mut seed) % 12) as usize;
            // A random current state: disjoint lists of 1..=limit users.
            let mut next_id = 0u64;
            let mut current = Vec::new();
            for _ in 0..lcg(&mut seed) % 6 {
                let len = 1 + lcg(&mut seed) % limit as u64;
                current.push((next_id..next_id + len).collect::<Vec<u64>>());
                next_id += len + lcg(&mut seed) % 3;
            }
            let users: Vec<u64> = (0..lcg(&mut seed) % 40)
                .map(|_| lcg(&mut seed) % (next_id + 30))
                .collect();

            let before = covered(&current);
            let plan = plan_add(&refs(&current), &users, limit);
            if !plan.new.is_empty() {
                for (i, list) in current.iter().enumerate().filter(|(_, l)| l.len() < limit) {
                    let grown = plan.grow.iter().find(|(g, _)| *g == i);
                    assert!(
                        grown.is_some_and(|(_, l)| l.len() == limit),
                        "round {round}: stream {i} ({list:?}) is filled before a new one opens"
                    );
                }
            }
            let after = apply_add(&current, plan);
            let mut expected: BTreeSet<u64> = before.iter().copied().collect();
            expected.extend(users.iter().copied());
            assert_eq!(
                covered(&after),
                expected.into_iter().collect::<Vec<_>>(),
                "round {round}: add covers old and new users once each"
            );
            assert!(after.iter().all(|l| !l.is_empty() && l.len() <= limit));

            let removed: Vec<u64> = (0..lcg(&mut seed) % 30)
                .map(|_| lcg(&mut seed) % (next_id + 30))
                .collect();
            let after = apply_remove(&after, plan_remove(&refs(&after), &removed));
            let mut left: Vec<u64> = covered(&current);
            left.extend(users.iter().copied());
            left.sort_unstable();
            left.dedup();
            left.retain(|u| !removed.contains(u));
            assert_eq!(
                covered(&after),
                left,
                "round {round}: remove drops only those"
            );
            assert!(after.iter().all(|l| !l.is_empty() && l.len() <= limit));

            if let Some(plan) = plan_consolidation(&refs(&after), limit) {
                let merged = apply_consolidation(&after, plan);
                assert_eq!(covered(&merged), covered(&after), "round {round}: no loss");
                assert!(merged.len() < after.len(), "round {round}: saves a stream");
                assert!(merged.iter().all(|l| !l.is_empty() && l.len() <= limit));
                assert!(
                    merged.iter().filter(|l| l.len() < limit).count() <= 1,
                    "round {round}: at most one non-full stream is left"
                );
            }
        }
    }

    fn apply_moves(current: &[Vec<u64>], moves: &[Move]) -> Vec<Vec<u64>> {
        let mut after: Vec<Option<Vec<u64>>> = current.iter().cloned().map(Some).collect();
        for step in moves {
            for (target, users) in &step.to {
                let list = after[*target].as_mut().expect("a target is never emptied");
                list.extend(users);
                list.sort_unstable();
            }
            after[step.from] = None;
        }
        after.into_iter().flatten().collect()
    }

    #[test]
    fn moves_empty_the_smallest_streams_into_the_fullest_announced_ones() {
        let current = vec![
            (1..=995).collect::<Vec<u64>>(),
            (2001..=2990).collect(),
            (3001..=3008).collect(),
            (4001..=4050).collect(),
        ];
        let moves = plan_moves(&current, &[true, true, false, false], 1000);
        assert_eq!(
            moves,
            vec![
                // The 8 users fill the fullest target first, then the next.
                Move {
                    from: 2,
                    to: vec![(0, (3001..=3005).collect()), (1, (3006..=3008).collect())]
                },
                // 50 more do not fit in the 7 places left.
            ]
        );
        // Unannounced streams never take users; announced ones can be emptied.
        let small = vec![vec![1, 2], vec![3], vec![4, 5, 6]];
        let moves = plan_moves(&small, &[false, true, false], 1000);
        assert_eq!(
            moves,
            vec![
                Move {
                    from: 0,
                    to: vec![(1, vec![1, 2])]
                },
                Move {
                    from: 2,
                    to: vec![(1, vec![4, 5, 6])]
                }
            ]
        );
        assert!(plan_moves(&small, &[false, false, false], 1000).is_empty());
        assert!(
            plan_moves(&[vec![1]], &[true], 1000).is_empty(),
            "nowhere to go"
        );
        assert!(plan_moves(&[], &[], 1000).is_empty());
    }

    #[test]
    fn every_move_plan_keeps_coverage_and_limits_and_saves_streams() {
        let mut seed = 7;
        for round in 0..500 {
            let limit = 1 + (lcg(&mut seed) % 20) as usize;
            let mut next_id = 0u64;
            let mut current = Vec::new();
            let mut announced = Vec::new();
            for _ in 0..lcg(&mut seed) % 8 {
                let len = 1 + lcg(&mut seed) % limit as u64;
                current.push((next_id..next_id + len).collect::<Vec<u64>>());
                announced.push(!lcg(&mut seed).is_multiple_of(3));
                next_id += len;
            }
            let moves = plan_moves(&current, &announced, limit);
            let after = apply_moves(&current, &moves);
            assert_eq!(covered(&after), covered(&current), "round {round}: no loss");
            assert_eq!(after.len(), current.len() - moves.len(), "round {round}");
            assert!(after.iter().all(|l| !l.is_empty() && l.len() <= limit));
            let mut sources = BTreeSet::new();
            for step in &moves {
                assert!(sources.insert(step.from), "round {round}: emptied once");
                let mut moved: Vec<u64> = step.to.iter().flat_map(|(_, u)| u.clone()).collect();
                moved.sort_unstable();
                assert_eq!(
                    moved, current[step.from],
                    "round {round}: all its users move"
                );
                for (target, _) in &step.to {
                    assert!(
                        announced[*target],
                        "round {round}: only announced streams take users"
                    );
                    assert!(
                        !sources.contains(target),
                        "round {round}: an emptied stream takes none"
                    );
                }
            }
            // Nothing more could be moved: no stream fits into the others' room.
            let moved: BTreeSet<usize> = moves.iter().map(|m| m.from).collect();
            let targets: BTreeSet<usize> = moves
                .iter()
                .flat_map(|m| m.to.iter().map(|t| t.0))
                .collect();
            let left: Vec<usize> = (0..current.len()).filter(|i| !moved.contains(i)).collect();
            let size_after = |i: usize| {
                current[i].len()
                    + moves
                        .iter()
                        .flat_map(|m| &m.to)
                        .filter(|(t, _)| *t == i)
                        .map(|(_, u)| u.len())
                        .sum::<usize>()
            };
            for &source in left.iter().filter(|i| !targets.contains(i)) {
                let room: usize = left
                    .iter()
                    .filter(|&&t| t != source && announced[t])
                    .map(|&t| limit - size_after(t))
                    .sum();
                assert!(
                    room < current[source].len(),
                    "round {round}: stream {source} could still have been emptied"
                );
            }
        }
    }
}
