//! Rule settings: global defaults plus per-peer and per-channel overrides.
//!
//! Overrides are patches, not whole rule sets, so an operator can change one threshold on one
//! channel and still follow later changes to every other default. Resolution is field by
//! field: channel patch over peer patch over defaults.

use crate::types::{Msat, NodeId, Scid};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("rule {rule}: ratio {value} must be a number from 0 to 1")]
    BadRatio { rule: &'static str, value: f64 },
    #[error("invalid scope '{0}': expected 'default', a node id or a short_channel_id")]
    BadScope(String),
    #[error("invalid monitor rules: {0}")]
    Json(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount either absolute or relative to the channel's capacity. JSON: `{"msat": 100000}`
/// or `{"ratio": 0.05}`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Threshold {
    Msat(Msat),
    Ratio(f64),
}

impl Threshold {
    /// The amount this threshold means on a channel of `capacity`. `None` for a ratio on a
    /// zero-capacity channel: any amount would be arbitrary, and a rule with no meaningful
    /// threshold must not fire.
    pub fn resolve(self, capacity: Msat) -> Option<Msat> {
        match self {
            Threshold::Msat(m) => Some(m),
            Threshold::Ratio(_) if capacity.0 == 0 => None,
            // `as` saturates (and maps NaN to 0), so even an unvalidated ratio cannot panic.
            Threshold::Ratio(r) => Some(Msat((capacity.0 as f64 * r).round() as u64)),
        }
    }

    fn validate(self, rule: &'static str) -> Result<(), ConfigError> {
        match self {
            Threshold::Ratio(r) if !(0.0..=1.0).contains(&r) => Err(ConfigError::BadRatio { rule, value: r }),
            _ => Ok(()),
        }
    }
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Threshold::Msat(m) => f.write_str(&super::snapshot::sat(*m)),
            Threshold::Ratio(r) => write!(f, "{:.1}% of capacity", r * 100.0),
        }
    }
}

/// A rule with a limit; what the limit means (msat, count, blocks, seconds) is per rule.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule<P> {
    pub enabled: bool,
    pub severity: Severity,
    pub limit: P,
}

/// A rule without a limit: it fires on a state, not a quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toggle {
    pub enabled: bool,
    pub severity: Severity,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
// No `#[serde(default)]` here: serde would then demand `P: Default`, and a missing `Option`
// field already reads as `None`.
pub struct RulePatch<P> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<P>,
}

// Written by hand because the derive would demand `P: Default`, which thresholds lack.
impl<P> Default for RulePatch<P> {
    fn default() -> Self {
        RulePatch {
            enabled: None,
            severity: None,
            limit: None,
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TogglePatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
}

/// Something a patch can be laid over, and patches can be merged (newer fields win).
trait Patchable {
    type Patch;
    fn apply(&mut self, p: &Self::Patch);
    fn merge(into: &mut Self::Patch, newer: &Self::Patch);
    /// The patch that turns `base` into `self` (only the fields that differ).
    fn diff(&self, base: &Self) -> Self::Patch;
}

/// `Some(new)` where it differs from `old`.
fn changed<T: PartialEq + Copy>(old: T, new: T) -> Option<T> {
    (old != new).then_some(new)
}

impl<P: Copy + PartialEq> Patchable for Rule<P> {
    type Patch = RulePatch<P>;
    fn apply(&mut self, p: &RulePatch<P>) {
        if let Some(e) = p.enabled {
            self.enabled = e;
        }
        if let Some(s) = p.severity {
            self.severity = s;
        }
        if let Some(l) = p.limit {
            self.limit = l;
        }
    }
    fn merge(into: &mut RulePatch<P>, newer: &RulePatch<P>) {
        into.enabled = newer.enabled.or(into.enabled);
        into.severity = newer.severity.or(into.severity);
        into.limit = newer.limit.or(into.limit);
    }
    fn diff(&self, base: &Self) -> RulePatch<P> {
        RulePatch {
            enabled: changed(base.enabled, self.enabled),
            severity: changed(base.severity, self.severity),
            limit: changed(base.limit, self.limit),
        }
    }
}

impl Patchable for Toggle {
    type Patch = TogglePatch;
    fn apply(&mut self, p: &TogglePatch) {
        if let Some(e) = p.enabled {
            self.enabled = e;
        }
        if let Some(s) = p.severity {
            self.severity = s;
        }
    }
    fn merge(into: &mut TogglePatch, newer: &TogglePatch) {
        into.enabled = newer.enabled.or(into.enabled);
        into.severity = newer.severity.or(into.severity);
    }
    fn diff(&self, base: &Self) -> TogglePatch {
        TogglePatch {
            enabled: changed(base.enabled, self.enabled),
            severity: changed(base.severity, self.severity),
        }
    }
}

/// Declares `Rules` and `RulesPatch` from one field list so the two can never drift apart.
macro_rules! rule_set {
    ($( $(#[$doc:meta])* $field:ident : $ty:ty => $pty:ty ),* $(,)?) => {
        /// A complete set of rule settings, as applied to one channel.
        #[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct Rules {
            $( $(#[$doc])* pub $field: $ty, )*
        }

        /// Changes to some rules; absent rules and fields are left as they are.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct RulesPatch {
            $(
                #[serde(skip_serializing_if = "Option::is_none")]
                pub $field: Option<$pty>,
            )*
        }

        impl Rules {
            pub fn apply(&mut self, patch: &RulesPatch) {
                $( if let Some(p) = &patch.$field { self.$field.apply(p); } )*
            }

            /// The patch that turns `base` into these rules: only what differs.
            pub(crate) fn diff(&self, base: &Rules) -> RulesPatch {
                let mut out = RulesPatch::default();
                $(
                    let d = self.$field.diff(&base.$field);
                    if d != Default::default() {
                        out.$field = Some(d);
                    }
                )*
                out
            }
        }

        impl RulesPatch {
            /// Lays `newer` over this patch, field by field.
            pub(crate) fn merge(&mut self, newer: &RulesPatch) {
                $(
                    if let Some(n) = &newer.$field {
                        let slot = self.$field.get_or_insert_with(Default::default);
                        <$ty as Patchable>::merge(slot, n);
                    }
                )*
            }

            pub fn is_empty(&self) -> bool {
                true $( && self.$field.is_none() )*
            }
        }
    };
}

rule_set! {
    /// Local balance below the limit: the channel can barely send.
    low_local: Rule<Threshold> => RulePatch<Threshold>,
    /// Remote balance below the limit: the channel can barely receive.
    low_remote: Rule<Threshold> => RulePatch<Threshold>,
    /// More than `limit` HTLCs pending in both directions together.
    pending_htlcs: Rule<u32> => RulePatch<u32>,
    /// A pending HTLC expires within `limit` blocks.
    htlc_near_expiry: Rule<u32> => RulePatch<u32>,
    /// Opening for more than `limit` blocks since ballast first saw it opening.
    pending_open: Rule<u32> => RulePatch<u32>,
    /// A mutual close is under way.
    closing: Toggle => TogglePatch,
    /// A unilateral close is under way.
    force_closed: Toggle => TogglePatch,
    /// The peer has been disconnected for more than `limit` seconds.
    peer_disconnected: Rule<u64> => RulePatch<u64>,
    /// Local balance moved by more than the limit between consecutive snapshots.
    balance_change: Rule<Threshold> => RulePatch<Threshold>,
}

impl Default for Rules {
    fn default() -> Self {
        fn rule<P>(severity: Severity, limit: P) -> Rule<P> {
            Rule {
                enabled: true,
                severity,
                limit,
            }
        }
        Rules {
            low_local: rule(Severity::Warning, Threshold::Ratio(0.05)),
            low_remote: rule(Severity::Warning, Threshold::Ratio(0.05)),
            // Well under the 483-per-direction protocol cap, high enough that a busy routing
            // node does not trip it in normal bursts.
            pending_htlcs: rule(Severity::Warning, 30),
            // 18 blocks is about three hours: enough time to get a peer back online before a
            // force close becomes unavoidable.
            htlc_near_expiry: rule(Severity::Critical, 18),
            // A day of blocks: a funding transaction still unconfirmed by then needs a fee bump.
            pending_open: rule(Severity::Warning, 144),
            closing: Toggle {
                enabled: true,
                severity: Severity::Info,
            },
            force_closed: Toggle {
                enabled: true,
                severity: Severity::Critical,
            },
            // Peers restart and reconnect all the time; half an hour gone is worth a look.
            peer_disconnected: rule(Severity::Warning, 30 * 60),
            balance_change: rule(Severity::Info, Threshold::Ratio(0.2)),
        }
    }
}

impl Rules {
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.low_local.limit.validate("low_local")?;
        self.low_remote.limit.validate("low_remote")?;
        self.balance_change.limit.validate("balance_change")
    }
}

impl RulesPatch {
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |p: &Option<RulePatch<Threshold>>, rule| match p.and_then(|p| p.limit) {
            Some(t) => t.validate(rule),
            None => Ok(()),
        };
        check(&self.low_local, "low_local")?;
        check(&self.low_remote, "low_remote")?;
        check(&self.balance_change, "balance_change")
    }
}

/// Where a change made with `monitor-set` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Default,
    Peer(NodeId),
    Channel(Scid),
}

impl FromStr for Scope {
    type Err = ConfigError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "default" {
            return Ok(Scope::Default);
        }
        if let Ok(scid) = s.parse() {
            return Ok(Scope::Channel(scid));
        }
        s.parse()
            .map(Scope::Peer)
            .map_err(|_| ConfigError::BadScope(s.chars().take(80).collect()))
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Default => f.write_str("default"),
            Scope::Peer(p) => write!(f, "{p}"),
            Scope::Channel(c) => write!(f, "{c}"),
        }
    }
}

/// Every rule setting ballast monitors with; what `monitor-set` shows and changes.
///
/// The defaults are layered: `base` (the `ballast-monitor-*` options, never stored), then
/// `default_overrides` (what `monitor-set default` changed, stored), giving `defaults`; then
/// a peer's patch, then a channel's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MonitorConfig {
    /// The defaults in force: `base` with `default_overrides` laid over. Derived; rebuilt
    /// from those two by [`MonitorConfig::with_base`] at load.
    pub defaults: Rules,
    /// What `monitor-set default` changed, laid over the option defaults.
    pub default_overrides: RulesPatch,
    pub peers: BTreeMap<NodeId, RulesPatch>,
    /// Keyed by scid only: a channel must have confirmed before it can be singled out, and
    /// until then the peer override covers it.
    pub channels: BTreeMap<Scid, RulesPatch>,
    /// The base defaults, from the options (built-in values when unset). Not stored.
    #[serde(skip)]
    pub base: Rules,
}

impl MonitorConfig {
    /// Parses and validates a configuration, so a bad one is refused at the door rather than
    /// silently misjudging channels later.
    pub fn from_json(text: &str) -> Result<MonitorConfig, ConfigError> {
        let cfg: MonitorConfig = serde_json::from_str(text).map_err(|e| ConfigError::Json(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn to_json(&self) -> String {
        // Plain structs with string map keys: serializing cannot fail; fall back to an empty
        // object rather than panic if that ever changes.
        serde_json::to_string_pretty(self).unwrap_or_else(|_| "{}".into())
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        self.defaults.validate()?;
        self.default_overrides.validate()?;
        self.peers
            .values()
            .chain(self.channels.values())
            .try_for_each(RulesPatch::validate)
    }

    /// Puts `base` (the option defaults) under the stored default overrides.
    pub(crate) fn with_base(mut self, base: Rules) -> MonitorConfig {
        self.base = base;
        self.defaults = base;
        self.defaults.apply(&self.default_overrides);
        self
    }

    /// The rules in force for a channel: defaults, then its peer's patch, then its own.
    pub(crate) fn rules_for(&self, scid: Option<Scid>, peer: &NodeId) -> Rules {
        let mut r = self.defaults;
        if let Some(p) = self.peers.get(peer) {
            r.apply(p);
        }
        if let Some(c) = scid.and_then(|s| self.channels.get(&s)) {
            r.apply(c);
        }
        r
    }

    /// Lays `patch` over the settings at `scope`. Validated first, so a refused change leaves
    /// the configuration untouched.
    pub fn apply(&mut self, scope: Scope, patch: &RulesPatch) -> Result<(), ConfigError> {
        patch.validate()?;
        match scope {
            Scope::Default => {
                self.default_overrides.merge(patch);
                self.defaults.apply(patch);
            }
            Scope::Peer(p) => self.peers.entry(p).or_default().merge(patch),
            Scope::Channel(c) => self.channels.entry(c).or_default().merge(patch),
        }
        Ok(())
    }

    /// Drops the overrides at `scope` (for the defaults: back to the option values).
    /// Returns whether anything changed.
    pub fn reset(&mut self, scope: Scope) -> bool {
        match scope {
            Scope::Default => {
                let changed = self.defaults != self.base || !self.default_overrides.is_empty();
                self.defaults = self.base;
                self.default_overrides = RulesPatch::default();
                changed
            }
            Scope::Peer(p) => self.peers.remove(&p).is_some(),
            Scope::Channel(c) => self.channels.remove(&c).is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::test_support::{node, scid};
    use super::*;

    #[test]
    fn thresholds_resolve_without_dividing_by_zero() {
        assert_eq!(Threshold::Ratio(0.25).resolve(Msat(1_000)), Some(Msat(250)));
        assert_eq!(Threshold::Ratio(0.25).resolve(Msat(0)), None);
        assert_eq!(Threshold::Msat(Msat(7)).resolve(Msat(0)), Some(Msat(7)));
        assert_eq!(
            Threshold::Ratio(1.0).resolve(Msat(u64::MAX)),
            Some(Msat(u64::MAX))
        );
        assert_eq!(Threshold::Ratio(f64::NAN).resolve(Msat(10)), Some(Msat(0)));
    }

    #[test]
    fn config_round_trips_and_refuses_typos_and_bad_ratios() {
        let mut cfg = MonitorConfig::default();
        let patch: RulesPatch = serde_json::from_str(r#"{"low_local":{"limit":{"msat":5000}}}"#).unwrap();
        cfg.apply(Scope::Peer(node(1)), &patch).unwrap();
        cfg.apply(Scope::Channel(scid(1)), &patch).unwrap();
        let back = MonitorConfig::from_json(&cfg.to_json()).unwrap();
        assert_eq!(back, cfg);
        assert!(cfg.to_json().contains("\"700001x1x0\""));

        assert!(serde_json::from_str::<RulesPatch>(r#"{"low_locl":{}}"#).is_err());
        assert!(matches!(
            MonitorConfig::from_json(r#"{"defaults":{"low_local":{"enabled":true}}}"#),
            Err(ConfigError::Json(_))
        ));
        let bad: RulesPatch = serde_json::from_str(r#"{"balance_change":{"limit":{"ratio":1.5}}}"#).unwrap();
        let before = cfg.clone();
        assert_eq!(
            cfg.apply(Scope::Default, &bad),
            Err(ConfigError::BadRatio {
                rule: "balance_change",
                value: 1.5
            })
        );
        assert_eq!(cfg, before);
        // A missing section falls back to defaults, so an old saved config keeps loading.
        assert_eq!(MonitorConfig::from_json("{}").unwrap(), MonitorConfig::default());
    }

    #[test]
    fn patches_merge_field_by_field() {
        let mut cfg = MonitorConfig::default();
        let a: RulesPatch = serde_json::from_str(r#"{"low_local":{"limit":{"msat":1}}}"#).unwrap();
        let b: RulesPatch = serde_json::from_str(r#"{"low_local":{"severity":"critical"}}"#).unwrap();
        cfg.apply(Scope::Channel(scid(2)), &a).unwrap();
        cfg.apply(Scope::Channel(scid(2)), &b).unwrap();
        let r = cfg.rules_for(Some(scid(2)), &node(1));
        assert_eq!(r.low_local.limit, Threshold::Msat(Msat(1)));
        assert_eq!(r.low_local.severity, Severity::Critical);
        assert!(r.low_local.enabled);
        assert!(cfg.reset(Scope::Channel(scid(2))));
        assert!(!cfg.reset(Scope::Channel(scid(2))));
        assert_eq!(cfg.rules_for(Some(scid(2)), &node(1)), Rules::default());
        assert!(RulesPatch::default().is_empty() && !a.is_empty());
    }

    #[test]
    fn default_overrides_layer_over_the_base_and_reset_to_it() {
        let mut base = Rules::default();
        base.low_local.limit = Threshold::Msat(Msat(9));
        base.pending_htlcs.limit = 5;
        let mut cfg = MonitorConfig::default().with_base(base);
        assert_eq!(cfg.defaults, base);
        let p: RulesPatch = serde_json::from_str(r#"{"low_local":{"severity":"critical"}}"#).unwrap();
        cfg.apply(Scope::Default, &p).unwrap();
        assert_eq!(cfg.defaults.low_local.limit, Threshold::Msat(Msat(9)));
        assert_eq!(cfg.defaults.low_local.severity, Severity::Critical);
        // Stored and reloaded under other option values: the override follows, the base changes.
        let back = MonitorConfig::from_json(&cfg.to_json())
            .unwrap()
            .with_base(Rules::default());
        assert_eq!(back.defaults.low_local.limit, Rules::default().low_local.limit);
        assert_eq!(back.defaults.low_local.severity, Severity::Critical);
        assert_eq!(back.defaults.pending_htlcs.limit, 30);
        assert!(cfg.reset(Scope::Default));
        assert_eq!(cfg.defaults, base);
        assert!(!cfg.reset(Scope::Default));
        // A diff is exactly the changed fields.
        assert_eq!(
            cfg.defaults.diff(&Rules::default()).low_local.unwrap().limit,
            Some(Threshold::Msat(Msat(9)))
        );
        assert!(Rules::default().diff(&Rules::default()).is_empty());
    }

    #[test]
    fn scopes_parse() {
        assert_eq!("default".parse::<Scope>().unwrap(), Scope::Default);
        assert_eq!("700001x1x0".parse::<Scope>().unwrap(), Scope::Channel(scid(1)));
        let peer = node(3).to_string();
        assert_eq!(peer.parse::<Scope>().unwrap(), Scope::Peer(node(3)));
        assert!(matches!("x".parse::<Scope>(), Err(ConfigError::BadScope(_))));
    }
}
