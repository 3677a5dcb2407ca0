//! Fee policy at runtime: the active policy, per-channel flow and update times, the
//! coalescer that turns forward bursts into one decision, and the change history.

use crate::engine::fees::{
    decide, ChannelFee, ChannelInputs, Coalescer, DecideCtx, FeeChange, FeeConfig, FeeDecision, Flow, Policy,
    PolicyError, Status, Trigger, BUILTIN_SOURCE,
};
use crate::node::{Channel, ChannelState, FeeUpdate, Node, NodeError};
use crate::service::rebalance::RebalanceService;
use crate::store::{Record, Store, StoreError, TypedTree};
use crate::types::{Msat, Scid};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

/// How far back rebalance costs count for the `cost-floor` strategy.
pub(crate) const COST_WINDOW_SECS: u64 = 7 * 86_400;

/// A channel whose fee ballast manages: confirmed and in normal operation.
pub(crate) fn manageable(c: &Channel) -> bool {
    c.scid.is_some() && c.state == ChannelState::Normal
}

impl Record for FeeChange {
    const VERSION: u8 = 1;
}

/// The policy in force, as persisted, with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredPolicy {
    pub policy: serde_json::Value,
    pub source: String,
    pub set_at: u64,
}

impl Record for StoredPolicy {
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LastUpdate {
    pub at: u64,
}

impl Record for LastUpdate {
    const VERSION: u8 = 1;
}

const POLICY_TREE: &str = "fee_policy";
const HISTORY_TREE: &str = "fee_history";
const LAST_TREE: &str = "fee_last_update";
const POLICY_KEY: &[u8] = b"active";
/// Flow is kept in buckets this wide: bounded memory however busy a channel is.
const FLOW_BUCKET_SECS: u64 = 300;

#[derive(Debug, thiserror::Error)]
pub enum FeeServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("policy rejected: {0}")]
    Policy(#[from] PolicyError),
    #[error("cannot read policy file {path}: {reason}")]
    File { path: String, reason: String },
}

/// Why acting on a fee decision stopped.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ActError {
    /// The node refused the new fee: nothing was recorded.
    #[error("{0}")]
    Node(NodeError),
    /// The node took the fee but the store could not record it.
    #[error(transparent)]
    Service(#[from] FeeServiceError),
}

struct State {
    policy: Policy,
    source: String,
    coalescer: Coalescer,
    /// Per channel: bucket start → (in msat, out msat).
    flows: HashMap<Scid, BTreeMap<u64, (u64, u64)>>,
    last_update: HashMap<Scid, u64>,
}

pub struct FeeService {
    store: Store,
    policy_tree: TypedTree<StoredPolicy>,
    history: TypedTree<FeeChange>,
    last_tree: TypedTree<LastUpdate>,
    state: Mutex<State>,
    cfg: FeeConfig,
    flow_window_secs: u64,
    started_at: u64,
    seq: AtomicU64,
    /// `ballast-fee-policy-file`, resolved: `fee-policy file=` may read it again.
    configured_file: Option<std::path::PathBuf>,
}

/// Reads and validates a TOML policy file; the error names the line and the reason.
pub(crate) fn read_policy_file(path: &Path) -> Result<Policy, FeeServiceError> {
    let text = std::fs::read_to_string(path).map_err(|e| FeeServiceError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Policy::from_toml(&text).map_err(|e| FeeServiceError::File {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

impl FeeService {
    /// Loads the stored policy, then the policy file if one is configured. A bad file is
    /// reported and the stored policy stays in force; the returned strings are warnings.
    pub fn load(
        store: Store,
        cfg: FeeConfig,
        flow_window_secs: u64,
        policy_file: Option<&Path>,
        now: u64,
    ) -> Result<(Self, Vec<String>), FeeServiceError> {
        let policy_tree: TypedTree<StoredPolicy> = store.tree(POLICY_TREE)?;
        let history = store.tree(HISTORY_TREE)?;
        let last_tree: TypedTree<LastUpdate> = store.tree(LAST_TREE)?;
        let mut warnings = Vec::new();
        // Fee records hold no money: an unreadable one is reported and passed over. Like a
        // policy that no longer validates, it leaves no policy in force rather than a
        // default the operator did not choose.
        let mut unreadable = false;
        let stored = policy_tree.get_readable(POLICY_KEY, |e| {
            unreadable = true;
            warnings.push(format!(
                "stored fee policy is unreadable ({e}); no policy in force"
            ))
        })?;
        let (mut policy, mut source) = match stored {
            None if unreadable => (Policy::new(Vec::new())?, "none".to_string()),
            // Chosen again by name: the built-in policy of this version, not a stored copy.
            Some(sp) if sp.source == BUILTIN_SOURCE => (Policy::builtin()?, sp.source),
            Some(sp) => match Policy::from_json_value(sp.policy.clone()) {
                Ok(p) => (p, sp.source),
                Err(e) => {
                    // The operator's own policy is broken: no fee changes until they fix
                    // it, rather than a default they did not choose.
                    warnings.push(format!(
                        "stored fee policy no longer validates ({e}); no policy in force"
                    ));
                    (Policy::new(Vec::new())?, "none".to_string())
                }
            },
            // Nothing set yet: fees follow the balance out of the box.
            None => (Policy::builtin()?, BUILTIN_SOURCE.to_string()),
        };
        if let Some(path) = policy_file {
            match read_policy_file(path) {
                Ok(p) => {
                    policy = p;
                    source = format!("file {}", path.display());
                    policy_tree.put(
                        POLICY_KEY,
                        &StoredPolicy {
                            policy: policy.to_json(),
                            source: source.clone(),
                            set_at: now,
                        },
                    )?;
                }
                Err(e) => warnings.push(format!("{e}; keeping the previous policy ({source})")),
            }
        }
        let mut coalescer = Coalescer::new(&cfg, now);
        let mut last_update = HashMap::new();
        let mut skipped = Vec::new();
        for item in last_tree.iter_readable(|e| skipped.push(e)) {
            let (key, lu) = item?;
            if let Some(scid) = key.try_into().ok().map(u64::from_be_bytes).map(Scid::from_u64) {
                coalescer.record_applied(scid, lu.at);
                last_update.insert(scid, lu.at);
            }
        }
        warnings.extend(
            skipped
                .iter()
                .map(|e| format!("skipping an unreadable fee update record: {e}")),
        );
        let seq = history.len() as u64;
        Ok((
            FeeService {
                store,
                policy_tree,
                history,
                last_tree,
                state: Mutex::new(State {
                    policy,
                    source,
                    coalescer,
                    flows: HashMap::new(),
                    last_update,
                }),
                cfg,
                flow_window_secs,
                started_at: now,
                seq: AtomicU64::new(seq),
                configured_file: policy_file.map(Path::to_path_buf),
            },
            warnings,
        ))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The policy file named by `ballast-fee-policy-file`, if any.
    pub(crate) fn configured_file(&self) -> Option<&Path> {
        self.configured_file.as_deref()
    }

    pub fn config(&self) -> &FeeConfig {
        &self.cfg
    }

    pub fn policy(&self) -> (serde_json::Value, String) {
        let s = self.lock();
        (s.policy.to_json(), s.source.clone())
    }

    /// Replaces the policy in force (already validated by construction) and persists it.
    pub(crate) fn set_policy(&self, policy: Policy, source: String, now: u64) -> Result<(), FeeServiceError> {
        self.policy_tree.put(
            POLICY_KEY,
            &StoredPolicy {
                policy: policy.to_json(),
                source: source.clone(),
                set_at: now,
            },
        )?;
        self.store.flush()?;
        let mut s = self.lock();
        s.policy = policy;
        s.source = source;
        Ok(())
    }

    /// Turns automatic fees off for this run (`ballast-fee-policy-file=off`): an empty
    /// policy, not persisted, so the stored one is back once the option is removed.
    pub(crate) fn turn_off(&self, source: String) {
        let mut s = self.lock();
        s.policy = Policy::default();
        s.source = source;
    }

    /// Notes a settled forward: flow on both channels, and a decision scheduled for each.
    pub(crate) fn on_forward(
        &self,
        in_channel: Scid,
        out_channel: Option<Scid>,
        in_msat: Msat,
        out_msat: Msat,
        now: u64,
    ) {
        self.on_forward_at(in_channel, out_channel, in_msat, out_msat, now, now)
    }

    /// A forward that settled at `at`, learned at `now` (a catch-up from the node's
    /// history): its flow counts where it happened, its decision is scheduled from now.
    pub(crate) fn on_forward_at(
        &self,
        in_channel: Scid,
        out_channel: Option<Scid>,
        in_msat: Msat,
        out_msat: Msat,
        at: u64,
        now: u64,
    ) {
        let mut s = self.lock();
        let at = at.min(now);
        let bucket = at - at % FLOW_BUCKET_SECS;
        let horizon = now.saturating_sub(self.flow_window_secs);
        let add = |s: &mut State, scid: Scid, inn: u64, out: u64| {
            let series = s.flows.entry(scid).or_default();
            let e = series.entry(bucket).or_insert((0, 0));
            e.0 = e.0.saturating_add(inn);
            e.1 = e.1.saturating_add(out);
            // Old buckets go as new ones come: memory stays window / bucket per channel.
            while series
                .first_key_value()
                .is_some_and(|(t, _)| *t + FLOW_BUCKET_SECS <= horizon)
            {
                series.pop_first();
            }
            s.coalescer.on_event(scid, now);
        };
        add(&mut s, in_channel, in_msat.0, 0);
        if let Some(out) = out_channel {
            add(&mut s, out, 0, out_msat.0);
        }
    }

    /// Channels whose coalesced decision is due.
    pub fn take_due(&self, now: u64) -> Vec<Scid> {
        self.lock()
            .coalescer
            .take_due(now)
            .into_iter()
            .map(|(scid, _)| scid)
            .collect()
    }

    pub fn pending_decisions(&self) -> usize {
        self.lock().coalescer.pending_len()
    }

    fn flow(&self, s: &State, scid: Scid, now: u64) -> Flow {
        let horizon = now.saturating_sub(self.flow_window_secs);
        let (mut inn, mut out) = (0u64, 0u64);
        if let Some(series) = s.flows.get(&scid) {
            for (_, (i, o)) in series.range(horizon - horizon % FLOW_BUCKET_SECS..) {
                inn = inn.saturating_add(*i);
                out = out.saturating_add(*o);
            }
        }
        Flow {
            in_msat: Msat(inn),
            out_msat: Msat(out),
            window_secs: self.flow_window_secs,
        }
    }

    /// Decides one of our channels. `None` for channels that cannot carry a fee yet.
    /// `rebalance_cost_ppm` is what moving liquidity into it cost recently (cost floor).
    pub fn decide(
        &self,
        ch: &Channel,
        rebalance_cost_ppm: Option<u32>,
        peer_channels: Option<u32>,
        now: u64,
        force: bool,
    ) -> Option<FeeDecision> {
        let scid = ch.scid?;
        let s = self.lock();
        let inputs = ChannelInputs {
            scid,
            peer: ch.peer,
            capacity: ch.capacity,
            local: ch.local,
            pending_htlcs: u32::try_from(ch.htlcs.len()).unwrap_or(u32::MAX),
            flow: self.flow(&s, scid, now),
            rebalance_cost_ppm,
            peer_channels,
            current: ChannelFee {
                base_msat: ch.fee_base,
                ppm: ch.fee_ppm,
                cltv_delta: None,
            },
            last_update: s.last_update.get(&scid).copied(),
        };
        Some(decide(
            &s.policy,
            &self.cfg,
            &inputs,
            DecideCtx {
                now,
                started_at: self.started_at,
                force,
            },
        ))
    }

    /// Decides `ch` with what the rebalancer knows: what moving liquidity into it cost over
    /// the last [`COST_WINDOW_SECS`] (the cost floor) and how many channels its peer has.
    /// Every caller decides through here, so the plugin's loop, the `fee-*` methods and the
    /// simulator see the same inputs.
    pub(crate) fn decide_with(
        &self,
        ch: &Channel,
        rebalance: &RebalanceService,
        now: u64,
        force: bool,
    ) -> Option<FeeDecision> {
        let cost = ch.scid.and_then(|scid| {
            rebalance
                .recent_cost_ppm(scid, now.saturating_sub(COST_WINDOW_SECS))
                .unwrap_or_else(|e| {
                    log::warn!("rebalance cost of {scid} unreadable: {e}");
                    None
                })
        });
        let peer_channels = rebalance.node_channels(&ch.peer);
        self.decide(ch, cost, peer_channels, now, force)
    }

    /// One step of the automatic fee loop over the node's `channels`: the decision for
    /// `only` (a channel a forward made due) or, for the periodic sweep, for every channel
    /// ballast manages. The caller acts on each (`setchannel`, then [`FeeService::record`]).
    pub fn step(
        &self,
        channels: &[Channel],
        only: Option<Scid>,
        rebalance: &RebalanceService,
        now: u64,
    ) -> Vec<FeeDecision> {
        channels
            .iter()
            .filter(|c| manageable(c) && only.is_none_or(|scid| c.scid == Some(scid)))
            .filter_map(|c| self.decide_with(c, rebalance, now, false))
            .collect()
    }

    /// Records a decision that was applied (or dry-run). Durable before returning.
    pub fn record(
        &self,
        d: &FeeDecision,
        trigger: Trigger,
        now: u64,
    ) -> Result<Option<FeeChange>, FeeServiceError> {
        let Some(change) = FeeChange::from_decision(d, trigger, now) else {
            return Ok(None);
        };
        let seq = self.seq.fetch_add(1, Ordering::Relaxed);
        let mut key = now.to_be_bytes().to_vec();
        key.extend_from_slice(&seq.to_be_bytes());
        self.history.put(key, &change)?;
        if !change.dry_run {
            self.last_tree
                .put(d.scid.as_u64().to_be_bytes(), &LastUpdate { at: now })?;
        }
        // A dry-run change is rate-limited as if it had been applied (in memory only, as
        // nothing reached the node): the history shows what live mode would do, one entry
        // per min-interval, instead of one per forward.
        let mut s = self.lock();
        s.coalescer.record_applied(d.scid, now);
        s.last_update.insert(d.scid, now);
        self.store.flush()?;
        Ok(Some(change))
    }

    /// Acts on a decision the way the plugin's fee loop and `fee-apply` do, and the
    /// simulator with them: one that applies goes to the node first and is recorded only
    /// once the node took it; a dry run is only recorded; any other is left alone
    /// (`Ok(None)`, nothing recorded).
    pub(crate) async fn act<N: Node>(
        &self,
        node: &N,
        d: &FeeDecision,
        trigger: Trigger,
        now: u64,
    ) -> Result<Option<FeeChange>, ActError> {
        if d.status.applies() {
            let fee = FeeUpdate {
                base: d.target.base_msat,
                ppm: d.target.ppm,
            };
            node.set_fee(d.scid, fee).await.map_err(ActError::Node)?;
        } else if d.status != Status::DryRun {
            return Ok(None);
        }
        Ok(super::blocking(|| self.record(d, trigger, now))?)
    }

    /// Changes, newest first.
    pub fn history(&self, scid: Option<Scid>, limit: usize) -> Result<Vec<FeeChange>, FeeServiceError> {
        let mut out = Vec::new();
        for item in self.history.iter_rev() {
            let (_, c) = item?;
            if scid.is_none_or(|s| s == c.scid) {
                out.push(c);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// When ballast last applied a fee to `scid`.
    pub fn last_update(&self, scid: Scid) -> Option<u64> {
        self.lock().last_update.get(&scid).copied()
    }

    /// When a held decision may next be applied.
    pub(crate) fn next_allowed(&self, scid: Scid) -> u64 {
        self.lock().coalescer.next_allowed(scid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::ChannelState;
    use crate::types::NodeId;

    fn channel(scid: Scid, local: u64, ppm: u32) -> Channel {
        Channel {
            scid: Some(scid),
            peer: NodeId([2; 33]),
            peer_connected: true,
            state: ChannelState::Normal,
            raw_state: "CHANNELD_NORMAL".into(),
            capacity: Msat(1_000_000_000),
            local: Msat(local),
            remote: Msat(1_000_000_000 - local),
            spendable: Msat(local),
            receivable: Msat(1_000_000_000 - local),
            htlcs: vec![],
            fee_base: Msat(1000),
            fee_ppm: ppm,
            remote_policy: None,
            private: false,
        }
    }

    const POLICY: &str = r#"
[defaults]
min_ppm = 10
max_ppm = 1000
[[rule]]
name = "all"
strategy = { type = "balance", curve = "linear", empty_ppm = 1000, full_ppm = 10 }
"#;

    #[test]
    fn policy_history_and_rate_limit_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let file = dir.path().join("policy.toml");
        std::fs::write(&file, POLICY).unwrap();
        let scid = Scid::new(100, 1, 0).unwrap();
        let cfg = FeeConfig::default();
        {
            let store = Store::open(&path, 0).unwrap();
            let (svc, warnings) = FeeService::load(store, cfg, 86_400, Some(&file), 0).unwrap();
            assert!(warnings.is_empty(), "{warnings:?}");
            // Past the startup hold; drained channel → high fee.
            let d = svc
                .decide(&channel(scid, 50_000_000, 100), None, None, 10_000, false)
                .unwrap();
            assert!(d.status.applies(), "{d}");
            assert!(d.target.ppm > 500, "{d}");
            let c = svc.record(&d, Trigger::Forward, 10_000).unwrap().unwrap();
            assert_eq!(c.new.ppm, d.target.ppm);
        }
        // A broken file on restart: reported, previous policy kept.
        std::fs::write(&file, "[[rule]]\nname = 'x'\nstrategy = { type = 'blance' }\n").unwrap();
        let store = Store::open(&path, 0).unwrap();
        let (svc, warnings) = FeeService::load(store, cfg, 86_400, Some(&file), 10_100).unwrap();
        assert!(warnings.iter().any(|w| w.contains("line")), "{warnings:?}");
        assert!(svc.policy().1.contains("policy.toml"));
        assert_eq!(svc.history(Some(scid), 10).unwrap().len(), 1);
        assert_eq!(svc.last_update(scid), Some(10_000));
        // Rate limit (and the startup hold) remembered across the restart: nothing before
        // an hour after the last update.
        let d = svc
            .decide(&channel(scid, 900_000_000, 900), None, None, 12_000, false)
            .unwrap();
        assert!(!d.status.applies(), "{d}");
        assert!(d.status.not_before() >= Some(13_600), "{d}");
        assert!(svc.next_allowed(scid) >= 13_600);
    }

    #[test]
    fn a_burst_of_forwards_schedules_one_decision_and_counts_flow() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s"), 0).unwrap();
        let (svc, _) = FeeService::load(store, FeeConfig::default(), 3_600, None, 0).unwrap();
        let a = Scid::new(1, 1, 1).unwrap();
        let b = Scid::new(2, 2, 2).unwrap();
        for i in 0..1_000 {
            svc.on_forward(a, Some(b), Msat(1_000), Msat(990), 5_000 + i % 3);
        }
        assert_eq!(svc.pending_decisions(), 2);
        let due = svc.take_due(10_000);
        assert_eq!(due.len(), 2);
        assert!(svc.take_due(10_001).is_empty());
        let s = svc.lock();
        assert_eq!(svc.flow(&s, a, 5_010).in_msat, Msat(1_000_000));
        assert_eq!(svc.flow(&s, b, 5_010).out_msat, Msat(990_000));
        assert_eq!(
            svc.flow(&s, b, 5_010 + 7_200).out_msat,
            Msat(0),
            "flow outside the window"
        );
    }

    #[test]
    fn act_records_only_what_the_node_took() {
        use crate::service::testnode::ScriptedNode;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("policy.toml");
        std::fs::write(&file, POLICY).unwrap();
        let store = Store::open(&dir.path().join("s"), 0).unwrap();
        let (svc, _) = FeeService::load(store, FeeConfig::default(), 86_400, Some(&file), 0).unwrap();
        let scid = Scid::new(100, 1, 0).unwrap();
        let ch = channel(scid, 50_000_000, 100);
        let d = svc.decide(&ch, None, None, 10_000, false).unwrap();
        assert!(d.status.applies(), "{d}");
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();

        // Refused by the node: nothing recorded, the rate limit untouched.
        let mut refusing = ScriptedNode::new(NodeId([1; 33]), vec![ch.clone()]);
        refusing.fee_refusal = Some("channel is closing".into());
        let e = rt
            .block_on(svc.act(&refusing, &d, Trigger::Forward, 10_000))
            .unwrap_err();
        assert!(matches!(e, ActError::Node(_)), "{e}");
        assert!(svc.history(Some(scid), 10).unwrap().is_empty());
        assert_eq!(svc.last_update(scid), None);

        // Taken: sent once with the decided fee, then recorded.
        let node = ScriptedNode::new(NodeId([1; 33]), vec![ch]);
        let change = rt
            .block_on(svc.act(&node, &d, Trigger::Forward, 10_000))
            .unwrap()
            .expect("an applied decision is recorded");
        assert_eq!(change.new.ppm, d.target.ppm);
        let sent = node.fees_set.lock().unwrap().clone();
        assert_eq!(sent.len(), 1);
        assert_eq!((sent[0].0, sent[0].1.ppm), (scid, d.target.ppm));
        assert_eq!(svc.history(Some(scid), 10).unwrap().len(), 1);
        assert_eq!(svc.last_update(scid), Some(10_000));

        // A decision that does not apply reaches neither the node nor the history.
        let held = svc
            .decide(&channel(scid, 900_000_000, 900), None, None, 10_001, false)
            .unwrap();
        assert!(!held.status.applies(), "{held}");
        assert_eq!(
            rt.block_on(svc.act(&node, &held, Trigger::Forward, 10_001))
                .unwrap(),
            None
        );
        assert_eq!(node.fees_set.lock().unwrap().len(), 1);
        assert_eq!(svc.history(Some(scid), 10).unwrap().len(), 1);
    }
}
