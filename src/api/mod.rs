//! The method surface shared by the Core Lightning plugin and the LND sidecar: the
//! `hodl-*`, `monitor-*`, `rebalance-*`, `route-estimate`, `fee-*` and `ballast-status`
//! methods, the background loops behind them, and the state they share. Nothing here knows
//! how a call arrived (lightningd's plugin protocol or the sidecar's unix socket); adapters
//! register [`METHODS`] and run the loops.

/// The body of an RPC method, with `$s` bound to the shared state. Counting and error
/// conversion happen once, in [`call`].
macro_rules! rpc_body {
    ($p:ident, $s:ident, $body:expr) => {{
        let $s = $p.clone();
        let r: Result<serde_json::Value, $crate::api::error::RpcError> = $body.await;
        r
    }};
}

pub mod error;
pub mod fees;
pub mod hodl;
pub mod metrics;
pub mod monitor;
pub mod options;
pub mod params;
pub mod rebalance;
pub mod settings;
pub mod start;
pub mod state;
pub mod status;

pub(crate) use error::RpcError;
pub use state::{AppState, Shared};

use crate::counters::bump;
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::time::{SystemTime, UNIX_EPOCH};

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub(crate) type MethodFuture = Pin<Box<dyn Future<Output = Result<Value, RpcError>> + Send>>;

/// One JSON-RPC method: what both adapters register under `name`.
pub struct Method {
    pub name: &'static str,
    pub description: &'static str,
    pub usage: &'static str,
    pub handler: fn(AppState, Value) -> MethodFuture,
}

macro_rules! method {
    ($name:expr, $f:path, $desc:expr, $usage:expr) => {
        Method {
            name: $name,
            description: $desc,
            usage: $usage,
            handler: |s, v| Box::pin($f(s, v)),
        }
    };
}

/// Every method, in the order `help` lists them.
pub const METHODS: &[Method] = &[
    method!(status::NAME, status::status, status::DESCRIPTION, ""),
    method!(
        hodl::INVOICE,
        hodl::invoice,
        "Create a hold invoice: its HTLCs are held until hodl-settle or hodl-cancel",
        "amount_msat [payment_hash] [description] [expiry] [cltv] [description_hash] [label] [exposeprivatechannels]"
    ),
    method!(
        hodl::SETTLE,
        hodl::settle,
        "Settle an accepted hold invoice with its preimage (or by hash if ballast made the preimage)",
        "[preimage] [payment_hash]"
    ),
    method!(
        hodl::CANCEL,
        hodl::cancel,
        "Cancel a hold invoice, failing back any held HTLCs",
        "payment_hash"
    ),
    method!(
        hodl::LOOKUP,
        hodl::lookup,
        "Show a hold invoice; with wait_for_state, wait until it reaches that state",
        "payment_hash [wait_for_state] [timeout]"
    ),
    method!(
        hodl::LIST,
        hodl::list,
        "List hold invoices, newest first",
        "[state] [limit] [offset]"
    ),
    method!(
        fees::PREVIEW,
        fees::preview,
        "Dry run of the fee policy: per channel the current and target fee, the rule, inputs and when it would apply",
        "[scid]"
    ),
    method!(
        fees::APPLY,
        fees::apply,
        "Apply the fee policy now (force skips min-delta, start-up hold and rate limit)",
        "[scid] [force]"
    ),
    method!(
        fees::HISTORY,
        fees::history,
        "Fee changes ballast made, newest first, with trigger, rule and explanation",
        "[scid] [limit]"
    ),
    method!(
        fees::POLICY,
        fees::policy,
        "Show the fee policy, or replace it with a JSON policy, TOML text or a TOML file",
        "[policy] [toml] [file]"
    ),
    method!(
        monitor::STATUS,
        monitor::status,
        "Per channel: balances, local ratio, HTLCs and active alerts, from the latest snapshot",
        "[scid]"
    ),
    method!(
        monitor::STATS,
        monitor::stats,
        "Totals and averages over channels, fees earned and invoice income over 24h/7d/30d",
        ""
    ),
    method!(
        monitor::ALERTS,
        monitor::alerts,
        "Active (or all stored) balance alerts, newest first; ack=<id> acknowledges one",
        "[which] [ack] [limit]"
    ),
    method!(
        monitor::HISTORY,
        monitor::history,
        "A channel's local balance history between since and until (unix seconds, default the last 24h)",
        "scid [since] [until]"
    ),
    method!(
        monitor::EXPORT,
        monitor::export,
        "Write balance history (or the latest snapshots) to a new file (mode 0600) as JSON or CSV",
        "path [format] [data] [scid] [overwrite]"
    ),
    method!(
        monitor::SET,
        monitor::set,
        "Show the monitor rules, or change them at a scope (default, a peer id or a scid) with a JSON patch",
        "[scope] [rules] [reset]"
    ),
    method!(
        monitor::REPORT,
        monitor::report,
        "Write a self-contained HTML report with SVG charts of balances, alerts and fees to a new file",
        "path [days] [overwrite]"
    ),
    method!(
        rebalance::ESTIMATE,
        rebalance::estimate,
        "Estimate routes to a node: the cheapest and the fastest of k, with fee, CLTV and success probability",
        "destination amount_msat [k] [maxhops]"
    ),
    method!(
        rebalance::PLAN,
        rebalance::rebalance_plan,
        "Dry run: which channels are lopsided, which circular moves would fix them, by which routes, at what cost; swaps where no route fits",
        "[channels] [max_ppm] [max_moves]"
    ),
    method!(
        rebalance::EXECUTE,
        rebalance::execute,
        "Execute a plan (or one move) with circular payments to ourselves, never exceeding the fee budgets",
        "[plan_id] [source] [sink] [amount_msat] [max_ppm] [max_fee_msat]"
    ),
    method!(
        rebalance::SET,
        rebalance::set,
        "Show or set per-channel rebalance targets (low, high, target ratios) over the ballast-rebalance-* defaults",
        "[scid] [low] [high] [target] [reset]"
    ),
    method!(
        rebalance::STATUS,
        rebalance::status,
        "Rebalance attempts (newest first), spend over 24 h and the graph in use",
        "[id] [limit]"
    ),
];

pub fn find(name: &str) -> Option<&'static Method> {
    METHODS.iter().find(|m| m.name == name)
}

/// Runs one method call, counting it (and its failure) in `ballast-status`.
pub async fn call(s: AppState, m: &Method, params: Value) -> Result<Value, RpcError> {
    bump(&s.counters.rpc_calls);
    let counters = s.counters.clone();
    let r = (m.handler)(s, params).await;
    if r.is_err() {
        bump(&counters.rpc_errors);
    }
    r
}

/// Where custom notifications (`ballast_hodl_state`, `ballast_alert`) go: lightningd's
/// notification stream for the plugin, the log for the sidecar. Sent through a queue so a
/// slow consumer never blocks the code that raised them.
#[derive(Clone)]
pub struct Notifier(tokio::sync::mpsc::UnboundedSender<(&'static str, Value)>);

pub(crate) type NotificationQueue = tokio::sync::mpsc::UnboundedReceiver<(&'static str, Value)>;

impl Notifier {
    pub fn new() -> (Notifier, NotificationQueue) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        (Notifier(tx), rx)
    }

    pub fn send(&self, topic: &'static str, body: Value) {
        // The consumer only ends when the process does.
        let _ = self.0.send((topic, body));
    }
}
