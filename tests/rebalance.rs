//! Rebalancing through the plugin against a simulated network: the fake node routes
//! `sendpay` hop by hop with real balances, failing where liquidity is short, and hands the
//! HTLC that comes back to us to the plugin's `htlc_accepted` hook, whose answer settles
//! it. Every message is checked against CLN v26.06's schemas, in both directions.
//!
//! The network: our node with channels to A, B, C and D, which sit on a ring
//! A - E - B - F - C - G - D - H - A (2M sat channels, balanced unless a test says
//! otherwise). Our channels are 1M sat and charge 1000 ppm outwards, so a move may pay up
//! to 500 ppm (`ballast-rebalance-fee-share` 0.5); everything else charges CLN's default
//! 1 sat + 10 ppm, so a circle through one ring node costs 3 sat + 30 ppm.

mod harness;

use harness::json::{array, string, uint};

use harness::fake_node::{deliver_htlcs, failcode, Payment, PaymentStatus};
use harness::{
    payloads, payment_hash_of, pubkey, Channel, FakeNode, JsonRpcError, Lightningd, Scripted, INVALID_PARAMS,
};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

const CAPACITY: u64 = 1_000_000_000;
const RING_CAPACITY: u64 = 2_000_000_000;

const A: usize = 1;
const B: usize = 2;
const C: usize = 3;
const D: usize = 4;
const E: usize = 5;
const F: usize = 6;
const G: usize = 7;
const H: usize = 8;
const X: usize = 9;

/// Our channels.
const CH_A: &str = "100x1x0";
const CH_B: &str = "101x1x0";
const CH_C: &str = "102x1x0";
const CH_D: &str = "103x1x0";
/// A second channel to A (the same-peer trap).
const CH_A2: &str = "110x1x0";
/// A channel of ours that is closing.
const CH_CLOSING: &str = "120x1x0";

/// The ring, in order: A-E, E-B, B-F, F-C, C-G, G-D, D-H, H-A.
const RING: [(usize, usize, &str); 8] = [
    (A, E, "200x1x0"),
    (E, B, "201x1x0"),
    (B, F, "202x1x0"),
    (F, C, "203x1x0"),
    (C, G, "204x1x0"),
    (G, D, "205x1x0"),
    (D, H, "206x1x0"),
    (H, A, "207x1x0"),
];
const EB: &str = "201x1x0";
/// A detour A - X - B, pricier than through E.
const AX: &str = "300x1x0";
const XB: &str = "301x1x0";

const WAIT: Duration = Duration::from_secs(10);

fn n(i: usize) -> String {
    pubkey(i)
}

/// Our channel to `peer` with `local` msat on our side, charging 1000 ppm outwards.
fn ours(peer: usize, scid: &str, local: u64) -> Channel {
    let mut c = Channel::new(&n(peer), scid, CAPACITY, local);
    c.fee_proportional_millionths = 1000;
    c
}

/// The ring plus our channels to A, B, C and D with these local balances.
fn network(a: u64, b: u64, c: u64, d: u64) -> FakeNode {
    let node = FakeNode::new();
    for (peer, scid, local) in [(A, CH_A, a), (B, CH_B, b), (C, CH_C, c), (D, CH_D, d)] {
        node.add_public_channel(ours(peer, scid, local));
    }
    for (x, y, scid) in RING {
        node.add_network_channel(&n(x), &n(y), scid, RING_CAPACITY, RING_CAPACITY / 2);
    }
    node
}

/// Adds the detour A - X - B; X charges `ppm` towards B.
fn add_detour(node: &FakeNode, ppm: u32) {
    node.add_network_channel(&n(A), &n(X), AX, RING_CAPACITY, RING_CAPACITY / 2);
    node.add_network_channel(&n(X), &n(B), XB, RING_CAPACITY, RING_CAPACITY / 2);
    node.set_channel_policy(XB, &n(X), 1000, ppm, 6);
}

fn start(node: &FakeNode) -> Lightningd {
    Lightningd::builder().node(node.clone()).start()
}

/// `to_us_msat` of each of our channels, read from the `listpeerchannels` entries the
/// fake node serves.
fn balances(node: &FakeNode) -> BTreeMap<String, u64> {
    node.with(|s| {
        s.channels
            .iter()
            .map(|c| c.to_json(&s.id))
            .map(|v| {
                (
                    v["short_channel_id"].as_str().unwrap().to_string(),
                    v["to_us_msat"].as_u64().unwrap(),
                )
            })
            .collect()
    })
}

/// What our node lost in total: the routing fees actually paid.
fn total_local(node: &FakeNode) -> u64 {
    balances(node).values().sum()
}

fn completed(node: &FakeNode) -> Vec<Payment> {
    node.payments()
        .into_iter()
        .filter(|p| p.status == PaymentStatus::Complete)
        .collect()
}

fn paid_fees(node: &FakeNode) -> u64 {
    completed(node).iter().map(Payment::fee_msat).sum()
}

fn planned(plan: &Value) -> Vec<&Value> {
    array(plan, "/moves")
        .iter()
        .filter(|m| m["status"] == "planned")
        .collect()
}

fn route_scids(route: &Value) -> Vec<String> {
    array(route, "/hops")
        .iter()
        .map(|h| string(h, "/scid").to_string())
        .collect()
}

/// `rebalance-execute` with the plugin's payments delivered back to it.
fn execute(ld: &Lightningd, params: Value) -> Value {
    deliver_htlcs(ld, || {
        let r = ld.rpc_ok("rebalance-execute", params);
        ld.node().wait_payments_settled(WAIT);
        r
    })
}

fn attempts(ld: &Lightningd, execution: Option<&str>) -> Vec<Value> {
    let params = match execution {
        Some(id) => json!({ "id": id }),
        None => json!({}),
    };
    array(&ld.rpc_ok("rebalance-status", params), "/attempts").clone()
}

/// Fees of the attempts that paid (or may still pay): what counts against budgets.
fn spent_in(attempts: &[Value]) -> u64 {
    attempts
        .iter()
        .filter(|a| a["outcome"] == "success" || a["outcome"] == "pending")
        .map(|a| uint(a, "/fee_msat"))
        .sum()
}

/// Each payment, in the order sent, fit within `budget` given what the ones before it
/// had actually paid: the check before every attempt held.
fn assert_each_attempt_fit(payments: &[Payment], budget: u64) {
    let mut paid = 0u64;
    for p in payments {
        assert!(
            paid + p.fee_msat() <= budget,
            "payment {} could cost {} msat with {paid} of {budget} already spent: {p:?}",
            p.created_index,
            p.fee_msat()
        );
        if p.status == PaymentStatus::Complete {
            paid += p.fee_msat();
        }
    }
}

#[test]
fn a_plan_fixes_a_lopsided_node() {
    // A and D have too much local balance, B too little, C is fine.
    let node = network(900_000_000, 100_000_000, 500_000_000, 950_000_000);
    let ld = start(&node);
    let us = node.id();
    let before = balances(&node);

    let plan = ld.rpc_ok("rebalance-plan", json!({}));
    let plan_id = string(&plan, "/plan_id").to_string();
    assert!(!plan_id.is_empty());
    let classes: BTreeMap<&str, &str> = array(&plan, "/channels")
        .iter()
        .map(|c| (string(c, "/scid"), string(c, "/class")))
        .collect();
    assert_eq!(
        classes,
        BTreeMap::from([
            (CH_A, "source"),
            (CH_B, "sink"),
            (CH_C, "balanced"),
            (CH_D, "source")
        ]),
        "{plan:#}"
    );
    let moves = planned(&plan);
    assert!(!moves.is_empty(), "no move planned: {plan:#}");
    for m in &moves {
        assert_eq!(string(m, "/sink_scid"), CH_B, "{m:#}");
        assert!([CH_A, CH_D].contains(&string(m, "/source_scid")), "{m:#}");
        assert_ne!(m["source_peer"], m["sink_peer"]);
        let amount = uint(m, "/amount_msat");
        assert!((10_000_000..=400_000_000).contains(&amount), "{m:#}");
        let (fee, ppm, cap) = (uint(m, "/fee_msat"), uint(m, "/fee_ppm"), uint(m, "/fee_cap_ppm"));
        assert_eq!(cap, 500, "min(max_ppm 1000, half of the sink's 1000 ppm): {m:#}");
        assert!(fee > 0 && ppm <= cap && fee <= uint(m, "/max_fee_msat"), "{m:#}");
        let p = m["probability"].as_f64().unwrap();
        assert!(p > 0.0 && p <= 1.0, "{m:#}");
        assert!(!string(m, "/reason").is_empty());
        let routes = array(m, "/routes");
        assert!(!routes.is_empty(), "{m:#}");
        // The best route is the one the move is priced by.
        assert_eq!(uint(&routes[0], "/fee_msat"), fee);
        for r in routes {
            let hops = array(r, "/hops");
            // Out through the source, back in through the sink, to ourselves.
            assert_eq!(string(&hops[0], "/scid"), string(m, "/source_scid"), "{r:#}");
            assert_eq!(string(&hops[hops.len() - 1], "/scid"), CH_B, "{r:#}");
            assert_eq!(string(&hops[hops.len() - 1], "/node"), us, "{r:#}");
            assert!(
                hops[..hops.len() - 1].iter().all(|h| h["node"] != us.as_str()),
                "{r:#}"
            );
            let hop_fees: u64 = hops.iter().map(|h| uint(h, "/fee_msat")).sum();
            assert_eq!(hop_fees, uint(r, "/fee_msat"), "{r:#}");
            assert_eq!(
                uint(r, "/amount_sent_msat"),
                uint(r, "/amount_msat") + uint(r, "/fee_msat")
            );
            assert!(hops
                .iter()
                .all(|h| h.get("delay").is_some() && h.get("cltv_delta").is_some()));
        }
    }
    // A dry run: nothing was paid.
    assert!(node.calls_to("sendpay").is_empty());
    assert_eq!(balances(&node), before);

    let r = execute(&ld, json!({ "plan_id": plan_id }));
    assert_eq!(string(&r, "/execution"), plan_id);
    let done = array(&r, "/moves");
    assert_eq!(done.len(), moves.len(), "{r:#}");
    let moved: u64 = done.iter().map(|m| uint(m, "/moved_msat")).sum();
    assert!(moved > 0, "{r:#}");

    // listpeerchannels before and after: the sink got exactly what moved, the sources
    // paid it plus the fees, the balanced channel was not touched.
    let after = balances(&node);
    let fees = paid_fees(&node);
    assert_eq!(uint(&r, "/fee_msat"), fees, "{r:#}");
    assert_eq!(after[CH_B], before[CH_B] + moved);
    let out_of_sources = (before[CH_A] - after[CH_A]) + (before[CH_D] - after[CH_D]);
    assert_eq!(out_of_sources, moved + fees);
    assert_eq!(after[CH_C], before[CH_C]);
    assert_eq!(total_local(&node), before.values().sum::<u64>() - fees);
    for c in node.with(|s| s.channels.clone()) {
        assert!(
            c.htlcs.is_empty(),
            "HTLC left in flight on {:?}",
            c.short_channel_id
        );
    }
    // B is no longer below its low mark, and the history shows what was paid.
    assert!(after[CH_B] >= CAPACITY / 5, "{after:?}");
    let history = attempts(&ld, Some(&plan_id));
    assert_eq!(spent_in(&history), fees);
    assert!(history.iter().any(|a| a["outcome"] == "success"), "{history:#?}");

    // A new plan sees B fixed: it is no longer a sink.
    let again = ld.rpc_ok("rebalance-plan", json!({}));
    let b = array(&again, "/channels")
        .iter()
        .find(|c| c["scid"] == CH_B)
        .unwrap();
    assert_ne!(string(b, "/class"), "sink", "{again:#}");
    assert!(planned(&again).is_empty(), "{again:#}");
}

#[test]
fn the_budget_is_never_exceeded_even_with_retries() {
    let node = network(900_000_000, 100_000_000, 500_000_000, 500_000_000);
    // Through E, only 120M reach B; the detour through X costs 300 ppm more.
    node.set_balance(EB, &n(E), 120_000_000);
    add_detour(&node, 300);
    node.set_balance(XB, &n(X), 120_000_000);
    let ld = start(&node);
    let before = total_local(&node);
    let budget = 10_000;

    let r = execute(
        &ld,
        json!({"source": CH_A, "sink": CH_B, "amount_msat": 400_000_000, "max_fee_msat": budget}),
    );
    let exec = string(&r, "/execution").to_string();
    let payments = node.payments();
    let fees = paid_fees(&node);
    // Money actually spent, as the network saw it.
    assert!(
        fees <= budget,
        "paid {fees} msat of a {budget} msat budget: {payments:#?}"
    );
    assert_eq!(before - total_local(&node), fees);
    assert_each_attempt_fit(&payments, budget);
    // Retries happened: some attempts failed for liquidity, some parts got through.
    assert!(
        payments.iter().any(|p| p
            .failure
            .as_ref()
            .is_some_and(|f| f.failcode == failcode::TEMPORARY_CHANNEL_FAILURE)),
        "{payments:#?}"
    );
    assert!(!completed(&node).is_empty(), "{payments:#?}");
    // The full amount found no room: what went through went in smaller parts.
    assert!(
        completed(&node).iter().all(|p| p.amount_msat < 400_000_000),
        "{payments:#?}"
    );
    // What the plugin reports agrees and stays within the budget too.
    assert!(uint(&r, "/fee_msat") <= budget, "{r:#}");
    assert_eq!(uint(&r, "/fee_msat"), fees, "{r:#}");
    let history = attempts(&ld, Some(&exec));
    assert_eq!(history.len(), payments.len(), "{history:#?}");
    assert_eq!(spent_in(&history), fees, "{history:#?}");
    assert!(spent_in(&history) <= budget);
    let mv = &array(&r, "/moves")[0];
    assert_ne!(
        string(mv, "/status"),
        "done",
        "the budget cannot move it all: {r:#}"
    );
    assert_eq!(uint(mv, "/moved_msat"), balances(&node)[CH_B] - 100_000_000);
}

#[test]
fn the_budget_covers_every_move_of_a_plan() {
    // Two sources, two sinks: two moves of about 15 sat each.
    let node = network(900_000_000, 100_000_000, 100_000_000, 900_000_000);
    let ld = start(&node);
    let plan = ld.rpc_ok("rebalance-plan", json!({}));
    let moves = planned(&plan);
    assert_eq!(moves.len(), 2, "{plan:#}");
    let budget = uint(moves[0], "/fee_msat") + uint(moves[1], "/fee_msat") / 2;
    let r = execute(
        &ld,
        json!({"plan_id": string(&plan, "/plan_id"), "max_fee_msat": budget}),
    );
    let fees = paid_fees(&node);
    assert!(
        fees <= budget,
        "paid {fees} msat of a {budget} msat budget: {r:#}"
    );
    assert_each_attempt_fit(&node.payments(), budget);
    assert_eq!(uint(&r, "/fee_msat"), fees);
    let moved: Vec<u64> = array(&r, "/moves")
        .iter()
        .map(|m| uint(m, "/moved_msat"))
        .collect();
    // The plan priced each move as one payment; paid in parts (each part pays the base
    // fees again) the first takes most of the budget, and what it leaves is not enough
    // for the second: the two together cannot be paid in full.
    assert!(moved[0] > 0, "the first move starts: {r:#}");
    assert!(
        moved[0] + moved[1] < 800_000_000,
        "the budget cannot cover both: {r:#}"
    );
    let short = array(&r, "/moves")
        .iter()
        .find(|m| string(m, "/status") != "done")
        .cloned()
        .unwrap_or_else(|| panic!("a move stops short: {r:#}"));
    assert!(
        string(&short, "/reason").contains("within budget"),
        "it stops for the budget: {r:#}"
    );
}

#[test]
fn the_automatic_round_rests_a_pair_that_keeps_failing() {
    // A source at 90 % and a sink at 10 %, but A can forward nothing: both of its ring
    // channels are empty on its side, so every circle out through A fails at its second
    // hop. The liquidity beliefs forget within a second here, so only the rest keeps the
    // rounds from trying the same pair again and again.
    let node = network(900_000_000, 100_000_000, 500_000_000, 500_000_000);
    node.set_balance("200x1x0", &n(A), 0);
    node.set_balance("207x1x0", &n(A), 0);
    let ld = Lightningd::builder()
        .node(node.clone())
        .env("BALLAST_DEVELOPER", "1")
        .option("ballast-rebalance-auto", true)
        .option("ballast-rebalance-interval", 1)
        .option("ballast-liquidity-halflife", 1)
        .start();
    let rounds = || -> Vec<String> {
        ld.logs()
            .into_iter()
            .filter(|l| l.message.contains("automatic rebalance:"))
            .map(|l| l.message)
            .collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while rounds().len() < 5 {
        assert!(std::time::Instant::now() < deadline, "rounds: {:#?}", rounds());
        std::thread::sleep(Duration::from_millis(100));
    }
    let history = attempts(&ld, None);
    assert!(history.iter().all(|a| a["outcome"] == "failed"), "{history:#?}");
    // Two failures in a row rest the pair for half an hour: the later rounds plan nothing.
    assert_eq!(history.len(), 2, "{history:#?}\n{:#?}", rounds());
    assert_eq!(node.calls_to("sendpay").len(), 2);
    let rounds = rounds();
    assert!(
        rounds[2..].iter().all(|m| m.contains("\"moves\":0")),
        "{rounds:#?}"
    );
    // The operator's own plan still shows the move.
    let plan = ld.rpc_ok("rebalance-plan", json!({}));
    let moves = planned(&plan);
    assert_eq!(moves.len(), 1, "{plan:#}");
    assert_eq!(
        (string(moves[0], "/source_scid"), string(moves[0], "/sink_scid")),
        (CH_A, CH_B)
    );
}

#[test]
fn a_tiny_budget_pays_nothing() {
    let node = network(900_000_000, 100_000_000, 500_000_000, 500_000_000);
    let ld = start(&node);
    let before = balances(&node);
    // The cheapest circle costs at least 3 sat of base fees.
    let r = execute(
        &ld,
        json!({"source": CH_A, "sink": CH_B, "amount_msat": 50_000_000, "max_fee_msat": 2_999}),
    );
    assert_eq!(uint(&r, "/fee_msat"), 0, "{r:#}");
    assert!(node.calls_to("sendpay").is_empty(), "{:#?}", node.payments());
    assert_eq!(balances(&node), before);
    assert_eq!(string(&array(&r, "/moves")[0], "/status"), "failed", "{r:#}");
}

#[test]
fn the_same_peer_trap_is_avoided() {
    // Two channels to A, one full and one empty; B is empty too.
    let node = network(500_000_000, 100_000_000, 500_000_000, 500_000_000);
    node.add_public_channel(ours(A, CH_A2, 50_000_000));
    node.with(|s| {
        let a = s
            .channels
            .iter_mut()
            .find(|c| c.short_channel_id.as_deref() == Some(CH_A))
            .unwrap();
        a.to_us_msat = 950_000_000;
    });
    let ld = start(&node);
    let before = balances(&node);

    let plan = ld.rpc_ok("rebalance-plan", json!({}));
    for m in array(&plan, "/moves") {
        assert_ne!(
            m["source_peer"], m["sink_peer"],
            "a move between two channels to one peer: {m:#}"
        );
        for r in array(m, "/routes") {
            let scids = route_scids(r);
            assert!(
                !(scids.contains(&CH_A.to_string()) && scids.contains(&CH_A2.to_string())),
                "{r:#}"
            );
        }
    }
    let moves = planned(&plan);
    assert!(
        moves
            .iter()
            .all(|m| m["source_scid"] == CH_A && m["sink_scid"] == CH_B),
        "only A → B makes sense: {plan:#}"
    );
    // A2 can only be filled from another peer's channel, and there is none to spare.
    let swap = array(&plan, "/swaps")
        .iter()
        .find(|s| s["scid"] == CH_A2)
        .unwrap_or_else(|| panic!("{plan:#}"));
    assert_eq!(string(swap, "/kind"), "loop_in", "{swap:#}");

    // Asked directly, the executor refuses and sends nothing.
    let r = execute(
        &ld,
        json!({"source": CH_A, "sink": CH_A2, "amount_msat": 100_000_000}),
    );
    let mv = &array(&r, "/moves")[0];
    assert_eq!(string(mv, "/status"), "refused", "{r:#}");
    assert_eq!(uint(mv, "/moved_msat"), 0);
    assert_eq!(uint(&r, "/fee_msat"), 0);
    assert!(node.calls_to("sendpay").is_empty());
    assert_eq!(balances(&node), before);

    // Executing the plan never pays a loop through A and back.
    let r = execute(&ld, json!({"plan_id": string(&plan, "/plan_id")}));
    for p in node.payments() {
        let scids = p.scids();
        assert!(
            !(scids.contains(&CH_A.to_string()) && scids.contains(&CH_A2.to_string())),
            "{p:?}"
        );
        let visits_a = p.route.iter().filter(|h| h.id == n(A)).count();
        assert!(visits_a <= 1, "{p:?}");
    }
    assert_eq!(balances(&node)[CH_A2], before[CH_A2], "{r:#}");
}

#[test]
fn the_daily_cap_holds() {
    let node = network(900_000_000, 100_000_000, 100_000_000, 900_000_000);
    let daily = 10_000;
    let ld = Lightningd::builder()
        .node(node.clone())
        .option("ballast-rebalance-daily-budget", daily as i64)
        .start();
    let before = total_local(&node);

    // A plan whose moves together cost more than the daily cap.
    let plan = ld.rpc_ok("rebalance-plan", json!({}));
    let planned_fee: u64 = planned(&plan).iter().map(|m| uint(m, "/fee_msat")).sum();
    assert!(
        planned_fee > daily,
        "the plan must cost more than the cap: {plan:#}"
    );
    let r = execute(&ld, json!({"plan_id": string(&plan, "/plan_id")}));
    let fees = paid_fees(&node);
    assert!(fees > 0, "some of it fits the cap: {r:#}");
    assert!(
        fees <= daily,
        "paid {fees} msat with a daily cap of {daily}: {r:#}"
    );
    assert_each_attempt_fit(&node.payments(), daily);

    // Once the cap is used up, further executions pay nothing.
    let sent_before = node.calls_to("sendpay").len();
    let completed_before = completed(&node).len();
    let after_first = balances(&node);
    for params in [
        json!({"source": CH_D, "sink": CH_C, "amount_msat": 50_000_000}),
        json!({"source": CH_A, "sink": CH_C, "amount_msat": 20_000_000, "max_fee_msat": 1_000_000}),
    ] {
        let r = execute(&ld, params);
        assert_eq!(uint(&r, "/fee_msat"), 0, "{r:#}");
        assert_eq!(uint(&array(&r, "/moves")[0], "/moved_msat"), 0, "{r:#}");
    }
    assert_eq!(completed(&node).len(), completed_before);
    assert_eq!(
        node.calls_to("sendpay").len(),
        sent_before,
        "nothing may even be tried once the cap is spent: {:#?}",
        node.payments()
    );
    assert_eq!(balances(&node), after_first);
    assert_eq!(before - total_local(&node), fees);

    let status = ld.rpc_ok("rebalance-status", json!({}));
    assert_eq!(uint(&status, "/daily_budget_msat"), daily);
    assert_eq!(uint(&status, "/spent_24h_msat"), fees);
    assert!(spent_in(array(&status, "/attempts")) <= daily);
}

#[test]
fn a_failed_route_teaches_the_beliefs() {
    // Lopsided enough that A and B stay a source and a sink after two small moves.
    let node = network(950_000_000, 50_000_000, 500_000_000, 500_000_000);
    // E can pass only 30M on to B; the detour through X is pricier but has room.
    node.set_balance(EB, &n(E), 30_000_000);
    add_detour(&node, 100);
    let ld = start(&node);
    let amount = 50_000_000;

    // Before: the cheapest circle from A to B runs through E.
    let plan = ld.rpc_ok("rebalance-plan", json!({}));
    let mv = planned(&plan)
        .into_iter()
        .find(|m| m["source_scid"] == CH_A && m["sink_scid"] == CH_B)
        .unwrap_or_else(|| panic!("{plan:#}"));
    let best_before = route_scids(&array(mv, "/routes")[0]);
    assert!(best_before.contains(&EB.to_string()), "{mv:#}");
    let p_before = mv["probability"].as_f64().unwrap();

    let r = execute(&ld, json!({"source": CH_A, "sink": CH_B, "amount_msat": amount}));
    let exec = string(&r, "/execution").to_string();
    assert_eq!(uint(&array(&r, "/moves")[0], "/moved_msat"), amount, "{r:#}");
    let payments = node.payments();
    let failed = &payments[0];
    assert_eq!(failed.status, PaymentStatus::Failed, "{payments:#?}");
    let f = failed.failure.as_ref().unwrap();
    assert_eq!((f.erring_channel.as_str(), f.erring_node.clone()), (EB, n(E)));
    assert_eq!(f.failcode, failcode::TEMPORARY_CHANNEL_FAILURE);
    // The retry went another way and got through.
    let last = payments.last().unwrap();
    assert_eq!(last.status, PaymentStatus::Complete);
    assert!(!last.scids().contains(&EB.to_string()), "{last:?}");

    let history = attempts(&ld, Some(&exec));
    let failed_attempt = history
        .iter()
        .find(|a| a["outcome"] == "failed")
        .unwrap_or_else(|| panic!("{history:#?}"));
    assert_eq!(failed_attempt["failing_channel"], EB, "{failed_attempt:#}");

    // The next execution of the same amount does not try E → B again.
    let sent = node.payments().len();
    let r = execute(&ld, json!({"source": CH_A, "sink": CH_B, "amount_msat": amount}));
    assert_eq!(uint(&array(&r, "/moves")[0], "/moved_msat"), amount, "{r:#}");
    let second = &node.payments()[sent..];
    assert!(!second.is_empty());
    assert!(
        second.iter().all(|p| !p.scids().contains(&EB.to_string())),
        "E → B failed for {amount} msat a moment ago: {second:#?}"
    );
    assert!(
        second.iter().all(|p| p.status == PaymentStatus::Complete),
        "{second:#?}"
    );

    // And the plan now prices E → B as unlikely or avoids it.
    let plan = ld.rpc_ok("rebalance-plan", json!({}));
    let mv = planned(&plan)
        .into_iter()
        .find(|m| m["source_scid"] == CH_A && m["sink_scid"] == CH_B)
        .unwrap_or_else(|| panic!("{plan:#}"));
    let best_after = route_scids(&array(mv, "/routes")[0]);
    let p_after = mv["probability"].as_f64().unwrap();
    assert!(
        !best_after.contains(&EB.to_string()) || p_after < p_before,
        "before {best_before:?} p={p_before}, after {best_after:?} p={p_after}"
    );
}

#[test]
fn at_most_max_htlcs_are_in_flight() {
    // Two moves; the first one's waitsendpay times out while its HTLC is still out.
    let node = network(900_000_000, 100_000_000, 100_000_000, 900_000_000);
    let ld = start(&node);
    let status = ld.rpc_ok("rebalance-status", json!({}));
    assert_eq!(uint(&status, "/max_htlcs"), 1);
    let plan = ld.rpc_ok("rebalance-plan", json!({}));
    assert_eq!(planned(&plan).len(), 2, "{plan:#}");
    node.script_once(
        "waitsendpay",
        Scripted::Error(JsonRpcError::new(200, "Timed out")),
    );
    let gate = Arc::new((Mutex::new(false), Condvar::new()));
    let (r, sent_while_held) = deliver_htlcs(&ld, || {
        // Hold the first HTLC at our node until the execution has returned.
        let plugin = node.htlc_hook().expect("deliver_htlcs sets the hook");
        let first = AtomicBool::new(true);
        let held = gate.clone();
        node.set_htlc_hook(move |payload| {
            if first.swap(false, Ordering::SeqCst) {
                let (lock, cond) = &*held;
                let released = lock.lock().unwrap();
                let _ = cond.wait_timeout_while(released, WAIT, |r| !*r).unwrap();
            }
            plugin(payload)
        });
        let r = ld.rpc_ok("rebalance-execute", json!({"plan_id": string(&plan, "/plan_id")}));
        let sent = node.payments().len();
        *gate.0.lock().unwrap() = true;
        gate.1.notify_all();
        node.wait_payments_settled(WAIT);
        (r, sent)
    });
    // The first attempt counts as spent while in flight, and the plugin still resolves
    // its HTLC when it finally arrives.
    let history = attempts(&ld, None);
    assert!(history.iter().any(|a| a["outcome"] == "pending"), "{history:#?}");
    assert_eq!(node.payments()[0].status, PaymentStatus::Complete);
    assert!(
        node.peak_payments_in_flight() <= 1 && sent_while_held == 1,
        "ballast-rebalance-max-htlcs is 1, yet {sent_while_held} payments were sent while the \
         first was still in flight (peak {} at once): {r:#}",
        node.peak_payments_in_flight()
    );
}

#[test]
fn plans_and_history_survive_a_restart() {
    let base = tempfile::tempdir().unwrap();
    let node = network(900_000_000, 100_000_000, 500_000_000, 500_000_000);
    let (plan_id, first_exec) = {
        let mut ld = Lightningd::builder()
            .base_dir(base.path())
            .node(node.clone())
            .start();
        let plan = ld.rpc_ok("rebalance-plan", json!({"max_moves": 1}));
        let plan_id = string(&plan, "/plan_id").to_string();
        let r = execute(
            &ld,
            json!({"source": CH_A, "sink": CH_B, "amount_msat": 20_000_000}),
        );
        let exec = string(&r, "/execution").to_string();
        ld.stop(WAIT);
        (plan_id, exec)
    };
    let ld = Lightningd::builder()
        .base_dir(base.path())
        .node(node.clone())
        .start();
    let history = attempts(&ld, Some(&first_exec));
    assert_eq!(history.len(), 1, "{history:#?}");
    assert_eq!(
        uint(&ld.rpc_ok("rebalance-status", json!({})), "/spent_24h_msat"),
        paid_fees(&node)
    );
    let before = balances(&node);
    let r = execute(&ld, json!({ "plan_id": plan_id }));
    assert_eq!(string(&r, "/execution"), plan_id);
    assert!(uint(&array(&r, "/moves")[0], "/moved_msat") > 0, "{r:#}");
    assert!(balances(&node)[CH_B] > before[CH_B]);
}

#[test]
fn a_private_sink_is_paid_with_its_peers_own_policy() {
    let node = FakeNode::new();
    node.add_public_channel(ours(A, CH_A, 900_000_000));
    // B's channel is unannounced: only listpeerchannels knows B's policy towards us.
    let mut private = ours(B, CH_B, 100_000_000);
    private.private = true;
    private.remote_fee_base_msat = 2_000;
    private.remote_fee_proportional_millionths = 50;
    private.remote_cltv_expiry_delta = 40;
    node.add_channel(private);
    for (x, y, scid) in RING {
        node.add_network_channel(&n(x), &n(y), scid, RING_CAPACITY, RING_CAPACITY / 2);
    }
    let ld = start(&node);
    let plan = ld.rpc_ok("rebalance-plan", json!({}));
    let mv = planned(&plan)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("{plan:#}"));
    let amount = uint(mv, "/amount_msat");
    let route = &array(mv, "/routes")[0];
    let last = array(route, "/hops").last().unwrap();
    assert_eq!(string(last, "/scid"), CH_B);
    assert_eq!(
        uint(last, "/fee_msat"),
        2_000 + amount * 50 / 1_000_000,
        "{route:#}"
    );
    assert_eq!(uint(last, "/cltv_delta"), 40, "{route:#}");
    let before = balances(&node);
    let r = execute(&ld, json!({"plan_id": string(&plan, "/plan_id")}));
    assert_eq!(uint(&array(&r, "/moves")[0], "/moved_msat"), amount, "{r:#}");
    assert_eq!(balances(&node)[CH_B], before[CH_B] + amount);
}

#[test]
fn route_estimate_returns_cheapest_and_fastest() {
    let node = network(500_000_000, 500_000_000, 500_000_000, 500_000_000);
    // To F: through B is cheap but slow, through C fast but dear.
    node.set_channel_policy("202x1x0", &n(B), 1000, 10, 144);
    node.set_channel_policy("203x1x0", &n(C), 2000, 500, 6);
    let ld = start(&node);
    let amount = 10_000_000u64;

    let r = ld.rpc_ok(
        "route-estimate",
        json!({"destination": n(F), "amount_msat": amount}),
    );
    assert_eq!(string(&r, "/destination"), n(F));
    assert!(uint(&r, "/routes_found") >= 2, "{r:#}");
    let (cheap, fast) = (&r["cheapest"], &r["fastest"]);
    let first_hop = |route: &Value| string(&array(route, "/hops")[0], "/short_channel_id").to_string();
    assert_eq!(first_hop(cheap), CH_B, "{r:#}");
    assert_eq!(first_hop(fast), CH_C, "{r:#}");
    // B charges 1 sat + 10 ppm, C 2 sat + 500 ppm, on what they forward.
    assert_eq!(uint(cheap, "/fee_msat"), 1000 + amount * 10 / 1_000_000, "{r:#}");
    assert_eq!(uint(fast, "/fee_msat"), 2000 + amount * 500 / 1_000_000, "{r:#}");
    assert!(uint(fast, "/total_cltv") < uint(cheap, "/total_cltv"), "{r:#}");
    assert_eq!(
        uint(cheap, "/fee_ppm"),
        (1000 + amount * 10 / 1_000_000) * 1_000_000 / amount
    );
    for route in [cheap, fast] {
        let hops = array(route, "/hops");
        assert_eq!(string(&hops[hops.len() - 1], "/node"), n(F));
        assert_eq!(uint(&hops[hops.len() - 1], "/amount_msat"), amount);
        let p = route["probability"].as_f64().unwrap();
        assert!(p > 0.0 && p <= 1.0, "{route:#}");
    }
    // Positional params as lightning-cli sends them, with k and maxhops.
    let r = ld.rpc_ok("route-estimate", json!([n(F), amount, 1, 2]));
    assert_eq!(uint(&r, "/routes_found"), 1, "{r:#}");
    assert_eq!(r["cheapest"], r["fastest"]);
    // Estimating pays nothing.
    assert!(node.calls_to("sendpay").is_empty());
}

#[test]
fn route_estimate_respects_our_own_balances() {
    // B's side holds 100M: 150M can leave only through C (or A, D) to reach F.
    let node = network(500_000_000, 100_000_000, 500_000_000, 500_000_000);
    let ld = start(&node);
    let amount = 150_000_000u64;
    let r = ld.rpc_ok(
        "route-estimate",
        json!({"destination": n(F), "amount_msat": amount}),
    );
    let spendable: BTreeMap<String, u64> = node.with(|s| {
        s.channels
            .iter()
            .map(|c| (c.short_channel_id.clone().unwrap(), c.spendable_msat()))
            .collect()
    });
    for which in ["cheapest", "fastest"] {
        let route = &r[which];
        let hop = &array(route, "/hops")[0];
        let scid = string(hop, "/short_channel_id");
        assert!(
            uint(hop, "/amount_msat") <= spendable[scid],
            "the {which} route leaves through {scid}, which can send only {} msat: {r:#}",
            spendable[scid]
        );
    }
}

#[test]
fn over_budget_moves_get_a_swap_instead() {
    let node = network(900_000_000, 100_000_000, 500_000_000, 500_000_000);
    // Every ring node charges 2000 ppm: no circle fits the 500 ppm cap.
    for (x, y, scid) in RING {
        node.set_channel_policy(scid, &n(x), 1000, 2000, 6);
        node.set_channel_policy(scid, &n(y), 1000, 2000, 6);
    }
    node.with(|s| s.feerate_perkw = 2_500);
    let ld = start(&node);
    let plan = ld.rpc_ok("rebalance-plan", json!({}));
    assert!(planned(&plan).is_empty(), "{plan:#}");
    let mv = array(&plan, "/moves")
        .iter()
        .find(|m| m["source_scid"] == CH_A && m["sink_scid"] == CH_B)
        .unwrap_or_else(|| panic!("{plan:#}"));
    assert_eq!(string(mv, "/status"), "no route within budget", "{mv:#}");
    assert!(uint(mv, "/cheapest_ppm") > uint(mv, "/fee_cap_ppm"), "{mv:#}");
    assert!(uint(mv, "/cheapest_fee_msat") > 0);
    assert!(string(mv, "/reason").contains("no route within budget"), "{mv:#}");
    // The swaps are priced with lightningd's feerates (perkb: 4 × 2500 perkw).
    assert!(!node.calls_to("feerates").is_empty());
    let swaps = array(&plan, "/swaps");
    let kinds: BTreeMap<&str, &str> = swaps
        .iter()
        .map(|s| (string(s, "/scid"), string(s, "/kind")))
        .collect();
    assert_eq!(
        kinds,
        BTreeMap::from([(CH_A, "loop_out"), (CH_B, "loop_in")]),
        "{plan:#}"
    );
    for s in swaps {
        let vbytes = uint(s, "/onchain_vbytes");
        assert_eq!(uint(s, "/onchain_fee_sat"), 10_000 * vbytes / 1000, "{s:#}");
        assert!(uint(s, "/amount_msat") > 0);
    }
    // Nothing to execute.
    let r = execute(&ld, json!({"plan_id": string(&plan, "/plan_id")}));
    assert!(array(&r, "/moves").is_empty(), "{r:#}");
    assert!(node.calls_to("sendpay").is_empty());
}

#[test]
fn bad_params_give_errors_and_change_nothing() {
    let node = network(900_000_000, 100_000_000, 500_000_000, 500_000_000);
    node.add_public_channel(Channel {
        state: "CHANNELD_SHUTTING_DOWN".into(),
        ..ours(C, CH_CLOSING, 900_000_000)
    });
    let ld = start(&node);
    let before = balances(&node);
    let plan = ld.rpc_ok("rebalance-plan", json!({}));
    let plan_id = string(&plan, "/plan_id").to_string();

    let cases: Vec<(&str, Value, i64)> = vec![
        ("route-estimate", json!({}), INVALID_PARAMS),
        (
            "route-estimate",
            json!({"destination": "02abc", "amount_msat": 1000}),
            INVALID_PARAMS,
        ),
        (
            "route-estimate",
            json!({"destination": n(F), "amount_msat": 0}),
            INVALID_PARAMS,
        ),
        (
            "route-estimate",
            json!({"destination": n(F), "amount_msat": "lots"}),
            INVALID_PARAMS,
        ),
        (
            "route-estimate",
            json!({"destination": n(F), "amount_msat": 1000, "k": 0}),
            INVALID_PARAMS,
        ),
        (
            "route-estimate",
            json!({"destination": n(F), "amount_msat": 1000, "maxhops": 28}),
            INVALID_PARAMS,
        ),
        (
            "route-estimate",
            json!({"destination": n(F), "amount_msat": 1000, "bogus": 1}),
            INVALID_PARAMS,
        ),
        ("rebalance-plan", json!({"max_moves": 0}), INVALID_PARAMS),
        ("rebalance-plan", json!({"max_ppm": -5}), INVALID_PARAMS),
        (
            "rebalance-plan",
            json!({"channels": ["not-an-scid"]}),
            INVALID_PARAMS,
        ),
        ("rebalance-plan", json!({"channels": 42}), INVALID_PARAMS),
        ("rebalance-plan", json!({"channels": ["999x9x9"]}), 2006),
        ("rebalance-execute", json!({}), INVALID_PARAMS),
        ("rebalance-execute", json!({"plan_id": "0123456789abcdef"}), 2008),
        (
            "rebalance-execute",
            json!({"plan_id": plan_id, "source": CH_A, "sink": CH_B, "amount_msat": 1000}),
            INVALID_PARAMS,
        ),
        (
            "rebalance-execute",
            json!({"source": CH_A, "sink": CH_B}),
            INVALID_PARAMS,
        ),
        (
            "rebalance-execute",
            json!({"source": CH_A, "sink": CH_A, "amount_msat": 10_000_000}),
            INVALID_PARAMS,
        ),
        (
            "rebalance-execute",
            json!({"source": CH_A, "sink": CH_B, "amount_msat": 0}),
            INVALID_PARAMS,
        ),
        (
            "rebalance-execute",
            json!({"source": "garbage", "sink": CH_B, "amount_msat": 10_000_000}),
            INVALID_PARAMS,
        ),
        (
            "rebalance-execute",
            json!({"source": CH_A, "sink": CH_B, "amount_msat": 10_000_000, "max_ppm": "cheap"}),
            INVALID_PARAMS,
        ),
        (
            "rebalance-execute",
            json!({"source": "999x9x9", "sink": CH_B, "amount_msat": 10_000_000}),
            2006,
        ),
        (
            "rebalance-execute",
            json!({"source": CH_A, "sink": "999x9x9", "amount_msat": 10_000_000}),
            2006,
        ),
        // A closing channel is not one to rebalance into.
        (
            "rebalance-execute",
            json!({"source": CH_A, "sink": CH_CLOSING, "amount_msat": 10_000_000}),
            2006,
        ),
        ("rebalance-status", json!({"limit": "all"}), INVALID_PARAMS),
    ];
    let mut wrong = Vec::new();
    for (method, params, code) in &cases {
        match deliver_htlcs(&ld, || ld.rpc(method, params.clone())) {
            Err(e) if e.code == *code => {}
            other => wrong.push(format!("{method} {params}: expected error {code}, got {other:?}")),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(node.calls_to("sendpay").is_empty(), "{:#?}", node.payments());
    assert_eq!(balances(&node), before);
    let status = ld.rpc_ok("rebalance-status", json!({}));
    assert!(array(&status, "/attempts").is_empty(), "{status:#}");
    assert_eq!(uint(&status, "/spent_24h_msat"), 0);
    // The plan made before the errors is still there and still works.
    let r = execute(&ld, json!({ "plan_id": plan_id }));
    assert!(uint(&r, "/fee_msat") > 0, "{r:#}");
}

/// A per-channel override changes how the plan classifies that channel, survives a
/// restart, and bad values change nothing.
#[test]
fn per_channel_overrides_reclassify_a_channel() {
    // A at 70% local: balanced under the default high of 0.8.
    let node = network(700_000_000, 500_000_000, 500_000_000, 100_000_000);
    let base = tempfile::tempdir().unwrap();
    let ld = Lightningd::builder()
        .node(node.clone())
        .base_dir(base.path())
        .start();
    let class_of = |ld: &Lightningd, scid: &str| -> String {
        let plan = ld.rpc_ok("rebalance-plan", json!({}));
        array(&plan, "/channels")
            .iter()
            .find(|c| string(c, "/scid") == scid)
            .map(|c| string(c, "/class").to_string())
            .unwrap_or_else(|| panic!("{scid} not in plan {plan:#}"))
    };
    assert_ne!(class_of(&ld, CH_A), "source");

    let set = ld.rpc_ok("rebalance-set", json!({"scid": CH_A, "high": 0.6}));
    assert_eq!(array(&set, "/overrides").len(), 1, "{set:#}");
    assert_eq!(class_of(&ld, CH_A), "source");

    // low >= target is refused, and the override in force is unchanged.
    let e = ld
        .rpc("rebalance-set", json!({"scid": CH_A, "low": 0.55}))
        .expect_err("low above target must be refused");
    assert_eq!(e.code, INVALID_PARAMS, "{e:?}");
    for bad in [
        json!({"scid": CH_A, "high": 1.5}),
        json!({"high": 0.5}),
        json!({"scid": "x", "high": 0.5}),
    ] {
        assert_eq!(
            ld.rpc("rebalance-set", bad.clone()).expect_err("bad").code,
            INVALID_PARAMS,
            "{bad}"
        );
    }
    // Not one of our channels: refused, nothing stored.
    let e = ld
        .rpc("rebalance-set", json!({"scid": "999x9x9", "high": 0.7}))
        .expect_err("a channel we do not have");
    assert_eq!(e.code, 2006, "{e:?}");
    let now = ld.rpc_ok("rebalance-set", json!({}));
    assert_eq!(now["overrides"], set["overrides"]);

    // Persisted across a restart; reset removes it.
    drop(ld);
    let ld = Lightningd::builder()
        .node(node.clone())
        .base_dir(base.path())
        .start();
    assert_eq!(class_of(&ld, CH_A), "source");
    let cleared = ld.rpc_ok("rebalance-set", json!([CH_A, null, null, null, true]));
    assert!(array(&cleared, "/overrides").is_empty(), "{cleared:#}");
    assert_ne!(class_of(&ld, CH_A), "source");
}

#[test]
fn an_attempt_counts_as_spent_before_its_payment_leaves() {
    // ballast dies while its payment's HTLC is out (held at our node). After a restart the
    // attempt must be in the store as pending, its fee counted against the daily budget:
    // the payment may still complete, and its fee must not escape the budget.
    let base = tempfile::tempdir().unwrap();
    let node = network(900_000_000, 100_000_000, 500_000_000, 500_000_000);
    {
        let ld = Lightningd::builder()
            .base_dir(base.path())
            .node(node.clone())
            .start();
        let pid = ld.pid();
        deliver_htlcs(&ld, || {
            node.set_htlc_hook(move |_payload| {
                // SAFETY: kill on the plugin's own pid, which the harness started.
                unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                // lightningd goes down with it (as with important-plugin): this run never
                // decides the HTLC, which stays in flight for the next run to replay. The
                // HTLC's own thread just never returns. (Handing the payload to the dead
                // plugin raced the end of deliver_htlcs and failed the test under load.)
                loop {
                    std::thread::park();
                }
            });
            let r = ld.try_rpc(
                "rebalance-execute",
                json!({"source": CH_A, "sink": CH_B, "amount_msat": 20_000_000}),
            );
            assert!(
                r.is_err(),
                "the plugin was killed mid-payment, yet answered: {r:?}"
            );
        });
    }
    let ld = Lightningd::builder()
        .base_dir(base.path())
        .node(node.clone())
        .start();
    let seen = attempts(&ld, None);
    assert_eq!(
        seen.len(),
        1,
        "the attempt was not recorded before sending: {seen:#?}"
    );
    assert_eq!(seen[0]["outcome"], "pending", "{seen:#?}");
    let fee = uint(&seen[0], "/fee_msat");
    assert!(fee > 0, "{seen:#?}");
    assert_eq!(
        uint(&ld.rpc_ok("rebalance-status", json!({})), "/spent_24h_msat"),
        fee
    );

    // lightningd replays the HTLC. Every hop saw this hash: the preimage goes only to the
    // HTLC that ends at us with the whole amount, never to a smaller or passing one.
    let hash = string(&seen[0], "/payment_hash");
    let amount = uint(&seen[0], "/amount_msat");
    let height = ld.node().blockheight();
    let short = ld.call_hook(
        "htlc_accepted",
        payloads::htlc_accepted(hash, amount - 1, height + 20, height),
    );
    assert_eq!(short["result"], "fail", "{short}");
    let passing = ld.call_hook(
        "htlc_accepted",
        payloads::htlc_forward(hash, CH_B, CH_C, amount + 1_000, amount),
    );
    assert_eq!(passing["result"], "fail", "{passing}");
    let whole = ld.call_hook(
        "htlc_accepted",
        payloads::htlc_accepted(hash, amount, height + 20, height),
    );
    assert_eq!(whole["result"], "resolve", "{whole}");
    assert_eq!(payment_hash_of(string(&whole, "/payment_key")), hash, "{whole}");
}

#[test]
fn a_plan_runs_once_and_manual_moves_stay_within_the_options() {
    let node = network(900_000_000, 100_000_000, 500_000_000, 500_000_000);
    let ld = start(&node);
    let plan = ld.rpc_ok("rebalance-plan", json!({"max_moves": 1}));
    let id = string(&plan, "/plan_id").to_string();
    let first = execute(&ld, json!({ "plan_id": id }));
    assert!(uint(&array(&first, "/moves")[0], "/moved_msat") > 0, "{first:#}");
    // Its amounts were computed from balances that have since moved: no second run.
    let paid = node.payments().len();
    let again = ld.rpc("rebalance-execute", json!({ "plan_id": id })).unwrap_err();
    assert_eq!(again.code, 2008, "{again:?}");
    assert!(again.message.contains("runs once"), "{again:?}");
    assert_eq!(node.payments().len(), paid, "a second run sent payments");
    // A manual move cannot go past ballast-rebalance-max-ppm or -max-amount.
    let opts = ld.init_options();
    let max_ppm = opts["ballast-rebalance-max-ppm"].as_u64().unwrap();
    let max_amount = opts["ballast-rebalance-max-amount"].as_u64().unwrap();
    let over_ppm = ld
        .rpc(
            "rebalance-execute",
            json!({"source": CH_A, "sink": CH_B, "amount_msat": 1_000_000, "max_ppm": max_ppm + 1}),
        )
        .unwrap_err();
    assert_eq!(over_ppm.code, INVALID_PARAMS, "{over_ppm:?}");
    let over_amount = ld
        .rpc(
            "rebalance-execute",
            json!({"source": CH_A, "sink": CH_B, "amount_msat": max_amount + 1}),
        )
        .unwrap_err();
    assert_eq!(over_amount.code, INVALID_PARAMS, "{over_amount:?}");
    assert_eq!(node.payments().len(), paid, "a refused move sent payments");
}

#[test]
fn a_later_move_failing_does_not_hide_what_earlier_moves_paid() {
    // Two moves planned; the second move's sink starts closing before the execution.
    let node = network(900_000_000, 100_000_000, 100_000_000, 900_000_000);
    let ld = start(&node);
    let plan = ld.rpc_ok("rebalance-plan", json!({}));
    let moves = planned(&plan);
    assert_eq!(moves.len(), 2, "{plan:#}");
    let second_sink = string(moves[1], "/sink_scid").to_string();
    node.with(|s| {
        for c in s.channels.iter_mut() {
            if c.short_channel_id.as_deref() == Some(second_sink.as_str()) {
                c.state = "CHANNELD_SHUTTING_DOWN".into();
            }
        }
    });
    let r = execute(&ld, json!({"plan_id": string(&plan, "/plan_id")}));
    let done = array(&r, "/moves");
    assert_eq!(done.len(), 2, "{r:#}");
    assert!(uint(&done[0], "/moved_msat") > 0, "{r:#}");
    assert_eq!(done[1]["status"], "error", "{r:#}");
    assert!(string(&done[1], "/reason").contains(&second_sink), "{r:#}");
    // What was paid is in the answer, as the node saw it.
    assert_eq!(uint(&r, "/fee_msat"), paid_fees(&node), "{r:#}");
}

/// Integer fields that are not msat amounts, from `tests/msat_names.json` (the pyln-tests
/// read the same list).
fn not_msat_names() -> std::collections::BTreeSet<String> {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/msat_names.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    array(&v, "/not_msat")
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

/// Every integer in `v` whose field is neither `msat`, `*_msat` nor a known non-amount, as
/// `method:/json/pointer = value`. Array elements are judged by their array's field name.
fn unnamed_integers(
    at: &str,
    field: &str,
    v: &Value,
    allowed: &std::collections::BTreeSet<String>,
    out: &mut Vec<String>,
) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                unnamed_integers(&format!("{at}/{k}"), k, x, allowed, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                unnamed_integers(&format!("{at}/{i}"), field, x, allowed, out);
            }
        }
        // `{"msat": n}` (a monitor limit) names its unit too.
        Value::Number(n)
            if (n.is_u64() || n.is_i64())
                && field != "msat"
                && !field.ends_with("_msat")
                && !allowed.contains(field) =>
        {
            out.push(format!("{at} = {n}"));
        }
        _ => {}
    }
}

#[test]
fn every_answer_names_its_msat_amounts() {
    // A lopsided node with forwards, a hold invoice, alerts (D's remote side is below 5 %)
    // and rebalance history, so that every answer carries its amounts.
    let node = network(900_000_000, 100_000_000, 500_000_000, 970_000_000);
    node.add_forward(harness::fake_node::Forward::settled(
        CH_A, CH_B, 1_002_000, 1_000_000,
    ));
    let ld = start(&node);
    let allowed = not_msat_names();
    let inv = ld.rpc_ok(
        "hodl-invoice",
        json!({"amount_msat": 50_000, "description": "walk"}),
    );
    let hash = string(&inv, "/payment_hash").to_string();
    let inv2 = ld.rpc_ok(
        "hodl-invoice",
        json!({"amount_msat": 60_000, "description": "walk 2"}),
    );
    let hash2 = string(&inv2, "/payment_hash").to_string();
    let plan = ld.rpc_ok("rebalance-plan", json!({}));
    assert!(!planned(&plan).is_empty(), "{plan:#}");
    let plan_id = string(&plan, "/plan_id").to_string();
    ld.wait_until("an alert", WAIT, |ld| {
        let st = ld.rpc_ok("monitor-stats", json!({}));
        (st["active_alerts"]["low_remote"] == 1).then_some(())
    });
    let calls: Vec<(&str, Value)> = vec![
        ("ballast-status", json!({})),
        (
            "hodl-invoice",
            json!({"amount_msat": 70_000, "description": "walk 3"}),
        ),
        ("hodl-lookup", json!({"payment_hash": hash})),
        ("hodl-list", json!({})),
        ("hodl-cancel", json!({"payment_hash": hash2})),
        // Settling needs the HTLCs held first; an unpaid invoice answers with error 2002,
        // which is walked like any answer (hodl.rs covers settling itself).
        ("hodl-settle", json!({"payment_hash": hash})),
        ("fee-preview", json!({})),
        ("fee-apply", json!({"force": true})),
        ("fee-history", json!({})),
        ("fee-policy", json!({})),
        (
            "route-estimate",
            json!({"destination": n(E), "amount_msat": 1_000_000}),
        ),
        ("rebalance-plan", json!({})),
        ("rebalance-execute", json!({"plan_id": plan_id})),
        ("rebalance-set", json!({"scid": CH_C, "target": 0.4})),
        ("rebalance-status", json!({})),
        ("monitor-status", json!({})),
        ("monitor-stats", json!({})),
        ("monitor-alerts", json!({"which": "all"})),
        ("monitor-history", json!({"scid": CH_A})),
        ("monitor-export", json!({"path": "walk.json"})),
        ("monitor-set", json!({})),
        ("monitor-report", json!({"path": "walk.html"})),
    ];
    let mut bad = Vec::new();
    let mut walked = std::collections::BTreeSet::new();
    for (method, params) in calls {
        let answer = if method == "rebalance-execute" {
            deliver_htlcs(&ld, || {
                let r = ld.rpc(method, params.clone());
                ld.node().wait_payments_settled(WAIT);
                r
            })
        } else {
            ld.rpc(method, params.clone())
        };
        let answer = match answer {
            Ok(v) => v,
            Err(e) if method == "hodl-settle" => json!({"code": e.code, "message": e.message}),
            Err(e) => panic!("{method} {params}: {e}"),
        };
        if method == "rebalance-execute" {
            assert!(
                uint(&answer, "/fee_msat") > 0,
                "the walk needs a paid move: {answer:#}"
            );
        }
        unnamed_integers(method, "", &answer, &allowed, &mut bad);
        walked.insert(method.to_string());
    }
    assert!(
        bad.is_empty(),
        "integer fields that are msat amounts must be named *_msat (or, if not amounts, listed in tests/msat_names.json):\n{}",
        bad.join("\n")
    );
    // Every method the plugin registers was walked, and each says what it does.
    let manifest = ld.manifest();
    assert!(!manifest.rpcmethods.is_empty());
    for name in &manifest.rpcmethods {
        assert!(walked.contains(name), "{name} is not walked");
        let entry = array(&manifest.raw, "/rpcmethods")
            .iter()
            .find(|m| m["name"] == *name)
            .unwrap();
        let d = entry["description"].as_str().unwrap_or("");
        assert!(
            !d.is_empty() && !d.contains('\n'),
            "{name} needs a one-line description: {d:?}"
        );
    }
}
