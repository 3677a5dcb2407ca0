//! The plugin's `ballast-*` options, as lightningd shows them in `listconfigs`.

use cln_plugin::options::{
    ConfigOption, DefaultBooleanConfigOption, DefaultIntegerConfigOption, DefaultStringConfigOption,
    StringConfigOption,
};
use std::path::{Path, PathBuf};

pub(crate) const DB_PATH: DefaultStringConfigOption = ConfigOption::new_str_with_default(
    "ballast-db-path",
    "ballast",
    "Directory of ballast's store; a relative path is taken from <lightning-dir>/<network>",
);

pub(crate) const FILES_DIR: DefaultStringConfigOption = ConfigOption::new_str_with_default(
    "ballast-files-dir",
    "ballast-files",
    "The only directory monitor-export and monitor-report write into (and fee-policy file= reads from); relative to <lightning-dir>/<network>",
);

pub(crate) const HODL_CANCEL_BLOCKS: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-hodl-cancel-blocks",
    10,
    "Cancel an accepted hold invoice (and refuse to settle it) when its earliest HTLC is this many blocks from expiry; on Core Lightning raised to (cltv-delta+1)/2+2 if lower",
);

pub(crate) const HODL_WARN_BLOCKS: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-hodl-warn-blocks",
    6,
    "Warn (ballast_alert) this many blocks before a hold invoice is auto-canceled",
);

pub(crate) const HODL_MPP_TIMEOUT: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-hodl-mpp-timeout",
    60,
    "Seconds an incomplete multi-part payment to a hold invoice is held before failing (mpp_timeout)",
);

pub(crate) const HODL_EXPIRY: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-hodl-expiry",
    86_400,
    "Default expiry in seconds of new hold invoices",
);

pub(crate) const HODL_CLTV: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-hodl-cltv",
    80,
    "Default min_final_cltv_expiry of new hold invoices: the blocks an app has to decide",
);

pub(crate) const FEE_POLICY_FILE: StringConfigOption = ConfigOption::new_str_no_default(
    "ballast-fee-policy-file",
    "TOML fee policy (see contrib/fee-policy.sample.toml) replacing the built-in one; 'off' turns automatic fees off",
);

/// `ballast-fee-policy-file=off`: no automatic fee changes at all.
pub(crate) fn policy_off(value: &str) -> bool {
    value.trim().eq_ignore_ascii_case("off")
}

pub(crate) const FEE_DRY_RUN: DefaultBooleanConfigOption = ConfigOption::new_bool_with_default(
    "ballast-fee-dry-run",
    false,
    "Decide and log fee changes, but never call setchannel (start here)",
);

pub(crate) const FEE_MIN_DELTA: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-fee-min-delta",
    10,
    "A fee change must move the ppm by at least this much (and by ballast-fee-min-delta-percent)",
);

pub(crate) const FEE_MIN_DELTA_PERCENT: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-fee-min-delta-percent",
    5,
    "A fee change must move the ppm by at least this percentage of the current ppm",
);

pub(crate) const FEE_MIN_INTERVAL: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-fee-min-interval",
    3_600,
    "Seconds between fee updates of one channel (also the hold after start-up)",
);

pub(crate) const FEE_COALESCE: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-fee-coalesce",
    30,
    "Forward events on a channel within this many seconds make one fee decision",
);

pub(crate) const FEE_INTERVAL: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-fee-interval",
    3_600,
    "Seconds between passes over all channels (for channels without forwards)",
);

pub(crate) const FEE_FLOW_WINDOW: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-fee-flow-window",
    86_400,
    "Seconds of forward history the flow conditions and strategy look at",
);

pub(crate) const GRAPH_REFRESH: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-graph-refresh",
    600,
    "Seconds between refreshes of the gossip graph (updated in place)",
);

pub(crate) const LIQUIDITY_HALFLIFE: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-liquidity-halflife",
    21_600,
    "Seconds after which what a payment attempt taught about a channel's liquidity is half forgotten",
);

pub(crate) const REBALANCE_HIGH: DefaultStringConfigOption = ConfigOption::new_str_with_default(
    "ballast-rebalance-high",
    "0.8",
    "Local ratio above which a channel has liquidity to give",
);

pub(crate) const REBALANCE_LOW: DefaultStringConfigOption = ConfigOption::new_str_with_default(
    "ballast-rebalance-low",
    "0.2",
    "Local ratio below which a channel needs liquidity",
);

pub(crate) const REBALANCE_TARGET: DefaultStringConfigOption = ConfigOption::new_str_with_default(
    "ballast-rebalance-target",
    "0.5",
    "Local ratio a rebalance move aims for on both channels",
);

pub(crate) const REBALANCE_MAX_AMOUNT: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-rebalance-max-amount",
    1_000_000_000,
    "Largest amount (msat) one rebalance move may shift",
);

pub(crate) const REBALANCE_MAX_PPM: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-rebalance-max-ppm",
    1_000,
    "Highest fee rate (ppm of the amount) a rebalance may pay",
);

pub(crate) const REBALANCE_FEE_SHARE: DefaultStringConfigOption = ConfigOption::new_str_with_default(
    "ballast-rebalance-fee-share",
    "0.5",
    "A move may pay at most this share of the sink channel's own fee rate, so it can pay for itself",
);

pub(crate) const REBALANCE_DAILY_BUDGET: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-rebalance-daily-budget",
    10_000_000,
    "Most fees (msat) all rebalances together may spend in any 24 hours",
);

pub(crate) const REBALANCE_MAX_HTLCS: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-rebalance-max-htlcs",
    1,
    "Most rebalance HTLCs in flight at once (executions currently send one at a time)",
);

pub(crate) const REBALANCE_AUTO: DefaultBooleanConfigOption = ConfigOption::new_bool_with_default(
    "ballast-rebalance-auto",
    false,
    "Plan and execute rebalances every ballast-rebalance-interval, within the same budgets",
);

pub(crate) const REBALANCE_INTERVAL: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-rebalance-interval",
    21_600,
    "Seconds between automatic rebalance rounds",
);

/// Reads a ratio option ("0.8") and checks it lies in [0, 1].
pub fn ratio(name: &str, text: &str) -> Result<f64, String> {
    let v: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{name} must be a number between 0 and 1, got '{text}'"))?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{name} must be between 0 and 1, got {v}"))
    }
}

pub(crate) const MONITOR_INTERVAL: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-monitor-interval",
    60,
    "Seconds between balance-monitor snapshots when no event triggers one",
);

pub(crate) const MONITOR_LOW_LOCAL: DefaultStringConfigOption = ConfigOption::new_str_with_default(
    "ballast-monitor-low-local",
    "0.05",
    "Default low_local limit: a ratio of capacity (0.05) or an amount (100000000msat); monitor-set default overrides it",
);

pub(crate) const MONITOR_LOW_REMOTE: DefaultStringConfigOption = ConfigOption::new_str_with_default(
    "ballast-monitor-low-remote",
    "0.05",
    "Default low_remote limit: a ratio of capacity (0.05) or an amount (100000000msat); monitor-set default overrides it",
);

pub(crate) const MONITOR_MAX_PENDING_HTLCS: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-monitor-max-pending-htlcs",
    30,
    "Default pending_htlcs limit: alert when a channel has more pending HTLCs than this",
);

pub(crate) const MONITOR_HTLC_EXPIRY_BLOCKS: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-monitor-htlc-expiry-blocks",
    18,
    "Default htlc_near_expiry limit: alert when a pending HTLC expires within this many blocks",
);

pub(crate) const MONITOR_PENDING_OPEN_BLOCKS: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-monitor-pending-open-blocks",
    144,
    "Default pending_open limit: alert when a channel is still opening after this many blocks",
);

pub(crate) const MONITOR_DISCONNECT_SECS: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-monitor-disconnect-secs",
    1_800,
    "Default peer_disconnected limit: alert when a peer has been gone this many seconds",
);

pub(crate) const MONITOR_BALANCE_CHANGE: DefaultStringConfigOption = ConfigOption::new_str_with_default(
    "ballast-monitor-balance-change",
    "0.2",
    "Default balance_change limit: a ratio of capacity (0.2) or an amount (msat suffix) moved between snapshots",
);

pub(crate) const ALERT_WEBHOOK: StringConfigOption = ConfigOption::new_str_no_default(
    "ballast-alert-webhook",
    "http:// URL that receives each raised or cleared alert as a JSON POST (retried with backoff; https not supported)",
);

pub(crate) const METRICS_BIND: StringConfigOption = ConfigOption::new_str_no_default(
    "ballast-metrics-bind",
    "ip:port to serve Prometheus metrics on at /metrics (e.g. 127.0.0.1:9750); off when unset",
);

/// Reads an integer option into a range, naming the option when it is out of it.
pub fn bounded(name: &str, v: i64, min: i64, max: i64) -> Result<i64, String> {
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(format!("{name} must be between {min} and {max}, got {v}"))
    }
}

/// Resolves the store path the way an operator reads the option: relative to the
/// network's lightning-dir, which lightningd passes to plugins (and also makes their cwd).
pub(crate) fn resolve_db_path(lightning_dir: &str, option: &str) -> PathBuf {
    let p = Path::new(option);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        Path::new(lightning_dir).join(p)
    }
}

/// Where option values come from: lightningd's `init` for the plugin, the config file and
/// flags for the sidecar. Each getter returns the option's default when it was not set.
pub trait OptionSource {
    fn int(&self, o: &DefaultIntegerConfigOption) -> Result<i64, String>;
    fn text(&self, o: &DefaultStringConfigOption) -> Result<String, String>;
    fn flag(&self, o: &DefaultBooleanConfigOption) -> Result<bool, String>;
    fn maybe_text(&self, o: &StringConfigOption) -> Result<Option<String>, String>;
}

/// Every option ballast declares, as name, default (as text) and description: what the
/// plugin registers with lightningd and what the sidecar accepts in its config file.
pub fn all() -> Vec<(&'static str, Option<String>, &'static str)> {
    let mut v: Vec<(&'static str, Option<String>, &'static str)> = Vec::new();
    for o in [
        &DB_PATH,
        &FILES_DIR,
        &REBALANCE_HIGH,
        &REBALANCE_LOW,
        &REBALANCE_TARGET,
        &REBALANCE_FEE_SHARE,
        &MONITOR_LOW_LOCAL,
        &MONITOR_LOW_REMOTE,
        &MONITOR_BALANCE_CHANGE,
    ] {
        v.push((o.name, Some(o.default.to_string()), o.description));
    }
    for o in [
        &HODL_CANCEL_BLOCKS,
        &HODL_WARN_BLOCKS,
        &HODL_MPP_TIMEOUT,
        &HODL_EXPIRY,
        &HODL_CLTV,
        &FEE_MIN_DELTA,
        &FEE_MIN_DELTA_PERCENT,
        &FEE_MIN_INTERVAL,
        &FEE_COALESCE,
        &FEE_INTERVAL,
        &FEE_FLOW_WINDOW,
        &GRAPH_REFRESH,
        &LIQUIDITY_HALFLIFE,
        &REBALANCE_MAX_AMOUNT,
        &REBALANCE_MAX_PPM,
        &REBALANCE_DAILY_BUDGET,
        &REBALANCE_MAX_HTLCS,
        &REBALANCE_INTERVAL,
        &MONITOR_INTERVAL,
        &MONITOR_MAX_PENDING_HTLCS,
        &MONITOR_HTLC_EXPIRY_BLOCKS,
        &MONITOR_PENDING_OPEN_BLOCKS,
        &MONITOR_DISCONNECT_SECS,
    ] {
        v.push((o.name, Some(o.default.to_string()), o.description));
    }
    for o in [&FEE_DRY_RUN, &REBALANCE_AUTO] {
        v.push((o.name, Some(o.default.to_string()), o.description));
    }
    for o in [&FEE_POLICY_FILE, &ALERT_WEBHOOK, &METRICS_BIND] {
        v.push((o.name, None, o.description));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_live_under_the_lightning_dir() {
        assert_eq!(
            resolve_db_path("/ln/regtest", "ballast"),
            PathBuf::from("/ln/regtest/ballast")
        );
        assert_eq!(
            resolve_db_path("/ln/regtest", "/var/lib/b"),
            PathBuf::from("/var/lib/b")
        );
    }
}
