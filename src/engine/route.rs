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
//!
//! The parts live in submodules: `cost` (the cost model), `params` (parameters and their
//! checks), `problem` (the search problem and `find_routes`), `search` (Dijkstra), `yen`
//! (k shortest paths), `assembly` (hop lists and the `Route` type) and `circular`
//! (rebalancing loops).

mod assembly;
mod circular;
mod cost;
mod params;
mod problem;
mod search;
mod yen;

pub use assembly::{cheapest, fastest, Hop, Route};
pub use circular::{find_circular_routes, CircularRequest};
pub use cost::CostModel;
pub use params::{RouteError, RouteParams, MAX_HOPS};
pub(crate) use problem::find_routes;

#[cfg(test)]
mod tests;
