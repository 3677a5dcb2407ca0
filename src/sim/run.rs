//! The simulation loop: simulated minutes, blocks every ten, traffic over the network, and
//! the real engine deciding on what our node sees.
//!
//! Our node is a [`SimNode`]: the engine reads channels, the graph and forwards through the
//! `Node` trait and applies fees through it. Fee decisions run `engine::fees::decide` with
//! the inputs the plugin gathers (rebalance cost and peer size from the `RebalanceService`);
//! the monitor judges snapshots of `node.channels()`; rebalancing keeps its graph, beliefs
//! and attempt history in a `RebalanceService` (on a temporary store) and executes moves
//! with `service::execute`, the attempt loop `rebalance-execute` runs, paying through
//! `SimNode::pay_route`. Node futures are driven by one current-thread tokio runtime.

use super::network::{held_htlc, htlc, Network, PathHop, Sent};
use super::node::SimNode;
use super::rng::Rng;
use super::summary::{Conservation, Summary};
use super::{baseline, Rebalancer, SimPolicy};
use crate::engine::claims::ClaimSet;
use crate::engine::fees::{FeeConfig, Trigger};
use crate::engine::hodl::{CancelReason, HodlInvoice, HodlParams, HodlState, HtlcKey, IncomingHtlc};
use crate::engine::monitor::{
    Alert, AlertId, ChannelSnapshot, Evaluator, HistoryPoint, MonitorConfig, Transition,
};
use crate::engine::planner::{plan, MoveStatus, PlanRequest, PlannerConfig};
use crate::node::{FeeUpdate, Forward, ForwardStatus, HtlcDirection, Node, PendingHtlc};
use crate::service::execute::Executor;
use crate::service::fees::FeeService;
use crate::service::hodl::{HodlEvent, HodlService, HtlcReply};
use crate::service::rebalance::RebalanceService;
use crate::store::Store;
use crate::types::{Msat, PaymentHash, Preimage, Scid};
use serde_json::json;
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Simulated clock start (2023-11-14 22:13:20 UTC) and chain height.
pub const T0: u64 = 1_700_000_000;
pub const HEIGHT0: u32 = 800_000;
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
/// The window of rebalance costs the fee policy's cost floor looks at (as the plugin).
const COST_WINDOW_SECS: u64 = 7 * 86_400;
/// Half-life of liquidity beliefs.
const BELIEF_HALFLIFE_SECS: u64 = 6 * 3_600;

/// Our node over the simulated network, borrowing only the fields it needs so the rest of
/// the simulation stays usable while it lives.
macro_rules! node {
    ($s:expr) => {
        SimNode::new(&mut $s.net, &$s.htlcs, &$s.trace.forwards, $s.height)
    };
}

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

/// Sink for events: counted always, written as JSON lines when a writer is given.
struct Events<'a> {
    out: Option<&'a mut (dyn Write + 'a)>,
    count: u64,
    error: Option<std::io::Error>,
}

impl Events<'_> {
    fn emit(&mut self, v: serde_json::Value) {
        self.count += 1;
        if let Some(w) = self.out.as_deref_mut() {
            if self.error.is_none() {
                if let Err(e) = serde_json::to_writer(&mut *w, &v)
                    .map_err(std::io::Error::other)
                    .and_then(|_| w.write_all(b"\n"))
                {
                    self.error = Some(e);
                }
            }
        }
    }
}

/// A payment whose HTLCs are still out (offered, not yet settled) at the end of a minute.
struct Settling {
    path: Vec<PathHop>,
    amounts: Vec<u64>,
    /// (our channel index, htlc id) entries it added to `htlcs`.
    ours: Vec<(u32, u64)>,
}

struct Held {
    invoice: usize,
    path: Vec<PathHop>,
    amounts: Vec<u64>,
    chan: u32,
    htlc_id: u64,
    /// The service's answer channel, kept open as lightningd keeps the hook call waiting:
    /// a settle needs every part held by a live hook call.
    _hook: Option<tokio::sync::oneshot::Receiver<crate::service::hodl::Answer>>,
}

#[derive(Debug, Clone, Copy)]
enum Fate {
    Settle,
    Cancel,
    Ignore,
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
    evaluator: Evaluator,
    monitor_cfg: MonitorConfig,
    buckets: BTreeMap<Scid, HistoryPoint>,
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
        evaluator: Evaluator::new(),
        monitor_cfg: MonitorConfig::default(),
        buckets: BTreeMap::new(),
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

/// Distinct bytes per simulated HTLC, for their payment hashes.
fn sim_hash_seed(id: u64) -> [u8; 32] {
    let mut b = [0x5a; 32];
    b[..8].copy_from_slice(&id.to_be_bytes());
    b
}

impl Sim<'_> {
    /// How far our channels are from the rebalance target: the sum over our channels of
    /// |local ratio - target| x capacity, msat (HTLCs we offered count as still ours).
    fn imbalance(&self) -> u64 {
        let target = self.planner.target;
        self.net.adj[self.net.ours as usize]
            .iter()
            .map(|&(ci, _)| {
                let (local, capacity) = self.net.our_side(ci);
                let want = (capacity as f64 * target).round() as u64;
                local.abs_diff(want)
            })
            .fold(0u64, u64::saturating_add)
    }

    fn pick_node(&mut self) -> u32 {
        // Anyone but us; rng use does not depend on engine state.
        let n = self.net.ids.len() as u64;
        let mut v = self.traffic.below(n - 1) as u32;
        if v >= self.net.ours {
            v += 1;
        }
        v
    }

    /// Pays `amount` from `from` to `to`, retrying around failed hops. Returns the path and
    /// hop amounts of the successful attempt.
    fn pay(&mut self, from: u32, to: u32, amount: u64, hold: bool) -> Option<(Vec<PathHop>, Vec<u64>)> {
        let mut exclude: Vec<PathHop> = Vec::new();
        for _ in 0..PAY_ATTEMPTS {
            let path = self.net.find_path(from, to, amount, &exclude, self.now)?;
            let amounts = self.net.hop_amounts(&path, amount);
            match self.net.send(&path, &amounts, hold) {
                Sent::Done { amounts } => return Some((path, amounts)),
                Sent::Failed { at } => {
                    let hop = path[at];
                    self.net.channels[hop.0 as usize].failed[hop.1 as usize] = (self.now, amounts[at]);
                    if at > 0 && self.net.hop_from(hop) == self.net.ours {
                        // Failed at our outgoing channel: a local failure in listforwards.
                        self.s.forwards_failed += 1;
                        let in_scid = self.net.channels[path[at - 1].0 as usize].scid;
                        let out_scid = self.net.channels[hop.0 as usize].scid;
                        self.ev.emit(json!({"t": self.now, "type": "forward", "status": "local_failed",
                            "in": in_scid.to_string(), "out": out_scid.to_string(), "in_msat": amounts[at - 1], "out_msat": amounts[at]}));
                    }
                    exclude.push(hop);
                }
            }
        }
        None
    }

    fn traffic_step(&mut self) {
        let rate = self.p.payments_per_min;
        let mut k = rate.floor() as u64;
        if self.traffic.chance(rate - rate.floor()) {
            k += 1;
        }
        for _ in 0..k {
            let from = self.pick_node();
            let mut to = self.pick_node();
            if to == from {
                to = self.pick_node();
            }
            let amount = self.traffic.log_range(1_000_000, 500_000_000);
            // When in the minute it starts and how long it takes: drawn for every payment,
            // so the stream does not depend on what the engine did.
            let start = self.traffic.below(STEP_SECS);
            let takes = self.traffic.range(SETTLE_SECS.0, SETTLE_SECS.1 + 1);
            if to == from {
                continue;
            }
            let pending = start + takes >= STEP_SECS;
            self.s.payments += 1;
            match self.pay(from, to, amount, pending) {
                Some((path, amounts)) => {
                    self.s.payments_ok += 1;
                    self.ev.emit(json!({"t": self.now, "type": "payment", "ok": true, "msat": amount, "hops": path.len()}));
                    if pending {
                        self.hold_pending(path, amounts);
                    } else {
                        self.note_forwards(&path, &amounts);
                    }
                }
                None => {
                    self.ev
                        .emit(json!({"t": self.now, "type": "payment", "ok": false, "msat": amount}));
                }
            }
        }
    }

    /// A payment still settling: its HTLCs stay locked on every hop, and those through our
    /// node show on our channels, until the next minute settles it.
    fn hold_pending(&mut self, path: Vec<PathHop>, amounts: Vec<u64>) {
        let mut ours = Vec::new();
        let expiry = self.height + HODL_FINAL_CLTV * path.len() as u32;
        for i in 1..path.len() {
            if self.net.hop_from(path[i]) != self.net.ours {
                continue;
            }
            let id = self.next_htlc;
            self.next_htlc += 1;
            let hash = Preimage(sim_hash_seed(id)).payment_hash();
            let (inc, out) = (path[i - 1].0, path[i].0);
            self.htlcs.entry(inc).or_default().push(htlc(
                HtlcDirection::In,
                id,
                amounts[i - 1],
                expiry,
                hash,
            ));
            self.htlcs
                .entry(out)
                .or_default()
                .push(htlc(HtlcDirection::Out, id, amounts[i], expiry, hash));
            ours.push((inc, id));
            ours.push((out, id));
        }
        self.settling.push(Settling { path, amounts, ours });
    }

    /// Settles the payments left pending by the previous minute.
    fn settle_step(&mut self) {
        for st in std::mem::take(&mut self.settling) {
            self.net.resolve(&st.path, &st.amounts, true);
            for (ci, id) in st.ours {
                if let Some(v) = self.htlcs.get_mut(&ci) {
                    v.retain(|h| h.id != id);
                }
            }
            self.note_forwards(&st.path, &st.amounts);
        }
    }

    /// Peers of our channels going away and coming back (from their own stream).
    fn links_step(&mut self) {
        let now = self.now;
        let mut back = Vec::new();
        self.reconnects.retain(|&(at, ci)| {
            let due = at <= now;
            if due {
                back.push(ci);
            }
            !due
        });
        for ci in back {
            self.net.channels[ci as usize].down = false;
            let scid = self.net.channels[ci as usize].scid;
            self.ev
                .emit(json!({"t": now, "type": "peer", "scid": scid.to_string(), "connected": true}));
        }
        if !self.links.chance(DISCONNECT_PER_MIN) {
            return;
        }
        let pick = self
            .links
            .below(self.net.adj[self.net.ours as usize].len() as u64) as usize;
        let mins = self.links.range(DISCONNECT_MINS.0, DISCONNECT_MINS.1 + 1);
        let ci = self.net.adj[self.net.ours as usize][pick].0;
        if self.net.channels[ci as usize].down {
            return;
        }
        self.net.channels[ci as usize].down = true;
        self.reconnects.push((now + mins * 60, ci));
        self.s.disconnects += 1;
        let scid = self.net.channels[ci as usize].scid;
        self.ev.emit(
            json!({"t": now, "type": "peer", "scid": scid.to_string(), "connected": false, "minutes": mins}),
        );
    }

    fn note_forwards(&mut self, path: &[PathHop], amounts: &[u64]) {
        for i in 1..path.len() {
            if self.net.hop_from(path[i]) != self.net.ours {
                continue;
            }
            let in_scid = self.net.channels[path[i - 1].0 as usize].scid;
            let out_scid = self.net.channels[path[i].0 as usize].scid;
            let (inn, out) = (amounts[i - 1], amounts[i]);
            let fee = inn - out;
            self.s.forwards += 1;
            self.s.forwarded_msat += out;
            self.s.fees_earned_msat += fee;
            self.trace.forwards.push(Forward {
                in_channel: in_scid,
                out_channel: Some(out_scid),
                in_msat: Msat(inn),
                out_msat: Some(Msat(out)),
                fee: Some(Msat(fee)),
                status: ForwardStatus::Settled,
                received_time: self.now as f64,
                resolved_time: Some(self.now as f64),
            });
            self.ev.emit(
                json!({"t": self.now, "type": "forward", "status": "settled", "in": in_scid.to_string(),
                "out": out_scid.to_string(), "in_msat": inn, "out_msat": out, "fee_msat": fee}),
            );
            // What the plugin does on a settled forward_event.
            self.fees
                .on_forward(in_scid, Some(out_scid), Msat(inn), Msat(out), self.now);
        }
    }

    /// The plugin's fee loop: due channels (forward-triggered) every tick, and every
    /// channel once per sweep interval.
    fn fee_step(&mut self) {
        let mut due: Vec<Scid> = self.fees.take_due(self.now);
        let sweep = (self.now - T0) % FEE_SWEEP_SECS == FEE_SWEEP_SECS - STEP_SECS;
        if due.is_empty() && !sweep {
            return;
        }
        let channels = match self.rt.block_on(node!(self).channels()) {
            Ok(c) => c,
            Err(_) => return,
        };
        let mut triggers = vec!["forward"; due.len()];
        if sweep {
            for c in &channels {
                if let Some(s) = c.scid.filter(|s| !due.contains(s)) {
                    due.push(s);
                    triggers.push("timer");
                }
            }
        }
        for (scid, trigger) in due.into_iter().zip(triggers) {
            let Some(ch) = channels.iter().find(|c| c.scid == Some(scid)) else {
                continue;
            };
            // As `api::fees` decides: the service's policy, flow and rate limits, with the
            // rebalance cost floor and the peer's size from the rebalance service.
            let cost = self
                .svc
                .recent_cost_ppm(scid, self.now.saturating_sub(COST_WINDOW_SECS))
                .unwrap_or(None);
            let peer_channels = self.svc.node_channels(&ch.peer);
            let Some(d) = self.fees.decide(ch, cost, peer_channels, self.now, false) else {
                continue;
            };
            if !d.status.applies() {
                continue;
            }
            let fee = FeeUpdate {
                base: d.target.base_msat,
                ppm: d.target.ppm,
            };
            if self.rt.block_on(node!(self).set_fee(scid, fee)).is_err() {
                continue;
            }
            let t = if trigger == "forward" {
                Trigger::Forward
            } else {
                Trigger::Timer
            };
            let _ = self.fees.record(&d, t, self.now);
            self.s.fee_changes += 1;
            self.trace
                .fee_series
                .entry(scid)
                .or_default()
                .push((self.now, d.target.ppm));
            self.ev.emit(
                json!({"t": self.now, "type": "fee_change", "scid": scid.to_string(), "trigger": trigger,
                "old_ppm": d.current.ppm, "new_ppm": d.target.ppm, "base_msat": d.target.base_msat.0,
                "rule": d.rule.as_ref().map(|r| r.name.clone()), "why": d.explanation}),
            );
        }
    }

    fn hodl_step(&mut self) {
        // Scheduled settles and cancels by "the application".
        while let Some((&(due, seq), &(hi, settle))) = self.actions.iter().next() {
            if due > self.now {
                break;
            }
            self.actions.remove(&(due, seq));
            let hash = self.hashes[self.held[hi].invoice];
            if self.hodl.get(&hash).map(|i| i.state) != Some(HodlState::Accepted) {
                continue;
            }
            // As an app would: settle by hash (ballast made the preimage) or cancel. An
            // illegal transition (a deadline got there first) changes nothing.
            let _ = if settle {
                self.hodl
                    .settle(None, Some(hash), self.now, self.height)
                    .map(|_| ())
            } else {
                self.hodl
                    .cancel(hash, CancelReason::Requested, self.now, self.height)
                    .map(|_| ())
            };
            self.drain_hodl();
        }
        // New invoices. Their fate is drawn now, from the hodl stream only.
        if !self.hodl_rng.chance(self.p.hodl_per_min) {
            return;
        }
        let amount = self.hodl_rng.log_range(10_000_000, 300_000_000);
        let preimage = Preimage(self.hodl_rng.bytes32());
        let secret = self.hodl_rng.bytes32();
        let roll = self.hodl_rng.unit();
        let delay = 60 * self.hodl_rng.range(1, 181);
        let payer_pick = self.hodl_rng.below(self.net.ids.len() as u64 - 1) as u32;
        let payer = if payer_pick >= self.net.ours {
            payer_pick + 1
        } else {
            payer_pick
        };
        let (pays, fate) = match roll {
            r if r < 0.55 => (true, Fate::Settle),
            r if r < 0.80 => (true, Fate::Cancel),
            r if r < 0.95 => (true, Fate::Ignore),
            _ => (false, Fate::Ignore),
        };
        let hash: PaymentHash = preimage.payment_hash();
        let idx = self.hashes.len();
        self.hashes.push(hash);
        let created = self.hodl.create(HodlInvoice {
            payment_hash: hash,
            preimage: Some(preimage),
            payment_secret: secret,
            amount: Msat(amount),
            bolt11: String::new(),
            label: Some(format!("sim-{idx}")),
            description: None,
            created_at: self.now,
            expires_at: self.now + 3_600,
            min_final_cltv: 18,
            state: HodlState::Open,
            htlcs: Vec::new(),
            mpp_total: None,
            updated_at: self.now,
            cancel_reason: None,
        });
        if created.is_err() {
            // A store failure on the temporary store: nothing to simulate for this one.
            return;
        }
        self.s.hodl_created += 1;
        self.ev.emit(
            json!({"t": self.now, "type": "hodl", "hash": hash.to_hex(), "state": "open", "msat": amount}),
        );
        if !pays {
            return;
        }
        let ours = self.net.ours;
        let Some((path, amounts)) = self.pay(payer, ours, amount, true) else {
            return;
        };
        let last = *path.last().expect("non-empty path");
        let chan = last.0;
        let id = self.next_htlc;
        self.next_htlc += 1;
        let htlc = IncomingHtlc {
            key: HtlcKey {
                scid: self.net.channels[chan as usize].scid,
                id,
            },
            amount: Msat(amounts[amounts.len() - 1]),
            cltv_expiry: self.height + HODL_FINAL_CLTV,
            cltv_expiry_relative: HODL_FINAL_CLTV,
            payment_secret: Some(secret),
            total_msat: None,
        };
        let mut reply = self.hodl.on_htlc(hash, &htlc, self.now, self.height);
        let hook = match &mut reply {
            Ok(HtlcReply::Wait(rx)) => {
                let (_, closed) = tokio::sync::oneshot::channel();
                Some(std::mem::replace(rx, closed))
            }
            _ => None,
        };
        let hi = self.held.len();
        self.held.push(Held {
            invoice: idx,
            path,
            amounts,
            chan,
            htlc_id: id,
            _hook: hook,
        });
        match reply {
            // The answer arrives through the service's events (settle, cancel, deadline),
            // as it does for the plugin's waiting hook.
            Ok(HtlcReply::Wait(_)) => {
                self.htlcs.entry(chan).or_default().push(held_htlc(
                    id,
                    htlc.amount.0,
                    htlc.cltv_expiry,
                    hash,
                ));
                self.held_of.insert(hash, hi);
                self.drain_hodl();
                let seq = hi as u64;
                match fate {
                    Fate::Settle => {
                        self.actions.insert((self.now + delay, seq), (hi, true));
                    }
                    Fate::Cancel => {
                        self.actions.insert((self.now + delay, seq), (hi, false));
                    }
                    Fate::Ignore => {}
                }
            }
            _ => {
                let h = &self.held[hi];
                let (p, a) = (h.path.clone(), h.amounts.clone());
                self.net.resolve(&p, &a, false);
            }
        }
    }

    /// Resolves a held payment (settle or fail back) after its invoice changed state.
    fn release(&mut self, hi: usize, settle: bool, from: HodlState, to: HodlState, why: &str) {
        let (path, amounts, chan, id, inv) = {
            let h = &self.held[hi];
            (h.path.clone(), h.amounts.clone(), h.chan, h.htlc_id, h.invoice)
        };
        self.net.resolve(&path, &amounts, settle);
        if let Some(v) = self.htlcs.get_mut(&chan) {
            v.retain(|h| h.id != id);
        }
        if settle {
            let got = amounts[amounts.len() - 1];
            self.s.hodl_received_msat += got;
            self.trace.hodl_paid.push((Msat(got), self.now));
            self.note_forwards(&path, &amounts);
        }
        let hash = self.hashes[inv].to_hex();
        self.ev.emit(json!({"t": self.now, "type": "hodl", "hash": hash, "from": from.as_str(), "state": to.as_str(), "reason": why}));
    }

    /// Acts on the hold-invoice service's transitions: a final state releases the held
    /// payment (settled or failed back along its path), every change becomes an event.
    fn drain_hodl(&mut self) {
        loop {
            let e = match self.hodl_events.try_recv() {
                Ok(e) => e,
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    // Cannot happen at this pace (drained after every call); if it did,
                    // held payments would stay locked, and the event says so.
                    self.ev
                        .emit(json!({"t": self.now, "type": "hodl_events_lost", "count": n}));
                    continue;
                }
                Err(_) => return,
            };
            match e {
                HodlEvent::State {
                    payment_hash,
                    from,
                    to,
                    reason,
                } => {
                    let why = reason.map_or_else(
                        || "requested".to_string(),
                        |r| {
                            serde_json::to_value(r)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_default()
                        },
                    );
                    let held = to
                        .is_final()
                        .then(|| self.held_of.remove(&payment_hash))
                        .flatten();
                    match held {
                        Some(hi) => self.release(hi, to == HodlState::Settled, from, to, &why),
                        None => self.ev.emit(json!({"t": self.now, "type": "hodl", "hash": payment_hash.to_hex(), "from": from.as_str(), "state": to.as_str()})),
                    }
                }
                HodlEvent::DeadlineWarning {
                    payment_hash,
                    blocks_to_cancel,
                } => {
                    self.ev.emit(json!({"t": self.now, "type": "hodl_warning", "hash": payment_hash.to_hex(), "blocks_to_cancel": blocks_to_cancel}));
                }
                HodlEvent::PartsReleased { .. } => {}
            }
        }
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

        // Monitoring: a snapshot of every channel, judged by the rules in force.
        let channels = self.rt.block_on(node!(self).channels()).unwrap_or_default();
        let snaps: Vec<ChannelSnapshot> = channels
            .iter()
            .map(|c| ChannelSnapshot::from_channel(c, self.height, self.now))
            .collect();
        for t in self.evaluator.evaluate(&snaps, &self.monitor_cfg, self.now) {
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
        // Balance history, hourly buckets (what the monitor's history keeps).
        for s in &snaps {
            let Some(scid) = s.scid() else { continue };
            let start = self.now - self.now % 3_600;
            let b = self.buckets.entry(scid).or_insert_with(|| HistoryPoint {
                scid,
                bucket_secs: 3_600,
                start,
                samples: 0,
                local_avg: s.local,
                local_min: s.local,
                local_max: s.local,
                capacity: s.capacity,
            });
            if b.start != start {
                let done = std::mem::replace(
                    b,
                    HistoryPoint {
                        scid,
                        bucket_secs: 3_600,
                        start,
                        samples: 0,
                        local_avg: s.local,
                        local_min: s.local,
                        local_max: s.local,
                        capacity: s.capacity,
                    },
                );
                self.trace.history.entry(scid).or_default().push(done);
            }
            // Exact running mean: (avg * n + x) / (n + 1), in u128.
            let n = b.samples as u128;
            b.local_avg = Msat(((b.local_avg.0 as u128 * n + s.local.0 as u128) / (n + 1)) as u64);
            b.local_min = b.local_min.min(s.local);
            b.local_max = b.local_max.max(s.local);
            b.capacity = s.capacity;
            b.samples += 1;
        }
        self.trace.snapshots = snaps;
    }

    /// The gossip graph from the node, into the service (the plugin's graph refresher).
    fn refresh_graph(&mut self) {
        if let Ok(edges) = self.rt.block_on(node!(self).graph()) {
            let _ = self.svc.refresh_graph(&edges);
        }
    }

    /// The plugin's automatic round: a plan from the node's channels and graph, then each
    /// planned move through `service::execute` with our `SimNode` paying.
    fn rebalance_step(&mut self) {
        self.refresh_graph();
        let now = self.now;
        let node = node!(self);
        let Ok(channels) = self.rt.block_on(node.channels()) else {
            return;
        };
        let me = node.id();
        let planned = self.svc.with_graph(now, |graph, beliefs, _| {
            plan(&PlanRequest {
                ours: me,
                channels: &channels,
                graph,
                beliefs,
                config: &self.planner,
                feerate_perkb: None,
                now,
            })
        });
        let Some(Ok(pl)) = planned else { return };
        self.s.rebalance_plans += 1;
        self.executions += 1;
        let exec_id = format!("sim-{}", self.executions);
        let clock = move || now;
        let exec = Executor {
            service: &self.svc,
            node: &node,
            planner: &self.planner,
            daily_budget: Msat(self.policy.daily_budget_msat),
            now: &clock,
            me,
            exec_id: &exec_id,
            channels: &channels,
        };
        let mut reports = Vec::new();
        let mut budget_left = Msat(u64::MAX);
        for mv in pl.moves.iter().filter(|m| m.status == MoveStatus::Planned) {
            let max_ppm = self.policy.max_ppm.min(mv.fee_cap_ppm);
            let (src, snk) = (mv.source_scid, mv.sink_scid);
            let done = match self.p.rebalancer {
                Rebalancer::Ballast => {
                    let run = exec.execute_move(src, snk, mv.amount, max_ppm, &mut budget_left);
                    self.rt.block_on(run)
                }
                Rebalancer::Baseline => {
                    let run = baseline::execute_move(&exec, src, snk, mv.amount, max_ppm, &mut budget_left);
                    self.rt.block_on(run)
                }
            };
            match done {
                Ok(r) => reports.push(r),
                Err(e) => {
                    self.ev
                        .emit(json!({"t": now, "type": "rebalance_error", "error": e.to_string()}));
                }
            }
        }
        drop(node);
        for r in reports {
            self.ev.emit(json!({"t": now, "type": "rebalance_move", "source": r.source.to_string(), "sink": r.sink.to_string(),
                "requested_msat": r.requested.0, "moved_msat": r.moved.0, "fee_msat": r.fee.0, "attempts": r.attempts,
                "status": r.status.as_str(), "reason": r.reason}));
            if r.reason.starts_with("daily budget") {
                self.s.rebalance_budget_stops += 1;
            }
            for a in &r.recorded {
                let ok = a.outcome == crate::service::rebalance::AttemptOutcome::Success;
                self.s.rebalance_attempts += 1;
                if ok {
                    self.s.rebalance_ok += 1;
                    self.s.rebalance_moved_msat += a.amount.0;
                    self.s.rebalance_spend_msat += a.fee.0;
                    let ppm = (a.fee.0 as u128 * 1_000_000 / a.amount.0.max(1) as u128) as u64;
                    self.s.rebalance_max_ppm = self.s.rebalance_max_ppm.max(ppm);
                }
                let failed_at = a
                    .failing_channel
                    .and_then(|f| a.route.iter().position(|s| *s == f));
                self.ev.emit(json!({"t": now, "type": "rebalance", "source": a.source.to_string(), "sink": a.sink.to_string(),
                    "msat": a.amount.0, "fee_msat": a.fee.0, "hops": a.route.len(), "ok": ok, "failed_at": failed_at}));
            }
            if r.moved.0 > 0 {
                let spent = self
                    .svc
                    .spent_since(now.saturating_sub(86_400))
                    .map_or(0, |m| m.0);
                self.s.max_24h_spend_msat = self.s.max_24h_spend_msat.max(spent);
            }
        }
    }

    fn finish(&mut self) {
        for (_, b) in std::mem::take(&mut self.buckets) {
            self.trace.history.entry(b.scid).or_default().push(b);
        }
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
        self.s.alerts_active_end = self.evaluator.active_count() as u64;
        self.trace.end = self.now;
        self.ev.emit(json!({"t": self.now, "type": "end"}));
    }
}
