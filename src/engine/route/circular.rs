//! Circular (rebalancing) routes: the request, its checks against the graph, and the
//! forced first and last hops around the searched middle.

use super::assembly::Route;
use super::params::{check_params, RouteError, RouteParams};
use super::problem::{Policy, Problem, Suffix};
use crate::engine::beliefs::BeliefView;
use crate::engine::graph::{Graph, NodeIdx};
use crate::node::PeerPolicy;
use crate::types::{Msat, NodeId, Scid};
use serde::{Deserialize, Serialize};

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
