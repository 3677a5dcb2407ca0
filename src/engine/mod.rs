//! Pure decision logic: no I/O, no async, no clocks read behind the caller's back. The
//! caller passes the time in.
//!
//! Each job's state machine or planner lives in its own module and is driven with plain
//! data by `service` (for the plugin, the sidecar and the simulator alike):
//!
//! - hold invoices: [`hodl`] (the invoice state machine and its deadlines), [`claims`],
//!   [`bolt11`] (building and checking the invoices ballast signs);
//! - rebalancing: [`graph`], [`listchannels`] and [`local_edges`] (the gossip graph and our
//!   own channels in it), [`beliefs`] (what attempts taught about liquidity), [`route`]
//!   (circular routes by cost and probability), [`sizing`] (how much a route will likely
//!   carry), [`planner`] (which channels to fix, by which moves, within which budget),
//!   [`rest`] (which pairs the automatic round leaves alone after they kept failing);
//! - fee policy: [`fees`] (policy files, strategies, decisions and their rate limit);
//! - balance monitoring: [`monitor`] (snapshots, rules, alerts, history, stats, export).

pub mod beliefs;
pub mod bolt11;
pub mod claims;
pub mod fees;
pub mod graph;
pub mod hodl;
pub mod listchannels;
pub mod local_edges;
pub mod monitor;
pub mod planner;
pub(crate) mod rest;
pub mod route;
pub mod sizing;
