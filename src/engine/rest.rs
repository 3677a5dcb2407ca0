//! Which source→sink pairs the automatic rebalance round leaves alone for a while, because
//! their last attempts failed.
//!
//! The liquidity beliefs forget within hours (they must: balances move), so a pair whose
//! routes keep failing looks worth a try again at the next hourly round, and the round
//! after. Every such attempt locks liquidity along its route while in flight and loads
//! other nodes, for nothing. So each failure in a row of the same pair doubles the time
//! it rests, up to a day, and one success ends the rest: a pair that failed once, in a
//! move that rerouted and succeeded, never rests.
//!
//! Only the automatic round consults this. `rebalance-plan` plans what the operator asks
//! for, whatever happened before.

use crate::types::Scid;
use std::collections::BTreeMap;

/// A resolved attempt as the rest rule sees it (one still in flight is no evidence either
/// way, and is left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PairAttempt {
    pub time: u64,
    pub source: Scid,
    pub sink: Scid,
    pub succeeded: bool,
}

/// Failures older than this say nothing about the channels now.
pub(crate) const MEMORY_SECS: u64 = 2 * 86_400;
/// The longest rest.
pub(crate) const MAX_REST_SECS: u64 = 86_400;
/// The rest after two failures in a row (one move that gave up); each further failure
/// doubles it. A single failure rests nothing: the move already rerouted around it.
pub(crate) const FIRST_REST_SECS: u64 = 1_800;

/// How long a pair rests after `failures` failed attempts in a row.
pub(crate) fn rest_secs(failures: u32) -> u64 {
    if failures < 2 {
        return 0;
    }
    let doublings = (failures - 2).min(16);
    (FIRST_REST_SECS << doublings).min(MAX_REST_SECS)
}

/// The pairs still resting at `now`, from `history` in time order (older first). Attempts
/// before `now - MEMORY_SECS` are ignored.
pub(crate) fn resting_pairs(history: impl IntoIterator<Item = PairAttempt>, now: u64) -> Vec<(Scid, Scid)> {
    let since = now.saturating_sub(MEMORY_SECS);
    // Per pair: failures in a row and when the last of them was.
    let mut streaks: BTreeMap<(Scid, Scid), (u32, u64)> = BTreeMap::new();
    for a in history.into_iter().filter(|a| a.time >= since) {
        let streak = streaks.entry((a.source, a.sink)).or_default();
        *streak = if a.succeeded {
            (0, 0)
        } else {
            (streak.0.saturating_add(1), a.time)
        };
    }
    streaks
        .into_iter()
        .filter(|(_, (failures, last))| now < last.saturating_add(rest_secs(*failures)))
        .map(|(pair, _)| pair)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u32) -> Scid {
        Scid::new(600_000, n, 0).unwrap()
    }

    fn at(time: u64, source: u32, sink: u32, succeeded: bool) -> PairAttempt {
        PairAttempt {
            time,
            source: s(source),
            sink: s(sink),
            succeeded,
        }
    }

    #[test]
    fn rest_doubles_per_failure_up_to_a_day() {
        assert_eq!(rest_secs(0), 0);
        assert_eq!(rest_secs(1), 0);
        assert_eq!(rest_secs(2), 1_800);
        assert_eq!(rest_secs(3), 3_600);
        assert_eq!(rest_secs(4), 7_200);
        assert_eq!(rest_secs(7), 57_600);
        assert_eq!(rest_secs(8), 86_400);
        assert_eq!(rest_secs(u32::MAX), 86_400);
    }

    #[test]
    fn failing_pairs_rest_and_a_success_ends_it() {
        let t = 1_700_000_000;
        // Pair 1→2 failed twice at t: resting for half an hour.
        let h = [at(t, 1, 2, false), at(t, 1, 2, false)];
        assert_eq!(resting_pairs(h, t + 1_799), vec![(s(1), s(2))]);
        assert!(resting_pairs(h, t + 1_800).is_empty());
        // Four in a row: two hours from the last.
        let h4 = [
            at(t, 1, 2, false),
            at(t, 1, 2, false),
            at(t + 3_600, 1, 2, false),
            at(t + 3_600, 1, 2, false),
        ];
        assert_eq!(resting_pairs(h4, t + 3_600 + 7_199), vec![(s(1), s(2))]);
        assert!(resting_pairs(h4, t + 3_600 + 7_200).is_empty());
        // A success after the failures: no rest. One failure alone rests nothing.
        let ok = [at(t, 1, 2, false), at(t, 1, 2, false), at(t, 1, 2, true)];
        assert!(resting_pairs(ok, t + 1).is_empty());
        assert!(resting_pairs([at(t, 1, 3, false)], t + 1).is_empty());
        // Another pair with the same source is not affected.
        let mixed = [at(t, 1, 2, false), at(t, 1, 2, false), at(t, 1, 3, true)];
        assert_eq!(resting_pairs(mixed, t + 1), vec![(s(1), s(2))]);
    }

    #[test]
    fn old_failures_are_forgotten() {
        let t = 1_700_000_000;
        let h: Vec<PairAttempt> = (0..10).map(|_| at(t, 1, 2, false)).collect();
        assert_eq!(resting_pairs(h.clone(), t + 86_399), vec![(s(1), s(2))]);
        assert!(resting_pairs(h.clone(), t + 86_400).is_empty());
        // Past the memory, even a streak that would still rest is not counted.
        assert!(resting_pairs(h, t + MEMORY_SECS + 1).is_empty());
    }
}
