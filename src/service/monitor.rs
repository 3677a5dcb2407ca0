//! Balance monitoring at runtime: the evaluator and the rules (both persisted), the alerts,
//! the downsampled balance history and the latest snapshot of every channel.
//!
//! The plugin hands every snapshot round to [`MonitorService::snapshot_and_evaluate`] on a
//! blocking thread; it gets back the alert transitions to deliver. Everything else here
//! answers the `monitor-*` methods.
//!
//! Storage stays bounded: each channel's history is pruned to the policy's retention on every
//! snapshot (and closed channels' history by an hourly sweep, so it drains away too); cleared
//! alerts are kept [`CLEARED_ALERT_KEEP_SECS`] and never more than [`MAX_STORED_ALERTS`]
//! alerts in all; the latest-snapshot tree holds one record per current channel.

use crate::engine::monitor::records::{
    ALERTS_TREE, CONFIG_KEY, EVALUATOR_KEY, HISTORY_TREE, POLICY_KEY, SNAPSHOTS_TREE, STATE_TREE,
};
use crate::engine::monitor::{
    plan_history, select_history, AckError, Alert, AlertId, AlertState, ChannelKey, ChannelSnapshot,
    ConfigError, Evaluator, HistoryError, HistoryKey, HistoryPoint, HistoryPolicy, MonitorConfig, Rules,
    RulesPatch, Scope, Transition,
};
use crate::node::{Channel, ChannelState};
use crate::store::{Store, StoreError, TypedTree};
use crate::types::Scid;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, MutexGuard};

/// Cleared alerts are forgotten this long after they cleared.
pub(crate) const CLEARED_ALERT_KEEP_SECS: u64 = 90 * 86_400;
/// At most this many alerts (active and cleared) are stored; the oldest cleared go first.
pub(crate) const MAX_STORED_ALERTS: usize = 10_000;
/// How often the retention sweep (closed channels' history, old alerts) runs.
pub(crate) const SWEEP_EVERY_SECS: u64 = 3_600;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Ack(#[from] AckError),
    #[error(transparent)]
    History(#[from] HistoryError),
}

/// One channel as `monitor-status` shows it: its latest snapshot and its active alerts.
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelStatus {
    pub snapshot: ChannelSnapshot,
    pub alerts: Vec<Alert>,
}

struct Inner {
    evaluator: Evaluator,
    config: MonitorConfig,
    /// The latest snapshot of every channel, from the last round.
    last: BTreeMap<ChannelKey, ChannelSnapshot>,
    last_run: Option<u64>,
    last_sweep: u64,
    rounds: u64,
}

pub struct MonitorService {
    store: Store,
    alerts: TypedTree<Alert>,
    history: TypedTree<HistoryPoint>,
    snapshots: TypedTree<ChannelSnapshot>,
    config_tree: TypedTree<MonitorConfig>,
    evaluator_tree: TypedTree<Evaluator>,
    policy: HistoryPolicy,
    /// [`MAX_STORED_ALERTS`], lowered by tests.
    alert_cap: usize,
    inner: Mutex<Inner>,
    /// Held for a whole snapshot round: two rounds must not interleave the history's
    /// read-modify-write of the same bucket.
    round: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the state consistent at each step; a panic in one is
    // no reason to stop monitoring.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A stored record that cannot be read is reported and replaced rather than fatal: losing
/// the monitor's settings must not take hold invoices down with it.
fn readable<T>(
    r: Result<Option<T>, StoreError>,
    what: &str,
    warnings: &mut Vec<String>,
) -> Result<Option<T>, StoreError> {
    match r {
        Ok(v) => Ok(v),
        Err(e @ StoreError::Corrupt { .. }) => {
            warnings.push(format!(
                "stored monitor {what} is unreadable ({e}); starting from defaults"
            ));
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

impl MonitorService {
    /// Opens the monitor's trees and restores its state. Returned strings are warnings
    /// about state that could not be restored and was reset.
    pub fn load(store: Store, now: u64) -> Result<(Self, Vec<String>), MonitorError> {
        Self::load_with_defaults(store, now, Rules::default())
    }

    /// [`MonitorService::load`] with `base` as the default rules (from the options): the
    /// stored `monitor-set default` changes are laid over them.
    pub(crate) fn load_with_defaults(
        store: Store,
        now: u64,
        base: Rules,
    ) -> Result<(Self, Vec<String>), MonitorError> {
        let alerts: TypedTree<Alert> = store.tree(ALERTS_TREE)?;
        let history: TypedTree<HistoryPoint> = store.tree(HISTORY_TREE)?;
        let snapshots: TypedTree<ChannelSnapshot> = store.tree(SNAPSHOTS_TREE)?;
        let config_tree: TypedTree<MonitorConfig> = store.tree(STATE_TREE)?;
        let policy_tree: TypedTree<HistoryPolicy> = store.tree(STATE_TREE)?;
        let evaluator_tree: TypedTree<Evaluator> = store.tree(STATE_TREE)?;
        let mut warnings = Vec::new();

        let config = match readable(config_tree.get(CONFIG_KEY), "rules", &mut warnings)? {
            Some(c) => match c.validate() {
                Ok(()) => c,
                Err(e) => {
                    warnings.push(format!(
                        "stored monitor rules no longer validate ({e}); using the defaults"
                    ));
                    MonitorConfig::default()
                }
            },
            None => MonitorConfig::default(),
        }
        .with_base(base);
        let policy = match readable(policy_tree.get(POLICY_KEY), "history policy", &mut warnings)? {
            Some(p) if p.validate().is_ok() => p,
            _ => {
                let p = HistoryPolicy::default();
                policy_tree.put(POLICY_KEY, &p)?;
                p
            }
        };
        let mut evaluator = readable(
            evaluator_tree.get(EVALUATOR_KEY),
            "evaluator state",
            &mut warnings,
        )?
        .unwrap_or_default();
        // Ids must stay unique even if the evaluator state was lost.
        if let Some(item) = alerts.iter_rev().next() {
            let (key, _) = item?;
            if let Ok(b) = <[u8; 8]>::try_from(key.as_slice()) {
                evaluator.reserve_ids_through(AlertId(u64::from_be_bytes(b)));
            }
        }
        // An alert stored as active that the evaluator does not hold (its state was lost or
        // is older than the alert) would stay "active" forever: clear it now.
        let active: HashSet<AlertId> = evaluator.active().map(|a| a.id).collect();
        let mut stale = Vec::new();
        for item in alerts.iter() {
            match item {
                Ok((_, a)) if a.is_active() && !active.contains(&a.id) => stale.push(a),
                Ok(_) => {}
                Err(e) => warnings.push(format!("skipping an unreadable stored alert: {e}")),
            }
        }
        for mut a in stale {
            a.state = AlertState::Cleared;
            a.cleared_at = Some(now.max(a.last_seen));
            alerts.put(a.store_key(), &a)?;
        }
        let mut last = BTreeMap::new();
        for item in snapshots.iter() {
            match item {
                Ok((_, s)) => {
                    last.insert(s.key, s);
                }
                Err(e) => warnings.push(format!("skipping an unreadable stored snapshot: {e}")),
            }
        }
        let svc = MonitorService {
            store,
            alerts,
            history,
            snapshots,
            config_tree,
            evaluator_tree,
            policy,
            alert_cap: MAX_STORED_ALERTS,
            inner: Mutex::new(Inner {
                evaluator,
                config,
                last,
                last_run: None,
                // The first round after start sweeps.
                last_sweep: 0,
                rounds: 0,
            }),
            round: Mutex::new(()),
        };
        svc.store.flush()?;
        Ok((svc, warnings))
    }

    pub fn policy(&self) -> &HistoryPolicy {
        &self.policy
    }

    /// Snapshots every channel the node reported, judges them against the rules, stores the
    /// alerts, the history and the snapshots, and returns what changed. `channels` must be
    /// the node's complete list: alerts of a channel missing from it clear.
    ///
    /// A history write that fails is logged and does not stop the round: the alerts matter
    /// more than one missed history sample.
    pub fn snapshot_and_evaluate(
        &self,
        channels: &[Channel],
        height: u32,
        now: u64,
    ) -> Result<Vec<Transition>, MonitorError> {
        let _round = lock(&self.round);
        let snaps: Vec<ChannelSnapshot> = channels
            .iter()
            .map(|c| ChannelSnapshot::from_channel(c, height, now))
            .collect();
        let (transitions, gone) = {
            let mut guard = lock(&self.inner);
            let inner = &mut *guard;
            let transitions = inner.evaluator.evaluate(&snaps, &inner.config, now);
            // Alerts and the evaluator are written under the lock, so an acknowledgement
            // racing this round can never be overwritten by a stale copy.
            for t in &transitions {
                self.alerts.put(t.alert().store_key(), t.alert())?;
            }
            self.evaluator_tree.put(EVALUATOR_KEY, &inner.evaluator)?;
            let mut fresh = BTreeMap::new();
            for s in &snaps {
                fresh.entry(s.key).or_insert_with(|| s.clone());
            }
            let gone: Vec<ChannelKey> = inner
                .last
                .keys()
                .filter(|k| !fresh.contains_key(k))
                .copied()
                .collect();
            inner.last = fresh;
            inner.last_run = Some(now);
            inner.rounds += 1;
            (transitions, gone)
        };
        for s in &snaps {
            if s.scid().is_none() || s.state == ChannelState::Closed {
                continue;
            }
            if let Err(e) = self.write_history(s) {
                log::warn!("monitor: history of {} not written: {e}", s.key);
            }
        }
        for s in &snaps {
            self.snapshots.put(s.key.to_string(), s)?;
        }
        for k in gone {
            self.snapshots.remove(k.to_string())?;
        }
        let sweep_due = {
            let mut inner = lock(&self.inner);
            let due = now.saturating_sub(inner.last_sweep) >= SWEEP_EVERY_SECS;
            if due {
                inner.last_sweep = now;
            }
            due
        };
        if sweep_due {
            if let Err(e) = self.sweep(now) {
                log::warn!("monitor: retention sweep failed: {e}");
            }
        }
        // Raised and cleared alerts are made durable at once; the rest rides along with
        // sled's own periodic flush.
        if sweep_due || transitions.iter().any(Transition::is_notable) {
            self.store.flush()?;
        }
        Ok(transitions)
    }

    fn key(scid: Scid, bucket_secs: u32, start: u64) -> [u8; 20] {
        HistoryKey {
            scid,
            bucket_secs,
            start,
        }
        .to_bytes()
    }

    /// The channel's points `plan_history` needs: each tier's open bucket, plus those past
    /// retention or from the future (range scans, never the whole history).
    fn nearby_points(&self, scid: Scid, now: u64) -> Result<Vec<HistoryPoint>, StoreError> {
        let mut out = Vec::new();
        for t in &self.policy.tiers {
            let width = u64::from(t.bucket_secs.max(1));
            let cutoff = now.saturating_sub(t.keep_secs);
            for item in self
                .history
                .range(Self::key(scid, t.bucket_secs, 0)..=Self::key(scid, t.bucket_secs, cutoff))
            {
                out.push(item?.1);
            }
            if let Some(p) = self
                .history
                .get(Self::key(scid, t.bucket_secs, now - now % width))?
            {
                out.push(p);
            }
            if now < u64::MAX {
                for item in self
                    .history
                    .range(Self::key(scid, t.bucket_secs, now + 1)..=Self::key(scid, t.bucket_secs, u64::MAX))
                {
                    out.push(item?.1);
                }
            }
        }
        Ok(out)
    }

    fn write_history(&self, s: &ChannelSnapshot) -> Result<(), MonitorError> {
        let Some(scid) = s.scid() else {
            return Ok(());
        };
        let existing = self.nearby_points(scid, s.time)?;
        let plan = plan_history(&self.policy, &existing, s)?;
        for k in &plan.deletes {
            self.history.remove(k.to_bytes())?;
        }
        for p in &plan.writes {
            self.history.put(p.key().to_bytes(), p)?;
        }
        Ok(())
    }

    /// Prunes every channel's history (closed channels' too) and old alerts. Returns how
    /// many records were deleted.
    pub fn sweep(&self, now: u64) -> Result<usize, MonitorError> {
        let mut deleted = 0;
        // Skip-scan: one seek per channel rather than reading every point.
        let mut from: Vec<u8> = Vec::new();
        loop {
            let Some(item) = self.history.range(from.as_slice()..).next() else {
                break;
            };
            let (key, _) = item?;
            let Ok(k) = HistoryKey::from_bytes(&key) else {
                // Not a key we wrote: remove it rather than trip over it every hour.
                self.history.remove(&key)?;
                deleted += 1;
                from = key;
                continue;
            };
            let expired: Vec<HistoryPoint> = self.nearby_points(k.scid, now)?;
            for key in crate::engine::monitor::prune_history(&self.policy, &expired, now) {
                self.history.remove(key.to_bytes())?;
                deleted += 1;
            }
            match k.scid.as_u64().checked_add(1) {
                Some(next) => from = next.to_be_bytes().to_vec(),
                None => break,
            }
        }
        deleted += self.sweep_alerts(now)?;
        Ok(deleted)
    }

    fn sweep_alerts(&self, now: u64) -> Result<usize, MonitorError> {
        let mut cleared: Vec<(Vec<u8>, u64)> = Vec::new();
        let mut total = 0usize;
        for item in self.alerts.iter() {
            let (key, a) = item?;
            total += 1;
            if !a.is_active() {
                cleared.push((key, a.cleared_at.unwrap_or(a.last_seen)));
            }
        }
        let mut deleted = 0;
        // Oldest first (keys are ids in creation order): expired ones, then as many more as
        // it takes to get under the cap.
        for (key, at) in cleared {
            let expired = at.saturating_add(CLEARED_ALERT_KEEP_SECS) <= now;
            if expired || total - deleted > self.alert_cap {
                self.alerts.remove(&key)?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// When the last round ran, and how many rounds this process ran.
    pub(crate) fn last_run(&self) -> (Option<u64>, u64) {
        let inner = lock(&self.inner);
        (inner.last_run, inner.rounds)
    }

    /// The latest snapshot of every channel, in key order.
    pub fn snapshots(&self) -> Vec<ChannelSnapshot> {
        lock(&self.inner).last.values().cloned().collect()
    }

    /// Latest snapshot and active alerts per channel; `only` picks one channel (`None` in
    /// the result's place if it is unknown).
    pub fn status(&self, only: Option<Scid>) -> Option<Vec<ChannelStatus>> {
        let inner = lock(&self.inner);
        let wanted = |s: &&ChannelSnapshot| only.is_none_or(|scid| s.scid() == Some(scid));
        let out: Vec<ChannelStatus> = inner
            .last
            .values()
            .filter(wanted)
            .map(|s| ChannelStatus {
                snapshot: s.clone(),
                alerts: inner.evaluator.active_for(s.key).cloned().collect(),
            })
            .collect();
        if only.is_some() && out.is_empty() {
            None
        } else {
            Some(out)
        }
    }

    pub(crate) fn knows_channel(&self, scid: Scid) -> bool {
        lock(&self.inner).last.contains_key(&ChannelKey::Scid(scid))
    }

    /// Active alerts, in (channel, type) order.
    pub fn active_alerts(&self) -> Vec<Alert> {
        lock(&self.inner).evaluator.active().cloned().collect()
    }

    /// Stored alerts, active and cleared, newest first.
    pub(crate) fn all_alerts(&self, limit: usize) -> Result<Vec<Alert>, MonitorError> {
        let mut out = Vec::new();
        for item in self.alerts.iter_rev().take(limit) {
            out.push(item?.1);
        }
        Ok(out)
    }

    /// Marks an active alert as seen; durable before returning.
    pub fn acknowledge(&self, id: AlertId, now: u64) -> Result<Alert, MonitorError> {
        let alert = {
            let mut inner = lock(&self.inner);
            let a = inner.evaluator.acknowledge(id, now)?;
            self.alerts.put(a.store_key(), &a)?;
            self.evaluator_tree.put(EVALUATOR_KEY, &inner.evaluator)?;
            a
        };
        self.store.flush()?;
        Ok(alert)
    }

    /// The points to show for `[since, until]`, from the finest tier that reaches back.
    pub fn history(
        &self,
        scid: Scid,
        since: u64,
        until: u64,
        now: u64,
    ) -> Result<Vec<HistoryPoint>, MonitorError> {
        let points = self.channel_history(scid)?;
        Ok(select_history(&self.policy, &points, since, until, now))
    }

    /// Every stored point of one channel (all tiers), in key order.
    pub(crate) fn channel_history(&self, scid: Scid) -> Result<Vec<HistoryPoint>, MonitorError> {
        let mut out = Vec::new();
        for item in self.history.scan_prefix(HistoryKey::channel_prefix(scid)) {
            out.push(item?.1);
        }
        Ok(out)
    }

    /// The scids that have any history, closed channels included.
    pub(crate) fn channels_with_history(&self) -> Result<Vec<Scid>, MonitorError> {
        let mut out = Vec::new();
        let mut from: Vec<u8> = Vec::new();
        loop {
            let Some(item) = self.history.range(from.as_slice()..).next() else {
                break;
            };
            let (key, _) = item?;
            let Ok(k) = HistoryKey::from_bytes(&key) else {
                let mut next = key;
                next.push(0);
                from = next;
                continue;
            };
            out.push(k.scid);
            match k.scid.as_u64().checked_add(1) {
                Some(next) => from = next.to_be_bytes().to_vec(),
                None => break,
            }
        }
        Ok(out)
    }

    pub fn config(&self) -> MonitorConfig {
        lock(&self.inner).config.clone()
    }

    /// Lays `patch` over the rules at `scope` and persists them (flushed). All or nothing.
    pub fn set_rules(&self, scope: Scope, patch: &RulesPatch) -> Result<MonitorConfig, MonitorError> {
        let cfg = {
            let mut inner = lock(&self.inner);
            let mut cfg = inner.config.clone();
            cfg.apply(scope, patch)?;
            self.config_tree.put(CONFIG_KEY, &cfg)?;
            inner.config = cfg.clone();
            cfg
        };
        self.store.flush()?;
        Ok(cfg)
    }

    /// Drops the overrides at `scope` (or restores the built-in defaults); persisted.
    /// Returns whether anything changed.
    pub(crate) fn reset_rules(&self, scope: Scope) -> Result<bool, MonitorError> {
        let changed = {
            let mut inner = lock(&self.inner);
            let mut cfg = inner.config.clone();
            let changed = cfg.reset(scope);
            if changed {
                self.config_tree.put(CONFIG_KEY, &cfg)?;
                inner.config = cfg;
            }
            changed
        };
        if changed {
            self.store.flush()?;
        }
        Ok(changed)
    }

    pub fn flush(&self) -> Result<(), MonitorError> {
        self.store.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::monitor::{AlertKind, MAX_POINTS_PER_CHANNEL};
    use crate::node::{HtlcDirection, PendingHtlc};
    use crate::types::{Msat, NodeId, PaymentHash};

    const DAY: u64 = 86_400;
    const T0: u64 = 1_700_000_000 - 1_700_000_000 % DAY;

    fn node(n: u8) -> NodeId {
        let mut b = [n; 33];
        b[0] = 2;
        NodeId(b)
    }

    fn scid(n: u32) -> Scid {
        Scid::new(700_000 + n, n, 0).unwrap()
    }

    fn channel(n: u32, capacity: u64, local: u64) -> Channel {
        Channel {
            scid: Some(scid(n)),
            peer: node(n as u8),
            peer_connected: true,
            state: ChannelState::Normal,
            raw_state: "CHANNELD_NORMAL".into(),
            capacity: Msat(capacity),
            local: Msat(local),
            remote: Msat(capacity - local),
            spendable: Msat(local),
            receivable: Msat(capacity - local),
            htlcs: vec![],
            fee_base: Msat(1_000),
            fee_ppm: 10,
            remote_policy: None,
            private: false,
        }
    }

    fn open(path: &std::path::Path, now: u64) -> MonitorService {
        let store = Store::open(path, now).unwrap();
        let (svc, warnings) = MonitorService::load(store, now).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        svc
    }

    /// Without the balance-change rule, which a test that swings balances would trip too.
    fn open_quiet(path: &std::path::Path, now: u64) -> MonitorService {
        let svc = open(path, now);
        let off: RulesPatch = serde_json::from_str(r#"{"balance_change":{"enabled":false}}"#).unwrap();
        svc.set_rules(Scope::Default, &off).unwrap();
        svc
    }

    fn kinds(ts: &[Transition]) -> Vec<(&'static str, AlertKind)> {
        ts.iter()
            .map(|t| {
                let tag = match t {
                    Transition::Raised(_) => "raised",
                    Transition::Updated(_) => "updated",
                    Transition::Cleared(_) => "cleared",
                };
                (tag, t.alert().kind)
            })
            .collect()
    }

    #[test]
    fn alerts_raise_once_update_clear_and_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let drained = channel(1, 1_000_000, 10_000);
        let id = {
            let svc = open_quiet(&path, T0);
            let t = svc
                .snapshot_and_evaluate(std::slice::from_ref(&drained), 800_000, T0)
                .unwrap();
            assert_eq!(kinds(&t), vec![("raised", AlertKind::LowLocal)]);
            for i in 1..50 {
                let t = svc
                    .snapshot_and_evaluate(std::slice::from_ref(&drained), 800_000, T0 + i)
                    .unwrap();
                assert_eq!(kinds(&t), vec![("updated", AlertKind::LowLocal)]);
            }
            let active = svc.active_alerts();
            assert_eq!(active.len(), 1);
            assert_eq!(active[0].count, 50);
            let acked = svc.acknowledge(active[0].id, T0 + 60).unwrap();
            assert_eq!(acked.acknowledged_at, Some(T0 + 60));
            assert!(matches!(
                svc.acknowledge(AlertId(999), T0),
                Err(MonitorError::Ack(_))
            ));
            active[0].id
        };
        // Restart: the standing alert is remembered (no second "raised"), ack included.
        let svc = open(&path, T0 + 100);
        assert_eq!(svc.snapshots().len(), 1, "latest snapshots restored");
        let t = svc
            .snapshot_and_evaluate(std::slice::from_ref(&drained), 800_000, T0 + 100)
            .unwrap();
        assert_eq!(kinds(&t), vec![("updated", AlertKind::LowLocal)]);
        assert_eq!(t[0].alert().id, id);
        assert!(t[0].alert().is_acknowledged());
        // Refilled: cleared, stored as such.
        let t = svc
            .snapshot_and_evaluate(&[channel(1, 1_000_000, 500_000)], 800_000, T0 + 200)
            .unwrap();
        assert_eq!(kinds(&t), vec![("cleared", AlertKind::LowLocal)]);
        assert!(svc.active_alerts().is_empty());
        let all = svc.all_alerts(10).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(
            (all[0].state, all[0].cleared_at),
            (AlertState::Cleared, Some(T0 + 200))
        );
        // Drained again: a new alert with a new id.
        let t = svc
            .snapshot_and_evaluate(std::slice::from_ref(&drained), 800_000, T0 + 300)
            .unwrap();
        assert!(t[0].alert().id > id);
        assert_eq!(svc.all_alerts(10).unwrap().len(), 2);
    }

    #[test]
    fn lost_evaluator_state_clears_stored_active_alerts_and_keeps_ids_unique() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let old_id = {
            let svc = open(&path, T0);
            let t = svc
                .snapshot_and_evaluate(&[channel(1, 1_000_000, 1)], 1, T0)
                .unwrap();
            let tree: TypedTree<Evaluator> = svc.store.tree(STATE_TREE).unwrap();
            tree.remove(EVALUATOR_KEY).unwrap();
            svc.flush().unwrap();
            t[0].alert().id
        };
        let svc = open(&path, T0 + 10);
        let stored = svc.all_alerts(10).unwrap();
        assert_eq!(
            (stored[0].state, stored[0].cleared_at),
            (AlertState::Cleared, Some(T0 + 10))
        );
        let t = svc
            .snapshot_and_evaluate(&[channel(1, 1_000_000, 1)], 1, T0 + 20)
            .unwrap();
        assert!(matches!(&t[0], Transition::Raised(a) if a.id > old_id));
    }

    #[test]
    fn per_channel_override_beats_peer_and_default_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        {
            let svc = open(&path, T0);
            let off: RulesPatch = serde_json::from_str(r#"{"low_local":{"enabled":false}}"#).unwrap();
            let on: RulesPatch =
                serde_json::from_str(r#"{"low_local":{"enabled":true,"limit":{"msat":500000}}}"#).unwrap();
            svc.set_rules(Scope::Default, &off).unwrap();
            svc.set_rules(Scope::Peer(node(2)), &off).unwrap();
            svc.set_rules(Scope::Channel(scid(2)), &on).unwrap();
            let bad: RulesPatch = serde_json::from_str(r#"{"low_local":{"limit":{"ratio":2}}}"#).unwrap();
            assert!(matches!(
                svc.set_rules(Scope::Default, &bad),
                Err(MonitorError::Config(_))
            ));
        }
        let svc = open(&path, T0);
        // 40% local: under the channel's 500 000 msat limit, over nothing else.
        let chans = [channel(1, 1_000_000, 400_000), channel(2, 1_000_000, 400_000)];
        let t = svc.snapshot_and_evaluate(&chans, 1, T0).unwrap();
        assert_eq!(kinds(&t), vec![("raised", AlertKind::LowLocal)]);
        assert_eq!(t[0].alert().channel, ChannelKey::Scid(scid(2)));
        assert!(svc.reset_rules(Scope::Channel(scid(2))).unwrap());
        assert!(!svc.reset_rules(Scope::Channel(scid(2))).unwrap());
        let t = svc.snapshot_and_evaluate(&chans, 1, T0 + 1).unwrap();
        assert_eq!(kinds(&t), vec![("cleared", AlertKind::LowLocal)]);
    }

    #[test]
    fn history_is_downsampled_and_kept_within_retention() {
        let dir = tempfile::tempdir().unwrap();
        let svc = open(&dir.path().join("s"), T0);
        let mut gone = channel(2, 1_000_000, 1);
        gone.peer_connected = true;
        // Every 30 minutes for 200 days (9 600 rounds, two channels); channel 2 closes after
        // 10 days and its history must drain away by retention too.
        let mut t = T0;
        let end = T0 + 200 * DAY;
        while t < end {
            let local = 100_000 + (t - T0) % DAY;
            let mut chans = vec![channel(1, 1_000_000, local)];
            if t < T0 + 10 * DAY {
                chans.push(gone.clone());
            }
            svc.snapshot_and_evaluate(&chans, 1, t).unwrap();
            t += 1_800;
        }
        let now = t - 1_800;
        let points = svc.channel_history(scid(1)).unwrap();
        assert!(points.len() <= MAX_POINTS_PER_CHANNEL);
        let fine = points.iter().filter(|p| p.bucket_secs == 300).count();
        let hourly = points.iter().filter(|p| p.bucket_secs == 3_600).count();
        assert_eq!(fine, 7 * 48, "one 5-minute point per 30-minute snapshot, 7 days");
        assert_eq!(hourly, 180 * 24);
        assert!(points.iter().all(|p| p.start + 180 * DAY > now));
        let h = points.iter().find(|p| p.bucket_secs == 3_600).unwrap();
        assert_eq!(h.samples, 2);
        // Closed 190 days ago: past every tier's retention, swept away.
        assert!(svc.channel_history(scid(2)).unwrap().is_empty());
        assert_eq!(svc.channels_with_history().unwrap(), vec![scid(1)]);
        // Selection: the last day comes from the 5-minute tier, a month from the hourly one.
        let day = svc.history(scid(1), now - DAY, now, now).unwrap();
        assert!(!day.is_empty() && day.iter().all(|p| p.bucket_secs == 300));
        let month = svc.history(scid(1), now - 30 * DAY, now, now).unwrap();
        assert_eq!(month.len(), 30 * 24 + 1);
    }

    #[test]
    fn cleared_alerts_are_capped_and_expire() {
        let dir = tempfile::tempdir().unwrap();
        let svc = open_quiet(&dir.path().join("s"), T0);
        let up = channel(1, 1_000_000, 500_000);
        let down = channel(1, 1_000_000, 1);
        for i in 0..20u64 {
            svc.snapshot_and_evaluate(std::slice::from_ref(&down), 1, T0 + 10 * i)
                .unwrap();
            svc.snapshot_and_evaluate(std::slice::from_ref(&up), 1, T0 + 10 * i + 5)
                .unwrap();
        }
        assert_eq!(svc.all_alerts(1_000).unwrap().len(), 20);
        svc.snapshot_and_evaluate(std::slice::from_ref(&down), 1, T0 + 1_000)
            .unwrap();
        // Over the cap: the oldest cleared alerts go, never the active one.
        let mut svc = svc;
        svc.alert_cap = 5;
        svc.sweep(T0 + 1_001).unwrap();
        let kept = svc.all_alerts(1_000).unwrap();
        assert_eq!(kept.len(), 5);
        assert!(kept[0].is_active());
        assert!(kept.windows(2).all(|w| w[0].id > w[1].id), "newest kept");
        assert_eq!(kept[4].id, AlertId(17));
        // 90 days later everything cleared is gone; the standing alert stays.
        let later = T0 + CLEARED_ALERT_KEEP_SECS + 2_000;
        svc.snapshot_and_evaluate(std::slice::from_ref(&down), 1, later)
            .unwrap();
        let left = svc.all_alerts(1_000).unwrap();
        assert_eq!(left.len(), 1);
        assert!(left[0].is_active());
    }

    #[test]
    fn status_pending_channels_and_htlcs() {
        let dir = tempfile::tempdir().unwrap();
        let svc = open(&dir.path().join("s"), T0);
        let mut pending = channel(3, 2_000_000, 2_000_000);
        pending.scid = None;
        pending.state = ChannelState::Opening;
        let mut busy = channel(4, 2_000_000, 1_000_000);
        busy.htlcs = vec![PendingHtlc {
            direction: HtlcDirection::Out,
            id: 1,
            amount: Msat(5_000),
            expiry: 810,
            payment_hash: PaymentHash([1; 32]),
        }];
        svc.snapshot_and_evaluate(&[pending, busy], 800, T0).unwrap();
        let all = svc.status(None).unwrap();
        assert_eq!(all.len(), 2);
        let one = svc.status(Some(scid(4))).unwrap();
        assert_eq!(one[0].snapshot.htlcs_out, 1);
        // 10 blocks to expiry: under the default 18.
        assert_eq!(one[0].alerts[0].kind, AlertKind::HtlcNearExpiry);
        assert!(svc.status(Some(scid(9))).is_none());
        assert!(svc.knows_channel(scid(4)) && !svc.knows_channel(scid(3)));
        // No history for the unconfirmed channel.
        assert_eq!(svc.channels_with_history().unwrap(), vec![scid(4)]);
        // A channel that disappears: its alerts clear and its snapshot goes.
        let t = svc.snapshot_and_evaluate(&[], 800, T0 + 1).unwrap();
        assert!(t.iter().all(|t| matches!(t, Transition::Cleared(_))) && !t.is_empty());
        assert!(svc.status(None).unwrap().is_empty());
    }
}
