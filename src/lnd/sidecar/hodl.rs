//! Hold invoices on LND. LND holds the HTLCs itself; ballast keeps its own state machine
//! (the same `HodlService` as on Core Lightning, with its deadline and expiry rules) and
//! keeps LND in step with it:
//! - LND reports a paid invoice (ACCEPTED) → its HTLCs go to the state machine;
//! - the state machine settles or cancels (by a method, a deadline, an expiry) → LND is
//!   told, and told again after a reconnect until its own state agrees;
//! - LND cancels on its own (its expiry guard, or someone using lncli) → ballast follows.
//!
//! ballast's store is the record of decisions: a settle once recorded is pushed to LND
//! until LND confirms it, never undone.

use crate::api::{now_unix, AppState};
use crate::engine::hodl::{CancelReason, HodlInvoice, HodlState, HtlcKey, IncomingHtlc};
use crate::lnd::node::{InvoiceUpdate, LndInvoiceState, LndNode};
use crate::service::hodl::{HodlEvent, HtlcReply};
use crate::types::PaymentHash;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How often the invoice list is scanned for invoices to watch.
const SCAN_EVERY: Duration = Duration::from_secs(1);
/// Final invoices younger than this are checked against LND after a start.
const RECHECK_FINAL_SECS: u64 = 7 * 86_400;
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

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
