//! What a run did, as numbers: the summary table printed at the end (one column per policy
//! when two are compared) and the conservation figures the tests check.

use super::network::Network;
use super::run::RunParams;
use super::SimPolicy;
use serde::Serialize;
use std::fmt::Write;

/// Everything printed at the end of a run. Deterministic for a seed: no wall-clock values.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub policy: String,
    /// `ballast` or `baseline` (see `sim::baseline`).
    pub rebalancer: String,
    pub seed: u64,
    pub hours: u64,
    pub nodes: u64,
    pub channels: u64,
    pub our_channels: u64,
    pub payments: u64,
    pub payments_ok: u64,
    pub forwards: u64,
    pub forwards_failed: u64,
    pub forwarded_msat: u64,
    pub fees_earned_msat: u64,
    pub fee_changes: u64,
    pub rebalance_plans: u64,
    pub rebalance_attempts: u64,
    pub rebalance_ok: u64,
    pub rebalance_moved_msat: u64,
    pub rebalance_spend_msat: u64,
    /// Highest spend over any 24 h window ending at a rebalance.
    pub max_24h_spend_msat: u64,
    pub daily_budget_msat: u64,
    /// Highest fee rate paid by a successful rebalance, ppm (rounded down).
    pub rebalance_max_ppm: u64,
    pub max_ppm: u32,
    pub rebalance_budget_stops: u64,
    /// Successful attempts over attempts (0 when none were made).
    pub rebalance_success_rate: f64,
    /// Fee paid per million moved, over all successful attempts (rounded down).
    pub rebalance_avg_ppm: u64,
    /// Sum over our channels of |local ratio - target| x capacity: at the start, at the
    /// end, and averaged over hourly samples.
    pub imbalance_start_msat: u64,
    pub imbalance_end_msat: u64,
    /// Of the end imbalance, what no circular rebalance could remove: |sum of local - sum
    /// of target local| over our channels (rebalancing never changes the sum).
    pub imbalance_floor_end_msat: u64,
    pub imbalance_avg_msat: u64,
    /// Imbalance left at the end per sat of rebalance fees paid; `None` when nothing was paid.
    pub imbalance_left_per_fee_sat: Option<f64>,
    /// Sat moved per sat of fees paid; `None` when nothing was paid.
    pub moved_per_fee_sat: Option<f64>,
    pub disconnects: u64,
    pub alerts_raised: u64,
    pub alerts_critical: u64,
    pub alerts_active_end: u64,
    pub hodl_created: u64,
    pub hodl_settled: u64,
    pub hodl_canceled: u64,
    pub hodl_canceled_deadline: u64,
    pub hodl_expired: u64,
    pub hodl_accepted: u64,
    pub hodl_open: u64,
    pub hodl_received_msat: u64,
    pub our_balance_start_msat: u64,
    pub our_balance_end_msat: u64,
    pub events: u64,
}

impl Summary {
    pub fn new(policy: &SimPolicy, p: &RunParams, net: &Network) -> Summary {
        Summary {
            policy: policy.name.clone(),
            rebalancer: p.rebalancer.as_str().to_string(),
            seed: p.seed,
            hours: p.hours,
            nodes: net.ids.len() as u64,
            channels: net.channels.len() as u64,
            our_channels: net.adj[net.ours as usize].len() as u64,
            daily_budget_msat: policy.daily_budget_msat,
            max_ppm: policy.max_ppm,
            ..Summary::default()
        }
    }

    /// The rebalance figures derived from the counted ones, once the run is over.
    pub(crate) fn finish_rebalance_figures(&mut self) {
        self.rebalance_success_rate = if self.rebalance_attempts == 0 {
            0.0
        } else {
            self.rebalance_ok as f64 / self.rebalance_attempts as f64
        };
        self.rebalance_avg_ppm = u64::try_from(
            self.rebalance_spend_msat as u128 * 1_000_000 / self.rebalance_moved_msat.max(1) as u128,
        )
        .unwrap_or(u64::MAX);
        let fee_sat = self.rebalance_spend_msat as f64 / 1_000.0;
        let per_fee = |msat: u64| (fee_sat > 0.0).then(|| msat as f64 / 1_000.0 / fee_sat);
        self.imbalance_left_per_fee_sat = per_fee(self.imbalance_end_msat);
        self.moved_per_fee_sat = per_fee(self.rebalance_moved_msat);
    }

    /// Fees earned minus rebalance spend.
    pub(crate) fn net_msat(&self) -> i64 {
        self.fees_earned_msat as i64 - self.rebalance_spend_msat as i64
    }

    fn rows(&self) -> Vec<(&'static str, String)> {
        let sat = |m: u64| format!("{} sat", group(m / 1_000));
        let msat_sat = |m: u64| format!("{} sat ({} msat)", group(m / 1_000), group(m));
        vec![
            ("policy", self.policy.clone()),
            (
                "payments (ok / total)",
                format!("{} / {}", group(self.payments_ok), group(self.payments)),
            ),
            ("forwards through us", group(self.forwards)),
            ("  failed at our channel", group(self.forwards_failed)),
            ("  forwarded", sat(self.forwarded_msat)),
            ("fees earned", msat_sat(self.fees_earned_msat)),
            ("fee changes", group(self.fee_changes)),
            ("rebalancer", self.rebalancer.clone()),
            (
                "rebalances (ok / tried)",
                format!("{} / {}", self.rebalance_ok, self.rebalance_attempts),
            ),
            (
                "  success rate",
                format!("{:.1} %", self.rebalance_success_rate * 100.0),
            ),
            ("  moved", sat(self.rebalance_moved_msat)),
            ("rebalance spend", msat_sat(self.rebalance_spend_msat)),
            ("  avg ppm paid", self.rebalance_avg_ppm.to_string()),
            (
                "  moved per fee sat",
                self.moved_per_fee_sat
                    .map_or("-".into(), |v| format!("{v:.0} sat")),
            ),
            (
                "imbalance start -> end",
                format!(
                    "{} -> {}",
                    sat(self.imbalance_start_msat),
                    sat(self.imbalance_end_msat)
                ),
            ),
            (
                "  of which no rebalance can remove",
                sat(self.imbalance_floor_end_msat),
            ),
            ("  hourly average", sat(self.imbalance_avg_msat)),
            (
                "  left per fee sat",
                self.imbalance_left_per_fee_sat
                    .map_or("-".into(), |v| format!("{v:.0} sat")),
            ),
            (
                "  max 24h spend / budget",
                format!(
                    "{} / {}",
                    sat(self.max_24h_spend_msat),
                    sat(self.daily_budget_msat)
                ),
            ),
            (
                "  max ppm paid / cap",
                format!("{} / {}", self.rebalance_max_ppm, self.max_ppm),
            ),
            (
                "net (fees - rebalance)",
                format!(
                    "{}{} sat",
                    if self.net_msat() < 0 { "-" } else { "" },
                    group(self.net_msat().unsigned_abs() / 1_000)
                ),
            ),
            ("peer disconnects", self.disconnects.to_string()),
            (
                "alerts raised (critical)",
                format!("{} ({})", self.alerts_raised, self.alerts_critical),
            ),
            ("  active at end", self.alerts_active_end.to_string()),
            ("hold invoices created", self.hodl_created.to_string()),
            ("  settled", self.hodl_settled.to_string()),
            ("  canceled", self.hodl_canceled.to_string()),
            ("  canceled at deadline", self.hodl_canceled_deadline.to_string()),
            ("  expired unpaid", self.hodl_expired.to_string()),
            (
                "  accepted / open at end",
                format!("{} / {}", self.hodl_accepted, self.hodl_open),
            ),
            ("  received", sat(self.hodl_received_msat)),
            (
                "our balance start -> end",
                format!(
                    "{} -> {}",
                    sat(self.our_balance_start_msat),
                    sat(self.our_balance_end_msat)
                ),
            ),
            ("events", group(self.events)),
        ]
    }
}

/// Thousands separators.
pub(crate) fn group(v: u64) -> String {
    let s = v.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The summary table; with several summaries, one column each (same seed, same traffic).
pub fn table(summaries: &[&Summary]) -> String {
    let rows: Vec<Vec<(&'static str, String)>> = summaries.iter().map(|s| s.rows()).collect();
    let Some(first) = rows.first() else {
        return String::new();
    };
    let label_w = first.iter().map(|(l, _)| l.len()).max().unwrap_or(0);
    let col_w: Vec<usize> = rows
        .iter()
        .map(|r| r.iter().map(|(_, v)| v.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for i in 0..first.len() {
        let _ = write!(out, "  {:<label_w$}", first[i].0);
        for (r, w) in rows.iter().zip(&col_w) {
            let _ = write!(out, "  {:>w$}", r[i].1);
        }
        out.push('\n');
    }
    out
}

/// One line per policy run with both rebalancers: their rebalance figures side by side.
pub(crate) fn rebalancer_comparison(summaries: &[&Summary]) -> Option<String> {
    let mut lines = Vec::new();
    for s in summaries.iter().filter(|s| s.rebalancer == "ballast") {
        let Some(b) = summaries
            .iter()
            .find(|b| b.rebalancer == "baseline" && b.policy == s.policy)
        else {
            continue;
        };
        let side = |x: &Summary| {
            format!(
                "{} {} / {} ok ({:.1} %), moved {} sat for {} sat ({} ppm), imbalance left {} sat (no rebalance could remove {} of it)",
                x.rebalancer,
                x.rebalance_ok,
                x.rebalance_attempts,
                x.rebalance_success_rate * 100.0,
                group(x.rebalance_moved_msat / 1_000),
                group(x.rebalance_spend_msat / 1_000),
                x.rebalance_avg_ppm,
                group(x.imbalance_end_msat / 1_000),
                group(x.imbalance_floor_end_msat / 1_000)
            )
        };
        lines.push(format!(
            "rebalancers ({}, same seed, same traffic): {}; {}",
            s.policy,
            side(s),
            side(b)
        ));
    }
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// The msat bookkeeping of a run, for the conservation check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Conservation {
    pub total_capacity: u64,
    pub total_initial: u64,
    pub total_final: u64,
    /// Over all nodes: routing fees paid by payers and earned by forwarders.
    pub fees_paid: u64,
    pub fees_earned: u64,
    pub ours_initial: u64,
    pub ours_final: u64,
    /// Nodes whose balance change differs from received - sent - fees paid + fees earned.
    pub nodes_mismatched: u64,
}
