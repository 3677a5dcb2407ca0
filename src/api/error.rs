//! Every error a ballast method answers with: [`RpcError`], each code named once with what
//! it means, and the helpers that build the common ones.
//!
//! The codes are part of the interface: callers branch on them, the README lists them and
//! both adapters answer with the same ones. Core Lightning leaves positive codes to plugins;
//! 2001–2011 belong to hold invoices, fees and rebalancing, 2101–2103 to the balance
//! monitor. Never renumber one.

use serde_json::json;
use std::fmt::Display;

/// A method error with a code, in the shape cln-plugin turns into a JSON-RPC error object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: i64,
    pub message: String,
}

impl RpcError {
    pub fn new(code: i64, message: impl Into<String>) -> Self {
        RpcError {
            code,
            message: message.into(),
        }
    }

    /// A parameter is missing, malformed or out of range ([`INVALID_PARAMS`]).
    pub fn invalid(message: impl Into<String>) -> Self {
        RpcError::new(INVALID_PARAMS, message)
    }
}

impl From<RpcError> for anyhow::Error {
    fn from(e: RpcError) -> Self {
        // cln-plugin parses an error whose text is a JSON error object back into one, which
        // is the only way to choose the code it sends.
        anyhow::anyhow!(json!({"code": e.code, "message": e.message}).to_string())
    }
}

/// JSON-RPC "invalid params": unknown or malformed parameters, a value out of range, a
/// path outside the files directory. Nothing was changed.
pub const INVALID_PARAMS: i64 = -32602;
/// Something inside ballast failed (the store, a task that died): not the caller's doing.
pub(crate) const ERR_INTERNAL: i64 = -1;

/// No hold invoice has this payment hash.
pub(crate) const ERR_UNKNOWN_INVOICE: i64 = 2001;
/// Not allowed in the hold invoice's current state (the message names the state), or LND
/// refused to settle.
pub(crate) const ERR_INVOICE_STATE: i64 = 2002;
/// A hold invoice with this payment hash or label exists already.
pub const ERR_DUPLICATE: i64 = 2003;
/// `hodl-lookup` waited its `timeout` without the invoice reaching the state asked for.
pub const ERR_WAIT_TIMEOUT: i64 = 2004;
/// The node refused or failed a call ballast needed (or its answer was lost).
pub(crate) const ERR_NODE: i64 = 2005;
/// Fees and rebalancing: not one of our channels, or not a normal one.
pub const ERR_UNKNOWN_CHANNEL: i64 = 2006;
/// Rebalancing: no gossip graph is loaded yet.
pub(crate) const ERR_NO_GRAPH: i64 = 2007;
/// Rebalancing: no plan with that id (or it ran already), or the route search failed.
pub(crate) const ERR_PLAN: i64 = 2008;
/// Rebalancing: another execution is running.
pub(crate) const ERR_BUSY: i64 = 2009;
/// `hodl-settle`: lightningd does not hold every part for ballast right now (not yet
/// replayed after a restart, or lost: then the invoice is canceled, `htlcs_lost`).
pub const ERR_NOT_HELD: i64 = 2010;
/// `hodl-settle`: too close to the HTLCs' expiry to settle safely; the invoice is canceled.
pub const ERR_TOO_LATE: i64 = 2011;
/// The balance monitor has no such channel.
pub(crate) const ERR_NOT_MONITORED: i64 = 2101;
/// The alert is not active: unknown, or cleared already.
pub(crate) const ERR_ALERT_NOT_ACTIVE: i64 = 2102;
/// The file cannot be written, or exists and may not be replaced.
pub const ERR_FILE: i64 = 2103;

/// A node call failed: `what` names the call or the step it served.
pub(crate) fn node_error(what: &str, e: impl Display) -> RpcError {
    RpcError::new(ERR_NODE, format!("{what}: {e}"))
}

/// An internal failure, with its own message.
pub(crate) fn internal(e: impl Display) -> RpcError {
    RpcError::new(ERR_INTERNAL, e.to_string())
}

/// A blocking task (store work off the async workers) did not finish.
pub(crate) fn task_failed(e: impl Display) -> RpcError {
    internal(format!("internal task failed: {e}"))
}
