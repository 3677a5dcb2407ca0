//! Hold invoices on LND. LND holds the HTLCs itself; ballast keeps its own state machine
//! (the same `HodlService` as on Core Lightning, with its deadline and expiry rules) and
//! keeps LND in step with it:
//! - LND reports a paid invoice (ACCEPTED) → its HTLCs go to the state machine;
//! - the state machine settles or cancels (by a method, a deadline, an expiry) → LND is
//!   told, and told again after a reconnect until its own state agrees;
//! - LND cancels on its own (its expiry guard, or someone using lncli) → ballast follows.
//!
//! `hodl-settle` on LND answers SETTLED only once LND has settled: it stores a settling
//! intent (the preimage, durably), calls SettleInvoice, and records SETTLED when LND
//! confirms. LND refusing (it canceled first: its guard, lncli) is an error naming LND's
//! answer and the invoice state LND reports. When LND's answer is lost (connection), the
//! intent stays and the watcher finishes it: settled on LND → SETTLED here; canceled there
//! → ballast follows; still accepted → SettleInvoice again, as the caller asked.
//!
//! ballast's store is the record of decisions: a settle once recorded is pushed to LND
//! until LND confirms it, never undone.

use crate::api::hodl::{NodeSettleError, NodeSettler};
use crate::api::{now_unix, AppState};
use crate::engine::hodl::{CancelReason, HodlInvoice, HodlState, HtlcKey, IncomingHtlc};
use crate::lnd::node::{InvoiceUpdate, LndInvoiceState, LndNode};
use crate::node::NodeError;
use crate::service::hodl::{HodlEvent, HtlcReply, ServiceError};
use crate::store::{Record, TypedTree};
use crate::types::{PaymentHash, Preimage};
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the invoice list is scanned for invoices to watch.
const SCAN_EVERY: Duration = Duration::from_secs(1);
/// Final invoices younger than this are checked against LND after a start.
const RECHECK_FINAL_SECS: u64 = 7 * 86_400;
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// How long `hodl-settle` waits for LND's answer before saying it is unconfirmed.
const SETTLE_ANSWER_WITHIN: Duration = Duration::from_secs(20);

/// The store tree of settling intents, by payment hash.
const INTENTS: &str = "lnd_settle_intents";

/// `hodl-settle` was asked for and SettleInvoice sent (or about to be); LND has not yet
/// confirmed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct SettleIntent {
    preimage: Preimage,
    at: u64,
}

impl Record for SettleIntent {
    const VERSION: u8 = 1;
}

/// Why `hodl-settle` on LND did not answer SETTLED.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SettleError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// LND answered SettleInvoice with an error; nothing was settled.
    #[error("LND refused to settle: {lnd}; LND reports the invoice {}", state_name(*.state))]
    Refused {
        lnd: String,
        state: Option<LndInvoiceState>,
    },
    /// LND's answer did not arrive: it may or may not have settled.
    #[error("LND's answer to SettleInvoice was lost ({lnd}); the invoice is not SETTLED until LND confirms, and ballast keeps asking (see hodl-lookup)")]
    Unconfirmed { lnd: String },
    #[error("internal task failed: {0}")]
    Internal(String),
    /// LND settled, but ballast could not record it.
    #[error("LND settled the invoice, but ballast could not record it: {0}")]
    NotRecorded(String),
}

fn state_name(s: Option<LndInvoiceState>) -> &'static str {
    match s {
        Some(LndInvoiceState::Open) => "OPEN",
        Some(LndInvoiceState::Accepted) => "ACCEPTED",
        Some(LndInvoiceState::Settled) => "SETTLED",
        Some(LndInvoiceState::Canceled) => "CANCELED",
        None => "in an unknown state (LookupInvoice failed)",
    }
}

fn intents(state: &AppState) -> Result<TypedTree<SettleIntent>, ServiceError> {
    Ok(state.store.tree(INTENTS)?)
}

/// Runs store work off the runtime's workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ServiceError> + Send + 'static,
) -> Result<T, SettleError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => Ok(r?),
        Err(e) => Err(SettleError::Internal(e.to_string())),
    }
}

/// `hodl-settle` on LND, as the shared method calls it.
pub(crate) struct LndSettler(pub LndNode);

impl NodeSettler for LndSettler {
    fn settle(
        &self,
        state: AppState,
        preimage: Option<Preimage>,
        hash: Option<PaymentHash>,
    ) -> Pin<Box<dyn Future<Output = Result<HodlInvoice, NodeSettleError>> + Send>> {
        let lnd = self.0.clone();
        Box::pin(async move {
            settle(&state, &lnd, preimage, hash).await.map_err(|e| match e {
                SettleError::Service(e) => NodeSettleError::Service(e),
                e @ SettleError::Refused { .. } => NodeSettleError::Refused(e.to_string()),
                e => NodeSettleError::Failed(e.to_string()),
            })
        })
    }
}

/// `hodl-settle` on LND.
async fn settle(
    state: &AppState,
    lnd: &LndNode,
    preimage: Option<Preimage>,
    hash: Option<PaymentHash>,
) -> Result<HodlInvoice, SettleError> {
    let hash = preimage
        .map(|p| p.payment_hash())
        .or(hash)
        .ok_or(ServiceError::NoPreimage(PaymentHash([0; 32])))?;
    let inv = state.hodl.get(&hash).ok_or(ServiceError::Unknown(hash))?;
    let pre = preimage.or(inv.preimage).ok_or(ServiceError::NoPreimage(hash))?;
    // The state machine's own rules (right preimage, ACCEPTED), before LND is asked.
    inv.clone()
        .settle(pre, now_unix(), state.blockheight(), state.hodl.params())
        .map_err(ServiceError::from)?;
    let st = state.clone();
    blocking(move || {
        intents(&st)?.put(
            hash.0,
            &SettleIntent {
                preimage: pre,
                at: now_unix(),
            },
        )?;
        st.store.flush()?;
        Ok(())
    })
    .await?;
    let answer = match tokio::time::timeout(SETTLE_ANSWER_WITHIN, lnd.settle_invoice(pre)).await {
        Ok(a) => a,
        Err(_) => Err(NodeError::Transport {
            method: "SettleInvoice",
            message: format!("no answer within {}s", SETTLE_ANSWER_WITHIN.as_secs()),
        }),
    };
    match answer {
        Ok(()) => record_settled(state, hash, pre).await,
        Err(NodeError::Rejected { message, .. }) => {
            drop_intent(state, hash).await;
            let lnd_state = lnd.invoice_state(hash).await.ok();
            log::warn!(
                "hold invoice {hash}: LND refused to settle ({message}); LND reports it {}",
                state_name(lnd_state)
            );
            Err(SettleError::Refused {
                lnd: message,
                state: lnd_state,
            })
        }
        Err(e) => {
            tokio::spawn(retry_intent(state.clone(), lnd.clone(), hash, pre));
            Err(SettleError::Unconfirmed { lnd: e.to_string() })
        }
    }
}

/// Sends a settle whose answer was lost again until LND answers it (the watcher may
/// finish it first, from LND's invoice updates; both are idempotent).
async fn retry_intent(state: AppState, lnd: LndNode, hash: PaymentHash, pre: Preimage) {
    let mut backoff = RETRY_MIN;
    loop {
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RETRY_MAX);
        let still_wanted = pending_intent(&state, hash).is_some()
            && state
                .hodl
                .get(&hash)
                .is_some_and(|i| i.state == HodlState::Accepted);
        if !still_wanted {
            return;
        }
        match lnd.settle_invoice(pre).await {
            Ok(()) => {
                if let Err(e) = record_settled(&state, hash, pre).await {
                    log::error!("hold invoice {hash}: {e}");
                }
                return;
            }
            // LND canceled meanwhile; the watcher follows it.
            Err(NodeError::Rejected { message, .. }) => {
                log::warn!("hold invoice {hash}: LND refused the pending settle ({message})");
                drop_intent(&state, hash).await;
                return;
            }
            Err(e) => log::debug!("hold invoice {hash}: pending settle still unanswered ({e}); retrying"),
        }
    }
}

/// LND confirmed the settle: SETTLED here too, and the intent is done.
async fn record_settled(
    state: &AppState,
    hash: PaymentHash,
    pre: Preimage,
) -> Result<HodlInvoice, SettleError> {
    let svc = state.hodl.clone();
    let r = blocking(move || svc.record_node_settled(pre, now_unix())).await;
    let inv = match r {
        Ok(inv) => inv,
        // Settled already (a concurrent call, or the watcher): the same answer.
        Err(e) => match state.hodl.get(&hash) {
            Some(inv) if inv.state == HodlState::Settled => inv,
            _ => {
                log::error!("hold invoice {hash}: LND settled it, but ballast could not record it: {e}");
                return Err(SettleError::NotRecorded(e.to_string()));
            }
        },
    };
    drop_intent(state, hash).await;
    log::info!("hold invoice {hash}: settled on LND");
    Ok(inv)
}

async fn drop_intent(state: &AppState, hash: PaymentHash) {
    let st = state.clone();
    let r = blocking(move || {
        intents(&st)?.remove(hash.0)?;
        st.store.flush()?;
        Ok(())
    })
    .await;
    if let Err(e) = r {
        log::warn!("hold invoice {hash}: could not clear its settling intent: {e}");
    }
}

fn pending_intent(state: &AppState, hash: PaymentHash) -> Option<SettleIntent> {
    intents(state).ok()?.get(hash.0).ok().flatten()
}

/// What is being watched, so each invoice has at most one watcher.
#[derive(Default)]
struct Watching(Mutex<HashSet<PaymentHash>>);

impl Watching {
    fn start(&self, h: PaymentHash) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(h)
    }
    fn stop(&self, h: &PaymentHash) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).remove(h);
    }
}

/// Runs until the process ends: starts a watcher for every invoice LND and ballast may
/// still disagree on.
pub async fn run(state: AppState, lnd: LndNode) {
    let watching = Arc::new(Watching::default());
    // Final invoices decided shortly before this start may not have reached LND: each is
    // checked once. Open and accepted ones are watched until they are final.
    let since = now_unix().saturating_sub(RECHECK_FINAL_SECS);
    for st in [HodlState::Settled, HodlState::Canceled, HodlState::Expired] {
        let (_, list) = state.hodl.list(Some(st), usize::MAX, 0);
        for inv in list.into_iter().filter(|i| i.updated_at >= since) {
            follow(&state, &lnd, &watching, inv.payment_hash);
        }
    }
    let mut tick = tokio::time::interval(SCAN_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut events = state.hodl.subscribe();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            e = events.recv() => {
                match e {
                    // A transition of an invoice nobody watches (made and decided between
                    // two scans): LND must hear of it.
                    Ok(HodlEvent::State { payment_hash, .. }) => {
                        follow(&state, &lnd, &watching, payment_hash);
                        continue;
                    }
                    Ok(_) => continue,
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        }
        for st in [HodlState::Open, HodlState::Accepted] {
            let (_, list) = state.hodl.list(Some(st), usize::MAX, 0);
            for inv in list {
                follow(&state, &lnd, &watching, inv.payment_hash);
            }
        }
    }
}

/// Starts a watcher for `hash` unless one is running.
fn follow(state: &AppState, lnd: &LndNode, watching: &Arc<Watching>, hash: PaymentHash) {
    if watching.start(hash) {
        tokio::spawn(watch(state.clone(), lnd.clone(), hash, watching.clone()));
    }
}

/// Follows one invoice on LND until both sides agree it is final.
async fn watch(state: AppState, lnd: LndNode, hash: PaymentHash, watching: Arc<Watching>) {
    let mut backoff = RETRY_MIN;
    let mut events = state.hodl.subscribe();
    'session: loop {
        match lnd.has_invoice(hash).await {
            Ok(true) => {}
            Ok(false) => {
                // Still marked as watched, so the scan does not retry it every second.
                log::warn!("hold invoice {hash}: LND does not know it (garbage-collected?); ballast keeps its own record only");
                return;
            }
            Err(e) => {
                log::debug!("hold invoice {hash}: lookup failed ({e}); retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
                continue;
            }
        }
        let mut rx = match lnd.subscribe_single_invoice(hash).await {
            Ok(rx) => rx,
            Err(e) => {
                log::debug!("hold invoice {hash}: subscribe failed ({e}); retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
                continue;
            }
        };
        let mut last: Option<InvoiceUpdate> = None;
        loop {
            tokio::select! {
                u = rx.recv() => match u {
                    Some(Ok(u)) => {
                        backoff = RETRY_MIN;
                        last = Some(u);
                    }
                    // LND ends the stream when the invoice is final, or went away: a
                    // resubscription tells which, and backs off if it keeps happening.
                    Some(Err(e)) => {
                        log::debug!("hold invoice {hash}: stream from LND broke ({e}); resubscribing");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(RETRY_MAX);
                        continue 'session;
                    }
                    None => {
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(RETRY_MAX);
                        continue 'session;
                    }
                },
                // Our side moved: act on the last state LND reported. Other invoices'
                // events are not ours to act on.
                e = events.recv() => match e {
                    Ok(e) if event_hash(&e) != hash => continue,
                    Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break 'session,
                }
            }
            let Some(u) = &last else { continue };
            match step(&state, &lnd, hash, u).await {
                Ok(true) => break 'session,
                Ok(false) => {}
                Err(e) => {
                    log::warn!("hold invoice {hash}: {e}; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RETRY_MAX);
                    continue 'session;
                }
            }
        }
    }
    watching.stop(&hash);
}

fn event_hash(e: &HodlEvent) -> PaymentHash {
    match e {
        HodlEvent::State { payment_hash, .. }
        | HodlEvent::DeadlineWarning { payment_hash, .. }
        | HodlEvent::PartsReleased { payment_hash, .. } => *payment_hash,
    }
}

/// Brings the two sides together once. `Ok(true)` when both are final.
async fn step(state: &AppState, lnd: &LndNode, hash: PaymentHash, u: &InvoiceUpdate) -> Result<bool, String> {
    let Some(inv) = state.hodl.get(&hash) else {
        return Ok(true);
    };
    if inv.state == HodlState::Accepted {
        if let Some(intent) = pending_intent(state, hash) {
            if let Some(done) = finish_intent(state, lnd, hash, u, intent).await {
                return done;
            }
        }
    }
    match (inv.state, u.state) {
        (HodlState::Open, LndInvoiceState::Accepted) => {
            accept(state, &inv, u).await?;
            Ok(false)
        }
        (HodlState::Settled, LndInvoiceState::Accepted) => {
            let pre = inv
                .preimage
                .ok_or_else(|| "settled without a preimage (store damaged?)".to_string())?;
            lnd.settle_invoice(pre)
                .await
                .map_err(|e| format!("LND did not settle: {e}"))?;
            log::info!("hold invoice {hash}: settled on LND");
            Ok(false)
        }
        (HodlState::Canceled | HodlState::Expired, LndInvoiceState::Open | LndInvoiceState::Accepted) => {
            if pending_intent(state, hash).is_some() {
                drop_intent(state, hash).await;
            }
            lnd.cancel_invoice(hash)
                .await
                .map_err(|e| format!("LND did not cancel: {e}"))?;
            log::info!("hold invoice {hash}: canceled on LND");
            Ok(false)
        }
        (HodlState::Open | HodlState::Accepted, LndInvoiceState::Canceled) => {
            // LND gave up on its own (its expiry guard, or lncli): follow it, so callers
            // do not settle what LND has already failed back.
            let reason = if inv.state == HodlState::Accepted {
                CancelReason::Deadline
            } else {
                CancelReason::Requested
            };
            let svc = state.hodl.clone();
            let height = state.blockheight();
            tokio::task::spawn_blocking(move || svc.cancel(hash, reason, now_unix(), height))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| e.to_string())?;
            log::warn!("hold invoice {hash}: LND canceled it; ballast follows");
            Ok(true)
        }
        (HodlState::Open | HodlState::Accepted, LndInvoiceState::Settled) => {
            log::error!("hold invoice {hash}: LND shows it settled, but ballast never settled it (settled outside ballast?)");
            Ok(true)
        }
        (HodlState::Settled, LndInvoiceState::Settled)
        | (HodlState::Canceled | HodlState::Expired, LndInvoiceState::Canceled) => Ok(true),
        // Given up here, yet LND took the money (settled outside ballast): nothing to undo.
        (HodlState::Canceled | HodlState::Expired, LndInvoiceState::Settled) => {
            log::error!(
                "hold invoice {hash}: canceled in ballast but LND settled it (settled outside ballast?)"
            );
            Ok(true)
        }
        // Settled here but canceled there cannot be mended; say so loudly once.
        (HodlState::Settled, LndInvoiceState::Canceled) => {
            log::error!(
                "hold invoice {hash}: settled in ballast but LND canceled it; the payment was not received"
            );
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// A pending settle (its answer lost, or still in flight) for an invoice ACCEPTED here,
/// finished by what LND now reports: `Some(step's answer)`, or `None` when the intent is
/// dropped and the update is to be handled as usual (LND canceled: ballast follows).
async fn finish_intent(
    state: &AppState,
    lnd: &LndNode,
    hash: PaymentHash,
    u: &InvoiceUpdate,
    intent: SettleIntent,
) -> Option<Result<bool, String>> {
    match u.state {
        LndInvoiceState::Settled => Some(
            record_settled(state, hash, intent.preimage)
                .await
                .map(|_| true)
                .map_err(|e| e.to_string()),
        ),
        LndInvoiceState::Accepted => Some(match lnd.settle_invoice(intent.preimage).await {
            Ok(()) => record_settled(state, hash, intent.preimage)
                .await
                .map(|_| false)
                .map_err(|e| e.to_string()),
            // LND canceled meanwhile: its next update says so, and ballast follows.
            Err(NodeError::Rejected { message, .. }) => {
                log::warn!("hold invoice {hash}: LND refused the pending settle ({message})");
                drop_intent(state, hash).await;
                Ok(false)
            }
            Err(e) => Err(format!("LND did not answer the pending settle: {e}")),
        }),
        // LND gave up first (or never got the HTLCs): the settle cannot happen.
        LndInvoiceState::Canceled | LndInvoiceState::Open => {
            drop_intent(state, hash).await;
            None
        }
    }
}

/// Hands the HTLCs LND accepted to the state machine, which decides whether the invoice is
/// paid (amount, expiry, CLTV) exactly as it does for Core Lightning's HTLCs.
async fn accept(state: &AppState, inv: &HodlInvoice, u: &InvoiceUpdate) -> Result<(), String> {
    let height = state.blockheight();
    // Judged as of when LND accepted each HTLC, not when ballast got to see it (it may have
    // been down): a payment that was in time stays in time.
    let htlcs: Vec<(IncomingHtlc, u64, u32)> = u
        .htlcs
        .iter()
        .filter(|h| h.state == "ACCEPTED")
        .map(|h| {
            let at = if h.accept_time > 0 {
                h.accept_time
            } else {
                now_unix()
            };
            let at_height = if h.accept_height > 0 {
                h.accept_height
            } else {
                height
            };
            let htlc = IncomingHtlc {
                key: HtlcKey {
                    scid: h.scid,
                    id: h.htlc_index,
                },
                amount: h.amount,
                cltv_expiry: h.expiry_height,
                cltv_expiry_relative: h.expiry_height.saturating_sub(at_height),
                // LND checked the payment secret before accepting.
                payment_secret: Some(inv.payment_secret),
                total_msat: Some(u.amount_paid.max(inv.amount)),
            };
            (htlc, at, at_height)
        })
        .collect();
    let svc = state.hodl.clone();
    let hash = inv.payment_hash;
    let replies = tokio::task::spawn_blocking(move || {
        htlcs
            .iter()
            .map(|(h, at, at_height)| svc.on_htlc(hash, h, *at, *at_height))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| e.to_string())?
    .map_err(|e| e.to_string())?;
    for r in replies {
        // LND answers its HTLCs itself when the invoice is settled or canceled; the
        // per-HTLC answers the state machine gives are for Core Lightning's hook.
        match r {
            HtlcReply::Wait(rx) => {
                tokio::spawn(async move {
                    let _ = rx.await;
                });
            }
            // LND cannot fail one HTLC of an accepted invoice; its own expiry guard will
            // cancel the invoice, and ballast follows it.
            HtlcReply::Now(crate::service::hodl::Answer::Fail(f)) => {
                log::warn!("hold invoice {hash}: ballast would fail an HTLC LND accepted ({f:?}); leaving it to LND's expiry guard")
            }
            _ => {}
        }
    }
    Ok(())
}
