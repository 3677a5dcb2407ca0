//! Request dispatch: envelope and schema checks, scripted answers and handlers, and the
//! built-in methods, with lightningd's named and positional parameters.

use super::*;

pub(super) fn paging(p: &Value) -> (u64, usize) {
    let start = p.get("start").and_then(Value::as_u64).unwrap_or(0);
    let limit = p
        .get("limit")
        .and_then(Value::as_u64)
        .map_or(usize::MAX, |l| l as usize);
    (start, limit)
}

/// Parses an amount the way lightningd accepts it in params.
pub(super) fn parse_msat(v: &Value) -> Result<u64, JsonRpcError> {
    let bad = || JsonRpcError::new(INVALID_PARAMS, format!("should be a millisatoshi amount: {v}"));
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(bad),
        Value::String(s) => {
            if let Some(n) = s.strip_suffix("msat") {
                n.parse().map_err(|_| bad())
            } else if let Some(n) = s.strip_suffix("sat") {
                n.parse::<u64>().map(|x| x * 1000).map_err(|_| bad())
            } else if let Some(n) = s.strip_suffix("btc") {
                let (whole, frac) = n.split_once('.').unwrap_or((n, ""));
                if frac.len() > 11 {
                    return Err(bad());
                }
                let whole: u64 = whole.parse().map_err(|_| bad())?;
                let frac_val: u64 = if frac.is_empty() {
                    0
                } else {
                    format!("{frac:0<11}").parse().map_err(|_| bad())?
                };
                Ok(whole * 100_000_000_000 + frac_val)
            } else {
                s.parse().map_err(|_| bad())
            }
        }
        _ => Err(bad()),
    }
}

/// Positional parameter order of the commands the fake implements, as
/// lightningd declares them (the order of its `param()` calls).
pub(super) fn positional_order(method: &str) -> Option<&'static [&'static str]> {
    Some(match method {
        "getinfo" => &[],
        "listpeerchannels" => &["id", "short_channel_id", "channel_id"],
        "listpeers" => &["id", "level"],
        "listfunds" => &["spent"],
        "listchannels" => &["short_channel_id", "source", "destination"],
        "listnodes" => &["id"],
        "listforwards" => &["status", "in_channel", "out_channel", "index", "start", "limit"],
        "listinvoices" => &[
            "label",
            "invstring",
            "payment_hash",
            "offer_id",
            "index",
            "start",
            "limit",
        ],
        "setchannel" => &[
            "id",
            "feebase",
            "feeppm",
            "htlcmin",
            "htlcmax",
            "enforcedelay",
            "ignorefeelimits",
        ],
        "signinvoice" => &["invstring"],
        "sendpay" => &[
            "route",
            "payment_hash",
            "label",
            "amount_msat",
            "bolt11",
            "payment_secret",
            "partid",
            "localinvreqid",
            "groupid",
            "payment_metadata",
            "description",
        ],
        "waitsendpay" => &["payment_hash", "timeout", "partid", "groupid"],
        "feerates" => &["style"],
        "listconfigs" => &["config"],
        "waitblockheight" => &["blockheight", "timeout"],
        _ => return None,
    })
}

/// Converts params to an object. Positional params are mapped by the
/// command's declared order, like lightningd's parser does.
pub(super) fn named_params(method: &str, params: &Value) -> Result<Value, JsonRpcError> {
    match params {
        Value::Null => Ok(json!({})),
        Value::Object(_) => Ok(params.clone()),
        Value::Array(items) => {
            let Some(order) = positional_order(method) else {
                // Not a command the fake implements: keep the array (the
                // schema check then verifies arity only) and let a script,
                // a handler or "unknown command" answer.
                return Ok(params.clone());
            };
            if items.len() > order.len() {
                return Err(JsonRpcError::new(
                    INVALID_PARAMS,
                    format!(
                        "too many parameters: got {}, expected at most {}",
                        items.len(),
                        order.len()
                    ),
                ));
            }
            let mut m = Map::new();
            for (name, v) in order.iter().zip(items) {
                // lightning-cli sends `null` for skipped optional params.
                if !v.is_null() {
                    m.insert((*name).to_string(), v.clone());
                }
            }
            Ok(Value::Object(m))
        }
        other => Err(JsonRpcError::new(
            INVALID_PARAMS,
            format!("params must be an object or an array, got {other}"),
        )),
    }
}

impl FakeNode {
    /// Handles one request end to end: checks, records, answers, checks the
    /// answer. Returns the full JSON-RPC response to write back.
    pub fn handle_request(&self, request: &Value, connection: usize) -> Value {
        match self.handle_request_wire(request, connection) {
            Wire::Json(v) => v,
            Wire::Bytes(b) => Value::String(String::from_utf8_lossy(&b).into_owned()),
            Wire::Hangup => Value::Null,
        }
    }

    /// [`FakeNode::handle_request`], with the scripted answers that are no JSON-RPC
    /// response (raw bytes, a hang-up) as they go on the wire.
    pub fn handle_request_wire(&self, request: &Value, connection: usize) -> Wire {
        if let Err(e) = check_rpc_request_envelope(request) {
            self.violation(e.clone());
            let id = request.get("id").cloned().unwrap_or(Value::Null);
            return Wire::Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32600, "message": e}}));
        }
        let id = request["id"].clone();
        let method = request["method"].as_str().unwrap_or_default().to_string();
        let raw_params = request.get("params").cloned().unwrap_or(Value::Null);
        self.with(|s| {
            s.calls.push(RpcCall {
                method: method.clone(),
                params: raw_params.clone(),
                id: id.clone(),
                connection,
                at: Instant::now(),
            })
        });
        let outcome = match self.answer(&method, &raw_params) {
            Answer::Checked(r) => r,
            Answer::Unchecked(v) => return Wire::Json(json!({"jsonrpc": "2.0", "id": id, "result": v})),
            Answer::Wire(w) => return w,
        };
        match outcome {
            Ok(result) => {
                if schemas().has_rpc(&method) {
                    if let Err(e) = schemas().check_rpc_response(&method, &result) {
                        self.violation(format!("our own answer is invalid: {e}"));
                    }
                }
                Wire::Json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
            }
            Err(err) => Wire::Json(json!({"jsonrpc": "2.0", "id": id, "error": err.to_json()})),
        }
    }

    pub(super) fn answer(&self, method: &str, raw_params: &Value) -> Answer {
        let known = schemas().has_rpc(method);
        let params = match named_params(method, raw_params) {
            Ok(p) => p,
            Err(e) => {
                if known {
                    self.violation(format!("`{method}` params {raw_params}: {}", e.message));
                }
                return Answer::Checked(Err(e));
            }
        };
        if known {
            if let Err(e) = schemas().check_rpc_request(method, &params) {
                // lightningd's parameter parser would refuse the call.
                self.violation(e.clone());
                return Answer::Checked(Err(JsonRpcError::new(INVALID_PARAMS, e)));
            }
        }
        let (scripted, handler) = {
            let mut s = self.lock();
            let once = s.once.get_mut(method).and_then(VecDeque::pop_front);
            let scripted = once.or_else(|| s.always.get(method).cloned());
            (scripted, s.handlers.get(method).cloned())
        };
        if let Some(answer) = scripted {
            return match answer {
                Scripted::Result(v) => Answer::Checked(Ok(v)),
                Scripted::Error(e) => Answer::Checked(Err(e)),
                Scripted::Unchecked(v) => Answer::Unchecked(v),
                Scripted::Envelope(v) => Answer::Wire(Wire::Json(v)),
                Scripted::Bytes(b) => Answer::Wire(Wire::Bytes(b.into_bytes())),
                Scripted::Hangup => Answer::Wire(Wire::Hangup),
            };
        }
        if let Some(h) = handler {
            return Answer::Checked(h(&params));
        }
        Answer::Checked(self.builtin(method, &params))
    }

    pub(super) fn builtin(&self, method: &str, p: &Value) -> RpcResult {
        let str_param = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
        match method {
            "getinfo" => Ok(self.getinfo()),
            "listpeerchannels" => {
                let s = self.lock();
                let id = str_param("id");
                let scid = str_param("short_channel_id");
                let cid = str_param("channel_id");
                let channels: Vec<Value> = s
                    .channels
                    .iter()
                    .filter(|c| id.as_ref().is_none_or(|i| *i == c.peer_id))
                    .filter(|c| scid.is_none() || c.short_channel_id == scid)
                    .filter(|c| cid.as_ref().is_none_or(|i| *i == c.channel_id))
                    .map(|c| c.to_json(&s.id))
                    .collect();
                Ok(json!({ "channels": channels }))
            }
            "listpeers" => {
                let s = self.lock();
                let id = str_param("id");
                let mut peers: Vec<(String, bool, u32)> = Vec::new();
                for c in &s.channels {
                    match peers.iter_mut().find(|(p, _, _)| *p == c.peer_id) {
                        Some(entry) => entry.2 += 1,
                        None => peers.push((c.peer_id.clone(), c.peer_connected, 1)),
                    }
                }
                let peers: Vec<Value> = peers
                    .into_iter()
                    .filter(|(p, _, _)| id.as_ref().is_none_or(|i| i == p))
                    .map(|(p, connected, n)| {
                        let mut v = json!({"id": p, "connected": connected, "num_channels": n});
                        if connected {
                            v["netaddr"] = json!(["127.0.0.1:9735"]);
                            v["features"] = json!("08a0000a8a5961");
                        }
                        v
                    })
                    .collect();
                Ok(json!({ "peers": peers }))
            }
            "listfunds" => {
                let s = self.lock();
                let channels: Vec<Value> = s
                    .channels
                    .iter()
                    .map(|c| {
                        let mut v = json!({
                            "peer_id": c.peer_id,
                            "our_amount_msat": c.to_us_msat,
                            "amount_msat": c.total_msat,
                            "funding_txid": c.funding_txid,
                            "funding_output": c.funding_outnum,
                            "connected": c.peer_connected,
                            "state": c.state,
                            "channel_id": c.channel_id,
                        });
                        if let Some(scid) = &c.short_channel_id {
                            v["short_channel_id"] = json!(scid);
                        }
                        v
                    })
                    .collect();
                Ok(json!({"outputs": [], "channels": channels}))
            }
            "listchannels" => {
                let s = self.lock();
                let scid = str_param("short_channel_id");
                let src = str_param("source");
                let dst = str_param("destination");
                let channels: Vec<Value> = gossip_view(&s)
                    .iter()
                    .filter(|c| scid.as_ref().is_none_or(|x| *x == c.short_channel_id))
                    .filter(|c| src.as_ref().is_none_or(|x| *x == c.source))
                    .filter(|c| dst.as_ref().is_none_or(|x| *x == c.destination))
                    .map(GossipChannel::to_json)
                    .collect();
                Ok(json!({ "channels": channels }))
            }
            "listnodes" => {
                let s = self.lock();
                let id = str_param("id");
                let nodes: Vec<Value> = s
                    .gossip_nodes
                    .iter()
                    .filter(|n| id.as_ref().is_none_or(|x| *x == n.nodeid))
                    .map(GossipNode::to_json)
                    .collect();
                Ok(json!({ "nodes": nodes }))
            }
            "listforwards" => {
                let s = self.lock();
                let status = str_param("status");
                let in_ch = str_param("in_channel");
                let out_ch = str_param("out_channel");
                let (start, limit) = paging(p);
                let by_updated = str_param("index").as_deref() == Some("updated");
                let forwards: Vec<Value> = s
                    .forwards
                    .iter()
                    .filter(|f| status.as_ref().is_none_or(|x| x == f.status.as_str()))
                    .filter(|f| in_ch.as_ref().is_none_or(|x| *x == f.in_channel))
                    .filter(|f| out_ch.is_none() || f.out_channel == out_ch)
                    .filter(|f| {
                        let idx = if by_updated {
                            f.updated_index.unwrap_or(0)
                        } else {
                            f.created_index
                        };
                        idx >= start
                    })
                    .take(limit)
                    .map(Forward::to_json)
                    .collect();
                Ok(json!({ "forwards": forwards }))
            }
            "listinvoices" => {
                let s = self.lock();
                let label = p.get("label").map(|l| match l {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                let hash = str_param("payment_hash");
                let invstring = str_param("invstring");
                let (start, limit) = paging(p);
                let by_updated = str_param("index").as_deref() == Some("updated");
                let invoices: Vec<Value> = s
                    .invoices
                    .iter()
                    .filter(|i| label.as_ref().is_none_or(|x| *x == i.label))
                    .filter(|i| hash.as_ref().is_none_or(|x| *x == i.payment_hash))
                    .filter(|i| invstring.as_ref().is_none_or(|x| *x == i.bolt11))
                    .filter(|i| {
                        let idx = if by_updated {
                            i.updated_index.unwrap_or(0)
                        } else {
                            i.created_index
                        };
                        idx >= start
                    })
                    .take(limit)
                    .map(Invoice::to_json)
                    .collect();
                Ok(json!({ "invoices": invoices }))
            }
            "setchannel" => self.setchannel(p),
            "sendpay" => self.sendpay(p),
            "waitsendpay" => self.waitsendpay(p),
            "signinvoice" => {
                let (id, network) = {
                    let s = self.lock();
                    (s.id.clone(), s.network.clone())
                };
                let invstring = str_param("invstring").unwrap_or_default();
                sign_invoice(&invstring, &id, &network)
                    .map(|bolt11| json!({ "bolt11": bolt11 }))
                    .map_err(|e| JsonRpcError::new(INVALID_PARAMS, e))
            }
            "feerates" => {
                let s = self.lock();
                let style = str_param("style").unwrap_or_else(|| "perkw".into());
                let mult = if style == "perkb" { 4 } else { 1 };
                let rate = s.feerate_perkw * mult;
                let estimates: Vec<Value> = [2, 6, 12, 100]
                    .iter()
                    .map(|b| json!({"blockcount": b, "feerate": rate, "smoothed_feerate": rate}))
                    .collect();
                let mut out = json!({
                    "onchain_fee_estimates": {
                        "opening_channel_satoshis": 177 * u64::from(s.feerate_perkw) * 4 / 1000,
                        "mutual_close_satoshis": 170 * u64::from(s.feerate_perkw) * 4 / 1000,
                        "unilateral_close_satoshis": 151 * u64::from(s.feerate_perkw) * 4 / 1000,
                        "htlc_timeout_satoshis": 166 * u64::from(s.feerate_perkw) * 4 / 1000,
                        "htlc_success_satoshis": 176 * u64::from(s.feerate_perkw) * 4 / 1000,
                    }
                });
                out[style.as_str()] = json!({
                    "opening": rate,
                    "mutual_close": rate,
                    "unilateral_close": rate,
                    "unilateral_anchor_close": rate,
                    "penalty": rate,
                    "splice": rate,
                    "min_acceptable": 253 * mult,
                    "max_acceptable": rate * 10,
                    "floor": 253 * mult,
                    "estimates": estimates,
                });
                Ok(out)
            }
            "listconfigs" => {
                let configs = self.configs();
                match str_param("config") {
                    None => Ok(json!({ "configs": configs })),
                    Some(name) => match configs.get(&name) {
                        Some(v) => Ok(json!({"configs": { name: v }})),
                        None => Err(JsonRpcError::new(
                            INVALID_PARAMS,
                            format!("Unknown config option {name}"),
                        )),
                    },
                }
            }
            "waitblockheight" => {
                let target = p.get("blockheight").and_then(Value::as_u64).unwrap_or(0);
                let timeout = Duration::from_secs(p.get("timeout").and_then(Value::as_u64).unwrap_or(60));
                let deadline = Instant::now() + timeout;
                let mut guard = self.lock();
                loop {
                    if u64::from(guard.blockheight) >= target {
                        return Ok(json!({"blockheight": guard.blockheight}));
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(JsonRpcError::new(2000, "Timed out."));
                    }
                    guard = self
                        .inner
                        .1
                        .wait_timeout(guard, (deadline - now).min(Duration::from_millis(200)))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
            _ => Err(JsonRpcError::new(
                METHOD_NOT_FOUND,
                format!("Unknown command '{method}'"),
            )),
        }
    }

    pub(super) fn getinfo(&self) -> Value {
        let s = self.lock();
        let mut peers: Vec<&str> = s
            .channels
            .iter()
            .filter(|c| c.peer_connected)
            .map(|c| c.peer_id.as_str())
            .collect();
        peers.sort();
        peers.dedup();
        let pending = s
            .channels
            .iter()
            .filter(|c| {
                matches!(
                    c.state.as_str(),
                    "OPENINGD"
                        | "CHANNELD_AWAITING_LOCKIN"
                        | "DUALOPEND_OPEN_INIT"
                        | "DUALOPEND_AWAITING_LOCKIN"
                )
            })
            .count();
        let active = s.channels.iter().filter(|c| c.state == "CHANNELD_NORMAL").count();
        let fees: u64 = s
            .forwards
            .iter()
            .filter(|f| f.status == ForwardStatus::Settled)
            .filter_map(Forward::fee_msat)
            .sum();
        json!({
            "id": s.id,
            "alias": s.alias,
            "color": s.color,
            "num_peers": peers.len(),
            "num_pending_channels": pending,
            "num_active_channels": active,
            "num_inactive_channels": s.channels.len() - pending - active,
            "address": [],
            "binding": [{"type": "ipv4", "address": "127.0.0.1", "port": 19735}],
            "version": s.version,
            "blockheight": s.blockheight,
            "network": s.network,
            "fees_collected_msat": fees,
            "lightning-dir": s.lightning_dir,
            "our_features": {
                "init": "08a0000a8a5961",
                "node": "88a0000a8a5961",
                "channel": "",
                "invoice": "02000002024100"
            }
        })
    }

    pub(super) fn setchannel(&self, p: &Value) -> RpcResult {
        let id = p
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let feebase = p.get("feebase").map(parse_msat).transpose()?;
        let feeppm = p.get("feeppm").and_then(Value::as_u64);
        let htlcmin = p.get("htlcmin").map(parse_msat).transpose()?;
        let htlcmax = p.get("htlcmax").map(parse_msat).transpose()?;
        let ignore = p.get("ignorefeelimits").and_then(Value::as_bool);
        let mut s = self.lock();
        let mut touched = Vec::new();
        for c in s.channels.iter_mut().filter(|c| c.matches(&id)) {
            // lightningd skips channels that cannot carry updates.
            if !matches!(
                c.state.as_str(),
                "CHANNELD_NORMAL" | "CHANNELD_AWAITING_LOCKIN" | "DUALOPEND_AWAITING_LOCKIN"
            ) {
                continue;
            }
            if let Some(b) = feebase {
                c.fee_base_msat = b;
            }
            if let Some(ppm) = feeppm {
                c.fee_proportional_millionths = ppm as u32;
            }
            if let Some(m) = htlcmin {
                c.htlc_minimum_msat = m;
            }
            if let Some(m) = htlcmax {
                c.htlc_maximum_msat = m.min(c.total_msat);
            }
            if let Some(i) = ignore {
                c.ignore_fee_limits = i;
            }
            let mut v = json!({
                "peer_id": c.peer_id,
                "channel_id": c.channel_id,
                "fee_base_msat": c.fee_base_msat,
                "fee_proportional_millionths": c.fee_proportional_millionths,
                "minimum_htlc_out_msat": c.htlc_minimum_msat,
                "maximum_htlc_out_msat": c.htlc_maximum_msat,
                "ignore_fee_limits": c.ignore_fee_limits,
            });
            if let Some(scid) = &c.short_channel_id {
                v["short_channel_id"] = json!(scid);
            }
            touched.push(v);
        }
        drop(s);
        self.changed();
        if touched.is_empty() && id != "all" {
            return Err(JsonRpcError::new(
                INVALID_PARAMS,
                "Could not find any active channels of peer with that id",
            ));
        }
        Ok(json!({ "channels": touched }))
    }

    pub(super) fn configs(&self) -> Map<String, Value> {
        let s = self.lock();
        let mut c = Map::new();
        let text = |v: &str, src: &str| json!({"value_str": v, "source": src});
        let int = |v: u64, src: &str| json!({"value_int": v, "source": src});
        c.insert("alias".into(), text(&s.alias, "default"));
        c.insert("rgb".into(), text(&s.color, "default"));
        c.insert("network".into(), text(&s.network, "cmdline"));
        c.insert(s.network.clone(), json!({"set": true, "source": "cmdline"}));
        c.insert("lightning-dir".into(), text(&s.lightning_dir, "cmdline"));
        c.insert("rpc-file".into(), text("lightning-rpc", "default"));
        c.insert("fee-base".into(), int(1000, "default"));
        c.insert("fee-per-satoshi".into(), int(10, "default"));
        let source = if s.cltv_delta == 34 { "default" } else { "cmdline" };
        c.insert("cltv-delta".into(), int(u64::from(s.cltv_delta), source));
        c.insert("max-concurrent-htlcs".into(), int(30, "default"));
        c.insert(
            "htlc-minimum-msat".into(),
            json!({"value_msat": 0, "source": "default"}),
        );
        for (k, v) in &s.extra_configs {
            c.insert(k.clone(), v.clone());
        }
        c
    }
}
