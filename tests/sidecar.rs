//! The LND sidecar end to end: the real `ballast-lnd` binary against the fake LND
//! (tests/lnd_fake, TLS and macaroon like lnd's), driven over its unix socket.

mod lnd_fake;
mod sidecar_support;

use ballast::lnd::proto::lnrpc;
use lnd_fake::{make_cert, FakeLnd};
use serde_json::{json, Value};
use sidecar_support::*;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

const FOLLOW_A: &str = r#"[defaults]
min_ppm = 0
max_ppm = 1000

[[rule]]
name = "follow-balance"
strategy = { type = "balance", curve = "linear", empty_ppm = 1000, full_ppm = 0 }
"#;

async fn fake() -> FakeLnd {
    let f = FakeLnd::new("regtest");
    script_network(&f);
    f.start(None).await;
    f
}

fn hash_of(v: &Value) -> [u8; 32] {
    let h = v["payment_hash"].as_str().expect("payment_hash");
    hex::decode(h).unwrap().try_into().unwrap()
}

fn lnd_state(fake: &FakeLnd, hash: [u8; 32]) -> lnrpc::invoice::InvoiceState {
    fake.invoice(hash).expect("invoice on the fake").state()
}

fn hodl_state(s: &Sidecar, hash: [u8; 32]) -> String {
    s.ok("hodl-lookup", json!({"payment_hash": hex::encode(hash)}))["state"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_the_plugin_methods_on_a_private_socket() {
    let fake = fake().await;
    let s = Sidecar::start(&fake, &[]);
    let mode = std::fs::metadata(&s.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode {mode:o}");
    let st = s.ok("ballast-status", json!({}));
    assert_eq!(st["implementation"], "lnd", "{st:#}");
    assert_eq!(st["network"], "regtest", "{st:#}");
    assert_eq!(st["node_id"], fake.with_state(|s| s.id.clone()), "{st:#}");
    assert_eq!(st["blockheight"], 800_000, "{st:#}");
    assert!(
        st["store"]["path"]
            .as_str()
            .unwrap()
            .starts_with(s.datadir.to_str().unwrap()),
        "{st:#}"
    );
    // Every method of the plugin is there, under the same name.
    let help = s.ok("help", json!({}));
    for m in ballast::api::METHODS {
        assert!(
            help["help"]
                .as_array()
                .unwrap()
                .iter()
                .any(|h| h["command"].as_str().unwrap().starts_with(m.name)),
            "{} missing from help",
            m.name
        );
    }
    // Errors are JSON-RPC errors with the plugin's codes, and change nothing.
    let e = s.call("hodl-invoice", json!({"amount_msat": 0})).unwrap_err();
    assert_eq!(e["code"], -32602, "{e}");
    let e = s.call("no-such-method", json!({})).unwrap_err();
    assert_eq!(e["code"], -32601, "{e}");
    assert_eq!(s.ok("hodl-list", json!({}))["total"], 0);
    // The channels come from ListChannels, in the plugin's shape.
    let m = s.ok("monitor-status", json!({}));
    let chans = m["channels"].as_array().unwrap();
    assert_eq!(chans.len(), 4, "{m:#}");
    let a = chans
        .iter()
        .find(|c| c["short_channel_id"] == scid(CHAN_A))
        .expect("channel A");
    assert_eq!(a["local_msat"], 900_000_000u64, "{a:#}");
    // Files go into <datadir>/<network>/ballast-files, not wherever it was started.
    let rel = s.ok("monitor-export", json!({"path": "sidecar-history.json"}));
    let expected = s
        .datadir
        .join("regtest")
        .join("ballast-files")
        .join("sidecar-history.json");
    assert!(expected.is_file(), "{rel:#}");
    assert_eq!(rel["path"], expected.display().to_string(), "{rel:#}");
    // And the `call` subcommand reaches the same socket.
    let (st, err) = run_to_exit(&[
        format!("--datadir={}", s.datadir.display()),
        "call".into(),
        "hodl-list".into(),
        "limit=1".into(),
    ]);
    assert!(st.success(), "call failed: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_invoice_is_settled_on_lnd() {
    let fake = fake().await;
    let s = Sidecar::start(&fake, &[]);
    let inv = s.ok(
        "hodl-invoice",
        json!({"amount_msat": 50_000_000, "description": "shop order 7"}),
    );
    let hash = hash_of(&inv);
    assert!(inv["bolt11"].as_str().unwrap().starts_with("lnbcrt"), "{inv:#}");
    assert!(inv["preimage"].is_string(), "ballast made the preimage: {inv:#}");
    assert_eq!(lnd_state(&fake, hash), lnrpc::invoice::InvoiceState::Open);
    let on_lnd = fake.invoice(hash).unwrap();
    assert_eq!(on_lnd.value_msat, 50_000_000);
    assert_eq!(on_lnd.memo, "shop order 7");
    // Nothing to settle before it is paid.
    let e = s
        .call("hodl-settle", json!({"payment_hash": hex::encode(hash)}))
        .unwrap_err();
    assert_eq!(e["code"], 2002, "{e}");

    fake.accept_htlc(hash, 50_000_000, 800_000 + 80);
    s.wait_until("ACCEPTED", |s| (hodl_state(s, hash) == "ACCEPTED").then_some(()));
    let l = s.ok("hodl-lookup", json!({"payment_hash": hex::encode(hash)}));
    assert_eq!(l["received_msat"], 50_000_000, "{l:#}");
    assert_eq!(l["htlcs"][0]["blocks_left"], 80, "{l:#}");

    let settled = s.ok("hodl-settle", json!({"payment_hash": hex::encode(hash)}));
    assert_eq!(settled["state"], "SETTLED", "{settled:#}");
    s.wait_until("LND settled", |_| {
        (lnd_state(&fake, hash) == lnrpc::invoice::InvoiceState::Settled).then_some(())
    });
    assert_eq!(hodl_state(&s, hash), "SETTLED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_invoice_is_canceled_before_the_htlc_deadline() {
    // ballast may give up earlier than LND's guard (18 blocks), never later.
    let fake = fake().await;
    let s = Sidecar::start(&fake, &["--ballast-hodl-cancel-blocks=20"]);
    let inv = s.ok("hodl-invoice", json!({"amount_msat": 10_000, "cltv": 40}));
    let hash = hash_of(&inv);
    // An explicit cancel reaches LND too.
    let other = hash_of(&s.ok("hodl-invoice", json!({"amount_msat": 10_000})));
    s.ok("hodl-cancel", json!([hex::encode(other)]));
    s.wait_until("LND canceled", |_| {
        (lnd_state(&fake, other) == lnrpc::invoice::InvoiceState::Canceled).then_some(())
    });

    fake.accept_htlc(hash, 10_000, 800_000 + 40);
    s.wait_until("ACCEPTED", |s| (hodl_state(s, hash) == "ACCEPTED").then_some(()));
    // 19 blocks later the HTLC is 21 blocks from expiry: still held.
    fake.mine(19);
    wait_height(&s, 800_019);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(hodl_state(&s, hash), "ACCEPTED");
    assert_eq!(lnd_state(&fake, hash), lnrpc::invoice::InvoiceState::Accepted);
    // One more and it is within 20 blocks: ballast cancels, on LND as well, before LND's
    // own guard would.
    fake.mine(1);
    s.wait_until("LND canceled", |_| {
        (lnd_state(&fake, hash) == lnrpc::invoice::InvoiceState::Canceled).then_some(())
    });
    let l = s.ok("hodl-lookup", json!({"payment_hash": hex::encode(hash)}));
    assert_eq!(l["state"], "CANCELED", "{l:#}");
    assert_eq!(l["cancel_reason"], "deadline", "{l:#}");
}

fn wait_height(s: &Sidecar, height: u64) {
    s.wait_until(&format!("height {height}"), |s| {
        (s.ok("ballast-status", json!({}))["blockheight"] == height).then_some(())
    });
}

/// A hold invoice paid by one HTLC expiring 40 blocks after the tip (800,000), held.
fn accepted_invoice(fake: &FakeLnd, s: &Sidecar) -> [u8; 32] {
    let hash = hash_of(&s.ok("hodl-invoice", json!({"amount_msat": 10_000, "cltv": 40})));
    fake.accept_htlc(hash, 10_000, 800_000 + 40);
    s.wait_until("ACCEPTED", |s| (hodl_state(s, hash) == "ACCEPTED").then_some(()));
    hash
}

/// A sidecar with such an invoice, `blocks` blocks later (seen by the sidecar).
async fn held_for(blocks: u32) -> (FakeLnd, Sidecar, [u8; 32]) {
    let fake = fake().await;
    let s = Sidecar::start(&fake, &[]);
    let hash = accepted_invoice(&fake, &s);
    fake.mine(blocks);
    wait_height(&s, 800_000 + u64::from(blocks));
    (fake, s, hash)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_invoice_settles_just_outside_lnds_guard() {
    // 19 blocks left: one more than LND's hold guard (18).
    let (fake, s, hash) = held_for(21).await;
    let r = s.ok("hodl-settle", json!({"payment_hash": hex::encode(hash)}));
    assert_eq!(r["state"], "SETTLED", "{r:#}");
    // SETTLED is answered only once LND has settled: no waiting here.
    assert_eq!(lnd_state(&fake, hash), lnrpc::invoice::InvoiceState::Settled);
    assert_eq!(hodl_state(&s, hash), "SETTLED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_inside_lnds_guard_is_refused() {
    // 18 blocks left: LND's expiry watcher cancels it, and so does ballast.
    let (fake, s, hash) = held_for(22).await;
    let e = s
        .call("hodl-settle", json!({"payment_hash": hex::encode(hash)}))
        .unwrap_err();
    assert_eq!(e["code"], 2002, "{e}");
    assert!(e["message"].as_str().unwrap().contains("CANCELED"), "{e}");
    assert_eq!(lnd_state(&fake, hash), lnrpc::invoice::InvoiceState::Canceled);
    let l = s.ok("hodl-lookup", json!({"payment_hash": hex::encode(hash)}));
    assert_eq!(l["state"], "CANCELED", "{l:#}");
    assert!(l.get("preimage").is_none(), "{l:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_racing_lnds_cancel_never_answers_settled() {
    let (fake, s, hash) = held_for(21).await;
    // The block that brings the HTLC into LND's guard arrives as SettleInvoice does:
    // LND's expiry watcher cancels first, and SettleInvoice answers its error.
    fake.with_state(|st| st.blocks_before_settle = 1);
    let e = s
        .call("hodl-settle", json!({"payment_hash": hex::encode(hash)}))
        .unwrap_err();
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("invoice already canceled"), "LND's answer: {e}");
    assert!(msg.contains("CANCELED"), "LND's invoice state: {e}");
    assert_eq!(lnd_state(&fake, hash), lnrpc::invoice::InvoiceState::Canceled);
    // ballast follows LND; at no point does the invoice read SETTLED.
    s.wait_until("CANCELED", |s| {
        let st = hodl_state(s, hash);
        assert_ne!(st, "SETTLED");
        (st == "CANCELED").then_some(())
    });
    let l = s.ok("hodl-lookup", json!({"payment_hash": hex::encode(hash)}));
    assert!(l.get("preimage").is_none(), "{l:#}");
    // A second try gets the same refusal.
    let e = s
        .call("hodl-settle", json!({"payment_hash": hex::encode(hash)}))
        .unwrap_err();
    assert_eq!(e["code"], 2002, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settles_racing_the_guard_block_answer_settled_only_when_lnd_settled() {
    let fake = fake().await;
    let s = Sidecar::start(&fake, &[]);
    for delay_ms in [0u64, 1, 3, 8] {
        let h0 = fake.with_state(|st| st.block_height);
        let hash = hash_of(&s.ok("hodl-invoice", json!({"amount_msat": 10_000, "cltv": 40})));
        fake.accept_htlc(hash, 10_000, h0 + 40);
        s.wait_until("ACCEPTED", |s| (hodl_state(s, hash) == "ACCEPTED").then_some(()));
        fake.mine(21);
        wait_height(&s, u64::from(h0) + 21);
        // The block that brings the HTLC into LND's guard, mined while hodl-settle runs.
        let answer = std::thread::scope(|scope| {
            scope.spawn(|| {
                std::thread::sleep(Duration::from_millis(delay_ms));
                fake.mine(1);
            });
            s.call("hodl-settle", json!({"payment_hash": hex::encode(hash)}))
        });
        match answer {
            Ok(v) => {
                assert_eq!(v["state"], "SETTLED", "{v:#}");
                assert_eq!(lnd_state(&fake, hash), lnrpc::invoice::InvoiceState::Settled);
            }
            Err(e) => {
                assert_ne!(
                    lnd_state(&fake, hash),
                    lnrpc::invoice::InvoiceState::Settled,
                    "{e}"
                );
                s.wait_until("CANCELED", |s| {
                    let st = hodl_state(s, hash);
                    assert_ne!(st, "SETTLED");
                    (st == "CANCELED").then_some(())
                });
            }
        }
        wait_height(&s, u64::from(h0) + 22);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_settle_whose_answer_is_lost_is_settled_once_lnd_confirms() {
    let fake = fake().await;
    let s = Sidecar::start(&fake, &[]);
    let hash = accepted_invoice(&fake, &s);
    fake.with_state(|st| st.lose_settle_answer = true);
    let e = s
        .call("hodl-settle", json!({"payment_hash": hex::encode(hash)}))
        .unwrap_err();
    assert_eq!(e["code"], 2005, "{e}");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("not SETTLED until LND confirms"),
        "{e}"
    );
    // LND did settle: ballast learns it and records SETTLED.
    assert_eq!(lnd_state(&fake, hash), lnrpc::invoice::InvoiceState::Settled);
    s.wait_until("SETTLED", |s| (hodl_state(s, hash) == "SETTLED").then_some(()));
    let l = s.ok("hodl-lookup", json!({"payment_hash": hex::encode(hash)}));
    assert!(l["preimage"].is_string(), "{l:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_invoice_cltv_below_lnds_minimum_is_refused() {
    let fake = fake().await;
    let s = Sidecar::start(&fake, &[]);
    for cltv in [20, 23] {
        let e = s
            .call("hodl-invoice", json!({"amount_msat": 10_000, "cltv": cltv}))
            .unwrap_err();
        assert_eq!(e["code"], -32602, "cltv {cltv}: {e}");
        assert!(e["message"].as_str().unwrap().contains("24"), "{e}");
    }
    assert_eq!(fake.with_state(|st| st.invoices.len()), 0, "LND was not asked");
    let inv = s.ok("hodl-invoice", json!({"amount_msat": 10_000, "cltv": 24}));
    assert_eq!(fake.invoice(hash_of(&inv)).unwrap().cltv_expiry, 24);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hold_guard_is_checked_against_lnd() {
    let fake = fake().await;
    fake.with_state(|st| st.hold_expiry_delta = 30);
    // Left at its default, the guard is taken from LND's configuration.
    let s = Sidecar::start(&fake, &[]);
    let e = s
        .call("hodl-invoice", json!({"amount_msat": 10_000, "cltv": 35}))
        .unwrap_err();
    assert_eq!(e["code"], -32602, "ballast cancels at LND's 30 blocks: {e}");
    s.ok("hodl-invoice", json!({"amount_msat": 10_000, "cltv": 36}));
    drop(s);
    // Set, and LND says otherwise: refused at start, naming both.
    let dir = tempfile::tempdir().unwrap();
    let mut args = flags(&fake, &dir.path().join("data"));
    args.push("--hold-expiry-delta=18".into());
    let (st, err) = run_to_exit(&args);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("holdexpirydelta") && err.contains("30") && err.contains("18"),
        "{err}"
    );
    // Where LND does not expose its configuration, the option is trusted.
    fake.with_state(|st| st.debug_info_denied = true);
    let s = Sidecar::start(&fake, &["--hold-expiry-delta=30"]);
    s.ok("hodl-invoice", json!({"amount_msat": 10_000, "cltv": 36}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forward_without_amounts_is_filled_from_history() {
    let fake = fake().await;
    let policy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(policy.path(), FOLLOW_A).unwrap();
    let s = Sidecar::start(
        &fake,
        &[&format!("--ballast-fee-policy-file={}", policy.path().display())],
    );
    let flow_out_b = |s: &Sidecar| {
        s.ok("fee-preview", json!({"scid": scid(CHAN_B)}))["channels"][0]["inputs"]["flow_out_msat"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(flow_out_b(&s), 0);
    // Offered before ballast subscribed: the settle comes without amounts; LND writes
    // the forward to its log a little later.
    fake.push_settle_only(CHAN_A, CHAN_B, 2_002_000, 2_000_000, true);
    s.wait_until("the settle event", |s| {
        (s.ok("ballast-status", json!({}))["counters"]["forward_events"] == 1).then_some(())
    });
    std::thread::sleep(Duration::from_millis(500));
    fake.flush_forwards();
    s.wait_until("the amounts from ForwardingHistory", |s| {
        let f = flow_out_b(s);
        assert!(f == 0 || f == 2_000_000, "flow {f}");
        (f == 2_000_000).then_some(())
    });
    let p = s.ok("fee-preview", json!({"scid": scid(CHAN_A)}));
    assert_eq!(p["channels"][0]["inputs"]["flow_in_msat"], 2_002_000, "{p:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fee_policy_reacts_to_forwards() {
    let fake = fake().await;
    let policy = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(policy.path(), FOLLOW_A).unwrap();
    let s = Sidecar::start(
        &fake,
        &[
            &format!("--ballast-fee-policy-file={}", policy.path().display()),
            "--ballast-fee-min-interval=1",
            "--ballast-fee-coalesce=0",
        ],
    );
    // B is 10 % ours: the policy wants 900 ppm there (it has 250).
    let p = s.ok("fee-preview", json!({"scid": scid(CHAN_B)}));
    assert_eq!(p["channels"][0]["target"]["ppm"], 900, "{p:#}");
    // Past the (developer-mode, 1 s) start-up hold, a forward out over B triggers it.
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(fake.policy_updates().is_empty(), "nothing before a trigger");
    fake.push_forward(CHAN_A, CHAN_B, true);
    let upd = s.wait_until("UpdateChannelPolicy for B", |_| {
        fake.policy_updates().into_iter().find(|u| {
            matches!(&u.scope, Some(lnrpc::policy_update_request::Scope::ChanPoint(cp))
                if format!("{}:{}", hex::encode(cp_txid(cp)), cp.output_index) == chan_point(CHAN_B))
        })
    });
    assert_eq!(upd.fee_rate_ppm, 900, "{upd:?}");
    let h = s.ok("fee-history", json!({"scid": scid(CHAN_B)}));
    let entry = &h["changes"][0];
    assert_eq!(entry["new"]["ppm"], 900, "{h:#}");
    assert_eq!(entry["trigger"], "forward", "{h:#}");
    let st = s.ok("ballast-status", json!({}));
    assert_eq!(st["counters"]["forward_events"], 1, "{st:#}");
    // The forward's amounts (from LND's FORWARD event) count as flow.
    let p = s.ok("fee-preview", json!({"scid": scid(CHAN_B)}));
    assert_eq!(
        p["channels"][0]["inputs"]["flow_out_msat"],
        lnd_fake::FORWARD_OUT_MSAT,
        "{p:#}"
    );
    let p = s.ok("fee-preview", json!({"scid": scid(CHAN_A)}));
    assert_eq!(
        p["channels"][0]["inputs"]["flow_in_msat"],
        lnd_fake::FORWARD_IN_MSAT,
        "{p:#}"
    );
}

/// The txid of a channel point as LND's `funding_txid_bytes` (reversed) or string.
fn cp_txid(cp: &lnrpc::ChannelPoint) -> Vec<u8> {
    match &cp.funding_txid {
        Some(lnrpc::channel_point::FundingTxid::FundingTxidStr(s)) => hex::decode(s).unwrap(),
        Some(lnrpc::channel_point::FundingTxid::FundingTxidBytes(b)) => b.iter().rev().copied().collect(),
        None => Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_plan_uses_the_lnd_graph() {
    let fake = fake().await;
    let s = Sidecar::start(&fake, &[]);
    let plan = s.ok("rebalance-plan", json!({}));
    let moves = plan["moves"].as_array().unwrap_or_else(|| panic!("{plan:#}"));
    let m = moves
        .iter()
        .find(|m| m["source_scid"] == scid(CHAN_A) && m["sink_scid"] == scid(CHAN_B))
        .unwrap_or_else(|| panic!("no A→B move: {plan:#}"));
    assert_eq!(m["status"], "planned", "{m:#}");
    let hops: Vec<&str> = m["routes"][0]["hops"]
        .as_array()
        .unwrap_or_else(|| panic!("{m:#}"))
        .iter()
        .map(|h| h["scid"].as_str().unwrap())
        .collect();
    assert_eq!(hops.first(), Some(&scid(CHAN_A).as_str()), "{m:#}");
    assert_eq!(hops.last(), Some(&scid(CHAN_B).as_str()), "{m:#}");
    assert_eq!(hops.len(), 4, "out over A, A-E, E-B, back over B: {m:#}");
    let est = s.ok(
        "route-estimate",
        json!({"destination": lnd_fake::pubkey(E), "amount_msat": 1_000_000}),
    );
    assert_eq!(
        est["cheapest"]["hops"].as_array().map(Vec::len),
        Some(2),
        "over A to E: {est:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survives_an_lnd_restart() {
    let fake = fake().await;
    let port = fake.addr().unwrap().port();
    let s = Sidecar::start(&fake, &[]);
    let hash = hash_of(&s.ok("hodl-invoice", json!({"amount_msat": 20_000})));
    fake.stop().await;
    // Methods still answer from the store while LND is away.
    assert_eq!(hodl_state(&s, hash), "OPEN");
    tokio::time::sleep(Duration::from_secs(2)).await;
    fake.start(Some(port)).await;
    // Paid while ballast was reconnecting: it catches up from the resubscription.
    fake.accept_htlc(hash, 20_000, 800_000 + 80);
    s.wait_until("ACCEPTED after the restart", |s| {
        (hodl_state(s, hash) == "ACCEPTED").then_some(())
    });
    // Blocks flow again.
    s.wait_until("block subscription back", |_| {
        fake.mine(1);
        let h = s.ok("ballast-status", json!({}))["blockheight"].as_u64().unwrap();
        (h > 800_000).then_some(())
    });
    s.ok("hodl-settle", json!({"payment_hash": hex::encode(hash)}));
    s.wait_until("LND settled", |_| {
        (lnd_state(&fake, hash) == lnrpc::invoice::InvoiceState::Settled).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_restart_keeps_state_and_finishes_what_lnd_missed() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let mut s = Sidecar::start_in(&fake, dir.path(), &[]);
    let hash = hash_of(&s.ok("hodl-invoice", json!({"amount_msat": 30_000, "label": "keep"})));
    fake.accept_htlc(hash, 30_000, 800_000 + 80);
    s.wait_until("ACCEPTED", |s| (hodl_state(s, hash) == "ACCEPTED").then_some(()));
    assert!(s.stop().success(), "SIGTERM is a clean stop:\n{}", s.stderr());
    assert!(!s.socket.exists(), "the socket is removed on stop");
    // LND kept the HTLC; a new sidecar picks the invoice up and can settle it.
    let s = Sidecar::start_in(&fake, dir.path(), &[]);
    assert_eq!(hodl_state(&s, hash), "ACCEPTED");
    let l = s.ok("hodl-list", json!({}));
    assert_eq!(l["invoices"][0]["label"], "keep", "{l:#}");
    s.ok("hodl-settle", json!({"payment_hash": hex::encode(hash)}));
    s.wait_until("LND settled", |_| {
        (lnd_state(&fake, hash) == lnrpc::invoice::InvoiceState::Settled).then_some(())
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_certificate_is_refused() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let other = dir.path().join("other.cert");
    std::fs::write(&other, make_cert().pem).unwrap();
    let mut args = flags(&fake, &dir.path().join("data"));
    args.push(format!("--tlscertpath={}", other.display()));
    let (st, err) = run_to_exit(&args);
    assert!(!st.success());
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("TLS certificate does not match"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        err.trim()
            .lines()
            .filter(|l| l.starts_with("ballast-lnd:"))
            .count(),
        1,
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_paths_and_an_unreachable_lnd_are_clear_errors() {
    let fake = fake().await;
    let dir = tempfile::tempdir().unwrap();
    let base = flags(&fake, &dir.path().join("data"));

    let mut args = base.clone();
    args.push("--macaroonpath=/nonexistent/admin.macaroon".into());
    let (st, err) = run_to_exit(&args);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("/nonexistent/admin.macaroon"), "{err}");
    assert!(err.contains("macaroon"), "{err}");

    let mut args = base.clone();
    args.push("--network=testnet".into());
    args.push(format!(
        "--macaroonpath={}",
        fake.lnddir()
            .join("data/chain/bitcoin/regtest/admin.macaroon")
            .display()
    ));
    let (st, err) = run_to_exit(&args);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("'regtest'") && err.contains("'testnet'"), "{err}");

    let port = fake.addr().unwrap().port();
    fake.stop().await;
    let (st, err) = run_to_exit(&base);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(err.contains("cannot reach LND"), "{err}");
    assert!(err.contains(&port.to_string()), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    // ballast cannot hold past LND's own hold-invoice guard (18 blocks).
    let mut args = base.clone();
    args.push("--ballast-hodl-cancel-blocks=10".into());
    let (st, err) = run_to_exit(&args);
    assert_eq!(st.code(), Some(1), "{err}");
    assert!(
        err.contains("ballast-hodl-cancel-blocks (10) must be at least 18"),
        "{err}"
    );

    let (st, err) = run_to_exit(&["--no-such-flag=1".into()]);
    assert_eq!(st.code(), Some(2), "{err}");
    assert!(err.contains("unknown flag"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_executes_with_send_to_route_to_our_own_invoice() {
    let fake = fake().await;
    let s = Sidecar::start(&fake, &["--ballast-rebalance-daily-budget=1000000"]);
    fake.with_state(|st| st.send_script.push_back(lnd_fake::SendScript::Succeed));
    let r = s.ok(
        "rebalance-execute",
        json!({"source": scid(CHAN_A), "sink": scid(CHAN_B), "amount_msat": 100_000_000, "max_ppm": 500}),
    );
    let m = &r["moves"][0];
    assert_eq!(m["status"], "done", "{r:#}");
    assert_eq!(m["moved_msat"], 100_000_000, "{r:#}");
    let (routes, invoices) = fake.with_state(|st| (st.sent_routes.clone(), st.invoices.clone()));
    assert_eq!(routes.len(), 1, "{routes:?}");
    let route = &routes[0];
    // Absolute heights: above the tip, the final one at least LND's minimum away.
    assert!(route.total_time_lock > 800_000 + 24, "{route:?}");
    assert!(route.hops.last().unwrap().expiry >= 800_000 + 24, "{route:?}");
    let chans: Vec<u64> = route.hops.iter().map(|h| h.chan_id).collect();
    assert_eq!(chans.first(), Some(&CHAN_A));
    assert_eq!(chans.last(), Some(&CHAN_B));
    // Paid to an invoice ballast added on our own node, whose payment_addr the last hop carries.
    let last = route.hops.last().unwrap();
    let mpp = last.mpp_record.as_ref().expect("mpp record on the last hop");
    let inv = invoices
        .iter()
        .find(|i| i.payment_addr == mpp.payment_addr)
        .expect("the invoice paid");
    assert_eq!(inv.value_msat, 100_000_000);
    assert_eq!(last.amt_to_forward_msat, 100_000_000);
    assert_eq!(last.pub_key, fake.with_state(|st| st.id.clone()));
    let st = s.ok("rebalance-status", json!({}));
    assert_eq!(st["attempts"][0]["outcome"], "success", "{st:#}");
    assert_eq!(st["attempts"][0]["fee_msat"], m["fee_msat"], "{st:#}");
}
