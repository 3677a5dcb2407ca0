//! ballast: hold invoices, balance monitoring, rebalancing and fee policy for Lightning
//! nodes, as a Core Lightning plugin (`ballast`) or beside LND (`ballast-lnd`).
//!
//! The layers, each depending only on those below it:
//!
//! - `src/bin/`: thin entry points (`ballast`: plugin or `simulate`; `ballast-lnd`).
//! - [`cln`] and [`lnd`]: the adapters. Everything specific to one daemon lives here: the
//!   plugin protocol, hook JSON and lightningd's error codes ([`cln`]); gRPC, LND's rules
//!   and the sidecar's socket ([`lnd`]). Each implements [`node::Node`] and registers
//!   [`api::METHODS`].
//! - [`api`] and [`sim`]: the methods both adapters serve, with their background loops,
//!   and the simulator, which drives the same services on a simulated clock. Neither
//!   knows which daemon is underneath: the app state holds an [`node::AnyNode`].
//! - [`service`] (runtime state over the store: hold-invoice waiters, the fee step, the
//!   monitor's rounds, the rebalance attempt loop) and [`report`] (the HTML report).
//! - [`engine`]: pure decisions, no I/O, no async, no clock reads.
//! - [`node`] (the contract with a node, with typed outcomes), [`store`] (the only code
//!   that touches sled: typed, versioned records) and [`types`] (newtypes for amounts,
//!   ids and hashes).

pub mod api;
pub mod cln;
pub mod counters;
pub mod engine;
pub mod lnd;
pub mod node;
pub mod report;
pub mod service;
pub mod sim;
pub mod store;
pub mod types;
