//! `monitor-status`: per channel, the latest snapshot and its active alerts.

use super::alerts::alert_json;
use super::errors::unknown_channel;
use super::rounds::ensure_snapshot;
use super::{RpcError, SCID_WANT};
use crate::api::params::Params;
use crate::api::state::AppState;
use crate::engine::monitor::{Alert, ChannelSnapshot};
use crate::types::Scid;
use serde_json::{json, Value};

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
