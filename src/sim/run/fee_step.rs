//! The plugin's fee loop on the simulated clock: channels a forward made due every step,
//! every channel once per sweep, each decided by `FeeService::step` and acted on as
//! `api::fees` acts (apply through the node, then record).

use super::{Sim, FEE_SWEEP_SECS, STEP_SECS, T0};
use crate::engine::fees::{FeeDecision, Status, Trigger};
use crate::node::{FeeUpdate, Node};
use serde_json::json;

impl Sim<'_> {
    pub(super) fn fee_step(&mut self) {
        let due = self.fees.take_due(self.now);
        let sweep = (self.now - T0) % FEE_SWEEP_SECS == FEE_SWEEP_SECS - STEP_SECS;
        for scid in due {
            // Each due channel on a fresh listing, as the plugin reads one per decision.
            let Ok(channels) = self.rt.block_on(node!(self).channels()) else {
                return;
            };
            for d in self.fees.step(&channels, Some(scid), &self.svc, self.now) {
                self.act(&d, Trigger::Forward);
            }
        }
        if sweep {
            let Ok(channels) = self.rt.block_on(node!(self).channels()) else {
                return;
            };
            for d in self.fees.step(&channels, None, &self.svc, self.now) {
                self.act(&d, Trigger::Timer);
            }
        }
    }

    /// Applies a decision that says so and records it; a dry-run decision is only recorded.
    fn act(&mut self, d: &FeeDecision, trigger: Trigger) {
        if d.status.applies() {
            let fee = FeeUpdate {
                base: d.target.base_msat,
                ppm: d.target.ppm,
            };
            if self.rt.block_on(node!(self).set_fee(d.scid, fee)).is_err() {
                return;
            }
            self.s.fee_changes += 1;
            self.trace
                .fee_series
                .entry(d.scid)
                .or_default()
                .push((self.now, d.target.ppm));
            self.ev.emit(
                json!({"t": self.now, "type": "fee_change", "scid": d.scid.to_string(), "trigger": trigger.to_string(),
                "old_ppm": d.current.ppm, "new_ppm": d.target.ppm, "base_msat": d.target.base_msat.0,
                "rule": d.rule.as_ref().map(|r| r.name.clone()), "why": d.explanation}),
            );
        } else if d.status != Status::DryRun {
            return;
        }
        let _ = self.fees.record(d, trigger, self.now);
    }
}
