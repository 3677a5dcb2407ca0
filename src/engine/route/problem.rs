//! The search problem that both entry points build: the route's fixed ends and forced
//! hops, the limits taken from `RouteParams`, and the blocked nodes and edges Yen's
//! algorithm toggles. Also `find_routes`, the point-to-point entry point.

use super::assembly::Route;
use super::cost::CostModel;
use super::params::{check_params, RouteError, RouteParams};
use super::search::Workspace;
use crate::engine::beliefs::BeliefView;
use crate::engine::graph::{EdgeIdx, Graph, NodeIdx};
use crate::types::{Msat, NodeId, Scid};

/// Up to `params.k` cheapest loop-free routes from `from` to `to` delivering `amount`,
/// in cost order. An empty list means no route satisfies the constraints.
pub(crate) fn find_routes(
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

/// A forwarding policy: what the sending node of a hop charges and adds to the CLTV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Policy {
    pub(super) base: Msat,
    pub(super) ppm: u32,
    pub(super) cltv: u32,
}

/// The forced last hop of a circular route: from `from` back to the payer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Suffix {
    pub(super) scid: Scid,
    pub(super) from: NodeIdx,
    pub(super) policy: Policy,
}

pub(super) struct Problem<'g> {
    pub(super) graph: &'g Graph,
    pub(super) view: &'g BeliefView,
    pub(super) cost: CostModel,
    pub(super) amount: u64,
    pub(super) final_cltv: u32,
    pub(super) max_total_cltv: u32,
    pub(super) max_fee: Option<u64>,
    pub(super) max_hops: usize,
    /// Ends of the searched (middle) part of the route.
    pub(super) from: NodeIdx,
    pub(super) to: NodeIdx,
    /// The node that pays: it charges no fee and its CLTV delta does not apply.
    pub(super) payer: NodeIdx,
    /// Forced first hop: (scid, payer, peer).
    pub(super) prefix: Option<(Scid, NodeIdx, NodeIdx)>,
    /// Forced last hop back to the payer.
    pub(super) suffix: Option<Suffix>,
    pub(super) node_blocked: Vec<bool>,
    pub(super) edge_blocked: Vec<bool>,
    pub(super) ws: Workspace,
}

impl<'g> Problem<'g> {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn new(
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

    pub(super) fn block_node(&mut self, n: NodeIdx) {
        self.set_node_blocked(n, true);
    }

    pub(super) fn set_node_blocked(&mut self, n: NodeIdx, v: bool) {
        if let Some(b) = self.node_blocked.get_mut(n.ix()) {
            *b = v;
        }
    }

    pub(super) fn set_edge_blocked(&mut self, e: EdgeIdx, v: bool) {
        if let Some(b) = self.edge_blocked.get_mut(e.ix()) {
            *b = v;
        }
    }

    pub(super) fn forced_hops(&self) -> usize {
        usize::from(self.prefix.is_some()) + usize::from(self.suffix.is_some())
    }
}
