//! The cost model: what "cheapest" means. Fee, CLTV risk and the `-ln(p)` probability
//! price all come out in msat so the search can add them edge by edge.

use super::problem::Problem;
use serde::{Deserialize, Serialize};

/// Blocks in a year, for turning an annual rate into a per-block price.
const BLOCKS_PER_YEAR: f64 = 52_596.0;

/// How routes are ranked. All terms are in msat so they add up with fees.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    /// Annual rate, in percent, that locking the amount for one more block is worth.
    pub risk_factor: f64,
    /// Price of an edge whose success probability is `1/e`, before the proportional part.
    pub prob_base_msat: u64,
    /// Proportional part of the probability price, per million of the amount.
    pub prob_ppm: u32,
}

impl Default for CostModel {
    fn default() -> Self {
        // A halving of success probability costs about 0.7 sat plus 70 ppm: enough to prefer
        // a likely route over a marginally cheaper doubtful one, not enough to outweigh the
        // fee cap, which stays the hard limit.
        CostModel {
            risk_factor: 2.0,
            prob_base_msat: 1000,
            prob_ppm: 100,
        }
    }
}

impl Problem<'_> {
    pub(super) fn risk(&self, amount: u64, delta: u32) -> u64 {
        let r = amount as f64 * delta as f64 * self.cost.risk_factor / (BLOCKS_PER_YEAR * 100.0);
        r as u64
    }

    pub(super) fn prob_cost(&self, p: f64, amount: u64) -> u64 {
        if p >= 1.0 {
            return 0;
        }
        let weight = self.cost.prob_base_msat as f64 + amount as f64 * self.cost.prob_ppm as f64 / 1e6;
        (-p.ln() * weight) as u64
    }
}
