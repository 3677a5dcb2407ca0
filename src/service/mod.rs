//! Runtime glue between the pure engine, the store and whichever node adapter runs it:
//! in-memory books, waiters for held HTLCs and event fan-out. Methods are synchronous
//! (some flush the store); async callers run them on blocking threads.

pub mod execute;
pub mod fees;
pub mod files;
pub mod hodl;
pub mod income;
pub mod monitor;
pub mod rebalance;
