//! The `hodl-*` methods, the claimed-HTLC hook path, and the timers and notifications of
//! hold invoices on Core Lightning.

use super::error::{
    internal, task_failed, ERR_DUPLICATE, ERR_INVOICE_STATE, ERR_NODE, ERR_NOT_HELD, ERR_TOO_LATE,
    ERR_UNKNOWN_INVOICE, ERR_WAIT_TIMEOUT, INVALID_PARAMS,
};
use super::now_unix;
use super::params::{Params, RpcError};
use super::state::AppState;
use crate::engine::bolt11::{Description, HintHop, InvoiceSpec};
use crate::engine::hodl::{CancelReason, HodlError, HodlInvoice, HodlState};
use crate::node::{ChannelState, HoldInvoiceError, Node};
use crate::service::hodl::{HodlEvent, ServiceError};
use crate::types::{Msat, PaymentHash, Preimage, Scid};
use serde_json::{json, Value};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

fn service_error(e: ServiceError) -> RpcError {
    let code = match &e {
        ServiceError::Unknown(_) => ERR_UNKNOWN_INVOICE,
        ServiceError::Duplicate(_) | ServiceError::DuplicateLabel(_) => ERR_DUPLICATE,
        ServiceError::NotHeld { .. } | ServiceError::HtlcsLost(_) => ERR_NOT_HELD,
        ServiceError::Hodl(HodlError::TooLate { .. }) => ERR_TOO_LATE,
        ServiceError::Hodl(_) => ERR_INVOICE_STATE,
        // The caller must pass the preimage: a parameter problem, not a state one.
        ServiceError::NoPreimage(_) => INVALID_PARAMS,
        ServiceError::Store(_) => return internal(e),
    };
    RpcError::new(code, e.to_string())
}

/// How `hodl-settle` settles where the node holds a hold invoice's HTLCs itself (LND): the
/// node must settle and confirm before the invoice is SETTLED, and what it takes (a durable
/// intent, retries after a lost answer) is the adapter's, so the adapter supplies the whole
/// step. Where ballast holds the HTLCs through the node's hook there is none.
pub trait NodeSettler: Send + Sync {
    /// Settles the invoice of `preimage` (or of `hash`, with the preimage ballast made).
    fn settle(
        &self,
        state: AppState,
        preimage: Option<Preimage>,
        hash: Option<PaymentHash>,
    ) -> Pin<Box<dyn Future<Output = Result<HodlInvoice, NodeSettleError>> + Send>>;
}

/// Why a [`NodeSettler`] did not answer SETTLED.
#[derive(Debug)]
pub enum NodeSettleError {
    /// Ballast's own rules refused it before the node was asked.
    Service(ServiceError),
    /// The node refused: nothing was settled. The message says why, and the invoice's state
    /// on the node.
    Refused(String),
    /// The node's answer was lost, or ballast could not record it.
    Failed(String),
}

/// Runs blocking service work (it may flush the store) off the runtime's workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, RpcError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(service_error),
        Err(e) => Err(task_failed(e)),
    }
}

/// The JSON shape of an invoice, shared by every method (and by the sidecar later).
pub(crate) fn invoice_json(inv: &HodlInvoice, height: u32) -> Value {
    let htlcs: Vec<Value> = inv
        .htlcs
        .iter()
        .map(|h| {
            json!({
                "short_channel_id": h.key.scid.to_string(),
                "id": h.key.id,
                "amount_msat": h.amount.0,
                "cltv_expiry": h.cltv_expiry,
                "blocks_left": h.cltv_expiry as i64 - height as i64,
                "arrived_at": h.arrived_at,
            })
        })
        .collect();
    let mut v = json!({
        "payment_hash": inv.payment_hash.to_hex(),
        "state": inv.state.as_str(),
        "amount_msat": inv.amount.0,
        "received_msat": inv.received().0,
        "bolt11": inv.bolt11,
        "created_at": inv.created_at,
        "expires_at": inv.expires_at,
        "updated_at": inv.updated_at,
        "min_final_cltv_expiry": inv.min_final_cltv,
        "htlcs": htlcs,
    });
    let obj = v.as_object_mut().expect("json! object");
    if let Some(l) = &inv.label {
        obj.insert("label".into(), json!(l));
    }
    if let Some(d) = &inv.description {
        obj.insert("description".into(), json!(d));
    }
    if let Some(r) = inv.cancel_reason {
        obj.insert("cancel_reason".into(), json!(r));
    }
    // The preimage is only revealed once the money is claimed.
    if inv.state == HodlState::Settled {
        if let Some(p) = inv.preimage {
            obj.insert("preimage".into(), json!(p.to_hex()));
        }
    }
    v
}

fn random32() -> Result<[u8; 32], RpcError> {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).map_err(|e| internal(format!("no randomness available: {e}")))?;
    Ok(b)
}

pub(crate) const INVOICE: &str = "hodl-invoice";
const INVOICE_PARAMS: [&str; 8] = [
    "amount_msat",
    "payment_hash",
    "description",
    "expiry",
    "cltv",
    "description_hash",
    "label",
    "exposeprivatechannels",
];

pub async fn invoice(p: AppState, params: Value) -> Result<Value, RpcError> {
    create_invoice(&p, &params).await
}

async fn create_invoice(s: &AppState, params: &Value) -> Result<Value, RpcError> {
    let p = Params::parse(INVOICE, params, &INVOICE_PARAMS, 1)?;
    let amount = p.required(p.u64("amount_msat")?, "amount_msat")?;
    if amount == 0 {
        return Err(RpcError::invalid(format!(
            "{INVOICE}: 'amount_msat' must be greater than 0"
        )));
    }
    let given_hash: Option<PaymentHash> = p.parsed("payment_hash", "64 hex characters")?;
    let description = p.str("description")?.map(str::to_string);
    let expiry = p.u64("expiry")?.unwrap_or(s.hodl_defaults.expiry_secs);
    if expiry == 0 || expiry > 365 * 24 * 3600 {
        return Err(RpcError::invalid(format!(
            "{INVOICE}: 'expiry' must be 1..31536000 seconds"
        )));
    }
    let cltv = p.u32("cltv")?.unwrap_or(s.hodl_defaults.cltv);
    // Below ballast's own cancel window an accepted HTLC would be canceled on arrival;
    // above 2016 blocks senders refuse the route. The node may have a floor of its own.
    let window = s.hodl.params().cancel_blocks;
    let min_cltv = window + super::settings::MIN_SETTLE_WINDOW;
    let node_min = s.node.min_invoice_cltv();
    if !(min_cltv.max(node_min)..=2016).contains(&cltv) {
        let why = if node_min > min_cltv {
            format!("the least {} accepts", s.node.implementation())
        } else {
            format!("ballast stops settling {window} blocks before an HTLC expires, and a smaller cltv leaves no time to settle")
        };
        return Err(RpcError::invalid(format!(
            "{INVOICE}: 'cltv' must be {}..2016: {why}",
            min_cltv.max(node_min)
        )));
    }
    let description_hash: Option<PaymentHash> = p.parsed("description_hash", "64 hex characters")?;
    if description.is_some() && description_hash.is_some() {
        // The invoice carries one or the other; storing a text it does not carry would
        // show callers a description the payer never saw.
        return Err(RpcError::invalid(format!(
            "{INVOICE}: give 'description' or 'description_hash', not both"
        )));
    }
    let label = p.str("label")?.map(str::to_string);
    let hints_wanted = match p.raw("exposeprivatechannels") {
        None | Some(Value::Null) => HintChoice::None,
        Some(Value::Bool(b)) => {
            if *b {
                HintChoice::All
            } else {
                HintChoice::None
            }
        }
        Some(Value::String(t)) if t == "true" || t == "false" => {
            if t == "true" {
                HintChoice::All
            } else {
                HintChoice::None
            }
        }
        Some(Value::Array(items)) => {
            let mut scids = Vec::new();
            for i in items {
                let scid = i.as_str().and_then(|t| t.parse::<Scid>().ok()).ok_or_else(|| {
                    RpcError::invalid(format!(
                        "{INVOICE}: 'exposeprivatechannels' entries must be short_channel_ids, got {i}"
                    ))
                })?;
                scids.push(scid);
            }
            HintChoice::Only(scids)
        }
        Some(v) => {
            return Err(RpcError::invalid(format!(
            "{INVOICE}: 'exposeprivatechannels' must be true, false or a list of short_channel_ids, got {v}"
        )))
        }
    };
    // Checked before the node is asked for anything (LND creates its invoice at once);
    // `create` checks again under the book's lock.
    if let Some(l) = &label {
        if s.hodl.label_taken(l) {
            return Err(RpcError {
                code: ERR_DUPLICATE,
                message: format!("{INVOICE}: label '{l}' is already used"),
            });
        }
    }

    // Without a hash, ballast makes the preimage and keeps it, so the caller can settle by
    // hash alone.
    let (payment_hash, own_preimage) = match given_hash {
        Some(h) => (h, None),
        None => {
            let pre = Preimage(random32()?);
            (pre.payment_hash(), Some(pre))
        }
    };
    if s.hodl.get(&payment_hash).is_some() {
        return Err(RpcError {
            code: ERR_DUPLICATE,
            message: format!("{INVOICE}: an invoice for payment_hash {payment_hash} already exists"),
        });
    }
    // LND chooses its own route hints; it can only be told whether to add them.
    let private_hints = !matches!(hints_wanted, HintChoice::None);
    let hints = match (s.node.chooses_route_hints(), &hints_wanted) {
        (true, HintChoice::Only(_)) => {
            return Err(RpcError::invalid(format!(
                "{INVOICE}: on {} 'exposeprivatechannels' can only be true or false",
                s.node.implementation().to_uppercase()
            )))
        }
        (true, _) => Vec::new(),
        (false, _) => route_hints(s, &hints_wanted).await?,
    };
    let payment_secret = random32()?;
    let now = now_unix();
    let spec = InvoiceSpec {
        network: s.network.clone(),
        amount: Msat(amount),
        payment_hash,
        payment_secret,
        description: match description_hash {
            Some(h) => Description::Hash(h.0),
            None => Description::Text(description.clone().unwrap_or_default()),
        },
        created_at: now,
        expiry_secs: expiry,
        min_final_cltv: cltv,
        hints,
    };
    let (signed, payment_secret) =
        s.node
            .create_hold_invoice(&spec, private_hints)
            .await
            .map_err(|e| match e {
                HoldInvoiceError::Invalid(m) => RpcError::invalid(format!("{INVOICE}: {m}")),
                HoldInvoiceError::Node(m) => RpcError::new(ERR_NODE, format!("{INVOICE}: {m}")),
            })?;
    let inv = HodlInvoice {
        payment_hash,
        preimage: own_preimage,
        payment_secret,
        amount: Msat(amount),
        bolt11: signed,
        label,
        description,
        created_at: now,
        expires_at: now + expiry,
        min_final_cltv: cltv,
        state: HodlState::Open,
        htlcs: Vec::new(),
        mpp_total: None,
        updated_at: now,
        cancel_reason: None,
    };
    let svc = s.hodl.clone();
    let inv = blocking(move || svc.create(inv)).await?;
    let mut out = json!({
        "bolt11": inv.bolt11,
        "payment_hash": inv.payment_hash.to_hex(),
        "payment_secret": hex::encode(inv.payment_secret),
        "amount_msat": inv.amount.0,
        "created_at": inv.created_at,
        "expires_at": inv.expires_at,
        "state": inv.state.as_str(),
    });
    if let Some(pre) = own_preimage {
        out["preimage"] = json!(pre.to_hex());
    }
    Ok(out)
}

enum HintChoice {
    None,
    All,
    Only(Vec<Scid>),
}

/// Private channels a payer can reach us through, with the peer's policy towards us.
async fn route_hints(s: &AppState, choice: &HintChoice) -> Result<Vec<HintHop>, RpcError> {
    if matches!(choice, HintChoice::None) {
        return Ok(Vec::new());
    }
    let channels = s.node.channels().await.map_err(|e| RpcError {
        code: ERR_NODE,
        message: format!("{INVOICE}: listing channels for route hints failed: {e}"),
    })?;
    let mut hints = Vec::new();
    for c in channels {
        let (Some(scid), Some(policy)) = (c.scid, c.remote_policy) else {
            continue;
        };
        let usable = c.private && c.state == ChannelState::Normal && c.peer_connected && c.receivable.0 > 0;
        let wanted = match choice {
            HintChoice::Only(list) => list.contains(&scid),
            _ => usable,
        };
        if !wanted {
            continue;
        }
        hints.push(HintHop {
            peer: c.peer,
            scid,
            fee_base: policy.fee_base,
            fee_ppm: policy.fee_ppm,
            cltv_delta: u16::try_from(policy.cltv_delta).unwrap_or(u16::MAX),
        });
    }
    if let HintChoice::Only(list) = choice {
        if let Some(missing) = list.iter().find(|scid| !hints.iter().any(|h| h.scid == **scid)) {
            return Err(RpcError::invalid(format!(
                "{INVOICE}: {missing} is not one of our channels with a known peer policy"
            )));
        }
    }
    // Largest inbound first is what CLN does; here deterministic order by scid is enough
    // and keeps the invoice stable for tests.
    hints.sort_by_key(|h| h.scid);
    hints.truncate(8);
    Ok(hints)
}

pub(crate) const SETTLE: &str = "hodl-settle";

pub async fn settle(p: AppState, params: Value) -> Result<Value, RpcError> {
    let s = p;
    async {
        let p = Params::parse(SETTLE, &params, &["preimage", "payment_hash"], 0)?;
        let preimage: Option<Preimage> = p.parsed("preimage", "64 hex characters")?;
        let hash: Option<PaymentHash> = p.parsed("payment_hash", "64 hex characters")?;
        if preimage.is_none() && hash.is_none() {
            return Err(RpcError::invalid(format!(
                "{SETTLE}: give 'preimage' (or 'payment_hash' for an invoice ballast made the preimage of)"
            )));
        }
        if let (Some(pre), Some(h)) = (preimage, hash) {
            if pre.payment_hash() != h {
                return Err(RpcError::invalid(format!(
                    "{SETTLE}: preimage does not hash to payment_hash"
                )));
            }
        }
        // LND holds the HTLCs: SETTLED is answered once LND has settled, not before.
        if let Some(settler) = &s.node_settler {
            let inv = settler
                .settle(s.clone(), preimage, hash)
                .await
                .map_err(|e| match e {
                    NodeSettleError::Service(e) => service_error(e),
                    NodeSettleError::Refused(m) => RpcError::new(ERR_INVOICE_STATE, format!("{SETTLE}: {m}")),
                    NodeSettleError::Failed(m) => RpcError::new(ERR_NODE, format!("{SETTLE}: {m}")),
                })?;
            return Ok(invoice_json(&inv, s.blockheight()));
        }
        // An unknown hash is answered without asking lightningd anything.
        let target = preimage.map(|p| p.payment_hash()).or(hash);
        if let Some(h) = target.filter(|h| s.hodl.get(h).is_none()) {
            return Err(RpcError {
                code: ERR_UNKNOWN_INVOICE,
                message: format!("{SETTLE}: unknown payment_hash {h}"),
            });
        }
        // lightningd, not ballast's memory, says what is still held; and the height that
        // matters is lightningd's, which may be a block ahead of the last block_added.
        let height = current_height(&s).await;
        reconcile(&s, height).await;
        let svc = s.hodl.clone();
        let inv = blocking(move || svc.settle(preimage, hash, now_unix(), height))
            .await
            .map_err(|e| RpcError {
                message: format!("{SETTLE}: {}", e.message),
                ..e
            })?;
        Ok(invoice_json(&inv, height))
    }
    .await
}

pub(crate) const CANCEL: &str = "hodl-cancel";

pub async fn cancel(p: AppState, params: Value) -> Result<Value, RpcError> {
    let s = p;
    async {
        let p = Params::parse(CANCEL, &params, &["payment_hash"], 1)?;
        let hash: PaymentHash = p.required(p.parsed("payment_hash", "64 hex characters")?, "payment_hash")?;
        let svc = s.hodl.clone();
        let height = s.blockheight();
        let inv = blocking(move || svc.cancel(hash, CancelReason::Requested, now_unix(), height)).await?;
        Ok(invoice_json(&inv, height))
    }
    .await
}

pub(crate) const LOOKUP: &str = "hodl-lookup";
/// The longest a caller may block in `hodl-lookup`.
const MAX_WAIT_SECS: u64 = 24 * 3600;

pub async fn lookup(p: AppState, params: Value) -> Result<Value, RpcError> {
    let s = p;
    async {
        let p = Params::parse(LOOKUP, &params, &["payment_hash", "wait_for_state", "timeout"], 1)?;
        let hash: PaymentHash = p.required(p.parsed("payment_hash", "64 hex characters")?, "payment_hash")?;
        let want = match p.str("wait_for_state")? {
            None => None,
            Some(w) => Some(HodlState::parse(w).ok_or_else(|| {
                RpcError::invalid(format!(
                    "{LOOKUP}: unknown state '{w}' (OPEN, ACCEPTED, SETTLED, CANCELED, EXPIRED)"
                ))
            })?),
        };
        let timeout = p.u64("timeout")?.unwrap_or(60);
        if timeout > MAX_WAIT_SECS {
            return Err(RpcError::invalid(format!(
                "{LOOKUP}: 'timeout' is at most {MAX_WAIT_SECS} seconds"
            )));
        }
        // Subscribe before reading, so a transition between the read and the wait is seen.
        let mut events = s.hodl.subscribe();
        let inv = s.hodl.get(&hash).ok_or_else(|| RpcError {
            code: ERR_UNKNOWN_INVOICE,
            message: format!("{LOOKUP}: unknown payment_hash {hash}"),
        })?;
        let Some(want) = want else {
            return Ok(invoice_json(&inv, s.blockheight()));
        };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(timeout);
        let mut current = inv.state;
        loop {
            if current == want {
                let inv = s.hodl.get(&hash).unwrap_or(inv);
                return Ok(invoice_json(&inv, s.blockheight()));
            }
            if current.is_final() {
                return Err(RpcError {
                    code: ERR_INVOICE_STATE,
                    message: format!("{LOOKUP}: invoice is {current} and can never become {want}"),
                });
            }
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) => {
                    return Err(RpcError {
                        code: ERR_WAIT_TIMEOUT,
                        message: format!("{LOOKUP}: still {current} after {timeout}s waiting for {want}"),
                    })
                }
                Ok(Ok(HodlEvent::State { payment_hash, to, .. })) if payment_hash == hash => current = to,
                Ok(Ok(_)) => {}
                // Missed events: re-read the truth instead of guessing.
                Ok(Err(_)) => {
                    events = s.hodl.subscribe();
                    current = s.hodl.get(&hash).map(|i| i.state).unwrap_or(current);
                }
            }
        }
    }
    .await
}

pub(crate) const LIST: &str = "hodl-list";

pub async fn list(p: AppState, params: Value) -> Result<Value, RpcError> {
    let s = p;
    (|| {
        let p = Params::parse(LIST, &params, &["state", "limit", "offset"], 0)?;
        let state = match p.str("state")? {
            None => None,
            Some(w) => Some(HodlState::parse(w).ok_or_else(|| {
                RpcError::invalid(format!(
                    "{LIST}: unknown state '{w}' (OPEN, ACCEPTED, SETTLED, CANCELED, EXPIRED)"
                ))
            })?),
        };
        let limit = p.u64("limit")?.unwrap_or(100).min(10_000) as usize;
        let offset = p.u64("offset")?.unwrap_or(0) as usize;
        let (total, invs) = s.hodl.list(state, limit, offset);
        let h = s.blockheight();
        Ok(json!({
            "total": total,
            "invoices": invs.iter().map(|i| invoice_json(i, h)).collect::<Vec<_>>(),
        }))
    })()
}

/// The chain height: lightningd's own if it answers, never below the last one seen.
async fn current_height(s: &AppState) -> u32 {
    let known = s.blockheight();
    match s.node.block_height().await {
        Ok(h) => h.max(known),
        Err(e) => {
            log::debug!("block height from the node: {e}; using {known}");
            known
        }
    }
}

/// Reconciles OPEN and ACCEPTED hold invoices with the HTLCs the node holds now, and
/// returns what changed (already announced to subscribers). A node that cannot be asked
/// leaves everything as it was: the settle-time check of live hook calls still guards the
/// money.
pub(crate) async fn reconcile(s: &AppState, height: u32) -> Vec<HodlEvent> {
    s.hodl
        .reconcile_with_node(&s.node, now_unix(), height)
        .await
        .unwrap_or_else(|e| {
            log::warn!("{e}");
            Vec::new()
        })
}

/// Runs the once-a-second work (MPP timeouts, expiry) until the plugin ends.
pub(crate) async fn run_ticker(s: AppState) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        every.tick().await;
        let svc = s.hodl.clone();
        match tokio::task::spawn_blocking(move || svc.tick(now_unix())).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => log::error!("hold invoice timer: {e}"),
            Err(e) => log::error!("hold invoice timer task failed: {e}"),
        }
    }
}

/// Turns service events into custom notifications and log lines.
pub(crate) async fn run_notifier(s: AppState) {
    let mut rx = s.hodl.subscribe();
    loop {
        let e = match rx.recv().await {
            Ok(e) => e,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                log::warn!("{n} hold-invoice notifications were dropped (too many at once)");
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        publish(&s, e);
    }
}

pub(crate) fn publish(s: &AppState, e: HodlEvent) {
    let (topic, body) = match e {
        HodlEvent::State {
            payment_hash,
            from,
            to,
            reason,
        } => {
            match reason {
                // The payer's money went back without anyone deciding so: worth a warning.
                Some(r @ (CancelReason::HtlcsLost | CancelReason::Deadline)) => {
                    log::warn!("hold invoice {payment_hash}: {from} -> {to} ({})", json!(r))
                }
                Some(r) => log::info!("hold invoice {payment_hash}: {from} -> {to} ({})", json!(r)),
                None => log::info!("hold invoice {payment_hash}: {from} -> {to}"),
            }
            (
                "ballast_hodl_state",
                json!({
                    "payment_hash": payment_hash.to_hex(),
                    "old_state": from.as_str(),
                    "new_state": to.as_str(),
                    "reason": reason,
                    "timestamp": now_unix(),
                }),
            )
        }
        HodlEvent::DeadlineWarning {
            payment_hash,
            blocks_to_cancel,
        } => {
            let message = format!(
                "hold invoice {payment_hash}: settle within {blocks_to_cancel} block(s) or ballast cancels it to protect the channel"
            );
            log::warn!("{message}");
            (
                "ballast_alert",
                json!({
                    "type": "hodl_deadline",
                    "severity": "warning",
                    "payment_hash": payment_hash.to_hex(),
                    "blocks_to_cancel": blocks_to_cancel,
                    "message": message,
                    "timestamp": now_unix(),
                }),
            )
        }
        HodlEvent::PartsReleased { payment_hash, count } => {
            log::info!("hold invoice {payment_hash}: failed {count} part(s) of an incomplete payment");
            return;
        }
    };
    s.notifier.send(topic, body);
}
