//! The hook handlers cln-plugin runs: only the hooks the stdin fast path did not answer
//! reach these (a claimed payment hash, or a payload it could not read).

use super::state::PluginState;
use crate::counters::bump;
use crate::types::PaymentHash;
use cln_plugin::Plugin;
use serde_json::{json, Value};

pub async fn htlc_accepted(p: Plugin<PluginState>, v: Value) -> Result<Value, anyhow::Error> {
    let state = p.state();
    let hash = v
        .pointer("/htlc/payment_hash")
        .and_then(Value::as_str)
        .and_then(|h| h.parse::<PaymentHash>().ok());
    match hash {
        Some(h) if state.claims.contains(&h) => {
            // Claimed hashes belong to features that register their own handling; until
            // one does, lightningd's normal processing is the safe answer.
            bump(&state.counters.htlcs_claimed);
        }
        Some(_) => bump(&state.counters.htlcs_passed_through),
        None => {
            log::warn!("htlc_accepted without a readable payment_hash; letting lightningd decide");
            bump(&state.counters.htlcs_passed_through);
        }
    }
    Ok(json!({"result": "continue"}))
}

pub async fn invoice_payment(p: Plugin<PluginState>, _v: Value) -> Result<Value, anyhow::Error> {
    bump(&p.state().counters.invoices_passed_through);
    Ok(json!({"result": "continue"}))
}
