//! `ballast-status`: what an operator checks first when something looks wrong.

use super::error::{internal, task_failed};
use super::params::{self, RpcError};
use super::state::AppState;
use crate::node::Node;
use serde_json::{json, Value};

pub(crate) const NAME: &str = "ballast-status";
pub(crate) const DESCRIPTION: &str = "Show ballast's version, chain view, store and activity counters";

pub async fn status(p: AppState, params: Value) -> Result<Value, RpcError> {
    let state = p;
    params::named(NAME, &params, &[], 0)?;
    // Store reads touch sled's page cache and may hit disk; keep them off the runtime.
    let s = state.clone();
    let store = tokio::task::spawn_blocking(move || -> Result<Value, RpcError> {
        let internal = |e: crate::store::StoreError| internal(format!("store: {e}"));
        let info = s.store.info().map_err(internal)?;
        Ok(json!({
            "path": s.store.path().display().to_string(),
            "size_bytes": s.store.size_on_disk(),
            "schema_version": s.store.schema_version().map_err(internal)?,
            "created_at": info.created_at,
            "starts": info.starts,
            "tip_height": s.store.tip().map_err(internal)?,
        }))
    })
    .await
    .map_err(task_failed)??;
    Ok(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "implementation": state.node.implementation(),
        "network": state.network,
        "node_id": state.node_id.map(|n| n.to_hex()),
        "blockheight": state.blockheight(),
        "uptime_secs": state.started.elapsed().as_secs(),
        "store": store,
        "claimed_hashes": state.claims.len(),
        "hodl": {
            "held_htlcs": state.hodl.held_count(),
            "invoices": state.hodl.counts().into_iter().map(|(k, v)| (k.as_str().to_string(), v)).collect::<std::collections::BTreeMap<_, _>>(),
        },
        "fees": {
            "policy_source": state.fees.policy().1,
            "dry_run": state.fees.config().dry_run,
            "pending_decisions": state.fees.pending_decisions(),
        },
        "counters": state.counters.snapshot(),
    }))
}
