//! The hold-invoice state machine.
//!
//! OPEN → ACCEPTED (the full amount is held) → SETTLED | CANCELED; OPEN → EXPIRED when the
//! invoice expires unpaid; OPEN → CANCELED when the caller gives up early. Everything here is
//! a pure function of the invoice, the incoming HTLC and the clock/height passed in, so the
//! plugin, the LND sidecar and the simulator make identical decisions.

use crate::types::{Msat, PaymentHash, Preimage, Scid};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HodlState {
    Open,
    Accepted,
    Settled,
    Canceled,
    Expired,
}

impl HodlState {
    pub fn as_str(self) -> &'static str {
        match self {
            HodlState::Open => "OPEN",
            HodlState::Accepted => "ACCEPTED",
            HodlState::Settled => "SETTLED",
            HodlState::Canceled => "CANCELED",
            HodlState::Expired => "EXPIRED",
        }
    }

    pub(crate) fn is_final(self) -> bool {
        matches!(
            self,
            HodlState::Settled | HodlState::Canceled | HodlState::Expired
        )
    }

    pub fn parse(s: &str) -> Option<HodlState> {
        match s.to_ascii_uppercase().as_str() {
            "OPEN" => Some(HodlState::Open),
            "ACCEPTED" => Some(HodlState::Accepted),
            "SETTLED" => Some(HodlState::Settled),
            "CANCELED" | "CANCELLED" => Some(HodlState::Canceled),
            "EXPIRED" => Some(HodlState::Expired),
            _ => None,
        }
    }
}

impl fmt::Display for HodlState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies an HTLC across restarts: lightningd replays it with the same channel and id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct HtlcKey {
    pub scid: Scid,
    pub id: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeldHtlc {
    pub key: HtlcKey,
    pub amount: Msat,
    pub cltv_expiry: u32,
    /// Unix seconds when we first saw it.
    pub arrived_at: u64,
    /// Answered with a failure when the plugin stopped while the invoice was unsettled. If
    /// lightningd was going down too, it ignored that answer and replays the HTLC at its
    /// next start (which clears this); if only the plugin stopped, the HTLC is gone.
    #[serde(default)]
    pub released_at_stop: bool,
}

/// Why an invoice was canceled, for the record and the notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancelReason {
    /// The caller asked (`hodl-cancel`).
    Requested,
    /// The earliest held HTLC came within `cancel_blocks` of its expiry.
    Deadline,
    /// The plugin was stopped while HTLCs were held.
    Shutdown,
    /// The node no longer holds the invoice's HTLCs for ballast (ballast died while
    /// holding them and the node failed them, or the peer's channel went on chain):
    /// nothing is left to settle.
    HtlcsLost,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HodlInvoice {
    pub payment_hash: PaymentHash,
    /// Known from the start when ballast made the preimage, otherwise once the caller
    /// settles. Shown to callers only once SETTLED.
    pub preimage: Option<Preimage>,
    pub payment_secret: [u8; 32],
    pub amount: Msat,
    pub bolt11: String,
    pub label: Option<String>,
    pub description: Option<String>,
    pub created_at: u64,
    pub expires_at: u64,
    pub min_final_cltv: u32,
    pub state: HodlState,
    /// HTLCs currently held (OPEN/ACCEPTED) or that were resolved by the final state.
    pub htlcs: Vec<HeldHtlc>,
    /// The `total_msat` the payer announced with the first part; later parts must agree.
    pub mpp_total: Option<Msat>,
    pub updated_at: u64,
    pub cancel_reason: Option<CancelReason>,
}

/// What the HTLC in the hook should get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HtlcVerdict {
    /// Keep it until settle, cancel or a timeout wakes its waiter.
    Hold,
    /// Claim it now with this preimage (a replay after settle).
    Resolve(Preimage),
    /// Fail it back with this BOLT 4 failure message.
    Fail(Failure),
}

/// BOLT 4 failure messages a final node returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// 0x400f (PERM|15), with the HTLC amount and our height, as BOLT 4 requires.
    IncorrectOrUnknownPaymentDetails { htlc_msat: Msat, height: u32 },
    /// 0x0017: an MPP set did not complete in time.
    MppTimeout,
}

impl Failure {
    pub fn code(self) -> u16 {
        match self {
            Failure::IncorrectOrUnknownPaymentDetails { .. } => 0x400f,
            Failure::MppTimeout => 0x0017,
        }
    }

    /// The failure message as the hook's `failure_message` hex expects it.
    pub fn to_hex(self) -> String {
        let mut b = self.code().to_be_bytes().to_vec();
        if let Failure::IncorrectOrUnknownPaymentDetails { htlc_msat, height } = self {
            b.extend_from_slice(&htlc_msat.0.to_be_bytes());
            b.extend_from_slice(&height.to_be_bytes());
        }
        hex::encode(b)
    }
}

/// An HTLC for one of our invoices, as the hook reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IncomingHtlc {
    pub key: HtlcKey,
    pub amount: Msat,
    pub cltv_expiry: u32,
    pub cltv_expiry_relative: u32,
    /// From the onion; absent on legacy payloads, which we refuse.
    pub payment_secret: Option<[u8; 32]>,
    pub total_msat: Option<Msat>,
}

/// Knobs that come from options, passed in so the engine reads no globals.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HodlParams {
    /// Cancel an ACCEPTED invoice when its earliest HTLC is this close to expiry, and refuse
    /// to settle it from here on. The effective value, never below
    /// [`fulfil_deadline_floor`] of the node's `cltv-delta` (see [`effective_cancel_blocks`]).
    pub cancel_blocks: u32,
    /// Warn this many blocks before the auto-cancel.
    pub warn_blocks: u32,
    /// Fail an incomplete MPP set after this many seconds.
    pub mpp_timeout_secs: u64,
}

impl Default for HodlParams {
    fn default() -> Self {
        HodlParams {
            cancel_blocks: 10,
            warn_blocks: 6,
            mpp_timeout_secs: 60,
        }
    }
}

/// The fewest blocks before an HTLC's expiry at which a settle is still safe on Core
/// Lightning, for a node whose `cltv-delta` is `cltv_delta`.
///
/// lightningd fails the channel when an HTLC it has fulfilled is still in a commitment
/// transaction at `cltv_expiry - (cltv_delta + 1) / 2` (`htlc_in_deadline` in
/// lightningd/peer_htlcs.c). A settle needs the peer to acknowledge the fulfil before that
/// height, so ballast stops settling two blocks earlier still: at `(cltv_delta + 1) / 2 + 2`
/// blocks left it cancels instead.
pub(crate) fn fulfil_deadline_floor(cltv_delta: u32) -> u32 {
    cltv_delta.saturating_add(1) / 2 + 2
}

/// The cancel window ballast applies: the configured one, raised to the node's fulfilment
/// deadline floor when that is larger. Returns the window and whether it was raised.
pub(crate) fn effective_cancel_blocks(configured: u32, cltv_delta: u32) -> (u32, bool) {
    let floor = fulfil_deadline_floor(cltv_delta);
    if floor > configured {
        (floor, true)
    } else {
        (configured, false)
    }
}

/// The result of feeding an HTLC to an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HtlcOutcome {
    pub verdict: HtlcVerdict,
    /// Set when the invoice changed state (it must be persisted and announced).
    pub transition: Option<(HodlState, HodlState)>,
    /// True when the invoice record changed at all (a part was added).
    pub changed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HodlError {
    #[error("invoice is {current}; cannot {action}")]
    IllegalTransition {
        current: HodlState,
        action: &'static str,
    },
    #[error("preimage does not hash to this invoice's payment_hash")]
    WrongPreimage,
    /// Settling now could get the channel force-closed: the earliest held HTLC expires in
    /// `blocks_left` blocks, inside the `window` in which ballast only cancels.
    #[error(
        "too late to settle: the earliest HTLC expires in {blocks_left} block(s), inside the {window}-block window in which a fulfilled HTLC could force-close the channel"
    )]
    TooLate { blocks_left: i64, window: u32 },
}

impl HodlInvoice {
    pub fn received(&self) -> Msat {
        Msat(self.htlcs.iter().map(|h| h.amount.0).sum())
    }

    fn set_state(&mut self, to: HodlState, now: u64) -> (HodlState, HodlState) {
        let from = self.state;
        self.state = to;
        self.updated_at = now;
        (from, to)
    }

    /// Decides an incoming HTLC for this invoice.
    pub(crate) fn on_htlc(
        &mut self,
        htlc: &IncomingHtlc,
        now: u64,
        height: u32,
        p: &HodlParams,
    ) -> HtlcOutcome {
        let fail = |changed| HtlcOutcome {
            verdict: HtlcVerdict::Fail(Failure::IncorrectOrUnknownPaymentDetails {
                htlc_msat: htlc.amount,
                height,
            }),
            transition: None,
            changed,
        };
        let hold = |transition, changed| HtlcOutcome {
            verdict: HtlcVerdict::Hold,
            transition,
            changed,
        };

        // A replay (lightningd restarted, or we did) gets the answer its invoice's state
        // implies, without being counted twice.
        if let Some(h) = self.htlcs.iter_mut().find(|h| h.key == htlc.key) {
            let was_released = std::mem::replace(&mut h.released_at_stop, false);
            if was_released {
                self.updated_at = now;
            }
            return match (self.state, self.preimage) {
                (HodlState::Settled, Some(pre)) => HtlcOutcome {
                    verdict: HtlcVerdict::Resolve(pre),
                    transition: None,
                    changed: was_released,
                },
                (HodlState::Open | HodlState::Accepted, _) => hold(None, was_released),
                _ => fail(was_released),
            };
        }

        // Only an OPEN invoice takes new parts: a complete set is not topped up, and final
        // states take nothing.
        if self.state != HodlState::Open {
            return fail(false);
        }
        if now >= self.expires_at {
            return fail(false);
        }
        let Some(secret) = htlc.payment_secret else {
            return fail(false);
        };
        if secret != self.payment_secret {
            return fail(false);
        }
        // Without total_msat (a single-part payment) the part's own amount is the total.
        let total = htlc.total_msat.unwrap_or(htlc.amount);
        // Overpaying up to twice the amount is allowed (BOLT 4), as an obfuscation aid.
        if total < self.amount || total.0 > self.amount.0.saturating_mul(2) {
            return fail(false);
        }
        if let Some(expected) = self.mpp_total {
            if expected != total {
                return fail(false);
            }
        }
        if htlc.cltv_expiry_relative < self.min_final_cltv {
            return fail(false);
        }
        // An HTLC already inside the auto-cancel window could never be settled safely.
        if htlc.cltv_expiry <= height.saturating_add(p.cancel_blocks) {
            return fail(false);
        }
        let sum = self.received().0.saturating_add(htlc.amount.0);
        if sum > total.0 {
            // More than the payer said it would send: not a part of this set.
            return fail(false);
        }

        self.mpp_total = Some(total);
        self.htlcs.push(HeldHtlc {
            key: htlc.key,
            amount: htlc.amount,
            cltv_expiry: htlc.cltv_expiry,
            arrived_at: now,
            released_at_stop: false,
        });
        self.updated_at = now;
        if sum >= total.0 {
            let t = self.set_state(HodlState::Accepted, now);
            hold(Some(t), true)
        } else {
            hold(None, true)
        }
    }

    /// Settles with `preimage` at `height`; returns the HTLCs to resolve. Refused (and
    /// nothing changes) when the earliest HTLC is inside the cancel window: the caller
    /// should cancel instead.
    pub fn settle(
        &mut self,
        preimage: Preimage,
        now: u64,
        height: u32,
        p: &HodlParams,
    ) -> Result<(Vec<HtlcKey>, (HodlState, HodlState)), HodlError> {
        if preimage.payment_hash() != self.payment_hash {
            return Err(HodlError::WrongPreimage);
        }
        if self.state != HodlState::Accepted {
            return Err(HodlError::IllegalTransition {
                current: self.state,
                action: "settle (only an ACCEPTED invoice can be settled)",
            });
        }
        if let Some(left) = self.blocks_left(height) {
            if left <= p.cancel_blocks as i64 {
                return Err(HodlError::TooLate {
                    blocks_left: left,
                    window: p.cancel_blocks,
                });
            }
        }
        self.preimage = Some(preimage);
        let t = self.set_state(HodlState::Settled, now);
        Ok((self.htlcs.iter().map(|h| h.key).collect(), t))
    }

    /// Cancels; returns the HTLCs to fail back.
    pub fn cancel(
        &mut self,
        reason: CancelReason,
        now: u64,
    ) -> Result<(Vec<HtlcKey>, (HodlState, HodlState)), HodlError> {
        if !matches!(self.state, HodlState::Open | HodlState::Accepted) {
            return Err(HodlError::IllegalTransition {
                current: self.state,
                action: "cancel",
            });
        }
        self.cancel_reason = Some(reason);
        let t = self.set_state(HodlState::Canceled, now);
        Ok((self.htlcs.iter().map(|h| h.key).collect(), t))
    }

    /// Fails an incomplete MPP set whose first part has waited too long. The invoice stays
    /// OPEN so the payer can try again; returns the parts to fail.
    pub fn mpp_timeout(&mut self, now: u64, p: &HodlParams) -> Vec<HtlcKey> {
        if self.state != HodlState::Open || self.htlcs.is_empty() {
            return Vec::new();
        }
        let first = self.htlcs.iter().map(|h| h.arrived_at).min().unwrap_or(now);
        if now.saturating_sub(first) < p.mpp_timeout_secs {
            return Vec::new();
        }
        self.release_parts(now)
    }

    /// Drops the parts of an incomplete set (OPEN only); returns them to fail back.
    pub(crate) fn release_parts(&mut self, now: u64) -> Vec<HtlcKey> {
        if self.state != HodlState::Open {
            return Vec::new();
        }
        let keys = self.htlcs.drain(..).map(|h| h.key).collect();
        self.mpp_total = None;
        self.updated_at = now;
        keys
    }

    /// OPEN and past its expiry with nothing held: EXPIRED. (Parts still held wait for the
    /// MPP timeout, which fails them, before the invoice can expire.)
    pub(crate) fn expire(&mut self, now: u64) -> Option<(HodlState, HodlState)> {
        if self.state == HodlState::Open && self.htlcs.is_empty() && now >= self.expires_at {
            Some(self.set_state(HodlState::Expired, now))
        } else {
            None
        }
    }

    /// Marks the held HTLCs of an unsettled invoice as answered with a failure because the
    /// plugin is stopping; returns them. A settled invoice's HTLCs are resolved instead and
    /// need no mark.
    pub(crate) fn release_at_stop(&mut self, now: u64) -> Vec<HtlcKey> {
        if !matches!(self.state, HodlState::Open | HodlState::Accepted) {
            return Vec::new();
        }
        let mut keys = Vec::new();
        for h in self.htlcs.iter_mut().filter(|h| !h.released_at_stop) {
            h.released_at_stop = true;
            keys.push(h.key);
        }
        if !keys.is_empty() {
            self.updated_at = now;
        }
        keys
    }

    /// After the plugin alone was restarted (lightningd kept running, so nothing will be
    /// replayed), no HTLC of an undecided invoice is held any more: those answered at a
    /// clean stop were failed, and after a crash lightningd failed the ones it was waiting
    /// on. Drop them all, and cancel an ACCEPTED invoice, since nothing is left to settle
    /// (settling it would report money that never arrives). The reason says which:
    /// `shutdown` when ballast failed them itself at a clean stop, `htlcs_lost` otherwise.
    pub(crate) fn reconcile_after_plugin_restart(&mut self, now: u64) -> Option<(HodlState, HodlState)> {
        if !matches!(self.state, HodlState::Open | HodlState::Accepted) {
            let before = self.htlcs.len();
            self.htlcs.retain(|h| !h.released_at_stop);
            if self.htlcs.len() != before {
                self.updated_at = now;
            }
            return None;
        }
        let all_released = self.htlcs.iter().all(|h| h.released_at_stop);
        let reason = if all_released {
            CancelReason::Shutdown
        } else {
            CancelReason::HtlcsLost
        };
        self.drop_parts(|_| false, reason, now)
    }

    /// Keeps only the parts of an OPEN or ACCEPTED invoice for which `still_held` is true
    /// (the node still holds them for ballast). An ACCEPTED invoice that lost any part is
    /// canceled with `htlcs_lost`: its set is no longer whole and the payer has seen a
    /// failure. An OPEN one keeps whatever is left and takes new parts as before.
    pub(crate) fn reconcile_held(
        &mut self,
        still_held: impl Fn(&HtlcKey) -> bool,
        now: u64,
    ) -> Option<(HodlState, HodlState)> {
        if !matches!(self.state, HodlState::Open | HodlState::Accepted) {
            return None;
        }
        self.drop_parts(still_held, CancelReason::HtlcsLost, now)
    }

    /// Drops the parts `keep` rejects; they count for nothing any more. An ACCEPTED
    /// invoice that lost any is canceled with `reason`.
    fn drop_parts(
        &mut self,
        keep: impl Fn(&HtlcKey) -> bool,
        reason: CancelReason,
        now: u64,
    ) -> Option<(HodlState, HodlState)> {
        let before = self.htlcs.len();
        self.htlcs.retain(|h| keep(&h.key));
        if self.htlcs.len() == before {
            return None;
        }
        self.updated_at = now;
        if self.htlcs.is_empty() {
            self.mpp_total = None;
        }
        match self.state {
            HodlState::Accepted => self.cancel(reason, now).ok().map(|(_, t)| t),
            _ => None,
        }
    }

    /// Blocks left before the earliest held HTLC expires.
    pub fn blocks_left(&self, height: u32) -> Option<i64> {
        self.htlcs
            .iter()
            .map(|h| h.cltv_expiry as i64 - height as i64)
            .min()
    }

    /// What a new block means for this invoice.
    pub(crate) fn on_block(&self, height: u32, p: &HodlParams) -> DeadlineAction {
        let Some(left) = self.blocks_left(height) else {
            return DeadlineAction::None;
        };
        let near = left <= p.cancel_blocks as i64;
        match self.state {
            HodlState::Accepted if near => DeadlineAction::Cancel,
            HodlState::Accepted if left <= (p.cancel_blocks + p.warn_blocks) as i64 => DeadlineAction::Warn {
                blocks_to_cancel: (left - p.cancel_blocks as i64) as u32,
            },
            // An incomplete set normally ends at the MPP timeout long before this; if the
            // timeout is set very long, the chain still wins.
            HodlState::Open if near => DeadlineAction::ReleaseParts,
            _ => DeadlineAction::None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeadlineAction {
    None,
    /// The app can still settle, but has only this many blocks left to.
    Warn {
        blocks_to_cancel: u32,
    },
    /// Cancel the invoice now so no channel is force-closed over it.
    Cancel,
    /// Fail the parts of an incomplete set; the invoice stays OPEN.
    ReleaseParts,
}

#[cfg(test)]
mod tests;
