//! What a route search is asked for and how it can be refused: the parameters, their
//! validation and the error type. Kept apart so the searches share one set of checks.

use super::cost::CostModel;
use crate::types::{Msat, NodeId, Scid};
use serde::{Deserialize, Serialize};

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

pub(super) fn check_params(amount: Msat, params: &RouteParams) -> Result<(), RouteError> {
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
