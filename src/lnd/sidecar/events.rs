//! LND's streams: blocks (HTLC deadlines and the monitor's chain view) and forwards (the
//! fee policy). Resubscribes with backoff when LND goes away, and catches up on the
//! forwards settled while the stream was down.

use crate::api::{fees, monitor, now_unix, AppState};
use crate::counters::bump;
use crate::lnd::node::{ForwardEvent, LndNode};
use crate::node::{ForwardStatus, Node};
use std::time::Duration;

const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// How a forward settled without amounts is looked up in ForwardingHistory: first after
/// this long, then twice as long each time, so the lookups span more than lnd's
/// forwarding-log flush interval (`htlcswitch.DefaultFwdEventInterval`, 15 s).
const FILL_FIRST: Duration = Duration::from_secs(1);
const FILL_TRIES: u32 = 7;
/// Looked up from this long before the settle was seen (clocks and batching).
const FILL_LOOKBACK_SECS: u64 = 300;

/// Runs until the process ends. `flow_window` is how far back the first catch-up reads,
/// so the fee policy's flow figures survive a sidecar restart.
pub async fn run(state: AppState, lnd: LndNode, flow_window: u64) {
    let mut backoff = RETRY_MIN;
    // Forwards settled after this time and not yet seen live are caught up from
    // ForwardingHistory: at start the flow window, after a reconnect the outage.
    let mut seen_until = now_unix().saturating_sub(flow_window);
    let mut first = true;
    loop {
        let height = match lnd.block_height().await {
            Ok(h) => h,
            Err(e) => {
                log::warn!("LND unreachable ({e}); retrying in {}s", backoff.as_secs());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
                continue;
            }
        };
        if !first {
            log::info!("LND is back at height {height}; resubscribing");
        }
        first = false;
        on_block(&state, height).await;
        // Forwards settled from here on arrive live; history is read only up to here, so
        // none is counted twice.
        let subscribed_at = now_unix();
        let (blocks, forwards) = match (lnd.subscribe_blocks().await, lnd.subscribe_forward_events().await) {
            (Ok(b), Ok(f)) => (b, f),
            (Err(e), _) | (_, Err(e)) => {
                log::warn!(
                    "LND subscriptions failed ({e}); retrying in {}s",
                    backoff.as_secs()
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RETRY_MAX);
                continue;
            }
        };
        catch_up(&state, &lnd, seen_until, subscribed_at).await;
        backoff = RETRY_MIN;
        let reason = follow(&state, &lnd, blocks, forwards).await;
        seen_until = now_unix();
        log::warn!("lost LND's event streams ({reason}); reconnecting");
        monitor::poke(&state);
        tokio::time::sleep(backoff).await;
    }
}

/// Consumes both streams until one ends; returns why.
async fn follow(
    state: &AppState,
    lnd: &LndNode,
    mut blocks: tokio::sync::mpsc::Receiver<crate::node::NodeResult<u32>>,
    mut forwards: tokio::sync::mpsc::Receiver<crate::node::NodeResult<ForwardEvent>>,
) -> String {
    loop {
        tokio::select! {
            b = blocks.recv() => match b {
                Some(Ok(h)) => on_block(state, h).await,
                Some(Err(e)) => return format!("block stream: {e}"),
                None => return "block stream ended".into(),
            },
            f = forwards.recv() => match f {
                Some(Ok(ev)) => on_forward(state, lnd, &ev),
                Some(Err(e)) => return format!("HTLC event stream: {e}"),
                None => return "HTLC event stream ended".into(),
            },
        }
    }
}

async fn on_block(state: &AppState, height: u32) {
    bump(&state.counters.blocks);
    let height = state.set_blockheight(height);
    monitor::poke(state);
    let s = state.clone();
    let r = tokio::task::spawn_blocking(move || {
        s.hodl.on_block(height, now_unix())?;
        s.store.set_tip(height)?;
        s.store.flush()?;
        Ok::<_, anyhow::Error>(())
    })
    .await;
    match r {
        Ok(Ok(())) => {}
        Ok(Err(e)) => log::error!("hold invoice deadlines at block {height}: {e}"),
        Err(e) => log::error!("block task failed: {e}"),
    }
}

fn on_forward(state: &AppState, lnd: &LndNode, ev: &ForwardEvent) {
    bump(&state.counters.notifications);
    bump(&state.counters.forward_events);
    if ev.settled {
        match ev.amounts {
            Some((in_msat, out_msat)) => fees::on_settled_forward(
                state,
                ev.in_channel,
                Some(ev.out_channel),
                in_msat,
                out_msat,
                None,
                None,
            ),
            // Offered before the stream started: LND's settle event has no amounts, and a
            // forward counted as 0 msat would understate the flow. Its settle time is after
            // the subscription, so the catch-up from history does not count it either.
            None => {
                tokio::spawn(fill_amounts(
                    state.clone(),
                    lnd.clone(),
                    *ev,
                    now_unix().saturating_sub(FILL_LOOKBACK_SECS),
                ));
            }
        }
    }
    monitor::poke(state);
}

/// Counts a forward settled without amounts once ForwardingHistory has it; leaves it out
/// (and says so) if it never shows up.
async fn fill_amounts(state: AppState, lnd: LndNode, ev: ForwardEvent, since: u64) {
    let mut wait = FILL_FIRST;
    for _ in 0..FILL_TRIES {
        tokio::time::sleep(wait).await;
        wait *= 2;
        match lnd.forward_amounts(&ev, since).await {
            Ok(Some(f)) => {
                fees::on_settled_forward(
                    &state,
                    f.in_channel,
                    f.out_channel,
                    f.in_msat,
                    f.out_msat.unwrap_or_default(),
                    None,
                    f.resolved_time.map(|t| t as u64),
                );
                monitor::poke(&state);
                return;
            }
            Ok(None) => {}
            Err(e) => log::debug!(
                "forward {}:{}: ForwardingHistory lookup failed: {e}",
                ev.in_channel,
                ev.in_htlc_id
            ),
        }
    }
    log::warn!(
        "forward {}:{} → {}:{} settled without amounts (offered before ballast subscribed) and is not in LND's ForwardingHistory; left out of the flow figures",
        ev.in_channel,
        ev.in_htlc_id,
        ev.out_channel,
        ev.out_htlc_id
    );
}

/// Feeds the fee policy the forwards settled since `since` (while the streams were down).
async fn catch_up(state: &AppState, lnd: &LndNode, since: u64, until: u64) {
    match lnd.forwards(since).await {
        Ok(list) => {
            let mut n = 0;
            // ForwardingHistory filters on whole seconds: the boundary second at `since`
            // may repeat a forward counted live before an outage, which only nudges a flow
            // figure.
            let before_live =
                |f: &&crate::node::Forward| (f.resolved_time.unwrap_or(f.received_time) as u64) < until;
            for f in list
                .iter()
                .filter(|f| f.status == ForwardStatus::Settled)
                .filter(before_live)
            {
                fees::on_settled_forward(
                    state,
                    f.in_channel,
                    f.out_channel,
                    f.in_msat,
                    f.out_msat.unwrap_or_default(),
                    None,
                    f.resolved_time.or(Some(f.received_time)).map(|t| t as u64),
                );
                n += 1;
            }
            if n > 0 {
                log::info!("caught up on {n} forward(s) settled while LND's stream was down");
                monitor::poke(state);
            }
        }
        Err(e) => log::warn!("could not catch up on forwards since {since}: {e}"),
    }
}
