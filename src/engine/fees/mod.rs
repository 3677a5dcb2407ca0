//! Fee policy engine: which fee a channel should have, and whether to set it now.
//!
//! Pure and deterministic: the caller passes the policy, the channel's numbers and the clock,
//! and gets back a [`FeeDecision`] that says what the fee should be, which rule produced it,
//! why (a sentence a person reads) and whether to apply it now. Nothing here calls
//! `setchannel`, reads a clock or touches the store, so `fee-preview`, the forward-event path,
//! the timer and the simulator all reach the same answer for the same inputs.
//!
//! * [`Policy`]: ordered [`Rule`]s, first match wins, read from TOML ([`Policy::from_toml`])
//!   or JSON ([`Policy::from_json`]); every policy that exists has been validated.
//! * [`Strategy`]: how a matched rule turns the inputs into a ppm.
//! * [`decide`]: one channel, one decision, always clamped to the rule's bounds.
//! * [`Coalescer`]: turns a stream of forward events into at most one decision per channel
//!   per coalescing window, and no earlier than the rate limit allows.
//! * [`FeeChange`]: the history record of an applied (or dry-run) change.
//! * [`Policy::builtin`]: the policy in force until the operator sets one.

mod builtin;
mod decide;
mod history;
mod limiter;
mod parse;
mod policy;
mod strategy;

#[cfg(test)]
mod tests;

pub(crate) use builtin::BUILTIN_SOURCE;
pub use decide::{
    decide, ChannelFee, ChannelInputs, ConfigError, DecideCtx, FeeConfig, FeeDecision, Flow, Status,
};
pub use history::{FeeChange, Trigger};
pub use limiter::{Coalescer, Pending};
pub use policy::{Between, Defaults, Location, Match, Policy, PolicyError, Rule, RuleRef};
pub use strategy::{BalanceParams, CostFloorParams, Curve, FlowParams, PeerParams, Strategy};
