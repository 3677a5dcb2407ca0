//! Every `ballast-*` option read and checked once at init, so a bad value disables the
//! plugin with a message naming the option instead of surfacing later.

use super::options;
use super::options::OptionSource;
use super::rebalance::RebalanceSettings;
use super::state::HodlDefaults;
use crate::engine::fees::FeeConfig;
use crate::engine::hodl::{effective_cancel_blocks, HodlParams};
use crate::engine::planner::PlannerConfig;
use crate::types::Msat;
use cln_plugin::options::{DefaultIntegerConfigOption, DefaultStringConfigOption};
use std::time::Duration;

/// The fewest blocks a hold invoice's CLTV must leave between an HTLC's arrival and the
/// cancel window, so that the app has time to settle.
pub(crate) const MIN_SETTLE_WINDOW: u32 = 6;

pub struct Settings {
    pub hodl: HodlParams,
    pub hodl_defaults: HodlDefaults,
    pub fees: FeeConfig,
    pub fee_interval: u64,
    pub flow_window: u64,
    pub policy_file: Option<String>,
    /// `ballast-files-dir` as given (relative to the base directory unless absolute).
    pub files_dir: String,
    pub rebalance: RebalanceSettings,
    pub halflife: u64,
}

impl Settings {
    /// Raises the hold-invoice cancel window to the node's fulfilment deadline (see
    /// [`effective_cancel_blocks`]) and the default invoice CLTV with it, so that a default
    /// invoice still leaves a settle window. Returns a line to log for each change.
    pub(crate) fn fit_to_node_deadline(&mut self, cltv_delta: u32) -> Vec<String> {
        let mut said = Vec::new();
        let configured = self.hodl.cancel_blocks;
        let (window, raised) = effective_cancel_blocks(configured, cltv_delta);
        if raised {
            said.push(format!(
                "ballast-hodl-cancel-blocks raised from {configured} to {window}: with cltv-delta {} \
                 lightningd force-closes a channel whose fulfilled HTLC is unacknowledged {} blocks \
                 before expiry, so ballast stops settling 2 blocks before that",
                cltv_delta,
                window - 2
            ));
        }
        self.hodl.cancel_blocks = window;
        let min_cltv = window + MIN_SETTLE_WINDOW;
        if self.hodl_defaults.cltv < min_cltv {
            said.push(format!(
                "ballast-hodl-cltv raised from {} to {min_cltv}, to leave {MIN_SETTLE_WINDOW} blocks to settle in",
                self.hodl_defaults.cltv
            ));
            self.hodl_defaults.cltv = min_cltv;
        }
        said
    }

    pub fn read(c: &dyn OptionSource) -> Result<Settings, String> {
        let int = |o: &DefaultIntegerConfigOption, min, max| -> Result<i64, String> {
            let v = c.int(o)?;
            options::bounded(o.name(), v, min, max)
        };
        let ratio = |o: &DefaultStringConfigOption| -> Result<f64, String> {
            let v = c.text(o)?;
            options::ratio(o.name(), &v)
        };
        let hodl = HodlParams {
            cancel_blocks: int(&options::HODL_CANCEL_BLOCKS, 3, 1000)? as u32,
            warn_blocks: int(&options::HODL_WARN_BLOCKS, 0, 1000)? as u32,
            mpp_timeout_secs: int(&options::HODL_MPP_TIMEOUT, 1, 86_400)? as u64,
        };
        let hodl_defaults = HodlDefaults {
            expiry_secs: int(&options::HODL_EXPIRY, 1, 31_536_000)? as u64,
            cltv: int(&options::HODL_CLTV, 9, 2016)? as u32,
        };
        if hodl_defaults.cltv < hodl.cancel_blocks + MIN_SETTLE_WINDOW {
            return Err(format!(
                "ballast-hodl-cltv ({}) must exceed ballast-hodl-cancel-blocks ({}) by at least {MIN_SETTLE_WINDOW}",
                hodl_defaults.cltv, hodl.cancel_blocks
            ));
        }
        // CLN itself never sends channel updates closer than 5 minutes apart. Only tests
        // (BALLAST_DEVELOPER=1 in the environment) may go below that.
        let developer = std::env::var_os("BALLAST_DEVELOPER").is_some_and(|v| v == "1");
        let min_interval_floor = if developer { 1 } else { 300 };
        // Tests of the automatic rebalance round also need rounds, and forgetting, within
        // seconds.
        let minute_floor = if developer { 1 } else { 60 };
        let fees = FeeConfig {
            min_delta_ppm: int(&options::FEE_MIN_DELTA, 0, 1_000_000)? as u32,
            min_delta_ratio: int(&options::FEE_MIN_DELTA_PERCENT, 0, 100)? as f64 / 100.0,
            min_interval_secs: int(&options::FEE_MIN_INTERVAL, min_interval_floor, 30 * 86_400)? as u64,
            coalesce_secs: int(&options::FEE_COALESCE, 0, 86_400)? as u64,
            dry_run: c.flag(&options::FEE_DRY_RUN)?,
        };
        let planner = PlannerConfig {
            high: ratio(&options::REBALANCE_HIGH)?,
            low: ratio(&options::REBALANCE_LOW)?,
            target: ratio(&options::REBALANCE_TARGET)?,
            max_amount: Msat(int(&options::REBALANCE_MAX_AMOUNT, 1_000, i64::MAX)? as u64),
            max_ppm: int(&options::REBALANCE_MAX_PPM, 0, 1_000_000)? as u32,
            fee_share: ratio(&options::REBALANCE_FEE_SHARE)?,
            ..PlannerConfig::default()
        };
        if !(planner.low < planner.target && planner.target < planner.high) {
            return Err(format!(
                "ballast-rebalance-low ({}) < ballast-rebalance-target ({}) < ballast-rebalance-high ({}) must hold",
                planner.low, planner.target, planner.high
            ));
        }
        Ok(Settings {
            hodl,
            hodl_defaults,
            fees,
            fee_interval: int(&options::FEE_INTERVAL, 60, 30 * 86_400)? as u64,
            flow_window: int(&options::FEE_FLOW_WINDOW, 300, 90 * 86_400)? as u64,
            policy_file: c.maybe_text(&options::FEE_POLICY_FILE)?.filter(|p| !p.is_empty()),
            files_dir: match c.text(&options::FILES_DIR)? {
                d if d.trim().is_empty() => return Err("ballast-files-dir must not be empty".into()),
                d => d,
            },
            rebalance: RebalanceSettings {
                planner,
                daily_budget: Msat(int(&options::REBALANCE_DAILY_BUDGET, 0, i64::MAX)? as u64),
                max_htlcs: int(&options::REBALANCE_MAX_HTLCS, 1, 483)? as u32,
                graph_refresh: Duration::from_secs(int(&options::GRAPH_REFRESH, 10, 86_400)? as u64),
                auto: c.flag(&options::REBALANCE_AUTO)?,
                interval: Duration::from_secs(
                    int(&options::REBALANCE_INTERVAL, minute_floor, 30 * 86_400)? as u64
                ),
            },
            halflife: int(&options::LIQUIDITY_HALFLIFE, minute_floor, 365 * 86_400)? as u64,
        })
    }
}
