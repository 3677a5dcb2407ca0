//! Fee policy: settled forwards in, fee updates out, and the `fee-*` methods to preview,
//! apply, explain and change it.

use super::error::{internal, node_error, ERR_UNKNOWN_CHANNEL};
use super::now_unix;
use super::params::{Params, RpcError};
use super::state::AppState;
use crate::counters::bump;
use crate::engine::fees::{FeeDecision, Policy, Status, Trigger, BUILTIN_SOURCE};
use crate::node::{Channel, Node};
use crate::service::fees::{manageable, read_policy_file, ActError, FeeServiceError};
use crate::types::{Msat, PaymentHash, Scid};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

/// How long a decision waits for `listpeerchannels` to stop showing a forward's HTLC
/// (lightningd/plugins#525: the event can arrive before the balance moves).
const SETTLE_RETRIES: u32 = 10;
const SETTLE_RETRY_DELAY: Duration = Duration::from_millis(200);

/// Payment hashes of forwards whose balances a pending decision must see settled.
#[derive(Default)]
pub struct AwaitedForwards(Mutex<HashMap<Scid, Vec<PaymentHash>>>);

impl AwaitedForwards {
    fn add(&self, scid: Scid, hash: PaymentHash) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let v = m.entry(scid).or_default();
        // Bounded, keeping the newest: the latest forward of a burst is the one most likely
        // still in flight when the decision reads the balance.
        if v.len() >= 64 {
            v.remove(0);
        }
        v.push(hash);
    }

    fn take(&self, scid: Scid) -> Vec<PaymentHash> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&scid)
            .unwrap_or_default()
    }
}

fn service_error(e: FeeServiceError) -> RpcError {
    match e {
        FeeServiceError::Policy(p) => RpcError::invalid(format!("fee-policy: {p}")),
        FeeServiceError::File { .. } => RpcError::invalid(e.to_string()),
        FeeServiceError::Store(s) => internal(format!("store: {s}")),
    }
}

/// A settled forward: count its flow and schedule the affected channels. `payment_hash`,
/// when the node reports it, lets the decision wait until the HTLC has left the balances.
/// `settled_at` is given for forwards caught up from the node's history.
pub(crate) fn on_settled_forward(
    s: &AppState,
    in_channel: Scid,
    out_channel: Option<Scid>,
    in_msat: Msat,
    out_msat: Msat,
    payment_hash: Option<PaymentHash>,
    settled_at: Option<u64>,
) {
    let now = now_unix();
    if let Some(h) = payment_hash {
        s.awaited.add(in_channel, h);
        if let Some(o) = out_channel {
            s.awaited.add(o, h);
        }
    }
    s.fees.on_forward_at(
        in_channel,
        out_channel,
        in_msat,
        out_msat,
        settled_at.unwrap_or(now),
        now,
    );
}

/// Reads our channels, waiting until none of `awaited` is still an HTLC on `scid`.
async fn settled_channels(
    s: &AppState,
    scid: Scid,
    awaited: &[PaymentHash],
) -> Result<Vec<Channel>, RpcError> {
    let mut tries = 0;
    loop {
        let channels = s
            .node
            .channels()
            .await
            .map_err(|e| node_error("listpeerchannels", e))?;
        let in_flight = channels
            .iter()
            .find(|c| c.scid == Some(scid))
            .is_some_and(|c| c.htlcs.iter().any(|h| awaited.contains(&h.payment_hash)));
        tries += 1;
        if !in_flight || tries >= SETTLE_RETRIES {
            if in_flight {
                log::debug!("{scid}: forward still shows as an HTLC after {tries} reads; deciding anyway");
            }
            return Ok(channels);
        }
        tokio::time::sleep(SETTLE_RETRY_DELAY).await;
    }
}

/// Applies (or dry-runs) a decision and records it. Returns the history entry, if any.
async fn act(s: &AppState, d: &FeeDecision, trigger: Trigger) -> Result<Option<Value>, RpcError> {
    let acted = s.fees.act(&s.node, d, trigger, now_unix()).await;
    // Once the node took the fee it is changed, whether or not the store recorded it.
    if !matches!(acted, Err(ActError::Node(_))) {
        if d.status.applies() {
            bump(&s.counters.fee_changes);
            log::info!("fee {d}");
        } else if d.status == Status::DryRun {
            log::info!("fee (dry-run) {d}");
        } else {
            log::debug!("fee {d}");
        }
    }
    let change = acted.map_err(|e| match e {
        ActError::Node(e) => node_error("setchannel", e),
        ActError::Service(e) => service_error(e),
    })?;
    Ok(change.map(|c| serde_json::to_value(c).unwrap_or(Value::Null)))
}

/// Decides a channel with its recent rebalance cost filled in.
fn decide(s: &AppState, ch: &Channel, now: u64, force: bool) -> Option<FeeDecision> {
    s.fees.decide_with(ch, &s.rebalance, now, force)
}

/// Decides every due channel (forward-triggered) and, every `interval`, all channels.
pub async fn run_loop(s: AppState, interval: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut next_sweep = tokio::time::Instant::now() + interval;
    loop {
        tick.tick().await;
        for scid in s.fees.take_due(now_unix()) {
            let awaited = s.awaited.take(scid);
            let channels = match settled_channels(&s, scid, &awaited).await {
                Ok(c) => c,
                Err(e) => {
                    log::warn!("fee decision for {scid}: {}", e.message);
                    continue;
                }
            };
            for d in s.fees.step(&channels, Some(scid), &s.rebalance, now_unix()) {
                if let Err(e) = act(&s, &d, Trigger::Forward).await {
                    log::warn!("fee change for {scid} failed: {}", e.message);
                }
            }
        }
        if tokio::time::Instant::now() >= next_sweep {
            next_sweep = tokio::time::Instant::now() + interval;
            match s.node.channels().await {
                Ok(channels) => {
                    for d in s.fees.step(&channels, None, &s.rebalance, now_unix()) {
                        if let Err(e) = act(&s, &d, Trigger::Timer).await {
                            log::warn!("fee change for {} failed: {}", d.scid, e.message);
                        }
                    }
                }
                Err(e) => log::warn!("fee sweep: listpeerchannels failed: {e}"),
            }
        }
    }
}

fn decision_json(d: &FeeDecision, next_allowed: u64) -> Value {
    json!({
        "short_channel_id": d.scid.to_string(),
        "current": {"base_msat": d.current.base_msat.0, "ppm": d.current.ppm},
        "target": {"base_msat": d.target.base_msat.0, "ppm": d.target.ppm},
        "strategy_ppm": d.strategy_ppm,
        "rule": d.rule.as_ref().map(|r| json!({"index": r.index, "name": r.name})),
        "local_ratio": d.local_ratio,
        "inputs": {
            "capacity_msat": d.inputs.capacity.0,
            "local_msat": d.inputs.local.0,
            "pending_htlcs": d.inputs.pending_htlcs,
            "flow_in_msat": d.inputs.flow.in_msat.0,
            "flow_out_msat": d.inputs.flow.out_msat.0,
            "flow_window_secs": d.inputs.flow.window_secs,
            "rebalance_cost_ppm": d.inputs.rebalance_cost_ppm,
            "last_update": d.inputs.last_update,
        },
        "explanation": d.explanation,
        "status": d.status,
        "would_apply_now": d.status.applies(),
        // The later of what the decision says and what the rate limit allows: a change
        // forced during the start-up hold restarts the interval from then.
        "not_before": if d.changes_fee() && !d.status.applies() {
            Some(d.status.not_before().unwrap_or(0).max(next_allowed))
        } else {
            d.status.not_before()
        },
    })
}

async fn our_channels(s: &AppState, only: Option<Scid>, method: &str) -> Result<Vec<Channel>, RpcError> {
    let channels = s
        .node
        .channels()
        .await
        .map_err(|e| node_error("listpeerchannels", e))?;
    let chosen: Vec<Channel> = channels
        .into_iter()
        .filter(|c| manageable(c) && only.is_none_or(|scid| c.scid == Some(scid)))
        .collect();
    if let (Some(scid), true) = (only, chosen.is_empty()) {
        return Err(RpcError {
            code: ERR_UNKNOWN_CHANNEL,
            message: format!("{method}: {scid} is not one of our normal channels"),
        });
    }
    Ok(chosen)
}

pub(crate) const PREVIEW: &str = "fee-preview";

pub async fn preview(p: AppState, params: Value) -> Result<Value, RpcError> {
    rpc_body!(p, s, async {
        let prm = Params::parse(PREVIEW, &params, &["scid"], 0)?;
        let only: Option<Scid> = prm.parsed("scid", "a short_channel_id (BLOCKxTXxOUT)")?;
        let now = now_unix();
        let channels = our_channels(&s, only, PREVIEW).await?;
        let out: Vec<Value> = channels
            .iter()
            .filter_map(|c| decide(&s, c, now, false))
            .map(|d| decision_json(&d, s.fees.next_allowed(d.scid)))
            .collect();
        Ok(json!({"dry_run": s.fees.config().dry_run, "channels": out}))
    })
}

pub(crate) const APPLY: &str = "fee-apply";

pub async fn apply(p: AppState, params: Value) -> Result<Value, RpcError> {
    rpc_body!(p, s, async {
        let prm = Params::parse(APPLY, &params, &["scid", "force"], 0)?;
        let only: Option<Scid> = prm.parsed("scid", "a short_channel_id (BLOCKxTXxOUT)")?;
        let force = prm.bool("force")?.unwrap_or(false);
        let now = now_unix();
        let channels = our_channels(&s, only, APPLY).await?;
        let mut results = Vec::new();
        for c in &channels {
            let Some(d) = decide(&s, c, now, force) else {
                continue;
            };
            let change = act(&s, &d, Trigger::Manual).await?;
            let mut v = decision_json(&d, s.fees.next_allowed(d.scid));
            v["applied"] = json!(d.status.applies());
            v["change"] = change.unwrap_or(Value::Null);
            results.push(v);
        }
        Ok(json!({"channels": results}))
    })
}

pub const HISTORY: &str = "fee-history";

pub async fn history(p: AppState, params: Value) -> Result<Value, RpcError> {
    rpc_body!(p, s, async {
        let prm = Params::parse(HISTORY, &params, &["scid", "limit"], 0)?;
        let only: Option<Scid> = prm.parsed("scid", "a short_channel_id (BLOCKxTXxOUT)")?;
        let limit = prm.u64("limit")?.unwrap_or(100).clamp(1, 10_000) as usize;
        let svc = s.fees.clone();
        let changes = tokio::task::spawn_blocking(move || svc.history(only, limit))
            .await
            .map_err(internal)?
            .map_err(service_error)?;
        Ok(json!({"changes": changes}))
    })
}

/// Names the first rule of a rejected JSON policy that fails on its own ("rule[1] 'typo': "),
/// since JSON errors, unlike TOML ones, do not say which rule they are in.
fn failing_rule(doc: &Value) -> Option<String> {
    let rules = doc.get("rules")?.as_array()?;
    rules.iter().enumerate().find_map(|(i, rule)| {
        let mut alone = doc.clone();
        alone["rules"] = Value::Array(vec![rule.clone()]);
        Policy::from_json_value(alone).err().map(|_| {
            let name = rule.get("name").and_then(Value::as_str).unwrap_or("");
            format!("rule[{i}] '{name}': ")
        })
    })
}

/// Where `fee-policy file=` may read: the configured `ballast-fee-policy-file` (named as
/// in the option or by its full path), or a file inside `ballast-files-dir`. Nothing
/// else: a policy error quotes the offending line, which would otherwise let a caller
/// read any file the node can.
fn policy_file_path(s: &AppState, given: &str) -> Result<std::path::PathBuf, RpcError> {
    if let Some(configured) = s.fees.configured_file() {
        let as_option = crate::api::options::resolve_db_path(&s.base_dir.to_string_lossy(), given);
        if as_option == configured {
            return Ok(as_option);
        }
    }
    s.files.path_for_reading(given).map_err(|e| {
        RpcError::invalid(format!(
            "{POLICY}: {e} (or name the configured ballast-fee-policy-file)"
        ))
    })
}

pub(crate) const POLICY: &str = "fee-policy";

/// `fee-policy` alone shows the policy; with `policy` (JSON object) or `toml` (text) or
/// `file` (path) it replaces it, all-or-nothing.
pub async fn policy(p: AppState, params: Value) -> Result<Value, RpcError> {
    rpc_body!(p, s, async {
        let prm = Params::parse(POLICY, &params, &["policy", "toml", "file"], 0)?;
        let given = [
            prm.raw("policy").is_some(),
            prm.str("toml")?.is_some(),
            prm.str("file")?.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(RpcError::invalid(format!(
                "{POLICY}: give one of 'policy', 'toml' or 'file'"
            )));
        }
        let new = if let Some(Value::String(t)) = prm.raw("policy").filter(|v| *v == BUILTIN_SOURCE) {
            // `fee-policy default`: back to the built-in policy.
            let policy = Policy::builtin().map_err(|e| internal(format!("built-in policy: {e}")))?;
            Some((policy, t.clone()))
        } else if let Some(v) = prm.raw("policy") {
            // JSON text (as lightning-cli passes it) keeps line numbers in its errors.
            let parsed = match v {
                Value::String(t) => {
                    Policy::from_json(t).map_err(|e| (e.to_string(), serde_json::from_str(t).ok()))
                }
                other => {
                    Policy::from_json_value(other.clone()).map_err(|e| (e.to_string(), Some(other.clone())))
                }
            };
            let policy = parsed.map_err(|(message, doc)| {
                let culprit = doc.as_ref().and_then(failing_rule).unwrap_or_default();
                RpcError::invalid(format!("{POLICY}: {culprit}{message}"))
            })?;
            Some((policy, "rpc (json)".to_string()))
        } else if let Some(t) = prm.str("toml")? {
            Some((
                Policy::from_toml(t).map_err(|e| RpcError::invalid(format!("{POLICY}: {e}")))?,
                "rpc (toml)".to_string(),
            ))
        } else if let Some(path) = prm.str("file")? {
            let full = policy_file_path(&s, path)?;
            Some((
                read_policy_file(&full).map_err(service_error)?,
                format!("file {}", full.display()),
            ))
        } else {
            None
        };
        if let Some((policy, source)) = new {
            let svc = s.fees.clone();
            tokio::task::spawn_blocking(move || svc.set_policy(policy, source, now_unix()))
                .await
                .map_err(internal)?
                .map_err(service_error)?;
            log::info!("fee policy replaced");
        }
        let (policy, source) = s.fees.policy();
        Ok(json!({"policy": policy, "source": source, "dry_run": s.fees.config().dry_run}))
    })
}
