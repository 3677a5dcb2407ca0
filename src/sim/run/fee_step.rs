//! The plugin's fee loop on the simulated clock: channels a forward made due every step,
//! every channel once per sweep, each decided by `FeeService::step` and acted on as
//! `api::fees` acts (apply through the node, then record).

use super::{Sim, FEE_SWEEP_SECS, STEP_SECS, T0};
use crate::engine::fees::{FeeDecision, Trigger};
use crate::node::Node;
use crate::service::fees::ActError;
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

    /// Acts on a decision through the same `FeeService::act` as the plugin, then traces
    /// what reached the node.
    fn act(&mut self, d: &FeeDecision, trigger: Trigger) {
        let node = node!(self);
        let acted = self.rt.block_on(self.fees.act(&node, d, trigger, self.now));
        drop(node);
        if matches!(acted, Err(ActError::Node(_))) || !d.status.applies() {
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
    }
}
