//! The policy in force when the operator has set none: fees follow each channel's balance
//! within bounds a new node can live with.
//!
//! Why these numbers: Core Lightning's default is 10 ppm, which routes at a loss for a
//! channel drained by outgoing traffic. A geometric curve from 1000 ppm (empty) to 10 ppm
//! (full) asks about 100 ppm of a balanced channel, the going rate on the network, and
//! only climbs steeply as the channel nears empty. Never below lightningd's default, never
//! above 1000 ppm (0.1 %); the base fee is left as the operator set it. How often it may
//! change is not set here: the rate limit, minimum change and start-up hold apply as to
//! any policy.

use super::policy::{Policy, PolicyError};

/// The built-in policy as TOML, in the format of `ballast-fee-policy-file`, so an operator
/// can start their own from a copy of it.
pub(crate) const BUILTIN_POLICY_TOML: &str = r#"
[defaults]
min_ppm = 10
max_ppm = 1000

[[rule]]
name = "builtin-balance"
strategy = { type = "balance", curve = "exponential", empty_ppm = 1000, full_ppm = 10 }
"#;

/// Where the policy in force came from, as `fee-policy` and `ballast-status` show it.
pub(crate) const BUILTIN_SOURCE: &str = "default";

impl Policy {
    /// The built-in policy (see the module comment).
    pub fn builtin() -> Result<Policy, PolicyError> {
        Policy::from_toml(BUILTIN_POLICY_TOML)
    }
}
