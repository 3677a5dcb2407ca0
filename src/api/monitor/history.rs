//! `monitor-history`: one channel's downsampled local balance between two times.

use super::errors::unknown_channel;
use super::{blocking, RpcError, SCID_WANT};
use crate::api::now_unix;
use crate::api::params::Params;
use crate::api::state::AppState;
use crate::engine::monitor::HistoryPoint;
use crate::types::Scid;
use serde_json::{json, Value};

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
