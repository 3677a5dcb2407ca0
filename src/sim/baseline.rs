//! The plain rebalancer `ballast simulate` measures ballast against, on the same seed and
//! traffic. It works the way the classic rebalance plugins do (Core Lightning's community
//! `rebalance` plugin, rebalance-lnd):
//!
//! - the cheapest circular route by fees, with nothing known about liquidity beyond the
//!   channels' capacities;
//! - a fixed amount: what the move asks for (what brings both channels to target, as those
//!   plugins compute when no amount is given), never resized;
//! - on failure, the failing channel is excluded and the next cheapest route is tried, up
//!   to [`TRIES`] payments per move.
//!
//! It learns nothing across attempts or moves. It pays through the same
//! [`Executor::attempt`] as ballast (each attempt recorded before it leaves, its preimage
//! bound to the amount), with the same budgets checked before every attempt, so the two
//! differ only in how they choose what to send.

use crate::engine::route::{CostModel, RouteParams};
use crate::node::Node;
use crate::service::execute::{Begun, ExecError, ExecStatus, Executor, MoveReport};
use crate::service::rebalance::AttemptOutcome;
use crate::types::{Msat, Scid};

/// Payments per move at most, the first included.
pub(crate) const TRIES: u32 = 5;

/// Moves `amount` from `source` to `sink` the classic way. Same contract as
/// [`Executor::execute_move`]: at most `max_ppm`, never more than `budget_left`.
pub(crate) async fn execute_move<N: Node>(
    exec: &Executor<'_, N>,
    source: Scid,
    sink: Scid,
    amount: Msat,
    max_ppm: u32,
    budget_left: &mut Msat,
) -> Result<MoveReport, ExecError> {
    let Begun { src, dst, mut report } = exec.begin(source, sink, amount)?;
    if report.status == ExecStatus::Refused {
        return Ok(report);
    }
    // Cheapest means fees only: no CLTV risk, no probability term.
    let mut params = RouteParams {
        k: 1,
        max_hops: exec.planner.max_hops,
        cost: CostModel {
            risk_factor: 0.0,
            prob_base_msat: 0,
            prob_ppm: 0,
        },
        ..RouteParams::default()
    };
    while report.attempts < TRIES {
        let fee_cap = match exec.fee_cap(amount.0, max_ppm, *budget_left)? {
            Ok(c) => c,
            Err(why) => {
                report.reason = why;
                break;
            }
        };
        let Some(route) = exec
            .routes(src, dst, amount.0, fee_cap, &params, false)?
            .into_iter()
            .next()
        else {
            report.reason = format!("no route within budget for {} msat", amount.0);
            break;
        };
        report.attempts += 1;
        match exec
            .attempt(source, sink, &route, false, &mut report.recorded)
            .await?
        {
            AttemptOutcome::Success => {
                budget_left.0 = budget_left.0.saturating_sub(route.fee.0);
                report.fee = route.fee;
                report.moved = route.amount;
                report.status = ExecStatus::Done;
                return Ok(report);
            }
            AttemptOutcome::Pending => {
                budget_left.0 = budget_left.0.saturating_sub(route.fee.0);
                report.fee = route.fee;
                report.status = ExecStatus::InFlight;
                report.reason = "an attempt is still in flight".into();
                return Ok(report);
            }
            AttemptOutcome::Failed => {
                match report.recorded.last().and_then(|a| a.failing_channel) {
                    // Our own channel refused, or the failure names no channel: excluding
                    // it cannot help, so the classic plugins give up here too.
                    Some(f) if f != source && f != sink => params.exclude_channels.push(f),
                    _ => {
                        report.reason = "failed at our own channel or at no known channel".into();
                        break;
                    }
                }
            }
        }
    }
    if report.reason.is_empty() {
        report.reason = "attempt limit reached".into();
    }
    Ok(report)
}
