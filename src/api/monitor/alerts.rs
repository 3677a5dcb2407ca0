//! `monitor-alerts`, and the JSON shape of an alert every other part shows.

use super::{blocking, RpcError};
use crate::api::now_unix;
use crate::api::params::Params;
use crate::api::state::AppState;
use crate::engine::monitor::{Alert, AlertId};
use serde_json::{json, Value};

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
