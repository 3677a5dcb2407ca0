//! The record kept for every fee change, so `fee-history` can answer "why is my fee this?"
//! long after the decision.

use super::decide::{ChannelFee, FeeDecision, Status};
use super::policy::RuleRef;
use crate::types::Scid;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What made ballast look at the channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// A settled forward event on the channel.
    Forward,
    /// The periodic pass over channels without traffic.
    Timer,
    /// `fee-apply`.
    Manual,
    /// A new policy was loaded.
    PolicyChange,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::Forward => "forward",
            Trigger::Timer => "timer",
            Trigger::Manual => "manual",
            Trigger::PolicyChange => "policy_change",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeChange {
    /// Unix seconds.
    pub time: u64,
    pub scid: Scid,
    pub old: ChannelFee,
    pub new: ChannelFee,
    pub trigger: Trigger,
    pub rule: RuleRef,
    pub explanation: String,
    /// Recorded in dry-run mode: the change was decided but not applied.
    #[serde(default)]
    pub dry_run: bool,
}

impl FeeChange {
    /// The record for a decision that was applied (or would have been, in dry-run mode).
    /// `None` for decisions that change nothing or were held back.
    pub(crate) fn from_decision(d: &FeeDecision, trigger: Trigger, time: u64) -> Option<FeeChange> {
        let dry_run = match d.status {
            Status::Apply => false,
            Status::DryRun => true,
            _ => return None,
        };
        let rule = d.rule.clone()?;
        Some(FeeChange {
            time,
            scid: d.scid,
            old: d.current,
            new: d.target,
            trigger,
            rule,
            explanation: d.explanation.clone(),
            dry_run,
        })
    }
}
