//! The hook handlers cln-plugin runs. Unclaimed `htlc_accepted` calls never get here: the
//! stdin fast path answers them. What arrives is a claimed payment hash, a payload the fast
//! path could not read, or an `invoice_payment`.

use super::hodl_hook;
use crate::api::{now_unix, rebalance, AppState};
use crate::counters::bump;
use crate::service::income::PaidInvoice;
use crate::types::{Msat, PaymentHash};
use cln_plugin::Plugin;
use serde_json::{json, Value};

pub async fn htlc_accepted(p: Plugin<AppState>, v: Value) -> Result<Value, anyhow::Error> {
    let state = p.state();
    let hash: Option<PaymentHash> = v
        .pointer("/htlc/payment_hash")
        .and_then(Value::as_str)
        .and_then(|h| h.parse().ok());
    if let Some(hash) = hash.filter(|h| state.claims.contains(h)) {
        bump(&state.counters.htlcs_claimed);
        // Our own rebalance payments first: they are few, and never hold invoices.
        let amount = Msat(
            v.pointer("/htlc/amount_msat")
                .and_then(Value::as_u64)
                .unwrap_or(0),
        );
        // No next hop in the onion: the HTLC ends at us.
        let ends_here = v.pointer("/onion/short_channel_id").is_none();
        if let Some(answer) = rebalance::claim_answer(state, &hash, amount, ends_here) {
            return Ok(hodl_hook::answer_json(&answer));
        }
        if let Some(answer) = hodl_hook::on_claimed_htlc(state, v).await {
            return Ok(answer);
        }
    } else {
        log::debug!("htlc_accepted the fast path could not read; letting lightningd decide");
    }
    bump(&state.counters.htlcs_passed_through);
    Ok(json!({"result": "continue"}))
}

/// Ordinary CLN invoices: continue at once, and note the income off the hook's path.
pub async fn invoice_payment(p: Plugin<AppState>, v: Value) -> Result<Value, anyhow::Error> {
    let s = p.state().clone();
    bump(&s.counters.invoice_payment);
    bump(&s.counters.invoices_passed_through);
    let payment = v.get("payment");
    let label = payment.and_then(|p| p.get("label")).and_then(Value::as_str);
    let msat = payment.and_then(|p| p.get("msat")).and_then(Value::as_u64);
    if let (Some(label), Some(msat)) = (label, msat) {
        let paid = PaidInvoice {
            label: label.to_string(),
            amount: Msat(msat),
            paid_at: now_unix(),
        };
        tokio::task::spawn_blocking(move || {
            if let Err(e) = s.income.record(&paid) {
                log::warn!("could not record paid invoice '{}': {e}", paid.label);
            }
        });
    } else {
        log::warn!("invoice_payment without label/msat: {v}");
    }
    Ok(json!({"result": "continue"}))
}
