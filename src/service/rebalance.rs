//! Rebalancing at runtime: the gossip graph (refreshed in place), liquidity beliefs, stored
//! plans, self-payment preimages, and the history of every attempt with what it cost.

use crate::engine::beliefs::{Beliefs, DirectedChannel};
use crate::engine::claims::ClaimSet;
use crate::engine::graph::{Graph, GraphError};
use crate::engine::planner::{ChannelOverride, Plan};
use crate::engine::rest;
use crate::engine::route::Route;
use crate::node::GraphEdge;
use crate::store::{Record, Store, StoreError, TypedTree};
use crate::types::{Msat, NodeId, PaymentHash, Preimage, Scid};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

/// How long a plan can be executed by id.
pub(crate) const PLAN_TTL_SECS: u64 = 3_600;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPlan {
    pub id: String,
    pub created_at: u64,
    pub expires_at: u64,
    pub plan: Plan,
}

impl Record for StoredPlan {
    const VERSION: u8 = 1;
}

/// What one payment attempt of a rebalance came to. Stored and reported as today's
/// strings: "pending", "success", "failed".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttemptOutcome {
    /// Still in flight when we stopped waiting: its fee counts as spent until it resolves.
    Pending,
    Success,
    Failed,
}

impl AttemptOutcome {
    /// True when the attempt's fee counts against the budgets: paid, or possibly paid.
    pub fn spends(self) -> bool {
        matches!(self, AttemptOutcome::Success | AttemptOutcome::Pending)
    }
}

/// One payment attempt of a rebalance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub id: u64,
    pub execution: String,
    pub time: u64,
    pub source: Scid,
    pub sink: Scid,
    #[serde(rename = "amount_msat", alias = "amount")]
    pub amount: Msat,
    #[serde(rename = "fee_msat", alias = "fee")]
    pub fee: Msat,
    pub route: Vec<Scid>,
    pub payment_hash: PaymentHash,
    pub outcome: AttemptOutcome,
    pub failing_channel: Option<Scid>,
    pub message: String,
}

impl Record for Attempt {
    const VERSION: u8 = 1;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct SelfPayment {
    preimage: Preimage,
    created_at: u64,
    /// What must reach us for the preimage to be given out. Records from builds before
    /// this field have none: [`RebalanceService::load`] takes the amount of the recorded
    /// attempt with the same hash, or refuses every HTLC for it.
    #[serde(default)]
    amount: Option<Msat>,
}

/// For a preimage whose amount is unknown: no HTLC can carry this much, so none is claimed.
const REFUSE_ALL: Msat = Msat(u64::MAX);

impl Record for SelfPayment {
    const VERSION: u8 = 1;
}

impl Record for Beliefs {
    const VERSION: u8 = 1;
}

impl Record for ChannelOverride {
    const VERSION: u8 = 1;
}

const PLANS_TREE: &str = "rebalance_plans";
const ATTEMPTS_TREE: &str = "rebalance_attempts";
const SECRETS_TREE: &str = "rebalance_preimages";
const BELIEFS_TREE: &str = "rebalance_beliefs";
const BELIEFS_KEY: &[u8] = b"beliefs";
const OVERRIDES_TREE: &str = "rebalance_overrides";

#[derive(Debug, thiserror::Error)]
pub enum RebalanceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error("no randomness available: {0}")]
    Random(String),
}

pub struct RebalanceService {
    store: Store,
    plans: TypedTree<StoredPlan>,
    attempts: TypedTree<Attempt>,
    secrets: TypedTree<SelfPayment>,
    beliefs_tree: TypedTree<Beliefs>,
    overrides: TypedTree<ChannelOverride>,
    graph: RwLock<Option<Graph>>,
    beliefs: Mutex<Beliefs>,
    /// Preimage and the amount that must arrive, by hash.
    preimages: Mutex<HashMap<PaymentHash, (Preimage, Msat)>>,
    claims: Arc<ClaimSet>,
    seq: AtomicU64,
    /// What spend and cost questions need of every attempt, in id order: the fee policy
    /// asks for each channel decision and the attempt loop before every attempt, and
    /// decoding the stored history each time was most of their cost.
    ledger: Mutex<Vec<Spend>>,
    /// Kept with the ledger (locked after it): see [`AttemptTotals`].
    totals: Mutex<AttemptTotals>,
    /// When the last refresh asked for on demand (a channel or node missing) started.
    demand_refresh: Mutex<Option<std::time::Instant>>,
}

/// An attempt as the budget and cost figures see it.
#[derive(Debug, Clone, Copy)]
struct Spend {
    id: u64,
    time: u64,
    source: Scid,
    sink: Scid,
    amount: Msat,
    fee: Msat,
    outcome: AttemptOutcome,
}

impl Spend {
    fn of(a: &Attempt) -> Spend {
        Spend {
            id: a.id,
            time: a.time,
            source: a.source,
            sink: a.sink,
            amount: a.amount,
            fee: a.fee,
            outcome: a.outcome,
        }
    }
}

/// Running totals over every readable attempt, for the metrics endpoint: kept as attempts
/// are recorded and resolved, so a scrape reads numbers instead of the attempt history.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct AttemptTotals {
    pub succeeded: u64,
    pub failed: u64,
    /// Still in flight when we stopped waiting on them.
    pub pending: u64,
    /// Fees of successful attempts.
    pub fees_paid: Msat,
    /// Fees of pending attempts: they count as spent until they resolve.
    pub fees_pending: Msat,
    /// Amount delivered by successful attempts.
    pub moved: Msat,
}

impl AttemptTotals {
    fn of(ledger: &[Spend]) -> AttemptTotals {
        let mut t = AttemptTotals::default();
        for s in ledger {
            t.count(s, true);
        }
        t
    }

    /// Adds (or with `add` false, takes back) one attempt.
    fn count(&mut self, s: &Spend, add: bool) {
        let step = |v: &mut u64, by: u64| {
            *v = if add {
                v.saturating_add(by)
            } else {
                v.saturating_sub(by)
            }
        };
        match s.outcome {
            AttemptOutcome::Success => {
                step(&mut self.succeeded, 1);
                step(&mut self.fees_paid.0, s.fee.0);
                step(&mut self.moved.0, s.amount.0);
            }
            AttemptOutcome::Pending => {
                step(&mut self.pending, 1);
                step(&mut self.fees_pending.0, s.fee.0);
            }
            AttemptOutcome::Failed => step(&mut self.failed, 1),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl RebalanceService {
    pub fn load(store: Store, claims: Arc<ClaimSet>, halflife_secs: u64) -> Result<Self, RebalanceError> {
        let plans = store.tree(PLANS_TREE)?;
        let attempts: TypedTree<Attempt> = store.tree(ATTEMPTS_TREE)?;
        let secrets: TypedTree<SelfPayment> = store.tree(SECRETS_TREE)?;
        let beliefs_tree: TypedTree<Beliefs> = store.tree(BELIEFS_TREE)?;
        let overrides = store.tree(OVERRIDES_TREE)?;
        // Beliefs and attempts hold no money: an unreadable record is reported and passed
        // over (the beliefs start afresh; a lost attempt no longer counts in the budget).
        let mut beliefs = beliefs_tree
            .get_readable(BELIEFS_KEY, |e| {
                log::warn!("stored liquidity beliefs are unreadable ({e}); starting afresh")
            })?
            .unwrap_or_else(|| Beliefs::new(halflife_secs));
        beliefs.set_halflife_secs(halflife_secs);
        let mut ledger = Vec::new();
        let mut attempt_amounts: HashMap<PaymentHash, Msat> = HashMap::new();
        for item in attempts.iter_readable(|e| log::warn!("skipping an unreadable rebalance attempt: {e}")) {
            let (_, a) = item?;
            attempt_amounts.insert(a.payment_hash, a.amount);
            ledger.push(Spend::of(&a));
        }
        // Self-payments still in flight when we stopped: lightningd replays their HTLCs at
        // start-up, and only these preimages can claim them. An unreadable one is fatal:
        // skipping it could fail a payment of ours whose fee is already spent.
        let mut preimages = HashMap::new();
        for item in secrets.iter() {
            let (_, sp) = item?;
            let hash = sp.preimage.payment_hash();
            let amount = match sp.amount {
                Some(a) => a,
                None => attempt_amounts.get(&hash).copied().unwrap_or_else(|| {
                    log::warn!(
                        "rebalance preimage for {hash} has no amount and no recorded attempt: refusing any HTLC for it"
                    );
                    REFUSE_ALL
                }),
            };
            claims.claim(hash);
            preimages.insert(hash, (sp.preimage, amount));
        }
        let seq = ledger.last().map_or(0, |s: &Spend| s.id + 1);
        Ok(RebalanceService {
            store,
            plans,
            attempts,
            secrets,
            beliefs_tree,
            overrides,
            graph: RwLock::new(None),
            beliefs: Mutex::new(beliefs),
            preimages: Mutex::new(preimages),
            claims,
            seq: AtomicU64::new(seq),
            totals: Mutex::new(AttemptTotals::of(&ledger)),
            ledger: Mutex::new(ledger),
            demand_refresh: Mutex::new(None),
        })
    }

    /// Per-channel targets that replace the `ballast-rebalance-*` ratios for that channel.
    pub fn overrides(&self) -> Result<std::collections::BTreeMap<Scid, ChannelOverride>, RebalanceError> {
        let mut out = std::collections::BTreeMap::new();
        for item in self.overrides.iter() {
            let (key, o) = item?;
            if let Ok(raw) = <[u8; 8]>::try_from(key.as_slice()) {
                out.insert(Scid::from_u64(u64::from_be_bytes(raw)), o);
            }
        }
        Ok(out)
    }

    /// Sets (or with `None`, removes) a channel's override; durable before returning.
    pub(crate) fn set_override(&self, scid: Scid, o: Option<ChannelOverride>) -> Result<(), RebalanceError> {
        let key = scid.as_u64().to_be_bytes();
        match o {
            Some(o) => self.overrides.put(key, &o)?,
            None => {
                self.overrides.remove(key)?;
            }
        }
        self.store.flush()?;
        Ok(())
    }

    /// Replaces (first load) or updates in place (later refreshes) the gossip graph.
    pub(crate) fn refresh_graph(&self, edges: &[GraphEdge]) -> Result<(usize, usize), RebalanceError> {
        let mut g = self.graph.write().unwrap_or_else(|p| p.into_inner());
        match g.as_mut() {
            Some(graph) => {
                graph.apply_updates(edges)?;
            }
            None => *g = Some(Graph::from_edges(edges)?),
        }
        let graph = g.as_ref().expect("set above");
        // Build the adjacency now, under the write lock, not in the first reader's path.
        graph.prepare();
        Ok((graph.node_count(), graph.channel_count()))
    }

    /// True when the graph lacks one of `scids` (in either direction) or `nodes`; also
    /// before the graph is loaded.
    pub(crate) fn graph_lacks(&self, scids: &[Scid], nodes: &[NodeId]) -> bool {
        let g = self.graph.read().unwrap_or_else(|p| p.into_inner());
        let Some(graph) = g.as_ref() else {
            return true;
        };
        scids
            .iter()
            .any(|s| graph.channel(*s).iter().all(Option::is_none))
            || nodes.iter().any(|n| graph.node_index(n).is_none())
    }

    /// Claims the right to refresh the graph on demand: true at most once per `every`, so
    /// a stream of calls naming an unknown node cannot turn into a stream of `listchannels`.
    pub(crate) fn claim_demand_refresh(&self, every: std::time::Duration) -> bool {
        let mut last = lock(&self.demand_refresh);
        let now = std::time::Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < every) {
            return false;
        }
        *last = Some(now);
        true
    }

    pub(crate) fn has_graph(&self) -> bool {
        self.graph.read().unwrap_or_else(|p| p.into_inner()).is_some()
    }

    /// Runs `f` with the graph and the current belief view. `None` before the first load.
    pub(crate) fn with_graph<T>(
        &self,
        now: u64,
        f: impl FnOnce(&Graph, &Beliefs, &crate::engine::beliefs::BeliefView) -> T,
    ) -> Option<T> {
        let g = self.graph.read().unwrap_or_else(|p| p.into_inner());
        let graph = g.as_ref()?;
        let beliefs = lock(&self.beliefs).clone();
        let view = beliefs.view(graph, now);
        Some(f(graph, &beliefs, &view))
    }

    /// How many usable public channels `node` has in the gossip graph (for the fee
    /// policy's `peer` strategy); `None` before the graph is loaded or for unknown nodes.
    pub(crate) fn node_channels(&self, node: &NodeId) -> Option<u32> {
        let g = self.graph.read().unwrap_or_else(|p| p.into_inner());
        let graph = g.as_ref()?;
        let ix = graph.node_index(node)?;
        let n = graph
            .out_edges(ix)
            .iter()
            .filter(|e| graph.edge(**e).is_some_and(|e| e.usable()))
            .count();
        Some(u32::try_from(n).unwrap_or(u32::MAX))
    }

    pub(crate) fn graph_stats(&self) -> Option<(usize, usize, usize)> {
        let g = self.graph.read().unwrap_or_else(|p| p.into_inner());
        g.as_ref()
            .map(|g| (g.node_count(), g.channel_count(), g.memory_bytes()))
    }

    /// Stores a plan for `PLAN_TTL_SECS` and returns its id.
    pub(crate) fn store_plan(&self, plan: Plan, now: u64) -> Result<String, RebalanceError> {
        let mut raw = [0u8; 8];
        getrandom::getrandom(&mut raw).map_err(|e| RebalanceError::Random(e.to_string()))?;
        let id = hex::encode(raw);
        // Expired plans are dropped as new ones come, so the tree stays small. Plans are
        // disposable: one this version cannot read (an older layout) goes too, instead of
        // blocking every new plan.
        let keys: Vec<Vec<u8>> = self.plans.keys().collect::<Result<_, _>>()?;
        for key in keys {
            match self.plans.get(&key) {
                Ok(Some(p)) if p.expires_at > now => {}
                Ok(None) => {}
                _ => self.plans.discard(&key)?,
            }
        }
        self.plans.put(
            id.as_bytes(),
            &StoredPlan {
                id: id.clone(),
                created_at: now,
                expires_at: now + PLAN_TTL_SECS,
                plan,
            },
        )?;
        Ok(id)
    }

    /// A plan that has not expired.
    pub fn plan(&self, id: &str, now: u64) -> Result<Option<StoredPlan>, RebalanceError> {
        Ok(self.plans.get(id.as_bytes())?.filter(|p| p.expires_at > now))
    }

    /// Takes a plan for execution: a plan runs once, as its amounts were computed from the
    /// balances of its time. `false` when it is gone (already executed, or expired).
    pub(crate) fn consume_plan(&self, id: &str) -> Result<bool, RebalanceError> {
        let taken = self.plans.get(id.as_bytes())?.is_some();
        if taken {
            self.plans.remove(id.as_bytes())?;
            self.store.flush()?;
        }
        Ok(taken)
    }

    /// A fresh preimage for a circular payment that delivers `amount` back to us, durable
    /// and claimed before it is used. Its hash is the payment's; the preimage itself goes to
    /// nodes that must be told about the payment beforehand (`Node::prepare_self_payment`).
    pub(crate) fn new_self_payment(&self, now: u64, amount: Msat) -> Result<Preimage, RebalanceError> {
        let mut raw = [0u8; 32];
        getrandom::getrandom(&mut raw).map_err(|e| RebalanceError::Random(e.to_string()))?;
        let preimage = Preimage(raw);
        let hash = preimage.payment_hash();
        self.secrets.put(
            hash.0,
            &SelfPayment {
                preimage,
                created_at: now,
                amount: Some(amount),
            },
        )?;
        self.store.flush()?;
        lock(&self.preimages).insert(hash, (preimage, amount));
        self.claims.claim(hash);
        Ok(preimage)
    }

    /// The preimage that claims one of our own rebalance payments, and the amount the
    /// HTLC must carry for it to be given out.
    pub(crate) fn preimage_for(&self, hash: &PaymentHash) -> Option<(Preimage, Msat)> {
        lock(&self.preimages).get(hash).copied()
    }

    /// Teaches the beliefs what an attempt showed: every hop before `failed_at` had the
    /// liquidity, the failing one did not.
    pub fn learn(
        &self,
        ours: &NodeId,
        route: &Route,
        failed_at: Option<usize>,
        now: u64,
    ) -> Result<(), RebalanceError> {
        let g = self.graph.read().unwrap_or_else(|p| p.into_inner());
        let Some(graph) = g.as_ref() else { return Ok(()) };
        let mut hops = Vec::with_capacity(route.hops.len());
        let mut from = *ours;
        for h in &route.hops {
            let edge = graph
                .node_index(&from)
                .and_then(|ix| graph.edge_from(h.scid, ix))
                .and_then(|e| graph.edge(e));
            if let Some(e) = edge {
                hops.push((DirectedChannel::of(e), e.capacity, h.amount));
            }
            from = h.node;
        }
        let snapshot = {
            let mut b = lock(&self.beliefs);
            b.record_attempt(&hops, failed_at, now);
            b.prune(now);
            b.clone()
        };
        self.beliefs_tree.put(BELIEFS_KEY, &snapshot)?;
        Ok(())
    }

    pub(crate) fn record_attempt(&self, mut a: Attempt) -> Result<Attempt, RebalanceError> {
        // Under the ledger's lock, so ids enter it in order.
        let mut ledger = lock(&self.ledger);
        a.id = self.seq.fetch_add(1, Ordering::Relaxed);
        self.attempts.put(a.id.to_be_bytes(), &a)?;
        self.store.flush()?;
        let spend = Spend::of(&a);
        ledger.push(spend);
        lock(&self.totals).count(&spend, true);
        Ok(a)
    }

    /// Attempts still in flight (outcome pending), oldest first.
    pub(crate) fn pending_attempts(&self) -> Result<Vec<Attempt>, RebalanceError> {
        let mut out = Vec::new();
        for item in self.attempts.iter() {
            let (_, a) = item?;
            if a.outcome == AttemptOutcome::Pending {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// Records the final outcome of a pending attempt and forgets its preimage.
    pub(crate) fn resolve_attempt(
        &self,
        id: u64,
        outcome: AttemptOutcome,
        message: String,
        failing_channel: Option<Scid>,
    ) -> Result<(), RebalanceError> {
        if let Some(mut a) = self.attempts.get(id.to_be_bytes())? {
            a.outcome = outcome;
            a.message = message;
            a.failing_channel = failing_channel.or(a.failing_channel);
            self.secrets.remove(a.payment_hash.0)?;
            lock(&self.preimages).remove(&a.payment_hash);
            self.claims.release(&a.payment_hash);
            self.attempts.put(id.to_be_bytes(), &a)?;
            self.store.flush()?;
            let mut ledger = lock(&self.ledger);
            if let Ok(i) = ledger.binary_search_by_key(&id, |s| s.id) {
                let mut totals = lock(&self.totals);
                totals.count(&ledger[i], false);
                ledger[i] = Spend::of(&a);
                totals.count(&ledger[i], true);
            }
        }
        Ok(())
    }

    /// Fees of successful (and still pending) attempts since `since`.
    pub(crate) fn spent_since(&self, since: u64) -> Result<Msat, RebalanceError> {
        Ok(self.fees_since(since, |a| a.outcome.spends()))
    }

    /// Counts and fees of every attempt so far; see [`AttemptTotals`].
    pub(crate) fn attempt_totals(&self) -> AttemptTotals {
        *lock(&self.totals)
    }

    /// Fees of successful attempts since `since` (pending ones not counted).
    pub(crate) fn paid_since(&self, since: u64) -> Msat {
        self.fees_since(since, |a| a.outcome == AttemptOutcome::Success)
    }

    /// Fees of the attempts since `since` that `counts`; the ledger is in time order.
    fn fees_since(&self, since: u64, counts: impl Fn(&Spend) -> bool) -> Msat {
        let mut total = 0u64;
        for a in lock(&self.ledger).iter().rev() {
            if a.time < since {
                break;
            }
            if counts(a) {
                total = total.saturating_add(a.fee.0);
            }
        }
        Msat(total)
    }

    /// Attempts, newest first, optionally of one execution.
    pub fn attempts(&self, execution: Option<&str>, limit: usize) -> Result<Vec<Attempt>, RebalanceError> {
        let mut out = Vec::new();
        for item in self.attempts.iter_rev() {
            let (_, a) = item?;
            if execution.is_none_or(|e| e == a.execution) {
                out.push(a);
                if out.len() >= limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The source→sink pairs the automatic round leaves alone at `now`: see
    /// [`crate::engine::rest`].
    pub(crate) fn resting_pairs(&self, now: u64) -> Vec<(Scid, Scid)> {
        let ledger = lock(&self.ledger);
        let since = now.saturating_sub(rest::MEMORY_SECS);
        // The ledger is in time order: only its recent end is read.
        let start = ledger.partition_point(|a| a.time < since);
        let resolved = ledger[start..].iter().filter_map(|a| {
            let succeeded = match a.outcome {
                AttemptOutcome::Success => true,
                AttemptOutcome::Failed => false,
                // In flight: no evidence either way.
                AttemptOutcome::Pending => return None,
            };
            Some(rest::PairAttempt {
                time: a.time,
                source: a.source,
                sink: a.sink,
                succeeded,
            })
        });
        rest::resting_pairs(resolved, now)
    }

    /// The recent cost of moving liquidity into `scid`, in ppm (for the fee cost floor).
    pub(crate) fn recent_cost_ppm(&self, scid: Scid, since: u64) -> Result<Option<u32>, RebalanceError> {
        let (mut fee, mut amount) = (0u64, 0u64);
        for a in lock(&self.ledger).iter().rev() {
            if a.time < since {
                break;
            }
            if a.sink == scid && a.outcome == AttemptOutcome::Success {
                fee = fee.saturating_add(a.fee.0);
                amount = amount.saturating_add(a.amount.0);
            }
        }
        Ok((amount > 0)
            .then(|| ((fee as u128 * 1_000_000).div_ceil(amount as u128)).min(u32::MAX as u128) as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(sink: u32, fee: u64, amount: u64, outcome: AttemptOutcome, time: u64) -> Attempt {
        Attempt {
            id: 0,
            execution: "x".into(),
            time,
            source: Scid::new(1, 0, 0).unwrap(),
            sink: Scid::new(sink, 0, 0).unwrap(),
            amount: Msat(amount),
            fee: Msat(fee),
            route: vec![],
            payment_hash: PaymentHash([0; 32]),
            outcome,
            failing_channel: None,
            message: String::new(),
        }
    }

    #[test]
    fn failing_pairs_rest_from_the_stored_attempts_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let t = 1_700_000_000;
        let pair = (Scid::new(1, 0, 0).unwrap(), Scid::new(2, 0, 0).unwrap());
        {
            let store = Store::open(&path, 0).unwrap();
            let svc = RebalanceService::load(store, Arc::new(ClaimSet::new()), 3600).unwrap();
            for _ in 0..4 {
                svc.record_attempt(attempt(2, 0, 1_000_000, AttemptOutcome::Failed, t))
                    .unwrap();
            }
            // Another sink of the same source did fine.
            svc.record_attempt(attempt(3, 10, 1_000_000, AttemptOutcome::Success, t))
                .unwrap();
            assert_eq!(svc.resting_pairs(t + 7_199), vec![pair]);
            assert!(svc.resting_pairs(t + 7_200).is_empty());
        }
        let store = Store::open(&path, 0).unwrap();
        let svc = RebalanceService::load(store, Arc::new(ClaimSet::new()), 3600).unwrap();
        assert_eq!(svc.resting_pairs(t + 60), vec![pair]);
        // A pending attempt resolving as a success ends the rest.
        let id = svc
            .record_attempt(attempt(2, 0, 1_000_000, AttemptOutcome::Pending, t + 60))
            .unwrap()
            .id;
        assert_eq!(svc.resting_pairs(t + 61), vec![pair]);
        svc.resolve_attempt(id, AttemptOutcome::Success, String::new(), None)
            .unwrap();
        assert!(svc.resting_pairs(t + 61).is_empty());
    }

    #[test]
    fn spend_counts_success_and_pending_and_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let claims = Arc::new(ClaimSet::new());
        let hash;
        {
            let store = Store::open(&path, 0).unwrap();
            let svc = RebalanceService::load(store, claims.clone(), 3600).unwrap();
            svc.record_attempt(attempt(2, 1_000, 1_000_000, AttemptOutcome::Success, 100))
                .unwrap();
            svc.record_attempt(attempt(2, 5_000, 1_000_000, AttemptOutcome::Failed, 200))
                .unwrap();
            svc.record_attempt(attempt(3, 700, 1_000_000, AttemptOutcome::Pending, 300))
                .unwrap();
            assert_eq!(svc.spent_since(0).unwrap(), Msat(1_700));
            assert_eq!(svc.spent_since(250).unwrap(), Msat(700));
            assert_eq!((svc.paid_since(0), svc.paid_since(150)), (Msat(1_000), Msat(0)));
            let t = svc.attempt_totals();
            assert_eq!((t.succeeded, t.failed, t.pending), (1, 1, 1), "{t:?}");
            assert_eq!(
                (t.fees_paid, t.fees_pending, t.moved),
                (Msat(1_000), Msat(700), Msat(1_000_000))
            );
            assert_eq!(
                svc.recent_cost_ppm(Scid::new(2, 0, 0).unwrap(), 0).unwrap(),
                Some(1_000)
            );
            hash = svc.new_self_payment(400, Msat(5_000)).unwrap().payment_hash();
            assert!(claims.contains(&hash));
        }
        // After a restart the in-flight self-payment is still claimable.
        let claims = Arc::new(ClaimSet::new());
        let store = Store::open(&path, 0).unwrap();
        let svc = RebalanceService::load(store, claims.clone(), 3600).unwrap();
        assert!(claims.contains(&hash));
        // The totals are rebuilt at load, and follow an attempt as it resolves.
        let before = svc.attempt_totals();
        assert_eq!((before.pending, before.fees_pending), (1, Msat(700)));
        let pending = svc.pending_attempts().unwrap()[0].id;
        svc.resolve_attempt(pending, AttemptOutcome::Success, String::new(), None)
            .unwrap();
        let after = svc.attempt_totals();
        assert_eq!((after.succeeded, after.failed, after.pending), (2, 1, 0));
        assert_eq!(
            (after.fees_paid, after.fees_pending, after.moved),
            (Msat(1_700), Msat(0), Msat(2_000_000))
        );
        let (pre, amount) = svc.preimage_for(&hash).unwrap();
        assert_eq!((pre.payment_hash(), amount), (hash, Msat(5_000)));
        assert_eq!(svc.attempts(None, 10).unwrap().len(), 3);
        assert_eq!(
            svc.attempts(None, 10).unwrap()[0].id,
            2,
            "newest first, ids continue"
        );
    }

    /// Stored attempts as every build so far wrote them (record version 1, outcome a
    /// plain string).
    #[derive(Serialize, Deserialize)]
    #[serde(transparent)]
    struct RawAttempt(serde_json::Value);
    impl Record for RawAttempt {
        const VERSION: u8 = 1;
    }

    #[test]
    fn attempts_stored_in_todays_form_still_read_and_are_written_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let hash = "11".repeat(32);
        let stored: Vec<serde_json::Value> = ["success", "failed", "pending"]
            .iter()
            .enumerate()
            .map(|(i, outcome)| {
                serde_json::json!({
                    "id": i, "execution": "manual-00", "time": 100 + i, "source": "1x0x0",
                    "sink": "2x0x0", "amount_msat": 500_000, "fee_msat": 70, "route": ["1x0x0", "5x1x1", "2x0x0"],
                    "payment_hash": hash, "outcome": outcome,
                    "failing_channel": if *outcome == "failed" { serde_json::json!("5x1x1") } else { serde_json::Value::Null },
                    "message": "",
                })
            })
            .collect();
        {
            let store = Store::open(&path, 0).unwrap();
            let raw: TypedTree<RawAttempt> = store.tree(ATTEMPTS_TREE).unwrap();
            for (i, v) in stored.iter().enumerate() {
                raw.put((i as u64).to_be_bytes(), &RawAttempt(v.clone())).unwrap();
            }
            store.flush().unwrap();
        }
        let store = Store::open(&path, 0).unwrap();
        let svc = RebalanceService::load(store.clone(), Arc::new(ClaimSet::new()), 3600).unwrap();
        let mut read = svc.attempts(None, 10).unwrap();
        read.reverse();
        assert_eq!(
            read.iter().map(|a| a.outcome).collect::<Vec<_>>(),
            [
                AttemptOutcome::Success,
                AttemptOutcome::Failed,
                AttemptOutcome::Pending
            ]
        );
        assert_eq!(read[1].failing_channel, Some(Scid::new(5, 1, 1).unwrap()));
        // Success and pending count as spent, the failure not.
        assert_eq!(svc.spent_since(0).unwrap(), Msat(140));
        assert_eq!(svc.pending_attempts().unwrap().len(), 1);
        // Written back in exactly the form it was read from.
        for (a, v) in read.iter().zip(&stored) {
            assert_eq!(&serde_json::to_value(a).unwrap(), v);
        }
        svc.resolve_attempt(2, AttemptOutcome::Failed, "gone".into(), None)
            .unwrap();
        let raw: TypedTree<RawAttempt> = store.tree(ATTEMPTS_TREE).unwrap();
        let rewritten = raw.get(2u64.to_be_bytes()).unwrap().unwrap().0;
        assert_eq!(
            (&rewritten["outcome"], &rewritten["message"]),
            (&serde_json::json!("failed"), &serde_json::json!("gone"))
        );
    }

    /// A record some newer build wrote: no reader here, as for a damaged one.
    #[derive(Serialize, Deserialize)]
    struct FromTheFuture(u8);
    impl Record for FromTheFuture {
        const VERSION: u8 = 200;
    }

    #[test]
    fn unreadable_history_is_skipped_and_an_old_preimage_is_bound_to_its_attempt() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let known = Preimage([5; 32]);
        let orphan = Preimage([6; 32]);
        {
            let store = Store::open(&path, 0).unwrap();
            let attempts: TypedTree<Attempt> = store.tree(ATTEMPTS_TREE).unwrap();
            let mut a = attempt(2, 1_000, 700_000, AttemptOutcome::Pending, 100);
            a.payment_hash = known.payment_hash();
            attempts.put(0u64.to_be_bytes(), &a).unwrap();
            let future: TypedTree<FromTheFuture> = store.tree(ATTEMPTS_TREE).unwrap();
            future.put(1u64.to_be_bytes(), &FromTheFuture(1)).unwrap();
            let beliefs: TypedTree<FromTheFuture> = store.tree(BELIEFS_TREE).unwrap();
            beliefs.put(BELIEFS_KEY, &FromTheFuture(2)).unwrap();
            // Preimage records as builds before the amount field wrote them.
            let secrets: TypedTree<SelfPayment> = store.tree(SECRETS_TREE).unwrap();
            for p in [known, orphan] {
                let mut v = serde_json::to_value(SelfPayment {
                    preimage: p,
                    created_at: 1,
                    amount: None,
                })
                .unwrap();
                v.as_object_mut().unwrap().remove("amount");
                let old: SelfPayment = serde_json::from_value(v).unwrap();
                secrets.put(p.payment_hash().0, &old).unwrap();
            }
            store.flush().unwrap();
        }
        let store = Store::open(&path, 0).unwrap();
        let svc = RebalanceService::load(store, Arc::new(ClaimSet::new()), 3600).unwrap();
        // The readable attempt still counts; the unreadable one is left, not fatal.
        assert_eq!(svc.spent_since(0).unwrap(), Msat(1_000));
        // Released only for the amount of its recorded attempt...
        assert_eq!(
            svc.preimage_for(&known.payment_hash()),
            Some((known, Msat(700_000)))
        );
        // ...and with no attempt, for nothing at all.
        assert_eq!(
            svc.preimage_for(&orphan.payment_hash()),
            Some((orphan, REFUSE_ALL))
        );
    }
}
