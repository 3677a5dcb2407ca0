//! One rebalance move, executed: the budget-checked attempt loop that the plugin's
//! `rebalance-execute` (and its automatic mode) and `ballast simulate` both run, generic over
//! the [`Node`] that sends the payments.
//!
//! A move is sent in parts along circular routes to our own node. Before every attempt the
//! exact fee of that route is checked against the daily budget, what is left of the
//! execution's budget and the move's ppm cap; a part that finds no route is halved (down to
//! the planner's minimum); at most [`MAX_ATTEMPTS`] payments are tried; an attempt still in
//! flight counts as spent and ends the move. Every attempt is recorded, and what it showed
//! about liquidity is learned.

use super::rebalance::{Attempt, RebalanceError, RebalanceService};
use crate::engine::planner::PlannerConfig;
use crate::engine::route::{find_circular_routes, CircularRequest, Route, RouteError, RouteParams};
use crate::node::{Channel, ChannelState, Node, NodeError, PayOutcome};
use crate::types::{Msat, NodeId, Scid};

/// Payments tried per move, at most.
pub const MAX_ATTEMPTS: u32 = 16;
/// How long one attempt waits for its outcome before it counts as in flight.
pub const ATTEMPT_TIMEOUT_SECS: u32 = 60;

/// How a move ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecStatus {
    /// All of the amount moved.
    Done,
    /// Some of it moved.
    Partial,
    /// Nothing moved.
    Failed,
    /// An attempt was still in flight when its wait ended; its fee counts as spent.
    InFlight,
    /// Not attempted (e.g. source and sink reach the same peer).
    Refused,
}

impl ExecStatus {
    /// The name `rebalance-execute` reports.
    pub fn as_str(self) -> &'static str {
        match self {
            ExecStatus::Done => "done",
            ExecStatus::Partial => "partial",
            ExecStatus::Failed => "failed",
            ExecStatus::InFlight => "in_flight",
            ExecStatus::Refused => "refused",
        }
    }
}

/// What one move did.
#[derive(Debug, Clone, PartialEq)]
pub struct MoveReport {
    pub source: Scid,
    pub sink: Scid,
    pub requested: Msat,
    pub moved: Msat,
    /// Fees of successful attempts, plus those of an attempt left in flight.
    pub fee: Msat,
    /// Payments sent.
    pub attempts: u32,
    pub status: ExecStatus,
    /// Why the move stopped short (empty when it is done).
    pub reason: String,
    /// The attempts as recorded in the store, in order.
    pub recorded: Vec<Attempt>,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{0} is not one of our normal channels")]
    UnknownChannel(Scid),
    #[error(transparent)]
    Store(#[from] RebalanceError),
    #[error(transparent)]
    Route(#[from] RouteError),
}

/// Everything a move needs besides its own parameters.
pub struct Executor<'a, N: Node> {
    pub service: &'a RebalanceService,
    pub node: &'a N,
    /// Route search settings: `k`, `max_hops`, `min_amount` and `cost`.
    pub planner: &'a PlannerConfig,
    pub daily_budget: Msat,
    /// Unix seconds now; the simulator's clock is simulated.
    pub now: &'a (dyn Fn() -> u64 + Sync),
    pub me: NodeId,
    pub exec_id: &'a str,
    /// Our channels as the node listed them when the execution started.
    pub channels: &'a [Channel],
}

/// Runs a service call that may touch the store (and fsync).
///
/// Why not `spawn_blocking`: that needs `'static` closures and a multi-thread runtime's
/// blocking pool, and the simulator drives these futures on a current-thread runtime where
/// the store is a temporary one. On the plugin's multi-thread runtime the call goes through
/// `block_in_place`, so the worker hands its other tasks (hooks) to another worker while
/// the store syncs; anywhere else (current-thread runtime, no runtime) it just runs, which
/// is what a single-threaded driver wants.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

fn find(channels: &[Channel], scid: Scid) -> Result<&Channel, ExecError> {
    channels
        .iter()
        .find(|c| c.scid == Some(scid) && c.state == ChannelState::Normal)
        .ok_or(ExecError::UnknownChannel(scid))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AttemptResult {
    Success,
    Failed,
    Pending,
}

impl<N: Node> Executor<'_, N> {
    /// Moves `amount` out through `source` and back in through `sink`, paying at most
    /// `max_ppm` on any part and never more than `budget_left` (reduced by what is spent).
    pub async fn execute_move(
        &self,
        source: Scid,
        sink: Scid,
        amount: Msat,
        max_ppm: u32,
        budget_left: &mut Msat,
    ) -> Result<MoveReport, ExecError> {
        let src = find(self.channels, source)?;
        let dst = find(self.channels, sink)?;
        let mut report = MoveReport {
            source,
            sink,
            requested: amount,
            moved: Msat(0),
            fee: Msat(0),
            attempts: 0,
            status: ExecStatus::Failed,
            reason: String::new(),
            recorded: Vec::new(),
        };
        if src.peer == dst.peer {
            // Out and back through the same peer moves nothing and burns fees.
            report.status = ExecStatus::Refused;
            report.reason = "source and sink are channels to the same peer".into();
            return Ok(report);
        }
        let min_part = self.planner.min_amount.0.max(1);
        let mut remaining = amount.0;
        let mut part = amount.0;
        let mut in_flight = false;
        while remaining > 0 && report.attempts < MAX_ATTEMPTS {
            part = part.min(remaining);
            let now = (self.now)();
            let day_spent = blocking(|| self.service.spent_since(now.saturating_sub(86_400)))?;
            let daily_left = self.daily_budget.0.saturating_sub(day_spent.0);
            let cap = (part as u128 * max_ppm as u128 / 1_000_000) as u64;
            let fee_cap = cap.min(budget_left.0).min(daily_left);
            if fee_cap == 0 && cap > 0 {
                report.reason = if daily_left == 0 {
                    "daily budget (ballast-rebalance-daily-budget) used up".into()
                } else {
                    "execution budget (max_fee_msat) used up".into()
                };
                break;
            }
            let req = CircularRequest {
                ours: self.me,
                out_scid: source,
                out_peer: src.peer,
                in_scid: sink,
                in_peer: dst.peer,
                amount: Msat(part),
                in_policy: dst.remote_policy,
            };
            let params = RouteParams {
                k: self.planner.k.max(1),
                max_hops: self.planner.max_hops,
                max_fee: Some(Msat(fee_cap)),
                cost: self.planner.cost.clone(),
                ..RouteParams::default()
            };
            let routes = blocking(|| {
                self.service
                    .with_graph(now, |g, _, view| find_circular_routes(g, view, &req, &params))
            })
            .unwrap_or(Ok(Vec::new()))?;
            let mut succeeded = false;
            for route in routes {
                // The hard stop: this exact fee against what is left, before sending anything.
                if route.fee.0 > budget_left.0 || route.fee.0 > daily_left || route.fee.0 > fee_cap {
                    continue;
                }
                report.attempts += 1;
                match self.attempt(source, sink, &route, &mut report.recorded).await? {
                    AttemptResult::Success => {
                        budget_left.0 = budget_left.0.saturating_sub(route.fee.0);
                        report.fee.0 += route.fee.0;
                        report.moved.0 += part;
                        remaining -= part;
                        succeeded = true;
                        break;
                    }
                    AttemptResult::Pending => {
                        // Its fee stays counted as spent; do not pile more on top of it.
                        budget_left.0 = budget_left.0.saturating_sub(route.fee.0);
                        report.fee.0 += route.fee.0;
                        report.reason =
                            "an attempt is still in flight; its fee counts as spent until it resolves".into();
                        in_flight = true;
                        break;
                    }
                    AttemptResult::Failed => {}
                }
                if report.attempts >= MAX_ATTEMPTS {
                    break;
                }
            }
            if in_flight {
                break;
            }
            if !succeeded && remaining > 0 {
                // Smaller parts find liquidity where the full amount did not.
                if part / 2 >= min_part {
                    part /= 2;
                } else {
                    report.reason = format!("no route within budget for {} msat or less", part);
                    break;
                }
            }
        }
        if remaining > 0 && report.reason.is_empty() {
            report.reason = "attempt limit reached".into();
        }
        report.status = if in_flight {
            ExecStatus::InFlight
        } else if report.moved == amount {
            ExecStatus::Done
        } else if report.moved.0 > 0 {
            ExecStatus::Partial
        } else {
            ExecStatus::Failed
        };
        Ok(report)
    }

    /// Sends one payment along `route` and records it; learns from its outcome.
    ///
    /// The attempt is recorded as pending (its fee counted as spent) before anything is
    /// sent: if ballast stops mid-payment, the payment can still complete on the node, and
    /// `resolve_pending` finds it later instead of its fee escaping the budget.
    async fn attempt(
        &self,
        source: Scid,
        sink: Scid,
        route: &Route,
        recorded: &mut Vec<Attempt>,
    ) -> Result<AttemptResult, ExecError> {
        let preimage = blocking(|| self.service.new_self_payment((self.now)(), route.amount))?;
        let hash = preimage.payment_hash();
        let pending = Attempt {
            id: 0,
            execution: self.exec_id.to_string(),
            time: (self.now)(),
            source,
            sink,
            amount: route.amount,
            fee: route.fee,
            route: route.hops.iter().map(|h| h.scid).collect(),
            payment_hash: hash,
            outcome: "pending".into(),
            failing_channel: None,
            message: String::new(),
        };
        let mut stored = blocking(|| self.service.record_attempt(pending))?;
        let (result, failing, message, failed_at) =
            match self.node.prepare_self_payment(preimage, route.amount).await {
                // Nothing was sent.
                Err(e) => (AttemptResult::Failed, None, e.to_string(), None),
                Ok(()) => match self
                    .node
                    .pay_route(&route.to_route_hops(), hash, ATTEMPT_TIMEOUT_SECS)
                    .await
                {
                    Ok(PayOutcome::Success { .. }) => (AttemptResult::Success, None, String::new(), None),
                    Ok(PayOutcome::Failed {
                        failing_channel,
                        message,
                        ..
                    }) => {
                        let idx = failing_channel.and_then(|f| route.hops.iter().position(|h| h.scid == f));
                        (AttemptResult::Failed, failing_channel, message, idx)
                    }
                    // The node's "still in progress" answer (lightningd's 200 on `waitsendpay`).
                    Err(NodeError::Rejected {
                        code: Some(200),
                        message,
                        ..
                    }) => (AttemptResult::Pending, None, message, None),
                    // The node refused the payment: nothing left.
                    Err(e @ NodeError::Rejected { .. }) => (AttemptResult::Failed, None, e.to_string(), None),
                    // The connection broke or the answer was unreadable: the HTLC may be out and
                    // may still settle, so it stays pending (fee counted) until resolved.
                    Err(e) => (AttemptResult::Pending, None, e.to_string(), None),
                },
            };
        if result != AttemptResult::Pending {
            let now = (self.now)();
            // A failure the node could not place (failed_at None on a failure) teaches
            // nothing about liquidity, so only placed failures and successes are learned.
            // Learning is advice: its failure must not keep the outcome from the record.
            if result == AttemptResult::Success || failed_at.is_some() {
                if let Err(e) = blocking(|| self.service.learn(&self.me, route, failed_at, now)) {
                    log::warn!("rebalance attempt {}: could not learn from it: {e}", stored.id);
                }
            }
            let outcome = if result == AttemptResult::Success {
                "success"
            } else {
                "failed"
            };
            blocking(|| {
                self.service
                    .resolve_attempt(stored.id, outcome, message.clone(), failing)
            })?;
            stored.outcome = outcome.into();
            stored.failing_channel = failing;
        }
        stored.message = message;
        recorded.push(stored);
        Ok(result)
    }
}
