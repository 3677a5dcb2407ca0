//! The simulation loop: simulated minutes, blocks every ten, traffic over the network, and
//! the real engine deciding on what our node sees.
//!
//! The engine is called directly (`engine::fees::{decide, Coalescer}`, `engine::hodl`,
//! `engine::monitor::Evaluator`, `engine::planner::plan`, `engine::route`) with the same
//! `node::Channel`, `GraphEdge` and `Forward` values a `Node` implementation returns. The
//! plugin's own orchestration lives in `cln` and is bound to lightningd's plugin state, so a
//! `Node` impl for the simulator would not reach more shared code; it would only add an
//! async runtime and a persistent store (fsync per record) to every simulated event.

use super::network::{held_htlc, Network, PathHop, Sent};
use super::rng::Rng;
use super::summary::{Conservation, Summary};
use super::SimPolicy;
use crate::engine::beliefs::{Beliefs, DirectedChannel};
use crate::engine::fees::{decide, ChannelFee, ChannelInputs, Coalescer, DecideCtx, FeeConfig, Flow};
use crate::engine::graph::Graph;
use crate::engine::hodl::{
    CancelReason, DeadlineAction, HodlInvoice, HodlParams, HodlState, HtlcKey, HtlcVerdict, IncomingHtlc,
};
use crate::engine::monitor::{
    Alert, AlertId, ChannelSnapshot, Evaluator, HistoryPoint, MonitorConfig, Transition,
};
use crate::engine::planner::{plan, MoveStatus, PlanRequest, PlannerConfig};
use crate::engine::route::{find_circular_routes, CircularRequest, Route, RouteParams};
use crate::node::{Forward, ForwardStatus, PendingHtlc};
use crate::types::{Msat, PaymentHash, Preimage, Scid};
use serde_json::json;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;

/// Simulated clock start (2023-11-14 22:13:20 UTC) and chain height.
pub const T0: u64 = 1_700_000_000;
pub const HEIGHT0: u32 = 800_000;
const STEP_SECS: u64 = 60;
const BLOCK_STEPS: u64 = 10;
const FLOW_WINDOW_SECS: u64 = 86_400;
const FLOW_BUCKET_SECS: u64 = 3_600;
const HODL_FINAL_CLTV: u32 = 40;
const PAY_ATTEMPTS: usize = 5;
/// How often every channel is decided, traffic or not (the plugin's fee sweep).
const FEE_SWEEP_SECS: u64 = 3_600;

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

struct Held {
    invoice: usize,
    path: Vec<PathHop>,
    amounts: Vec<u64>,
    chan: u32,
    htlc_id: u64,
}

#[derive(Debug, Clone, Copy)]
enum Fate {
    Settle,
    Cancel,
    Ignore,
}

struct Attempt {
    time: u64,
    sink: Scid,
    amount: u64,
    fee: u64,
    ok: bool,
}

struct Sim<'a> {
    net: Network,
    policy: &'a SimPolicy,
    p: &'a RunParams,
    now: u64,
    height: u32,
    traffic: Rng,
    hodl_rng: Rng,
    ev: Events<'a>,
    s: Summary,
    trace: Trace,
    // fees
    fee_cfg: FeeConfig,
    coalescer: Coalescer,
    flows: HashMap<Scid, VecDeque<(u64, u64, u64)>>,
    last_update: HashMap<Scid, u64>,
    // hodl
    hodl_params: HodlParams,
    invoices: Vec<HodlInvoice>,
    held: Vec<Held>,
    /// (due, seq) → (held index, settle?)
    actions: BTreeMap<(u64, u64), (usize, bool)>,
    open_invoices: Vec<usize>,
    htlcs: HashMap<u32, Vec<PendingHtlc>>,
    next_htlc: u64,
    // monitor
    evaluator: Evaluator,
    monitor_cfg: MonitorConfig,
    buckets: BTreeMap<Scid, HistoryPoint>,
    // rebalance
    beliefs: Beliefs,
    attempts: Vec<Attempt>,
    planner: PlannerConfig,
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
        ev: Events {
            out: events,
            count: 0,
            error: None,
        },
        trace: Trace::default(),
        coalescer: Coalescer::new(&fee_cfg, T0),
        fee_cfg,
        flows: HashMap::new(),
        last_update: HashMap::new(),
        hodl_params: HodlParams::default(),
        invoices: Vec::new(),
        held: Vec::new(),
        actions: BTreeMap::new(),
        open_invoices: Vec::new(),
        htlcs: HashMap::new(),
        next_htlc: 0,
        evaluator: Evaluator::new(),
        monitor_cfg: MonitorConfig::default(),
        buckets: BTreeMap::new(),
        beliefs: Beliefs::new(6 * 3_600),
        attempts: Vec::new(),
        planner,
    };
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
            if let Some(pb) = progress {
                pb.inc(1);
            }
        }
    }
    sim.now = T0 + steps * STEP_SECS;
    sim.finish();
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
            if to == from {
                continue;
            }
            self.s.payments += 1;
            match self.pay(from, to, amount, false) {
                Some((path, amounts)) => {
                    self.s.payments_ok += 1;
                    self.ev.emit(json!({"t": self.now, "type": "payment", "ok": true, "msat": amount, "hops": path.len()}));
                    self.note_forwards(&path, &amounts);
                }
                None => {
                    self.ev
                        .emit(json!({"t": self.now, "type": "payment", "ok": false, "msat": amount}));
                }
            }
        }
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
            self.add_flow(in_scid, inn, 0);
            self.add_flow(out_scid, 0, out);
            self.coalescer.on_event(in_scid, self.now);
            self.coalescer.on_event(out_scid, self.now);
        }
    }

    fn add_flow(&mut self, scid: Scid, inn: u64, out: u64) {
        let bucket = self.now - self.now % FLOW_BUCKET_SECS;
        let q = self.flows.entry(scid).or_default();
        match q.back_mut() {
            Some(b) if b.0 == bucket => {
                b.1 += inn;
                b.2 += out;
            }
            _ => q.push_back((bucket, inn, out)),
        }
        while q
            .front()
            .is_some_and(|b| b.0 + FLOW_BUCKET_SECS <= self.now.saturating_sub(FLOW_WINDOW_SECS))
        {
            q.pop_front();
        }
    }

    fn flow(&self, scid: Scid) -> Flow {
        let horizon = self.now.saturating_sub(FLOW_WINDOW_SECS);
        let (mut i, mut o) = (0, 0);
        for b in self.flows.get(&scid).into_iter().flatten() {
            if b.0 + FLOW_BUCKET_SECS > horizon {
                i += b.1;
                o += b.2;
            }
        }
        Flow {
            in_msat: Msat(i),
            out_msat: Msat(o),
            window_secs: FLOW_WINDOW_SECS,
        }
    }

    fn rebalance_cost_ppm(&self, scid: Scid) -> Option<u32> {
        let since = self.now.saturating_sub(7 * 86_400);
        let (mut fee, mut amount) = (0u64, 0u64);
        for a in self.attempts.iter().rev().take_while(|a| a.time >= since) {
            if a.ok && a.sink == scid {
                fee += a.fee;
                amount += a.amount;
            }
        }
        (amount > 0)
            .then(|| ((fee as u128 * 1_000_000).div_ceil(amount as u128)).min(u32::MAX as u128) as u32)
    }

    /// The plugin's fee loop: due channels (forward-triggered) every tick, and every
    /// channel once per sweep interval.
    fn fee_step(&mut self) {
        let mut due: Vec<Scid> = self
            .coalescer
            .take_due(self.now)
            .into_iter()
            .map(|(s, _)| s)
            .collect();
        let sweep = (self.now - T0) % FEE_SWEEP_SECS == FEE_SWEEP_SECS - STEP_SECS;
        if due.is_empty() && !sweep {
            return;
        }
        let channels = self.net.our_channels(&self.htlcs);
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
            let inputs = ChannelInputs {
                scid,
                peer: ch.peer,
                capacity: ch.capacity,
                local: ch.local,
                pending_htlcs: ch.htlcs.len() as u32,
                flow: self.flow(scid),
                rebalance_cost_ppm: self.rebalance_cost_ppm(scid),
                peer_channels: Some(
                    self.net.adj[self.net.by_scid.get(&scid).map_or(0, |&ci| {
                        let c = &self.net.channels[ci as usize];
                        if c.node[0] == self.net.ours {
                            c.node[1]
                        } else {
                            c.node[0]
                        }
                    }) as usize]
                        .len() as u32,
                ),
                current: ChannelFee {
                    base_msat: ch.fee_base,
                    ppm: ch.fee_ppm,
                    cltv_delta: None,
                },
                last_update: self.last_update.get(&scid).copied(),
            };
            let d = decide(
                &self.policy.fees,
                &self.fee_cfg,
                &inputs,
                DecideCtx {
                    now: self.now,
                    started_at: T0,
                    force: false,
                },
            );
            if !d.status.applies() {
                continue;
            }
            self.net.set_our_fee(scid, d.target.base_msat.0, d.target.ppm);
            self.coalescer.record_applied(scid, self.now);
            self.last_update.insert(scid, self.now);
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
            let inv = self.held[hi].invoice;
            if self.invoices[inv].state != HodlState::Accepted {
                continue;
            }
            let res = if settle {
                let pre = self.invoices[inv].preimage.expect("we made the preimage");
                self.invoices[inv].settle(pre, self.now).map(|(_, t)| t)
            } else {
                self.invoices[inv]
                    .cancel(CancelReason::Requested, self.now)
                    .map(|(_, t)| t)
            };
            if let Ok((from, to)) = res {
                self.release(hi, settle, from, to, "requested");
            }
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
        let idx = self.invoices.len();
        self.invoices.push(HodlInvoice {
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
        self.open_invoices.push(idx);
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
        let out = self.invoices[idx].on_htlc(&htlc, self.now, self.height, &self.hodl_params);
        let hi = self.held.len();
        self.held.push(Held {
            invoice: idx,
            path,
            amounts,
            chan,
            htlc_id: id,
        });
        match out.verdict {
            HtlcVerdict::Hold => {
                self.htlcs.entry(chan).or_default().push(held_htlc(
                    id,
                    htlc.amount.0,
                    htlc.cltv_expiry,
                    hash,
                ));
                if let Some((from, to)) = out.transition {
                    self.ev.emit(json!({"t": self.now, "type": "hodl", "hash": hash.to_hex(), "from": from.as_str(), "state": to.as_str()}));
                }
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
        let hash = self.invoices[inv].payment_hash.to_hex();
        self.ev.emit(json!({"t": self.now, "type": "hodl", "hash": hash, "from": from.as_str(), "state": to.as_str(), "reason": why}));
    }

    fn on_block(&mut self) {
        if self.now > T0 {
            self.height += 1;
        }
        // Hold-invoice deadlines against the new height, and expiry of unpaid invoices.
        let mut keep = Vec::with_capacity(self.open_invoices.len());
        let open = std::mem::take(&mut self.open_invoices);
        for idx in open {
            let action = self.invoices[idx].on_block(self.height, &self.hodl_params);
            match action {
                DeadlineAction::Cancel => {
                    if let Ok((_, (from, to))) = self.invoices[idx].cancel(CancelReason::Deadline, self.now) {
                        if let Some(hi) = self.held.iter().rposition(|h| h.invoice == idx) {
                            self.release(hi, false, from, to, "deadline");
                        }
                    }
                }
                DeadlineAction::Warn { blocks_to_cancel } => {
                    let hash = self.invoices[idx].payment_hash.to_hex();
                    self.ev.emit(json!({"t": self.now, "type": "hodl_warning", "hash": hash, "blocks_to_cancel": blocks_to_cancel}));
                }
                DeadlineAction::ReleaseParts | DeadlineAction::None => {}
            }
            if let Some((from, to)) = self.invoices[idx].expire(self.now) {
                let hash = self.invoices[idx].payment_hash.to_hex();
                self.ev.emit(json!({"t": self.now, "type": "hodl", "hash": hash, "from": from.as_str(), "state": to.as_str()}));
            }
            if !self.invoices[idx].state.is_final() {
                keep.push(idx);
            }
        }
        self.open_invoices = keep;
        self.ev
            .emit(json!({"t": self.now, "type": "block", "height": self.height}));

        // Monitoring: a snapshot of every channel, judged by the rules in force.
        let channels = self.net.our_channels(&self.htlcs);
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

    fn spent_since(&self, since: u64) -> u64 {
        self.attempts
            .iter()
            .rev()
            .take_while(|a| a.time >= since)
            .filter(|a| a.ok)
            .map(|a| a.fee)
            .sum()
    }

    fn rebalance_step(&mut self) {
        let edges = self.net.graph_edges();
        let Ok(graph) = Graph::from_edges(&edges) else {
            return;
        };
        graph.prepare();
        let channels = self.net.our_channels(&self.htlcs);
        let ours = self.net.ids[self.net.ours as usize];
        let req = PlanRequest {
            ours,
            channels: &channels,
            graph: &graph,
            beliefs: &self.beliefs,
            config: &self.planner,
            feerate_perkb: None,
            now: self.now,
        };
        let Ok(pl) = plan(&req) else { return };
        self.s.rebalance_plans += 1;
        for mv in pl.moves.iter().filter(|m| m.status == MoveStatus::Planned) {
            self.execute_move(&graph, &channels, mv.source_scid, mv.sink_scid, mv.amount.0);
        }
    }

    /// Mirrors `rebalance-execute`: parts, halving on failure, the daily budget and the
    /// fee cap checked against the exact route fee before anything is sent.
    fn execute_move(
        &mut self,
        graph: &Graph,
        channels: &[crate::node::Channel],
        source: Scid,
        sink: Scid,
        amount: u64,
    ) {
        let (Some(src), Some(dst)) = (
            channels.iter().find(|c| c.scid == Some(source)),
            channels.iter().find(|c| c.scid == Some(sink)),
        ) else {
            return;
        };
        if src.peer == dst.peer {
            return;
        }
        let ours = self.net.ids[self.net.ours as usize];
        let min_part = self.planner.min_amount.0.max(1);
        let (mut remaining, mut part, mut tries) = (amount, amount, 0u32);
        while remaining > 0 && tries < 16 {
            part = part.min(remaining);
            let daily_left = self
                .policy
                .daily_budget_msat
                .saturating_sub(self.spent_since(self.now.saturating_sub(86_400)));
            let cap = (part as u128 * self.policy.max_ppm as u128 / 1_000_000) as u64;
            let fee_cap = cap.min(daily_left);
            if fee_cap == 0 {
                if daily_left == 0 {
                    self.s.rebalance_budget_stops += 1;
                }
                break;
            }
            let creq = CircularRequest {
                ours,
                out_scid: source,
                out_peer: src.peer,
                in_scid: sink,
                in_peer: dst.peer,
                amount: Msat(part),
                in_policy: dst.remote_policy,
            };
            let params = RouteParams {
                k: self.planner.k.max(1),
                max_hops: self.planner.max_hops,
                max_fee: Some(Msat(fee_cap)),
                cost: self.planner.cost.clone(),
                ..RouteParams::default()
            };
            let view = self.beliefs.view(graph, self.now);
            let routes = find_circular_routes(graph, &view, &creq, &params).unwrap_or_default();
            let mut ok = false;
            for route in routes {
                // The hard stop, as in the plugin: this exact fee against what is left.
                if route.fee.0 > fee_cap || route.fee.0 > daily_left {
                    continue;
                }
                tries += 1;
                if self.attempt(graph, &route, source, sink) {
                    remaining -= part;
                    ok = true;
                    break;
                }
                if tries >= 16 {
                    break;
                }
            }
            if !ok && remaining > 0 {
                if part / 2 >= min_part {
                    part /= 2;
                } else {
                    break;
                }
            }
        }
    }

    fn attempt(&mut self, graph: &Graph, route: &Route, source: Scid, sink: Scid) -> bool {
        let ours = self.net.ours;
        let mut path = Vec::with_capacity(route.hops.len());
        let mut from = ours;
        for h in &route.hops {
            let Some(&ci) = self.net.by_scid.get(&h.scid) else {
                return false;
            };
            let c = &self.net.channels[ci as usize];
            let d = if c.node[0] == from { 0 } else { 1 };
            path.push((ci, d as u8));
            from = c.node[1 - d];
        }
        let amounts: Vec<u64> = route.hops.iter().map(|h| h.amount.0).collect();
        let sent = self.net.send(&path, &amounts, false);
        let failed_at = match sent {
            Sent::Done { .. } => None,
            Sent::Failed { at } => Some(at),
        };
        // What the service's `learn` does: hops before the failure had the liquidity.
        let mut hops = Vec::with_capacity(route.hops.len());
        let mut from_id = self.net.ids[ours as usize];
        for h in &route.hops {
            if let Some(e) = graph
                .node_index(&from_id)
                .and_then(|ix| graph.edge_from(h.scid, ix))
                .and_then(|e| graph.edge(e))
            {
                hops.push((DirectedChannel::of(e), e.capacity, h.amount));
            }
            from_id = h.node;
        }
        self.beliefs.record_attempt(&hops, failed_at, self.now);
        let ok = failed_at.is_none();
        self.s.rebalance_attempts += 1;
        let fee = route.fee.0;
        if ok {
            self.s.rebalance_ok += 1;
            self.s.rebalance_moved_msat += route.amount.0;
            self.s.rebalance_spend_msat += fee;
            let ppm = (fee as u128 * 1_000_000 / route.amount.0.max(1) as u128) as u64;
            self.s.rebalance_max_ppm = self.s.rebalance_max_ppm.max(ppm);
        }
        self.attempts.push(Attempt {
            time: self.now,
            sink,
            amount: route.amount.0,
            fee,
            ok,
        });
        if ok {
            let spent = self.spent_since(self.now.saturating_sub(86_400));
            self.s.max_24h_spend_msat = self.s.max_24h_spend_msat.max(spent);
        }
        self.ev.emit(json!({"t": self.now, "type": "rebalance", "source": source.to_string(), "sink": sink.to_string(),
            "msat": route.amount.0, "fee_msat": fee, "hops": route.hops.len(), "ok": ok, "failed_at": failed_at}));
        ok
    }

    fn finish(&mut self) {
        for (_, b) in std::mem::take(&mut self.buckets) {
            self.trace.history.entry(b.scid).or_default().push(b);
        }
        for inv in &self.invoices {
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
