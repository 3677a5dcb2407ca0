//! The `htlc_accepted` path for hashes ballast claimed as hold invoices: reads the payload,
//! hands the HTLC to the hold-invoice service and turns its answer into lightningd's reply.

use crate::api::{now_unix, AppState};
use crate::engine::hodl::{HtlcKey, IncomingHtlc};
use crate::service::hodl::{Answer, HtlcReply};
use crate::types::{Msat, PaymentHash};
use serde_json::{json, Value};

/// Reads what the state machine needs from an `htlc_accepted` payload.
fn incoming(v: &Value) -> Option<(PaymentHash, IncomingHtlc)> {
    let htlc = v.get("htlc")?;
    let onion = v.get("onion")?;
    let hash = htlc.get("payment_hash")?.as_str()?.parse().ok()?;
    let secret = match onion.get("payment_secret").and_then(Value::as_str) {
        Some(t) => Some(crate::types::decode_hex_array::<32>("payment_secret", t).ok()?),
        None => None,
    };
    Some((
        hash,
        IncomingHtlc {
            key: HtlcKey {
                scid: htlc.get("short_channel_id")?.as_str()?.parse().ok()?,
                id: htlc.get("id")?.as_u64()?,
            },
            amount: Msat(htlc.get("amount_msat")?.as_u64()?),
            cltv_expiry: u32::try_from(htlc.get("cltv_expiry")?.as_u64()?).ok()?,
            cltv_expiry_relative: u32::try_from(htlc.get("cltv_expiry_relative")?.as_u64()?).unwrap_or(0),
            payment_secret: secret,
            total_msat: onion.get("total_msat").and_then(Value::as_u64).map(Msat),
        },
    ))
}

/// A held HTLC's answer (or a rebalance payment's, see `api::rebalance::claim_answer`) as
/// lightningd's `htlc_accepted` reply.
pub(super) fn answer_json(a: &Answer) -> Value {
    match a {
        Answer::Resolve(p) => json!({"result": "resolve", "payment_key": p.to_hex()}),
        Answer::Fail(f) => json!({"result": "fail", "failure_message": f.to_hex()}),
    }
}

/// The hook path for a hash ballast claimed. Returns `None` when no hold invoice owns it.
/// Takes the payload by value and drops it before waiting: a held HTLC should cost its
/// few fields, not the 3 kB onion, for as long as it is held.
pub(crate) async fn on_claimed_htlc(s: &AppState, payload: Value) -> Option<Value> {
    let amount = Msat(
        payload
            .pointer("/htlc/amount_msat")
            .and_then(Value::as_u64)
            .unwrap_or(0),
    );
    let parsed = incoming(&payload);
    drop(payload);
    let fail = |height: u32| {
        Some(answer_json(&Answer::Fail(
            crate::engine::hodl::Failure::IncorrectOrUnknownPaymentDetails {
                htlc_msat: amount,
                height,
            },
        )))
    };
    let Some((hash, htlc)) = parsed else {
        log::warn!("htlc_accepted for a claimed hash with an unreadable payload; failing it back");
        return fail(s.blockheight());
    };
    let svc = s.hodl.clone();
    let height = s.blockheight();
    let reply = match tokio::task::spawn_blocking(move || svc.on_htlc(hash, &htlc, now_unix(), height)).await
    {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            // The store failed: holding money we cannot record would be worse than failing it.
            log::error!("hold invoice {hash}: cannot record HTLC ({e}); failing it back");
            return fail(height);
        }
        Err(e) => {
            log::error!("hold invoice {hash}: internal task failed ({e}); letting lightningd decide");
            return None;
        }
    };
    match reply {
        HtlcReply::NotOurs => None,
        HtlcReply::Now(a) => Some(answer_json(&a)),
        HtlcReply::Wait(rx) => match rx.await {
            Ok(a) => Some(answer_json(&a)),
            // The waiter was replaced by a replay of the same HTLC (this request is stale),
            // or the service gave up on it after a store failure.
            Err(_) => fail(s.blockheight()),
        },
    }
}
