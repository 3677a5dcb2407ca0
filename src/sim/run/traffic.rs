//! Payments over the network: traffic between other nodes, HTLCs pending on our channels,
//! settled forwards through our node (fed to the fee service as the plugin feeds it), and
//! our peers going away and coming back.

use super::{
    Sim, DISCONNECT_MINS, DISCONNECT_PER_MIN, HODL_FINAL_CLTV, PAY_ATTEMPTS, SETTLE_SECS, STEP_SECS,
};
use crate::node::{Forward, ForwardStatus, HtlcDirection};
use crate::sim::network::{htlc, PathHop, Sent};
use crate::types::{Msat, Preimage};
use serde_json::json;

/// A payment whose HTLCs are still out (offered, not yet settled) at the end of a minute.
pub(super) struct Settling {
    path: Vec<PathHop>,
    amounts: Vec<u64>,
    /// (our channel index, htlc id) entries it added to `htlcs`.
    ours: Vec<(u32, u64)>,
}

/// Distinct bytes per simulated HTLC, for their payment hashes.
fn sim_hash_seed(id: u64) -> [u8; 32] {
    let mut b = [0x5a; 32];
    b[..8].copy_from_slice(&id.to_be_bytes());
    b
}

impl Sim<'_> {
    fn pick_node(&mut self) -> u32 {
        // Anyone but us; rng use does not depend on engine state.
        let n = self.net.ids.len() as u64;
        let mut v = self.traffic.below(n - 1) as u32;
        if v >= self.net.ours {
            v += 1;
        }
        v
    }

    /// Pays `amount` from `from` to `to`, retrying around failed hops. Returns the path and
    /// hop amounts of the successful attempt.
    pub(super) fn pay(
        &mut self,
        from: u32,
        to: u32,
        amount: u64,
        hold: bool,
    ) -> Option<(Vec<PathHop>, Vec<u64>)> {
        let mut exclude: Vec<PathHop> = Vec::new();
        for _ in 0..PAY_ATTEMPTS {
            let path = self.net.find_path(from, to, amount, &exclude, self.now)?;
            let amounts = self.net.hop_amounts(&path, amount);
            match self.net.send(&path, &amounts, hold) {
                Sent::Done { amounts } => return Some((path, amounts)),
                Sent::Failed { at } => {
                    let hop = path[at];
                    self.net.channels[hop.0 as usize].failed[hop.1 as usize] = (self.now, amounts[at]);
                    if at > 0 && self.net.hop_from(hop) == self.net.ours {
                        // Failed at our outgoing channel: a local failure in listforwards.
                        self.s.forwards_failed += 1;
                        let in_scid = self.net.channels[path[at - 1].0 as usize].scid;
                        let out_scid = self.net.channels[hop.0 as usize].scid;
                        self.ev.emit(json!({"t": self.now, "type": "forward", "status": "local_failed",
                            "in": in_scid.to_string(), "out": out_scid.to_string(), "in_msat": amounts[at - 1], "out_msat": amounts[at]}));
                    }
                    exclude.push(hop);
                }
            }
        }
        None
    }

    pub(super) fn traffic_step(&mut self) {
        let rate = self.p.payments_per_min;
        let mut k = rate.floor() as u64;
        if self.traffic.chance(rate - rate.floor()) {
            k += 1;
        }
        for _ in 0..k {
            let from = self.pick_node();
            let mut to = self.pick_node();
            if to == from {
                to = self.pick_node();
            }
            let amount = self.traffic.log_range(1_000_000, 500_000_000);
            // When in the minute it starts and how long it takes: drawn for every payment,
            // so the stream does not depend on what the engine did.
            let start = self.traffic.below(STEP_SECS);
            let takes = self.traffic.range(SETTLE_SECS.0, SETTLE_SECS.1 + 1);
            if to == from {
                continue;
            }
            let pending = start + takes >= STEP_SECS;
            self.s.payments += 1;
            match self.pay(from, to, amount, pending) {
                Some((path, amounts)) => {
                    self.s.payments_ok += 1;
                    self.ev.emit(json!({"t": self.now, "type": "payment", "ok": true, "msat": amount, "hops": path.len()}));
                    if pending {
                        self.hold_pending(path, amounts);
                    } else {
                        self.note_forwards(&path, &amounts);
                    }
                }
                None => {
                    self.ev
                        .emit(json!({"t": self.now, "type": "payment", "ok": false, "msat": amount}));
                }
            }
        }
    }

    /// A payment still settling: its HTLCs stay locked on every hop, and those through our
    /// node show on our channels, until the next minute settles it.
    fn hold_pending(&mut self, path: Vec<PathHop>, amounts: Vec<u64>) {
        let mut ours = Vec::new();
        let expiry = self.height + HODL_FINAL_CLTV * path.len() as u32;
        for i in 1..path.len() {
            if self.net.hop_from(path[i]) != self.net.ours {
                continue;
            }
            let id = self.next_htlc;
            self.next_htlc += 1;
            let hash = Preimage(sim_hash_seed(id)).payment_hash();
            let (inc, out) = (path[i - 1].0, path[i].0);
            self.htlcs.entry(inc).or_default().push(htlc(
                HtlcDirection::In,
                id,
                amounts[i - 1],
                expiry,
                hash,
            ));
            self.htlcs
                .entry(out)
                .or_default()
                .push(htlc(HtlcDirection::Out, id, amounts[i], expiry, hash));
            ours.push((inc, id));
            ours.push((out, id));
        }
        self.settling.push(Settling { path, amounts, ours });
    }

    /// Settles the payments left pending by the previous minute.
    pub(super) fn settle_step(&mut self) {
        for st in std::mem::take(&mut self.settling) {
            self.net.resolve(&st.path, &st.amounts, true);
            for (ci, id) in st.ours {
                if let Some(v) = self.htlcs.get_mut(&ci) {
                    v.retain(|h| h.id != id);
                }
            }
            self.note_forwards(&st.path, &st.amounts);
        }
    }

    /// Peers of our channels going away and coming back (from their own stream).
    pub(super) fn links_step(&mut self) {
        let now = self.now;
        let mut back = Vec::new();
        self.reconnects.retain(|&(at, ci)| {
            let due = at <= now;
            if due {
                back.push(ci);
            }
            !due
        });
        for ci in back {
            self.net.channels[ci as usize].down = false;
            let scid = self.net.channels[ci as usize].scid;
            self.ev
                .emit(json!({"t": now, "type": "peer", "scid": scid.to_string(), "connected": true}));
        }
        if !self.links.chance(DISCONNECT_PER_MIN) {
            return;
        }
        let pick = self
            .links
            .below(self.net.adj[self.net.ours as usize].len() as u64) as usize;
        let mins = self.links.range(DISCONNECT_MINS.0, DISCONNECT_MINS.1 + 1);
        let ci = self.net.adj[self.net.ours as usize][pick].0;
        if self.net.channels[ci as usize].down {
            return;
        }
        self.net.channels[ci as usize].down = true;
        self.reconnects.push((now + mins * 60, ci));
        self.s.disconnects += 1;
        let scid = self.net.channels[ci as usize].scid;
        self.ev.emit(
            json!({"t": now, "type": "peer", "scid": scid.to_string(), "connected": false, "minutes": mins}),
        );
    }

    pub(super) fn note_forwards(&mut self, path: &[PathHop], amounts: &[u64]) {
        for i in 1..path.len() {
            if self.net.hop_from(path[i]) != self.net.ours {
                continue;
            }
            let in_scid = self.net.channels[path[i - 1].0 as usize].scid;
            let out_scid = self.net.channels[path[i].0 as usize].scid;
            let (inn, out) = (amounts[i - 1], amounts[i]);
            let fee = inn - out;
            self.s.forwards += 1;
            self.s.forwarded_msat += out;
            self.s.fees_earned_msat += fee;
            self.trace.forwards.push(Forward {
                in_channel: in_scid,
                out_channel: Some(out_scid),
                in_msat: Msat(inn),
                out_msat: Some(Msat(out)),
                fee: Some(Msat(fee)),
                status: ForwardStatus::Settled,
                received_time: self.now as f64,
                resolved_time: Some(self.now as f64),
            });
            self.ev.emit(
                json!({"t": self.now, "type": "forward", "status": "settled", "in": in_scid.to_string(),
                "out": out_scid.to_string(), "in_msat": inn, "out_msat": out, "fee_msat": fee}),
            );
            // What the plugin does on a settled forward_event.
            self.fees
                .on_forward(in_scid, Some(out_scid), Msat(inn), Msat(out), self.now);
        }
    }
}
