//! Payments: waitsendpay on a connection, and lightningd's payment error codes sorted into
//! outcomes (failed, still in flight) and errors (unknown payment, refusal).

use super::convert::sha256;
use super::rpc::{malformed, rejected, Conn, Rpc};
use crate::node::{NodeError, NodeResult, PayOutcome};
use crate::types::{PaymentHash, Preimage, Scid};
use cln_rpc::model::requests::WaitsendpayRequest;
use cln_rpc::primitives::{RpcError, Secret};
use serde_json::Value;
use std::time::Duration;

/// How long past waitsendpay's own `timeout` we wait for its answer before giving up on
/// the socket: lightningd answers at `timeout` itself, so this only trips if it is wedged.
const WAITSENDPAY_GRACE: Duration = Duration::from_secs(30);

// Payment error codes (lightningd's common/jsonrpc_errors.h). Only these mean "this attempt
// is over and failed"; everything else lightningd says about a payment is a refusal.
/// waitsendpay's `timeout` passed: the HTLC is still in flight and may yet succeed.
const PAY_IN_PROGRESS: i32 = 200;
const PAY_UNPARSEABLE_ONION: i32 = 202;
const PAY_DESTINATION_PERM_FAIL: i32 = 203;
const PAY_TRY_OTHER_ROUTE: i32 = 204;
/// waitsendpay knows no payment with this hash: it never left, or its record is gone.
const PAY_NO_SUCH_PAYMENT: i32 = 208;
/// The payment failed long ago and the reason was not kept.
const PAY_UNSPECIFIED_ERROR: i32 = 209;

impl Conn {
    /// `waitsendpay` for `payment_hash`, with our own limit in case lightningd is wedged.
    pub(super) async fn wait_payment(
        &mut self,
        payment_hash: PaymentHash,
        timeout_secs: u32,
    ) -> NodeResult<PayOutcome> {
        let wait = WaitsendpayRequest {
            payment_hash: sha256(&payment_hash),
            timeout: Some(timeout_secs),
            partid: None,
            groupid: None,
        };
        let limit = Duration::from_secs(u64::from(timeout_secs)) + WAITSENDPAY_GRACE;
        let answer = tokio::time::timeout(limit, self.try_call(&wait))
            .await
            .map_err(|_| NodeError::Transport {
                method: WaitsendpayRequest::METHOD,
                message: format!("no answer within {}s", limit.as_secs()),
            })??;
        match answer {
            Ok(done) => settled(WaitsendpayRequest::METHOD, done.payment_preimage, payment_hash),
            Err(e) => payment_error(WaitsendpayRequest::METHOD, e),
        }
    }
}

/// A finished payment: its preimage must be there and must match, or we would report a
/// success we cannot prove.
pub(super) fn settled(
    method: &'static str,
    preimage: Option<Secret>,
    hash: PaymentHash,
) -> NodeResult<PayOutcome> {
    let preimage = preimage
        .map(|s| Preimage(s.into()))
        .ok_or_else(|| malformed(method, "payment complete without payment_preimage"))?;
    if preimage.payment_hash() != hash {
        return Err(malformed(
            method,
            format!("payment_preimage does not hash to {hash}"),
        ));
    }
    Ok(PayOutcome::Success { preimage })
}

/// lightningd's error for a payment: a failed attempt or one still in flight is an
/// outcome, a payment it does not know is [`NodeError::UnknownPayment`], anything else (a
/// duplicate payment, bad parameters) is a refusal.
pub(super) fn payment_error(method: &'static str, e: RpcError) -> NodeResult<PayOutcome> {
    match e.code {
        Some(
            PAY_UNPARSEABLE_ONION | PAY_DESTINATION_PERM_FAIL | PAY_TRY_OTHER_ROUTE | PAY_UNSPECIFIED_ERROR,
        ) => Ok(route_failure(e)),
        // A waitsendpay timeout: the HTLC is still in flight and may yet succeed.
        Some(PAY_IN_PROGRESS) => Ok(PayOutcome::InFlight { message: e.message }),
        Some(PAY_NO_SUCH_PAYMENT) => Err(NodeError::UnknownPayment {
            method,
            message: e.message,
        }),
        _ => Err(rejected(method, e)),
    }
}

/// Reads the routing failure object lightningd attaches as `data`. Every part of it is
/// optional here: the attempt has failed either way, and a missing or odd field only means
/// we know less about where.
fn route_failure(e: RpcError) -> PayOutcome {
    let field = |key: &str| e.data.as_ref().and_then(|d| d.get(key));
    let text = |key: &str| field(key).and_then(Value::as_str);
    PayOutcome::Failed {
        // `0x0x0` (once `0:0:0`, which does not parse) means "the destination itself".
        failing_channel: text("erring_channel")
            .and_then(|s| s.parse::<Scid>().ok())
            .filter(|s| s.as_u64() != 0),
        failing_node: text("erring_node").and_then(|s| s.parse().ok()),
        code: field("failcode")
            .and_then(Value::as_u64)
            .and_then(|c| u32::try_from(c).ok()),
        message: e.message,
    }
}
