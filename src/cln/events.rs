//! Notification subscriptions.

use super::now_unix;
use super::state::PluginState;
use crate::counters::bump;
use cln_plugin::Plugin;
use serde_json::Value;

/// lightningd wraps most notification payloads in an object named after the topic; older
/// releases and a few topics do not. Accept both.
fn payload<'a>(topic: &str, params: &'a Value) -> &'a Value {
    params.get(topic).unwrap_or(params)
}

pub async fn forward_event(p: Plugin<PluginState>, v: Value) -> Result<(), anyhow::Error> {
    let s = p.state();
    bump(&s.counters.notifications);
    bump(&s.counters.forward_events);
    super::fees::on_forward_event(s, payload("forward_event", &v));
    super::monitor::poke(s);
    Ok(())
}

pub async fn channel_state_changed(p: Plugin<PluginState>, _v: Value) -> Result<(), anyhow::Error> {
    let s = p.state();
    bump(&s.counters.notifications);
    bump(&s.counters.channel_state_changes);
    super::monitor::poke(s);
    Ok(())
}

pub async fn connect(p: Plugin<PluginState>, _v: Value) -> Result<(), anyhow::Error> {
    let s = p.state();
    bump(&s.counters.notifications);
    bump(&s.counters.peer_connects);
    super::monitor::poke(s);
    Ok(())
}

pub async fn disconnect(p: Plugin<PluginState>, _v: Value) -> Result<(), anyhow::Error> {
    let s = p.state();
    bump(&s.counters.notifications);
    bump(&s.counters.peer_disconnects);
    super::monitor::poke(s);
    Ok(())
}

pub async fn block_added(p: Plugin<PluginState>, v: Value) -> Result<(), anyhow::Error> {
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
    super::monitor::poke(&s);
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

pub async fn shutdown(p: Plugin<PluginState>, _v: Value) -> Result<(), anyhow::Error> {
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
