//! The plugin's automatic rebalance round on the simulated node: a plan from its channels
//! and graph, each planned move executed by the chosen rebalancer.

use super::Sim;
use crate::engine::planner::{plan, MoveStatus, PlanRequest};
use crate::node::Node;
use crate::service::execute::Executor;
use crate::sim::{baseline, Rebalancer};
use crate::types::Msat;
use serde_json::json;

impl Sim<'_> {
    /// The gossip graph from the node, into the service (the plugin's graph refresher).
    pub(super) fn refresh_graph(&mut self) {
        if let Ok(edges) = self.rt.block_on(node!(self).graph()) {
            let _ = self.svc.refresh_graph(&edges);
        }
    }

    /// The plugin's automatic round: a plan from the node's channels and graph, then each
    /// planned move through `service::execute` with our `SimNode` paying.
    pub(super) fn rebalance_step(&mut self) {
        self.refresh_graph();
        let now = self.now;
        let node = node!(self);
        let Ok(channels) = self.rt.block_on(node.channels()) else {
            return;
        };
        let me = node.id();
        // Resting pairs are ballast's; the baseline learns nothing across moves.
        let resting = match self.p.rebalancer {
            Rebalancer::Ballast => self.svc.resting_pairs(now),
            Rebalancer::Baseline => Vec::new(),
        };
        let planned = self.svc.with_graph(now, |graph, beliefs, _| {
            plan(&PlanRequest {
                ours: me,
                channels: &channels,
                graph,
                beliefs,
                config: &self.planner,
                feerate_perkb: None,
                now,
                resting: &resting,
            })
        });
        let Some(Ok(pl)) = planned else { return };
        self.s.rebalance_plans += 1;
        self.executions += 1;
        let exec_id = format!("sim-{}", self.executions);
        let clock = move || now;
        let exec = Executor {
            service: &self.svc,
            node: &node,
            planner: &self.planner,
            daily_budget: Msat(self.policy.daily_budget_msat),
            now: &clock,
            me,
            exec_id: &exec_id,
            channels: &channels,
        };
        let mut reports = Vec::new();
        let mut budget_left = Msat(u64::MAX);
        for mv in pl.moves.iter().filter(|m| m.status == MoveStatus::Planned) {
            let max_ppm = self.policy.max_ppm.min(mv.fee_cap_ppm);
            let (src, snk) = (mv.source_scid, mv.sink_scid);
            let done = match self.p.rebalancer {
                Rebalancer::Ballast => {
                    let run = exec.execute_move(src, snk, mv.amount, max_ppm, &mut budget_left);
                    self.rt.block_on(run)
                }
                Rebalancer::Baseline => {
                    let run = baseline::execute_move(&exec, src, snk, mv.amount, max_ppm, &mut budget_left);
                    self.rt.block_on(run)
                }
            };
            match done {
                Ok(r) => reports.push(r),
                Err(e) => {
                    self.ev
                        .emit(json!({"t": now, "type": "rebalance_error", "error": e.to_string()}));
                }
            }
        }
        drop(node);
        for r in reports {
            self.ev.emit(json!({"t": now, "type": "rebalance_move", "source": r.source.to_string(), "sink": r.sink.to_string(),
                "requested_msat": r.requested.0, "moved_msat": r.moved.0, "fee_msat": r.fee.0, "attempts": r.attempts,
                "status": r.status.as_str(), "reason": r.reason}));
            if r.reason.starts_with("daily budget") {
                self.s.rebalance_budget_stops += 1;
            }
            for a in &r.recorded {
                let ok = a.outcome == crate::service::rebalance::AttemptOutcome::Success;
                self.s.rebalance_attempts += 1;
                if ok {
                    self.s.rebalance_ok += 1;
                    self.s.rebalance_moved_msat += a.amount.0;
                    self.s.rebalance_spend_msat += a.fee.0;
                    let ppm = (a.fee.0 as u128 * 1_000_000 / a.amount.0.max(1) as u128) as u64;
                    self.s.rebalance_max_ppm = self.s.rebalance_max_ppm.max(ppm);
                }
                let failed_at = a
                    .failing_channel
                    .and_then(|f| a.route.iter().position(|s| *s == f));
                self.ev.emit(json!({"t": now, "type": "rebalance", "source": a.source.to_string(), "sink": a.sink.to_string(),
                    "msat": a.amount.0, "fee_msat": a.fee.0, "hops": a.route.len(), "ok": ok, "failed_at": failed_at}));
            }
            if r.moved.0 > 0 {
                let spent = self
                    .svc
                    .spent_since(now.saturating_sub(86_400))
                    .map_or(0, |m| m.0);
                self.s.max_24h_spend_msat = self.s.max_24h_spend_msat.max(spent);
            }
        }
    }
}
