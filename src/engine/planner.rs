//! The rebalance planner: which of our channels are lopsided, which pairs to fix with a
//! circular payment, by which routes, at what price, and where a swap is the better tool.
//!
//! Which channels. A channel above its `high` is a source, below its `low` a sink; every
//! move fixes at least one of them. Its other end is another lopsided channel if one
//! fits, else any channel on the other side of target, moved no further than target.
//!
//! Pure and deterministic: the same channels, graph, beliefs, config, clock and resting
//! pairs give the same plan (ties are broken by scid), so a stored plan can be explained
//! later.
//!
//! Economics. A rebalance pays routing fees now to earn forwarding fees later on the sink
//! channel (the one that gets local balance back). So the fee cap of a move is the smaller
//! of the operator's `max_ppm` and `fee_share` of the sink channel's own outgoing fee rate:
//! with the default share of one half, the liquidity pays for itself once half of it has
//! been routed out again.

use crate::engine::beliefs::Beliefs;
use crate::engine::graph::Graph;
use crate::engine::route::{find_circular_routes, CircularRequest, CostModel, Route, RouteParams, MAX_HOPS};
use crate::node::{Channel, ChannelState};
use crate::types::{Msat, NodeId, Scid};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A channel is not paired again after this many failed pairings: more tries of the same
/// hopeless channel would only make the plan slower.
const MAX_FAILURES_PER_CHANNEL: u32 = 3;

/// A move with no route at all is retried at half the amount this many times.
const MAX_HALVINGS: u32 = 2;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("invalid planner config: {0}")]
    InvalidConfig(String),
    #[error("channel {0} is not one of our channels")]
    UnknownChannel(Scid),
}

/// Per-channel thresholds that replace the global ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ChannelOverride {
    pub high: Option<f64>,
    pub low: Option<f64>,
    pub target: Option<f64>,
}

/// Typical on-chain sizes of a swap, for the fee estimate. The client pays for two
/// transactions in both directions: the HTLC output (published by the server for a loop
/// out and charged to the client; by the client for a loop in) and its spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwapConfig {
    pub loop_out_vbytes: u64,
    pub loop_in_vbytes: u64,
}

impl Default for SwapConfig {
    fn default() -> Self {
        // HTLC funding tx ~ 200 vB (1-2 inputs, HTLC output + change); sweep of a P2WSH
        // HTLC ~ 150 vB; a loop in funds from the wallet with a couple more inputs.
        SwapConfig {
            loop_out_vbytes: 350,
            loop_in_vbytes: 400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannerConfig {
    /// Local ratio above which a channel is a source.
    pub high: f64,
    /// Local ratio below which a channel is a sink.
    pub low: f64,
    /// Ratio a move aims to bring both channels to.
    pub target: f64,
    pub max_amount: Msat,
    /// Moves smaller than this are not worth an attempt.
    pub min_amount: Msat,
    pub max_ppm: u32,
    pub fee_share: f64,
    /// Routes kept per move (Yen's k).
    pub k: usize,
    pub max_hops: usize,
    pub max_moves: usize,
    /// Only fix these channels (the other end of a move may be any channel).
    pub channels: Option<Vec<Scid>>,
    pub overrides: BTreeMap<Scid, ChannelOverride>,
    pub cost: CostModel,
    pub final_cltv: u32,
    pub swap: SwapConfig,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            high: 0.8,
            low: 0.2,
            target: 0.5,
            max_amount: Msat(1_000_000_000),
            min_amount: Msat(10_000_000),
            max_ppm: 1000,
            fee_share: 0.5,
            k: 3,
            max_hops: 8,
            max_moves: 10,
            channels: None,
            overrides: BTreeMap::new(),
            cost: CostModel::default(),
            final_cltv: 18,
            swap: SwapConfig::default(),
        }
    }
}

pub struct PlanRequest<'a> {
    pub ours: NodeId,
    pub channels: &'a [Channel],
    pub graph: &'a Graph,
    pub beliefs: &'a Beliefs,
    pub config: &'a PlannerConfig,
    /// On-chain feerate in sat per 1000 vbytes (lightningd's `feerates perkb`), for the
    /// swap estimates; `None` leaves them out.
    pub feerate_perkb: Option<u64>,
    /// Unix seconds, for decaying the beliefs.
    pub now: u64,
    /// Source→sink pairs not to plan now ([`crate::engine::rest`]): empty for a plan the
    /// operator asks for.
    pub resting: &'a [(Scid, Scid)],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    Source,
    Sink,
    Balanced,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelReport {
    pub scid: Scid,
    pub peer: NodeId,
    #[serde(rename = "capacity_msat", alias = "capacity")]
    pub capacity: Msat,
    #[serde(rename = "local_msat", alias = "local")]
    pub local: Msat,
    pub ratio: f64,
    pub low: f64,
    pub high: f64,
    pub target: f64,
    pub class: Class,
    /// For a source: local above target; for a sink: local below target; else zero.
    #[serde(rename = "imbalance_msat", alias = "imbalance")]
    pub imbalance: Msat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MoveStatus {
    #[serde(rename = "planned")]
    Planned,
    #[serde(rename = "no route within budget")]
    OverBudget,
    #[serde(rename = "no route")]
    NoRoute,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payback {
    /// The sink channel's outgoing fee rate: what the moved liquidity earns when routed.
    pub sink_fee_ppm: u32,
    /// Fees earned once the whole amount has been routed out through the sink again.
    #[serde(rename = "expected_earnings_msat", alias = "expected_earnings")]
    pub expected_earnings: Msat,
    #[serde(rename = "fee_msat", alias = "fee")]
    pub fee: Msat,
    /// `expected_earnings - fee`, msat; negative when the move cannot pay for itself.
    pub net_msat: i64,
    /// Share of the amount that must be routed out again to earn the fee back; `None` if
    /// the sink earns nothing.
    pub breakeven_share: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    pub source_scid: Scid,
    pub source_peer: NodeId,
    pub sink_scid: Scid,
    pub sink_peer: NodeId,
    #[serde(rename = "amount_msat", alias = "amount")]
    pub amount: Msat,
    pub status: MoveStatus,
    pub fee_cap_ppm: u32,
    #[serde(rename = "max_fee_msat", alias = "max_fee")]
    pub max_fee: Msat,
    /// Of the best route, when planned.
    #[serde(rename = "fee_msat", alias = "fee")]
    pub fee: Option<Msat>,
    pub fee_ppm: Option<u64>,
    pub probability: Option<f64>,
    pub routes: Vec<Route>,
    /// When over budget: the cheapest route found without the cap.
    #[serde(rename = "cheapest_fee_msat", alias = "cheapest_fee")]
    pub cheapest_fee: Option<Msat>,
    pub cheapest_ppm: Option<u64>,
    pub payback: Option<Payback>,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwapKind {
    /// Send local balance off-chain, receive it on-chain: for too much local.
    LoopOut,
    /// Pay on-chain, receive off-chain: for too little local.
    LoopIn,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwapRecommendation {
    pub scid: Scid,
    pub peer: NodeId,
    pub kind: SwapKind,
    #[serde(rename = "amount_msat", alias = "amount")]
    pub amount: Msat,
    pub onchain_vbytes: u64,
    pub onchain_fee_sat: Option<u64>,
    pub onchain_fee_ppm: Option<u64>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedChannel {
    pub scid: Option<Scid>,
    pub peer: NodeId,
    pub reason: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlanTotals {
    pub planned_moves: usize,
    #[serde(rename = "amount_msat", alias = "amount")]
    pub amount: Msat,
    #[serde(rename = "fee_msat", alias = "fee")]
    pub fee: Msat,
    #[serde(rename = "expected_earnings_msat", alias = "expected_earnings")]
    pub expected_earnings: Msat,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub generated_at: u64,
    pub channels: Vec<ChannelReport>,
    pub moves: Vec<Move>,
    pub swaps: Vec<SwapRecommendation>,
    pub skipped: Vec<SkippedChannel>,
    pub totals: PlanTotals,
}

/// Which end of a move a channel can be: the end that sends out local balance or the one
/// that takes it in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Out,
    In,
}

/// A considered channel with what is left to fix as moves are planned.
struct Slot<'a> {
    ch: &'a Channel,
    scid: Scid,
    report: ChannelReport,
    selected: bool,
    /// The end of a move this channel can be, if any. A lopsided channel is the end its
    /// class says. A channel inside its band is the end on its side of target, but only
    /// opposite a lopsided one and only as far as target: a channel at 100 % local is worth
    /// fixing even when no other channel is under `low`, and one at 35 % can take the
    /// excess without being pushed past 50 %.
    side: Option<Side>,
    /// Outside its band (a source or a sink), so a move through it fixes something.
    lopsided: bool,
    /// Amount still to move (source: out, sink: in).
    remaining: u64,
    /// What the channel can still send (source) or receive (sink).
    headroom: u64,
    failures: u32,
    planned: u32,
    /// Best explanation of why nothing was planned, for the swap reason.
    last_failure: Option<String>,
}

pub fn plan(req: &PlanRequest<'_>) -> Result<Plan, PlanError> {
    let cfg = req.config;
    validate(cfg)?;
    let mut channels: Vec<&Channel> = req.channels.iter().collect();
    channels.sort_by_key(|c| (c.scid.is_none(), c.scid, c.peer));

    if let Some(filter) = &cfg.channels {
        for &s in filter {
            if !channels.iter().any(|c| c.scid == Some(s)) {
                return Err(PlanError::UnknownChannel(s));
            }
        }
    }

    let mut skipped = Vec::new();
    let mut slots: Vec<Slot> = Vec::new();
    for ch in channels {
        let skip = |reason: String| SkippedChannel {
            scid: ch.scid,
            peer: ch.peer,
            reason,
        };
        let Some(scid) = ch.scid else {
            skipped.push(skip(format!("no short channel id yet ({})", ch.raw_state)));
            continue;
        };
        if ch.state != ChannelState::Normal {
            skipped.push(skip(format!("not in normal state ({})", ch.raw_state)));
            continue;
        }
        if !ch.peer_connected {
            skipped.push(skip("peer is offline".into()));
            continue;
        }
        if ch.capacity.0 == 0 {
            skipped.push(skip("zero capacity".into()));
            continue;
        }
        if ch.peer == req.ours {
            skipped.push(skip("channel to our own node".into()));
            continue;
        }
        if slots.iter().any(|s| s.scid == scid) {
            skipped.push(skip("duplicate short channel id".into()));
            continue;
        }
        let o = cfg.overrides.get(&scid).copied().unwrap_or_default();
        let (high, low, target) = (
            o.high.unwrap_or(cfg.high),
            o.low.unwrap_or(cfg.low),
            o.target.unwrap_or(cfg.target),
        );
        let cap = ch.capacity.0;
        let local = ch.local.0.min(cap);
        let ratio = local as f64 / cap as f64;
        let target_local = ((cap as f64) * target).round() as u64;
        let class = if ratio > high {
            Class::Source
        } else if ratio < low {
            Class::Sink
        } else {
            Class::Balanced
        };
        let (side, remaining, headroom) = if local > target_local {
            (Some(Side::Out), local - target_local, ch.spendable.0)
        } else if local < target_local {
            (Some(Side::In), target_local - local, ch.receivable.0)
        } else {
            (None, 0, 0)
        };
        let lopsided = class != Class::Balanced;
        let imbalance = if lopsided { remaining } else { 0 };
        let selected = cfg.channels.as_ref().is_none_or(|f| f.contains(&scid));
        slots.push(Slot {
            ch,
            scid,
            report: ChannelReport {
                scid,
                peer: ch.peer,
                capacity: ch.capacity,
                local: Msat(local),
                ratio,
                low,
                high,
                target,
                class,
                imbalance: Msat(imbalance),
            },
            selected,
            side,
            lopsided,
            remaining,
            headroom,
            failures: 0,
            planned: 0,
            last_failure: None,
        });
    }

    let view = req.beliefs.view(req.graph, req.now);
    let mut moves: Vec<Move> = Vec::new();
    let mut tried: Vec<(usize, usize)> = Vec::new();
    let mut planned = 0usize;

    while planned < cfg.max_moves {
        let Some((si, ti, amount, cap_ppm)) = next_pair(&slots, &tried, req.resting, cfg) else {
            break;
        };
        tried.push((si, ti));
        let (src, snk) = (&slots[si], &slots[ti]);
        let mut amount = amount;
        let mut halvings = 0;
        let outcome = loop {
            let max_fee = fee_cap(amount, cap_ppm);
            let circ = CircularRequest {
                ours: req.ours,
                out_scid: src.scid,
                out_peer: src.ch.peer,
                in_scid: snk.scid,
                in_peer: snk.ch.peer,
                amount: Msat(amount),
                in_policy: snk.ch.remote_policy,
            };
            let params = RouteParams {
                k: cfg.k,
                max_hops: cfg.max_hops,
                final_cltv: cfg.final_cltv,
                max_fee: Some(Msat(max_fee)),
                cost: cfg.cost.clone(),
                ..RouteParams::default()
            };
            let routes = match find_circular_routes(req.graph, &view, &circ, &params) {
                Ok(r) => r,
                Err(e) => break Outcome::Error(amount, e.to_string()),
            };
            if !routes.is_empty() {
                break Outcome::Routes(amount, routes);
            }
            let open = RouteParams {
                k: 1,
                max_fee: None,
                ..params
            };
            let cheapest = find_circular_routes(req.graph, &view, &circ, &open)
                .ok()
                .and_then(|mut r| r.pop());
            if let Some(c) = cheapest {
                break Outcome::OverBudget(amount, c);
            }
            // Nothing carries this amount at any price (capacity, htlc_max, beliefs):
            // a smaller move may still get through.
            let half = amount / 2;
            if halvings >= MAX_HALVINGS || half < cfg.min_amount.0 {
                break Outcome::NoRoute(amount);
            }
            halvings += 1;
            amount = half;
        };

        let mv = build_move(src, snk, cap_ppm, cfg, outcome);
        let fee_total = mv.fee.map_or(0, |f| f.0);
        if mv.status == MoveStatus::Planned {
            planned += 1;
            let (a, f) = (mv.amount.0, fee_total);
            let s = &mut slots[si];
            s.remaining = s.remaining.saturating_sub(a.saturating_add(f));
            s.headroom = s.headroom.saturating_sub(a.saturating_add(f));
            s.planned += 1;
            let t = &mut slots[ti];
            t.remaining = t.remaining.saturating_sub(a);
            t.headroom = t.headroom.saturating_sub(a);
            t.planned += 1;
        } else {
            for i in [si, ti] {
                let s = &mut slots[i];
                s.failures += 1;
                s.last_failure = Some(short_failure(&mv));
            }
        }
        moves.push(mv);
    }

    let swaps = recommend_swaps(&slots, cfg, req.feerate_perkb);
    let mut totals = PlanTotals::default();
    for m in moves.iter().filter(|m| m.status == MoveStatus::Planned) {
        totals.planned_moves += 1;
        totals.amount = Msat(totals.amount.0.saturating_add(m.amount.0));
        totals.fee = Msat(totals.fee.0.saturating_add(m.fee.map_or(0, |f| f.0)));
        let earn = m.payback.as_ref().map_or(0, |p| p.expected_earnings.0);
        totals.expected_earnings = Msat(totals.expected_earnings.0.saturating_add(earn));
    }
    Ok(Plan {
        generated_at: req.now,
        channels: slots.into_iter().map(|s| s.report).collect(),
        moves,
        swaps,
        skipped,
        totals,
    })
}

fn validate(cfg: &PlannerConfig) -> Result<(), PlanError> {
    let bad = |m: String| Err(PlanError::InvalidConfig(m));
    let ratios_ok = |low: f64, target: f64, high: f64| {
        [low, target, high]
            .iter()
            .all(|x| x.is_finite() && (0.0..=1.0).contains(x))
            && low <= target
            && target <= high
    };
    if !ratios_ok(cfg.low, cfg.target, cfg.high) {
        return bad(format!(
            "need 0 <= low ({}) <= target ({}) <= high ({}) <= 1",
            cfg.low, cfg.target, cfg.high
        ));
    }
    for (scid, o) in &cfg.overrides {
        let (l, t, h) = (
            o.low.unwrap_or(cfg.low),
            o.target.unwrap_or(cfg.target),
            o.high.unwrap_or(cfg.high),
        );
        if !ratios_ok(l, t, h) {
            return bad(format!(
                "override for {scid}: need 0 <= low ({l}) <= target ({t}) <= high ({h}) <= 1"
            ));
        }
    }
    if !(cfg.fee_share.is_finite() && (0.0..=1.0).contains(&cfg.fee_share)) {
        return bad(format!("fee_share must be within 0..=1, got {}", cfg.fee_share));
    }
    if cfg.k == 0 {
        return bad("k must be at least 1".into());
    }
    if cfg.max_hops < 3 || cfg.max_hops > MAX_HOPS {
        return bad(format!("max_hops must be within 3..={MAX_HOPS}"));
    }
    if cfg.max_amount.0 == 0 || cfg.min_amount > cfg.max_amount {
        return bad("need 0 < min_amount <= max_amount".into());
    }
    if !(cfg.cost.risk_factor.is_finite() && cfg.cost.risk_factor >= 0.0) {
        return bad("risk_factor must be a finite non-negative number".into());
    }
    Ok(())
}

/// `min(max_ppm, fee_share × sink ppm)`, so a move can pay for itself.
fn cap_ppm_for(sink: &Channel, cfg: &PlannerConfig) -> u32 {
    let share = (sink.fee_ppm as f64 * cfg.fee_share).floor() as u32;
    cfg.max_ppm.min(share)
}

fn fee_cap(amount: u64, ppm: u32) -> u64 {
    u64::try_from(amount as u128 * ppm as u128 / 1_000_000).unwrap_or(u64::MAX)
}

/// The most useful untried pair: one that fixes two lopsided channels before one that
/// fixes one against a channel inside its band, then the largest amount, then the better
/// fee cap, then by scids. At least one end is lopsided and selected; never two channels
/// to the same peer; never a resting pair.
fn next_pair(
    slots: &[Slot],
    tried: &[(usize, usize)],
    resting: &[(Scid, Scid)],
    cfg: &PlannerConfig,
) -> Option<(usize, usize, u64, u32)> {
    type Key = (bool, u64, u32, std::cmp::Reverse<Scid>, std::cmp::Reverse<Scid>);
    let mut best: Option<(Key, usize, usize)> = None;
    for (si, s) in slots.iter().enumerate() {
        if s.side != Some(Side::Out) || s.failures >= MAX_FAILURES_PER_CHANNEL {
            continue;
        }
        for (ti, t) in slots.iter().enumerate() {
            if t.side != Some(Side::In) || t.failures >= MAX_FAILURES_PER_CHANNEL {
                continue;
            }
            let fixes_selected = (s.lopsided && s.selected) || (t.lopsided && t.selected);
            if !fixes_selected
                || s.ch.peer == t.ch.peer
                || tried.contains(&(si, ti))
                || resting.contains(&(s.scid, t.scid))
            {
                continue;
            }
            let cap = cap_ppm_for(t.ch, cfg);
            // The source also pays the fee out of its spendable balance.
            let affordable = (s.headroom as u128 * 1_000_000 / (1_000_000 + cap as u128)) as u64;
            let amount = s
                .remaining
                .min(t.remaining)
                .min(cfg.max_amount.0)
                .min(affordable)
                .min(t.headroom);
            if amount < cfg.min_amount.0 {
                continue;
            }
            let key = (
                s.lopsided && t.lopsided,
                amount,
                cap,
                std::cmp::Reverse(s.scid),
                std::cmp::Reverse(t.scid),
            );
            if best.as_ref().is_none_or(|b| key > b.0) {
                best = Some((key, si, ti));
            }
        }
    }
    best.map(|(key, si, ti)| (si, ti, key.1, key.2))
}

enum Outcome {
    Routes(u64, Vec<Route>),
    OverBudget(u64, Route),
    NoRoute(u64),
    Error(u64, String),
}

fn payback(sink: &Channel, amount: u64, fee: u64) -> Payback {
    let earn = fee_cap(amount, sink.fee_ppm);
    let net = earn as i128 - fee as i128;
    Payback {
        sink_fee_ppm: sink.fee_ppm,
        expected_earnings: Msat(earn),
        fee: Msat(fee),
        net_msat: net.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
        breakeven_share: (earn > 0).then(|| fee as f64 / earn as f64),
    }
}

fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

fn build_move(src: &Slot, snk: &Slot, cap_ppm: u32, cfg: &PlannerConfig, outcome: Outcome) -> Move {
    let amount = match &outcome {
        Outcome::Routes(a, _) | Outcome::OverBudget(a, _) | Outcome::NoRoute(a) | Outcome::Error(a, _) => *a,
    };
    let max_fee = fee_cap(amount, cap_ppm);
    // A channel inside its band is named by the target it stays on the far side of.
    let (src_bound, snk_bound) = (
        if src.lopsided {
            src.report.high
        } else {
            src.report.target
        },
        if snk.lopsided {
            snk.report.low
        } else {
            snk.report.target
        },
    );
    let why_pair = format!(
        "{} has {} local (above {}) and {} has {} (below {}); {} msat moves both toward {}",
        src.scid,
        pct(src.report.ratio),
        pct(src_bound),
        snk.scid,
        pct(snk.report.ratio),
        pct(snk_bound),
        amount,
        pct(src.report.target),
    );
    let why_cap = format!(
        "cap {} ppm = min(max_ppm {}, {} of the sink's {} ppm)",
        cap_ppm,
        cfg.max_ppm,
        pct(cfg.fee_share),
        snk.ch.fee_ppm
    );
    let mut mv = Move {
        source_scid: src.scid,
        source_peer: src.ch.peer,
        sink_scid: snk.scid,
        sink_peer: snk.ch.peer,
        amount: Msat(amount),
        status: MoveStatus::NoRoute,
        fee_cap_ppm: cap_ppm,
        max_fee: Msat(max_fee),
        fee: None,
        fee_ppm: None,
        probability: None,
        routes: Vec::new(),
        cheapest_fee: None,
        cheapest_ppm: None,
        payback: None,
        reason: String::new(),
    };
    match outcome {
        Outcome::Routes(_, routes) => {
            let (fee, ppm, prob) = routes
                .first()
                .map_or((0, 0, 0.0), |r| (r.fee.0, r.fee_ppm, r.probability));
            let pb = payback(snk.ch, amount, fee);
            mv.status = MoveStatus::Planned;
            mv.fee = Some(Msat(fee));
            mv.fee_ppm = Some(ppm);
            mv.probability = Some(prob);
            mv.reason = format!(
                "{why_pair}; best of {} route(s) costs {fee} msat ({ppm} ppm, {why_cap}), success {}; \
                 earns {} msat at the sink's fee once routed out again",
                routes.len(),
                pct(prob),
                pb.expected_earnings.0,
            );
            mv.payback = Some(pb);
            mv.routes = routes;
        }
        Outcome::OverBudget(_, cheapest) => {
            mv.status = MoveStatus::OverBudget;
            mv.cheapest_fee = Some(cheapest.fee);
            mv.cheapest_ppm = Some(cheapest.fee_ppm);
            mv.payback = Some(payback(snk.ch, amount, cheapest.fee.0));
            mv.reason = format!(
                "{why_pair}; no route within budget: the cheapest costs {} msat ({} ppm), over the {why_cap}",
                cheapest.fee.0, cheapest.fee_ppm
            );
        }
        Outcome::NoRoute(_) => {
            mv.reason = format!("{why_pair}; no route carries this amount at any price");
        }
        Outcome::Error(_, e) => {
            mv.reason = format!("{why_pair}; cannot route: {e}");
        }
    }
    mv
}

fn short_failure(mv: &Move) -> String {
    match (mv.status, mv.cheapest_ppm) {
        (MoveStatus::OverBudget, Some(p)) => {
            format!(
                "no circular route within budget (cheapest {p} ppm > cap {} ppm)",
                mv.fee_cap_ppm
            )
        }
        _ => "no circular route".into(),
    }
}

/// Swaps for lopsided channels that no circular move could fix.
fn recommend_swaps(
    slots: &[Slot],
    cfg: &PlannerConfig,
    feerate_perkb: Option<u64>,
) -> Vec<SwapRecommendation> {
    let mut out = Vec::new();
    for s in slots {
        let kind = match s.report.class {
            Class::Source => SwapKind::LoopOut,
            Class::Sink => SwapKind::LoopIn,
            Class::Balanced => continue,
        };
        if !s.selected || s.planned > 0 || s.remaining < cfg.min_amount.0 {
            continue;
        }
        let counterpart = match kind {
            SwapKind::LoopOut => Side::In,
            SwapKind::LoopIn => Side::Out,
        };
        let has_counterpart = slots.iter().any(|t| {
            t.side == Some(counterpart) && t.remaining >= cfg.min_amount.0 && t.ch.peer != s.ch.peer
        });
        let why = match (&s.last_failure, has_counterpart) {
            (Some(f), _) => f.clone(),
            (None, false) => match kind {
                SwapKind::LoopOut => {
                    "no sink channel, nor one below target (to another peer), to move the excess into".into()
                }
                SwapKind::LoopIn => {
                    "no source channel, nor one above target (to another peer), to draw local balance from"
                        .into()
                }
            },
            // Not tried yet (the move limit was reached first): a later plan may well find
            // a circular route, so recommending on-chain fees now would be premature.
            (None, true) => continue,
        };
        let vbytes = match kind {
            SwapKind::LoopOut => cfg.swap.loop_out_vbytes,
            SwapKind::LoopIn => cfg.swap.loop_in_vbytes,
        };
        let fee_sat = feerate_perkb.map(|r| r.saturating_mul(vbytes) / 1000);
        let fee_ppm = fee_sat.map(|f| {
            u64::try_from(f as u128 * 1000 * 1_000_000 / s.remaining.max(1) as u128).unwrap_or(u64::MAX)
        });
        let what = match kind {
            SwapKind::LoopOut => "loop out",
            SwapKind::LoopIn => "loop in",
        };
        let fee_txt = match (fee_sat, fee_ppm) {
            (Some(f), Some(p)) => format!(
                "on-chain fee ~{f} sat ({p} ppm) at {} sat/kvB",
                feerate_perkb.unwrap_or(0)
            ),
            _ => "on-chain fee unknown (no feerate given)".into(),
        };
        out.push(SwapRecommendation {
            scid: s.scid,
            peer: s.ch.peer,
            kind,
            amount: Msat(s.remaining),
            onchain_vbytes: vbytes,
            onchain_fee_sat: fee_sat,
            onchain_fee_ppm: fee_ppm,
            reason: format!(
                "{} is at {} local: {why}; {what} {} msat to reach {}; {fee_txt}",
                s.scid,
                pct(s.report.ratio),
                s.remaining,
                pct(s.report.target)
            ),
        });
    }
    out
}

#[cfg(test)]
pub(crate) mod tests;
