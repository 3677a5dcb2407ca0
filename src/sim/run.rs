//! The simulation loop: simulated minutes, blocks every ten, traffic over the network, and
//! the real engine deciding on what our node sees.
//!
//! Our node is a `SimNode`: the engine reads channels, the graph and forwards through the
//! `Node` trait and applies fees through it. Every job runs through the plugin's own
//! services on a temporary store, stepped with the simulated clock: fee decisions are
//! `FeeService::step` (the plugin's fee loop), monitoring is
//! `MonitorService::snapshot_and_evaluate` (the plugin's snapshot round, alerts and
//! history), hold invoices are `HodlService`, and rebalancing keeps its graph, beliefs and
//! attempt history in a `RebalanceService` and executes moves with `service::execute`, the
//! attempt loop `rebalance-execute` runs, paying through `SimNode::pay_route`. Node futures
//! are driven by one current-thread tokio runtime.
//!
//! By concern: [`traffic`] (payments, forwards, peers), [`fee_step`], [`hodl_step`],
//! [`rebalance_step`], and [`events`] (the JSON-lines sink).

use super::network::Network;
use super::rng::Rng;
use super::summary::{Conservation, Summary};
use super::{Rebalancer, SimPolicy};
use crate::engine::claims::ClaimSet;
use crate::engine::fees::FeeConfig;
use crate::engine::hodl::{CancelReason, HodlParams, HodlState};
use crate::engine::monitor::{Alert, AlertId, ChannelSnapshot, HistoryPoint, Transition};
use crate::engine::planner::PlannerConfig;
use crate::node::{Forward, Node, PendingHtlc};
use crate::service::fees::FeeService;
use crate::service::hodl::{HodlEvent, HodlService};
use crate::service::monitor::MonitorService;
use crate::service::rebalance::RebalanceService;
use crate::store::Store;
use crate::types::{Msat, PaymentHash, Scid};
use events::Events;
use hodl_step::Held;
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;
use tokio::sync::broadcast;
use traffic::Settling;

/// Simulated clock start (2023-11-14 22:13:20 UTC) and chain height.
pub const T0: u64 = 1_700_000_000;
pub(crate) const HEIGHT0: u32 = 800_000;
const STEP_SECS: u64 = 60;
const BLOCK_STEPS: u64 = 10;
const FLOW_WINDOW_SECS: u64 = 86_400;
const HODL_FINAL_CLTV: u32 = 40;
const PAY_ATTEMPTS: usize = 5;
/// A payment takes this many seconds (uniform) from its first HTLC to its settlement; one
/// still settling at the end of a minute is pending on its channels until the next.
const SETTLE_SECS: (u64, u64) = (2, 30);
/// Peer disconnects of our channels: chance per simulated minute (about three a day), and
/// how long one lasts, minutes (uniform).
const DISCONNECT_PER_MIN: f64 = 3.0 / 1_440.0;
const DISCONNECT_MINS: (u64, u64) = (5, 180);
/// How often every channel is decided, traffic or not (the plugin's fee sweep).
const FEE_SWEEP_SECS: u64 = 3_600;
/// The history tier the report charts.
const HISTORY_BUCKET_SECS: u32 = 3_600;
/// Half-life of liquidity beliefs.
const BELIEF_HALFLIFE_SECS: u64 = 6 * 3_600;

/// Our node over the simulated network, borrowing only the fields it needs so the rest of
/// the simulation stays usable while it lives.
macro_rules! node {
    ($s:expr) => {
        crate::sim::node::SimNode::new(&mut $s.net, &$s.htlcs, &$s.trace.forwards, $s.height)
    };
}

// After `node!`, which they use.
mod events;
mod fee_step;
mod hodl_step;
mod rebalance_step;
mod traffic;

/// Knobs of one run that are not the policy.
#[derive(Debug, Clone)]
pub struct RunParams {
    pub seed: u64,
    pub hours: u64,
    /// Payments per simulated minute over the whole network.
    pub payments_per_min: f64,
    /// Hold invoices created on our node per simulated minute.
    pub hodl_per_min: f64,
    pub rebalance_every_mins: u64,
    /// Which rebalancer executes the planned moves.
    pub rebalancer: Rebalancer,
}

/// What the report draws, collected while running.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    pub history: BTreeMap<Scid, Vec<HistoryPoint>>,
    pub alerts: BTreeMap<AlertId, Alert>,
    pub forwards: Vec<Forward>,
    /// Per channel: (time, ppm), starting with the initial fee.
    pub fee_series: BTreeMap<Scid, Vec<(u64, u32)>>,
    /// Hourly: (time, cumulative fees earned msat, cumulative rebalance spend msat).
    pub money: Vec<(u64, u64, u64)>,
    pub hodl_paid: Vec<(Msat, u64)>,
    pub snapshots: Vec<ChannelSnapshot>,
    pub end: u64,
}

pub struct Outcome {
    pub summary: Summary,
    pub conservation: Conservation,
    pub trace: Trace,
    pub events: u64,
}

struct Sim<'a> {
    net: Network,
    policy: &'a SimPolicy,
    p: &'a RunParams,
    now: u64,
    height: u32,
    traffic: Rng,
    hodl_rng: Rng,
    links: Rng,
    settling: Vec<Settling>,
    /// (reconnect time, channel index) of our channels whose peer is away.
    reconnects: Vec<(u64, u32)>,
    ev: Events<'a>,
    s: Summary,
    trace: Trace,
    // fees
    /// The plugin's fee service (policy, flow, coalescing, rate limits, history) on the
    /// temporary store.
    fees: FeeService,
    // hodl
    /// The plugin's own hold-invoice service (on the temporary store): creation, HTLCs,
    /// settle and cancel, deadlines on blocks and expiry all go through it.
    hodl: HodlService,
    hodl_events: broadcast::Receiver<HodlEvent>,
    /// Invoice index → payment hash.
    hashes: Vec<PaymentHash>,
    held: Vec<Held>,
    /// The held payment of each invoice that has one.
    held_of: HashMap<PaymentHash, usize>,
    /// (due, seq) → (held index, settle?)
    actions: BTreeMap<(u64, u64), (usize, bool)>,
    htlcs: HashMap<u32, Vec<PendingHtlc>>,
    next_htlc: u64,
    // monitor
    /// The plugin's monitor (rules, evaluator, alerts, balance history) on the temporary
    /// store.
    monitor: MonitorService,
    // rebalance
    svc: RebalanceService,
    planner: PlannerConfig,
    executions: u64,
    /// Drives the `Node` futures (all of `SimNode`'s are ready at once).
    rt: tokio::runtime::Runtime,
}

pub fn run<'a>(
    net: Network,
    policy: &'a SimPolicy,
    p: &'a RunParams,
    events: Option<&'a mut (dyn Write + 'a)>,
    progress: Option<&indicatif::ProgressBar>,
) -> std::io::Result<Outcome> {
    let fee_cfg = FeeConfig::default();
    let planner = PlannerConfig {
        max_ppm: policy.max_ppm,
        ..PlannerConfig::default()
    };
    let store = Store::temporary().map_err(std::io::Error::other)?;
    let svc = RebalanceService::load(store.clone(), Arc::new(ClaimSet::new()), BELIEF_HALFLIFE_SECS)
        .map_err(std::io::Error::other)?;
    let (hodl, _) = HodlService::load(
        store.clone(),
        Arc::new(ClaimSet::new()),
        HodlParams::default(),
        false,
        T0,
    )
    .map_err(std::io::Error::other)?;
    let (monitor, _) = MonitorService::load(store.clone(), T0).map_err(std::io::Error::other)?;
    let (fees, _) =
        FeeService::load(store, fee_cfg, FLOW_WINDOW_SECS, None, T0).map_err(std::io::Error::other)?;
    fees.set_policy(policy.fees.clone(), "simulate".into(), T0)
        .map_err(std::io::Error::other)?;
    let hodl_events = hodl.subscribe();
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let mut sim = Sim {
        s: Summary::new(policy, p, &net),
        net,
        policy,
        p,
        now: T0,
        height: HEIGHT0,
        // Traffic has its own streams, independent of what the engine does, so two
        // policies on one seed see exactly the same payments.
        traffic: Rng::new(p.seed, 1),
        hodl_rng: Rng::new(p.seed, 2),
        links: Rng::new(p.seed, 3),
        settling: Vec::new(),
        reconnects: Vec::new(),
        ev: Events {
            out: events,
            count: 0,
            error: None,
        },
        trace: Trace::default(),
        fees,
        hodl,
        hodl_events,
        hashes: Vec::new(),
        held: Vec::new(),
        held_of: HashMap::new(),
        actions: BTreeMap::new(),
        htlcs: HashMap::new(),
        next_htlc: 0,
        monitor,
        svc,
        planner,
        executions: 0,
        rt,
    };
    sim.refresh_graph();
    sim.s.imbalance_start_msat = sim.imbalance();
    let mut imbalance_sum = 0u128;
    let mut imbalance_samples = 0u128;
    let initial = sim.net.wealth();
    let total = sim.net.total_capacity();
    for ch in sim.net.our_channels(&HashMap::new()) {
        if let Some(scid) = ch.scid {
            sim.trace.fee_series.insert(scid, vec![(T0, ch.fee_ppm)]);
        }
    }
    sim.ev.emit(json!({"t": T0, "type": "start", "policy": policy.name, "seed": p.seed,
        "nodes": sim.net.ids.len(), "channels": sim.net.channels.len(), "our_channels": sim.net.adj[sim.net.ours as usize].len()}));
    let steps = p.hours * 60;
    for step in 0..steps {
        sim.now = T0 + step * STEP_SECS;
        if step % BLOCK_STEPS == 0 {
            sim.on_block();
        }
        sim.links_step();
        sim.settle_step();
        sim.traffic_step();
        sim.hodl_step();
        sim.fee_step();
        if p.rebalance_every_mins > 0 && step % p.rebalance_every_mins == p.rebalance_every_mins / 2 {
            sim.rebalance_step();
        }
        if step % 60 == 59 {
            sim.trace
                .money
                .push((sim.now, sim.s.fees_earned_msat, sim.s.rebalance_spend_msat));
            imbalance_sum += u128::from(sim.imbalance());
            imbalance_samples += 1;
            if let Some(pb) = progress {
                pb.inc(1);
            }
        }
    }
    sim.now = T0 + steps * STEP_SECS;
    sim.finish();
    sim.s.imbalance_end_msat = sim.imbalance();
    sim.s.imbalance_floor_end_msat = sim.imbalance_floor();
    sim.s.imbalance_avg_msat = u64::try_from(imbalance_sum / imbalance_samples.max(1)).unwrap_or(u64::MAX);
    sim.s.finish_rebalance_figures();
    if let Some(e) = sim.ev.error.take() {
        return Err(e);
    }
    let fin = sim.net.wealth();
    let ours = sim.net.ours as usize;
    let mut mismatched = 0;
    for (n, l) in sim.net.ledger.iter().enumerate() {
        let delta = fin[n] as i128 - initial[n] as i128;
        let expect = l.received as i128 - l.sent as i128 - l.fees_paid as i128 + l.fees_earned as i128;
        if delta != expect {
            mismatched += 1;
        }
    }
    let conservation = Conservation {
        total_capacity: total,
        total_initial: initial.iter().sum(),
        total_final: fin.iter().sum(),
        fees_paid: sim.net.ledger.iter().map(|l| l.fees_paid).sum(),
        fees_earned: sim.net.ledger.iter().map(|l| l.fees_earned).sum(),
        ours_initial: initial[ours],
        ours_final: fin[ours],
        nodes_mismatched: mismatched,
    };
    sim.s.our_balance_start_msat = initial[ours];
    sim.s.our_balance_end_msat = fin[ours];
    sim.s.events = sim.ev.count;
    Ok(Outcome {
        summary: sim.s,
        conservation,
        trace: sim.trace,
        events: sim.ev.count,
    })
}

impl Sim<'_> {
    /// How far our channels are from the rebalance target: the sum over our channels of
    /// |local ratio - target| x capacity, msat (HTLCs we offered count as still ours).
    fn imbalance(&self) -> u64 {
        self.local_and_target()
            .into_iter()
            .map(|(local, want)| local.abs_diff(want))
            .fold(0u64, u64::saturating_add)
    }

    /// Each of our channels' local balance and its target local balance, msat.
    fn local_and_target(&self) -> Vec<(u64, u64)> {
        let target = self.planner.target;
        self.net.adj[self.net.ours as usize]
            .iter()
            .map(|&(ci, _)| {
                let (local, capacity) = self.net.our_side(ci);
                (local, (capacity as f64 * target).round() as u64)
            })
            .collect()
    }

    /// The part of [`Sim::imbalance`] no circular rebalance can remove: a rebalance moves
    /// local balance between our channels (less its fee) and never changes the total, so
    /// however it is spread the channels stay at least |sum of local - sum of target| from
    /// their targets. Payments to and from us move the total; rebalancing cannot.
    fn imbalance_floor(&self) -> u64 {
        let (local, want) = self
            .local_and_target()
            .into_iter()
            .fold((0u64, 0u64), |(l, w), (a, b)| {
                (l.saturating_add(a), w.saturating_add(b))
            });
        local.abs_diff(want)
    }

    fn on_block(&mut self) {
        if self.now > T0 {
            self.height += 1;
        }
        // Hold-invoice deadlines against the new height, and expiry of unpaid invoices,
        // by the service as the plugin runs them on `block_added` and its timer.
        let _ = self.hodl.on_block(self.height, self.now);
        let _ = self.hodl.tick(self.now);
        self.drain_hodl();
        self.ev
            .emit(json!({"t": self.now, "type": "block", "height": self.height}));

        // Monitoring: the plugin's snapshot round over every channel, judged by the rules in
        // force, with the balance history it keeps.
        let channels = self.rt.block_on(node!(self).channels()).unwrap_or_default();
        let transitions = self
            .monitor
            .snapshot_and_evaluate(&channels, self.height, self.now)
            .unwrap_or_default();
        for t in transitions {
            let kind = match &t {
                Transition::Raised(_) => "raised",
                Transition::Cleared(_) => "cleared",
                Transition::Updated(_) => "updated",
            };
            if let Transition::Raised(a) = &t {
                self.s.alerts_raised += 1;
                if a.severity == crate::engine::monitor::Severity::Critical {
                    self.s.alerts_critical += 1;
                }
            }
            let a = t.into_alert();
            if kind != "updated" {
                self.ev.emit(json!({"t": self.now, "type": "alert", "transition": kind, "id": a.id.0,
                    "kind": a.kind.as_str(), "severity": a.severity.as_str(), "channel": a.channel.to_string(), "message": a.message}));
            }
            self.trace.alerts.insert(a.id, a);
        }
    }

    fn finish(&mut self) {
        // What the monitor kept: its hourly tier (the one the report charts) and the latest
        // snapshot of every channel.
        for scid in self.monitor.channels_with_history().unwrap_or_default() {
            let hourly: Vec<HistoryPoint> = self
                .monitor
                .channel_history(scid)
                .unwrap_or_default()
                .into_iter()
                .filter(|p| p.bucket_secs == HISTORY_BUCKET_SECS)
                .collect();
            if !hourly.is_empty() {
                self.trace.history.insert(scid, hourly);
            }
        }
        self.trace.snapshots = self.monitor.snapshots();
        for inv in self.hodl.list(None, usize::MAX, 0).1 {
            match (inv.state, inv.cancel_reason) {
                (HodlState::Settled, _) => self.s.hodl_settled += 1,
                (HodlState::Canceled, Some(CancelReason::Deadline)) => self.s.hodl_canceled_deadline += 1,
                (HodlState::Canceled, _) => self.s.hodl_canceled += 1,
                (HodlState::Expired, _) => self.s.hodl_expired += 1,
                (HodlState::Accepted, _) => self.s.hodl_accepted += 1,
                (HodlState::Open, _) => self.s.hodl_open += 1,
            }
        }
        self.s.alerts_active_end = self.monitor.active_alerts().len() as u64;
        self.trace.end = self.now;
        self.ev.emit(json!({"t": self.now, "type": "end"}));
    }
}
