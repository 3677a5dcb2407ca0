//! Balance monitoring on Core Lightning: snapshot rounds (on events, debounced, and on a
//! timer), alert delivery (`ballast_alert` notification, log line, optional webhook), the
//! `monitor-*` methods and the optional Prometheus endpoint.
//!
//! Nothing here blocks the runtime that answers hooks: store work, report rendering and
//! file writes run on blocking threads, the webhook on its own thread behind a bounded
//! queue, and the metrics listener on its own task.

use super::now_unix;
use super::options::OptionSource;
use super::params::{Params, RpcError};
use super::state::AppState;
use crate::engine::hodl::HodlState;
use crate::engine::monitor::export::{
    history_to_csv, snapshots_to_csv, HISTORY_CSV_HEADER, SNAPSHOT_CSV_HEADER,
};
use crate::engine::monitor::{
    balance_totals, fee_income, invoice_income, Alert, AlertId, AlertKind, ChannelSnapshot, ExportFormat,
    HistoryPoint, Rules, RulesPatch, Scope, Severity, Threshold, Transition,
};
use crate::node::Node;
use crate::report::{self, ReportData};
use crate::service::files::{confine, FileError};
use crate::service::monitor::MonitorError;
use crate::types::{Msat, Scid};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ERR_NODE: i64 = 2005;
const ERR_UNKNOWN_CHANNEL: i64 = 2101;
const ERR_ALERT: i64 = 2102;
const ERR_FILE: i64 = 2103;
const ERR_INTERNAL: i64 = -1;

/// Events within this long make one snapshot round.
pub const DEBOUNCE: Duration = Duration::from_secs(2);
/// How long a round waits for `listpeerchannels`.
const NODE_TIMEOUT: Duration = Duration::from_secs(30);
/// Alerts waiting for the webhook; more are dropped (and counted), never waited for.
pub const WEBHOOK_QUEUE: usize = 64;
/// Attempts per alert (the first plus retries), with exponential backoff between them.
pub const WEBHOOK_ATTEMPTS: u32 = 4;
pub const WEBHOOK_BACKOFF: Duration = Duration::from_secs(1);
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
const WEBHOOK_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Concurrent metrics scrapes served; more wait for the listener.
const METRICS_MAX_CONNECTIONS: usize = 8;
const METRICS_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Webhook delivery figures, for `monitor-stats` and the metrics endpoint.
#[derive(Default)]
pub struct WebhookStats {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    pub attempts: AtomicU64,
}

/// The monitor's runtime half, shared through the plugin state.
pub struct Runtime {
    dirty: AtomicBool,
    wake: tokio::sync::Notify,
    webhook: Option<mpsc::SyncSender<Value>>,
    pub webhook_stats: Arc<WebhookStats>,
    /// When true the loop has already taken at least one snapshot since start.
    started: AtomicBool,
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

/// The monitor's options, read and checked at init.
#[derive(Clone)]
pub struct MonitorSettings {
    pub interval: Duration,
    /// The base default rules, from the `ballast-monitor-*` threshold options.
    pub rules: Rules,
    pub webhook: Option<String>,
    pub metrics_bind: Option<SocketAddr>,
}

impl MonitorSettings {
    pub fn read(c: &dyn OptionSource) -> Result<MonitorSettings, String> {
        let o = &super::options::MONITOR_INTERVAL;
        let secs = super::options::bounded(o.name(), c.int(o)?, 1, 86_400)?;
        let text = |o: &cln_plugin::options::StringConfigOption| -> Result<Option<String>, String> {
            Ok(c.maybe_text(o)?
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty()))
        };
        let webhook = text(&super::options::ALERT_WEBHOOK)?;
        if let Some(url) = &webhook {
            check_webhook_url(url)?;
        }
        let metrics_bind = text(&super::options::METRICS_BIND)?
            .map(|v| parse_bind(&v))
            .transpose()?;
        Ok(MonitorSettings {
            interval: Duration::from_secs(secs as u64),
            rules: default_rules(c)?,
            webhook,
            metrics_bind,
        })
    }
}

/// The default rules with the `ballast-monitor-*` threshold options applied.
fn default_rules(c: &dyn OptionSource) -> Result<Rules, String> {
    use super::options as o;
    let int = |opt: &cln_plugin::options::DefaultIntegerConfigOption, min: i64, max: i64| {
        o::bounded(opt.name(), c.int(opt)?, min, max)
    };
    let thr =
        |opt: &cln_plugin::options::DefaultStringConfigOption| parse_threshold(opt.name(), &c.text(opt)?);
    let mut r = Rules::default();
    r.low_local.limit = thr(&o::MONITOR_LOW_LOCAL)?;
    r.low_remote.limit = thr(&o::MONITOR_LOW_REMOTE)?;
    r.balance_change.limit = thr(&o::MONITOR_BALANCE_CHANGE)?;
    // Both directions together: at most 2 x 483.
    r.pending_htlcs.limit = int(&o::MONITOR_MAX_PENDING_HTLCS, 1, 966)? as u32;
    r.htlc_near_expiry.limit = int(&o::MONITOR_HTLC_EXPIRY_BLOCKS, 0, 2_016)? as u32;
    r.pending_open.limit = int(&o::MONITOR_PENDING_OPEN_BLOCKS, 1, 20_160)? as u32;
    r.peer_disconnected.limit = int(&o::MONITOR_DISCONNECT_SECS, 1, 30 * 86_400)? as u64;
    Ok(r)
}

/// Reads a threshold option: a ratio of capacity from 0 to 1 (`0.05`) or an amount with an
/// `msat` suffix (`100000000msat`).
pub fn parse_threshold(name: &str, text: &str) -> Result<Threshold, String> {
    let t = text.trim();
    if let Some(n) = t.strip_suffix("msat") {
        return n
            .trim()
            .parse::<u64>()
            .map(|m| Threshold::Msat(Msat(m)))
            .map_err(|_| {
                format!("{name} must be a ratio from 0 to 1 or an amount like 100000000msat, got '{text}'")
            });
    }
    match t.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(Threshold::Ratio(v)),
        _ => Err(format!(
            "{name} must be a ratio from 0 to 1 or an amount like 100000000msat, got '{text}'"
        )),
    }
}

/// Asks for a snapshot round soon; bursts of calls make one round (see [`DEBOUNCE`]).
pub fn poke(s: &AppState) {
    s.monitor_rt.dirty.store(true, Ordering::Release);
    s.monitor_rt.wake.notify_one();
}

/// Checks a webhook URL at start-up: plain `http://` with a host. TLS is not built in.
pub fn check_webhook_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("ballast-alert-webhook '{url}' is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "ballast-alert-webhook '{url}': https is not supported; point it at an http:// endpoint (e.g. a local relay)"
            ))
        }
        _ => return Err(format!("ballast-alert-webhook '{url}' must start with http://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("ballast-alert-webhook '{url}' has no host"));
    }
    Ok(())
}

/// Posts each queued alert, retrying transient failures with exponential backoff; gives up
/// on an alert after [`WEBHOOK_ATTEMPTS`]. Ends when the sender is dropped.
fn webhook_worker(url: String, rx: mpsc::Receiver<Value>, stats: Arc<WebhookStats>, backoff: Duration) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(WEBHOOK_TIMEOUT))
        .timeout_connect(Some(WEBHOOK_CONNECT_TIMEOUT))
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into();
    while let Ok(body) = rx.recv() {
        let text = body.to_string();
        let id = body.get("id").cloned().unwrap_or(Value::Null);
        let mut delay = backoff;
        for attempt in 1..=WEBHOOK_ATTEMPTS {
            stats.attempts.fetch_add(1, Ordering::Relaxed);
            let outcome = agent
                .post(&url)
                .header("Content-Type", "application/json")
                .header("User-Agent", concat!("ballast/", env!("CARGO_PKG_VERSION")))
                .send(text.as_str());
            let (retry, why) = match outcome {
                Ok(resp) => {
                    let code = resp.status().as_u16();
                    if (200..300).contains(&code) {
                        stats.delivered.fetch_add(1, Ordering::Relaxed);
                        log::debug!("webhook: alert {id} delivered");
                        break;
                    }
                    // Server trouble and rate limits may pass; any other refusal will not.
                    (code >= 500 || code == 429 || code == 408, format!("HTTP {code}"))
                }
                Err(e) => (true, e.to_string()),
            };
            if !retry || attempt == WEBHOOK_ATTEMPTS {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                log::warn!("webhook: giving up on alert {id} after {attempt} attempt(s): {why}");
                break;
            }
            log::debug!("webhook: alert {id} attempt {attempt} failed ({why}); retrying in {delay:?}");
            std::thread::sleep(delay);
            delay = delay.saturating_mul(2);
        }
    }
}

/// The JSON shape of an alert: the `ballast_alert` payload, the webhook body and what the
/// methods return.
pub fn alert_json(a: &Alert) -> Value {
    let mut v = json!({
        "id": a.id.0,
        "type": a.kind.as_str(),
        "severity": a.severity.as_str(),
        "channel": a.channel.to_string(),
        "peer": a.peer.to_hex(),
        "message": a.message,
        "first_seen": a.first_seen,
        "last_seen": a.last_seen,
        "count": a.count,
        "state": if a.is_active() { "active" } else { "cleared" },
    });
    let obj = v.as_object_mut().expect("json! object");
    if let Some(scid) = a.channel.scid() {
        obj.insert("short_channel_id".into(), json!(scid.to_string()));
    }
    if let Some(t) = a.cleared_at {
        obj.insert("cleared_at".into(), json!(t));
    }
    if let Some(t) = a.acknowledged_at {
        obj.insert("acknowledged_at".into(), json!(t));
    }
    v
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

fn node_error(what: &str, e: impl std::fmt::Display) -> RpcError {
    RpcError {
        code: ERR_NODE,
        message: format!("{what}: {e}"),
    }
}

fn internal(e: impl std::fmt::Display) -> RpcError {
    RpcError {
        code: ERR_INTERNAL,
        message: e.to_string(),
    }
}

fn service_error(e: MonitorError) -> RpcError {
    match e {
        MonitorError::Ack(a) => RpcError {
            code: ERR_ALERT,
            message: a.to_string(),
        },
        MonitorError::Config(c) => RpcError::invalid(c.to_string()),
        other => internal(format!("monitor: {other}")),
    }
}

/// Runs blocking service work off the runtime's workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, MonitorError> + Send + 'static,
) -> Result<T, RpcError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(service_error),
        Err(e) => Err(internal(format!("internal task failed: {e}"))),
    }
}

/// Methods that show the latest snapshot take one first if the monitor has not run yet.
async fn ensure_snapshot(p: &AppState) -> Result<(), RpcError> {
    if p.monitor_rt.started.load(Ordering::Acquire) {
        return Ok(());
    }
    round(p).await.map(|_| ())
}

fn unknown_channel(method: &str, scid: Scid) -> RpcError {
    RpcError {
        code: ERR_UNKNOWN_CHANNEL,
        message: format!("{method}: {scid} is not one of our channels"),
    }
}

fn snapshot_json(s: &ChannelSnapshot, alerts: &[Alert]) -> Value {
    json!({
        "channel": s.key.to_string(),
        "short_channel_id": s.scid().map(|c| c.to_string()),
        "peer_id": s.peer.to_hex(),
        "state": s.state,
        "peer_connected": s.peer_connected,
        "capacity_msat": s.capacity.0,
        "local_msat": s.local.0,
        "remote_msat": s.remote.0,
        "spendable_msat": s.spendable.0,
        "receivable_msat": s.receivable.0,
        "local_ratio": s.local_ratio(),
        "htlcs": {
            "in": s.htlcs_in,
            "out": s.htlcs_out,
            "in_msat": s.htlc_in_msat.0,
            "out_msat": s.htlc_out_msat.0,
            "min_expiry_blocks": s.min_expiry_blocks,
        },
        "height": s.height,
        "time": s.time,
        "alerts": alerts.iter().map(alert_json).collect::<Vec<_>>(),
    })
}

const SCID_WANT: &str = "a short_channel_id (BLOCKxTXxOUT)";

pub const STATUS: &str = "monitor-status";

pub async fn status(p: AppState, params: Value) -> Result<Value, RpcError> {
    rpc_body!(p, s, async {
        let prm = Params::parse(STATUS, &params, &["scid"], 0)?;
        let only: Option<Scid> = prm.parsed("scid", SCID_WANT)?;
        ensure_snapshot(&p).await?;
        let channels = s.monitor.status(only).ok_or_else(|| {
            // `only` is Some whenever status() answers None.
            unknown_channel(STATUS, only.unwrap_or(Scid::from_u64(0)))
        })?;
        let (at, _) = s.monitor.last_run();
        let active = s.monitor.active_alerts().len();
        Ok(json!({
            "snapshot_at": at,
            "blockheight": s.blockheight(),
            "active_alerts": active,
            "channels": channels.iter().map(|c| snapshot_json(&c.snapshot, &c.alerts)).collect::<Vec<_>>(),
        }))
    })
}

pub const STATS: &str = "monitor-stats";

pub async fn stats(p: AppState, params: Value) -> Result<Value, RpcError> {
    rpc_body!(p, s, async {
        Params::parse(STATS, &params, &[], 0)?;
        ensure_snapshot(&p).await?;
        let now = now_unix();
        let month = crate::engine::monitor::WINDOWS
            .iter()
            .map(|w| w.1)
            .max()
            .unwrap_or(30 * 86_400);
        let forwards = s
            .node
            .forwards(now.saturating_sub(month))
            .await
            .map_err(|e| node_error("listforwards", e))?;
        let income = s.income.clone();
        let paid = tokio::task::spawn_blocking(move || income.paid_since(now.saturating_sub(month)))
            .await
            .map_err(internal)?
            .map_err(|e| internal(format!("store: {e}")))?;
        let snaps = s.monitor.snapshots();
        let t = balance_totals(&snaps);
        let fees: Vec<Value> = fee_income(&forwards, now)
            .into_iter()
            .map(|w| {
                json!({
                    "window": w.window,
                    "window_secs": w.window_secs,
                    "forwards": w.forwards,
                    "fees_msat": w.fees.0,
                    "forwarded_msat": w.forwarded.0,
                })
            })
            .collect();
        let income: Vec<Value> = invoice_income(&paid, now)
            .into_iter()
            .map(|w| {
                json!({
                    "window": w.window,
                    "window_secs": w.window_secs,
                    "invoices": w.invoices,
                    "received_msat": w.received.0,
                })
            })
            .collect();
        let mut by_type = BTreeMap::new();
        for a in s.monitor.active_alerts() {
            *by_type.entry(a.kind.as_str()).or_insert(0u64) += 1;
        }
        let (at, rounds) = s.monitor.last_run();
        let wh = &s.monitor_rt.webhook_stats;
        Ok(json!({
            "snapshot_at": at,
            "snapshots_taken": rounds,
            "channels": t.channels,
            "totals": {
                "capacity_msat": t.capacity.0,
                "local_msat": t.local.0,
                "remote_msat": t.remote.0,
                "spendable_msat": t.spendable.0,
                "receivable_msat": t.receivable.0,
            },
            "averages": {
                "capacity_msat": t.avg_capacity.0,
                "local_msat": t.avg_local.0,
                "remote_msat": t.avg_remote.0,
            },
            "local_ratio": t.local_ratio,
            "fees": fees,
            "income": income,
            "active_alerts": by_type,
            "webhook": {
                "configured": s.monitor_rt.webhook.is_some(),
                "delivered": wh.delivered.load(Ordering::Relaxed),
                "failed": wh.failed.load(Ordering::Relaxed),
                "dropped": wh.dropped.load(Ordering::Relaxed),
                "attempts": wh.attempts.load(Ordering::Relaxed),
            },
        }))
    })
}

pub const ALERTS: &str = "monitor-alerts";

pub async fn alerts(p: AppState, params: Value) -> Result<Value, RpcError> {
    rpc_body!(p, s, async {
        let prm = Params::parse(ALERTS, &params, &["which", "ack", "limit"], 0)?;
        let all = match prm.str("which")? {
            None | Some("active") => false,
            Some("all") => true,
            Some(other) => {
                return Err(RpcError::invalid(format!(
                    "{ALERTS}: 'which' must be 'active' or 'all', got '{}'",
                    other.chars().take(40).collect::<String>()
                )))
            }
        };
        let limit = prm.u64("limit")?.unwrap_or(100).clamp(1, 10_000) as usize;
        let ack = prm.u64("ack")?.map(AlertId);
        let mut out = serde_json::Map::new();
        if let Some(id) = ack {
            let svc = s.monitor.clone();
            let a = blocking(move || svc.acknowledge(id, now_unix())).await?;
            log::info!("alert {} ({}) on {} acknowledged", a.id, a.kind, a.channel);
            out.insert("acknowledged".into(), alert_json(&a));
        }
        let list = if all {
            let svc = s.monitor.clone();
            blocking(move || svc.all_alerts(limit)).await?
        } else {
            let mut a = s.monitor.active_alerts();
            a.sort_by_key(|x| std::cmp::Reverse(x.id));
            a.truncate(limit);
            a
        };
        out.insert(
            "alerts".into(),
            Value::Array(list.iter().map(alert_json).collect()),
        );
        Ok(Value::Object(out))
    })
}

pub const HISTORY: &str = "monitor-history";

fn point_json(p: &HistoryPoint) -> Value {
    json!({
        "start": p.start,
        "bucket_secs": p.bucket_secs,
        "samples": p.samples,
        "local_avg_msat": p.local_avg.0,
        "local_min_msat": p.local_min.0,
        "local_max_msat": p.local_max.0,
        "capacity_msat": p.capacity.0,
    })
}

pub async fn history(p: AppState, params: Value) -> Result<Value, RpcError> {
    rpc_body!(p, s, async {
        let prm = Params::parse(HISTORY, &params, &["scid", "since", "until"], 1)?;
        let scid: Scid = prm.required(prm.parsed("scid", SCID_WANT)?, "scid")?;
        let now = now_unix();
        let until = prm.u64("until")?.unwrap_or(now);
        let since = prm.u64("since")?.unwrap_or(until.saturating_sub(86_400));
        if since > until {
            return Err(RpcError::invalid(format!(
                "{HISTORY}: 'since' ({since}) is after 'until' ({until})"
            )));
        }
        let svc = s.monitor.clone();
        let points = blocking(move || svc.history(scid, since, until, now)).await?;
        if points.is_empty() && !s.monitor.knows_channel(scid) {
            let svc = s.monitor.clone();
            if blocking(move || svc.channel_history(scid)).await?.is_empty() {
                return Err(unknown_channel(HISTORY, scid));
            }
        }
        Ok(json!({
            "short_channel_id": scid.to_string(),
            "since": since,
            "until": until,
            "bucket_secs": points.first().map(|p| p.bucket_secs),
            "points": points.iter().map(point_json).collect::<Vec<_>>(),
        }))
    })
}

/// A files-directory error as the caller sees it: a path that is not allowed is a bad
/// parameter; a file that exists or cannot be written is 2103.
fn file_error(e: FileError) -> RpcError {
    let code = match e {
        FileError::Empty | FileError::Absolute(..) | FileError::Escapes(..) => -32602,
        FileError::Store(_) => -1,
        FileError::Exists(_) | FileError::NotOurs(_) | FileError::Io(..) => ERR_FILE,
    };
    RpcError {
        code,
        message: e.to_string(),
    }
}

/// Checks a `path` parameter before any work is done for it.
fn file_param(s: &AppState, path: &str) -> Result<String, RpcError> {
    confine(path, &s.files.root().display().to_string()).map_err(file_error)?;
    Ok(path.to_string())
}

pub const EXPORT: &str = "monitor-export";

pub async fn export(p: AppState, params: Value) -> Result<Value, RpcError> {
    rpc_body!(p, s, async {
        let prm = Params::parse(
            EXPORT,
            &params,
            &["path", "format", "data", "scid", "overwrite"],
            1,
        )?;
        let path = file_param(&s, prm.required(prm.str("path")?, "path")?)?;
        let format: ExportFormat = prm.parsed("format", "json or csv")?.unwrap_or_default();
        let history = match prm.str("data")? {
            None | Some("history") => true,
            Some("snapshots") => false,
            Some(other) => {
                return Err(RpcError::invalid(format!(
                    "{EXPORT}: 'data' must be 'history' or 'snapshots', got '{}'",
                    other.chars().take(40).collect::<String>()
                )))
            }
        };
        let only: Option<Scid> = prm.parsed("scid", SCID_WANT)?;
        let overwrite = prm.bool("overwrite")?.unwrap_or(false);
        if !history {
            ensure_snapshot(&p).await?;
        }
        if let Some(scid) = only.filter(|c| !s.monitor.knows_channel(*c)) {
            let svc = s.monitor.clone();
            if blocking(move || svc.channel_history(scid)).await?.is_empty() {
                return Err(unknown_channel(EXPORT, scid));
            }
        }
        let svc = s.monitor.clone();
        let files = s.files.clone();
        let result = tokio::task::spawn_blocking(move || -> Result<(PathBuf, u64, u64), RpcError> {
            let scids = match only {
                Some(c) => vec![c],
                None => svc.channels_with_history().map_err(service_error)?,
            };
            let snaps: Vec<ChannelSnapshot> = svc
                .snapshots()
                .into_iter()
                .filter(|sn| only.is_none_or(|c| sn.scid() == Some(c)))
                .collect();
            let mut records = 0u64;
            let (written, bytes) = files
                .write(&path, overwrite, now_unix(), |w| {
                    let io = |e: String| std::io::Error::other(e);
                    match (history, format) {
                        (true, ExportFormat::Csv) => {
                            writeln!(w, "{HISTORY_CSV_HEADER}")?;
                            // Channel by channel, so memory stays one channel's history.
                            for scid in &scids {
                                let pts = svc.channel_history(*scid).map_err(|e| io(e.to_string()))?;
                                records += pts.len() as u64;
                                let csv = history_to_csv(&pts);
                                w.write_all(csv.split_once('\n').map_or("", |(_, rest)| rest).as_bytes())?;
                            }
                        }
                        (true, ExportFormat::Json) => {
                            w.write_all(b"[")?;
                            for scid in &scids {
                                for pt in svc.channel_history(*scid).map_err(|e| io(e.to_string()))? {
                                    if records > 0 {
                                        w.write_all(b",")?;
                                    }
                                    w.write_all(b"\n")?;
                                    serde_json::to_writer(&mut *w, &pt)?;
                                    records += 1;
                                }
                            }
                            w.write_all(b"\n]\n")?;
                        }
                        (false, ExportFormat::Csv) => {
                            records = snaps.len() as u64;
                            let csv = snapshots_to_csv(&snaps);
                            debug_assert!(csv.starts_with(SNAPSHOT_CSV_HEADER));
                            w.write_all(csv.as_bytes())?;
                        }
                        (false, ExportFormat::Json) => {
                            records = snaps.len() as u64;
                            serde_json::to_writer_pretty(&mut *w, &snaps)?;
                            w.write_all(b"\n")?;
                        }
                    }
                    Ok(())
                })
                .map_err(file_error)?;
            Ok((written, bytes, records))
        })
        .await
        .map_err(internal)??;
        log::info!("monitor export written to {}", result.0.display());
        Ok(json!({
            "path": result.0.display().to_string(),
            "format": format.to_string(),
            "data": if history { "history" } else { "snapshots" },
            "records": result.2,
            "bytes": result.1,
        }))
    })
}

pub const SET: &str = "monitor-set";

pub async fn set(p: AppState, params: Value) -> Result<Value, RpcError> {
    rpc_body!(p, s, async {
        let prm = Params::parse(SET, &params, &["scope", "rules", "reset"], 0)?;
        let scope_text = prm.str("scope")?;
        let scope: Option<Scope> = match scope_text {
            None => None,
            Some(t) => Some(t.parse().map_err(|e| RpcError::invalid(format!("{SET}: {e}")))?),
        };
        let reset = prm.bool("reset")?.unwrap_or(false);
        let patch: Option<RulesPatch> = match prm.raw("rules") {
            None => None,
            Some(v) => {
                let v = match v {
                    // lightning-cli passes a positional JSON argument as a string.
                    Value::String(t) => serde_json::from_str(t)
                        .map_err(|e| RpcError::invalid(format!("{SET}: 'rules' is not JSON: {e}")))?,
                    other => other.clone(),
                };
                let patch: RulesPatch = serde_json::from_value(v)
                    .map_err(|e| RpcError::invalid(format!("{SET}: invalid 'rules': {e}")))?;
                if patch.is_empty() {
                    return Err(RpcError::invalid(format!("{SET}: 'rules' changes nothing")));
                }
                Some(patch)
            }
        };
        if reset && patch.is_some() {
            return Err(RpcError::invalid(format!(
                "{SET}: give 'rules' or 'reset', not both"
            )));
        }
        if reset && scope.is_none() {
            return Err(RpcError::invalid(format!("{SET}: 'reset' needs a 'scope'")));
        }
        let mut changed = false;
        if let Some(patch) = patch {
            let svc = s.monitor.clone();
            let sc = scope.unwrap_or(Scope::Default);
            blocking(move || svc.set_rules(sc, &patch)).await?;
            log::info!("monitor rules changed at scope {sc}");
            changed = true;
        } else if reset {
            let svc = s.monitor.clone();
            let sc = scope.unwrap_or(Scope::Default);
            changed = blocking(move || svc.reset_rules(sc)).await?;
            if changed {
                log::info!("monitor rules reset at scope {sc}");
            }
        }
        if changed {
            // Judge the channels by the new rules soon rather than at the next tick.
            poke(&s);
        }
        let cfg = s.monitor.config();
        let body = match scope {
            None => json!({"config": cfg}),
            Some(sc) => {
                let (overrides, effective) = match sc {
                    Scope::Default => (json!(cfg.default_overrides), cfg.defaults),
                    Scope::Peer(peer) => (
                        json!(cfg.peers.get(&peer).copied().unwrap_or_default()),
                        cfg.rules_for(None, &peer),
                    ),
                    Scope::Channel(scid) => {
                        // The channel's own patch over its peer's, if ballast knows the peer.
                        let peer = s
                            .monitor
                            .status(Some(scid))
                            .and_then(|v| v.first().map(|c| c.snapshot.peer));
                        let mut eff = cfg.defaults;
                        if let Some(p) = peer.and_then(|p| cfg.peers.get(&p)) {
                            eff.apply(p);
                        }
                        if let Some(c) = cfg.channels.get(&scid) {
                            eff.apply(c);
                        }
                        (json!(cfg.channels.get(&scid).copied().unwrap_or_default()), eff)
                    }
                };
                json!({
                    "scope": sc.to_string(),
                    "rules": overrides,
                    "effective": effective,
                })
            }
        };
        let mut body = body;
        body["changed"] = json!(changed);
        // The base the default overrides lie on: the ballast-monitor-* options.
        if matches!(scope, None | Some(Scope::Default)) {
            body["option_defaults"] = json!(cfg.base);
        }
        Ok(body)
    })
}

pub const REPORT: &str = "monitor-report";

pub async fn report(p: AppState, params: Value) -> Result<Value, RpcError> {
    rpc_body!(p, s, async {
        let prm = Params::parse(REPORT, &params, &["path", "days", "overwrite"], 1)?;
        let path = file_param(&s, prm.required(prm.str("path")?, "path")?)?;
        let days = prm.u64("days")?.unwrap_or(7);
        if !(1..=180).contains(&days) {
            return Err(RpcError::invalid(format!(
                "{REPORT}: 'days' must be 1 to 180, got {days}"
            )));
        }
        let overwrite = prm.bool("overwrite")?.unwrap_or(false);
        ensure_snapshot(&p).await?;
        let now = now_unix();
        let month = 30 * 86_400;
        let forwards = s
            .node
            .forwards(now.saturating_sub(month))
            .await
            .map_err(|e| node_error("listforwards", e))?;
        let svc = s.monitor.clone();
        let income = s.income.clone();
        let node_id = s.node_id.map(|n| n.to_hex());
        let network = s.network.clone();
        let files = s.files.clone();
        let (written, bytes, charted) =
            tokio::task::spawn_blocking(move || -> Result<(PathBuf, u64, usize), RpcError> {
                let channels = svc.snapshots();
                let since = now.saturating_sub(days * 86_400);
                let mut history = BTreeMap::new();
                for scid in channels.iter().filter_map(ChannelSnapshot::scid) {
                    let pts = svc.history(scid, since, now, now).map_err(service_error)?;
                    history.insert(scid, pts);
                }
                let mut alerts = svc.active_alerts();
                alerts.sort_by_key(|a| std::cmp::Reverse(a.id));
                let recent = svc.all_alerts(200).map_err(service_error)?;
                alerts.extend(recent.into_iter().filter(|a| !a.is_active()));
                let paid = income
                    .paid_since(now.saturating_sub(month))
                    .map_err(|e| internal(format!("store: {e}")))?;
                let data = ReportData {
                    generated_at: now,
                    node_id,
                    network,
                    totals: balance_totals(&channels),
                    fees: fee_income(&forwards, now),
                    income: invoice_income(&paid, now),
                    daily_fees: report::daily_fees(&forwards, now, 30),
                    alerts,
                    charted_days: days,
                    channels,
                    history,
                };
                let html = report::render(&data).map_err(internal)?;
                let charted = data.history.values().filter(|p| !p.is_empty()).count();
                let (written, bytes) = files
                    .write(&path, overwrite, now, |w| w.write_all(html.as_bytes()))
                    .map_err(file_error)?;
                Ok((written, bytes, charted.min(report::MAX_CHARTED_CHANNELS)))
            })
            .await
            .map_err(internal)??;
        log::info!("monitor report written to {}", written.display());
        Ok(json!({
            "path": written.display().to_string(),
            "bytes": bytes,
            "channels_charted": charted,
            "days": days,
        }))
    })
}

// ---- Prometheus ----

/// Builds the exposition from the current state (a fresh registry per scrape, so closed
/// channels drop out instead of lingering with stale values).
pub fn metrics_text(s: &AppState) -> Result<String, std::fmt::Error> {
    use prometheus_client::encoding::text::encode;
    use prometheus_client::metrics::counter::Counter;
    use prometheus_client::metrics::family::Family;
    use prometheus_client::metrics::gauge::Gauge;
    use prometheus_client::registry::Registry;
    type Labels = Vec<(String, String)>;
    let gauge = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);

    let mut reg = Registry::with_prefix("ballast");
    let local = Family::<Labels, Gauge>::default();
    let remote = Family::<Labels, Gauge>::default();
    let capacity = Family::<Labels, Gauge>::default();
    let connected = Family::<Labels, Gauge>::default();
    let htlcs = Family::<Labels, Gauge>::default();
    let htlc_msat = Family::<Labels, Gauge>::default();
    for sn in s.monitor.snapshots() {
        let ch = vec![("channel".to_string(), sn.key.to_string())];
        local.get_or_create(&ch).set(gauge(sn.local.0));
        remote.get_or_create(&ch).set(gauge(sn.remote.0));
        capacity.get_or_create(&ch).set(gauge(sn.capacity.0));
        connected.get_or_create(&ch).set(i64::from(sn.peer_connected));
        for (dir, n, m) in [
            ("in", sn.htlcs_in, sn.htlc_in_msat),
            ("out", sn.htlcs_out, sn.htlc_out_msat),
        ] {
            let mut l = ch.clone();
            l.push(("direction".to_string(), dir.to_string()));
            htlcs.get_or_create(&l).set(i64::from(n));
            htlc_msat.get_or_create(&l).set(gauge(m.0));
        }
    }
    reg.register("channel_local_msat", "Local balance of the channel, msat", local);
    reg.register(
        "channel_remote_msat",
        "Remote balance of the channel, msat",
        remote,
    );
    reg.register("channel_capacity_msat", "Capacity of the channel, msat", capacity);
    reg.register(
        "channel_peer_connected",
        "1 if the channel's peer is connected",
        connected,
    );
    reg.register(
        "channel_htlcs",
        "Pending HTLCs on the channel by direction",
        htlcs,
    );
    reg.register(
        "channel_htlc_msat",
        "Amount in pending HTLCs on the channel by direction, msat",
        htlc_msat,
    );

    let alerts = Family::<Labels, Gauge>::default();
    let active = s.monitor.active_alerts();
    for kind in AlertKind::ALL {
        let n = active.iter().filter(|a| a.kind == kind).count();
        alerts
            .get_or_create(&vec![("type".to_string(), kind.as_str().to_string())])
            .set(n as i64);
    }
    reg.register("alerts_active", "Active monitor alerts by type", alerts);

    let hodl = Family::<Labels, Gauge>::default();
    let counts = s.hodl.counts();
    for st in [
        HodlState::Open,
        HodlState::Accepted,
        HodlState::Settled,
        HodlState::Canceled,
        HodlState::Expired,
    ] {
        let n = counts.get(&st).copied().unwrap_or(0);
        hodl.get_or_create(&vec![("state".to_string(), st.as_str().to_string())])
            .set(n as i64);
    }
    reg.register("hodl_invoices", "Hold invoices by state", hodl);

    let fee_changes: Counter = Counter::default();
    fee_changes.inc_by(s.counters.fee_changes.load(Ordering::Relaxed));
    reg.register(
        "fee_changes",
        "Channel fee changes applied by the fee policy",
        fee_changes,
    );

    // Rebalance spend: fees of successful attempts, from the store (so the total spans
    // restarts), and successful attempts counted since start.
    let day_ago = now_unix().saturating_sub(86_400);
    match s.rebalance.attempts(None, usize::MAX) {
        Ok(attempts) => {
            let (mut day, mut total) = (0u64, 0u64);
            for a in attempts
                .iter()
                .filter(|a| a.outcome == crate::service::rebalance::AttemptOutcome::Success)
            {
                total = total.saturating_add(a.fee.0);
                if a.time >= day_ago {
                    day = day.saturating_add(a.fee.0);
                }
            }
            let spent: Counter = Counter::default();
            spent.inc_by(total);
            reg.register(
                "rebalance_fees_msat",
                "Fees paid by successful rebalance attempts, all time, msat",
                spent,
            );
            let spent_day: Gauge = Gauge::default();
            spent_day.set(gauge(day));
            reg.register(
                "rebalance_fees_24h_msat",
                "Fees paid by successful rebalance attempts in the last 24 hours, msat",
                spent_day,
            );
        }
        Err(e) => log::warn!("metrics: rebalance attempts unreadable: {e}"),
    }
    let rebalances: Counter = Counter::default();
    rebalances.inc_by(s.counters.rebalances.load(Ordering::Relaxed));
    reg.register(
        "rebalances",
        "Successful rebalance attempts since start",
        rebalances,
    );

    let webhook = Family::<Labels, Counter>::default();
    let wh = &s.monitor_rt.webhook_stats;
    for (result, v) in [
        ("delivered", &wh.delivered),
        ("failed", &wh.failed),
        ("dropped", &wh.dropped),
    ] {
        webhook
            .get_or_create(&vec![("result".to_string(), result.to_string())])
            .inc_by(v.load(Ordering::Relaxed));
    }
    reg.register(
        "alert_webhook_deliveries",
        "Alert webhook posts by outcome",
        webhook,
    );

    let (at, rounds) = s.monitor.last_run();
    let last: Gauge = Gauge::default();
    last.set(gauge(at.unwrap_or(0)));
    reg.register(
        "monitor_last_snapshot_timestamp_seconds",
        "Unix time of the latest snapshot round (0 before the first)",
        last,
    );
    let taken: Counter = Counter::default();
    taken.inc_by(rounds);
    reg.register("monitor_snapshots", "Snapshot rounds taken since start", taken);

    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}

/// Parses a `host:port` bind address for the metrics endpoint.
pub fn parse_bind(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|e| format!("ballast-metrics-bind '{v}' must be an ip:port such as 127.0.0.1:9750: {e}"))
}

/// Serves `GET /metrics` until the process ends. One small HTTP/1.x exchange per
/// connection; anything else gets a 404/405.
pub async fn serve_metrics(s: AppState, listener: tokio::net::TcpListener) {
    let slots = Arc::new(tokio::sync::Semaphore::new(METRICS_MAX_CONNECTIONS));
    loop {
        let permit = match slots.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return,
        };
        let (conn, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                log::warn!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let s = s.clone();
        tokio::spawn(async move {
            if let Err(e) = answer_scrape(&s, conn).await {
                log::debug!("metrics: connection ended: {e}");
            }
            drop(permit);
        });
    }
}

async fn answer_scrape(s: &AppState, mut conn: tokio::net::TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head = tokio::time::timeout(METRICS_READ_TIMEOUT, async {
        loop {
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
                return Ok(true);
            }
            if buf.len() > 8 * 1024 {
                return Ok(true);
            }
        }
    })
    .await;
    let complete = matches!(head, Ok(Ok(true)));
    let line = String::from_utf8_lossy(buf.split(|b| *b == b'\n').next().unwrap_or(&[])).into_owned();
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, ctype, body) = if !complete {
        ("400 Bad Request", "text/plain", "bad request\n".to_string())
    } else if path != "/metrics" {
        ("404 Not Found", "text/plain", "try /metrics\n".to_string())
    } else if method != "GET" && method != "HEAD" {
        ("405 Method Not Allowed", "text/plain", "GET only\n".to_string())
    } else {
        let st = s.clone();
        match tokio::task::spawn_blocking(move || metrics_text(&st)).await {
            Ok(Ok(text)) => (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            ),
            _ => (
                "500 Internal Server Error",
                "text/plain",
                "encoding failed\n".to_string(),
            ),
        }
    };
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        resp.extend_from_slice(body.as_bytes());
    }
    conn.write_all(&resp).await?;
    conn.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn webhook_urls_must_be_plain_http_with_a_host() {
        assert!(check_webhook_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(check_webhook_url("https://example.invalid/x")
            .unwrap_err()
            .contains("https"));
        assert!(check_webhook_url("ftp://x/").is_err());
        assert!(check_webhook_url("not a url").is_err());
        assert!(parse_bind("127.0.0.1:9750").is_ok());
        assert!(parse_bind("localhost").is_err());
    }

    #[test]
    fn threshold_options_take_ratios_or_msat() {
        assert_eq!(parse_threshold("x", "0.05"), Ok(Threshold::Ratio(0.05)));
        assert_eq!(
            parse_threshold("x", " 100000000msat "),
            Ok(Threshold::Msat(Msat(100_000_000)))
        );
        for bad in ["1.5", "-0.1", "abc", "12sat", "msat", "NaN"] {
            assert!(parse_threshold("ballast-monitor-low-local", bad)
                .unwrap_err()
                .contains("ballast-monitor-low-local"));
        }
        // The option defaults are the built-in rules.
        use crate::api::options as o;
        let d = Rules::default();
        assert_eq!(
            parse_threshold("", o::MONITOR_LOW_LOCAL.default),
            Ok(d.low_local.limit)
        );
        assert_eq!(
            parse_threshold("", o::MONITOR_LOW_REMOTE.default),
            Ok(d.low_remote.limit)
        );
        assert_eq!(
            parse_threshold("", o::MONITOR_BALANCE_CHANGE.default),
            Ok(d.balance_change.limit)
        );
        assert_eq!(
            o::MONITOR_MAX_PENDING_HTLCS.default,
            i64::from(d.pending_htlcs.limit)
        );
        assert_eq!(
            o::MONITOR_HTLC_EXPIRY_BLOCKS.default,
            i64::from(d.htlc_near_expiry.limit)
        );
        assert_eq!(
            o::MONITOR_PENDING_OPEN_BLOCKS.default,
            i64::from(d.pending_open.limit)
        );
        assert_eq!(
            o::MONITOR_DISCONNECT_SECS.default,
            d.peer_disconnected.limit as i64
        );
    }

    /// A server that answers every request with `status` and counts them.
    fn server(status: u16) -> (String, Arc<AtomicU64>, Arc<std::sync::Mutex<Vec<String>>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let hits = Arc::new(AtomicU64::new(0));
        let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (h, b) = (hits.clone(), bodies.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { return };
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read head and the Content-Length body.
                loop {
                    let n = c.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            b.lock().unwrap().push(body.to_string());
                            break;
                        }
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let _ = write!(
                    c,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        (url, hits, bodies)
    }

    fn run_worker(url: String, bodies: usize) -> Arc<WebhookStats> {
        let stats = Arc::new(WebhookStats::default());
        let (tx, rx) = mpsc::sync_channel(WEBHOOK_QUEUE);
        let st = stats.clone();
        let t = std::thread::spawn(move || webhook_worker(url, rx, st, Duration::from_millis(10)));
        for i in 0..bodies {
            tx.send(json!({"id": i})).unwrap();
        }
        drop(tx);
        t.join().unwrap();
        stats
    }

    #[test]
    fn webhook_delivers_and_gives_up_after_bounded_retries() {
        let (url, hits, bodies) = server(200);
        let st = run_worker(url, 3);
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        assert_eq!(st.delivered.load(Ordering::SeqCst), 3);
        assert_eq!(bodies.lock().unwrap()[0], r#"{"id":0}"#);

        let (url, hits, _) = server(503);
        let st = run_worker(url, 2);
        assert_eq!(hits.load(Ordering::SeqCst), 2 * u64::from(WEBHOOK_ATTEMPTS));
        assert_eq!(st.failed.load(Ordering::SeqCst), 2);

        // A permanent refusal is not retried.
        let (url, hits, _) = server(404);
        let st = run_worker(url, 1);
        assert_eq!(
            (hits.load(Ordering::SeqCst), st.failed.load(Ordering::SeqCst)),
            (1, 1)
        );

        // Nobody listening: bounded attempts, then the next alert.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let st = run_worker(format!("http://127.0.0.1:{port}/"), 2);
        assert_eq!(
            st.attempts.load(Ordering::SeqCst),
            2 * u64::from(WEBHOOK_ATTEMPTS)
        );
        assert_eq!(st.failed.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn private_files_refuse_to_overwrite_unless_asked() {
        use crate::service::files::write_private;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.json");
        let n = write_private(&p, false, |w| w.write_all(b"one")).unwrap();
        assert_eq!(n, 3);
        assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        let e = write_private(&p, false, |w| w.write_all(b"two")).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::AlreadyExists);
        write_private(&p, true, |w| w.write_all(b"three")).unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "three");
        // A failing writer leaves nothing behind.
        let q = dir.path().join("never");
        assert!(write_private(&q, false, |_| Err(std::io::Error::other("boom"))).is_err());
        assert!(!q.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // Symlinks are replaced, not followed.
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(write_private(&link, false, |w| w.write_all(b"x")).is_err());
        write_private(&link, true, |w| w.write_all(b"x")).unwrap();
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
    }
}
