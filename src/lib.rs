//! ballast: hold invoices, balance monitoring, rebalancing and fee policy for Lightning
//! nodes. The engine is pure (`engine`), the store owns persistence (`store`), and each
//! node implementation adapts the `node::Node` trait (`cln`).

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
