//! Hold invoices on our node: created and paid by the simulated world, settled or canceled
//! by "the application", held and released through the plugin's `HodlService`.

use super::{Sim, HODL_FINAL_CLTV};
use crate::engine::hodl::{CancelReason, HodlInvoice, HodlState, HtlcKey, IncomingHtlc};
use crate::service::hodl::{HodlEvent, HtlcReply};
use crate::sim::network::{held_htlc, PathHop};
use crate::types::{Msat, PaymentHash, Preimage};
use serde_json::json;
use tokio::sync::broadcast;

pub(super) struct Held {
    invoice: usize,
    path: Vec<PathHop>,
    amounts: Vec<u64>,
    chan: u32,
    htlc_id: u64,
    /// The service's answer channel, kept open as lightningd keeps the hook call waiting:
    /// a settle needs every part held by a live hook call.
    _hook: Option<tokio::sync::oneshot::Receiver<crate::service::hodl::Answer>>,
}

#[derive(Debug, Clone, Copy)]
enum Fate {
    Settle,
    Cancel,
    Ignore,
}

impl Sim<'_> {
    pub(super) fn hodl_step(&mut self) {
        // Scheduled settles and cancels by "the application".
        while let Some((&(due, seq), &(hi, settle))) = self.actions.iter().next() {
            if due > self.now {
                break;
            }
            self.actions.remove(&(due, seq));
            let hash = self.hashes[self.held[hi].invoice];
            if self.hodl.get(&hash).map(|i| i.state) != Some(HodlState::Accepted) {
                continue;
            }
            // As an app would: settle by hash (ballast made the preimage) or cancel. An
            // illegal transition (a deadline got there first) changes nothing.
            let _ = if settle {
                self.hodl
                    .settle(None, Some(hash), self.now, self.height)
                    .map(|_| ())
            } else {
                self.hodl
                    .cancel(hash, CancelReason::Requested, self.now, self.height)
                    .map(|_| ())
            };
            self.drain_hodl();
        }
        // New invoices. Their fate is drawn now, from the hodl stream only.
        if !self.hodl_rng.chance(self.p.hodl_per_min) {
            return;
        }
        let amount = self.hodl_rng.log_range(10_000_000, 300_000_000);
        let preimage = Preimage(self.hodl_rng.bytes32());
        let secret = self.hodl_rng.bytes32();
        let roll = self.hodl_rng.unit();
        let delay = 60 * self.hodl_rng.range(1, 181);
        let payer_pick = self.hodl_rng.below(self.net.ids.len() as u64 - 1) as u32;
        let payer = if payer_pick >= self.net.ours {
            payer_pick + 1
        } else {
            payer_pick
        };
        let (pays, fate) = match roll {
            r if r < 0.55 => (true, Fate::Settle),
            r if r < 0.80 => (true, Fate::Cancel),
            r if r < 0.95 => (true, Fate::Ignore),
            _ => (false, Fate::Ignore),
        };
        let hash: PaymentHash = preimage.payment_hash();
        let idx = self.hashes.len();
        self.hashes.push(hash);
        let created = self.hodl.create(HodlInvoice {
            payment_hash: hash,
            preimage: Some(preimage),
            payment_secret: secret,
            amount: Msat(amount),
            bolt11: String::new(),
            label: Some(format!("sim-{idx}")),
            description: None,
            created_at: self.now,
            expires_at: self.now + 3_600,
            min_final_cltv: 18,
            state: HodlState::Open,
            htlcs: Vec::new(),
            mpp_total: None,
            updated_at: self.now,
            cancel_reason: None,
        });
        if created.is_err() {
            // A store failure on the temporary store: nothing to simulate for this one.
            return;
        }
        self.s.hodl_created += 1;
        self.ev.emit(
            json!({"t": self.now, "type": "hodl", "hash": hash.to_hex(), "state": "open", "msat": amount}),
        );
        if !pays {
            return;
        }
        let ours = self.net.ours;
        let Some((path, amounts)) = self.pay(payer, ours, amount, true) else {
            return;
        };
        let last = *path.last().expect("non-empty path");
        let chan = last.0;
        let id = self.next_htlc;
        self.next_htlc += 1;
        let htlc = IncomingHtlc {
            key: HtlcKey {
                scid: self.net.channels[chan as usize].scid,
                id,
            },
            amount: Msat(amounts[amounts.len() - 1]),
            cltv_expiry: self.height + HODL_FINAL_CLTV,
            cltv_expiry_relative: HODL_FINAL_CLTV,
            payment_secret: Some(secret),
            total_msat: None,
        };
        let mut reply = self.hodl.on_htlc(hash, &htlc, self.now, self.height);
        let hook = match &mut reply {
            Ok(HtlcReply::Wait(rx)) => {
                let (_, closed) = tokio::sync::oneshot::channel();
                Some(std::mem::replace(rx, closed))
            }
            _ => None,
        };
        let hi = self.held.len();
        self.held.push(Held {
            invoice: idx,
            path,
            amounts,
            chan,
            htlc_id: id,
            _hook: hook,
        });
        match reply {
            // The answer arrives through the service's events (settle, cancel, deadline),
            // as it does for the plugin's waiting hook.
            Ok(HtlcReply::Wait(_)) => {
                self.htlcs.entry(chan).or_default().push(held_htlc(
                    id,
                    htlc.amount.0,
                    htlc.cltv_expiry,
                    hash,
                ));
                self.held_of.insert(hash, hi);
                self.drain_hodl();
                let seq = hi as u64;
                match fate {
                    Fate::Settle => {
                        self.actions.insert((self.now + delay, seq), (hi, true));
                    }
                    Fate::Cancel => {
                        self.actions.insert((self.now + delay, seq), (hi, false));
                    }
                    Fate::Ignore => {}
                }
            }
            _ => {
                let h = &self.held[hi];
                let (p, a) = (h.path.clone(), h.amounts.clone());
                self.net.resolve(&p, &a, false);
            }
        }
    }

    /// Resolves a held payment (settle or fail back) after its invoice changed state.
    fn release(&mut self, hi: usize, settle: bool, from: HodlState, to: HodlState, why: &str) {
        let (path, amounts, chan, id, inv) = {
            let h = &self.held[hi];
            (h.path.clone(), h.amounts.clone(), h.chan, h.htlc_id, h.invoice)
        };
        self.net.resolve(&path, &amounts, settle);
        if let Some(v) = self.htlcs.get_mut(&chan) {
            v.retain(|h| h.id != id);
        }
        if settle {
            let got = amounts[amounts.len() - 1];
            self.s.hodl_received_msat += got;
            self.trace.hodl_paid.push((Msat(got), self.now));
            self.note_forwards(&path, &amounts);
        }
        let hash = self.hashes[inv].to_hex();
        self.ev.emit(json!({"t": self.now, "type": "hodl", "hash": hash, "from": from.as_str(), "state": to.as_str(), "reason": why}));
    }

    /// Acts on the hold-invoice service's transitions: a final state releases the held
    /// payment (settled or failed back along its path), every change becomes an event.
    pub(super) fn drain_hodl(&mut self) {
        loop {
            let e = match self.hodl_events.try_recv() {
                Ok(e) => e,
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    // Cannot happen at this pace (drained after every call); if it did,
                    // held payments would stay locked, and the event says so.
                    self.ev
                        .emit(json!({"t": self.now, "type": "hodl_events_lost", "count": n}));
                    continue;
                }
                Err(_) => return,
            };
            match e {
                HodlEvent::State {
                    payment_hash,
                    from,
                    to,
                    reason,
                } => {
                    let why = reason.map_or_else(
                        || "requested".to_string(),
                        |r| {
                            serde_json::to_value(r)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_string))
                                .unwrap_or_default()
                        },
                    );
                    let held = to
                        .is_final()
                        .then(|| self.held_of.remove(&payment_hash))
                        .flatten();
                    match held {
                        Some(hi) => self.release(hi, to == HodlState::Settled, from, to, &why),
                        None => self.ev.emit(json!({"t": self.now, "type": "hodl", "hash": payment_hash.to_hex(), "from": from.as_str(), "state": to.as_str()})),
                    }
                }
                HodlEvent::DeadlineWarning {
                    payment_hash,
                    blocks_to_cancel,
                } => {
                    self.ev.emit(json!({"t": self.now, "type": "hodl_warning", "hash": payment_hash.to_hex(), "blocks_to_cancel": blocks_to_cancel}));
                }
                HodlEvent::PartsReleased { .. } => {}
            }
        }
    }
}
