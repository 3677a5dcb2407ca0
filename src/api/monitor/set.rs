//! `monitor-set`: show the alert rules, or change them at a scope with a JSON patch.

use super::rounds::poke;
use super::{blocking, RpcError};
use crate::api::params::Params;
use crate::api::state::AppState;
use crate::engine::monitor::{RulesPatch, Scope};
use serde_json::{json, Value};

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
