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
#[cfg(test)]
pub(crate) mod testnode;

/// Runs a service call that may touch the store (and fsync) from async code that drives a
/// node.
///
/// Why not `spawn_blocking`: that needs `'static` closures and a multi-thread runtime's
/// blocking pool, and the simulator drives these futures on a current-thread runtime where
/// the store is a temporary one. On the plugin's multi-thread runtime the call goes through
/// `block_in_place`, so the worker hands its other tasks (hooks) to another worker while
/// the store syncs; anywhere else (current-thread runtime, no runtime) it just runs, which
/// is what a single-threaded driver wants.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}
