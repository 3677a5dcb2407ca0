//! The monitor's options: snapshot interval, the threshold options that make the default
//! rules, the alert webhook and the metrics listener, read and checked at init.

use super::webhook::check_webhook_url;
use crate::api::metrics::parse_bind;
use crate::api::options::{self, OptionSource};
use crate::engine::monitor::{Rules, Threshold};
use crate::types::Msat;
use std::net::SocketAddr;
use std::time::Duration;

/// The monitor's options, read and checked at init.
#[derive(Clone)]
pub struct MonitorSettings {
    pub interval: Duration,
    /// The base default rules, from the `ballast-monitor-*` threshold options.
    pub rules: Rules,
    pub webhook: Option<String>,
    pub metrics_bind: Option<SocketAddr>,
}

impl MonitorSettings {
    pub fn read(c: &dyn OptionSource) -> Result<MonitorSettings, String> {
        let o = &options::MONITOR_INTERVAL;
        let secs = options::bounded(o.name(), c.int(o)?, 1, 86_400)?;
        let text = |o: &cln_plugin::options::StringConfigOption| -> Result<Option<String>, String> {
            Ok(c.maybe_text(o)?
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty()))
        };
        let webhook = text(&options::ALERT_WEBHOOK)?;
        if let Some(url) = &webhook {
            check_webhook_url(url)?;
        }
        let metrics_bind = text(&options::METRICS_BIND)?
            .map(|v| parse_bind(&v))
            .transpose()?;
        Ok(MonitorSettings {
            interval: Duration::from_secs(secs as u64),
            rules: default_rules(c)?,
            webhook,
            metrics_bind,
        })
    }
}

/// The default rules with the `ballast-monitor-*` threshold options applied.
fn default_rules(c: &dyn OptionSource) -> Result<Rules, String> {
    use options as o;
    let int = |opt: &cln_plugin::options::DefaultIntegerConfigOption, min: i64, max: i64| {
        o::bounded(opt.name(), c.int(opt)?, min, max)
    };
    let thr =
        |opt: &cln_plugin::options::DefaultStringConfigOption| parse_threshold(opt.name(), &c.text(opt)?);
    let mut r = Rules::default();
    r.low_local.limit = thr(&o::MONITOR_LOW_LOCAL)?;
    r.low_remote.limit = thr(&o::MONITOR_LOW_REMOTE)?;
    r.balance_change.limit = thr(&o::MONITOR_BALANCE_CHANGE)?;
    // Both directions together: at most 2 x 483.
    r.pending_htlcs.limit = int(&o::MONITOR_MAX_PENDING_HTLCS, 1, 966)? as u32;
    r.htlc_near_expiry.limit = int(&o::MONITOR_HTLC_EXPIRY_BLOCKS, 0, 2_016)? as u32;
    r.pending_open.limit = int(&o::MONITOR_PENDING_OPEN_BLOCKS, 1, 20_160)? as u32;
    r.peer_disconnected.limit = int(&o::MONITOR_DISCONNECT_SECS, 1, 30 * 86_400)? as u64;
    Ok(r)
}

/// Reads a threshold option: a ratio of capacity from 0 to 1 (`0.05`) or an amount with an
/// `msat` suffix (`100000000msat`).
pub fn parse_threshold(name: &str, text: &str) -> Result<Threshold, String> {
    let t = text.trim();
    if let Some(n) = t.strip_suffix("msat") {
        return n
            .trim()
            .parse::<u64>()
            .map(|m| Threshold::Msat(Msat(m)))
            .map_err(|_| {
                format!("{name} must be a ratio from 0 to 1 or an amount like 100000000msat, got '{text}'")
            });
    }
    match t.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(Threshold::Ratio(v)),
        _ => Err(format!(
            "{name} must be a ratio from 0 to 1 or an amount like 100000000msat, got '{text}'"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_options_take_ratios_or_msat() {
        assert_eq!(parse_threshold("x", "0.05"), Ok(Threshold::Ratio(0.05)));
        assert_eq!(
            parse_threshold("x", " 100000000msat "),
            Ok(Threshold::Msat(Msat(100_000_000)))
        );
        for bad in ["1.5", "-0.1", "abc", "12sat", "msat", "NaN"] {
            assert!(parse_threshold("ballast-monitor-low-local", bad)
                .unwrap_err()
                .contains("ballast-monitor-low-local"));
        }
        // The option defaults are the built-in rules.
        use crate::api::options as o;
        let d = Rules::default();
        assert_eq!(
            parse_threshold("", o::MONITOR_LOW_LOCAL.default),
            Ok(d.low_local.limit)
        );
        assert_eq!(
            parse_threshold("", o::MONITOR_LOW_REMOTE.default),
            Ok(d.low_remote.limit)
        );
        assert_eq!(
            parse_threshold("", o::MONITOR_BALANCE_CHANGE.default),
            Ok(d.balance_change.limit)
        );
        assert_eq!(
            o::MONITOR_MAX_PENDING_HTLCS.default,
            i64::from(d.pending_htlcs.limit)
        );
        assert_eq!(
            o::MONITOR_HTLC_EXPIRY_BLOCKS.default,
            i64::from(d.htlc_near_expiry.limit)
        );
        assert_eq!(
            o::MONITOR_PENDING_OPEN_BLOCKS.default,
            i64::from(d.pending_open.limit)
        );
        assert_eq!(
            o::MONITOR_DISCONNECT_SECS.default,
            d.peer_disconnected.limit as i64
        );
    }
}
