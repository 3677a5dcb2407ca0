//! Fee-, CLTV- and liquidity-aware route search.
//!
//! The search runs *backwards* from the destination. Walking from the receiver towards the
//! payer, every edge is relaxed knowing the exact amount it must carry (what the next node
//! must receive), so each node's fee is computed on the amount it actually forwards, as
//! BOLT 7 defines it, instead of being estimated from the payment amount.
//!
//! Route cost (what "cheapest" means) is additive per edge:
//! - the fee the edge's owner charges;
//! - a CLTV risk term: the amount locked for the edge's CLTV delta, priced at an annual
//!   rate (lightningd's `riskfactor` semantics);
//! - a probability term: `-ln(p)` of the edge carrying the amount under our liquidity
//!   beliefs, weighted by a fixed plus a proportional price, so an unlikely hop costs as
//!   much as a detour.
//!
//! Dijkstra keeps up to one settled label per node *and hop count improvement*: a node may be
//! settled again through a path with fewer hops, which makes the hop limit exact rather than
//! a filter that loses routes whose cheapest prefix happens to be long. Yen's algorithm on
//! top gives the k cheapest loop-free routes. Every candidate is re-evaluated hop by hop from
//! scratch, so the numbers reported are those of the final path, not of search labels.
//!
//! Circular (rebalancing) routes are: our channel out to peer A (forced, no fee, our own
//! liquidity known), a path A → … → B that never touches our node, and B's channel back to
//! us (forced; B's fee and CLTV delta apply, as B told us or else as gossip says). A == B is refused outright: leaving and
//! returning through the same peer only pays fees to shuffle balance between two channels
//! to one node, which is the trap other rebalancers fall into.

use crate::engine::beliefs::BeliefView;
use crate::engine::graph::{fee_for, EdgeIdx, Graph, NodeIdx};
use crate::node::{PeerPolicy, RouteHop};
use crate::types::{Msat, NodeId, Scid};
use serde::{Deserialize, Serialize};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};

/// Blocks in a year, for turning an annual rate into a per-block price.
const BLOCKS_PER_YEAR: f64 = 52_596.0;

/// The onion fits about 27 hops; anything longer cannot be paid.
pub const MAX_HOPS: usize = 27;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("invalid route parameters: {0}")]
    InvalidParams(String),
    #[error("node {0} is not in the graph")]
    UnknownNode(NodeId),
    #[error("channel {0} is not in the graph in the needed direction")]
    UnknownChannel(Scid),
    #[error("channel {scid} does not connect {a} and {b}")]
    ChannelMismatch { scid: Scid, a: NodeId, b: NodeId },
    #[error("source and destination are the same node")]
    SameEndpoints,
    #[error("source and sink channels both go to peer {0}: a circular route would leave and return through the same peer")]
    SamePeer(NodeId),
}

/// How routes are ranked. All terms are in msat so they add up with fees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    /// Annual rate, in percent, that locking the amount for one more block is worth.
    pub risk_factor: f64,
    /// Price of an edge whose success probability is `1/e`, before the proportional part.
    pub prob_base_msat: u64,
    /// Proportional part of the probability price, per million of the amount.
    pub prob_ppm: u32,
}

impl Default for CostModel {
    fn default() -> Self {
        // A halving of success probability costs about 0.7 sat plus 70 ppm: enough to prefer
        // a likely route over a marginally cheaper doubtful one, not enough to outweigh the
        // fee cap, which stays the hard limit.
        CostModel {
            risk_factor: 2.0,
            prob_base_msat: 1000,
            prob_ppm: 100,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RouteParams {
    /// How many routes to return (Yen's k).
    pub k: usize,
    /// Hops of the whole route, forced hops included.
    pub max_hops: usize,
    /// CLTV delta the final node asks for.
    pub final_cltv: u32,
    /// Longest total lock we accept (lightningd's default `max-locktime-blocks`).
    pub max_total_cltv: u32,
    /// Routes whose fee would exceed this are not returned (and not explored).
    pub max_fee: Option<Msat>,
    pub exclude_nodes: Vec<NodeId>,
    /// Both directions of these channels are avoided.
    pub exclude_channels: Vec<Scid>,
    pub cost: CostModel,
}

impl Default for RouteParams {
    fn default() -> Self {
        RouteParams {
            k: 5,
            max_hops: 20,
            final_cltv: 18,
            max_total_cltv: 2016,
            max_fee: None,
            exclude_nodes: Vec::new(),
            exclude_channels: Vec::new(),
            cost: CostModel::default(),
        }
    }
}

/// One hop of a route: the HTLC that reaches `node` over `scid`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hop {
    pub scid: Scid,
    pub node: NodeId,
    /// Amount delivered to `node`.
    #[serde(rename = "amount_msat", alias = "amount")]
    pub amount: Msat,
    /// What the previous node charges to forward over `scid` (zero on the first hop: we do
    /// not pay ourselves).
    #[serde(rename = "fee_msat", alias = "fee")]
    pub fee: Msat,
    /// The previous node's CLTV delta on `scid` (zero on the first hop).
    pub cltv_delta: u32,
    /// CLTV of the HTLC offered to `node`, relative to the current block height.
    pub delay: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Route {
    pub hops: Vec<Hop>,
    /// Delivered to the destination.
    #[serde(rename = "amount_msat", alias = "amount")]
    pub amount: Msat,
    /// Leaves our node: `amount + fee`.
    #[serde(rename = "amount_sent_msat", alias = "amount_sent")]
    pub amount_sent: Msat,
    #[serde(rename = "fee_msat", alias = "fee")]
    pub fee: Msat,
    /// Fee per million of `amount`, rounded up.
    pub fee_ppm: u64,
    /// Lock of the first HTLC, relative to the current height.
    pub total_cltv: u32,
    pub probability: f64,
    /// The ranking cost (fee + risk + probability terms), msat.
    #[serde(rename = "cost_msat", alias = "cost")]
    pub cost: u64,
}

impl Route {
    /// The route in the shape a node's `pay_route` takes.
    pub fn to_route_hops(&self) -> Vec<RouteHop> {
        self.hops
            .iter()
            .map(|h| RouteHop {
                scid: h.scid,
                node: h.node,
                amount: h.amount,
                delay: h.delay,
            })
            .collect()
    }
}

/// Lowest fee, ties by cost then position.
pub fn cheapest(routes: &[Route]) -> Option<&Route> {
    routes.iter().min_by_key(|r| (r.fee, r.cost))
}

/// Lowest total CLTV, ties by fee then cost.
pub fn fastest(routes: &[Route]) -> Option<&Route> {
    routes.iter().min_by_key(|r| (r.total_cltv, r.fee, r.cost))
}

/// A rebalancing loop: out over `out_scid` to `out_peer`, back over `in_scid` from `in_peer`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircularRequest {
    pub ours: NodeId,
    pub out_scid: Scid,
    pub out_peer: NodeId,
    pub in_scid: Scid,
    pub in_peer: NodeId,
    /// Amount that must arrive back at our node over `in_scid`.
    pub amount: Msat,
    /// `in_peer`'s policy for forwarding to us over `in_scid`, as our node last heard it
    /// from the peer. Preferred over gossip (it is what the peer will enforce) and the
    /// only source for a private channel.
    pub in_policy: Option<PeerPolicy>,
}

/// Up to `params.k` cheapest loop-free routes from `from` to `to` delivering `amount`,
/// in cost order. An empty list means no route satisfies the constraints.
pub fn find_routes(
    graph: &Graph,
    beliefs: &BeliefView,
    from: &NodeId,
    to: &NodeId,
    amount: Msat,
    params: &RouteParams,
) -> Result<Vec<Route>, RouteError> {
    check_params(amount, params)?;
    let from_ix = graph.node_index(from).ok_or(RouteError::UnknownNode(*from))?;
    let to_ix = graph.node_index(to).ok_or(RouteError::UnknownNode(*to))?;
    if from_ix == to_ix {
        return Err(RouteError::SameEndpoints);
    }
    let mut p = Problem::new(
        graph, beliefs, amount, params, from_ix, to_ix, from_ix, None, None,
    );
    Ok(p.k_routes(params.k))
}

/// Up to `params.k` cheapest circular routes for a rebalance, in cost order.
pub fn find_circular_routes(
    graph: &Graph,
    beliefs: &BeliefView,
    req: &CircularRequest,
    params: &RouteParams,
) -> Result<Vec<Route>, RouteError> {
    check_params(req.amount, params)?;
    if req.out_peer == req.in_peer {
        return Err(RouteError::SamePeer(req.out_peer));
    }
    if req.out_peer == req.ours || req.in_peer == req.ours {
        return Err(RouteError::InvalidParams("a peer cannot be our own node".into()));
    }
    if params.max_hops < 3 {
        return Err(RouteError::InvalidParams(
            "a circular route needs max_hops >= 3".into(),
        ));
    }
    let ours = graph
        .node_index(&req.ours)
        .ok_or(RouteError::UnknownNode(req.ours))?;
    let a = graph
        .node_index(&req.out_peer)
        .ok_or(RouteError::UnknownNode(req.out_peer))?;
    let b = graph
        .node_index(&req.in_peer)
        .ok_or(RouteError::UnknownNode(req.in_peer))?;

    // The outgoing channel may be private (absent from gossip), but if gossip has it, it
    // must join us to the peer we were told: a mismatch means the caller's data is stale.
    if !joins(graph, req.out_scid, ours, a) {
        return Err(RouteError::ChannelMismatch {
            scid: req.out_scid,
            a: req.ours,
            b: req.out_peer,
        });
    }
    // B's policy on its channel to us sets the last hop's fee and CLTV: it must be known,
    // from the peer itself or from gossip.
    let gossip = match graph.edge_from(req.in_scid, b).and_then(|e| graph.edge(e)) {
        Some(edge) if edge.destination != ours => {
            return Err(RouteError::ChannelMismatch {
                scid: req.in_scid,
                a: req.in_peer,
                b: req.ours,
            })
        }
        Some(edge) => Some(Policy {
            base: edge.fee_base,
            ppm: edge.fee_ppm,
            cltv: edge.cltv_delta,
        }),
        // Only our direction may be in gossip (B never announced its side); any other
        // pair of endpoints means the caller's data is stale.
        None if !joins(graph, req.in_scid, ours, b) => {
            return Err(RouteError::ChannelMismatch {
                scid: req.in_scid,
                a: req.in_peer,
                b: req.ours,
            })
        }
        None => None,
    };
    let given = req.in_policy.map(|p| Policy {
        base: p.fee_base,
        ppm: p.fee_ppm,
        cltv: p.cltv_delta,
    });
    let policy = given.or(gossip).ok_or(RouteError::UnknownChannel(req.in_scid))?;
    let sink = Suffix {
        scid: req.in_scid,
        from: b,
        policy,
    };

    let mut p = Problem::new(
        graph,
        beliefs,
        req.amount,
        params,
        a,
        b,
        ours,
        Some((req.out_scid, ours, a)),
        Some(sink),
    );
    // The middle must not pass through us: that would be two loops, not one.
    p.block_node(ours);
    Ok(p.k_routes(params.k))
}

/// Whether every direction of `scid` that gossip knows runs between `x` and `y` (true when
/// gossip knows none).
fn joins(graph: &Graph, scid: Scid, x: NodeIdx, y: NodeIdx) -> bool {
    graph.channel(scid).into_iter().flatten().all(|e| {
        graph.edge(e).is_some_and(|edge| {
            let ends = [edge.source, edge.destination];
            ends.contains(&x) && ends.contains(&y)
        })
    })
}

fn check_params(amount: Msat, params: &RouteParams) -> Result<(), RouteError> {
    let bad = |m: &str| Err(RouteError::InvalidParams(m.to_string()));
    if amount.0 == 0 {
        return bad("amount must be positive");
    }
    if params.k == 0 {
        return bad("k must be at least 1");
    }
    if params.max_hops == 0 || params.max_hops > MAX_HOPS {
        return Err(RouteError::InvalidParams(format!(
            "max_hops must be within 1..={MAX_HOPS}"
        )));
    }
    let c = &params.cost;
    if !(c.risk_factor.is_finite() && c.risk_factor >= 0.0) {
        return bad("risk_factor must be a finite non-negative number");
    }
    Ok(())
}

/// A Yen candidate: cost, scid key for tie-breaks, middle path, evaluated route, and the
/// index where it deviates from the path it was derived from.
type Candidate = (u64, Vec<(Scid, u8)>, Vec<EdgeIdx>, Route, usize);

/// A forwarding policy: what the sending node of a hop charges and adds to the CLTV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Policy {
    base: Msat,
    ppm: u32,
    cltv: u32,
}

/// The forced last hop of a circular route: from `from` back to the payer.
#[derive(Debug, Clone, Copy)]
struct Suffix {
    scid: Scid,
    from: NodeIdx,
    policy: Policy,
}

/// One hop of a full route under evaluation.
#[derive(Debug, Clone, Copy)]
struct Leg {
    scid: Scid,
    to: NodeIdx,
    /// The graph edge of a searched hop (limits and beliefs are checked on it).
    edge: Option<EdgeIdx>,
    /// The sending node's policy; `None` only on the first hop, which the payer sends.
    policy: Option<Policy>,
    /// Our own channel: its liquidity is known to the caller and its limits checked there.
    certain: bool,
}

#[derive(Debug, Clone, Copy)]
struct Label {
    node: u32,
    /// Edge from `node` towards the destination; `NONE` on the seed.
    edge: u32,
    /// Label of the next node towards the destination; `NONE` on the seed.
    next: u32,
    /// Amount that must arrive at `node` (its own fee included).
    amount: u64,
    cost: u64,
    delay: u32,
    hops: u8,
}

const NONE: u32 = u32::MAX;

/// Orders labels by cost, then fewer hops, then creation order (for determinism).
fn heap_key(cost: u64, hops: u8, id: u32) -> u128 {
    (cost as u128) << 64 | (hops as u128) << 32 | id as u128
}

/// Per-search scratch, reset through `touched` so Yen's many spur searches don't each pay
/// for clearing whole-graph arrays.
struct Workspace {
    best_hops: Vec<u8>,
    tent_cost: Vec<u64>,
    tent_hops: Vec<u8>,
    touched: Vec<u32>,
    labels: Vec<Label>,
    /// Keys pack (cost, hops, label) into one integer: one compare per heap step.
    heap: BinaryHeap<Reverse<u128>>,
}

impl Workspace {
    fn new(n: usize) -> Workspace {
        Workspace {
            best_hops: vec![u8::MAX; n],
            tent_cost: vec![u64::MAX; n],
            tent_hops: vec![u8::MAX; n],
            touched: Vec::new(),
            labels: Vec::new(),
            heap: BinaryHeap::new(),
        }
    }

    fn reset(&mut self) {
        for &n in &self.touched {
            let i = n as usize;
            if let Some(x) = self.best_hops.get_mut(i) {
                *x = u8::MAX;
            }
            if let Some(x) = self.tent_cost.get_mut(i) {
                *x = u64::MAX;
            }
            if let Some(x) = self.tent_hops.get_mut(i) {
                *x = u8::MAX;
            }
        }
        self.touched.clear();
        self.labels.clear();
        self.heap.clear();
    }

    fn dominated(&self, node: u32, cost: u64, hops: u8) -> bool {
        let i = node as usize;
        match (self.tent_cost.get(i), self.tent_hops.get(i)) {
            (Some(&tc), Some(&th)) => cost >= tc && hops >= th,
            _ => true,
        }
    }

    fn push(&mut self, l: Label) {
        let i = l.node as usize;
        if let (Some(tc), Some(th)) = (self.tent_cost.get_mut(i), self.tent_hops.get_mut(i)) {
            if *tc == u64::MAX {
                self.touched.push(l.node);
            }
            // Dominated by a label already queued: no cheaper and no shorter.
            if l.cost >= *tc && l.hops >= *th {
                return;
            }
            // Only the cheapest queued label is remembered, with its own hop count, so
            // the test above is an exact dominance check, never a lossy one.
            if l.cost < *tc {
                *tc = l.cost;
                *th = l.hops;
            }
        }
        let Ok(id) = u32::try_from(self.labels.len()) else {
            return;
        };
        self.labels.push(l);
        self.heap.push(Reverse(heap_key(l.cost, l.hops, id)));
    }
}

struct Problem<'g> {
    graph: &'g Graph,
    view: &'g BeliefView,
    cost: CostModel,
    amount: u64,
    final_cltv: u32,
    max_total_cltv: u32,
    max_fee: Option<u64>,
    max_hops: usize,
    /// Ends of the searched (middle) part of the route.
    from: NodeIdx,
    to: NodeIdx,
    /// The node that pays: it charges no fee and its CLTV delta does not apply.
    payer: NodeIdx,
    /// Forced first hop: (scid, payer, peer).
    prefix: Option<(Scid, NodeIdx, NodeIdx)>,
    /// Forced last hop back to the payer.
    suffix: Option<Suffix>,
    node_blocked: Vec<bool>,
    edge_blocked: Vec<bool>,
    ws: Workspace,
}

impl<'g> Problem<'g> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        graph: &'g Graph,
        view: &'g BeliefView,
        amount: Msat,
        params: &RouteParams,
        from: NodeIdx,
        to: NodeIdx,
        payer: NodeIdx,
        prefix: Option<(Scid, NodeIdx, NodeIdx)>,
        suffix: Option<Suffix>,
    ) -> Problem<'g> {
        graph.prepare();
        let mut p = Problem {
            graph,
            view,
            cost: params.cost.clone(),
            amount: amount.0,
            final_cltv: params.final_cltv,
            max_total_cltv: params.max_total_cltv,
            max_fee: params.max_fee.map(|m| m.0),
            max_hops: params.max_hops,
            from,
            to,
            payer,
            prefix,
            suffix,
            node_blocked: vec![false; graph.node_count()],
            edge_blocked: vec![false; graph.edge_count()],
            ws: Workspace::new(graph.node_count()),
        };
        for id in &params.exclude_nodes {
            if let Some(n) = graph.node_index(id) {
                p.block_node(n);
            }
        }
        for &scid in &params.exclude_channels {
            for e in graph.channel(scid).into_iter().flatten() {
                p.set_edge_blocked(e, true);
            }
        }
        p
    }

    fn block_node(&mut self, n: NodeIdx) {
        self.set_node_blocked(n, true);
    }

    fn set_node_blocked(&mut self, n: NodeIdx, v: bool) {
        if let Some(b) = self.node_blocked.get_mut(n.ix()) {
            *b = v;
        }
    }

    fn set_edge_blocked(&mut self, e: EdgeIdx, v: bool) {
        if let Some(b) = self.edge_blocked.get_mut(e.ix()) {
            *b = v;
        }
    }

    fn forced_hops(&self) -> usize {
        usize::from(self.prefix.is_some()) + usize::from(self.suffix.is_some())
    }

    fn risk(&self, amount: u64, delta: u32) -> u64 {
        let r = amount as f64 * delta as f64 * self.cost.risk_factor / (BLOCKS_PER_YEAR * 100.0);
        r as u64
    }

    fn prob_cost(&self, p: f64, amount: u64) -> u64 {
        if p >= 1.0 {
            return 0;
        }
        let weight = self.cost.prob_base_msat as f64 + amount as f64 * self.cost.prob_ppm as f64 / 1e6;
        (-p.ln() * weight) as u64
    }

    /// The label where the middle search starts: the destination, or B after the forced
    /// hop back to us.
    fn seed(&self) -> Option<Label> {
        let mut l = Label {
            node: self.to.0,
            edge: NONE,
            next: NONE,
            amount: self.amount,
            cost: 0,
            delay: self.final_cltv,
            hops: 0,
        };
        if let Some(s) = self.suffix {
            let fee = fee_for(s.policy.base, s.policy.ppm, Msat(self.amount))?.0;
            l.cost = fee.saturating_add(self.risk(self.amount, s.policy.cltv));
            l.amount = self.amount.checked_add(fee)?;
            l.delay = self.final_cltv.checked_add(s.policy.cltv)?;
        }
        Some(l)
    }

    /// Cheapest path (as middle edges in forward order) from `target` to `self.to`, using
    /// at most `hop_budget` edges.
    fn search(&mut self, target: NodeIdx, target_pays: bool, hop_budget: usize) -> Option<Vec<EdgeIdx>> {
        let seed = self.seed()?;
        let hop_budget = hop_budget.min(u8::MAX as usize - 1) as u8;
        if hop_budget == 0 {
            return None;
        }
        self.ws.reset();
        self.ws.push(seed);
        let graph = self.graph;
        let fee_cap = self
            .max_fee
            .and_then(|m| self.amount.checked_add(m))
            .unwrap_or(u64::MAX);

        while let Some(Reverse(key)) = self.ws.heap.pop() {
            let id = key as u32;
            let Some(&lab) = self.ws.labels.get(id as usize) else {
                continue;
            };
            let v = lab.node as usize;
            let Some(best) = self.ws.best_hops.get_mut(v) else {
                continue;
            };
            if lab.hops >= *best {
                continue;
            }
            *best = lab.hops;
            if lab.node == target.0 {
                return Some(self.path_from(id));
            }
            if lab.hops >= hop_budget {
                continue;
            }
            let amt = Msat(lab.amount);
            for edge in graph.in_edges_hot(NodeIdx(lab.node)) {
                let (e, u) = (edge.edge, edge.source);
                if !edge.usable || !edge.admits(amt) {
                    continue;
                }
                if self.edge_blocked.get(e.ix()).copied().unwrap_or(true) {
                    continue;
                }
                if self.node_blocked.get(u.ix()).copied().unwrap_or(true) {
                    continue;
                }
                let hops = lab.hops + 1;
                if self.ws.best_hops.get(u.ix()).is_none_or(|&b| hops >= b) {
                    continue;
                }
                let (amount, delay, fee_cost) = if u == target && target_pays {
                    (lab.amount, lab.delay, 0)
                } else {
                    let Some(fee) = fee_for(edge.fee_base, edge.fee_ppm, amt) else {
                        continue;
                    };
                    let (Some(a), Some(d)) = (
                        lab.amount.checked_add(fee.0),
                        lab.delay.checked_add(edge.cltv_delta),
                    ) else {
                        continue;
                    };
                    (a, d, fee.0.saturating_add(self.risk(lab.amount, edge.cltv_delta)))
                };
                if amount > fee_cap || delay > self.max_total_cltv {
                    continue;
                }
                // The probability term only adds cost: a label already dominated without it
                // is dropped before paying for the logarithm.
                let cost = lab.cost.saturating_add(fee_cost);
                if self.ws.dominated(u.0, cost, hops) {
                    continue;
                }
                let p = self.view.probability(e, edge.capacity, amt);
                if p <= 0.0 {
                    continue;
                }
                let cost = cost.saturating_add(self.prob_cost(p, lab.amount));
                self.ws.push(Label {
                    node: u.0,
                    edge: e.0,
                    next: id,
                    amount,
                    cost,
                    delay,
                    hops,
                });
            }
        }
        None
    }

    fn path_from(&self, mut id: u32) -> Vec<EdgeIdx> {
        let mut path = Vec::new();
        while let Some(l) = self.ws.labels.get(id as usize) {
            if l.edge == NONE || path.len() > MAX_HOPS {
                break;
            }
            path.push(EdgeIdx(l.edge));
            id = l.next;
        }
        path
    }

    /// The full hop list for a middle path, or `None` if it is not a simple path from
    /// `from` to `to` (our node may close a circular route, nothing else may repeat).
    fn legs(&self, middle: &[EdgeIdx]) -> Option<Vec<Leg>> {
        let g = self.graph;
        let mut legs = Vec::with_capacity(middle.len() + 2);
        let mut seen = vec![self.payer];
        if let Some((scid, _, peer)) = self.prefix {
            legs.push(Leg {
                scid,
                to: peer,
                edge: None,
                policy: None,
                certain: true,
            });
            seen.push(peer);
        }
        let mut at = self.from;
        for &e in middle {
            let edge = g.edge(e)?;
            if edge.source != at || seen.contains(&edge.destination) {
                return None;
            }
            legs.push(Leg {
                scid: edge.scid,
                to: edge.destination,
                edge: Some(e),
                policy: Some(Policy {
                    base: edge.fee_base,
                    ppm: edge.fee_ppm,
                    cltv: edge.cltv_delta,
                }),
                certain: false,
            });
            seen.push(edge.destination);
            at = edge.destination;
        }
        if at != self.to {
            return None;
        }
        if let Some(s) = self.suffix {
            if s.from != at {
                return None;
            }
            legs.push(Leg {
                scid: s.scid,
                to: self.payer,
                edge: None,
                policy: Some(s.policy),
                certain: true,
            });
        }
        Some(legs)
    }

    /// Walks the route from the destination back, exactly as the nodes will compute it.
    fn evaluate(&self, legs: &[Leg]) -> Option<Route> {
        let g = self.graph;
        if legs.is_empty() || legs.len() > self.max_hops {
            return None;
        }
        let mut amt = self.amount;
        let mut delay = self.final_cltv;
        let mut cost = 0u64;
        let mut prob = 1.0f64;
        let mut hops = Vec::with_capacity(legs.len());
        for (j, leg) in legs.iter().enumerate().rev() {
            let edge = leg.edge.and_then(|e| g.edge(e).map(|x| (e, x)));
            if !leg.certain {
                let (e, x) = edge?;
                if !x.usable() || !x.admits(Msat(amt)) {
                    return None;
                }
                let p = self.view.probability(e, x.capacity, Msat(amt));
                if p <= 0.0 {
                    return None;
                }
                prob *= p;
                cost = cost.saturating_add(self.prob_cost(p, amt));
            }
            let (fee, delta) = if j == 0 {
                (0, 0)
            } else {
                let pol = leg.policy?;
                (fee_for(pol.base, pol.ppm, Msat(amt))?.0, pol.cltv)
            };
            cost = cost.saturating_add(fee).saturating_add(self.risk(amt, delta));
            hops.push(Hop {
                scid: leg.scid,
                node: *g.node_id(leg.to)?,
                amount: Msat(amt),
                fee: Msat(fee),
                cltv_delta: delta,
                delay,
            });
            amt = amt.checked_add(fee)?;
            delay = delay.checked_add(delta)?;
        }
        hops.reverse();
        let fee = amt.saturating_sub(self.amount);
        if self.max_fee.is_some_and(|m| fee > m) {
            return None;
        }
        let total_cltv = hops.first().map_or(self.final_cltv, |h| h.delay);
        if total_cltv > self.max_total_cltv {
            return None;
        }
        let fee_ppm = ((fee as u128 * 1_000_000).div_ceil(self.amount as u128)).min(u64::MAX as u128) as u64;
        Some(Route {
            hops,
            amount: Msat(self.amount),
            amount_sent: Msat(amt),
            fee: Msat(fee),
            fee_ppm,
            total_cltv,
            probability: prob,
            cost,
        })
    }

    fn key(&self, middle: &[EdgeIdx]) -> Vec<(Scid, u8)> {
        middle
            .iter()
            .filter_map(|&e| self.graph.edge(e).map(|x| (x.scid, x.direction)))
            .collect()
    }

    /// Yen's k shortest loop-free paths over the middle part of the route.
    fn k_routes(&mut self, k: usize) -> Vec<Route> {
        let budget = self.max_hops.saturating_sub(self.forced_hops());
        if budget == 0 {
            return Vec::new();
        }
        let from_pays = self.prefix.is_none();
        let Some(first) = self.search(self.from, from_pays, budget) else {
            return Vec::new();
        };
        let Some(route) = self.legs(&first).and_then(|l| self.evaluate(&l)) else {
            return Vec::new();
        };
        let mut accepted: Vec<(Vec<EdgeIdx>, Route, usize)> = vec![(first.clone(), route, 0)];
        let mut seen: HashSet<Vec<EdgeIdx>> = HashSet::new();
        seen.insert(first);
        let mut candidates: Vec<Candidate> = Vec::new();

        while accepted.len() < k {
            let (prev, dev) = accepted.last().map(|a| (a.0.clone(), a.2)).unwrap_or_default();
            // Lawler: spurs before the deviation point were explored with the parent path
            // and would only find candidates already known.
            for i in dev..prev.len() {
                let root = &prev[..i];
                let Some(spur) = self.graph.edge(prev[i]).map(|e| e.source) else {
                    continue;
                };
                // Edges that would rebuild an accepted path through this root.
                let mut blocked_edges = Vec::new();
                for (path, _, _) in &accepted {
                    if path.len() > i && path[..i] == *root {
                        blocked_edges.push(path[i]);
                    }
                }
                let root_nodes: Vec<NodeIdx> = root
                    .iter()
                    .filter_map(|&e| self.graph.edge(e).map(|x| x.source))
                    .collect();
                let prev_edge_state: Vec<bool> = blocked_edges
                    .iter()
                    .map(|e| self.edge_blocked.get(e.ix()).copied().unwrap_or(true))
                    .collect();
                let prev_node_state: Vec<bool> = root_nodes
                    .iter()
                    .map(|n| self.node_blocked.get(n.ix()).copied().unwrap_or(true))
                    .collect();
                for &e in &blocked_edges {
                    self.set_edge_blocked(e, true);
                }
                for &n in &root_nodes {
                    self.set_node_blocked(n, true);
                }

                let spur_path = self.search(spur, from_pays && i == 0, budget.saturating_sub(i));

                for (&e, &was) in blocked_edges.iter().zip(&prev_edge_state) {
                    self.set_edge_blocked(e, was);
                }
                for (&n, &was) in root_nodes.iter().zip(&prev_node_state) {
                    self.set_node_blocked(n, was);
                }

                let Some(spur_path) = spur_path else { continue };
                let mut cand = root.to_vec();
                cand.extend_from_slice(&spur_path);
                if !seen.insert(cand.clone()) {
                    continue;
                }
                if let Some(r) = self.legs(&cand).and_then(|l| self.evaluate(&l)) {
                    candidates.push((r.cost, self.key(&cand), cand, r, i));
                }
            }
            let best = candidates
                .iter()
                .enumerate()
                .min_by(|a, b| (a.1 .0, &a.1 .1).cmp(&(b.1 .0, &b.1 .1)))
                .map(|(i, _)| i);
            let Some(best) = best else { break };
            let (_, _, path, r, dev) = candidates.swap_remove(best);
            accepted.push((path, r, dev));
        }

        let mut out: Vec<(Vec<(Scid, u8)>, Route)> =
            accepted.into_iter().map(|(p, r, _)| (self.key(&p), r)).collect();
        out.sort_by(|a, b| (a.1.cost, &a.0).cmp(&(b.1.cost, &b.0)));
        out.into_iter().map(|(_, r)| r).collect()
    }
}

#[cfg(test)]
mod tests;
