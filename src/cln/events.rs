//! Notification subscriptions.

use super::state::PluginState;
use crate::counters::bump;
use cln_plugin::Plugin;
use serde_json::Value;

/// lightningd wraps most notification payloads in an object named after the topic; older
/// releases and a few topics do not. Accept both.
fn payload<'a>(topic: &str, params: &'a Value) -> &'a Value {
    params.get(topic).unwrap_or(params)
}

pub async fn forward_event(p: Plugin<PluginState>, _v: Value) -> Result<(), anyhow::Error> {
    let s = p.state();
    bump(&s.counters.notifications);
    bump(&s.counters.forward_events);
    Ok(())
}

pub async fn channel_state_changed(p: Plugin<PluginState>, _v: Value) -> Result<(), anyhow::Error> {
    let s = p.state();
    bump(&s.counters.notifications);
    bump(&s.counters.channel_state_changes);
    Ok(())
}

pub async fn connect(p: Plugin<PluginState>, _v: Value) -> Result<(), anyhow::Error> {
    let s = p.state();
    bump(&s.counters.notifications);
    bump(&s.counters.peer_connects);
    Ok(())
}

pub async fn disconnect(p: Plugin<PluginState>, _v: Value) -> Result<(), anyhow::Error> {
    let s = p.state();
    bump(&s.counters.notifications);
    bump(&s.counters.peer_disconnects);
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
    s.set_blockheight(height);
    // Deadlines are counted in blocks, so the tip is kept durable; flush off the runtime.
    tokio::task::spawn_blocking(move || {
        s.store.set_tip(height)?;
        s.store.flush()
    })
    .await??;
    Ok(())
}

pub async fn shutdown(p: Plugin<PluginState>, _v: Value) -> Result<(), anyhow::Error> {
    let s = p.state().clone();
    bump(&s.counters.notifications);
    log::info!("shutdown requested by lightningd; flushing store");
    let flushed = tokio::task::spawn_blocking(move || s.store.flush()).await?;
    if let Err(e) = flushed {
        log::error!("final store flush failed: {e}");
    }
    p.shutdown()?;
    Ok(())
}
