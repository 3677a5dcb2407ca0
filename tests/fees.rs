//! Fee policy end to end: the real plugin binary, driven by the harness
//! playing lightningd v26.06, with every message schema-checked. The fake
//! node serves `listpeerchannels` from scripted channels and records (and
//! applies) every `setchannel`, which is how these tests see what ballast
//! did to a fee.
//!
//! Timing: ballast applies nothing unforced during the first
//! `ballast-fee-min-interval` after start-up (at least 300 s outside developer mode), and a
//! forward-triggered decision is not even taken before that. Most tests
//! therefore use `fee-apply ... force` or `fee-preview`; the two tests that
//! must see a forward-triggered `setchannel` (the balance-read race) wait
//! out a (shortened, developer-mode) start-up hold and are the slow ones of this file.

mod harness;

use harness::json::{array, string, uint};

use harness::fake_node::now_secs;
use harness::{
    hash_hex, pubkey, Channel, FakeNode, Forward, Htlc, JsonRpcError, Lightningd, LightningdBuilder,
};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Generous: the machine running this is shared and slow.
const WAIT: Duration = Duration::from_secs(30);
/// How long a test watches for a `setchannel` that must not come. With
/// `ballast-fee-coalesce=1` and ballast's 1 s decision tick, an unheld
/// decision would be taken within about 2 s.
const QUIET: Duration = Duration::from_secs(6);
/// The `ballast-fee-min-interval` (and so start-up hold) of the slow tests: long enough
/// to set a test up before the hold ends on a slow machine.
const MIN_INTERVAL: u64 = 20;

const INVALID_PARAMS: i64 = harness::INVALID_PARAMS;
const ERR_UNKNOWN_CHANNEL: i64 = 2006;

const CAPACITY: u64 = 1_000_000_000;
const A: &str = "103x1x0";
const B: &str = "104x1x0";
const C: &str = "105x1x0";
const D: &str = "106x1x0";

/// A straight line from 1000 ppm (empty) to 0 ppm (full) for every
/// channel: the target is `1000 * (1 - local ratio)`, easy to check.
const FOLLOW: &str = r#"# ballast test policy
[defaults]
min_ppm = 0
max_ppm = 1000

[[rule]]
name = "follow-balance"
strategy = { type = "balance", curve = "linear", empty_ppm = 1000, full_ppm = 0 }
"#;

/// [`FOLLOW`] for `scid` only (other channels match no rule and are left alone).
fn follow_only(scid: &str) -> String {
    format!(
        r#"[defaults]
min_ppm = 0
max_ppm = 1000

[[rule]]
name = "follow-balance"
match.scid = ["{scid}"]
strategy = {{ type = "balance", curve = "linear", empty_ppm = 1000, full_ppm = 0 }}
"#
    )
}

// ---------------------------------------------------------------- helpers

fn builder(node: &FakeNode) -> LightningdBuilder {
    // BALLAST_DEVELOPER lets the tests use a start-up hold of seconds instead of CLN's
    // five-minute floor.
    Lightningd::builder()
        .node(node.clone())
        .timeout(WAIT)
        .env("BALLAST_DEVELOPER", "1")
}

/// A node with one normal channel of [`CAPACITY`] per `(scid, local msat)`,
/// each to its own peer, all with CLN's default fee (1000 msat + 10 ppm).
fn node_with(channels: &[(&str, u64)]) -> FakeNode {
    let node = FakeNode::new();
    for (i, (scid, local)) in channels.iter().enumerate() {
        node.add_channel(Channel::new(&pubkey(i + 1), scid, CAPACITY, *local));
    }
    node
}

fn status(ld: &Lightningd) -> Value {
    ld.rpc_ok("ballast-status", json!({}))
}

fn set_toml(ld: &Lightningd, toml: &str) -> Value {
    ld.rpc_ok("fee-policy", json!({ "toml": toml }))
}

/// `fee-preview` of one channel.
fn preview(ld: &Lightningd, scid: &str) -> Value {
    let r = ld.rpc_ok("fee-preview", json!({ "scid": scid }));
    let chans = array(&r, "/channels");
    assert_eq!(chans.len(), 1, "fee-preview {scid}: {r:#}");
    assert_eq!(chans[0]["short_channel_id"], scid, "{r:#}");
    chans[0].clone()
}

/// `fee-apply` of one channel; returns its entry.
fn apply(ld: &Lightningd, scid: &str, force: bool) -> Value {
    let r = ld.rpc_ok("fee-apply", json!({ "scid": scid, "force": force }));
    let chans = array(&r, "/channels");
    assert_eq!(chans.len(), 1, "fee-apply {scid}: {r:#}");
    chans[0].clone()
}

fn history(ld: &Lightningd, params: Value) -> Vec<Value> {
    let r = ld.rpc_ok("fee-history", params);
    array(&r, "/changes").clone()
}

/// Polls `fee-history` of `scid` until it has `n` entries: a decision the
/// plugin took by itself is recorded just after its `setchannel`.
fn wait_history(ld: &Lightningd, scid: &str, n: usize) -> Vec<Value> {
    ld.wait_until(&format!("{n} fee-history entries for {scid}"), WAIT, |ld| {
        let h = history(ld, json!({ "scid": scid }));
        (h.len() == n).then_some(h)
    })
}

/// The plugin's calls to the fake node from `since` up to its first
/// `setchannel`, with their offsets (for failure messages).
fn calls_until_setchannel(node: &FakeNode, since: Instant) -> String {
    let mut out = Vec::new();
    for c in node.calls().into_iter().filter(|c| c.at >= since) {
        let at = c.at.duration_since(since).as_secs_f64();
        out.push(format!("+{at:.3}s {} {}", c.method, c.params));
        if c.method == "setchannel" {
            break;
        }
    }
    out.join("; ")
}

/// `setchannel` calls the plugin made for `scid`.
fn setchannels_for(node: &FakeNode, scid: &str) -> Vec<Value> {
    node.calls_to("setchannel")
        .into_iter()
        .filter(|p| p["id"] == scid)
        .collect()
}

/// The fee the fake node has on `scid`: (base msat, ppm).
fn fee_on(node: &FakeNode, scid: &str) -> (u64, u32) {
    node.with(|s| {
        let c = s
            .channels
            .iter()
            .find(|c| c.short_channel_id.as_deref() == Some(scid))
            .unwrap_or_else(|| panic!("no channel {scid}"));
        (c.fee_base_msat, c.fee_proportional_millionths)
    })
}

fn set_local(node: &FakeNode, scid: &str, to_us_msat: u64) {
    node.with(|s| {
        let c = s
            .channels
            .iter_mut()
            .find(|c| c.short_channel_id.as_deref() == Some(scid))
            .unwrap_or_else(|| panic!("no channel {scid}"));
        c.to_us_msat = to_us_msat;
    });
}

/// A settled `forward_event` payload (valid per the v26.06 schema) for a
/// forward in over `in_scid` and out over `out_scid`.
fn forward_event(in_scid: &str, out_scid: &str, out_msat: u64, payment_hash: &str) -> Value {
    let mut f = Forward::settled(in_scid, out_scid, out_msat + 1_000, out_msat);
    f.payment_hash = payment_hash.to_string();
    f.to_notification()
}

/// Waits until ballast has counted `n` forward events in all.
fn wait_forward_events(ld: &Lightningd, n: u64) -> Value {
    ld.wait_until(&format!("{n} forward events counted"), WAIT, |ld| {
        let s = status(ld);
        (uint(&s, "/counters/forward_events") == n).then_some(s)
    })
}

/// Sends `n` settled forwards out over `out_scid` (in over `in_scid`),
/// `label` making their payment hashes unique.
fn burst(ld: &Lightningd, in_scid: &str, out_scid: &str, n: usize, label: &str) -> Vec<String> {
    (0..n)
        .map(|i| {
            let hash = hash_hex(&format!("{label}:{i}"));
            ld.notify("forward_event", forward_event(in_scid, out_scid, 10_000, &hash));
            hash
        })
        .collect()
}

/// Watches for `period`: the plugin must not call `setchannel` meanwhile.
fn assert_no_setchannel_for(ld: &Lightningd, period: Duration, why: &str) {
    let before = ld.node().calls_to("setchannel");
    let end = Instant::now() + period;
    while Instant::now() < end {
        let now = ld.node().calls_to("setchannel");
        if now.len() != before.len() {
            ld.fail(&format!(
                "{why}: unexpected setchannel {:?}",
                &now[before.len()..]
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_rpc_error(r: Result<Value, JsonRpcError>, code: i64, what: &str) -> JsonRpcError {
    match r {
        Ok(v) => panic!("{what}: expected error {code}, got result {v:#}"),
        Err(e) => {
            assert_eq!(e.code, code, "{what}: wrong error code: {e}");
            assert!(!e.message.is_empty(), "{what}: empty error message");
            e
        }
    }
}

fn assert_contains(haystack: &str, needles: &[&str], what: &str) {
    for n in needles {
        assert!(haystack.contains(n), "{what}: {n:?} not in {haystack:?}");
    }
}

/// Serves `listpeerchannels` itself so that it can play lightningd's race
/// (lightningd/plugins#525): the forward with `hash` still shows as an HTLC
/// on `scid`, with the old balance, for `stale_reads` reads from unix time
/// `from` on; the read after that finds it settled and the balance at
/// `to_us_after`. Before `from` the HTLC simply stays: other parts of
/// ballast (the balance monitor reads every minute and after events) must
/// not use up the stale reads meant for the fee decision that becomes due
/// at `from`. Returns how many reads from `from` on saw the HTLC.
fn settle_after_reads(
    node: &FakeNode,
    scid: &str,
    hash: &str,
    from: u64,
    stale_reads: usize,
    to_us_after: u64,
) -> Arc<AtomicUsize> {
    let seen = Arc::new(AtomicUsize::new(0));
    let (n, scid, hash, counter) = (node.clone(), scid.to_string(), hash.to_string(), seen.clone());
    node.set_handler("listpeerchannels", move |p| {
        let want = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
        let (id, only, cid) = (want("id"), want("short_channel_id"), want("channel_id"));
        // A second early: ballast's clock and ours are the same, but not
        // read at the same instant.
        let racing = now_secs() + 1 >= from;
        n.with(|s| {
            if let Some(c) = s
                .channels
                .iter_mut()
                .find(|c| c.short_channel_id.as_deref() == Some(scid.as_str()))
            {
                if racing && c.htlcs.iter().any(|h| h.payment_hash == hash) {
                    if counter.load(Ordering::SeqCst) >= stale_reads {
                        c.htlcs.retain(|h| h.payment_hash != hash);
                        c.to_us_msat = to_us_after;
                    } else {
                        counter.fetch_add(1, Ordering::SeqCst);
                    }
                }
            }
            let channels: Vec<Value> = s
                .channels
                .iter()
                .filter(|c| id.as_ref().is_none_or(|i| *i == c.peer_id))
                .filter(|c| only.is_none() || c.short_channel_id == only)
                .filter(|c| cid.as_ref().is_none_or(|i| *i == c.channel_id))
                .map(|c| c.to_json(&s.id))
                .collect();
            Ok(json!({ "channels": channels }))
        })
    });
    seen
}

/// The `Instant` at which unix time `t` comes (up to a second early).
fn instant_at(t: u64) -> Instant {
    Instant::now() + Duration::from_secs(t.saturating_sub(now_secs()))
}

fn add_htlc(node: &FakeNode, scid: &str, htlc: Htlc) {
    node.with(|s| {
        s.channels
            .iter_mut()
            .find(|c| c.short_channel_id.as_deref() == Some(scid))
            .unwrap_or_else(|| panic!("no channel {scid}"))
            .htlcs
            .push(htlc)
    });
}

// ------------------------------------------------------------ the policy

#[test]
fn policy_file_is_loaded_and_a_broken_one_keeps_the_stored_policy() {
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("regtest");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("fees.toml");
    std::fs::write(&file, FOLLOW).unwrap();
    let node = node_with(&[(A, 250_000_000)]);
    // A relative path is taken from the lightning-dir, like the store's.
    let start = || {
        builder(&node)
            .base_dir(base.path())
            .option("ballast-fee-policy-file", "fees.toml")
            .start()
    };

    let (loaded, source) = {
        let mut ld = start();
        let shown = ld.rpc_ok("fee-policy", json!({}));
        let source = format!("file {}", ld.lightning_dir().join("fees.toml").display());
        assert_eq!(shown["source"], source, "{shown:#}");
        let rules = array(&shown, "/policy/rules");
        assert_eq!(rules.len(), 1, "{shown:#}");
        assert_eq!(rules[0]["name"], "follow-balance");
        assert_eq!(rules[0]["strategy"]["type"], "balance");
        // Bounds come from [defaults].
        assert_eq!(
            (rules[0]["min_ppm"].clone(), rules[0]["max_ppm"].clone()),
            (json!(0), json!(1000))
        );
        assert_eq!(status(&ld)["fees"]["policy_source"], source);
        let p = preview(&ld, A);
        assert_eq!(p["rule"]["name"], "follow-balance", "{p:#}");
        assert_eq!(p["target"]["ppm"], 750, "{p:#}");
        assert!(ld.logs().iter().all(|l| l.level != "warn"), "{:?}", ld.logs());
        ld.stop(WAIT);
        (shown["policy"].clone(), source)
    };

    // The unknown strategy sits on line 8, in rule[0].
    let broken = FOLLOW.replace("type = \"balance\"", "type = \"blance\"");
    assert_eq!(broken.lines().nth(7).map(|l| l.contains("blance")), Some(true));
    std::fs::write(&file, &broken).unwrap();
    let ld = start();
    let warning = ld.wait_for_log("keeping the previous policy", WAIT);
    assert_eq!(warning.level, "warn", "{warning}");
    assert_contains(
        &warning.message,
        &["fees.toml", "line 8", "blance", "rule[0] 'follow-balance'"],
        "policy file warning",
    );
    let shown = ld.rpc_ok("fee-policy", json!({}));
    assert_eq!(shown["policy"], loaded, "the stored policy must stay in force");
    assert_eq!(shown["source"], source, "{shown:#}");
    let p = preview(&ld, A);
    assert_eq!(p["rule"]["name"], "follow-balance", "{p:#}");
    assert_eq!(p["target"]["ppm"], 750, "{p:#}");
}

#[test]
fn fee_policy_is_set_by_json_and_toml_and_a_bad_one_changes_nothing() {
    let base = tempfile::tempdir().unwrap();
    let node = node_with(&[(A, 250_000_000)]);
    let mut ld = builder(&node).base_dir(base.path()).start();

    // Out of the box: the built-in policy, following the balance.
    let shown = ld.rpc_ok("fee-policy", json!({}));
    assert_eq!(shown["source"], "default", "{shown:#}");
    assert_eq!(array(&shown, "/policy/rules").len(), 1, "{shown:#}");
    assert_eq!(status(&ld)["fees"]["policy_source"], "default");
    let p = preview(&ld, A);
    assert_eq!(p["rule"]["name"], "builtin-balance", "{p:#}");
    // A quarter full: well above the 10 ppm of a full channel, below the 1000 of an empty one.
    let ppm = p["target"]["ppm"].as_u64().unwrap();
    assert!((200..=500).contains(&ppm), "{p:#}");
    // ...and not before the start-up hold is over.
    assert_eq!(p["would_apply_now"], false, "{p:#}");

    // JSON, as an object.
    let flat = json!({
        "defaults": {"min_ppm": 0, "max_ppm": 1000},
        "rules": [{"name": "flat", "strategy": {"type": "static", "ppm": 321}}]
    });
    let shown = ld.rpc_ok("fee-policy", json!({ "policy": flat }));
    assert_eq!(shown["source"], "rpc (json)", "{shown:#}");
    assert_eq!(shown["policy"]["rules"][0]["name"], "flat", "{shown:#}");
    assert_eq!(shown["policy"]["rules"][0]["max_ppm"], 1000, "{shown:#}");
    assert_eq!(ld.rpc_ok("fee-policy", json!({})), shown);
    let p = preview(&ld, A);
    assert_eq!(
        (p["rule"]["name"].clone(), p["target"]["ppm"].clone()),
        (json!("flat"), json!(321)),
        "{p:#}"
    );

    // JSON as text, which is what lightning-cli sends for a positional argument.
    let text = r#"{"rules": [{"name": "flat-text", "min_ppm": 5, "max_ppm": 500,
                   "strategy": {"type": "static", "ppm": 123}}]}"#;
    let shown = ld.rpc_ok("fee-policy", json!([text]));
    assert_eq!(shown["source"], "rpc (json)", "{shown:#}");
    assert_eq!(preview(&ld, A)["target"]["ppm"], 123);

    // TOML.
    let shown = set_toml(&ld, FOLLOW);
    assert_eq!(shown["source"], "rpc (toml)", "{shown:#}");
    assert_eq!(shown["policy"]["rules"][0]["name"], "follow-balance", "{shown:#}");
    let p = preview(&ld, A);
    assert_eq!(p["rule"]["name"], "follow-balance", "{p:#}");
    assert_eq!(p["target"]["ppm"], 750, "{p:#}");
    let in_force = ld.rpc_ok("fee-policy", json!({}));

    // Bad ones: each refused with the line and/or rule, nothing changes.
    let two_rules = |second: &str| {
        format!(
            "[defaults]\nmin_ppm = 0\nmax_ppm = 1000\n\n[[rule]]\nname = \"first\"\n\
             match.local_ratio = {{ max = 0.1 }}\nstrategy = {{ type = \"static\", ppm = 10 }}\n\n\
             [[rule]]\nname = \"second\"\n{second}\n"
        )
    };
    let files = ld.lightning_dir().join("ballast-files");
    std::fs::create_dir_all(&files).unwrap();
    let broken_file = files.join("broken.toml");
    let outside = base.path().join("outside.toml");
    std::fs::write(&outside, FOLLOW).unwrap();
    std::fs::write(
        &broken_file,
        FOLLOW.replace("curve = \"linear\"", "curve = \"wiggly\""),
    )
    .unwrap();
    let cases: Vec<(&str, Value, Vec<&str>)> = vec![
        (
            "toml: unknown strategy in rule[1] on line 12",
            json!({ "toml": two_rules("strategy = { type = \"blance\" }") }),
            vec!["line 12", "rule[1] 'second'", "blance"],
        ),
        (
            "toml: min_ppm above max_ppm in rule[1] (starting on line 10)",
            json!({ "toml": two_rules("min_ppm = 900\nmax_ppm = 100\nstrategy = { type = \"static\", ppm = 1 }") }),
            vec!["line 10", "rule[1] 'second'", "min_ppm"],
        ),
        (
            "toml: a field the strategy does not take, on line 12",
            json!({ "toml": two_rules("strategy = { type = \"static\", ppm = 1, curve = \"linear\" }") }),
            vec!["line 12", "rule[1] 'second'", "curve"],
        ),
        (
            "toml: syntax error on line 3",
            json!({ "toml": "[defaults]\nmin_ppm = 0\nmax_ppm = = 1000\n" }),
            vec!["line 3"],
        ),
        (
            "toml: local_ratio bound outside 0..1 in rule[1]",
            json!({ "toml": two_rules("match.local_ratio = { min = 1.5 }\nstrategy = { type = \"static\", ppm = 1 }") }),
            vec!["rule[1] 'second'", "local_ratio"],
        ),
        (
            "json: min_ppm above max_ppm in rule[0]",
            json!({ "policy": {"rules": [{"name": "inverted", "min_ppm": 900, "max_ppm": 100,
                                          "strategy": {"type": "static", "ppm": 1}}]} }),
            vec!["rule[0] 'inverted'", "min_ppm"],
        ),
        (
            "json: no max_ppm anywhere for rule[1]",
            json!({ "policy": {"rules": [
                {"name": "ok", "min_ppm": 0, "max_ppm": 9, "strategy": {"type": "static", "ppm": 1}},
                {"name": "unbounded", "min_ppm": 0, "strategy": {"type": "static", "ppm": 1}}]} }),
            vec!["rule[1] 'unbounded'", "max_ppm"],
        ),
        (
            "json: two rules with one name",
            json!({ "policy": {"defaults": {"min_ppm": 0, "max_ppm": 9}, "rules": [
                {"name": "twin", "strategy": {"type": "static", "ppm": 1}},
                {"name": "twin", "strategy": {"type": "static", "ppm": 2}}]} }),
            vec!["rule[1] 'twin'"],
        ),
        (
            "json text: syntax error on line 2",
            json!({ "policy": "{\"rules\":\n [,]}" }),
            vec!["line 2"],
        ),
        (
            "file: unknown curve on line 8",
            json!({ "file": "broken.toml" }),
            vec!["line 8", "rule[0] 'follow-balance'", "wiggly", "broken.toml"],
        ),
        (
            "file: does not exist",
            json!({ "file": "missing.toml" }),
            vec!["missing.toml"],
        ),
        (
            "file: outside ballast-files-dir, by absolute path",
            json!({ "file": outside.to_str().unwrap() }),
            vec!["absolute", "ballast-files"],
        ),
        (
            "file: outside ballast-files-dir, by ..",
            json!({ "file": "../../outside.toml" }),
            vec!["leaves", "ballast-files"],
        ),
    ];
    for (what, params, needles) in cases {
        let e = assert_rpc_error(ld.rpc("fee-policy", params.clone()), INVALID_PARAMS, what);
        assert_contains(&e.message, &needles, what);
        assert_eq!(
            ld.rpc_ok("fee-policy", json!({})),
            in_force,
            "{what}: the policy changed"
        );
    }
    assert_eq!(preview(&ld, A)["rule"]["name"], "follow-balance");

    // Persisted: a restart keeps the policy set by RPC.
    ld.stop(WAIT);
    drop(ld);
    let ld = builder(&node).base_dir(base.path()).start();
    assert_eq!(ld.rpc_ok("fee-policy", json!({})), in_force);
    assert!(ld.node().calls_to("setchannel").is_empty());
}

/// A JSON policy with a wrong strategy inside a rule: the error should say
/// which rule, as it does for TOML.
#[test]
fn json_policy_errors_inside_a_rule_name_the_rule() {
    let ld = builder(&node_with(&[(A, 250_000_000)])).start();
    let policy = json!({"rules": [
        {"name": "fine", "min_ppm": 0, "max_ppm": 9, "strategy": {"type": "static", "ppm": 1}},
        {"name": "typo", "min_ppm": 0, "max_ppm": 9, "strategy": {"type": "blance"}}]});
    let e = assert_rpc_error(
        ld.rpc("fee-policy", json!({ "policy": policy })),
        INVALID_PARAMS,
        "unknown strategy in a JSON policy",
    );
    assert_contains(&e.message, &["blance"], "json policy error");
    assert!(
        e.message.contains("rule[1]") || e.message.contains("typo"),
        "the error does not say which rule is wrong: {:?}",
        e.message
    );
    // As text (lightning-cli), the position in the text is known too.
    let text = serde_json::to_string_pretty(&policy).unwrap();
    let line = text.lines().position(|l| l.contains("blance")).unwrap() + 1;
    let e = assert_rpc_error(
        ld.rpc("fee-policy", json!({ "policy": text })),
        INVALID_PARAMS,
        "unknown strategy in a JSON policy text",
    );
    assert!(
        e.message.contains(&format!("line {line}")) || e.message.contains("rule[1]"),
        "neither line {line} nor the rule is named: {:?}",
        e.message
    );
    assert_eq!(ld.rpc_ok("fee-policy", json!({}))["source"], "default");
}

#[test]
fn the_built_in_policy_can_be_turned_off_and_brought_back() {
    let node = node_with(&[(A, 250_000_000)]);
    let ld = builder(&node).option("ballast-fee-policy-file", "off").start();
    let shown = ld.rpc_ok("fee-policy", json!({}));
    assert!(shown["source"].as_str().unwrap().starts_with("off"), "{shown:#}");
    assert!(array(&shown, "/policy/rules").is_empty(), "{shown:#}");
    let p = preview(&ld, A);
    assert_eq!(p["status"]["kind"], "no_rule", "{p:#}");
    assert_eq!(p["target"], p["current"], "{p:#}");
    let shown = ld.rpc_ok("fee-policy", json!({"policy": "default"}));
    assert_eq!(shown["source"], "default", "{shown:#}");
    assert_eq!(preview(&ld, A)["rule"]["name"], "builtin-balance");
}

#[test]
fn rule_order_first_match_wins() {
    // Ratios 0.3, 0.5 (on both rules' shared bound) and 0.8.
    let node = node_with(&[(A, 300_000_000), (B, 500_000_000), (C, 800_000_000)]);
    let ld = builder(&node).start();
    let rules = |order: &[&str]| {
        let mut s = String::from("[defaults]\nmin_ppm = 0\nmax_ppm = 5000\n");
        for name in order {
            s.push_str(match *name {
                "low" => {
                    "\n[[rule]]\nname = \"low\"\nmatch.local_ratio = { max = 0.5 }\n\
                          strategy = { type = \"static\", ppm = 111 }\n"
                }
                "high" => {
                    "\n[[rule]]\nname = \"high\"\nmatch.local_ratio = { min = 0.5 }\n\
                           strategy = { type = \"static\", ppm = 222 }\n"
                }
                _ => "\n[[rule]]\nname = \"rest\"\nstrategy = { type = \"static\", ppm = 333 }\n",
            });
        }
        s
    };
    let check = |expect: &[(&str, usize, &str, u64)]| {
        for (scid, index, name, ppm) in expect {
            let p = preview(&ld, scid);
            assert_eq!(p["rule"], json!({"index": index, "name": name}), "{scid}: {p:#}");
            assert_eq!(p["target"]["ppm"], *ppm, "{scid}: {p:#}");
            let expl = string(&p, "/explanation");
            assert!(
                expl.starts_with(&format!("rule[{index}] '{name}'")),
                "{scid}: {expl}"
            );
        }
    };

    set_toml(&ld, &rules(&["low", "high", "rest"]));
    check(&[(A, 0, "low", 111), (B, 0, "low", 111), (C, 1, "high", 222)]);
    set_toml(&ld, &rules(&["high", "low", "rest"]));
    check(&[(A, 1, "low", 111), (B, 0, "high", 222), (C, 0, "high", 222)]);
    set_toml(&ld, &rules(&["rest", "low", "high"]));
    check(&[(A, 0, "rest", 333), (B, 0, "rest", 333), (C, 0, "rest", 333)]);

    // What is applied is what the first match asked for.
    set_toml(&ld, &rules(&["high", "low", "rest"]));
    let r = ld.rpc_ok("fee-apply", json!({"force": true}));
    assert_eq!(array(&r, "/channels").len(), 3, "{r:#}");
    for (scid, ppm) in [(A, 111), (B, 222), (C, 222)] {
        let calls = setchannels_for(&node, scid);
        assert_eq!(calls.len(), 1, "{scid}: {calls:?}");
        assert_eq!(calls[0]["feeppm"], ppm, "{scid}: {calls:?}");
        assert_eq!(fee_on(&node, scid).1, ppm as u32);
    }
}

#[test]
fn bounds_hold_under_extreme_ratios() {
    // Empty and full channels under two strategies whose raw answers
    // overshoot the rule's bounds on both sides.
    let node = node_with(&[(A, 0), (B, CAPACITY), (C, 0), (D, CAPACITY)]);
    let ld = builder(&node).start();
    set_toml(
        &ld,
        &format!(
            r#"[[rule]]
name = "steep"
match.scid = ["{A}", "{B}"]
min_ppm = 50
max_ppm = 2000
strategy = {{ type = "balance", curve = "linear", empty_ppm = 5000, full_ppm = 0 }}

[[rule]]
name = "peer-steep"
match.scid = ["{C}", "{D}"]
min_ppm = 100
max_ppm = 1500
strategy = {{ type = "peer", ppm = 500, balance_weight = 3.0, reference_channels = 1 }}
"#
        ),
    );
    // Each peer has one channel, ours (the graph always holds our own channels), so with
    // reference_channels = 1 connectivity is neutral and only the balance factor counts.
    // (scid, ratio, raw strategy ppm, bounded target, explanation clause)
    let expect = [
        (A, 0.0, 5000, 2000, "clamped to max 2000 ppm"),
        (B, 1.0, 0, 50, "raised to min 50 ppm"),
        (C, 0.0, 4000, 1500, "clamped to max 1500 ppm"),
        (D, 1.0, 63, 100, "raised to min 100 ppm"),
    ];
    for (scid, ratio, raw, target, clause) in expect {
        let p = preview(&ld, scid);
        assert_eq!(p["local_ratio"], json!(ratio), "{scid}: {p:#}");
        assert_eq!(p["strategy_ppm"], raw, "{scid}: {p:#}");
        assert_eq!(p["target"]["ppm"], target, "{scid}: {p:#}");
        assert_contains(string(&p, "/explanation"), &[clause], scid);
    }
    ld.rpc_ok("fee-apply", json!({"force": true}));
    for (scid, _, _, target, _) in expect {
        let calls = setchannels_for(&node, scid);
        assert_eq!(calls.len(), 1, "{scid}: {calls:?}");
        assert_eq!(calls[0]["feeppm"], target, "{scid}: {calls:?}");
        assert_eq!(fee_on(&node, scid).1, target as u32, "{scid}");
    }
}

// ----------------------------------------------------- forwards and timing

#[test]
fn forward_burst_is_held_at_start_up_then_forced_once_then_rate_limited() {
    // A is drained (ratio 0.2 → 800 ppm); forwards come in over B, which no
    // rule manages.
    let node = node_with(&[(A, 200_000_000), (B, 500_000_000)]);
    let started = now_secs();
    let ld = builder(&node).option("ballast-fee-coalesce", 1).start();
    set_toml(&ld, &follow_only(A));

    let p = preview(&ld, A);
    assert_eq!(p["target"]["ppm"], 800, "{p:#}");
    assert_eq!(p["would_apply_now"], false, "{p:#}");
    assert_eq!(p["status"]["kind"], "startup_hold", "{p:#}");
    // Default min-interval: one hour after start-up.
    let hold_until = uint(&p, "/not_before");
    assert_eq!(uint(&p, "/status/until"), hold_until, "{p:#}");
    assert!(
        (started + 3_600..=now_secs() + 3_600).contains(&hold_until),
        "hold until {hold_until}, started {started}: {p:#}"
    );

    burst(&ld, B, A, 1_000, "first");
    let s = wait_forward_events(&ld, 1_000);
    // One decision per channel, however many forwards.
    assert_eq!(s["fees"]["pending_decisions"], 2, "{s:#}");
    assert_no_setchannel_for(&ld, QUIET, "a burst during the start-up hold");
    assert_eq!(fee_on(&node, A), (1000, 10));

    // Not forced: still held.
    let r = apply(&ld, A, false);
    assert_eq!(r["applied"], false, "{r:#}");
    assert!(r["change"].is_null(), "{r:#}");
    assert!(node.calls_to("setchannel").is_empty());

    // Forced: applied once, now.
    let r = apply(&ld, A, true);
    assert_eq!(r["applied"], true, "{r:#}");
    assert_eq!(r["change"]["trigger"], "manual", "{r:#}");
    let applied_at = uint(&r, "/change/time");
    let calls = node.calls_to("setchannel");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["id"], A);
    assert_eq!(calls[0]["feeppm"], 800);
    assert_eq!(fee_on(&node, A).1, 800);

    // The channel drains further (target 950) and another burst comes.
    set_local(&node, A, 50_000_000);
    burst(&ld, B, A, 1_000, "second");
    wait_forward_events(&ld, 2_000);
    assert_no_setchannel_for(&ld, QUIET, "a burst right after a fee update");
    assert_eq!(node.calls_to("setchannel").len(), 1);
    assert_eq!(apply(&ld, A, false)["applied"], false);
    assert_eq!(node.calls_to("setchannel").len(), 1);

    let p = preview(&ld, A);
    assert_eq!(p["target"]["ppm"], 950, "{p:#}");
    assert_eq!(p["would_apply_now"], false, "{p:#}");
    assert!(
        matches!(
            p["status"]["kind"].as_str(),
            Some("startup_hold" | "rate_limited")
        ),
        "{p:#}"
    );
    // "When" must be when the change may really be applied: an hour after
    // the last update, which is later than the end of the start-up hold.
    assert!(
        applied_at > hold_until - 3_600,
        "the test needs the apply to be after start-up"
    );
    let not_before = uint(&p, "/not_before");
    assert!(
        not_before >= applied_at + 3_600,
        "fee-preview says not_before {not_before}, but the last update was at {applied_at} and \
         the min-interval is 3600 s (start-up hold ends {hold_until}): {p:#}"
    );
}

/// lightningd/plugins#525: the forward event can arrive while
/// `listpeerchannels` still shows the HTLC and the old balance. Waits out
/// the start-up hold (this is one of the two slow tests).
#[test]
fn forward_decision_waits_for_the_settled_balance() {
    let node = node_with(&[(A, 500_000_000), (B, 500_000_000)]);
    let ld = builder(&node)
        .option("ballast-fee-min-interval", MIN_INTERVAL as i64)
        .option("ballast-fee-coalesce", 1)
        .start();
    set_toml(&ld, &follow_only(A));
    let p = preview(&ld, A);
    assert_eq!(p["status"]["kind"], "startup_hold", "{p:#}");
    assert_eq!(p["target"]["ppm"], 500, "{p:#}");
    let hold_until = uint(&p, "/not_before");
    let gate = instant_at(hold_until - 1);

    // 300 000 sat left over A: the balance will go from 0.5 to 0.2 (800 ppm),
    // but listpeerchannels shows the HTLC and 0.5 for two more reads.
    let hash = hash_hex("the racing forward");
    add_htlc(&node, A, Htlc::outgoing(0, 300_000_000, 300, &hash));
    let stale_reads = settle_after_reads(&node, A, &hash, hold_until, 2, 200_000_000);
    ld.notify("forward_event", forward_event(B, A, 300_000_000, &hash));
    wait_forward_events(&ld, 1);

    let timeout = Duration::from_secs(hold_until.saturating_sub(now_secs()) + 120);
    let calls = node.wait_for_calls("setchannel", 1, timeout);
    assert!(
        now_secs() + 1 >= hold_until,
        "setchannel before the start-up hold ended"
    );
    let trace = calls_until_setchannel(&node, gate);
    assert_eq!(calls[0].params["id"], A, "{:?}", calls[0].params);
    assert_eq!(
        calls[0].params["feeppm"], 800,
        "decided on the balance before the forward (500 ppm = ratio 0.5) instead of after \
         (800 ppm = 0.2); calls from the hold's end: {trace}"
    );
    // Both stale reads came from the hold's end on, when the decision was
    // taken; at most one of them can be the balance monitor's.
    assert_eq!(
        stale_reads.load(Ordering::SeqCst),
        2,
        "calls from the hold's end: {trace}"
    );
    let h = wait_history(&ld, A, 1);
    assert_eq!(h[0]["trigger"], "forward", "{:#}", h[0]);
    assert_eq!(h[0]["new"]["ppm"], 800, "{:#}", h[0]);
    assert_contains(string(&h[0], "/explanation"), &["local ratio 0.20"], "history");
    let log = ld.wait_for_log(&format!("fee {A}:"), WAIT);
    assert_contains(&log.message, &["local ratio 0.20", "800 ppm"], "decision log");
    assert_no_setchannel_for(&ld, QUIET, "after the one forward-triggered update");
    assert_eq!(node.calls_to("setchannel").len(), 1);
}

/// A burst of 1,000 forwards over one channel, the last of which is still
/// in flight when the decision reads the balance: after the start-up hold,
/// exactly one `setchannel`, on the balance after the whole burst, and none
/// for a second burst right after. Waits out the start-up hold (the
/// other slow test).
#[test]
fn forward_burst_sets_the_fee_once_from_the_balance_after_the_burst() {
    let node = node_with(&[(A, 500_000_000), (B, 500_000_000)]);
    let ld = builder(&node)
        .option("ballast-fee-min-interval", MIN_INTERVAL as i64)
        .option("ballast-fee-coalesce", 1)
        .start();
    set_toml(&ld, &follow_only(A));
    let hold_until = uint(&preview(&ld, A), "/not_before");
    let gate = instant_at(hold_until - 1);

    // The fake node counts the first 999 small forwards as already in the
    // balance; the last, large one is still an HTLC for two reads.
    let last = hash_hex("the last forward of the burst");
    add_htlc(&node, A, Htlc::outgoing(0, 300_000_000, 300, &last));
    settle_after_reads(&node, A, &last, hold_until, 2, 200_000_000);
    burst(&ld, B, A, 999, "burst");
    ld.notify("forward_event", forward_event(B, A, 300_000_000, &last));
    let s = wait_forward_events(&ld, 1_000);
    // One decision per channel (A out, B in), however many forwards.
    assert_eq!(s["fees"]["pending_decisions"], 2, "{s:#}");
    assert_no_setchannel_for(&ld, QUIET, "a burst during the start-up hold");

    let timeout = Duration::from_secs(hold_until.saturating_sub(now_secs()) + 120);
    node.wait_for_calls("setchannel", 1, timeout);
    assert!(
        now_secs() + 1 >= hold_until,
        "setchannel before the start-up hold ended"
    );
    let trace = calls_until_setchannel(&node, gate);
    let h = wait_history(&ld, A, 1);
    assert_eq!(h[0]["trigger"], "forward", "{:#}", h[0]);

    // Another burst right after the update: rate-limited, nothing sent.
    burst(&ld, B, A, 1_000, "again");
    wait_forward_events(&ld, 2_000);
    assert_no_setchannel_for(&ld, QUIET, "a burst right after a fee update");
    let calls = node.calls_to("setchannel");
    assert_eq!(calls.len(), 1, "one burst, one update per interval: {calls:?}");

    assert_eq!(
        calls[0]["feeppm"], 800,
        "the decision did not wait for the burst's last forward to settle (500 ppm = the balance \
         before it, 800 ppm = after); calls from the hold's end: {trace}; \
         history: {:#}",
        h[0]
    );
}

// --------------------------------------------------- dry run and history

#[test]
fn dry_run_records_history_but_calls_no_setchannel() {
    let node = node_with(&[(A, 250_000_000)]);
    let ld = builder(&node).option("ballast-fee-dry-run", true).start();
    assert_eq!(set_toml(&ld, FOLLOW)["dry_run"], true);
    assert_eq!(status(&ld)["fees"]["dry_run"], true);
    let r = ld.rpc_ok("fee-preview", json!({}));
    assert_eq!(r["dry_run"], true, "{r:#}");

    let r = apply(&ld, A, true);
    assert_eq!(r["applied"], false, "{r:#}");
    assert_eq!(r["status"]["kind"], "dry_run", "{r:#}");
    assert_eq!(r["change"]["dry_run"], true, "{r:#}");
    assert_eq!(r["change"]["new"]["ppm"], 750, "{r:#}");
    ld.wait_for_log("fee (dry-run)", WAIT);
    assert_no_setchannel_for(&ld, Duration::from_secs(2), "dry-run");
    assert_eq!(fee_on(&node, A), (1000, 10), "dry-run changed the fee");

    let h = history(&ld, json!({}));
    assert_eq!(h.len(), 1, "{h:#?}");
    assert_eq!(h[0]["dry_run"], true, "{:#}", h[0]);
    assert_eq!(h[0]["trigger"], "manual", "{:#}", h[0]);
    assert_eq!(h[0]["old"]["ppm"], 10, "{:#}", h[0]);
    assert_eq!(h[0]["new"]["ppm"], 750, "{:#}", h[0]);
    assert_eq!(h[0]["rule"]["name"], "follow-balance", "{:#}", h[0]);
    // The fee did not move, so the preview still wants it.
    assert_eq!(preview(&ld, A)["current"]["ppm"], 10);
    assert!(ld.node().calls_to("setchannel").is_empty());
}

#[test]
fn dry_run_decisions_are_rate_limited_like_applied_ones() {
    // Dry run is where operators start: its history must not grow by one entry per forward.
    let node = node_with(&[(A, 250_000_000), (B, 500_000_000)]);
    let ld = builder(&node)
        .option("ballast-fee-dry-run", true)
        .option("ballast-fee-min-interval", 8)
        .option("ballast-fee-coalesce", 1)
        .start();
    set_toml(&ld, &follow_only(A));
    // Past the start-up hold, one dry-run change...
    std::thread::sleep(Duration::from_millis(8_500));
    burst(&ld, B, A, 1, "first");
    ld.wait_until("the first dry-run change", WAIT, |ld| {
        (history(ld, json!({})).len() == 1).then_some(())
    });
    // ...then forwards within the min-interval would not have applied again, so they are
    // not recorded again either.
    burst(&ld, B, A, 20, "more");
    wait_forward_events(&ld, 21);
    std::thread::sleep(Duration::from_millis(2_500));
    let h = history(&ld, json!({}));
    assert_eq!(h.len(), 1, "{h:#?}");
    assert_eq!(h[0]["dry_run"], true);
    assert_eq!(preview(&ld, A)["status"]["kind"], "rate_limited");
    assert!(ld.node().calls_to("setchannel").is_empty());
}

#[test]
fn history_explains_each_change() {
    let base = tempfile::tempdir().unwrap();
    let node = node_with(&[(A, 250_000_000), (B, 500_000_000)]);
    let mut ld = builder(&node).base_dir(base.path()).start();
    // A base fee in the rule: it is applied with the ppm.
    set_toml(
        &ld,
        &follow_only(A).replace("max_ppm = 1000\n", "max_ppm = 1000\nbase_msat = 500\n"),
    );

    let before = now_secs();
    let r = apply(&ld, A, true);
    assert_eq!(r["applied"], true, "{r:#}");
    let calls = node.calls_to("setchannel");
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0]["id"], A);
    assert_eq!(calls[0]["feeppm"], 750);
    assert_eq!(calls[0]["feebase"], 500);
    assert_eq!(fee_on(&node, A), (500, 750));

    let h = history(&ld, json!({}));
    assert_eq!(h.len(), 1, "{h:#?}");
    let c = &h[0];
    assert_eq!(c["scid"], A, "{c:#}");
    assert!((before..=now_secs()).contains(&uint(c, "/time")), "{c:#}");
    assert_eq!(c["old"], json!({"base_msat": 1000, "ppm": 10}), "{c:#}");
    assert_eq!(c["new"], json!({"base_msat": 500, "ppm": 750}), "{c:#}");
    assert_eq!(c["trigger"], "manual", "{c:#}");
    assert_eq!(c["rule"], json!({"index": 0, "name": "follow-balance"}), "{c:#}");
    assert_eq!(c["dry_run"], false, "{c:#}");
    assert_contains(
        string(c, "/explanation"),
        &[
            "rule[0] 'follow-balance'",
            "local ratio 0.25",
            "750 ppm",
            "current 1000 msat + 10 ppm",
        ],
        "explanation",
    );
    let log = ld.wait_for_log(&format!("fee {A}:"), WAIT);
    assert_contains(&log.message, &["local ratio 0.25"], "decision log");

    // The balance moves (0.6 → 400 ppm); forced again: newest first.
    set_local(&node, A, 600_000_000);
    apply(&ld, A, true);
    assert_eq!(fee_on(&node, A), (500, 400));
    let h = history(&ld, json!({ "scid": A }));
    assert_eq!(h.len(), 2, "{h:#?}");
    assert_eq!(h[0]["new"]["ppm"], 400, "{h:#?}");
    assert_eq!(h[0]["old"], json!({"base_msat": 500, "ppm": 750}), "{h:#?}");
    assert_contains(
        string(&h[0], "/explanation"),
        &["local ratio 0.60"],
        "second explanation",
    );
    assert_eq!(h[1]["new"]["ppm"], 750, "{h:#?}");
    let newest = history(&ld, json!({"scid": A, "limit": 1}));
    assert_eq!(newest, h[..1].to_vec());
    // Positional, as lightning-cli sends it.
    assert_eq!(history(&ld, json!([A, "1"])), h[..1].to_vec());
    assert!(history(&ld, json!({ "scid": B })).is_empty());

    // Kept across a restart.
    ld.stop(WAIT);
    drop(ld);
    let ld = builder(&node).base_dir(base.path()).start();
    assert_eq!(history(&ld, json!({})), h);
}

// ------------------------------------------------------------- bad params

#[test]
fn bad_params_give_errors_and_change_nothing() {
    let node = node_with(&[(A, 250_000_000), (B, 500_000_000)]);
    // A channel that is closing: it has an scid but takes no fee updates.
    node.add_channel(Channel {
        state: "CHANNELD_SHUTTING_DOWN".into(),
        ..Channel::new(&pubkey(3), C, CAPACITY, 400_000_000)
    });
    let ld = builder(&node).start();
    set_toml(&ld, FOLLOW);
    let policy = ld.rpc_ok("fee-policy", json!({}));
    let preview_all = ld.rpc_ok("fee-preview", json!({}));
    assert_eq!(array(&preview_all, "/channels").len(), 2, "{preview_all:#}");

    let unknown = [
        ("fee-preview", json!({"scid": "999x9x9"})),
        ("fee-preview", json!({ "scid": C })),
        ("fee-apply", json!({"scid": "999x9x9", "force": true})),
        ("fee-apply", json!(["999x9x9", true])),
        ("fee-apply", json!({"scid": C, "force": true})),
    ];
    for (method, params) in unknown {
        let what = format!("{method} {params}");
        let e = assert_rpc_error(ld.rpc(method, params.clone()), ERR_UNKNOWN_CHANNEL, &what);
        assert!(e.message.contains(method), "{what}: {e}");
    }

    let invalid = [
        ("fee-preview", json!({"scid": "nonsense"}), "scid"),
        ("fee-preview", json!({"scid": "103x1"}), "scid"),
        ("fee-preview", json!({"scid": "16777216x1x0"}), "scid"),
        ("fee-preview", json!({"scid": 103}), "scid"),
        ("fee-preview", json!({"bogus": 1}), "bogus"),
        ("fee-preview", json!([A, "extra"]), "at most"),
        ("fee-apply", json!({"scid": "1x2x3x4", "force": true}), "scid"),
        ("fee-apply", json!({"scid": A, "force": "yes"}), "force"),
        ("fee-apply", json!({"scid": A, "force": 1}), "force"),
        ("fee-apply", json!({"force": true, "now": true}), "now"),
        ("fee-apply", json!([A, true, "extra"]), "at most"),
        ("fee-history", json!({"scid": "nonsense"}), "scid"),
        ("fee-history", json!({"scid": ["103x1x0"]}), "scid"),
        ("fee-history", json!({"limit": -1}), "limit"),
        ("fee-history", json!({"limit": 1.5}), "limit"),
        ("fee-history", json!({"limit": "ten"}), "limit"),
        ("fee-history", json!({"since": 0}), "since"),
        ("fee-policy", json!({"policy": 5}), "policy"),
        ("fee-policy", json!({"policy": [1, 2]}), "policy"),
        ("fee-policy", json!({"policy": "not json"}), "policy"),
        ("fee-policy", json!({"toml": 5}), "toml"),
        ("fee-policy", json!({"file": true}), "file"),
        (
            "fee-policy",
            json!({"toml": FOLLOW, "policy": {"rules": []}}),
            "one of",
        ),
        ("fee-policy", json!({"rules": []}), "rules"),
        ("fee-policy", json!([null, FOLLOW, "x.toml", 1]), "at most"),
    ];
    for (method, params, needle) in invalid {
        let what = format!("{method} {params}");
        let e = assert_rpc_error(ld.rpc(method, params.clone()), INVALID_PARAMS, &what);
        assert_contains(&e.message, &[method, needle], &what);
    }

    // History of a channel ballast never changed (or that is gone) is empty,
    // not an error: history outlives channels.
    assert!(history(&ld, json!({"scid": "999x9x9"})).is_empty());

    assert!(
        node.calls_to("setchannel").is_empty(),
        "{:?}",
        node.calls_to("setchannel")
    );
    assert!(history(&ld, json!({})).is_empty());
    assert_eq!(ld.rpc_ok("fee-policy", json!({})), policy);
    for scid in [A, B, C] {
        assert_eq!(fee_on(&node, scid), (1000, 10), "{scid}");
    }
    // A read-only call after all that answers as before.
    let again = ld.rpc_ok("fee-preview", json!({}));
    assert_eq!(again["channels"], preview_all["channels"]);
    let s = status(&ld);
    assert!(uint(&s, "/counters/rpc_errors") >= 30, "{s:#}");
    assert_eq!(uint(&s, "/counters/fee_changes"), 0, "{s:#}");
}
