//! Notification subscriptions.

use crate::api::{fees, monitor, now_unix, AppState};
use crate::counters::bump;
use crate::types::{Msat, PaymentHash, Scid};
use cln_plugin::Plugin;
use serde_json::Value;

/// lightningd wraps most notification payloads in an object named after the topic; older
/// releases and a few topics do not. Accept both.
fn payload<'a>(topic: &str, params: &'a Value) -> &'a Value {
    params.get(topic).unwrap_or(params)
}

pub async fn forward_event(p: Plugin<AppState>, v: Value) -> Result<(), anyhow::Error> {
    let s = p.state();
    bump(&s.counters.notifications);
    bump(&s.counters.forward_events);
    on_forward_event(s, payload("forward_event", &v));
    monitor::poke(s);
    Ok(())
}

/// A settled `forward_event` goes to the fee policy; other statuses change no balance.
fn on_forward_event(s: &AppState, payload: &Value) {
    if payload.get("status").and_then(Value::as_str) != Some("settled") {
        return;
    }
    let scid = |k: &str| {
        payload
            .get(k)
            .and_then(Value::as_str)
            .and_then(|t| t.parse::<Scid>().ok())
    };
    let msat = |k: &str| payload.get(k).and_then(Value::as_u64).map(Msat);
    let Some(in_channel) = scid("in_channel") else {
        log::warn!("forward_event without a usable in_channel: {payload}");
        return;
    };
    let hash = payload
        .get("payment_hash")
        .and_then(Value::as_str)
        .and_then(|t| t.parse::<PaymentHash>().ok());
    fees::on_settled_forward(
        s,
        in_channel,
        scid("out_channel"),
        msat("in_msat").unwrap_or_default(),
        msat("out_msat").unwrap_or_default(),
        hash,
        None,
    );
}

pub async fn channel_state_changed(p: Plugin<AppState>, _v: Value) -> Result<(), anyhow::Error> {
    let s = p.state();
    bump(&s.counters.notifications);
    bump(&s.counters.channel_state_changes);
    monitor::poke(s);
    Ok(())
}

pub async fn connect(p: Plugin<AppState>, _v: Value) -> Result<(), anyhow::Error> {
    let s = p.state();
    bump(&s.counters.notifications);
    bump(&s.counters.peer_connects);
    monitor::poke(s);
    Ok(())
}

pub async fn disconnect(p: Plugin<AppState>, _v: Value) -> Result<(), anyhow::Error> {
    let s = p.state();
    bump(&s.counters.notifications);
    bump(&s.counters.peer_disconnects);
    monitor::poke(s);
    Ok(())
}

pub async fn block_added(p: Plugin<AppState>, v: Value) -> Result<(), anyhow::Error> {
    let s = p.state().clone();
    bump(&s.counters.notifications);
    bump(&s.counters.blocks);
    let Some(height) = payload("block_added", &v)
        .get("height")
        .and_then(Value::as_u64)
        .and_then(|h| u32::try_from(h).ok())
    else {
        log::warn!("block_added without a usable height: {v}");
        return Ok(());
    };
    let height = s.set_blockheight(height);
    monitor::poke(&s);
    // Deadlines are counted in blocks, so the tip is kept durable; both run off the runtime
    // because they may flush the store.
    let svc = s.hodl.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = svc.on_block(height, now_unix()) {
            log::error!("hold invoice deadlines at block {height}: {e}");
        }
        s.store.set_tip(height)?;
        s.store.flush()
    })
    .await??;
    Ok(())
}

pub async fn shutdown(p: Plugin<AppState>, _v: Value) -> Result<(), anyhow::Error> {
    let s = p.state().clone();
    bump(&s.counters.notifications);
    log::info!("shutdown requested; answering held HTLCs and flushing the store");
    let height = s.blockheight();
    let done = tokio::task::spawn_blocking(move || {
        let answered = s.hodl.stop(now_unix(), height)?;
        s.store.flush()?;
        Ok::<_, anyhow::Error>(answered)
    })
    .await?;
    match done {
        Ok(0) => {}
        Ok(n) => {
            log::info!("answered {n} held HTLC(s) before stopping");
            // Give cln-plugin's writer a moment to send those answers before we exit.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
        Err(e) => log::error!("stopping hold invoices failed: {e}"),
    }
    p.state().stop.notify_one();
    Ok(())
}
