//! Prometheus metrics for all four jobs (balance monitoring, hold invoices, fee policy,
//! rebalancing): the exposition and the optional HTTP endpoint that serves it.

mod encode;
mod server;

pub use server::{parse_bind, serve};
