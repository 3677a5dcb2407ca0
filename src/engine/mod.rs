//! Pure decision logic: no I/O, no async, no clocks read behind the caller's back.
//!
//! Each feature's state machine or planner lives in its own module here and is driven with
//! plain data by the adapters in `cln` (and later `lnd` and the simulator).

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
pub mod route;
pub mod sizing;
