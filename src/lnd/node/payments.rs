//! Payments along a route: SendToRouteV2 and TrackPaymentV2, the route and failure
//! translations between ballast's terms and LND's, and the invoices of circular payments.

use super::convert::msat_i64;
use super::errors::{grpc_error, malformed, unknown_payment};
use super::{LndNode, MIN_CLTV_DELTA};
use crate::lnd::proto::{lnrpc, routerrpc};
use crate::node::{Node, NodeError, NodeResult, PayOutcome, RouteHop};
use crate::types::{Msat, PaymentHash, Preimage, Scid};
use std::time::Duration;

/// lnd's `routing.BlockPadding`: blocks lnd adds to a final CLTV so that a block found while
/// the HTLC travels does not leave it under the receiver's minimum.
const BLOCK_PADDING: u32 = 3;

impl LndNode {
    pub(super) async fn send_to_route(
        &self,
        route: &[RouteHop],
        payment_hash: PaymentHash,
        timeout_secs: u32,
    ) -> NodeResult<PayOutcome> {
        const M: &str = "SendToRouteV2";
        let mpp = self
            .self_payments
            .lock()
            .expect("lock")
            .get(&payment_hash)
            .copied();
        // LND takes absolute heights; ballast's route counts from the tip.
        let height = self.block_height().await?;
        let lnd_route = build_route(
            M,
            route,
            mpp.map(|(addr, _)| addr),
            height,
            MIN_CLTV_DELTA + BLOCK_PADDING,
        )?;
        let request = routerrpc::SendToRouteRequest {
            payment_hash: payment_hash.0.to_vec(),
            route: Some(lnd_route),
            skip_temp_err: false,
        };
        let mut router = self.router.clone();
        let limit = Duration::from_secs(u64::from(timeout_secs));
        let attempt = match tokio::time::timeout(limit, router.send_to_route_v2(request)).await {
            Err(_) => return Ok(in_flight(timeout_secs)),
            Ok(r) => r.map_err(|s| grpc_error(M, s))?.into_inner(),
        };
        match lnrpc::htlc_attempt::HtlcStatus::try_from(attempt.status) {
            Ok(lnrpc::htlc_attempt::HtlcStatus::Succeeded) => settled(M, &attempt.preimage, payment_hash),
            Ok(lnrpc::htlc_attempt::HtlcStatus::Failed) => Ok(attempt_failure(route, &attempt)),
            // SendToRouteV2 answers once the HTLC is resolved; anything else is still out.
            _ => Ok(in_flight(timeout_secs)),
        }
    }

    pub(super) async fn track_payment(
        &self,
        payment_hash: PaymentHash,
        timeout_secs: u32,
    ) -> NodeResult<PayOutcome> {
        const M: &str = "TrackPaymentV2";
        use lnrpc::payment::PaymentStatus;
        let limit = Duration::from_secs(u64::from(timeout_secs));
        let mut router = self.router.clone();
        let wait = async {
            let mut stream = router
                .track_payment_v2(routerrpc::TrackPaymentRequest {
                    payment_hash: payment_hash.0.to_vec(),
                    no_inflight_updates: true,
                })
                .await
                .map_err(|s| unknown_payment(M, s))?
                .into_inner();
            loop {
                let Some(p) = stream.message().await.map_err(|s| grpc_error(M, s))? else {
                    return Err(NodeError::Transport {
                        method: M,
                        message: "stream ended before the payment was final".into(),
                    });
                };
                match PaymentStatus::try_from(p.status) {
                    Ok(PaymentStatus::Succeeded) => {
                        let preimage = hex::decode(&p.payment_preimage)
                            .map_err(|_| malformed(M, "preimage is not hex"))?;
                        return settled(M, &preimage, payment_hash);
                    }
                    Ok(PaymentStatus::Failed) => {
                        let last_failed = p
                            .htlcs
                            .iter()
                            .rev()
                            .find(|h| h.status == lnrpc::htlc_attempt::HtlcStatus::Failed as i32);
                        return Ok(match last_failed {
                            Some(a) => attempt_failure(&route_hops(a), a),
                            None => PayOutcome::Failed {
                                failing_channel: None,
                                failing_node: None,
                                code: None,
                                message: format!("payment failed: {}", p.failure_reason().as_str_name()),
                            },
                        });
                    }
                    _ => continue,
                }
            }
        };
        match tokio::time::timeout(limit, wait).await {
            Ok(r) => r,
            Err(_) => Ok(in_flight(timeout_secs)),
        }
    }

    pub(super) async fn add_self_payment_invoice(&self, preimage: Preimage, amount: Msat) -> NodeResult<()> {
        const M: &str = "AddInvoice";
        let request = lnrpc::Invoice {
            memo: "ballast rebalance".into(),
            r_preimage: preimage.0.to_vec(),
            value_msat: msat_i64(M, amount)?,
            expiry: 3600,
            // Explicit, and the least LND accepts: `pay_route` delivers this plus LND's
            // block padding. Left at 0, LND would ask for its default of 80.
            cltv_expiry: u64::from(MIN_CLTV_DELTA),
            ..Default::default()
        };
        let resp = self
            .lightning
            .clone()
            .add_invoice(request)
            .await
            .map_err(|s| grpc_error(M, s))?
            .into_inner();
        let addr: [u8; 32] = resp
            .payment_addr
            .as_slice()
            .try_into()
            .map_err(|_| malformed(M, format!("payment_addr of {} bytes", resp.payment_addr.len())))?;
        self.self_payments
            .lock()
            .expect("lock")
            .insert(preimage.payment_hash(), (addr, amount));
        Ok(())
    }
}

/// Ballast's route (each hop: the amount delivered over it and its HTLC's expiry, counted
/// in blocks from the tip) as LND's (each hop: what its node forwards onward, its fee and
/// the outgoing expiry, as absolute heights). Every expiry is moved up by the same number
/// of blocks when needed to give the final hop at least `min_final` blocks, so each hop
/// keeps the time-lock delta it asks for.
pub(crate) fn build_route(
    method: &'static str,
    route: &[RouteHop],
    payment_addr: Option<[u8; 32]>,
    height: u32,
    min_final: u32,
) -> NodeResult<lnrpc::Route> {
    let (Some(first), Some(last)) = (route.first(), route.last()) else {
        return Err(NodeError::Rejected {
            method,
            code: None,
            message: "cannot pay along an empty route".into(),
        });
    };
    let base = height.saturating_add(min_final.saturating_sub(last.delay));
    let absolute = |delay: u32| {
        base.checked_add(delay).ok_or_else(|| NodeError::Rejected {
            method,
            code: None,
            message: format!("expiry {delay} blocks after height {base} does not fit"),
        })
    };
    let mut hops = Vec::with_capacity(route.len());
    for (i, hop) in route.iter().enumerate() {
        let (forward, expiry) = match route.get(i + 1) {
            Some(next) => (next.amount, absolute(next.delay)?),
            None => (hop.amount, absolute(hop.delay)?),
        };
        let fee = hop
            .amount
            .0
            .checked_sub(forward.0)
            .ok_or_else(|| NodeError::Rejected {
                method,
                code: None,
                message: format!("hop {i} delivers less than the next hop carries"),
            })?;
        let is_last = i + 1 == route.len();
        hops.push(lnrpc::Hop {
            chan_id: hop.scid.as_u64(),
            expiry,
            amt_to_forward_msat: msat_i64(method, forward)?,
            fee_msat: msat_i64(method, Msat(fee))?,
            pub_key: hop.node.to_hex(),
            tlv_payload: true,
            mpp_record: match payment_addr {
                Some(addr) if is_last => Some(lnrpc::MppRecord {
                    payment_addr: addr.to_vec(),
                    total_amt_msat: msat_i64(method, last.amount)?,
                }),
                _ => None,
            },
        });
    }
    Ok(lnrpc::Route {
        total_time_lock: absolute(first.delay)?,
        hops,
        total_fees_msat: msat_i64(method, first.amount.saturating_sub(last.amount))?,
        total_amt_msat: msat_i64(method, first.amount)?,
    })
}

/// The route of an attempt in ballast's terms (for locating a failure).
pub(super) fn route_hops(a: &lnrpc::HtlcAttempt) -> Vec<RouteHop> {
    let Some(r) = &a.route else { return Vec::new() };
    let mut amount = u64::try_from(r.total_amt_msat).unwrap_or(0);
    let mut delay = r.total_time_lock;
    r.hops
        .iter()
        .filter_map(|h| {
            let hop = RouteHop {
                scid: Scid::from_u64(h.chan_id),
                node: h.pub_key.parse().ok()?,
                amount: Msat(amount),
                delay,
            };
            amount = u64::try_from(h.amt_to_forward_msat).unwrap_or(0);
            delay = h.expiry;
            Some(hop)
        })
        .collect()
}

fn attempt_failure(route: &[RouteHop], a: &lnrpc::HtlcAttempt) -> PayOutcome {
    let Some(f) = &a.failure else {
        return PayOutcome::Failed {
            failing_channel: None,
            failing_node: None,
            code: None,
            message: "HTLC failed without failure details".into(),
        };
    };
    let idx = f.failure_source_index as usize;
    // Index 0 is us; index i is the node at the end of hop i-1, and the channel it could
    // not use is hop i (or the last one, for the destination), as lightningd reports it.
    let failing_channel = route.get(idx).or(route.last()).map(|h| h.scid);
    let failing_node = idx.checked_sub(1).and_then(|i| route.get(i)).map(|h| h.node);
    PayOutcome::Failed {
        failing_channel: if route.is_empty() { None } else { failing_channel },
        failing_node,
        code: bolt4_code(f.code()),
        message: format!("{} at hop {idx}", f.code().as_str_name()),
    }
}

/// LND's failure enum as BOLT #4's failure codes (what lightningd's `failcode` holds).
pub(crate) fn bolt4_code(c: lnrpc::failure::FailureCode) -> Option<u32> {
    use lnrpc::failure::FailureCode as F;
    const BADONION: u32 = 0x8000;
    const PERM: u32 = 0x4000;
    const NODE: u32 = 0x2000;
    const UPDATE: u32 = 0x1000;
    Some(match c {
        F::IncorrectOrUnknownPaymentDetails => PERM | 15,
        F::IncorrectPaymentAmount => PERM | 16,
        F::FinalIncorrectCltvExpiry => 18,
        F::FinalIncorrectHtlcAmount => 19,
        F::FinalExpiryTooSoon => 17,
        F::InvalidRealm => PERM | 1,
        F::ExpiryTooSoon => UPDATE | 14,
        F::InvalidOnionVersion => BADONION | PERM | 4,
        F::InvalidOnionHmac => BADONION | PERM | 5,
        F::InvalidOnionKey => BADONION | PERM | 6,
        F::AmountBelowMinimum => UPDATE | 11,
        F::FeeInsufficient => UPDATE | 12,
        F::IncorrectCltvExpiry => UPDATE | 13,
        F::ChannelDisabled => UPDATE | 20,
        F::TemporaryChannelFailure => UPDATE | 7,
        F::RequiredNodeFeatureMissing => PERM | NODE | 3,
        F::RequiredChannelFeatureMissing => PERM | 9,
        F::UnknownNextPeer => PERM | 10,
        F::TemporaryNodeFailure => NODE | 2,
        F::PermanentNodeFailure => PERM | NODE | 2,
        F::PermanentChannelFailure => PERM | 8,
        F::ExpiryTooFar => 21,
        F::MppTimeout => 23,
        F::InvalidOnionPayload => PERM | 22,
        F::InvalidOnionBlinding => BADONION | PERM | 24,
        F::Reserved | F::InternalFailure | F::UnknownFailure | F::UnreadableFailure => return None,
    })
}

pub(super) fn settled(method: &'static str, preimage: &[u8], hash: PaymentHash) -> NodeResult<PayOutcome> {
    let preimage = Preimage(
        preimage
            .try_into()
            .map_err(|_| malformed(method, "preimage is not 32 bytes"))?,
    );
    if preimage.payment_hash() != hash {
        return Err(malformed(method, format!("preimage does not match {hash}")));
    }
    Ok(PayOutcome::Success { preimage })
}

/// The wait ended first: the payment may still succeed, so it is no failed route.
fn in_flight(timeout_secs: u32) -> PayOutcome {
    PayOutcome::InFlight {
        message: format!("payment still in flight after {timeout_secs}s"),
    }
}
