//! `monitor-stats`: totals and averages over channels, fee and invoice income by window,
//! active alerts by type and the webhook's delivery figures.

use super::errors::{internal, node_error};
use super::rounds::ensure_snapshot;
use super::RpcError;
use crate::api::now_unix;
use crate::api::params::Params;
use crate::api::state::AppState;
use crate::engine::monitor::{balance_totals, fee_income, invoice_income};
use crate::node::Node;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

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
