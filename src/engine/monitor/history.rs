//! Per-channel balance history with bounded storage.
//!
//! Every snapshot is folded into one bucket per tier (by default a 5-minute bucket kept 7
//! days and an hourly bucket kept 180 days), averaging the local balance and keeping its min
//! and max. Tiers are fed from raw snapshots rather than from each other, so an hourly
//! average is exact rather than an average of averages. Buckets start on multiples of their
//! width (unix time), which makes a bucket's key computable from any timestamp.
//!
//! Storage bound: a tier keeps buckets whose start lies within its retention window, so it
//! holds at most `ceil(keep / bucket)` points per channel. With the default tiers that is
//! `7 * 288 + 180 * 24 = 6336` points (`MAX_POINTS_PER_CHANNEL`). Each point is a 20-byte key
//! (`POINT_KEY_BYTES`) and a value of 1 version byte + JSON: about 165 bytes for a typical
//! channel, 241 at most (`MAX_POINT_VALUE_BYTES`). A channel's history thus takes about
//! 1.2 MB, and never more than 1.65 MB (`MAX_BYTES_PER_CHANNEL`), before sled's own per-entry
//! overhead and space amplification.

use super::snapshot::ChannelSnapshot;
use crate::types::{Msat, Scid};
use serde::{Deserialize, Serialize};

/// Points per channel under the default policy (`HistoryPolicy::default()`).
pub const MAX_POINTS_PER_CHANNEL: usize = 7 * 288 + 180 * 24;
/// The store key of a point: scid (8) + bucket width (4) + bucket start (8), big-endian, so a
/// channel's points are contiguous and in time order within a tier.
pub const POINT_KEY_BYTES: usize = 20;
/// The largest stored value of a point: the record version byte plus the JSON of a point
/// whose every number has its maximum number of digits (checked by a test).
pub const MAX_POINT_VALUE_BYTES: usize = 241;
/// Upper bound on one channel's history under the default policy, keys included.
pub const MAX_BYTES_PER_CHANNEL: usize = MAX_POINTS_PER_CHANNEL * (POINT_KEY_BYTES + MAX_POINT_VALUE_BYTES);

const MAX_TIERS: usize = 8;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    #[error("channel has no short_channel_id yet; history starts once it confirms")]
    NoScid,
    #[error("invalid history tier {index}: {reason}")]
    BadTier { index: usize, reason: &'static str },
    #[error("history policy needs 1 to {MAX_TIERS} tiers, got {0}")]
    TierCount(usize),
    #[error("history key must be {POINT_KEY_BYTES} bytes, got {0}")]
    BadKey(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub bucket_secs: u32,
    pub keep_secs: u64,
}

impl Tier {
    #[cfg(test)]
    /// At most this many buckets start within any `keep_secs`-long window.
    pub(crate) fn max_points(&self) -> u64 {
        self.keep_secs.div_ceil(u64::from(self.bucket_secs.max(1)))
    }

    fn bucket_start(&self, t: u64) -> u64 {
        t - t % u64::from(self.bucket_secs.max(1))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPolicy {
    pub tiers: Vec<Tier>,
}

impl Default for HistoryPolicy {
    fn default() -> Self {
        HistoryPolicy {
            tiers: vec![
                Tier {
                    bucket_secs: 300,
                    keep_secs: 7 * 86_400,
                },
                Tier {
                    bucket_secs: 3_600,
                    keep_secs: 180 * 86_400,
                },
            ],
        }
    }
}

impl HistoryPolicy {
    pub fn validate(&self) -> Result<(), HistoryError> {
        if self.tiers.is_empty() || self.tiers.len() > MAX_TIERS {
            return Err(HistoryError::TierCount(self.tiers.len()));
        }
        for (index, t) in self.tiers.iter().enumerate() {
            let bad = |reason| Err(HistoryError::BadTier { index, reason });
            if t.bucket_secs == 0 {
                return bad("bucket_secs must be positive");
            }
            if t.keep_secs < u64::from(t.bucket_secs) {
                return bad("keep_secs must be at least one bucket");
            }
            // Two tiers of one width would write the same keys and fight over retention.
            if self.tiers[..index].iter().any(|o| o.bucket_secs == t.bucket_secs) {
                return bad("bucket_secs repeats an earlier tier");
            }
        }
        Ok(())
    }

    #[cfg(test)]
    pub(crate) fn max_points_per_channel(&self) -> u64 {
        self.tiers
            .iter()
            .map(Tier::max_points)
            .fold(0, u64::saturating_add)
    }

    fn tier(&self, bucket_secs: u32) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.bucket_secs == bucket_secs)
    }
}

/// Identifies one bucket of one channel in one tier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct HistoryKey {
    pub scid: Scid,
    pub bucket_secs: u32,
    pub start: u64,
}

impl HistoryKey {
    pub fn to_bytes(&self) -> [u8; POINT_KEY_BYTES] {
        let mut k = [0u8; POINT_KEY_BYTES];
        k[..8].copy_from_slice(&self.scid.as_u64().to_be_bytes());
        k[8..12].copy_from_slice(&self.bucket_secs.to_be_bytes());
        k[12..].copy_from_slice(&self.start.to_be_bytes());
        k
    }

    pub(crate) fn from_bytes(b: &[u8]) -> Result<HistoryKey, HistoryError> {
        let b: &[u8; POINT_KEY_BYTES] = b.try_into().map_err(|_| HistoryError::BadKey(b.len()))?;
        let mut scid = [0u8; 8];
        let mut width = [0u8; 4];
        let mut start = [0u8; 8];
        scid.copy_from_slice(&b[..8]);
        width.copy_from_slice(&b[8..12]);
        start.copy_from_slice(&b[12..]);
        Ok(HistoryKey {
            scid: Scid::from_u64(u64::from_be_bytes(scid)),
            bucket_secs: u32::from_be_bytes(width),
            start: u64::from_be_bytes(start),
        })
    }

    /// The key prefix shared by all of a channel's points, for prefix scans.
    pub(crate) fn channel_prefix(scid: Scid) -> [u8; 8] {
        scid.as_u64().to_be_bytes()
    }
}

/// One bucket of a channel's local balance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryPoint {
    pub scid: Scid,
    pub bucket_secs: u32,
    /// Unix seconds, a multiple of `bucket_secs`.
    pub start: u64,
    pub samples: u32,
    pub local_avg: Msat,
    pub local_min: Msat,
    pub local_max: Msat,
    /// As of the latest sample, so a chart can show the balance as a share.
    pub capacity: Msat,
}

impl HistoryPoint {
    pub fn key(&self) -> HistoryKey {
        HistoryKey {
            scid: self.scid,
            bucket_secs: self.bucket_secs,
            start: self.start,
        }
    }

    fn first(key: HistoryKey, local: Msat, capacity: Msat) -> HistoryPoint {
        HistoryPoint {
            scid: key.scid,
            bucket_secs: key.bucket_secs,
            start: key.start,
            samples: 1,
            local_avg: local,
            local_min: local,
            local_max: local,
            capacity,
        }
    }

    /// Folds one more sample into the running average. Keeping the average (not the sum)
    /// keeps the record small; each step truncates, yet the error never reaches 1 msat.
    fn fold(mut self, local: Msat, capacity: Msat) -> HistoryPoint {
        let n = u128::from(self.samples);
        let avg = (u128::from(self.local_avg.0) * n + u128::from(local.0)) / (n + 1);
        // The average of u64 values fits in a u64; saturate anyway rather than trust it.
        self.local_avg = Msat(u64::try_from(avg).unwrap_or(u64::MAX));
        self.local_min = self.local_min.min(local);
        self.local_max = self.local_max.max(local);
        self.samples = self.samples.saturating_add(1);
        self.capacity = capacity;
        self
    }
}

/// What to do to the store after one snapshot of one channel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryPlan {
    pub writes: Vec<HistoryPoint>,
    pub deletes: Vec<HistoryKey>,
}

/// Folds `snap` into its buckets and says which points to write and delete.
///
/// `existing` may hold any points (other channels' are ignored). To aggregate, it needs the
/// channel's points for the buckets `snap` falls in, if they exist; any of the channel's
/// points it holds are also checked for retention, so passing all of them keeps the storage
/// bound without a separate [`prune_history`] pass. Deleted are points past retention, points
/// of tiers the policy no longer has, and points from the future: a clock that stepped back
/// would otherwise leave them outside every retention window and the bound would not hold.
pub fn plan_history(
    policy: &HistoryPolicy,
    existing: &[HistoryPoint],
    snap: &ChannelSnapshot,
) -> Result<HistoryPlan, HistoryError> {
    policy.validate()?;
    let scid = snap.scid().ok_or(HistoryError::NoScid)?;
    let now = snap.time;
    let mut plan = HistoryPlan {
        writes: Vec::with_capacity(policy.tiers.len()),
        deletes: prune_history(policy, existing.iter().filter(|p| p.scid == scid), now),
    };
    for tier in &policy.tiers {
        let key = HistoryKey {
            scid,
            bucket_secs: tier.bucket_secs,
            start: tier.bucket_start(now),
        };
        let point = match existing.iter().find(|p| p.key() == key) {
            Some(p) => p.fold(snap.local, snap.capacity),
            None => HistoryPoint::first(key, snap.local, snap.capacity),
        };
        plan.writes.push(point);
    }
    Ok(plan)
}

/// Keys of the given points that the policy no longer keeps at `now` (see [`plan_history`]).
pub fn prune_history<'a>(
    policy: &HistoryPolicy,
    points: impl IntoIterator<Item = &'a HistoryPoint>,
    now: u64,
) -> Vec<HistoryKey> {
    points
        .into_iter()
        .filter(|p| match policy.tier(p.bucket_secs) {
            None => true,
            Some(t) => p.start > now || p.start.saturating_add(t.keep_secs) <= now,
        })
        .map(HistoryPoint::key)
        .collect()
}

/// The points to show for `[since, until]`: those of the finest tier whose retention still
/// reaches back to `since` (else the coarsest), in time order.
pub fn select_history(
    policy: &HistoryPolicy,
    points: &[HistoryPoint],
    since: u64,
    until: u64,
    now: u64,
) -> Vec<HistoryPoint> {
    // Sorted here rather than trusted: a hand-written policy may list tiers in any order.
    let mut tiers: Vec<&Tier> = policy.tiers.iter().collect();
    tiers.sort_by_key(|t| t.bucket_secs);
    let tier = tiers
        .iter()
        .find(|t| now.saturating_sub(t.keep_secs) <= since)
        .or(tiers.last());
    let Some(tier) = tier else {
        return Vec::new();
    };
    let mut out: Vec<HistoryPoint> = points
        .iter()
        .filter(|p| p.bucket_secs == tier.bucket_secs)
        // A bucket overlapping the start of the range still describes part of it.
        .filter(|p| p.start.saturating_add(u64::from(p.bucket_secs)) > since && p.start <= until)
        .copied()
        .collect();
    out.sort_by_key(|p| (p.scid, p.start));
    out
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::test_support::{channel, scid};
    use super::*;
    use std::collections::BTreeMap;

    const DAY: u64 = 86_400;
    const T0: u64 = 1_700_000_000 - 1_700_000_000 % DAY;

    fn snap(local: u64, time: u64) -> ChannelSnapshot {
        ChannelSnapshot::from_channel(&channel(1, 1, 10_000_000, local), 800_000, time)
    }

    /// Plays a plan against an in-memory "store".
    fn apply(db: &mut BTreeMap<HistoryKey, HistoryPoint>, plan: HistoryPlan) {
        for k in plan.deletes {
            db.remove(&k);
        }
        for p in plan.writes {
            db.insert(p.key(), p);
        }
    }

    /// What a store-backed caller would read before a snapshot at `now`: each tier's current
    /// bucket and its expired points (two range scans), not the whole history.
    fn window(
        db: &BTreeMap<HistoryKey, HistoryPoint>,
        policy: &HistoryPolicy,
        now: u64,
    ) -> Vec<HistoryPoint> {
        let mut out = Vec::new();
        for t in &policy.tiers {
            let key = |start| HistoryKey {
                scid: scid(1),
                bucket_secs: t.bucket_secs,
                start,
            };
            let cutoff = now.saturating_sub(t.keep_secs);
            out.extend(db.range(key(0)..=key(cutoff)).map(|(_, p)| *p));
            out.extend(db.get(&key(t.bucket_start(now))).copied());
        }
        out
    }

    #[test]
    fn default_policy_matches_the_stated_bound() {
        let p = HistoryPolicy::default();
        p.validate().unwrap();
        assert_eq!(p.max_points_per_channel(), MAX_POINTS_PER_CHANNEL as u64);
        assert_eq!(MAX_BYTES_PER_CHANNEL, 6336 * 261);
    }

    #[test]
    fn largest_point_fits_the_stated_value_size() {
        let p = HistoryPoint {
            scid: Scid::new((1 << 24) - 1, (1 << 24) - 1, u16::MAX).unwrap(),
            bucket_secs: u32::MAX,
            start: u64::MAX,
            samples: u32::MAX,
            local_avg: Msat(u64::MAX),
            local_min: Msat(u64::MAX),
            local_max: Msat(u64::MAX),
            capacity: Msat(u64::MAX),
        };
        assert_eq!(1 + serde_json::to_vec(&p).unwrap().len(), MAX_POINT_VALUE_BYTES);
        let typical = HistoryPoint {
            scid: Scid::new(850_000, 1_234, 1).unwrap(),
            bucket_secs: 300,
            start: T0,
            samples: 5,
            local_avg: Msat(2_500_000_000),
            local_min: Msat(2_400_000_000),
            local_max: Msat(2_600_000_000),
            capacity: Msat(5_000_000_000),
        };
        let n = 1 + serde_json::to_vec(&typical).unwrap().len();
        assert!((150..=190).contains(&n), "typical point is {n} bytes");
    }

    #[test]
    fn keys_round_trip_and_sort_by_channel_then_time() {
        let k = HistoryKey {
            scid: scid(7),
            bucket_secs: 300,
            start: T0,
        };
        assert_eq!(HistoryKey::from_bytes(&k.to_bytes()).unwrap(), k);
        assert_eq!(HistoryKey::from_bytes(&[0; 3]), Err(HistoryError::BadKey(3)));
        let later = HistoryKey { start: T0 + 300, ..k };
        assert!(k.to_bytes() < later.to_bytes());
        assert!(k.to_bytes().starts_with(&HistoryKey::channel_prefix(scid(7))));
    }

    #[test]
    fn samples_average_into_buckets_with_min_and_max() {
        let policy = HistoryPolicy::default();
        let mut db = BTreeMap::new();
        for (i, local) in [1_000u64, 3_000, 2_000, 6_000].into_iter().enumerate() {
            let all: Vec<_> = db.values().copied().collect();
            apply(
                &mut db,
                plan_history(&policy, &all, &snap(local, T0 + 60 * i as u64)).unwrap(),
            );
        }
        let five = db.values().find(|p| p.bucket_secs == 300).unwrap();
        assert_eq!(
            (five.samples, five.local_avg, five.local_min, five.local_max),
            (4, Msat(3_000), Msat(1_000), Msat(6_000))
        );
        // The next 5-minute bucket starts afresh; the hourly one keeps accumulating.
        let all: Vec<_> = db.values().copied().collect();
        apply(
            &mut db,
            plan_history(&policy, &all, &snap(10_000, T0 + 300)).unwrap(),
        );
        assert_eq!(db.values().filter(|p| p.bucket_secs == 300).count(), 2);
        let hour = db.values().find(|p| p.bucket_secs == 3_600).unwrap();
        assert_eq!(
            (hour.samples, hour.local_avg, hour.local_max),
            (5, Msat(4_400), Msat(10_000))
        );
    }

    #[test]
    fn weeks_of_snapshots_stay_within_retention_and_the_bound() {
        let policy = HistoryPolicy::default();
        let mut db = BTreeMap::new();
        // Every 5 minutes for 10 weeks; the balance follows a daily saw-tooth so buckets
        // have distinct averages.
        let end = T0 + 70 * DAY;
        let mut t = T0;
        while t < end {
            let local = 1_000_000 + (t - T0) % DAY;
            let near = window(&db, &policy, t);
            apply(&mut db, plan_history(&policy, &near, &snap(local, t)).unwrap());
            assert!(db.len() <= MAX_POINTS_PER_CHANNEL);
            t += 300;
        }
        let now = end - 300;
        let fine: Vec<_> = db.values().filter(|p| p.bucket_secs == 300).collect();
        assert_eq!(fine.len(), 7 * 288);
        assert!(fine.iter().all(|p| p.start + 7 * DAY > now && p.samples == 1));
        let hourly: Vec<_> = db.values().filter(|p| p.bucket_secs == 3_600).collect();
        assert_eq!(hourly.len(), 70 * 24);
        // Twelve 5-minute samples per hour, each exact: the hourly average is theirs.
        let h = hourly[5];
        let expect: u64 = (0..12)
            .map(|i| 1_000_000 + (h.start - T0) % DAY + 300 * i)
            .sum::<u64>()
            / 12;
        assert_eq!((h.samples, h.local_avg), (12, Msat(expect)));
    }

    #[test]
    fn half_a_year_of_hourly_snapshots_caps_the_hourly_tier() {
        let policy = HistoryPolicy::default();
        let mut db = BTreeMap::new();
        let mut t = T0;
        for _ in 0..(200 * 24) {
            let near = window(&db, &policy, t);
            apply(&mut db, plan_history(&policy, &near, &snap(5, t)).unwrap());
            t += 3_600;
        }
        assert_eq!(db.values().filter(|p| p.bucket_secs == 3_600).count(), 180 * 24);
        assert_eq!(db.values().filter(|p| p.bucket_secs == 300).count(), 7 * 24);
        assert!(db.len() <= MAX_POINTS_PER_CHANNEL);
    }

    #[test]
    fn dropped_tiers_future_points_and_other_channels_are_handled() {
        let policy = HistoryPolicy::default();
        let stray = HistoryPoint::first(
            HistoryKey {
                scid: scid(1),
                bucket_secs: 60,
                start: T0,
            },
            Msat(1),
            Msat(2),
        );
        let future = HistoryPoint {
            start: T0 + 10 * DAY,
            bucket_secs: 300,
            ..stray
        };
        let other = HistoryPoint {
            scid: scid(2),
            ..stray
        };
        let plan = plan_history(&policy, &[stray, future, other], &snap(1, T0 + 60)).unwrap();
        assert_eq!(plan.deletes, vec![stray.key(), future.key()]);
        assert_eq!(plan.writes.len(), 2);

        let mut pending = snap(1, T0);
        pending.key = super::super::ChannelKey::Pending(pending.peer);
        assert_eq!(plan_history(&policy, &[], &pending), Err(HistoryError::NoScid));
        let bad = HistoryPolicy { tiers: vec![] };
        assert_eq!(
            plan_history(&bad, &[], &snap(1, T0)),
            Err(HistoryError::TierCount(0))
        );
        let zero = HistoryPolicy {
            tiers: vec![Tier {
                bucket_secs: 0,
                keep_secs: 1,
            }],
        };
        assert!(matches!(
            zero.validate(),
            Err(HistoryError::BadTier { index: 0, .. })
        ));
    }

    #[test]
    fn selection_uses_the_finest_tier_that_reaches_back() {
        let policy = HistoryPolicy::default();
        let mut db = BTreeMap::new();
        let mut t = T0;
        while t < T0 + 20 * DAY {
            let all: Vec<_> = db.values().copied().collect();
            apply(&mut db, plan_history(&policy, &all, &snap(7, t)).unwrap());
            t += 1_800;
        }
        let all: Vec<_> = db.values().copied().collect();
        let now = t - 1_800;
        let recent = select_history(&policy, &all, now - DAY, now, now);
        assert!(recent.iter().all(|p| p.bucket_secs == 300) && !recent.is_empty());
        let old = select_history(&policy, &all, T0, now, now);
        assert!(old.iter().all(|p| p.bucket_secs == 3_600));
        assert_eq!(old.len(), 20 * 24);
        assert!(old.windows(2).all(|w| w[0].start < w[1].start));
    }
}
