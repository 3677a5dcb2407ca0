//! Rebalancing on Core Lightning: the gossip graph kept fresh, `route-estimate`,
//! `rebalance-plan` (dry run), `rebalance-execute` within hard budgets, `rebalance-status`,
//! and the optional automatic mode.
//!
//! Execution pays a circular route to our own node with `sendpay`; the payment hash is one
//! ballast made and claimed, so its `htlc_accepted` path resolves the HTLC (no invoice).

use super::error::{internal, node_error, ERR_BUSY, ERR_NODE, ERR_NO_GRAPH, ERR_PLAN, ERR_UNKNOWN_CHANNEL};
use super::now_unix;
use super::params::{Params, RpcError};
use super::state::AppState;
use crate::counters::bump;
use crate::engine::hodl::Failure;
use crate::engine::local_edges::merge_local;
use crate::engine::planner::{plan, MoveStatus, PlanRequest, PlannerConfig};
use crate::engine::route::{cheapest, fastest, find_routes, Route, RouteParams};
use crate::node::{Channel, ChannelState, Node, NodeError, PayOutcome};
use crate::service::execute::{ExecError, ExecStatus, Executor, MoveReport};
use crate::service::hodl::Answer;
use crate::service::rebalance::{AttemptOutcome, RebalanceError};
use crate::types::{Msat, NodeId, PaymentHash, Scid};
use serde_json::{json, Value};
use std::time::Duration;

/// Budgets and targets from options.
#[derive(Debug, Clone)]
pub struct RebalanceSettings {
    pub planner: PlannerConfig,
    pub daily_budget: Msat,
    pub max_htlcs: u32,
    pub graph_refresh: Duration,
    pub auto: bool,
    pub interval: Duration,
}

fn store_error(e: RebalanceError) -> RpcError {
    internal(e)
}

/// At most one refresh per this interval is started by calls naming what the graph lacks.
const DEMAND_REFRESH_EVERY: Duration = Duration::from_secs(10);

/// Loads the graph if it is not there yet (first use before the refresher ran), and
/// refreshes it first when it lacks a channel or node the call is about (a channel opened
/// since the last refresh, a node gossip just brought), at most once per
/// [`DEMAND_REFRESH_EVERY`]. A failed refresh leaves the graph as it was: the call then
/// says what is missing.
async fn ensure_graph(s: &AppState, scids: &[Scid], nodes: &[NodeId]) -> Result<(), RpcError> {
    if !s.rebalance.has_graph() {
        return refresh_graph(s).await;
    }
    if s.rebalance.graph_lacks(scids, nodes) && s.rebalance.claim_demand_refresh(DEMAND_REFRESH_EVERY) {
        log::debug!("graph lacks a channel or node asked for: refreshing it now");
        if let Err(e) = refresh_graph(s).await {
            log::warn!("graph refresh on demand failed: {}", e.message);
        }
    }
    Ok(())
}

/// The channels and peers a call is about, for [`ensure_graph`].
fn ends(channels: &[Channel], scids: impl IntoIterator<Item = Scid>) -> (Vec<Scid>, Vec<NodeId>) {
    let scids: Vec<Scid> = scids.into_iter().collect();
    let peers = channels
        .iter()
        .filter(|c| c.scid.is_some_and(|x| scids.contains(&x)))
        .map(|c| c.peer)
        .collect();
    (scids, peers)
}

async fn refresh_graph(s: &AppState) -> Result<(), RpcError> {
    let mut edges = s.node.graph().await.map_err(|e| node_error("listchannels", e))?;
    // Our own channels as the node knows them, so new and private ones are never missing
    // and our side of each is current.
    if let Some(me) = s.node_id {
        match s.node.channels().await {
            Ok(channels) => edges = merge_local(edges, me, &channels, now_unix()),
            Err(e) => {
                log::warn!("graph refresh: listpeerchannels failed ({e}); our channels as gossip has them")
            }
        }
    }
    let svc = s.rebalance.clone();
    let (nodes, channels) = tokio::task::spawn_blocking(move || svc.refresh_graph(&edges))
        .await
        .map_err(internal)?
        .map_err(|e| RpcError {
            code: ERR_NO_GRAPH,
            message: format!("gossip graph unusable: {e}"),
        })?;
    log::debug!("gossip graph refreshed: {nodes} nodes, {channels} channels");
    Ok(())
}

/// Keeps the graph fresh, and runs automatic rebalancing when enabled.
pub async fn run_loop(s: AppState) {
    let settings = s.rebalance_settings.clone();
    let mut next_auto = tokio::time::Instant::now() + settings.interval;
    loop {
        if let Err(e) = refresh_graph(&s).await {
            log::warn!("graph refresh failed: {}", e.message);
        }
        let sleep = if settings.auto {
            settings
                .graph_refresh
                .min(next_auto.saturating_duration_since(tokio::time::Instant::now()))
        } else {
            settings.graph_refresh
        };
        tokio::time::sleep(sleep.max(Duration::from_secs(1))).await;
        if settings.auto && tokio::time::Instant::now() >= next_auto {
            next_auto = tokio::time::Instant::now() + settings.interval;
            match auto_round(&s).await {
                Ok(v) => log::info!("automatic rebalance: {v}"),
                Err(e) => log::warn!("automatic rebalance: {}", e.message),
            }
        }
    }
}

async fn auto_round(s: &AppState) -> Result<Value, RpcError> {
    let cfg = s.rebalance_settings.planner.clone();
    let (plan_id, plan) = make_plan(s, cfg, s.rebalance.resting_pairs(now_unix())).await?;
    let moves: Vec<(Scid, Scid, Msat, u32)> = plan
        .moves
        .iter()
        .filter(|m| m.status == MoveStatus::Planned)
        .map(|m| (m.source_scid, m.sink_scid, m.amount, m.fee_cap_ppm))
        .collect();
    if moves.is_empty() {
        return Ok(json!({"plan_id": plan_id, "moves": 0}));
    }
    execute_moves(s, &plan_id, true, &moves, None).await
}

fn ours(s: &AppState) -> Result<NodeId, RpcError> {
    s.node_id.ok_or_else(|| RpcError {
        code: ERR_NODE,
        message: "our node id is unknown (getinfo failed at start-up)".into(),
    })
}

fn route_json(r: &Route) -> Value {
    json!({
        "hops": r.hops.iter().map(|h| json!({
            "short_channel_id": h.scid.to_string(),
            "node": h.node.to_hex(),
            "amount_msat": h.amount.0,
            "fee_msat": h.fee.0,
            "cltv_delta": h.cltv_delta,
            "delay": h.delay,
        })).collect::<Vec<_>>(),
        "amount_msat": r.amount.0,
        "fee_msat": r.fee.0,
        "fee_ppm": r.fee_ppm,
        "total_cltv": r.total_cltv,
        "probability": r.probability,
    })
}

pub(crate) const ESTIMATE: &str = "route-estimate";

pub async fn estimate(p: AppState, params: Value) -> Result<Value, RpcError> {
    rpc_body!(p, s, async {
        let prm = Params::parse(
            ESTIMATE,
            &params,
            &["destination", "amount_msat", "k", "maxhops"],
            2,
        )?;
        let dest: NodeId = prm.required(
            prm.parsed("destination", "a node id (66 hex characters)")?,
            "destination",
        )?;
        let amount = prm.required(prm.u64("amount_msat")?, "amount_msat")?;
        if amount == 0 {
            return Err(RpcError::invalid(format!(
                "{ESTIMATE}: 'amount_msat' must be greater than 0"
            )));
        }
        let k = prm.u64("k")?.unwrap_or(5);
        if !(1..=20).contains(&k) {
            return Err(RpcError::invalid(format!("{ESTIMATE}: 'k' must be 1..20")));
        }
        let max_hops = prm.u64("maxhops")?.unwrap_or(20);
        if !(1..=27).contains(&max_hops) {
            return Err(RpcError::invalid(format!("{ESTIMATE}: 'maxhops' must be 1..27")));
        }
        let me = ours(&s)?;
        ensure_graph(&s, &[], &[dest]).await?;
        // Gossip knows our channels' capacity, not what they can send now: leave out the
        // first hops that could not carry the amount.
        let channels = s
            .node
            .channels()
            .await
            .map_err(|e| node_error("listpeerchannels", e))?;
        let unusable: Vec<Scid> = channels
            .iter()
            .filter(|c| c.state != ChannelState::Normal || !c.peer_connected || c.spendable.0 < amount)
            .filter_map(|c| c.scid)
            .collect();
        let svc = s.rebalance.clone();
        let routes = tokio::task::spawn_blocking(move || {
            let params = RouteParams {
                k: k as usize,
                max_hops: max_hops as usize,
                exclude_channels: unusable,
                ..RouteParams::default()
            };
            svc.with_graph(now_unix(), |g, _, view| {
                find_routes(g, view, &me, &dest, Msat(amount), &params)
            })
        })
        .await
        .map_err(internal)?
        .ok_or_else(|| RpcError {
            code: ERR_NO_GRAPH,
            message: "gossip graph not loaded".into(),
        })?
        .map_err(|e| RpcError::invalid(format!("{ESTIMATE}: {e}")))?;
        Ok(json!({
            "destination": dest.to_hex(),
            "amount_msat": amount,
            "routes_found": routes.len(),
            "cheapest": cheapest(&routes).map(route_json),
            "fastest": fastest(&routes).map(route_json),
        }))
    })
}

/// A plan from the node's channels and the graph, stored, leaving out the `resting` pairs
/// ([`crate::engine::rest`]: the automatic round's; none for the operator's plan).
async fn make_plan(
    s: &AppState,
    mut cfg: PlannerConfig,
    resting: Vec<(Scid, Scid)>,
) -> Result<(String, crate::engine::planner::Plan), RpcError> {
    cfg.overrides = s.rebalance.overrides().map_err(store_error)?;
    let me = ours(s)?;
    let channels = s
        .node
        .channels()
        .await
        .map_err(|e| node_error("listpeerchannels", e))?;
    let (scids, peers) = ends(
        &channels,
        channels
            .iter()
            .filter(|c| c.state == ChannelState::Normal)
            .filter_map(|c| c.scid)
            .filter(|x| cfg.channels.as_ref().is_none_or(|only| only.contains(x))),
    );
    ensure_graph(s, &scids, &peers).await?;
    // Swaps are priced with the node's own estimate; a node without one still gets a plan.
    let feerate = s.node.feerate_perkb().await.unwrap_or_else(|e| {
        log::debug!("feerates unavailable for swap estimates: {e}");
        None
    });
    let svc = s.rebalance.clone();
    let now = now_unix();
    tokio::task::spawn_blocking(move || {
        let planned = svc
            .with_graph(now, |graph, beliefs, _| {
                plan(&PlanRequest {
                    ours: me,
                    channels: &channels,
                    graph,
                    beliefs,
                    config: &cfg,
                    feerate_perkb: feerate,
                    now,
                    resting: &resting,
                })
            })
            .ok_or_else(|| RpcError {
                code: ERR_NO_GRAPH,
                message: "gossip graph not loaded".into(),
            })?
            .map_err(|e| RpcError {
                code: match e {
                    crate::engine::planner::PlanError::UnknownChannel(_) => ERR_UNKNOWN_CHANNEL,
                    _ => ERR_PLAN,
                },
                message: format!("rebalance-plan: {e}"),
            })?;
        let id = svc.store_plan(planned.clone(), now).map_err(store_error)?;
        Ok((id, planned))
    })
    .await
    .map_err(internal)?
}

pub(crate) const PLAN: &str = "rebalance-plan";

pub(crate) async fn rebalance_plan(p: AppState, params: Value) -> Result<Value, RpcError> {
    rpc_body!(p, s, async {
        let prm = Params::parse(PLAN, &params, &["channels", "max_ppm", "max_moves"], 0)?;
        let mut cfg = s.rebalance_settings.planner.clone();
        if let Some(v) = prm.raw("channels") {
            cfg.channels = Some(scid_list(PLAN, "channels", v)?);
        }
        if let Some(ppm) = prm.u32("max_ppm")? {
            cfg.max_ppm = ppm;
        }
        if let Some(n) = prm.u64("max_moves")? {
            if !(1..=100).contains(&n) {
                return Err(RpcError::invalid(format!("{PLAN}: 'max_moves' must be 1..100")));
            }
            cfg.max_moves = n as usize;
        }
        let (id, planned) = make_plan(&s, cfg, Vec::new()).await?;
        let mut v = serde_json::to_value(&planned).map_err(internal)?;
        v["plan_id"] = json!(id);
        v["expires_at"] = json!(planned.generated_at + crate::service::rebalance::PLAN_TTL_SECS);
        Ok(v)
    })
}

fn scid_list(method: &str, name: &str, v: &Value) -> Result<Vec<Scid>, RpcError> {
    let items: Vec<Value> = match v {
        Value::Array(a) => a.clone(),
        // lightning-cli passes a positional list as a string.
        Value::String(t) if t.trim_start().starts_with('[') => serde_json::from_str(t)
            .map_err(|e| RpcError::invalid(format!("{method}: '{name}' is not a JSON list: {e}")))?,
        Value::String(t) => vec![Value::String(t.clone())],
        other => {
            return Err(RpcError::invalid(format!(
                "{method}: '{name}' must be a list of short_channel_ids, got {other}"
            )))
        }
    };
    items
        .iter()
        .map(|i| {
            i.as_str().and_then(|t| t.parse().ok()).ok_or_else(|| {
                RpcError::invalid(format!(
                    "{method}: '{name}' entries must be short_channel_ids, got {i}"
                ))
            })
        })
        .collect()
}

pub const SET: &str = "rebalance-set";

/// `rebalance-set` alone lists the per-channel overrides; with `scid` and any of `low`,
/// `high`, `target` it sets that channel's; with `reset` it removes them.
pub async fn set(p: AppState, params: Value) -> Result<Value, RpcError> {
    rpc_body!(p, s, async {
        let prm = Params::parse(SET, &params, &["scid", "low", "high", "target", "reset"], 0)?;
        let scid: Option<Scid> = prm.parsed("scid", "a short_channel_id")?;
        let ratio = |name: &str| -> Result<Option<f64>, RpcError> {
            let v = match prm.raw(name) {
                None | Some(Value::Null) => return Ok(None),
                Some(Value::Number(n)) => n.as_f64(),
                Some(Value::String(t)) => t.parse().ok(),
                Some(_) => None,
            };
            match v {
                Some(x) if (0.0..=1.0).contains(&x) => Ok(Some(x)),
                _ => Err(RpcError::invalid(format!(
                    "{SET}: '{name}' must be a number between 0 and 1"
                ))),
            }
        };
        let (low, high, target) = (ratio("low")?, ratio("high")?, ratio("target")?);
        let reset = prm.bool("reset")?.unwrap_or(false);
        if let Some(scid) = scid {
            let change = if reset {
                Some(None)
            } else if low.is_some() || high.is_some() || target.is_some() {
                // A target for a channel we do not have would change nothing but the store.
                // (Resetting one stays possible, to clean up after a close.)
                let channels = s
                    .node
                    .channels()
                    .await
                    .map_err(|e| node_error("listpeerchannels", e))?;
                if !channels.iter().any(|c| c.scid == Some(scid)) {
                    return Err(RpcError {
                        code: ERR_UNKNOWN_CHANNEL,
                        message: format!("{SET}: {scid} is not one of our channels"),
                    });
                }
                let base = &s.rebalance_settings.planner;
                let mut o = s
                    .rebalance
                    .overrides()
                    .map_err(store_error)?
                    .remove(&scid)
                    .unwrap_or_default();
                o.low = low.or(o.low);
                o.high = high.or(o.high);
                o.target = target.or(o.target);
                let (l, t, h) = (
                    o.low.unwrap_or(base.low),
                    o.target.unwrap_or(base.target),
                    o.high.unwrap_or(base.high),
                );
                if !(l < t && t < h) {
                    return Err(RpcError::invalid(format!(
                        "{SET}: low ({l}) < target ({t}) < high ({h}) must hold for {scid}"
                    )));
                }
                Some(Some(o))
            } else {
                None
            };
            if let Some(change) = change {
                let svc = s.rebalance.clone();
                tokio::task::spawn_blocking(move || svc.set_override(scid, change))
                    .await
                    .map_err(internal)?
                    .map_err(store_error)?;
            }
        } else if low.is_some() || high.is_some() || target.is_some() || reset {
            return Err(RpcError::invalid(format!(
                "{SET}: 'scid' is required to change an override"
            )));
        }
        let all = s.rebalance.overrides().map_err(store_error)?;
        Ok(json!({
            "defaults": {
                "low": s.rebalance_settings.planner.low,
                "high": s.rebalance_settings.planner.high,
                "target": s.rebalance_settings.planner.target,
            },
            "overrides": all.iter().map(|(k, o)| json!({
                "short_channel_id": k.to_string(), "low": o.low, "high": o.high, "target": o.target,
            })).collect::<Vec<_>>(),
        }))
    })
}

pub(crate) const EXECUTE: &str = "rebalance-execute";

pub async fn execute(p: AppState, params: Value) -> Result<Value, RpcError> {
    rpc_body!(p, s, async {
        let prm = Params::parse(
            EXECUTE,
            &params,
            &[
                "plan_id",
                "source",
                "sink",
                "amount_msat",
                "max_ppm",
                "max_fee_msat",
            ],
            0,
        )?;
        let plan_id = prm.str("plan_id")?;
        let source: Option<Scid> = prm.parsed("source", "a short_channel_id")?;
        let sink: Option<Scid> = prm.parsed("sink", "a short_channel_id")?;
        let amount = prm.u64("amount_msat")?;
        let max_ppm = prm.u32("max_ppm")?;
        let max_fee = prm.u64("max_fee_msat")?.map(Msat);
        let cfg = &s.rebalance_settings.planner;
        let (exec_id, moves) = match (plan_id, source, sink, amount) {
            (Some(id), None, None, None) => {
                let stored = {
                    let svc = s.rebalance.clone();
                    let id = id.to_string();
                    tokio::task::spawn_blocking(move || svc.plan(&id, now_unix()))
                        .await
                        .map_err(internal)?
                        .map_err(store_error)?
                };
                let stored = stored.ok_or_else(|| RpcError {
                    code: ERR_PLAN,
                    message: format!(
                        "{EXECUTE}: no plan '{id}' (a plan runs once and expires after an hour; make a new one)"
                    ),
                })?;
                let moves: Vec<_> = stored
                    .plan
                    .moves
                    .iter()
                    .filter(|m| m.status == MoveStatus::Planned)
                    .map(|m| {
                        (
                            m.source_scid,
                            m.sink_scid,
                            m.amount,
                            max_ppm.unwrap_or(m.fee_cap_ppm).min(m.fee_cap_ppm),
                        )
                    })
                    .collect();
                (stored.id, moves)
            }
            (None, Some(src), Some(dst), Some(amt)) => {
                if src == dst {
                    return Err(RpcError::invalid(format!(
                        "{EXECUTE}: source and sink are the same channel"
                    )));
                }
                if amt == 0 || amt > cfg.max_amount.0 {
                    return Err(RpcError::invalid(format!(
                        "{EXECUTE}: 'amount_msat' must be 1..{} (ballast-rebalance-max-amount)",
                        cfg.max_amount.0
                    )));
                }
                if let Some(p) = max_ppm.filter(|p| *p > cfg.max_ppm) {
                    return Err(RpcError::invalid(format!(
                        "{EXECUTE}: 'max_ppm' {p} is above ballast-rebalance-max-ppm ({}); raise the option to allow it",
                        cfg.max_ppm
                    )));
                }
                let mut raw = [0u8; 8];
                getrandom::getrandom(&mut raw).map_err(internal)?;
                (
                    format!("manual-{}", hex::encode(raw)),
                    vec![(src, dst, Msat(amt), max_ppm.unwrap_or(cfg.max_ppm))],
                )
            }
            _ => {
                return Err(RpcError::invalid(format!(
                    "{EXECUTE}: give either 'plan_id', or 'source', 'sink' and 'amount_msat'"
                )))
            }
        };
        execute_moves(&s, &exec_id, plan_id.is_some(), &moves, max_fee).await
    })
}

/// Runs moves one at a time (at most one self-payment HTLC of ours in flight, which never
/// exceeds `ballast-rebalance-max-htlcs`), never letting fees pass the execution budget or
/// the daily cap: both are checked before every attempt against that route's exact fee.
async fn execute_moves(
    s: &AppState,
    exec_id: &str,
    from_plan: bool,
    moves: &[(Scid, Scid, Msat, u32)],
    max_fee: Option<Msat>,
) -> Result<Value, RpcError> {
    let Ok(_guard) = s.rebalance_lock.try_lock() else {
        return Err(RpcError {
            code: ERR_BUSY,
            message: format!("{EXECUTE}: another rebalance is running; try again when it ends"),
        });
    };
    // An attempt left in flight by an earlier execution counts against
    // ballast-rebalance-max-htlcs: settle its fate first, and send nothing while it lasts.
    let still_pending = resolve_pending(s).await?;
    if still_pending >= s.rebalance_settings.max_htlcs as usize {
        return Err(RpcError {
            code: ERR_BUSY,
            message: format!(
                "{EXECUTE}: {still_pending} earlier rebalance payment(s) still in flight (ballast-rebalance-max-htlcs is {}); try again when they resolve",
                s.rebalance_settings.max_htlcs
            ),
        });
    }
    let me = ours(s)?;
    let channels = s
        .node
        .channels()
        .await
        .map_err(|e| node_error("listpeerchannels", e))?;
    let (scids, peers) = ends(&channels, moves.iter().flat_map(|m| [m.0, m.1]));
    ensure_graph(s, &scids, &peers).await?;
    if from_plan {
        let svc = s.rebalance.clone();
        let id = exec_id.to_string();
        let taken = tokio::task::spawn_blocking(move || svc.consume_plan(&id))
            .await
            .map_err(internal)?
            .map_err(store_error)?;
        if !taken {
            return Err(RpcError {
                code: ERR_PLAN,
                message: format!(
                    "{EXECUTE}: plan '{exec_id}' was already executed (a plan runs once; make a new one)"
                ),
            });
        }
    }
    let mut budget_left = max_fee.unwrap_or(Msat(u64::MAX));
    let mut results = Vec::new();
    let mut spent_total = Msat(0);
    for &(source, sink, amount, ppm) in moves {
        let r = match execute_move(
            s,
            &me,
            exec_id,
            &channels,
            source,
            sink,
            amount,
            ppm,
            &mut budget_left,
        )
        .await
        {
            Ok(r) => r,
            // Before anything was paid an error is the answer; after, it must not hide what
            // earlier moves spent: it becomes this move's entry and the execution stops.
            Err(e) if results.is_empty() => return Err(e),
            Err(e) => {
                results.push(json!({
                    "source": source.to_string(),
                    "sink": sink.to_string(),
                    "requested_msat": amount.0,
                    "moved_msat": 0,
                    "fee_msat": 0,
                    "attempts": 0,
                    "status": "error",
                    "reason": e.message,
                }));
                break;
            }
        };
        spent_total = Msat(spent_total.0.saturating_add(r.fee.0));
        results.push(move_json(&r));
        if r.status == ExecStatus::InFlight {
            // One of ours is still out there: starting another move would exceed
            // ballast-rebalance-max-htlcs, so the execution ends here.
            break;
        }
    }
    Ok(json!({"execution": exec_id, "moves": results, "fee_msat": spent_total.0}))
}

/// One move through the shared attempt loop (`service::execute`).
#[allow(clippy::too_many_arguments)]
async fn execute_move(
    s: &AppState,
    me: &NodeId,
    exec_id: &str,
    channels: &[Channel],
    source: Scid,
    sink: Scid,
    amount: Msat,
    max_ppm: u32,
    budget_left: &mut Msat,
) -> Result<MoveReport, RpcError> {
    let settings = &s.rebalance_settings;
    let exec = Executor {
        service: &s.rebalance,
        node: &s.node,
        planner: &settings.planner,
        daily_budget: settings.daily_budget,
        now: &now_unix,
        me: *me,
        exec_id,
        channels,
    };
    let r = exec
        .execute_move(source, sink, amount, max_ppm, budget_left)
        .await
        .map_err(|e| match e {
            ExecError::UnknownChannel(_) => RpcError {
                code: ERR_UNKNOWN_CHANNEL,
                message: format!("{EXECUTE}: {e}"),
            },
            ExecError::Route(_) => RpcError {
                code: ERR_PLAN,
                message: format!("{EXECUTE}: {e}"),
            },
            ExecError::Store(e) => store_error(e),
        })?;
    for _ in r.recorded.iter().filter(|a| a.outcome == AttemptOutcome::Success) {
        bump(&s.counters.rebalances);
    }
    Ok(r)
}

/// A move as `rebalance-execute` has always reported it.
fn move_json(r: &MoveReport) -> Value {
    if r.status == ExecStatus::Refused {
        return json!({"source": r.source.to_string(), "sink": r.sink.to_string(), "moved_msat": 0,
            "fee_msat": 0, "status": r.status.as_str(), "reason": r.reason});
    }
    json!({
        "source": r.source.to_string(),
        "sink": r.sink.to_string(),
        "requested_msat": r.requested.0,
        "moved_msat": r.moved.0,
        "fee_msat": r.fee.0,
        "attempts": r.attempts,
        "status": r.status.as_str(),
        "reason": r.reason,
    })
}

pub const STATUS: &str = "rebalance-status";

pub async fn status(p: AppState, params: Value) -> Result<Value, RpcError> {
    rpc_body!(p, s, async {
        let prm = Params::parse(STATUS, &params, &["id", "limit"], 0)?;
        let id = prm.str("id")?.map(str::to_string);
        let limit = prm.u64("limit")?.unwrap_or(100).clamp(1, 10_000) as usize;
        let svc = s.rebalance.clone();
        let daily = s.rebalance_settings.daily_budget;
        let (attempts, spent) = tokio::task::spawn_blocking(move || {
            Ok::<_, RebalanceError>((
                svc.attempts(id.as_deref(), limit)?,
                svc.spent_since(now_unix().saturating_sub(86_400))?,
            ))
        })
        .await
        .map_err(internal)?
        .map_err(store_error)?;
        let graph = s.rebalance.graph_stats();
        Ok(json!({
            "attempts": attempts,
            "spent_24h_msat": spent.0,
            "daily_budget_msat": daily.0,
            "auto": s.rebalance_settings.auto,
            "max_htlcs": s.rebalance_settings.max_htlcs,
            "graph": graph.map(|(n, c, b)| json!({"nodes": n, "channels": c, "memory_bytes": b})),
        }))
    })
}

/// After a start, asks the node about rebalance payments an earlier run left in flight
/// (ballast died or stopped while waiting on them) until none is left, so their outcome and
/// fee are known without waiting for the next execution. Never sends anything.
pub(crate) async fn resolve_pending_after_start(s: AppState) {
    loop {
        // Nothing in flight (the usual case): done, without ever taking the lock an
        // execution needs.
        let svc = s.rebalance.clone();
        match tokio::task::spawn_blocking(move || svc.pending_attempts()).await {
            Ok(Ok(p)) if p.is_empty() => return,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => log::warn!("cannot read pending rebalance attempts: {e}"),
            Err(e) => log::warn!("pending rebalance attempts task failed: {e}"),
        }
        // An execution resolves pending attempts itself, under the same lock.
        if let Ok(_guard) = s.rebalance_lock.try_lock() {
            match resolve_pending(&s).await {
                Ok(0) => return,
                Ok(n) => log::info!("{n} rebalance payment(s) from before the restart still in flight"),
                Err(e) => log::warn!(
                    "cannot resolve rebalance payments from before the restart: {}",
                    e.message
                ),
            }
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

/// Asks lightningd about attempts left in flight; returns how many still are.
async fn resolve_pending(s: &AppState) -> Result<usize, RpcError> {
    let svc = s.rebalance.clone();
    let pending = tokio::task::spawn_blocking(move || svc.pending_attempts())
        .await
        .map_err(internal)?
        .map_err(store_error)?;
    let mut still = 0;
    for a in pending {
        let outcome = match s.node.wait_payment(a.payment_hash, 1).await {
            Ok(PayOutcome::Success { .. }) => Some((AttemptOutcome::Success, String::new(), None)),
            Ok(PayOutcome::Failed {
                message,
                failing_channel,
                ..
            }) => Some((AttemptOutcome::Failed, message, failing_channel)),
            Ok(PayOutcome::InFlight { .. }) => None,
            // The node no longer knows the payment: it never completed.
            Err(NodeError::UnknownPayment { message, .. }) => Some((AttemptOutcome::Failed, message, None)),
            Err(e) => {
                log::warn!("cannot check rebalance attempt {}: {e}", a.id);
                None
            }
        };
        match outcome {
            Some((o, message, failing)) => {
                if o == AttemptOutcome::Success {
                    bump(&s.counters.rebalances);
                }
                let svc = s.rebalance.clone();
                let id = a.id;
                tokio::task::spawn_blocking(move || svc.resolve_attempt(id, o, message, failing))
                    .await
                    .map_err(internal)?
                    .map_err(store_error)?;
            }
            None => still += 1,
        }
    }
    Ok(still)
}

/// The answer for an incoming HTLC whose hash is one of our own rebalance payments, or
/// `None` when it is not one. Every hop of the circle saw the hash, so the preimage is
/// given out only for the HTLC that ends at us (`ends_here`) with the full amount:
/// resolving a smaller one, or one passing through, would hand a hop the means to claim
/// the whole payment for what it sent us. The adapter puts the answer in its node's terms.
pub(crate) fn claim_answer(
    s: &AppState,
    hash: &PaymentHash,
    amount: Msat,
    ends_here: bool,
) -> Option<Answer> {
    let (preimage, expected) = s.rebalance.preimage_for(hash)?;
    if ends_here && amount >= expected {
        return Some(Answer::Resolve(preimage));
    }
    log::warn!(
        "HTLC for our rebalance payment {hash} refused: {} msat{}, expected {expected}",
        amount.0,
        if ends_here { "" } else { ", passing through" }
    );
    Some(Answer::Fail(Failure::IncorrectOrUnknownPaymentDetails {
        htlc_msat: amount,
        height: s.blockheight(),
    }))
}
