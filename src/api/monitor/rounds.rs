//! Snapshot rounds: asked for by events (debounced into one round per burst) and by a
//! timer; each reads the channels, lets the service judge them, and announces the alerts
//! raised or cleared (log line, `ballast_alert` notification, webhook queue).

use super::alerts::alert_json;
use super::errors::node_error;
use super::webhook::{webhook_worker, WebhookStats, WEBHOOK_BACKOFF, WEBHOOK_QUEUE};
use super::{blocking, RpcError};
use crate::api::now_unix;
use crate::api::state::AppState;
use crate::engine::monitor::{Severity, Transition};
use crate::node::Node;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Events within this long make one snapshot round.
pub const DEBOUNCE: Duration = Duration::from_secs(2);
/// How long a round waits for `listpeerchannels`.
const NODE_TIMEOUT: Duration = Duration::from_secs(30);

/// The monitor's runtime half, shared through the plugin state.
pub struct Runtime {
    pub(super) dirty: AtomicBool,
    pub(super) wake: tokio::sync::Notify,
    pub(super) webhook: Option<mpsc::SyncSender<Value>>,
    pub webhook_stats: Arc<WebhookStats>,
    /// When true the loop has already taken at least one snapshot since start.
    pub(super) started: AtomicBool,
}

impl Runtime {
    /// Starts the webhook thread if a URL is given.
    pub fn new(webhook_url: Option<String>) -> std::io::Result<Runtime> {
        let stats = Arc::new(WebhookStats::default());
        let webhook = match webhook_url {
            Some(url) => {
                let (tx, rx) = mpsc::sync_channel(WEBHOOK_QUEUE);
                let st = stats.clone();
                std::thread::Builder::new()
                    .name("ballast-webhook".into())
                    .spawn(move || webhook_worker(url, rx, st, WEBHOOK_BACKOFF))?;
                Some(tx)
            }
            None => None,
        };
        Ok(Runtime {
            dirty: AtomicBool::new(false),
            wake: tokio::sync::Notify::new(),
            webhook,
            webhook_stats: stats,
            started: AtomicBool::new(false),
        })
    }
}

/// Asks for a snapshot round soon; bursts of calls make one round (see [`DEBOUNCE`]).
pub fn poke(s: &AppState) {
    s.monitor_rt.dirty.store(true, Ordering::Release);
    s.monitor_rt.wake.notify_one();
}

/// Announces a raised or cleared alert: log line, notification, webhook.
fn deliver(s: &AppState, t: &Transition) {
    let a = t.alert();
    let what = match t {
        Transition::Raised(_) => "raised",
        Transition::Cleared(_) => "cleared",
        Transition::Updated(_) => return,
    };
    let line = format!("alert {} {} {what} on {}: {}", a.id, a.kind, a.channel, a.message);
    // A cleared alert is good news: it is logged at info whatever its severity. A critical
    // one is still `warn`: lightningd shows `error` as **BROKEN**, which operators (and
    // pyln-testing) read as a bug in ballast, and the channel is not ballast's fault.
    match (what, a.severity) {
        ("raised", Severity::Critical | Severity::Warning) => log::warn!("{line}"),
        _ => log::info!("{line}"),
    }
    let body = alert_json(a);
    if let Some(tx) = &s.monitor_rt.webhook {
        if let Err(mpsc::TrySendError::Full(_)) = tx.try_send(body.clone()) {
            s.monitor_rt.webhook_stats.dropped.fetch_add(1, Ordering::Relaxed);
            log::warn!("webhook: queue full, alert {} not posted", a.id);
        }
    }
    s.notifier.send("ballast_alert", body);
}

/// One snapshot round: read the channels, evaluate, store, deliver.
async fn round(s: &AppState) -> Result<usize, RpcError> {
    let channels = match tokio::time::timeout(NODE_TIMEOUT, s.node.channels()).await {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => return Err(node_error("listpeerchannels", e)),
        Err(_) => return Err(node_error("listpeerchannels", "timed out")),
    };
    let height = s.blockheight();
    let svc = s.monitor.clone();
    let transitions = blocking(move || svc.snapshot_and_evaluate(&channels, height, now_unix())).await?;
    s.monitor_rt.started.store(true, Ordering::Release);
    let mut notable = 0;
    for t in transitions.iter().filter(|t| t.is_notable()) {
        deliver(s, t);
        notable += 1;
    }
    Ok(notable)
}

/// Takes a round on every timer tick and, debounced, after events.
pub async fn run_loop(s: AppState, interval: Duration) {
    let rt = s.monitor_rt.clone();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = rt.wake.notified() => {
                // A wake-up whose events a finished round already covered.
                if !rt.dirty.load(Ordering::Acquire) {
                    continue;
                }
                tokio::time::sleep(DEBOUNCE).await;
            }
        }
        rt.dirty.store(false, Ordering::Release);
        if let Err(e) = round(&s).await {
            log::warn!("monitor snapshot failed: {}", e.message);
        }
    }
}

/// Methods that show the latest snapshot take one first if the monitor has not run yet.
pub(super) async fn ensure_snapshot(p: &AppState) -> Result<(), RpcError> {
    if p.monitor_rt.started.load(Ordering::Acquire) {
        return Ok(());
    }
    round(p).await.map(|_| ())
}
