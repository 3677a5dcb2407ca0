//! The plugin (through the lightningd harness) and the LND sidecar (against the fake LND)
//! answer the same calls with JSON of the same shape: same keys, same value types, same
//! error codes. Apps written against one work against the other.

mod harness;
mod lnd_fake;
mod sidecar_support;

use harness::{Channel, FakeNode, JsonRpcError, Lightningd};
use lnd_fake::FakeLnd;
use serde_json::{json, Value};
use sidecar_support::*;
use std::collections::BTreeSet;

/// Where two documents differ in shape, as JSON pointers with both sides' kinds. `null`
/// matches any kind (an optional value unset on one side) and an empty array matches any
/// array (nothing to compare).
fn shape_diff(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    match (a, b) {
        (Value::Null, _) | (_, Value::Null) => {}
        (Value::Object(x), Value::Object(y)) => {
            let kx: BTreeSet<&String> = x.keys().collect();
            let ky: BTreeSet<&String> = y.keys().collect();
            for k in kx.symmetric_difference(&ky) {
                let side = if x.contains_key(*k) {
                    "plugin only"
                } else {
                    "sidecar only"
                };
                out.push(format!("{path}/{k}: {side}"));
            }
            for k in kx.intersection(&ky) {
                shape_diff(&format!("{path}/{k}"), &x[*k], &y[*k], out);
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            if let (Some(p), Some(q)) = (x.first(), y.first()) {
                shape_diff(&format!("{path}/0"), p, q, out);
            }
        }
        (Value::Number(_), Value::Number(_))
        | (Value::String(_), Value::String(_))
        | (Value::Bool(_), Value::Bool(_)) => {}
        _ => out.push(format!("{path}: plugin {} vs sidecar {}", kind(a), kind(b))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

#[test]
fn shape_diff_finds_differences() {
    let mut d = Vec::new();
    shape_diff(
        "",
        &json!({"a": 1, "b": [{"c": "x"}]}),
        &json!({"a": "1", "b": [{"d": 1}], "e": null}),
        &mut d,
    );
    assert_eq!(d.len(), 4, "{d:?}");
    let mut d = Vec::new();
    shape_diff(
        "",
        &json!({"a": 1, "b": [], "c": null}),
        &json!({"a": 2.5, "b": [1], "c": "x"}),
        &mut d,
    );
    assert!(d.is_empty(), "{d:?}");
}

/// The same node on both sides: our channels to A (90 % ours), B (10 %), C and D, and
/// A - E - B in the graph.
fn plugin_node() -> FakeNode {
    let node = FakeNode::new();
    for (peer, chan, local_sat) in [
        (A, CHAN_A, 900_000u64),
        (B, CHAN_B, 100_000),
        (C, CHAN_C, 500_000),
        (D, CHAN_D, 500_000),
    ] {
        let mut c = Channel::new(
            &harness::pubkey(peer as usize),
            &scid(chan),
            1_000_000_000,
            local_sat * 1000,
        );
        c.fee_proportional_millionths = 250;
        node.add_public_channel(c);
    }
    let ring = [
        (A, E, (700_100u64 << 40) | (1 << 16)),
        (E, B, (700_110u64 << 40) | (1 << 16)),
    ];
    for (x, y, chan) in ring {
        node.add_network_channel(
            &harness::pubkey(x as usize),
            &harness::pubkey(y as usize),
            &scid(chan),
            2_000_000_000,
            1_000_000_000,
        );
    }
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugin_and_sidecar_answer_in_the_same_shape() {
    let fake = FakeLnd::new("regtest");
    script_network(&fake);
    fake.start(None).await;
    let side = Sidecar::start(&fake, &[]);
    let ld = Lightningd::builder().node(plugin_node()).start();

    // Calls that create something run on both; later calls use what each side created.
    let mut hashes = Vec::new();
    for s in ["plugin", "sidecar"] {
        let params = json!({"amount_msat": 25_000, "description": "same shape", "label": "shape-1"});
        let inv = if s == "plugin" {
            ld.rpc_ok("hodl-invoice", params)
        } else {
            side.ok("hodl-invoice", params)
        };
        hashes.push(inv["payment_hash"].as_str().unwrap().to_string());
    }

    let dest_plugin = harness::pubkey(E as usize);
    let dest_side = lnd_fake::pubkey(E);
    let calls: Vec<(&str, Value, Value)> = vec![
        ("ballast-status", json!({}), json!({})),
        (
            "hodl-lookup",
            json!({"payment_hash": hashes[0]}),
            json!({"payment_hash": hashes[1]}),
        ),
        ("hodl-list", json!({}), json!({})),
        (
            "hodl-list",
            json!({"state": "OPEN", "limit": 1}),
            json!({"state": "OPEN", "limit": 1}),
        ),
        ("hodl-cancel", json!([hashes[0]]), json!([hashes[1]])),
        ("monitor-status", json!({}), json!({})),
        ("monitor-stats", json!({}), json!({})),
        ("monitor-alerts", json!({}), json!({})),
        ("monitor-set", json!({}), json!({})),
        ("fee-preview", json!({}), json!({})),
        ("fee-history", json!({}), json!({})),
        ("fee-policy", json!({}), json!({})),
        ("rebalance-plan", json!({}), json!({})),
        ("rebalance-set", json!({}), json!({})),
        ("rebalance-status", json!({}), json!({})),
        (
            "route-estimate",
            json!({"destination": dest_plugin, "amount_msat": 1_000_000}),
            json!({"destination": dest_side, "amount_msat": 1_000_000}),
        ),
    ];
    let mut diffs = Vec::new();
    for (method, p_params, s_params) in calls {
        let p = ld.rpc_ok(method, p_params);
        let s = side.ok(method, s_params);
        let mut d = Vec::new();
        shape_diff("", &p, &s, &mut d);
        diffs.extend(d.into_iter().map(|d| format!("{method}: {d}")));
    }
    // Errors: same codes for the same mistakes.
    let bad: Vec<(&str, Value)> = vec![
        ("hodl-invoice", json!({"amount_msat": 0})),
        ("hodl-invoice", json!({"bogus": 1})),
        ("hodl-lookup", json!({"payment_hash": "00".repeat(32)})),
        ("hodl-settle", json!({})),
        ("monitor-history", json!({"scid": "1x1x1"})),
        ("fee-apply", json!({"scid": "nonsense"})),
        ("rebalance-execute", json!({"plan_id": "nope"})),
    ];
    for (method, params) in bad {
        let p: JsonRpcError = ld.rpc(method, params.clone()).expect_err(method);
        let s = side.call(method, params).expect_err(method);
        if Some(p.code) != s["code"].as_i64() {
            diffs.push(format!(
                "{method} error: plugin {} vs sidecar {}",
                p.code, s["code"]
            ));
        }
    }
    assert!(diffs.is_empty(), "shapes differ:\n{}", diffs.join("\n"));
    ld.assert_clean();
}
