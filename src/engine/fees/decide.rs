//! One channel, one decision: the target fee, the rule and the reasoning behind it, and
//! whether the plugin should call `setchannel` now.

use super::policy::{Policy, RuleRef};
use super::strategy::EvalCtx;
use crate::types::{Msat, NodeId, Scid};
use serde::{Deserialize, Serialize};
use std::fmt::{self, Write as _};

/// A channel's outgoing fee as set with `setchannel` (or LND's policy update).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChannelFee {
    pub base_msat: Msat,
    pub ppm: u32,
    /// Unknown or not per-channel on this node when `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cltv_delta: Option<u16>,
}

impl ChannelFee {
    pub fn new(base_msat: u64, ppm: u32) -> ChannelFee {
        ChannelFee {
            base_msat: Msat(base_msat),
            ppm,
            cltv_delta: None,
        }
    }
}

impl fmt::Display for ChannelFee {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} msat + {} ppm", self.base_msat.0, self.ppm)?;
        if let Some(d) = self.cltv_delta {
            write!(f, ", cltv delta {d}")?;
        }
        Ok(())
    }
}

/// Forwards through the channel over the caller's window. "In" arrived over this channel
/// (our local balance grew), "out" left over it (our local balance shrank).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Flow {
    pub in_msat: Msat,
    pub out_msat: Msat,
    pub window_secs: u64,
}

/// Everything the engine knows about one channel when it decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelInputs {
    pub scid: Scid,
    pub peer: NodeId,
    pub capacity: Msat,
    /// Our spendable side. May briefly exceed the capacity while a read races a forward;
    /// the ratio is clamped rather than trusted.
    pub local: Msat,
    pub pending_htlcs: u32,
    pub flow: Flow,
    /// What rebalancing into this channel cost recently, in ppm of the amount moved.
    pub rebalance_cost_ppm: Option<u32>,
    /// The peer's public channel count from gossip (for the `peer` strategy).
    pub peer_channels: Option<u32>,
    pub current: ChannelFee,
    /// Unix seconds of the last fee update ballast made on this channel, if any.
    pub last_update: Option<u64>,
}

impl ChannelInputs {
    /// Local / capacity in [0, 1]; `None` for a zero-capacity channel (no ratio exists).
    pub fn local_ratio(&self) -> Option<f64> {
        if self.capacity.0 == 0 {
            return None;
        }
        Some((self.local.0 as f64 / self.capacity.0 as f64).clamp(0.0, 1.0))
    }
}

/// Knobs from the plugin's options, passed in so the engine reads no globals.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FeeConfig {
    /// A change must move the ppm by at least this much...
    pub min_delta_ppm: u32,
    /// ...and by at least this fraction of the current ppm. Both must hold: the absolute
    /// floor stops 1 → 2 ppm churn, the relative one stops 2000 → 2010 churn.
    pub min_delta_ratio: f64,
    /// At most one update per channel per this many seconds (and none in the first such
    /// period after startup unless forced). Core Lightning never sends channel updates less
    /// than 5 minutes apart and peers rate-limit gossip to about one a day with a burst of 4.
    pub min_interval_secs: u64,
    /// Forward events on a channel within this many seconds of the first make one decision.
    pub coalesce_secs: u64,
    /// Decide and explain, never apply.
    pub dry_run: bool,
}

impl Default for FeeConfig {
    fn default() -> Self {
        FeeConfig {
            min_delta_ppm: 10,
            min_delta_ratio: 0.05,
            min_interval_secs: 3_600,
            coalesce_secs: 30,
            dry_run: false,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("min_delta_ratio must be a number in 0..=1, got {0}")]
    MinDeltaRatio(String),
}

impl FeeConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.min_delta_ratio) {
            return Err(ConfigError::MinDeltaRatio(self.min_delta_ratio.to_string()));
        }
        Ok(())
    }
}

/// The clock and the caller's intent for one decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecideCtx {
    /// Unix seconds.
    pub now: u64,
    /// When the plugin started: nothing is applied in the first interval after it, so a
    /// restart loop cannot turn into a gossip storm.
    pub started_at: u64,
    /// `fee-apply ... force`: skip min-delta, startup hold and rate limit (not dry-run).
    pub force: bool,
}

/// Whether the target is applied now, and if not, why and until when.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Status {
    /// Call `setchannel` with the target now.
    Apply,
    /// No rule matched; the fee is not managed.
    NoRule,
    /// The target equals the current fee.
    Unchanged,
    /// The change is too small to be worth a gossip update.
    BelowMinDelta {
        delta_ppm: u32,
        min_delta_ppm: u32,
        min_delta_ratio: f64,
    },
    /// Within the first interval after startup.
    StartupHold { until: u64 },
    /// The channel was updated less than the minimum interval ago.
    RateLimited { until: u64 },
    /// Would be applied now, but dry-run mode is on.
    DryRun,
}

impl Status {
    /// True only when the caller should call `setchannel` now.
    pub fn applies(&self) -> bool {
        matches!(self, Status::Apply)
    }

    /// When a held change becomes applicable (for `fee-preview`'s "when").
    pub fn not_before(&self) -> Option<u64> {
        match self {
            Status::StartupHold { until } | Status::RateLimited { until } => Some(*until),
            _ => None,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Apply => f.write_str("apply now"),
            Status::NoRule => f.write_str("not managed: no rule matched"),
            Status::Unchanged => f.write_str("unchanged"),
            Status::BelowMinDelta {
                delta_ppm,
                min_delta_ppm,
                min_delta_ratio,
            } => write!(
                f,
                "below min delta: {delta_ppm} ppm change, needs {min_delta_ppm} ppm and {:.0}%",
                min_delta_ratio * 100.0
            ),
            Status::StartupHold { until } => write!(f, "startup hold until {until}"),
            Status::RateLimited { until } => write!(f, "rate-limited until {until}"),
            Status::DryRun => f.write_str("dry-run: would apply now"),
        }
    }
}

/// The full answer for one channel: enough for `fee-preview`, the log line and the history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeeDecision {
    pub scid: Scid,
    /// `None` when no rule matched.
    pub rule: Option<RuleRef>,
    pub current: ChannelFee,
    /// Equals `current` when no rule matched.
    pub target: ChannelFee,
    /// What the strategy asked for before the rule's bounds were applied.
    pub strategy_ppm: u32,
    pub local_ratio: Option<f64>,
    pub inputs: ChannelInputs,
    pub explanation: String,
    pub status: Status,
    pub decided_at: u64,
}

impl FeeDecision {
    /// True when the target differs from the current fee, whatever the status.
    pub(crate) fn changes_fee(&self) -> bool {
        self.rule.is_some() && self.target != self.current
    }
}

/// The log line: channel, reasoning and what happens next.
impl fmt::Display for FeeDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} [{}]", self.scid, self.explanation, self.status)
    }
}

/// Decides one channel. Never panics; the target always lies within the matched rule's
/// `[min_ppm, max_ppm]`.
pub fn decide(policy: &Policy, cfg: &FeeConfig, ch: &ChannelInputs, ctx: DecideCtx) -> FeeDecision {
    let ratio = ch.local_ratio();
    let mut text = String::with_capacity(192);
    let Some((index, rule)) = policy.first_match(ch, ratio) else {
        let _ = write!(text, "no rule matched; fee stays at {}", ch.current);
        return FeeDecision {
            scid: ch.scid,
            rule: None,
            current: ch.current,
            target: ch.current,
            strategy_ppm: ch.current.ppm,
            local_ratio: ratio,
            inputs: *ch,
            explanation: text,
            status: Status::NoRule,
            decided_at: ctx.now,
        };
    };

    let (lo, hi) = (rule.min_ppm, rule.max_ppm);
    // Validation guarantees lo <= hi; `max().min()` instead of `clamp` keeps even a
    // hand-built inverted pair from panicking.
    let bound = |v: u32| v.max(lo).min(hi);
    let _ = write!(text, "rule[{index}] '{}' (", rule.name);
    rule.when.describe(ch, ratio, &mut text);
    text.push_str("): ");

    let cx = EvalCtx {
        ch,
        ratio,
        start_ppm: bound(ch.current.ppm),
    };
    let raw = rule.strategy.evaluate(&cx, &mut text);
    let ppm = bound(raw);
    if ppm > raw {
        let _ = write!(text, ", raised to min {lo} ppm");
    } else if ppm < raw {
        let _ = write!(text, ", clamped to max {hi} ppm");
    }

    let target = ChannelFee {
        base_msat: rule.base_msat.unwrap_or(ch.current.base_msat),
        ppm,
        cltv_delta: rule.cltv_delta.or(ch.current.cltv_delta),
    };
    let status = status(cfg, ch, &target, bound(ch.current.ppm) != ch.current.ppm, ctx);
    let _ = write!(text, "; target {target} (current {})", ch.current);

    FeeDecision {
        scid: ch.scid,
        rule: Some(RuleRef {
            index,
            name: rule.name.clone(),
        }),
        current: ch.current,
        target,
        strategy_ppm: raw,
        local_ratio: ratio,
        inputs: *ch,
        explanation: text,
        status,
        decided_at: ctx.now,
    }
}

fn status(
    cfg: &FeeConfig,
    ch: &ChannelInputs,
    target: &ChannelFee,
    out_of_bounds: bool,
    ctx: DecideCtx,
) -> Status {
    let cur = &ch.current;
    // An unknown current delta is not a reason to update: the adapter would report the
    // same unknown after applying and the channel would be updated forever.
    let cltv_changes = matches!((cur.cltv_delta, target.cltv_delta), (Some(a), Some(b)) if a != b);
    if target.ppm == cur.ppm && target.base_msat == cur.base_msat && !cltv_changes {
        return Status::Unchanged;
    }
    let delta = target.ppm.abs_diff(cur.ppm);
    // A fee outside the rule's bounds, or a base/CLTV change, is always worth fixing: the
    // min-delta exists to damp small ppm wobble, not to keep a fee the policy forbids.
    let significant = out_of_bounds
        || target.base_msat != cur.base_msat
        || cltv_changes
        || (delta >= cfg.min_delta_ppm && delta as f64 >= cfg.min_delta_ratio * cur.ppm as f64);
    if !ctx.force {
        if !significant {
            return Status::BelowMinDelta {
                delta_ppm: delta,
                min_delta_ppm: cfg.min_delta_ppm,
                min_delta_ratio: cfg.min_delta_ratio,
            };
        }
        let startup_until = ctx.started_at.saturating_add(cfg.min_interval_secs);
        if ctx.now < startup_until {
            return Status::StartupHold { until: startup_until };
        }
        if let Some(last) = ch.last_update {
            let until = last.saturating_add(cfg.min_interval_secs);
            if ctx.now < until {
                return Status::RateLimited { until };
            }
        }
    }
    if cfg.dry_run {
        Status::DryRun
    } else {
        Status::Apply
    }
}
