//! Hold invoices end to end: the real plugin binary, driven by the harness
//! playing lightningd v26.06, with every message schema-checked.
//!
//! Held HTLCs are sent with `send_hook` (lightningd does not block on a
//! hook it is waiting for), so a test can look at the invoice, settle,
//! cancel or add blocks while the HTLC is still unanswered, and then
//! collect the answer with `wait_hook`.

mod harness;

use harness::json::{string, uint};

use bitcoin::hashes::Hash;
use harness::fake_node::now_secs;
use harness::{
    hash_hex, payloads, payment_hash_of, pubkey, Channel, FakeNode, Lightningd, LightningdBuilder,
    PendingHook, INVALID_PARAMS,
};
use lightning_invoice::{Bolt11Invoice, Currency};
use serde_json::{json, Value};
use std::str::FromStr;
use std::sync::Barrier;
use std::time::Duration;

/// Generous: the machine running this is shared and slow.
const WAIT: Duration = Duration::from_secs(20);

const ERR_UNKNOWN: i64 = 2001;
const ERR_STATE: i64 = 2002;
const ERR_DUPLICATE: i64 = 2003;
const ERR_WAIT_TIMEOUT: i64 = 2004;
const ERR_NOT_HELD: i64 = 2010;
const ERR_TOO_LATE: i64 = 2011;

/// The channel our test HTLCs arrive on.
const SCID: &str = "103x1x0";

fn builder() -> LightningdBuilder {
    Lightningd::builder().timeout(Duration::from_secs(30))
}

fn start() -> Lightningd {
    builder().start()
}

fn status(ld: &Lightningd) -> Value {
    ld.rpc_ok("ballast-status", json!({}))
}

fn lookup(ld: &Lightningd, hash: &str) -> Value {
    ld.rpc_ok("hodl-lookup", json!({ "payment_hash": hash }))
}

fn list_all(ld: &Lightningd) -> Value {
    ld.rpc_ok("hodl-list", json!({}))
}

/// Polls `hodl-lookup` until the invoice is in `state`.
fn wait_state(ld: &Lightningd, hash: &str, state: &str) -> Value {
    ld.wait_until(&format!("invoice {hash} in state {state}"), WAIT, |ld| {
        let inv = lookup(ld, hash);
        (inv["state"] == state).then_some(inv)
    })
}

/// Waits until the invoice is ACCEPTED and that transition was announced.
/// Tests act on the notification, not on `hodl-lookup` alone: the plugin
/// may announce a transition after the state is already visible, and a
/// settle or cancel issued in between is announced first (see the report
/// that came with these tests).
fn accepted(ld: &Lightningd, hash: &str) -> Value {
    let inv = wait_state(ld, hash, "ACCEPTED");
    ld.wait_until(&format!("OPEN -> ACCEPTED announced for {hash}"), WAIT, |ld| {
        state_events(ld, hash)
            .iter()
            .any(|(o, n, _)| o == "OPEN" && n == "ACCEPTED")
            .then_some(())
    });
    inv
}

/// Polls `hodl-lookup` until `received_msat` reaches `msat`.
fn wait_received(ld: &Lightningd, hash: &str, msat: u64) -> Value {
    ld.wait_until(
        &format!("invoice {hash} to have received {msat} msat"),
        WAIT,
        |ld| {
            let inv = lookup(ld, hash);
            (inv["received_msat"] == msat).then_some(inv)
        },
    )
}

/// Waits until the plugin has processed `block_added` for `height` (the tip
/// is stored after the deadlines of that block were applied).
fn add_block(ld: &Lightningd, height: u32) {
    ld.notify("block_added", payloads::block_added(height));
    ld.wait_until(&format!("block {height} processed"), WAIT, |ld| {
        let s = status(ld);
        (s["blockheight"] == height && s["store"]["tip_height"] == height).then_some(())
    });
}

/// `ballast_hodl_state` notifications for one invoice, as
/// `(old_state, new_state, reason)`.
fn state_events(ld: &Lightningd, hash: &str) -> Vec<(String, String, Value)> {
    ld.notifications()
        .into_iter()
        .filter(|(m, p)| m == "ballast_hodl_state" && p["payment_hash"] == hash)
        .map(|(_, p)| {
            (
                string(&p, "/old_state").to_string(),
                string(&p, "/new_state").to_string(),
                p["reason"].clone(),
            )
        })
        .collect()
}

fn wait_state_events(ld: &Lightningd, hash: &str, n: usize) -> Vec<(String, String, Value)> {
    ld.wait_until(
        &format!("{n} ballast_hodl_state notification(s) for {hash}"),
        WAIT,
        |ld| {
            let e = state_events(ld, hash);
            (e.len() >= n).then_some(e)
        },
    )
}

fn transition(old: &str, new: &str) -> (String, String) {
    (old.to_string(), new.to_string())
}

fn transitions(events: &[(String, String, Value)]) -> Vec<(String, String)> {
    events.iter().map(|(o, n, _)| (o.clone(), n.clone())).collect()
}

/// BOLT 4 incorrect_or_unknown_payment_details: 0x400f, the HTLC amount
/// (u64) and our block height (u32).
fn unknown_details(amount_msat: u64, height: u32) -> Value {
    json!({"result": "fail", "failure_message": format!("400f{amount_msat:016x}{height:08x}")})
}

fn mpp_timeout() -> Value {
    json!({"result": "fail", "failure_message": "0017"})
}

fn resolve(preimage: &str) -> Value {
    json!({"result": "resolve", "payment_key": preimage})
}

fn assert_rpc_error(r: Result<Value, harness::JsonRpcError>, code: i64, what: &str) -> harness::JsonRpcError {
    match r {
        Ok(v) => panic!("{what}: expected error {code}, got result {v:#}"),
        Err(e) => {
            assert_eq!(e.code, code, "{what}: wrong error code: {e}");
            assert!(!e.message.is_empty(), "{what}: empty error message");
            e
        }
    }
}

/// An incoming HTLC for one of our invoices, as `htlc_accepted` shows it.
#[derive(Clone, Debug)]
struct Htlc {
    hash: String,
    secret: Option<String>,
    scid: String,
    id: u64,
    amount: u64,
    total: Option<u64>,
    cltv_expiry: u32,
    height: u32,
}

impl Htlc {
    /// Pays `inv` (a `hodl-invoice` result) in full with one part, with a
    /// comfortable 100 blocks to expiry.
    fn paying(inv: &Value, height: u32) -> Htlc {
        let amount = uint(inv, "/amount_msat");
        Htlc {
            hash: string(inv, "/payment_hash").to_string(),
            secret: Some(string(inv, "/payment_secret").to_string()),
            scid: SCID.to_string(),
            id: 0,
            amount,
            total: Some(amount),
            cltv_expiry: height + 100,
            height,
        }
    }

    fn part(mut self, id: u64, amount: u64) -> Htlc {
        self.id = id;
        self.amount = amount;
        self
    }

    fn with_total(mut self, total: u64) -> Htlc {
        self.total = Some(total);
        self
    }

    fn with_secret(mut self, secret: Option<String>) -> Htlc {
        self.secret = secret;
        self
    }

    fn with_expiry(mut self, cltv_expiry: u32) -> Htlc {
        self.cltv_expiry = cltv_expiry;
        self
    }

    fn on(mut self, scid: &str) -> Htlc {
        self.scid = scid.to_string();
        self
    }

    fn payload(&self) -> Value {
        let mut v = payloads::htlc_accepted(&self.hash, self.amount, self.cltv_expiry, self.height);
        let onion = v["onion"].as_object_mut().unwrap();
        match &self.secret {
            Some(s) => onion.insert("payment_secret".into(), json!(s)),
            None => onion.remove("payment_secret"),
        };
        match self.total {
            Some(t) => onion.insert("total_msat".into(), json!(t)),
            None => onion.remove("total_msat"),
        };
        v["htlc"]["short_channel_id"] = json!(self.scid);
        v["htlc"]["id"] = json!(self.id);
        v
    }
}

/// Checks the BOLT11 string of a `hodl-invoice` result: it decodes, carries
/// a valid signature by the node (`pubkey(0)`), and pays exactly what the
/// invoice record says.
fn check_bolt11(inv: &Value, amount_msat: u64, min_final_cltv: u64, expiry_secs: u64) -> Bolt11Invoice {
    let text = string(inv, "/bolt11");
    let b = Bolt11Invoice::from_str(text).unwrap_or_else(|e| panic!("bolt11 {text} does not decode: {e:?}"));
    b.check_signature().expect("valid signature");
    assert_eq!(b.currency(), Currency::Regtest, "{text}");
    assert_eq!(b.amount_milli_satoshis(), Some(amount_msat), "{text}");
    assert_eq!(
        hex::encode(b.payment_hash().to_byte_array()),
        string(inv, "/payment_hash"),
        "{text}"
    );
    assert_eq!(
        hex::encode(b.payment_secret().0),
        string(inv, "/payment_secret"),
        "{text}"
    );
    assert_eq!(b.min_final_cltv_expiry_delta(), min_final_cltv, "{text}");
    assert_eq!(b.expiry_time(), Duration::from_secs(expiry_secs), "{text}");
    assert_eq!(
        b.duration_since_epoch().as_secs(),
        uint(inv, "/created_at"),
        "{text}"
    );
    assert_eq!(
        hex::encode(b.recover_payee_pub_key().serialize()),
        pubkey(0),
        "invoice must be signed by the node itself: {text}"
    );
    let features = b.features().expect("invoice features");
    assert!(features.supports_payment_secret(), "{text}");
    assert!(features.supports_basic_mpp(), "{text}");
    b
}

/// Creates an invoice for `preimage`'s hash (ballast does not learn the
/// preimage) and checks the answer.
fn invoice_for(ld: &Lightningd, preimage: &str, amount_msat: u64, extra: Value) -> Value {
    let mut params = json!({"amount_msat": amount_msat, "payment_hash": payment_hash_of(preimage)});
    for (k, v) in extra.as_object().unwrap() {
        params[k] = v.clone();
    }
    let inv = ld.rpc_ok("hodl-invoice", params);
    assert_eq!(inv["payment_hash"], payment_hash_of(preimage));
    assert_eq!(inv["amount_msat"], amount_msat);
    assert_eq!(inv["state"], "OPEN");
    assert!(
        inv.get("preimage").is_none(),
        "ballast cannot know this preimage: {inv:#}"
    );
    inv
}

/// Pays `inv` in full and waits until it is ACCEPTED with the HTLC held.
fn pay_and_hold(ld: &Lightningd, inv: &Value, htlc: &Htlc) -> PendingHook {
    let pending = ld.send_hook("htlc_accepted", htlc.payload());
    accepted(ld, string(inv, "/payment_hash"));
    assert!(
        !ld.hook_answered(&pending),
        "the HTLC of an ACCEPTED hold invoice must be held, not answered"
    );
    pending
}

fn assert_no_preimage_in_logs(ld: &Lightningd, preimage: &str) {
    for l in ld.logs() {
        assert!(!l.message.contains(preimage), "preimage leaked into the log: {l}");
    }
}

#[test]
fn single_part_settle() {
    let ld = start();
    let height = ld.node().blockheight();
    let preimage = hash_hex("single-part settle");
    let hash = payment_hash_of(&preimage);
    let inv = invoice_for(
        &ld,
        &preimage,
        50_000,
        json!({"description": "coffee", "cltv": 40, "expiry": 3600, "label": "cafe-1"}),
    );
    assert_eq!(uint(&inv, "/expires_at") - uint(&inv, "/created_at"), 3600);
    let now = now_secs();
    assert!(
        uint(&inv, "/created_at").abs_diff(now) <= 60,
        "created_at is not now: {inv:#}"
    );
    let b = check_bolt11(&inv, 50_000, 40, 3600);
    assert_eq!(b.description().to_string(), "coffee");
    assert!(b.private_routes().is_empty(), "no route hints unless asked");

    let open = lookup(&ld, &hash);
    assert_eq!(open["state"], "OPEN");
    assert_eq!(open["received_msat"], 0);
    assert_eq!(open["htlcs"], json!([]));
    assert_eq!(open["bolt11"], inv["bolt11"]);
    assert_eq!(open["label"], "cafe-1");
    assert!(open.get("preimage").is_none());

    let htlc = Htlc::paying(&inv, height);
    let pending = pay_and_hold(&ld, &inv, &htlc);
    let acc = lookup(&ld, &hash);
    assert_eq!(acc["state"], "ACCEPTED");
    assert_eq!(acc["amount_msat"], 50_000);
    assert_eq!(acc["received_msat"], 50_000);
    let htlcs = acc["htlcs"].as_array().expect("htlcs array");
    assert_eq!(htlcs.len(), 1, "{acc:#}");
    assert_eq!(htlcs[0]["short_channel_id"], SCID);
    assert_eq!(htlcs[0]["id"], 0);
    assert_eq!(htlcs[0]["amount_msat"], 50_000);
    assert_eq!(htlcs[0]["cltv_expiry"], height + 100);
    assert_eq!(htlcs[0]["blocks_left"], 100);
    assert!(
        acc.get("preimage").is_none(),
        "preimage shown before settle: {acc:#}"
    );
    // Still held after another round trip.
    assert_eq!(list_all(&ld)["total"], 1);
    assert!(!ld.hook_answered(&pending));

    let settled = ld.rpc_ok("hodl-settle", json!({ "preimage": preimage }));
    assert_eq!(settled["state"], "SETTLED");
    assert_eq!(settled["payment_hash"], hash);
    assert_eq!(settled["preimage"], preimage);
    assert_eq!(ld.wait_hook(&pending, WAIT), resolve(&preimage));

    let after = lookup(&ld, &hash);
    assert_eq!(after["state"], "SETTLED");
    assert_eq!(after["preimage"], preimage);
    assert_eq!(after["received_msat"], 50_000);

    let events = wait_state_events(&ld, &hash, 2);
    assert_eq!(
        transitions(&events),
        vec![transition("OPEN", "ACCEPTED"), transition("ACCEPTED", "SETTLED")]
    );
    for (m, p) in ld.notifications() {
        if m == "ballast_hodl_state" {
            assert!(p["timestamp"].as_u64().is_some(), "timestamp: {p:#}");
        }
    }

    // A settled invoice can be neither settled again nor canceled.
    for (method, params) in [
        ("hodl-settle", json!({ "preimage": preimage })),
        ("hodl-cancel", json!({ "payment_hash": hash })),
    ] {
        let e = assert_rpc_error(ld.rpc(method, params), ERR_STATE, method);
        assert!(
            e.message.contains("SETTLED"),
            "{method}: error must name the state: {e}"
        );
    }
    assert_eq!(lookup(&ld, &hash), after);
    assert_no_preimage_in_logs(&ld, &preimage);
}

#[test]
fn single_part_cancel() {
    let ld = start();
    let height = ld.node().blockheight();
    let preimage = hash_hex("single-part cancel");
    let hash = payment_hash_of(&preimage);
    let inv = invoice_for(&ld, &preimage, 42_000, json!({}));
    // Defaults: 80 blocks, one day.
    check_bolt11(&inv, 42_000, 80, 86_400);

    let htlc = Htlc::paying(&inv, height);
    let pending = pay_and_hold(&ld, &inv, &htlc);

    let canceled = ld.rpc_ok("hodl-cancel", json!({ "payment_hash": hash }));
    assert_eq!(canceled["state"], "CANCELED");
    assert_eq!(canceled["cancel_reason"], "requested");
    assert_eq!(ld.wait_hook(&pending, WAIT), unknown_details(42_000, height));

    let after = lookup(&ld, &hash);
    assert_eq!(after["state"], "CANCELED");
    assert_eq!(after["cancel_reason"], "requested");
    assert!(after.get("preimage").is_none());

    let events = wait_state_events(&ld, &hash, 2);
    assert_eq!(
        transitions(&events),
        vec![transition("OPEN", "ACCEPTED"), transition("ACCEPTED", "CANCELED")]
    );
    assert_eq!(events[1].2, "requested", "cancel notification reason");

    for (method, params) in [
        ("hodl-settle", json!({ "preimage": preimage })),
        ("hodl-cancel", json!({ "payment_hash": hash })),
    ] {
        let e = assert_rpc_error(ld.rpc(method, params), ERR_STATE, method);
        assert!(
            e.message.contains("CANCELED"),
            "{method}: error must name the state: {e}"
        );
    }
    // A late HTLC for a canceled invoice is never claimed.
    let late = ld.call_hook("htlc_accepted", htlc.clone().part(1, 42_000).payload());
    assert_ne!(late["result"], "resolve", "{late}");
    assert_eq!(lookup(&ld, &hash), after);
}

#[test]
fn invoice_without_hash_returns_preimage_and_settles_by_hash() {
    let ld = start();
    let height = ld.node().blockheight();
    let inv = ld.rpc_ok(
        "hodl-invoice",
        json!({"amount_msat": 21_000, "description": "own preimage"}),
    );
    let hash = string(&inv, "/payment_hash").to_string();
    let preimage = string(&inv, "/preimage").to_string();
    assert_eq!(
        payment_hash_of(&preimage),
        hash,
        "returned preimage must hash to payment_hash"
    );
    assert_eq!(inv["state"], "OPEN");
    check_bolt11(&inv, 21_000, 80, 86_400);
    // Revealed to the creator once, but not shown by lookup before settle.
    assert!(lookup(&ld, &hash).get("preimage").is_none());

    let pending = pay_and_hold(&ld, &inv, &Htlc::paying(&inv, height));
    let settled = ld.rpc_ok("hodl-settle", json!({ "payment_hash": hash }));
    assert_eq!(settled["state"], "SETTLED");
    assert_eq!(settled["preimage"], preimage);
    assert_eq!(ld.wait_hook(&pending, WAIT), resolve(&preimage));
    assert_eq!(lookup(&ld, &hash)["preimage"], preimage);

    // Two invoices made this way never share a preimage.
    let other = ld.rpc_ok("hodl-invoice", json!({"amount_msat": 21_000}));
    assert_ne!(other["preimage"], inv["preimage"]);
    assert_ne!(other["payment_secret"], inv["payment_secret"]);

    // Settling by hash alone is impossible when the caller kept the preimage.
    let caller_pre = hash_hex("caller keeps this");
    let caller = invoice_for(&ld, &caller_pre, 9_000, json!({}));
    let caller_hash = payment_hash_of(&caller_pre);
    let held = pay_and_hold(&ld, &caller, &Htlc::paying(&caller, height).part(7, 9_000));
    let before = lookup(&ld, &caller_hash);
    let r = ld.rpc("hodl-settle", json!({ "payment_hash": caller_hash }));
    assert!(r.is_err(), "settled by hash without knowing the preimage: {r:?}");
    assert_eq!(lookup(&ld, &caller_hash), before);
    assert!(!ld.hook_answered(&held));
    ld.rpc_ok("hodl-settle", json!({ "preimage": caller_pre }));
    assert_eq!(ld.wait_hook(&held, WAIT), resolve(&caller_pre));
    assert_no_preimage_in_logs(&ld, &preimage);
}

#[test]
fn three_part_mpp_is_held_until_complete_then_settled() {
    let ld = start();
    let height = ld.node().blockheight();
    let preimage = hash_hex("three parts");
    let hash = payment_hash_of(&preimage);
    let inv = invoice_for(&ld, &preimage, 30_000, json!({}));
    let base = Htlc::paying(&inv, height);
    let parts = [
        base.clone().part(0, 10_000).on("103x1x0"),
        base.clone().part(0, 10_000).on("104x2x1"),
        base.clone().part(1, 10_000).on("103x1x0"),
    ];
    let mut pending = Vec::new();
    for (i, part) in parts.iter().enumerate().take(2) {
        pending.push(ld.send_hook("htlc_accepted", part.payload()));
        let inv = wait_received(&ld, &hash, 10_000 * (i as u64 + 1));
        assert_eq!(inv["state"], "OPEN", "incomplete set must stay OPEN: {inv:#}");
        assert_eq!(inv["htlcs"].as_array().unwrap().len(), i + 1);
        for p in &pending {
            assert!(!ld.hook_answered(p), "part of an incomplete set answered early");
        }
    }
    assert!(
        state_events(&ld, &hash).is_empty(),
        "no transition before the set is complete"
    );

    pending.push(ld.send_hook("htlc_accepted", parts[2].payload()));
    let acc = accepted(&ld, &hash);
    assert_eq!(acc["received_msat"], 30_000);
    let mut seen: Vec<(String, u64)> = acc["htlcs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (string(h, "/short_channel_id").to_string(), uint(h, "/id")))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("103x1x0".to_string(), 0),
            ("103x1x0".to_string(), 1),
            ("104x2x1".to_string(), 0)
        ]
    );
    for p in &pending {
        assert!(!ld.hook_answered(p), "a part was answered before settle");
    }

    ld.rpc_ok("hodl-settle", json!({ "preimage": preimage }));
    for p in &pending {
        assert_eq!(ld.wait_hook(p, WAIT), resolve(&preimage));
    }
    let events = wait_state_events(&ld, &hash, 2);
    assert_eq!(
        transitions(&events),
        vec![transition("OPEN", "ACCEPTED"), transition("ACCEPTED", "SETTLED")]
    );
}

#[test]
fn incomplete_mpp_set_times_out() {
    let ld = builder().option("ballast-hodl-mpp-timeout", 1).start();
    let height = ld.node().blockheight();
    let preimage = hash_hex("partial set");
    let hash = payment_hash_of(&preimage);
    let inv = invoice_for(&ld, &preimage, 20_000, json!({}));
    let first = Htlc::paying(&inv, height).part(0, 10_000);
    assert_eq!(first.total, Some(20_000));
    let pending = ld.send_hook("htlc_accepted", first.payload());
    assert_eq!(ld.wait_hook(&pending, WAIT), mpp_timeout());

    let after = wait_received(&ld, &hash, 0);
    assert_eq!(
        after["state"], "OPEN",
        "a timed-out set leaves the invoice payable: {after:#}"
    );
    assert_eq!(after["htlcs"], json!([]));
    assert!(state_events(&ld, &hash).is_empty());

    // Still payable: a complete payment is accepted afterwards.
    let full = Htlc::paying(&inv, height).part(1, 20_000);
    let held = pay_and_hold(&ld, &inv, &full);
    ld.rpc_ok("hodl-settle", json!({ "preimage": preimage }));
    assert_eq!(ld.wait_hook(&held, WAIT), resolve(&preimage));
}

#[test]
fn bad_htlcs_fail_at_once_and_change_nothing() {
    let ld = start();
    let height = ld.node().blockheight();
    let preimage = hash_hex("bad htlcs");
    let hash = payment_hash_of(&preimage);
    let inv = invoice_for(&ld, &preimage, 10_000, json!({"cltv": 40}));
    let good = Htlc::paying(&inv, height);
    let before = lookup(&ld, &hash);

    let cases = [
        (
            "wrong payment_secret",
            good.clone().with_secret(Some(hash_hex("not the secret"))),
        ),
        ("no payment_secret", good.clone().with_secret(None)),
        ("too small", good.clone().part(0, 9_999).with_total(9_999)),
        (
            "total below the amount",
            good.clone().part(0, 5_000).with_total(9_999),
        ),
        (
            "more than twice the amount",
            good.clone().part(0, 20_001).with_total(20_001),
        ),
        (
            "cltv_expiry_relative below min_final_cltv",
            good.clone().with_expiry(height + 39),
        ),
    ];
    for (i, (what, htlc)) in cases.into_iter().enumerate() {
        let amount = htlc.amount;
        let htlc = htlc.part(100 + i as u64, amount);
        let answer = ld.call_hook("htlc_accepted", htlc.payload());
        assert_eq!(answer, unknown_details(htlc.amount, height), "{what}");
        assert_eq!(lookup(&ld, &hash), before, "{what}: invoice changed");
    }
    assert!(state_events(&ld, &hash).is_empty());

    // Parts must agree on the total; overpaying up to 2x is fine; a complete
    // set takes no more parts.
    let a = ld.send_hook(
        "htlc_accepted",
        good.clone().part(1, 10_000).with_total(20_000).payload(),
    );
    wait_received(&ld, &hash, 10_000);
    let disagree = good.clone().part(2, 5_000).with_total(15_000);
    assert_eq!(
        ld.call_hook("htlc_accepted", disagree.payload()),
        unknown_details(5_000, height),
        "a part announcing another total"
    );
    let c = ld.send_hook(
        "htlc_accepted",
        good.clone().part(3, 10_000).with_total(20_000).payload(),
    );
    let acc = wait_state(&ld, &hash, "ACCEPTED");
    assert_eq!(acc["received_msat"], 20_000, "overpayment up to 2x is accepted");
    let extra = good.clone().part(4, 1_000).with_total(20_000);
    assert_eq!(
        ld.call_hook("htlc_accepted", extra.payload()),
        unknown_details(1_000, height),
        "a part after the set is complete"
    );
    assert_eq!(lookup(&ld, &hash), acc);
    assert!(!ld.hook_answered(&a) && !ld.hook_answered(&c));
    ld.rpc_ok("hodl-cancel", json!({ "payment_hash": hash }));
    assert_eq!(ld.wait_hook(&a, WAIT), unknown_details(10_000, height));
    assert_eq!(ld.wait_hook(&c, WAIT), unknown_details(10_000, height));
}

#[test]
fn deadline_warns_then_cancels_on_block_added() {
    // A node whose cltv-delta (6, regtest's) puts lightningd's fulfilment deadline inside
    // ballast's configured 10-block window: the window stays 10.
    let node = FakeNode::new();
    node.with(|s| s.cltv_delta = 6);
    let ld = builder().node(node).start();
    let height = ld.node().blockheight();
    let preimage = hash_hex("deadline");
    let hash = payment_hash_of(&preimage);
    let inv = invoice_for(&ld, &preimage, 77_000, json!({"cltv": 20}));
    let expiry = height + 30;
    let htlc = Htlc::paying(&inv, height).with_expiry(expiry);
    let pending = pay_and_hold(&ld, &inv, &htlc);

    let alerts = |ld: &Lightningd| -> Vec<Value> {
        ld.notifications()
            .into_iter()
            .filter(|(m, p)| m == "ballast_alert" && p["payment_hash"] == hash)
            .map(|(_, p)| p)
            .collect()
    };
    // Defaults: cancel 10 blocks before expiry, warn 6 blocks before that.
    let cancel_at = expiry - 10;
    let warn_at = cancel_at - 6;
    for h in height + 1..warn_at {
        add_block(&ld, h);
    }
    assert!(alerts(&ld).is_empty(), "warned too early: {:?}", alerts(&ld));
    let inv_now = lookup(&ld, &hash);
    assert_eq!(inv_now["state"], "ACCEPTED");
    assert_eq!(inv_now["htlcs"][0]["blocks_left"], expiry - (warn_at - 1));
    assert!(!ld.hook_answered(&pending));

    add_block(&ld, warn_at);
    let alert = ld.wait_until("a hodl_deadline alert", WAIT, |ld| alerts(ld).into_iter().next());
    assert_eq!(alert["type"], "hodl_deadline", "{alert:#}");
    assert_eq!(alert["blocks_to_cancel"], 6, "{alert:#}");
    assert_eq!(lookup(&ld, &hash)["state"], "ACCEPTED", "warning must not cancel");
    let warning = ld.wait_for_log(&format!("hold invoice {hash}: settle within"), WAIT);
    assert_eq!(warning.level, "warn", "{warning}");

    for h in warn_at + 1..cancel_at {
        add_block(&ld, h);
        assert_eq!(lookup(&ld, &hash)["state"], "ACCEPTED", "canceled early at {h}");
        assert!(!ld.hook_answered(&pending), "answered early at {h}");
    }
    add_block(&ld, cancel_at);
    assert_eq!(ld.wait_hook(&pending, WAIT), unknown_details(77_000, cancel_at));
    let canceled = wait_state(&ld, &hash, "CANCELED");
    assert_eq!(canceled["cancel_reason"], "deadline");

    let events = wait_state_events(&ld, &hash, 2);
    assert_eq!(events[1].0, "ACCEPTED");
    assert_eq!(events[1].1, "CANCELED");
    assert_eq!(events[1].2, "deadline");
    // The first warning came before the cancellation.
    let all = ld.notifications();
    let first_alert = all
        .iter()
        .position(|(m, p)| m == "ballast_alert" && p["payment_hash"] == hash)
        .unwrap();
    let cancel_event = all
        .iter()
        .position(|(m, p)| {
            m == "ballast_hodl_state" && p["payment_hash"] == hash && p["new_state"] == "CANCELED"
        })
        .unwrap();
    assert!(first_alert < cancel_event, "warning must precede the cancel");
}

#[test]
fn blocks_in_a_burst_leave_the_latest_height() {
    // lightningd sends block_added back to back while it catches up with
    // the chain; the plugin's height (used for deadlines, blocks_left and
    // failure messages) and its stored tip must end at the newest block,
    // not at whichever notification happened to be handled last.
    let ld = start();
    let first = ld.node().blockheight() + 1;
    let last = first + 199;
    for h in first..=last {
        ld.notify("block_added", payloads::block_added(h));
    }
    ld.wait_until("every block_added counted", WAIT, |ld| {
        (status(ld)["counters"]["blocks"] == u64::from(last - first + 1)).then_some(())
    });
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let s = status(&ld);
        if s["blockheight"] == last && s["store"]["tip_height"] == last {
            break;
        }
        if std::time::Instant::now() >= deadline {
            panic!(
                "after block_added {first}..={last} in a burst the plugin has blockheight {} and stored \
                 tip {} (expected {last} for both): notifications were applied out of order",
                s["blockheight"], s["store"]["tip_height"]
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kill9_while_held_then_replay_and_settle() {
    let base = tempfile::tempdir().unwrap();
    let node = FakeNode::new();
    let preimage = hash_hex("kill while held");
    let hash = payment_hash_of(&preimage);
    let (htlc, inv) = {
        let mut ld = builder().base_dir(base.path()).node(node.clone()).start();
        let height = ld.node().blockheight();
        let inv = invoice_for(&ld, &preimage, 64_000, json!({}));
        let htlc = Htlc::paying(&inv, height).part(17, 64_000).on("105x3x1");
        let _lost = pay_and_hold(&ld, &inv, &htlc);
        ld.kill9();
        (htlc, inv)
    };
    let ld = builder().base_dir(base.path()).node(node).start();
    let before = lookup(&ld, &hash);
    assert_eq!(before["state"], "ACCEPTED", "{before:#}");
    assert_eq!(before["bolt11"], inv["bolt11"]);
    assert_eq!(before["htlcs"].as_array().unwrap().len(), 1);
    assert_eq!(before["htlcs"][0]["short_channel_id"], "105x3x1");
    assert_eq!(before["htlcs"][0]["id"], 17);

    // lightningd replays the undecided HTLC at start-up.
    let replay = ld.send_hook("htlc_accepted", htlc.payload());
    ld.wait_until("the replay to reach the hold-invoice path", WAIT, |ld| {
        (status(ld)["counters"]["htlcs_claimed"] == 1).then_some(())
    });
    assert_eq!(lookup(&ld, &hash)["state"], "ACCEPTED");
    assert!(
        !ld.hook_answered(&replay),
        "a replay of a held HTLC must be held again"
    );

    let settled = ld.rpc_ok("hodl-settle", json!({ "preimage": preimage }));
    // Had the replay been taken for a new part, the ACCEPTED invoice would
    // have failed it instead.
    assert_eq!(ld.wait_hook(&replay, WAIT), resolve(&preimage));
    assert_eq!(
        settled["received_msat"], 64_000,
        "replay counted twice: {settled:#}"
    );
    let after = lookup(&ld, &hash);
    assert_eq!(after["htlcs"].as_array().unwrap().len(), 1, "{after:#}");
    assert_eq!(after["received_msat"], 64_000, "replay counted twice: {after:#}");
}

#[test]
fn kill9_after_settle_then_replay_resolves_at_once() {
    let base = tempfile::tempdir().unwrap();
    let node = FakeNode::new();
    let (inv, htlc) = {
        let mut ld = builder().base_dir(base.path()).node(node.clone()).start();
        let height = ld.node().blockheight();
        let inv = ld.rpc_ok("hodl-invoice", json!({"amount_msat": 33_000}));
        let htlc = Htlc::paying(&inv, height).part(4, 33_000);
        let pending = pay_and_hold(&ld, &inv, &htlc);
        ld.rpc_ok("hodl-settle", json!({ "payment_hash": inv["payment_hash"] }));
        assert_eq!(ld.wait_hook(&pending, WAIT), resolve(string(&inv, "/preimage")));
        ld.kill9();
        (inv, htlc)
    };
    let preimage = string(&inv, "/preimage");
    let hash = string(&inv, "/payment_hash");
    let ld = builder().base_dir(base.path()).node(node).start();
    let settled = lookup(&ld, hash);
    assert_eq!(settled["state"], "SETTLED");
    assert_eq!(settled["preimage"], preimage);
    // Had lightningd not processed our answer before going down, it replays.
    assert_eq!(ld.call_hook("htlc_accepted", htlc.payload()), resolve(preimage));
    assert_eq!(lookup(&ld, hash), settled);
}

#[test]
fn settle_racing_cancel_has_exactly_one_winner() {
    let ld = start();
    let height = ld.node().blockheight();
    let mut held = Vec::new();
    for i in 0..20u64 {
        let inv = ld.rpc_ok("hodl-invoice", json!({"amount_msat": 1_000 + i}));
        let htlc = Htlc::paying(&inv, height).part(i, 1_000 + i);
        let pending = pay_and_hold(&ld, &inv, &htlc);
        held.push((inv, pending));
    }
    let mut wins = (0, 0);
    for (inv, pending) in &held {
        let hash = string(inv, "/payment_hash");
        let barrier = Barrier::new(2);
        let (settle, cancel) = std::thread::scope(|s| {
            let settle = s.spawn(|| {
                barrier.wait();
                ld.rpc("hodl-settle", json!({ "payment_hash": hash }))
            });
            let cancel = s.spawn(|| {
                barrier.wait();
                ld.rpc("hodl-cancel", json!({ "payment_hash": hash }))
            });
            (settle.join().unwrap(), cancel.join().unwrap())
        });
        let answer = ld.wait_hook(pending, WAIT);
        let amount = uint(inv, "/amount_msat");
        let final_state = match (settle, cancel) {
            (Ok(s), Err(e)) => {
                wins.0 += 1;
                assert_eq!(s["state"], "SETTLED");
                assert_eq!(e.code, ERR_STATE, "{e}");
                assert!(
                    e.message.contains("SETTLED"),
                    "loser's error must name the state: {e}"
                );
                assert_eq!(answer, resolve(string(inv, "/preimage")));
                "SETTLED"
            }
            (Err(e), Ok(c)) => {
                wins.1 += 1;
                assert_eq!(c["state"], "CANCELED");
                assert_eq!(e.code, ERR_STATE, "{e}");
                assert!(
                    e.message.contains("CANCELED"),
                    "loser's error must name the state: {e}"
                );
                assert_eq!(answer, unknown_details(amount, height));
                "CANCELED"
            }
            (s, c) => panic!("exactly one of settle/cancel must win for {hash}: settle {s:?}, cancel {c:?}"),
        };
        assert_eq!(lookup(&ld, hash)["state"], final_state);
        let events = wait_state_events(&ld, hash, 2);
        assert_eq!(events.len(), 2, "one transition out of ACCEPTED: {events:?}");
    }
    eprintln!("settle won {} times, cancel {} times", wins.0, wins.1);
}

#[test]
fn shutdown_answers_held_htlcs_before_exiting() {
    let base = tempfile::tempdir().unwrap();
    let node = FakeNode::new();
    let height = node.blockheight();
    let pre_full = hash_hex("stop: accepted");
    let pre_part = hash_hex("stop: partial");
    {
        let mut ld = builder().base_dir(base.path()).node(node.clone()).start();
        let full = invoice_for(&ld, &pre_full, 5_000, json!({}));
        let part = invoice_for(&ld, &pre_part, 8_000, json!({}));
        let full_htlc = Htlc::paying(&full, height).part(1, 5_000);
        let part_htlc = Htlc::paying(&part, height).part(2, 3_000);
        let full_pending = pay_and_hold(&ld, &full, &full_htlc);
        let part_pending = ld.send_hook("htlc_accepted", part_htlc.payload());
        wait_received(&ld, &payment_hash_of(&pre_part), 3_000);

        ld.notify("shutdown", json!({}));
        // Answered (failed: nothing was settled) before the plugin exits.
        assert_eq!(ld.wait_hook(&full_pending, WAIT), unknown_details(5_000, height));
        assert_eq!(ld.wait_hook(&part_pending, WAIT), unknown_details(3_000, height));
        let code = ld
            .wait_exit(WAIT)
            .unwrap_or_else(|| ld.fail("plugin did not exit after shutdown"));
        assert!(code.success(), "exit status {code}; stderr:\n{}", ld.stderr());
        assert!(!ld.stderr().contains("panicked"), "{}", ld.stderr());
    }

    // `plugin start` while lightningd kept running: those failures were
    // real, so the accepted invoice has nothing left to settle.
    let ld = builder()
        .base_dir(base.path())
        .node(node.clone())
        .startup(false)
        .start();
    let full = wait_state(&ld, &payment_hash_of(&pre_full), "CANCELED");
    assert_eq!(full["cancel_reason"], "shutdown", "{full:#}");
    let events = wait_state_events(&ld, &payment_hash_of(&pre_full), 1);
    assert_eq!(transitions(&events), vec![transition("ACCEPTED", "CANCELED")]);
    assert_eq!(events[0].2, "shutdown");
    let part = lookup(&ld, &payment_hash_of(&pre_part));
    assert_eq!(part["state"], "OPEN", "{part:#}");
    assert_eq!(part["received_msat"], 0, "the failed part is gone: {part:#}");
    let e = assert_rpc_error(
        ld.rpc("hodl-settle", json!({"preimage": pre_full})),
        ERR_STATE,
        "settle",
    );
    assert!(e.message.contains("CANCELED"), "{e}");
}

#[test]
fn shutdown_with_lightningd_then_replay_keeps_invoice_settleable() {
    let base = tempfile::tempdir().unwrap();
    let node = FakeNode::new();
    let height = node.blockheight();
    let preimage = hash_hex("node restart");
    let hash = payment_hash_of(&preimage);
    let htlc = {
        let mut ld = builder().base_dir(base.path()).node(node.clone()).start();
        let inv = invoice_for(&ld, &preimage, 12_000, json!({}));
        let htlc = Htlc::paying(&inv, height).part(9, 12_000);
        let pending = pay_and_hold(&ld, &inv, &htlc);
        ld.notify("shutdown", json!({}));
        assert_eq!(ld.wait_hook(&pending, WAIT), unknown_details(12_000, height));
        ld.wait_exit(WAIT)
            .unwrap_or_else(|| ld.fail("plugin did not exit after shutdown"));
        htlc
    };
    // lightningd itself restarted: it ignored the answer and replays the HTLC.
    let ld = builder().base_dir(base.path()).node(node).start();
    assert_eq!(lookup(&ld, &hash)["state"], "ACCEPTED");
    let replay = ld.send_hook("htlc_accepted", htlc.payload());
    ld.wait_until("replay processed", WAIT, |ld| {
        (status(ld)["counters"]["htlcs_claimed"] == 1).then_some(())
    });
    assert!(!ld.hook_answered(&replay));
    assert_eq!(lookup(&ld, &hash)["received_msat"], 12_000);
    ld.rpc_ok("hodl-settle", json!({ "preimage": preimage }));
    assert_eq!(ld.wait_hook(&replay, WAIT), resolve(&preimage));
}

#[test]
fn lookup_waits_for_a_state() {
    let ld = start();
    let height = ld.node().blockheight();
    let inv = ld.rpc_ok("hodl-invoice", json!({"amount_msat": 2_000}));
    let hash = string(&inv, "/payment_hash");

    let e = assert_rpc_error(
        ld.rpc(
            "hodl-lookup",
            json!({"payment_hash": hash, "wait_for_state": "ACCEPTED", "timeout": 1}),
        ),
        ERR_WAIT_TIMEOUT,
        "wait timing out",
    );
    assert!(e.message.contains("OPEN"), "{e}");

    let (waited, pending) = std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            ld.rpc(
                "hodl-lookup",
                json!({"payment_hash": hash, "wait_for_state": "ACCEPTED", "timeout": 20}),
            )
        });
        let pending = ld.send_hook("htlc_accepted", Htlc::paying(&inv, height).payload());
        (waiter.join().unwrap(), pending)
    });
    let waited = waited.expect("wait_for_state ACCEPTED");
    assert_eq!(waited["state"], "ACCEPTED");
    assert_eq!(waited["received_msat"], 2_000);

    // Already there: answers at once; a final state that can never change: 2002.
    let now = ld.rpc_ok(
        "hodl-lookup",
        json!({"payment_hash": hash, "wait_for_state": "accepted"}),
    );
    assert_eq!(now["state"], "ACCEPTED");
    ld.rpc_ok("hodl-cancel", json!({ "payment_hash": hash }));
    assert_eq!(ld.wait_hook(&pending, WAIT), unknown_details(2_000, height));
    let e = assert_rpc_error(
        ld.rpc(
            "hodl-lookup",
            json!({"payment_hash": hash, "wait_for_state": "SETTLED", "timeout": 5}),
        ),
        ERR_STATE,
        "waiting for the impossible",
    );
    assert!(e.message.contains("CANCELED"), "{e}");
}

#[test]
fn bad_params_are_refused_and_change_nothing() {
    let ld = start();
    let height = ld.node().blockheight();
    let open_pre = hash_hex("bad params: open");
    let open_hash = payment_hash_of(&open_pre);
    invoice_for(&ld, &open_pre, 10_000, json!({"label": "taken"}));
    let acc = ld.rpc_ok("hodl-invoice", json!({"amount_msat": 20_000}));
    let acc_hash = string(&acc, "/payment_hash").to_string();
    let acc_pre = string(&acc, "/preimage").to_string();
    let held = pay_and_hold(&ld, &acc, &Htlc::paying(&acc, height));

    let unknown_pre = hash_hex("nobody's preimage");
    let unknown_hash = payment_hash_of(&unknown_pre);
    let zz = "zz".repeat(32);
    let short = "ab".repeat(31);
    let long = "ab".repeat(33);
    let bad = INVALID_PARAMS;
    // (method, expected error code, params)
    let cases: Vec<(&str, i64, Vec<Value>)> = vec![
        (
            "hodl-invoice",
            bad,
            vec![
                json!({}),
                json!([]),
                json!({"amount_msat": "ten"}),
                json!({"amount_msat": true}),
                json!({"amount_msat": [1000]}),
                json!({"amount_msat": 0}),
                json!({"amount_msat": "0"}),
                json!({"amount_msat": -1000}),
                json!({"amount_msat": 1.5}),
                json!([-5]),
                json!({"amount_msat": 1000, "payment_hash": zz}),
                json!({"amount_msat": 1000, "payment_hash": "abc"}),
                json!({"amount_msat": 1000, "payment_hash": short}),
                json!({"amount_msat": 1000, "payment_hash": long}),
                json!({"amount_msat": 1000, "payment_hash": 42}),
                json!({"amount_msat": 1000, "description": 42}),
                json!({"amount_msat": 1000, "expiry": 0}),
                json!({"amount_msat": 1000, "expiry": -1}),
                json!({"amount_msat": 1000, "expiry": "soon"}),
                json!({"amount_msat": 1000, "cltv": 5}),
                json!({"amount_msat": 1000, "cltv": 15}),
                json!({"amount_msat": 1000, "cltv": 2017}),
                json!({"amount_msat": 1000, "cltv": 4_294_967_296u64}),
                json!({"amount_msat": 1000, "cltv": -40}),
                json!({"amount_msat": 1000, "description_hash": "xyz"}),
                json!({"amount_msat": 1000, "description": "d", "description_hash": "00".repeat(32)}),
                json!({"amount_msat": 1000, "label": 7}),
                json!({"amount_msat": 1000, "exposeprivatechannels": "maybe"}),
                json!({"amount_msat": 1000, "exposeprivatechannels": ["nope"]}),
                json!({"amount_msat": 1000, "bogus": 1}),
                json!({"amount": 1000}),
                json!([1000, null, "d", 3600, 40, null, "l", false, "extra"]),
            ],
        ),
        (
            "hodl-invoice",
            ERR_DUPLICATE,
            vec![
                json!({"amount_msat": 1000, "payment_hash": open_hash}),
                json!({"amount_msat": 1000, "payment_hash": acc_hash}),
                json!({"amount_msat": 1000, "label": "taken"}),
            ],
        ),
        (
            "hodl-settle",
            bad,
            vec![
                json!({}),
                json!([]),
                json!({"preimage": zz}),
                json!({"preimage": "abc"}),
                json!({"preimage": short}),
                json!({"preimage": 5}),
                json!({"payment_hash": zz}),
                json!({"payment_hash": 5}),
                json!({"preimage": acc_pre, "payment_hash": open_hash}),
                json!({"preimage": acc_pre, "bogus": 1}),
                json!({"payment_key": acc_pre}),
                json!([acc_pre, acc_hash, "extra"]),
            ],
        ),
        (
            "hodl-settle",
            ERR_UNKNOWN,
            vec![
                json!({"preimage": unknown_pre}),
                json!({"payment_hash": unknown_hash}),
            ],
        ),
        // Not ACCEPTED yet.
        ("hodl-settle", ERR_STATE, vec![json!({"preimage": open_pre})]),
        (
            "hodl-cancel",
            bad,
            vec![
                json!({}),
                json!([]),
                json!({"payment_hash": zz}),
                json!({"payment_hash": "abc"}),
                json!({"payment_hash": short}),
                json!({"payment_hash": 5}),
                json!({"payment_hash": acc_hash, "bogus": 1}),
                json!({"preimage": acc_pre}),
                json!([acc_hash, "extra"]),
            ],
        ),
        (
            "hodl-cancel",
            ERR_UNKNOWN,
            vec![json!({"payment_hash": unknown_hash})],
        ),
        (
            "hodl-lookup",
            bad,
            vec![
                json!({}),
                json!([]),
                json!({"payment_hash": zz}),
                json!({"payment_hash": "abc"}),
                json!({"payment_hash": long}),
                json!({"payment_hash": 5}),
                json!({"payment_hash": acc_hash, "wait_for_state": "PAID"}),
                json!({"payment_hash": acc_hash, "wait_for_state": 3}),
                json!({"payment_hash": acc_hash, "timeout": -1}),
                json!({"payment_hash": acc_hash, "timeout": "soon"}),
                json!({"payment_hash": acc_hash, "timeout": 1_000_000_000}),
                json!({"payment_hash": acc_hash, "bogus": 1}),
                json!([acc_hash, "ACCEPTED", 1, "extra"]),
            ],
        ),
        (
            "hodl-lookup",
            ERR_UNKNOWN,
            vec![json!({"payment_hash": unknown_hash})],
        ),
        (
            "hodl-list",
            bad,
            vec![
                json!({"state": "PAID"}),
                json!({"state": 1}),
                json!({"limit": -1}),
                json!({"limit": "many"}),
                json!({"offset": -1}),
                json!({"offset": 1.5}),
                json!({"bogus": 1}),
                json!(["OPEN", 1, 0, "extra"]),
            ],
        ),
    ];

    let before_list = list_all(&ld);
    assert_eq!(before_list["total"], 2);
    let before_open = lookup(&ld, &open_hash);
    let before_acc = lookup(&ld, &acc_hash);
    let signs_before = ld.node().calls_to("signinvoice").len();
    for (method, code, params) in cases
        .iter()
        .flat_map(|(m, c, ps)| ps.iter().map(move |p| (m, c, p)))
    {
        let what = format!("{method} {params}");
        assert_rpc_error(ld.rpc(method, params.clone()), *code, &what);
        assert_eq!(list_all(&ld), before_list, "{what}: hodl-list changed");
        assert_eq!(
            lookup(&ld, &open_hash),
            before_open,
            "{what}: OPEN invoice changed"
        );
        assert_eq!(
            lookup(&ld, &acc_hash),
            before_acc,
            "{what}: ACCEPTED invoice changed"
        );
        assert!(!ld.hook_answered(&held), "{what}: the held HTLC was answered");
    }
    // Invalid requests never got as far as asking the node to sign.
    assert_eq!(ld.node().calls_to("signinvoice").len(), signs_before);
    // Nothing leaked into the state machine's announcements either.
    assert!(state_events(&ld, &open_hash).is_empty());
    assert_eq!(state_events(&ld, &acc_hash).len(), 1);

    // And the invoices still work.
    ld.rpc_ok("hodl-settle", json!({ "preimage": acc_pre }));
    assert_eq!(ld.wait_hook(&held, WAIT), resolve(&acc_pre));
}

#[test]
fn positional_params_work_like_named_ones() {
    let ld = start();
    let height = ld.node().blockheight();
    let pre_n = hash_hex("named");
    let pre_p = hash_hex("positional");
    let named = ld.rpc_ok(
        "hodl-invoice",
        json!({"amount_msat": 5_000, "payment_hash": payment_hash_of(&pre_n), "description": "d",
               "expiry": 600, "cltv": 30, "label": "by-name", "exposeprivatechannels": false}),
    );
    let positional = ld.rpc_ok(
        "hodl-invoice",
        json!([
            5_000,
            payment_hash_of(&pre_p),
            "d",
            600,
            30,
            null,
            "by-position",
            false
        ]),
    );
    for inv in [&named, &positional] {
        assert_eq!(inv["state"], "OPEN");
        assert_eq!(inv["amount_msat"], 5_000);
        assert_eq!(uint(inv, "/expires_at") - uint(inv, "/created_at"), 600);
        let b = check_bolt11(inv, 5_000, 30, 600);
        assert_eq!(b.description().to_string(), "d");
    }
    assert_eq!(positional["payment_hash"], payment_hash_of(&pre_p));
    let dh = hash_hex("a long description");
    let by_hash = ld.rpc_ok("hodl-invoice", json!([7_000, null, null, null, null, dh]));
    assert_eq!(by_hash["amount_msat"], 7_000);
    let b = check_bolt11(&by_hash, 7_000, 80, 86_400);
    assert_eq!(b.description().to_string(), dh, "description_hash by position");
    assert!(
        by_hash.get("preimage").is_some(),
        "no payment_hash given by position"
    );

    // hodl-lookup
    let hash_p = payment_hash_of(&pre_p);
    let l_named = ld.rpc_ok("hodl-lookup", json!({ "payment_hash": hash_p }));
    let l_pos = ld.rpc_ok("hodl-lookup", json!([hash_p]));
    assert_eq!(l_named, l_pos);
    assert_eq!(l_pos["label"], "by-position");
    assert_eq!(l_pos["min_final_cltv_expiry"], 30);
    assert_eq!(ld.rpc_ok("hodl-lookup", json!([hash_p, "OPEN", 5])), l_named);
    assert_eq!(
        ld.rpc("hodl-lookup", json!([hash_p, "ACCEPTED", 1]))
            .unwrap_err()
            .code,
        ERR_WAIT_TIMEOUT
    );

    // hodl-list
    assert_eq!(
        ld.rpc_ok("hodl-list", json!([])),
        ld.rpc_ok("hodl-list", json!({}))
    );
    assert_eq!(ld.rpc_ok("hodl-list", json!({}))["total"], 3);
    let l1 = ld.rpc_ok("hodl-list", json!({"state": "OPEN", "limit": 1, "offset": 1}));
    let l2 = ld.rpc_ok("hodl-list", json!(["OPEN", 1, 1]));
    assert_eq!(l1, l2);
    assert_eq!(l1["total"], 3);
    assert_eq!(l1["invoices"].as_array().unwrap().len(), 1);
    let all = ld.rpc_ok("hodl-list", json!({}));
    assert_eq!(
        l1["invoices"][0], all["invoices"][1],
        "offset 1 is the second newest"
    );
    assert_eq!(
        ld.rpc_ok("hodl-list", json!([null, 2]))["invoices"],
        json!(all["invoices"].as_array().unwrap()[..2])
    );
    assert_eq!(ld.rpc_ok("hodl-list", json!(["SETTLED"]))["total"], 0);

    // hodl-settle and hodl-cancel
    let h_n = pay_and_hold(&ld, &named, &Htlc::paying(&named, height).part(1, 5_000));
    let h_p = pay_and_hold(
        &ld,
        &positional,
        &Htlc::paying(&positional, height).part(2, 5_000),
    );
    let h_d = pay_and_hold(&ld, &by_hash, &Htlc::paying(&by_hash, height).part(3, 7_000));
    let s_p = ld.rpc_ok("hodl-settle", json!([pre_p]));
    assert_eq!(s_p["state"], "SETTLED");
    assert_eq!(ld.wait_hook(&h_p, WAIT), resolve(&pre_p));
    let s_d = ld.rpc_ok("hodl-settle", json!([null, by_hash["payment_hash"]]));
    assert_eq!(s_d["state"], "SETTLED");
    assert_eq!(ld.wait_hook(&h_d, WAIT), resolve(string(&by_hash, "/preimage")));
    let c_n = ld.rpc_ok("hodl-cancel", json!([payment_hash_of(&pre_n)]));
    assert_eq!(c_n["state"], "CANCELED");
    assert_eq!(ld.wait_hook(&h_n, WAIT), unknown_details(5_000, height));
    assert_eq!(ld.rpc_ok("hodl-list", json!(["SETTLED"]))["total"], 2);
    assert_eq!(ld.rpc_ok("hodl-list", json!(["canceled"]))["total"], 1);
}

#[test]
fn route_hints_for_private_channels_on_request() {
    let node = FakeNode::new();
    let mut private = Channel::new(&pubkey(2), "120x1x0", 2_000_000_000, 1_000_000_000);
    private.private = true;
    private.remote_fee_base_msat = 1_500;
    private.remote_fee_proportional_millionths = 7;
    node.add_channel(private);
    node.add_channel(Channel::new(&pubkey(3), "121x1x0", 2_000_000_000, 1_000_000_000));
    let ld = builder().node(node).start();

    let plain = ld.rpc_ok("hodl-invoice", json!({"amount_msat": 1_000}));
    assert!(check_bolt11(&plain, 1_000, 80, 86_400)
        .private_routes()
        .is_empty());

    let hinted = ld.rpc_ok(
        "hodl-invoice",
        json!({"amount_msat": 1_000, "exposeprivatechannels": true}),
    );
    let b = check_bolt11(&hinted, 1_000, 80, 86_400);
    let hints = b.route_hints();
    assert_eq!(
        hints.len(),
        1,
        "one hint, for the private channel only: {hints:?}"
    );
    let hop = &hints[0].0[0];
    assert_eq!(hex::encode(hop.src_node_id.serialize()), pubkey(2));
    assert_eq!(hop.short_channel_id, (120u64 << 40) | (1 << 16));
    assert_eq!(hop.fees.base_msat, 1_500);
    assert_eq!(hop.fees.proportional_millionths, 7);
}

#[test]
fn ordinary_invoices_and_unrelated_htlcs_continue() {
    let ld = start();
    let height = ld.node().blockheight();
    // A claimed hash exists, so the fast path has something to look up.
    let inv = ld.rpc_ok("hodl-invoice", json!({"amount_msat": 10_000}));
    let hash = string(&inv, "/payment_hash");
    assert_eq!(status(&ld)["claimed_hashes"], 1);

    let r = ld.call_hook(
        "invoice_payment",
        payloads::invoice_payment("ordinary", &hash_hex("ordinary preimage"), 10_000),
    );
    assert_eq!(r, json!({"result": "continue"}));
    let other = payloads::htlc_accepted(&hash_hex("somebody else's invoice"), 10_000, height + 100, height);
    assert_eq!(
        ld.call_hook("htlc_accepted", other),
        json!({"result": "continue"})
    );
    let fwd = payloads::htlc_forward(&hash_hex("a forward"), "103x1x0", "104x2x1", 5_010, 5_000);
    assert_eq!(ld.call_hook("htlc_accepted", fwd), json!({"result": "continue"}));

    let s = status(&ld);
    assert_eq!(s["counters"]["invoices_passed_through"], 1, "{s:#}");
    assert_eq!(s["counters"]["htlcs_passed_through"], 2, "{s:#}");
    assert_eq!(s["counters"]["htlcs_claimed"], 0, "{s:#}");
    let after = lookup(&ld, hash);
    assert_eq!(after["state"], "OPEN");
    assert_eq!(after["received_msat"], 0);

    // Once a hold invoice is canceled, its hash is no longer claimed.
    ld.rpc_ok("hodl-cancel", json!({ "payment_hash": hash }));
    assert_eq!(status(&ld)["claimed_hashes"], 0);
}

#[test]
fn concurrent_invoices_with_one_label_create_only_one() {
    // Labels are unique (2003 for a duplicate), also when the requests
    // overlap: a payment app retrying a timed-out call must not end up with
    // two invoices under one label.
    let ld = start();
    for round in 0..5 {
        let label = format!("shared-label-{round}");
        let barrier = Barrier::new(4);
        let results: Vec<Result<Value, harness::JsonRpcError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        ld.rpc("hodl-invoice", json!({"amount_msat": 1_000, "label": label}))
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let with_label: Vec<Value> = list_all(&ld)["invoices"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["label"] == label)
            .map(|i| i["payment_hash"].clone())
            .collect();
        let created = results.iter().filter(|r| r.is_ok()).count();
        let answers: Vec<Result<&Value, i64>> = results
            .iter()
            .map(|r| r.as_ref().map(|v| &v["payment_hash"]).map_err(|e| e.code))
            .collect();
        assert_eq!(
            (created, with_label.len()),
            (1, 1),
            "round {round}: 4 concurrent hodl-invoice calls with label {label:?} created {created} \
             invoices (listed: {with_label:?}); answers: {answers:?}"
        );
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            assert_eq!(e.code, ERR_DUPLICATE, "{e}");
        }
    }
}

#[test]
fn unpaid_invoice_expires() {
    let ld = start();
    let height = ld.node().blockheight();
    let inv = ld.rpc_ok("hodl-invoice", json!({"amount_msat": 3_000, "expiry": 1}));
    let hash = string(&inv, "/payment_hash");
    check_bolt11(&inv, 3_000, 80, 1);
    assert_eq!(status(&ld)["claimed_hashes"], 1);
    let expired = wait_state(&ld, hash, "EXPIRED");
    assert_eq!(expired["received_msat"], 0);
    let events = wait_state_events(&ld, hash, 1);
    assert_eq!(transitions(&events), vec![transition("OPEN", "EXPIRED")]);
    // Nothing can happen to it any more, and its hash is no longer claimed.
    let e = assert_rpc_error(
        ld.rpc("hodl-cancel", json!({ "payment_hash": hash })),
        ERR_STATE,
        "cancel",
    );
    assert!(e.message.contains("EXPIRED"), "{e}");
    assert_eq!(status(&ld)["claimed_hashes"], 0);
    let late = ld.call_hook("htlc_accepted", Htlc::paying(&inv, height).payload());
    assert_ne!(late["result"], "resolve", "{late}");
    assert_eq!(lookup(&ld, hash), expired);
}

#[test]
fn a_settled_hash_stays_claimed_until_its_htlcs_have_expired() {
    let ld = start();
    let height = ld.node().blockheight();
    let inv = ld.rpc_ok("hodl-invoice", json!({"amount_msat": 4_000}));
    let hash = string(&inv, "/payment_hash").to_string();
    let pending = pay_and_hold(&ld, &inv, &Htlc::paying(&inv, height));
    ld.rpc_ok("hodl-settle", json!({ "payment_hash": hash }));
    ld.wait_hook(&pending, WAIT);
    // A replay of the settled HTLC (lightningd restarting before it recorded our answer)
    // must still be resolved: the hash stays claimed while the HTLC could exist.
    add_block(&ld, height + 100);
    assert_eq!(status(&ld)["claimed_hashes"], 1);
    let replay = ld.call_hook("htlc_accepted", Htlc::paying(&inv, height).payload());
    assert_eq!(replay["result"], "resolve", "{replay}");
    // Past its expiry no replay can come: the claim is dropped, the invoice stays.
    add_block(&ld, height + 101);
    assert_eq!(status(&ld)["claimed_hashes"], 0);
    assert_eq!(lookup(&ld, &hash)["state"], "SETTLED");
}

#[test]
fn a_crash_then_plugin_start_cancels_what_lightningd_failed_meanwhile() {
    // ballast dies with an HTLC held; lightningd keeps running, fails that HTLC itself, and
    // later `plugin start` brings ballast back. Nothing will be replayed, so the invoice
    // must not stay ACCEPTED: a settle would report money that never arrives.
    let base = tempfile::tempdir().unwrap();
    let node = FakeNode::new();
    let preimage = hash_hex("crash then plugin start");
    let hash = payment_hash_of(&preimage);
    {
        let mut ld = builder().base_dir(base.path()).node(node.clone()).start();
        let height = ld.node().blockheight();
        let inv = invoice_for(&ld, &preimage, 12_000, json!({}));
        let _lost = pay_and_hold(&ld, &inv, &Htlc::paying(&inv, height));
        ld.kill9();
    }
    let ld = builder().base_dir(base.path()).node(node).startup(false).start();
    let after = lookup(&ld, &hash);
    assert_eq!(after["state"], "CANCELED", "{after:#}");
    // A crash, not a clean stop: ballast never failed the HTLC itself, lightningd did.
    assert_eq!(after["cancel_reason"], "htlcs_lost", "{after:#}");
    assert_eq!(after["htlcs"].as_array().map(Vec::len), Some(0), "{after:#}");
    let e = assert_rpc_error(
        ld.rpc("hodl-settle", json!({ "preimage": preimage })),
        ERR_NOT_HELD,
        "settle after the HTLC was lost",
    );
    assert!(e.message.contains("htlcs_lost"), "{e}");
}

#[test]
fn mainnet_cltv_delta_raises_the_window_and_a_late_settle_cancels() {
    // The fake lightningd reports cltv-delta 34: it fails a channel whose fulfilled HTLC is
    // unacknowledged 17 blocks before expiry, so ballast settles only with more than 19
    // blocks left, whatever ballast-hodl-cancel-blocks (10) says.
    let ld = start();
    ld.wait_for_log("ballast-hodl-cancel-blocks raised from 10 to 19", WAIT);
    let height = ld.node().blockheight();
    assert_rpc_error(
        ld.rpc("hodl-invoice", json!({"amount_msat": 1_000, "cltv": 24})),
        -32602,
        "a cltv inside the window leaves no time to settle",
    );
    let preimage = hash_hex("late settle");
    let hash = payment_hash_of(&preimage);
    let inv = invoice_for(&ld, &preimage, 9_000, json!({"cltv": 40}));
    let expiry = height + 40;
    let pending = pay_and_hold(&ld, &inv, &Htlc::paying(&inv, height).with_expiry(expiry));
    // lightningd's tip moves 21 blocks on before ballast hears of any block: its own view
    // (getinfo) decides, so the settle is refused and the invoice canceled.
    ld.node().set_blockheight(expiry - 19);
    let e = assert_rpc_error(
        ld.rpc("hodl-settle", json!({ "preimage": preimage })),
        ERR_TOO_LATE,
        "settle 19 blocks before expiry",
    );
    assert!(e.message.contains("19 block"), "{e}");
    assert_eq!(ld.wait_hook(&pending, WAIT), unknown_details(9_000, expiry - 19));
    let after = lookup(&ld, &hash);
    assert_eq!(after["state"], "CANCELED", "{after:#}");
    assert_eq!(after["cancel_reason"], "deadline", "{after:#}");
}
