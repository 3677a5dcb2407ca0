//! The plugin's `ballast-*` options, as lightningd shows them in `listconfigs`.

use cln_plugin::options::{
    ConfigOption, DefaultBooleanConfigOption, DefaultIntegerConfigOption, DefaultStringConfigOption,
    StringConfigOption,
};
use std::path::{Path, PathBuf};

pub const DB_PATH: DefaultStringConfigOption = ConfigOption::new_str_with_default(
    "ballast-db-path",
    "ballast",
    "Directory of ballast's store; a relative path is taken from <lightning-dir>/<network>",
);

pub const HODL_CANCEL_BLOCKS: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-hodl-cancel-blocks",
    10,
    "Cancel an accepted hold invoice when its earliest HTLC is this many blocks from expiry",
);

pub const HODL_WARN_BLOCKS: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-hodl-warn-blocks",
    6,
    "Warn (ballast_alert) this many blocks before a hold invoice is auto-canceled",
);

pub const HODL_MPP_TIMEOUT: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-hodl-mpp-timeout",
    60,
    "Seconds an incomplete multi-part payment to a hold invoice is held before failing (mpp_timeout)",
);

pub const HODL_EXPIRY: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-hodl-expiry",
    86_400,
    "Default expiry in seconds of new hold invoices",
);

pub const HODL_CLTV: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-hodl-cltv",
    80,
    "Default min_final_cltv_expiry of new hold invoices: the blocks an app has to decide",
);

pub const FEE_POLICY_FILE: StringConfigOption = ConfigOption::new_str_no_default(
    "ballast-fee-policy-file",
    "TOML fee policy (see contrib/fee-policy.sample.toml); a bad file is refused and the previous policy kept",
);

pub const FEE_DRY_RUN: DefaultBooleanConfigOption = ConfigOption::new_bool_with_default(
    "ballast-fee-dry-run",
    false,
    "Decide and log fee changes, but never call setchannel (start here)",
);

pub const FEE_MIN_DELTA: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-fee-min-delta",
    10,
    "A fee change must move the ppm by at least this much (and by ballast-fee-min-delta-percent)",
);

pub const FEE_MIN_DELTA_PERCENT: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-fee-min-delta-percent",
    5,
    "A fee change must move the ppm by at least this percentage of the current ppm",
);

pub const FEE_MIN_INTERVAL: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-fee-min-interval",
    3_600,
    "Seconds between fee updates of one channel (also the hold after start-up)",
);

pub const FEE_COALESCE: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-fee-coalesce",
    30,
    "Forward events on a channel within this many seconds make one fee decision",
);

pub const FEE_INTERVAL: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-fee-interval",
    3_600,
    "Seconds between passes over all channels (for channels without forwards)",
);

pub const FEE_FLOW_WINDOW: DefaultIntegerConfigOption = ConfigOption::new_i64_with_default(
    "ballast-fee-flow-window",
    86_400,
    "Seconds of forward history the flow conditions and strategy look at",
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
pub fn resolve_db_path(lightning_dir: &str, option: &str) -> PathBuf {
    let p = Path::new(option);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        Path::new(lightning_dir).join(p)
    }
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
