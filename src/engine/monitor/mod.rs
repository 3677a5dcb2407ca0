//! Balance monitoring: snapshots of our channels, rules that turn them into alerts people can
//! act on, a downsampled balance history, income statistics and exports.
//!
//! Everything here is a pure function of the data, the clock and the block height passed in,
//! so the plugin, the LND sidecar, the simulator and the tests make identical decisions. The
//! caller owns I/O: it takes snapshots, feeds them to an [`Evaluator`], writes what
//! [`plan_history`] asks for, and stores the records this module defines (see [`records`]).

pub mod alerts;
mod check;
pub mod export;
pub mod history;
pub mod records;
pub mod rules;
pub mod snapshot;
pub mod stats;

#[cfg(test)]
mod tests;

pub use alerts::{AckError, Alert, AlertId, AlertKind, AlertState, Evaluator, Transition, UnknownAlertKind};
pub use export::{ExportError, ExportFormat};
pub use history::{
    plan_history, prune_history, select_history, HistoryError, HistoryKey, HistoryPlan, HistoryPoint,
    HistoryPolicy, Tier, MAX_BYTES_PER_CHANNEL, MAX_POINTS_PER_CHANNEL, MAX_POINT_VALUE_BYTES,
    POINT_KEY_BYTES,
};
pub use rules::{ConfigError, MonitorConfig, Rule, RulePatch, Rules, RulesPatch, Scope, Severity, Threshold};
pub use rules::{Toggle, TogglePatch};
pub use snapshot::{ChannelKey, ChannelSnapshot};
pub(crate) use stats::{
    balance_totals, fee_income, invoice_income, BalanceTotals, FeeWindow, IncomeWindow, WINDOWS,
};
