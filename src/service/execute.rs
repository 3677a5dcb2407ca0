//! One rebalance move, executed: the budget-checked attempt loop that the plugin's
//! `rebalance-execute` (and its automatic mode) and `ballast simulate` both run, generic over
//! the [`Node`] that sends the payments.
//!
//! A move is sent in parts along circular routes to our own node, one at a time. Each part
//! is sized to what its route will likely carry under the liquidity beliefs
//! ([`crate::engine::sizing`]); a part no route is likely enough to carry is not sent and
//! ends the move. Before every attempt the exact fee of that route is checked against the
//! daily budget, what is left of the execution's budget and the move's ppm cap; a part
//! that finds no route is halved (down to the planner's minimum); at most [`MAX_ATTEMPTS`]
//! payments are tried; an attempt still in flight counts as spent and ends the move. Every
//! attempt is recorded, and what it showed about liquidity is learned before the next part
//! is routed.

use super::blocking;
use super::rebalance::{Attempt, AttemptOutcome, RebalanceError, RebalanceService};
use crate::engine::beliefs::BeliefView;
use crate::engine::planner::PlannerConfig;
use crate::engine::route::{find_circular_routes, CircularRequest, Route, RouteError, RouteParams};
use crate::engine::sizing::{self, Sizing};
use crate::node::{Channel, ChannelState, Node, NodeError, PayOutcome};
use crate::types::{Msat, NodeId, Scid};

/// Payments tried per move, at most.
pub(crate) const MAX_ATTEMPTS: u32 = 16;
/// How long one attempt waits for its outcome before it counts as in flight.
pub(crate) const ATTEMPT_TIMEOUT_SECS: u32 = 60;
/// A part is sized to the largest amount its route carries with this chance. A failed
/// attempt is not free: it holds liquidity along its route while in flight and loads the
/// nodes on it. At 0.5, ballast's attempts in `ballast simulate` succeeded 26 %, 30 % and
/// 18 % of the time on seeds 1 to 3; at 0.7, 34 %, 38 % and 31 %, moving 79 to 98 % as
/// much. The price is more parts per move, each paying the route's base fees again.
pub(crate) const TARGET_PROBABILITY: f64 = 0.7;
/// A part less likely than this to get through is not sent: the move stops early.
pub(crate) const MIN_PROBABILITY: f64 = 0.2;
/// Route searches per part at most: the first at the largest part, then at sized amounts.
const SIZING_ROUNDS: usize = 3;
/// Failed attempts in a row after which a move stops: the beliefs are off for this pair of
/// channels just now, and the next round starts from what these failures taught.
pub(crate) const MAX_FAILURES_IN_A_ROW: u32 = 2;

/// The next part of a move, or why there is none.
enum Choice {
    Send(Route),
    /// No route within budget carries the part at all.
    NoRoute,
    /// Routes exist, but the best is only this likely to carry even the smallest part.
    Unlikely(f64),
}

/// How a move ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ExecStatus {
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
pub(crate) struct MoveReport {
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
pub(crate) enum ExecError {
    #[error("{0} is not one of our normal channels")]
    UnknownChannel(Scid),
    #[error(transparent)]
    Store(#[from] RebalanceError),
    #[error(transparent)]
    Route(#[from] RouteError),
}

/// Everything a move needs besides its own parameters.
pub(crate) struct Executor<'a, N: Node> {
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

fn find(channels: &[Channel], scid: Scid) -> Result<&Channel, ExecError> {
    channels
        .iter()
        .find(|c| c.scid == Some(scid) && c.state == ChannelState::Normal)
        .ok_or(ExecError::UnknownChannel(scid))
}

/// A move about to start: its two channels and its report so far.
pub(crate) struct Begun<'c> {
    pub src: &'c Channel,
    pub dst: &'c Channel,
    /// Status `Refused` (with the reason) when the move must not be attempted at all.
    pub report: MoveReport,
}

impl<'a, N: Node> Executor<'a, N> {
    /// Looks up a move's channels and starts its report; refuses a move that would leave
    /// and return through the same peer (that moves nothing and burns fees).
    pub fn begin(&self, source: Scid, sink: Scid, amount: Msat) -> Result<Begun<'a>, ExecError> {
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
            report.status = ExecStatus::Refused;
            report.reason = "source and sink are channels to the same peer".into();
        }
        Ok(Begun { src, dst, report })
    }
}

impl<N: Node> Executor<'_, N> {
    /// The most any attempt of `part` msat may pay now: the move's ppm cap, what is left of
    /// the execution's budget and of the 24-hour budget. `Err` carries why nothing may be
    /// spent any more (a budget is used up).
    pub(crate) fn fee_cap(
        &self,
        part: u64,
        max_ppm: u32,
        budget_left: Msat,
    ) -> Result<Result<u64, String>, ExecError> {
        let now = (self.now)();
        let day_spent = blocking(|| self.service.spent_since(now.saturating_sub(86_400)))?;
        let daily_left = self.daily_budget.0.saturating_sub(day_spent.0);
        let cap = (part as u128 * max_ppm as u128 / 1_000_000) as u64;
        let fee_cap = cap.min(budget_left.0).min(daily_left);
        if fee_cap == 0 && cap > 0 {
            return Ok(Err(if daily_left == 0 {
                "daily budget (ballast-rebalance-daily-budget) used up".into()
            } else {
                "execution budget (max_fee_msat) used up".into()
            }));
        }
        Ok(Ok(fee_cap))
    }

    /// The circular routes for `part` within `fee_cap`, cheapest (by the cost model) first;
    /// with `beliefs` false, as if nothing had been learned (capacities only).
    pub fn routes(
        &self,
        source: &Channel,
        sink: &Channel,
        part: u64,
        fee_cap: u64,
        params: &RouteParams,
        beliefs: bool,
    ) -> Result<Vec<Route>, ExecError> {
        let (Some(out_scid), Some(in_scid)) = (source.scid, sink.scid) else {
            return Ok(Vec::new());
        };
        let req = CircularRequest {
            ours: self.me,
            out_scid,
            out_peer: source.peer,
            in_scid,
            in_peer: sink.peer,
            amount: Msat(part),
            in_policy: sink.remote_policy,
        };
        let params = RouteParams {
            max_fee: Some(Msat(fee_cap)),
            ..params.clone()
        };
        let now = (self.now)();
        let empty = BeliefView::empty();
        let found = blocking(|| {
            self.service.with_graph(now, |g, _, view| {
                find_circular_routes(g, if beliefs { view } else { &empty }, &req, &params)
            })
        });
        Ok(found.unwrap_or(Ok(Vec::new()))?)
    }

    /// Moves `amount` out through `source` and back in through `sink`, paying at most
    /// `max_ppm` on any part and never more than `budget_left` (reduced by what is spent).
    ///
    /// Each part is sized to what its route will likely carry (`engine::sizing`) under the
    /// liquidity beliefs, which every attempt updates: a failure bounds the failing hop, a
    /// success moves the bounds of every hop it crossed. The next part is routed and sized
    /// afresh on what was learned. The move stops early when no route is likely enough to
    /// be worth an attempt, or when one of our own two channels refuses.
    pub(crate) async fn execute_move(
        &self,
        source: Scid,
        sink: Scid,
        amount: Msat,
        max_ppm: u32,
        budget_left: &mut Msat,
    ) -> Result<MoveReport, ExecError> {
        let Begun { src, dst, mut report } = self.begin(source, sink, amount)?;
        if report.status == ExecStatus::Refused {
            return Ok(report);
        }
        let min_part = self.planner.min_amount.0.max(1);
        let params = RouteParams {
            k: self.planner.k.max(1),
            max_hops: self.planner.max_hops,
            cost: self.planner.cost.clone(),
            ..RouteParams::default()
        };
        let mut remaining = amount.0;
        // The largest part still worth searching for: halved when nothing carries it.
        let mut largest = amount.0;
        let mut in_flight = false;
        let mut failures_in_a_row = 0u32;
        while remaining > 0 && report.attempts < MAX_ATTEMPTS {
            let part_max = largest.min(remaining);
            let part_min = min_part.min(part_max);
            let fee_cap = match self.fee_cap(part_max, max_ppm, *budget_left)? {
                Ok(c) => c,
                Err(why) => {
                    report.reason = why;
                    break;
                }
            };
            let route = match self.choose(src, dst, part_min, part_max, max_ppm, fee_cap, &params)? {
                Choice::Send(route) => route,
                Choice::NoRoute => {
                    // Smaller parts find liquidity where the full amount did not.
                    if part_max / 2 >= min_part {
                        largest = part_max / 2;
                        continue;
                    }
                    report.reason = format!("no route within budget for {part_max} msat or less");
                    break;
                }
                Choice::Unlikely(p) => {
                    report.reason = format!(
                        "no route likely enough to carry even {part_min} msat (best {:.0}%, need {:.0}%)",
                        p * 100.0,
                        MIN_PROBABILITY * 100.0
                    );
                    break;
                }
            };
            // The hard stop: this exact fee against what is left, before sending anything.
            let part_cap = match self.fee_cap(route.amount.0, max_ppm, *budget_left)? {
                Ok(c) => c,
                Err(why) => {
                    report.reason = why;
                    break;
                }
            };
            if route.fee.0 > part_cap {
                report.reason = format!("no route within budget for {} msat", route.amount.0);
                break;
            }
            report.attempts += 1;
            match self
                .attempt(source, sink, &route, true, &mut report.recorded)
                .await?
            {
                AttemptOutcome::Success => {
                    failures_in_a_row = 0;
                    budget_left.0 = budget_left.0.saturating_sub(route.fee.0);
                    report.fee.0 += route.fee.0;
                    report.moved.0 += route.amount.0;
                    remaining = remaining.saturating_sub(route.amount.0);
                }
                AttemptOutcome::Pending => {
                    // Its fee stays counted as spent; do not pile more on top of it.
                    budget_left.0 = budget_left.0.saturating_sub(route.fee.0);
                    report.fee.0 += route.fee.0;
                    report.reason =
                        "an attempt is still in flight; its fee counts as spent until it resolves".into();
                    in_flight = true;
                    break;
                }
                AttemptOutcome::Failed => {
                    failures_in_a_row += 1;
                    if failures_in_a_row >= MAX_FAILURES_IN_A_ROW {
                        report.reason = format!("{failures_in_a_row} attempts in a row failed");
                        break;
                    }
                    let failing = report.recorded.last().and_then(|a| a.failing_channel);
                    if let Some(f) = failing.filter(|f| *f == source || *f == sink) {
                        // Our own side refused (disconnected, or its balance moved since the
                        // channels were listed): another route changes nothing.
                        report.reason = format!("our channel {f} could not carry the payment");
                        break;
                    }
                }
            }
        }
        if remaining > 0 && report.reason.is_empty() {
            report.reason = "attempt limit reached".into();
        }
        report.status = if in_flight {
            ExecStatus::InFlight
        } else if report.moved.0 >= amount.0 {
            ExecStatus::Done
        } else if report.moved.0 > 0 {
            ExecStatus::Partial
        } else {
            ExecStatus::Failed
        };
        Ok(report)
    }

    /// The next part: a route and an amount within `min..=max`, the largest that one of
    /// the `k` cheapest routes carries with chance [`TARGET_PROBABILITY`]. Sizing down
    /// changes which routes exist (and their fees), so routes are searched again at the
    /// sized amount, a few rounds at most; what is sent is always a route found for exactly
    /// its amount.
    #[allow(clippy::too_many_arguments)]
    fn choose(
        &self,
        src: &Channel,
        dst: &Channel,
        min: u64,
        max: u64,
        max_ppm: u32,
        fee_cap_max: u64,
        params: &RouteParams,
    ) -> Result<Choice, ExecError> {
        let mut amount = max;
        let mut fee_cap = fee_cap_max;
        // The best chance seen for the smallest part, for the reason of an early stop.
        let mut best_at_min = 0.0f64;
        // A route short of the target but above the floor, if the next round finds nothing.
        let mut fallback: Option<Route> = None;
        let mut searched = false;
        for _ in 0..SIZING_ROUNDS {
            let routes = self.routes(src, dst, amount, fee_cap, params, true)?;
            if routes.is_empty() {
                // Nothing within budget at this size (a smaller part pays relatively more
                // base fee): as if there were no route at all, unless an earlier size had one.
                searched = false;
                break;
            }
            searched = true;
            let now = (self.now)();
            let judged = blocking(|| {
                self.service.with_graph(now, |g, _, view| {
                    routes
                        .iter()
                        .map(|r| {
                            let hops = sizing::route_liquidity(g, view, &self.me, r, true);
                            (
                                sizing::probability(&hops, amount),
                                sizing::probability(&hops, min),
                                sizing::size(&hops, min, amount, TARGET_PROBABILITY, MIN_PROBABILITY),
                            )
                        })
                        .collect::<Vec<_>>()
                })
            })
            .unwrap_or_default();
            let mut here: Option<(usize, f64)> = None;
            let mut sized: Option<Sizing> = None;
            for (i, (p, p_min, s)) in judged.iter().enumerate() {
                best_at_min = best_at_min.max(*p_min);
                if here.is_none_or(|(_, bp)| *p > bp) {
                    here = Some((i, *p));
                }
                if let Some(s) = s {
                    if sized.is_none_or(|b| (s.amount, s.probability) > (b.amount, b.probability)) {
                        sized = Some(*s);
                    }
                }
            }
            if let Some((i, p)) = here {
                if p >= TARGET_PROBABILITY {
                    return Ok(Choice::Send(routes[i].clone()));
                }
                if p >= MIN_PROBABILITY {
                    fallback = Some(routes[i].clone());
                }
            }
            match sized {
                // Not even the smallest part is likely enough on any of them.
                None => break,
                Some(s) if s.amount.0 >= amount => break,
                Some(s) => {
                    amount = s.amount.0;
                    fee_cap = fee_cap_max.min((amount as u128 * max_ppm as u128 / 1_000_000) as u64);
                }
            }
        }
        Ok(match fallback {
            Some(r) => Choice::Send(r),
            None if searched => Choice::Unlikely(best_at_min),
            None => Choice::NoRoute,
        })
    }

    /// Sends one payment along `route` and records it; learns from its outcome.
    ///
    /// The attempt is recorded as pending (its fee counted as spent) before anything is
    /// sent: if ballast stops mid-payment, the payment can still complete on the node, and
    /// `resolve_pending` finds it later instead of its fee escaping the budget.
    pub async fn attempt(
        &self,
        source: Scid,
        sink: Scid,
        route: &Route,
        learn: bool,
        recorded: &mut Vec<Attempt>,
    ) -> Result<AttemptOutcome, ExecError> {
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
            outcome: AttemptOutcome::Pending,
            failing_channel: None,
            message: String::new(),
        };
        let mut stored = blocking(|| self.service.record_attempt(pending))?;
        let (result, failing, message, failed_at) =
            match self.node.prepare_self_payment(preimage, route.amount).await {
                // Nothing was sent.
                Err(e) => (AttemptOutcome::Failed, None, e.to_string(), None),
                Ok(()) => match self
                    .node
                    .pay_route(&route.to_route_hops(), hash, ATTEMPT_TIMEOUT_SECS)
                    .await
                {
                    Ok(PayOutcome::Success { .. }) => (AttemptOutcome::Success, None, String::new(), None),
                    Ok(PayOutcome::Failed {
                        failing_channel,
                        message,
                        ..
                    }) => {
                        let idx = failing_channel.and_then(|f| route.hops.iter().position(|h| h.scid == f));
                        (AttemptOutcome::Failed, failing_channel, message, idx)
                    }
                    // The wait ended first: the payment may yet succeed.
                    Ok(PayOutcome::InFlight { message }) => (AttemptOutcome::Pending, None, message, None),
                    // The node refused the payment, or knows of none: nothing left.
                    Err(e @ (NodeError::Rejected { .. } | NodeError::UnknownPayment { .. })) => {
                        (AttemptOutcome::Failed, None, e.to_string(), None)
                    }
                    // The connection broke or the answer was unreadable: the HTLC may be out and
                    // may still settle, so it stays pending (fee counted) until resolved.
                    Err(e) => (AttemptOutcome::Pending, None, e.to_string(), None),
                },
            };
        if result != AttemptOutcome::Pending {
            let now = (self.now)();
            // A failure the node could not place (failed_at None on a failure) teaches
            // nothing about liquidity, so only placed failures and successes are learned.
            // Learning is advice: its failure must not keep the outcome from the record.
            if learn && (result == AttemptOutcome::Success || failed_at.is_some()) {
                if let Err(e) = blocking(|| self.service.learn(&self.me, route, failed_at, now)) {
                    log::warn!("rebalance attempt {}: could not learn from it: {e}", stored.id);
                }
            }
            blocking(|| {
                self.service
                    .resolve_attempt(stored.id, result, message.clone(), failing)
            })?;
            stored.outcome = result;
            stored.failing_channel = failing;
        }
        stored.message = message;
        recorded.push(stored);
        Ok(result)
    }
}

#[cfg(test)]
mod tests;
