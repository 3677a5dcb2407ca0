//! Route assembly: turning a searched path into the full hop list (forced hops included)
//! and re-evaluating it hop by hop from the destination, as the nodes will, into the
//! `Route` and `Hop` values callers receive.

use super::problem::{Policy, Problem};
use crate::engine::graph::{fee_for, EdgeIdx, NodeIdx};
use crate::node::RouteHop;
use crate::types::{Msat, NodeId, Scid};
use serde::{Deserialize, Serialize};

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
    pub(crate) fn to_route_hops(&self) -> Vec<RouteHop> {
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

/// One hop of a full route under evaluation.
#[derive(Debug, Clone, Copy)]
pub(super) struct Leg {
    scid: Scid,
    to: NodeIdx,
    /// The graph edge of a searched hop (limits and beliefs are checked on it).
    edge: Option<EdgeIdx>,
    /// The sending node's policy; `None` only on the first hop, which the payer sends.
    policy: Option<Policy>,
    /// Our own channel: its liquidity is known to the caller and its limits checked there.
    certain: bool,
}

impl Problem<'_> {
    /// The full hop list for a middle path, or `None` if it is not a simple path from
    /// `from` to `to` (our node may close a circular route, nothing else may repeat).
    pub(super) fn legs(&self, middle: &[EdgeIdx]) -> Option<Vec<Leg>> {
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
    pub(super) fn evaluate(&self, legs: &[Leg]) -> Option<Route> {
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
}
