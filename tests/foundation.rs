//! Foundation tests: the plugin starts like a CLN plugin, keeps a durable
//! store, answers its hooks and status command, and tracks the chain tip.
//!
//! Every message exchanged is validated by the harness against CLN v26.06's
//! schemas and the plugin protocol; a test fails on any violation even when
//! its own assertions pass.

mod harness;

use harness::json::{string, uint};

use harness::fake_node::now_secs;
use harness::{
    hash_hex, payloads, pubkey, ErrorKind, FakeNode, IdStyle, Lightningd, Scripted, INVALID_PARAMS,
};
use serde_json::{json, Value};
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(10);

fn status(ld: &Lightningd) -> Value {
    ld.rpc_ok("ballast-status", json!({}))
}

/// Polls `ballast-status` until `pred` holds.
fn wait_status(ld: &Lightningd, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
    ld.wait_until(what, WAIT, |ld| {
        let s = status(ld);
        pred(&s).then_some(s)
    })
}

fn store_path(ld: &Lightningd) -> PathBuf {
    PathBuf::from(string(&status(ld), "/store/path"))
}

fn assert_clean_exit(ld: &mut Lightningd, why: &str) {
    let code = ld
        .wait_exit(WAIT)
        .unwrap_or_else(|| ld.fail(&format!("plugin did not exit after {why}")));
    let stderr = ld.stderr();
    assert!(
        code.success(),
        "plugin exited with {code} after {why}; stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "plugin panicked after {why}:\n{stderr}"
    );
}

#[test]
fn refuses_to_run_outside_lightningd() {
    // Run from a shell: no LIGHTNINGD_PLUGIN, and a stdin that never
    // closes. The plugin must explain itself and exit without reading it.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ballast"))
        .env_remove("LIGHTNINGD_PLUGIN")
        .env_remove("LIGHTNINGD_VERSION")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    let _stdin_kept_open = child.stdin.take();
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(s) = child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("plugin kept running outside lightningd (is it reading stdin?)");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut out = String::new();
    child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(status.success(), "exit status {status}, stdout: {out}");
    assert!(
        out.contains("lightningd"),
        "usage text should mention lightningd: {out:?}"
    );
}

#[test]
fn manifest_declares_the_interface() {
    let ld = Lightningd::start();
    let m = ld.manifest();
    assert!(
        m.has_rpcmethod("ballast-status"),
        "rpcmethods: {:?}",
        m.rpcmethods
    );
    for hook in ["htlc_accepted", "invoice_payment"] {
        assert!(m.has_hook(hook), "missing hook {hook}: {:?}", m.hooks);
    }
    for topic in [
        "forward_event",
        "channel_state_changed",
        "block_added",
        "connect",
        "disconnect",
        "shutdown",
    ] {
        assert!(
            m.subscriptions.iter().any(|s| s == topic),
            "missing subscription {topic}: {:?}",
            m.subscriptions
        );
    }
    let db = m.option("ballast-db-path").expect("option ballast-db-path");
    assert_eq!(db.kind, harness::protocol::OptionType::String);
    assert_eq!(db.default, Some(json!("ballast")));
    for o in &m.options {
        assert!(
            o.name.starts_with("ballast-"),
            "option `{}` lacks the ballast- prefix",
            o.name
        );
    }
    // lightningd passes every option with a default at init.
    assert_eq!(ld.init_options()["ballast-db-path"], "ballast");
}

#[test]
fn init_learns_from_getinfo_and_creates_a_private_store() {
    let ld = Lightningd::start();
    // The handshake is over, so the call happened during init.
    let calls = ld.node().calls_to("getinfo");
    assert!(!calls.is_empty(), "plugin did not call getinfo during init");

    let s = status(&ld);
    assert_eq!(uint(&s, "/blockheight"), u64::from(ld.node().blockheight()));
    assert_eq!(string(&s, "/network"), "regtest");

    // Default db path is relative to the lightning-dir (the plugin's cwd).
    let store = ld.lightning_dir().join("ballast");
    assert!(store.is_dir(), "no store directory at {}", store.display());
    assert_eq!(
        Path::new(string(&s, "/store/path")).canonicalize().unwrap(),
        store.canonicalize().unwrap()
    );
    let mode = std::fs::metadata(&store).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "store dir mode {mode:o}");
    let mut files = Vec::new();
    collect_files(&store, &mut files);
    assert!(!files.is_empty(), "store directory is empty");
    for f in files {
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", f.display());
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            collect_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[test]
fn status_reports_version_store_and_counters() {
    let before = now_secs();
    let ld = Lightningd::start();
    for params in [json!({}), json!([])] {
        let s = ld.rpc_ok("ballast-status", params);
        assert!(!string(&s, "/version").is_empty());
        assert_eq!(string(&s, "/network"), "regtest");
        assert_eq!(uint(&s, "/blockheight"), 110);
        uint(&s, "/uptime_secs");
        assert!(!string(&s, "/store/path").is_empty());
        uint(&s, "/store/size_bytes");
        uint(&s, "/store/schema_version");
        assert_eq!(uint(&s, "/store/starts"), 1, "{s:#}");
        let created = uint(&s, "/store/created_at");
        assert!(
            (before.saturating_sub(5)..=now_secs() + 5).contains(&created),
            "created_at {created} is not now"
        );
        // Nothing persisted a tip yet: null (or the getinfo height).
        let tip = &s["store"]["tip_height"];
        assert!(tip.is_null() || tip.is_u64(), "tip_height: {tip}");
        for c in [
            "htlc_accepted",
            "htlcs_passed_through",
            "invoice_payment",
            "invoices_passed_through",
            "notifications",
        ] {
            assert_eq!(uint(&s, &format!("/counters/{c}")), 0, "counter {c}");
        }
    }
}

#[test]
fn status_rejects_unknown_params_without_side_effects() {
    let ld = Lightningd::start();
    let before = status(&ld);
    for bad in [json!({"bogus": 1}), json!([1]), json!(["x", "y"])] {
        let err = ld
            .rpc("ballast-status", bad.clone())
            .expect_err(&format!("params {bad} were accepted"));
        assert_eq!(err.code, INVALID_PARAMS, "params {bad}: {err}");
    }
    // Bookkeeping of RPC calls themselves may move; the state may not.
    let after = status(&ld);
    for c in [
        "htlc_accepted",
        "htlcs_passed_through",
        "invoice_payment",
        "invoices_passed_through",
        "notifications",
    ] {
        assert_eq!(after["counters"][c], before["counters"][c], "counter {c}");
    }
    assert_eq!(after["store"]["starts"], before["store"]["starts"]);
    assert_eq!(after["store"]["tip_height"], before["store"]["tip_height"]);
    assert_eq!(after["blockheight"], before["blockheight"]);
}

#[test]
fn hooks_continue_immediately_and_are_counted() {
    let ld = Lightningd::start();
    let height = ld.node().blockheight();
    for i in 0..3u32 {
        let hash = hash_hex(&format!("unknown payment {i}"));
        // How fast is the hotpath bench's business; here only the answer counts.
        let r = ld.call_hook(
            "htlc_accepted",
            payloads::htlc_accepted(&hash, 10_000 + u64::from(i), height + 40, height),
        );
        assert_eq!(r, json!({"result": "continue"}));
    }
    let fwd = ld.call_hook(
        "htlc_accepted",
        payloads::htlc_forward(&hash_hex("forward"), "103x1x0", "104x2x1", 5_010, 5_000),
    );
    assert_eq!(fwd, json!({"result": "continue"}));

    let preimage = hash_hex("preimage");
    let r = ld.call_hook(
        "invoice_payment",
        payloads::invoice_payment("inv-1", &preimage, 42_000),
    );
    assert_eq!(r, json!({"result": "continue"}));

    let s = status(&ld);
    assert_eq!(uint(&s, "/counters/htlc_accepted"), 4);
    assert_eq!(uint(&s, "/counters/htlcs_passed_through"), 4);
    assert_eq!(uint(&s, "/counters/invoice_payment"), 1);
    assert_eq!(uint(&s, "/counters/invoices_passed_through"), 1);
}

#[test]
fn notifications_update_tip_and_counter() {
    let ld = Lightningd::start();
    ld.notify("block_added", payloads::block_added(111));
    let s = wait_status(&ld, "blockheight 111", |s| s["blockheight"] == 111);
    assert!(uint(&s, "/counters/notifications") >= 1);

    let peer = pubkey(1);
    ld.notify("connect", payloads::connect(&peer));
    ld.notify("disconnect", payloads::disconnect(&peer));
    ld.notify(
        "channel_state_changed",
        payloads::channel_state_changed(&peer, "103x1x0", "CHANNELD_AWAITING_LOCKIN", "CHANNELD_NORMAL"),
    );
    let fwd = harness::Forward::settled("103x1x0", "104x2x1", 1_001_000, 1_000_000);
    ld.notify("forward_event", fwd.to_notification());
    ld.notify("block_added", payloads::block_added(112));
    // The tip is persisted right after the in-memory height moves: poll
    // until both agree.
    let s = wait_status(&ld, "all six notifications counted, tip 112 stored", |s| {
        s["counters"]["notifications"] == 6 && s["blockheight"] == 112 && s["store"]["tip_height"] == 112
    });
    assert_eq!(uint(&s, "/counters/htlc_accepted"), 0);
}

#[test]
fn store_survives_kill9() {
    let base = tempfile::tempdir().unwrap();
    let node = FakeNode::new();
    let (created, tip) = {
        let mut ld = Lightningd::builder()
            .base_dir(base.path())
            .node(node.clone())
            .start();
        let s = status(&ld);
        assert_eq!(uint(&s, "/store/starts"), 1);
        let created = uint(&s, "/store/created_at");
        ld.notify("block_added", payloads::block_added(150));
        wait_status(&ld, "tip 150 persisted", |s| {
            s["blockheight"] == 150 && s["store"]["tip_height"] == 150
        });
        ld.kill9();
        (created, 150)
    };
    node.set_blockheight(150);
    let ld = Lightningd::builder().base_dir(base.path()).node(node).start();
    let s = wait_status(&ld, "store reopened after kill -9", |s| {
        s["store"]["tip_height"] == tip && s["store"]["starts"] == 2
    });
    assert_eq!(uint(&s, "/store/created_at"), created, "created_at must persist");
}

#[test]
fn second_plugin_on_a_locked_store_disables_itself() {
    let a = Lightningd::start();
    let shared = store_path(&a);
    let (mut b, reason) = Lightningd::builder()
        .option("ballast-db-path", shared.to_string_lossy().into_owned())
        .start_expect_disabled();
    let lower = reason.to_lowercase();
    assert!(
        lower.contains("lock") || lower.contains("store"),
        "disable reason should mention the store or its lock: {reason:?}"
    );
    assert_clean_exit(&mut b, "disabling itself");
    // The first instance is unaffected.
    assert_eq!(uint(&status(&a), "/store/starts"), 1);
}

#[test]
fn unusable_db_path_disables_with_a_reason() {
    let (mut ld, reason) = Lightningd::builder()
        .option("ballast-db-path", "/proc/ballast-nope")
        .start_expect_disabled();
    assert!(!reason.is_empty());
    assert_clean_exit(&mut ld, "disabling itself for /proc");

    // A regular file where the store directory should be.
    let base = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(base.path().join("regtest")).unwrap();
    std::fs::write(base.path().join("regtest/not-a-dir"), b"x").unwrap();
    let (mut ld, reason) = Lightningd::builder()
        .base_dir(base.path())
        .option("ballast-db-path", "not-a-dir")
        .start_expect_disabled();
    assert!(!reason.is_empty());
    assert_clean_exit(&mut ld, "disabling itself for a file path");
}

#[test]
fn invalid_hook_payload_is_caught_before_sending() {
    let ld = Lightningd::start();
    let mut payload = payloads::htlc_accepted(&hash_hex("x"), 1000, 200, 110);
    payload["htlc"].as_object_mut().unwrap().remove("payment_hash");
    let err = ld.try_call_hook("htlc_accepted", payload).unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidOutgoing, "{err}");
    assert!(err.message.contains("payment_hash"), "{err}");

    let err = ld
        .try_notify("block_added", json!({"hash": "not-a-hash", "height": 1}))
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::InvalidOutgoing, "{err}");

    // Nothing reached the plugin.
    let s = status(&ld);
    assert_eq!(uint(&s, "/counters/htlc_accepted"), 0);
    assert_eq!(uint(&s, "/counters/notifications"), 0);
}

#[test]
fn invalid_fake_node_answer_is_flagged() {
    let node = FakeNode::new();
    node.script_once(
        "getinfo",
        Scripted::Result(json!({"id": "not a pubkey", "blockheight": -1})),
    );
    // Whatever the plugin makes of it (retry, disable or crash), the
    // harness must notice that lightningd's answer broke the schema.
    let outcome = Lightningd::builder().node(node.clone()).try_start();
    let flagged = node.take_violations();
    assert!(
        flagged
            .iter()
            .any(|v| v.contains("getinfo") && v.contains("our own answer")),
        "garbage getinfo answer not flagged: {flagged:?}"
    );
    // The plugin must not carry on as if nothing happened: it either stops
    // (disabled, or failed the handshake) or says so in its log.
    if let Ok(ld) = outcome {
        if ld.disabled_reason().is_none() {
            let entry = ld.wait_for_log("getinfo", WAIT);
            assert!(
                matches!(entry.level.as_str(), "warn" | "unusual" | "error" | "broken"),
                "a bad getinfo answer deserves more than {entry}"
            );
        }
        ld.take_violations();
    }
}

#[test]
fn ids_and_param_styles_are_echoed() {
    let ld = Lightningd::start();
    let ids = [
        json!(7),
        json!(0),
        json!(u64::MAX),
        json!("cli:ballast-status#123/cln:ballast-status#124"),
        json!("weird \"quoted\" id/with\\slashes ✓"),
    ];
    for (i, id) in ids.iter().enumerate() {
        let params = if i % 2 == 0 { json!({}) } else { json!([]) };
        let r = ld.rpc_with_id("ballast-status", params, id.clone());
        assert!(r.is_ok(), "id {id}: {r:?}");
    }
    let err = ld
        .rpc_with_id("ballast-status", json!({"bogus": true}), json!("cln:err#1"))
        .unwrap_err();
    assert_eq!(err.code, INVALID_PARAMS);
    for id in [json!(99), json!("cln:htlc_accepted#77")] {
        let r = ld
            .try_call_hook_with_id(
                "htlc_accepted",
                payloads::htlc_accepted(&hash_hex("ids"), 1, 200, 110),
                id,
            )
            .unwrap();
        assert_eq!(r["result"], "continue");
    }
    ld.assert_clean();
}

#[test]
fn numeric_ids_throughout() {
    // A lightningd that does not use string ids (what it does for plugins
    // without `nonnumericids`) must work just as well.
    let ld = Lightningd::builder().id_style(IdStyle::Numeric).start();
    assert_eq!(uint(&status(&ld), "/store/starts"), 1);
    let r = ld.call_hook(
        "invoice_payment",
        payloads::invoice_payment("n", &hash_hex("p"), 1),
    );
    assert_eq!(r["result"], "continue");
}

#[test]
fn shutdown_notification_stops_the_plugin() {
    let mut ld = Lightningd::start();
    status(&ld);
    let code = ld
        .stop(WAIT)
        .unwrap_or_else(|| ld.fail("plugin ignored the shutdown notification"));
    assert!(code.success(), "exit status {code}; stderr:\n{}", ld.stderr());
    assert!(!ld.stderr().contains("panicked"), "{}", ld.stderr());
}

#[test]
fn shutdown_right_after_init_stops_the_plugin() {
    // lightningd may send `shutdown` as soon as `init` is answered (e.g. a
    // node stopped during startup): the plugin must not lose it.
    for round in 0..5 {
        let mut ld = Lightningd::start();
        let code = ld.stop(WAIT).unwrap_or_else(|| {
            ld.fail(&format!(
                "round {round}: plugin ignored a shutdown sent right after init"
            ))
        });
        assert!(code.success(), "exit status {code}; stderr:\n{}", ld.stderr());
    }
}

#[test]
fn plugin_exits_when_lightningd_goes_away() {
    let mut ld = Lightningd::start();
    status(&ld);
    ld.close_stdin();
    assert_clean_exit(&mut ld, "stdin was closed");
}

/// The options the sidecar accepts are exactly the ones the plugin registers, with the
/// same defaults, and every registered method is in the shared method table.
#[test]
fn plugin_options_and_methods_match_the_shared_tables() {
    let ld = Lightningd::start();
    let m = ld.manifest();
    let mut registered: Vec<(String, Option<String>)> = m
        .options
        .iter()
        .map(|o| {
            let d = o.default.as_ref().map(|d| match d {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            (o.name.clone(), d)
        })
        .collect();
    let mut shared: Vec<(String, Option<String>)> = ballast::api::options::all()
        .into_iter()
        .map(|(n, d, _)| (n.to_string(), d))
        .collect();
    registered.sort();
    shared.sort();
    assert_eq!(registered, shared);
    let mut methods: Vec<&str> = ballast::api::METHODS.iter().map(|m| m.name).collect();
    let mut listed: Vec<&str> = m.rpcmethods.iter().map(String::as_str).collect();
    methods.sort();
    listed.sort();
    assert_eq!(listed, methods);
}
