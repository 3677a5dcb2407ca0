//! The policy: an ordered list of rules, the first whose `match` holds decides the fee.
//!
//! A [`Policy`] can only be obtained through validation ([`Policy::new`], the TOML and JSON
//! readers, or serde), so the decision path may rely on `min_ppm <= max_ppm` and on every
//! float parameter being finite.

use super::decide::ChannelInputs;
use super::strategy::Strategy;
use crate::types::{Msat, NodeId, Scid};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt::{self, Write as _};

/// Inclusive bounds, either end open. Inclusive on both ends so that `max = 0.2` followed by
/// `min = 0.2` leaves no gap; first-match-wins settles the shared point.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Between<T> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<T>,
}

impl<T: PartialOrd + Copy> Between<T> {
    pub fn new(min: Option<T>, max: Option<T>) -> Self {
        Between { min, max }
    }

    pub fn contains(&self, v: T) -> bool {
        self.min.is_none_or(|m| v >= m) && self.max.is_none_or(|m| v <= m)
    }

    fn inverted(&self) -> bool {
        matches!((self.min, self.max), (Some(a), Some(b)) if a > b)
    }
}

/// Writes "0.12 in [-, 0.20]"-style text; `show` formats one value.
fn describe_between<T: Copy>(
    out: &mut String,
    what: &str,
    v: &str,
    b: &Between<T>,
    show: impl Fn(T) -> String,
) {
    let _ = match (b.min, b.max) {
        (Some(lo), Some(hi)) => write!(out, "{what} {v} in [{}, {}]", show(lo), show(hi)),
        (Some(lo), None) => write!(out, "{what} {v} >= {}", show(lo)),
        (None, Some(hi)) => write!(out, "{what} {v} <= {}", show(hi)),
        (None, None) => write!(out, "{what} {v} (any)"),
    };
}

/// The conditions a channel must meet for a rule to apply. Every condition given must hold;
/// a list (`scid`, `peer`) holds when any of its entries is the channel's. An empty match
/// holds for every channel, which is how a catch-all last rule is written.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scid: Vec<Scid>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer: Vec<NodeId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capacity_msat: Option<Between<Msat>>,
    /// Local balance / capacity. A channel of capacity 0 has no ratio and never matches a
    /// rule that asks for one: guessing a ratio would pick a fee on made-up data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_ratio: Option<Between<f64>>,
    /// Forwards that arrived over this channel during the flow window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_in_msat: Option<Between<Msat>>,
    /// Forwards that left over this channel during the flow window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_out_msat: Option<Between<Msat>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_htlcs: Option<Between<u32>>,
}

impl Match {
    pub fn is_empty(&self) -> bool {
        *self == Match::default()
    }

    pub fn matches(&self, ch: &ChannelInputs, ratio: Option<f64>) -> bool {
        (self.scid.is_empty() || self.scid.contains(&ch.scid))
            && (self.peer.is_empty() || self.peer.contains(&ch.peer))
            && self.capacity_msat.is_none_or(|b| b.contains(ch.capacity))
            && self
                .local_ratio
                .is_none_or(|b| ratio.is_some_and(|r| b.contains(r)))
            && self.flow_in_msat.is_none_or(|b| b.contains(ch.flow.in_msat))
            && self.flow_out_msat.is_none_or(|b| b.contains(ch.flow.out_msat))
            && self.pending_htlcs.is_none_or(|b| b.contains(ch.pending_htlcs))
    }

    /// Why a matching channel matched, for the explanation. Only called for the winning rule.
    pub(crate) fn describe(&self, ch: &ChannelInputs, ratio: Option<f64>, out: &mut String) {
        let start = out.len();
        let sep = |out: &mut String| {
            if out.len() > start {
                out.push_str(", ");
            }
        };
        if !self.scid.is_empty() {
            sep(out);
            let _ = write!(out, "channel {} listed", ch.scid);
        }
        if !self.peer.is_empty() {
            sep(out);
            let _ = write!(out, "peer {} listed", short_node(&ch.peer));
        }
        if let Some(b) = &self.capacity_msat {
            sep(out);
            describe_between(out, "capacity", &ch.capacity.0.to_string(), b, |m| {
                m.0.to_string()
            });
        }
        if let (Some(b), Some(r)) = (&self.local_ratio, ratio) {
            sep(out);
            describe_between(out, "local ratio", &format!("{r:.2}"), b, |x| format!("{x:.2}"));
        }
        if let Some(b) = &self.flow_in_msat {
            sep(out);
            describe_between(out, "flow in", &ch.flow.in_msat.0.to_string(), b, |m| {
                m.0.to_string()
            });
        }
        if let Some(b) = &self.flow_out_msat {
            sep(out);
            describe_between(out, "flow out", &ch.flow.out_msat.0.to_string(), b, |m| {
                m.0.to_string()
            });
        }
        if let Some(b) = &self.pending_htlcs {
            sep(out);
            describe_between(out, "pending htlcs", &ch.pending_htlcs.to_string(), b, |n| {
                n.to_string()
            });
        }
        if out.len() == start {
            out.push_str("matches every channel");
        }
    }

    fn validate(&self) -> Result<(), String> {
        if let Some(b) = &self.local_ratio {
            for v in [b.min, b.max].into_iter().flatten() {
                if !(0.0..=1.0).contains(&v) {
                    return Err(format!("match.local_ratio bound {v} is outside 0..1"));
                }
            }
        }
        let inverted = [
            ("capacity_msat", self.capacity_msat.is_some_and(|b| b.inverted())),
            ("local_ratio", self.local_ratio.is_some_and(|b| b.inverted())),
            ("flow_in_msat", self.flow_in_msat.is_some_and(|b| b.inverted())),
            ("flow_out_msat", self.flow_out_msat.is_some_and(|b| b.inverted())),
            ("pending_htlcs", self.pending_htlcs.is_some_and(|b| b.inverted())),
        ];
        match inverted.iter().find(|(_, bad)| *bad) {
            Some((field, _)) => Err(format!(
                "match.{field}: min is greater than max, nothing can match"
            )),
            None => Ok(()),
        }
    }
}

fn short_node(n: &NodeId) -> String {
    let mut s = n.to_hex();
    s.truncate(16);
    s.push('…');
    s
}

/// One rule of a validated policy, with every bound resolved (defaults already applied).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    pub name: String,
    #[serde(rename = "match", skip_serializing_if = "Match::is_empty")]
    pub when: Match,
    pub strategy: Strategy,
    pub min_ppm: u32,
    pub max_ppm: u32,
    /// `None` leaves the channel's base fee as it is: the policy then only steers the ppm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base_msat: Option<Msat>,
    /// `None` leaves the CLTV delta as it is. Core Lightning sets the delta node-wide, so
    /// its adapter may not be able to honour a per-channel value; LND can.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cltv_delta: Option<u16>,
}

impl Rule {
    /// A rule with the given bounds and strategy that matches every channel.
    pub fn new(name: impl Into<String>, strategy: Strategy, min_ppm: u32, max_ppm: u32) -> Rule {
        Rule {
            name: name.into(),
            when: Match::default(),
            strategy,
            min_ppm,
            max_ppm,
            base_msat: None,
            cltv_delta: None,
        }
    }

    fn validate(&self) -> Result<(), String> {
        if self.name.trim().is_empty() {
            return Err("name is empty".into());
        }
        if self.min_ppm > self.max_ppm {
            return Err(format!(
                "min_ppm {} is greater than max_ppm {}",
                self.min_ppm, self.max_ppm
            ));
        }
        self.when.validate()?;
        self.strategy.validate()
    }
}

/// Values a rule inherits when it does not set them itself (`[defaults]` in the file).
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ppm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ppm: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_msat: Option<Msat>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cltv_delta: Option<u16>,
}

/// A rule as written: bounds may come from `[defaults]` instead.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRule {
    #[serde(default)]
    name: Option<String>,
    #[serde(default, rename = "match")]
    when: Match,
    strategy: Strategy,
    #[serde(default)]
    min_ppm: Option<u32>,
    #[serde(default)]
    max_ppm: Option<u32>,
    #[serde(default)]
    base_msat: Option<Msat>,
    #[serde(default)]
    cltv_delta: Option<u16>,
}

/// The document shape shared by the TOML file, the `fee-policy` RPC and the store. A
/// serialized [`Policy`] reads back as one of these with every rule fully spelled out.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    #[serde(default)]
    defaults: Defaults,
    // `[[rule]]` reads naturally in TOML, `"rules": [...]` in JSON; accept both.
    #[serde(default, alias = "rule")]
    rules: Vec<RawRule>,
}

/// A validation failure before it is given a line number.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Invalid {
    pub rule: Option<RuleRef>,
    pub reason: String,
}

impl RawPolicy {
    pub(crate) fn resolve(self) -> Result<Policy, Invalid> {
        let d = self.defaults;
        let mut rules = Vec::with_capacity(self.rules.len());
        for (index, raw) in self.rules.into_iter().enumerate() {
            let name = raw.name.unwrap_or_else(|| format!("rule{index}"));
            let at = RuleRef {
                index,
                name: name.clone(),
            };
            let missing = |field: &str| Invalid {
                rule: Some(at.clone()),
                reason: format!("{field} is not set (set it in the rule or in [defaults])"),
            };
            // No built-in bounds: a fee ceiling nobody chose is a fee ceiling nobody meant.
            let min_ppm = raw.min_ppm.or(d.min_ppm).ok_or_else(|| missing("min_ppm"))?;
            let max_ppm = raw.max_ppm.or(d.max_ppm).ok_or_else(|| missing("max_ppm"))?;
            rules.push(Rule {
                name,
                when: raw.when,
                strategy: raw.strategy,
                min_ppm,
                max_ppm,
                base_msat: raw.base_msat.or(d.base_msat),
                cltv_delta: raw.cltv_delta.or(d.cltv_delta),
            });
        }
        Policy::validated(rules)
    }
}

/// Which rule of the policy decided: its position (0-based) and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RuleRef {
    pub index: usize,
    pub name: String,
}

impl fmt::Display for RuleRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rule[{}] '{}'", self.index, self.name)
    }
}

/// Where in a policy document a problem is; every part is optional because JSON errors
/// have no rule and validation of a policy built in code has no line.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Location {
    pub line: Option<usize>,
    pub column: Option<usize>,
    pub rule: Option<RuleRef>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::with_capacity(2);
        match (self.line, self.column) {
            (Some(l), Some(c)) => parts.push(format!("line {l}, column {c}")),
            (Some(l), None) => parts.push(format!("line {l}")),
            _ => {}
        }
        if let Some(r) = &self.rule {
            parts.push(r.to_string());
        }
        if parts.is_empty() {
            f.write_str("policy")
        } else {
            f.write_str(&parts.join(", "))
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The document could not be read: bad TOML/JSON, a wrong type, an unknown key or
    /// strategy.
    #[error("{at}: {message}")]
    Syntax { at: Location, message: String },
    /// The document was read but a rule makes no sense (min > max, ratio outside 0..1, ...).
    #[error("{at}: {reason}")]
    Invalid { at: Location, reason: String },
}

impl PolicyError {
    #[cfg(test)]
    pub(crate) fn location(&self) -> &Location {
        match self {
            PolicyError::Syntax { at, .. } | PolicyError::Invalid { at, .. } => at,
        }
    }
}

impl From<Invalid> for PolicyError {
    fn from(e: Invalid) -> Self {
        PolicyError::Invalid {
            at: Location {
                rule: e.rule,
                ..Location::default()
            },
            reason: e.reason,
        }
    }
}

/// A validated, ordered list of rules. An empty policy is valid and decides nothing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "RawPolicy")]
pub struct Policy {
    rules: Vec<Rule>,
}

impl TryFrom<RawPolicy> for Policy {
    type Error = PolicyError;
    fn try_from(raw: RawPolicy) -> Result<Self, Self::Error> {
        raw.resolve().map_err(PolicyError::from)
    }
}

impl Policy {
    pub fn new(rules: Vec<Rule>) -> Result<Policy, PolicyError> {
        Policy::validated(rules).map_err(PolicyError::from)
    }

    fn validated(rules: Vec<Rule>) -> Result<Policy, Invalid> {
        let mut names = HashSet::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            let at = || RuleRef {
                index,
                name: rule.name.clone(),
            };
            rule.validate().map_err(|reason| Invalid {
                rule: Some(at()),
                reason,
            })?;
            // History records name the rule; two rules with one name would make them ambiguous.
            if !names.insert(rule.name.as_str()) {
                return Err(Invalid {
                    rule: Some(at()),
                    reason: "another rule already has this name".into(),
                });
            }
        }
        Ok(Policy { rules })
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule whose match holds, with its index.
    pub(crate) fn first_match(&self, ch: &ChannelInputs, ratio: Option<f64>) -> Option<(usize, &Rule)> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.when.matches(ch, ratio))
    }

    /// Reads a policy file. Errors carry the line (and the rule, when the problem is inside
    /// one), so the caller can keep the previous policy and say exactly what to fix.
    pub fn from_toml(src: &str) -> Result<Policy, PolicyError> {
        super::parse::from_toml(src)
    }

    /// Reads the JSON form used by the `fee-policy` RPC and the store.
    pub fn from_json(src: &str) -> Result<Policy, PolicyError> {
        super::parse::from_json(src)
    }

    pub(crate) fn from_json_value(v: serde_json::Value) -> Result<Policy, PolicyError> {
        super::parse::from_json_value(v)
    }

    pub fn to_json(&self) -> serde_json::Value {
        // Serializing plain data with string keys and finite floats cannot fail.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}
