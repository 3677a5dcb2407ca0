//! `monitor-report`: a self-contained HTML report of balances, alerts and fees, written
//! to a new private file in the files directory.

use super::errors::{file_error, internal, node_error, service_error};
use super::rounds::ensure_snapshot;
use super::{file_param, RpcError};
use crate::api::now_unix;
use crate::api::params::Params;
use crate::api::state::AppState;
use crate::engine::monitor::{balance_totals, fee_income, invoice_income, ChannelSnapshot};
use crate::node::Node;
use crate::report::{self, ReportData};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

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
