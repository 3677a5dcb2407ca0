use super::*;
use crate::types::{Msat, NodeId, Scid};
use proptest::prelude::{any, prop_assert, prop_assert_eq, prop_oneof, proptest, Just, ProptestConfig};
use proptest::strategy::Strategy as Gen;

const SAMPLE: &str = include_str!("../../../contrib/fee-policy.sample.toml");
const T0: u64 = 1_700_000_000;

fn scid(n: u32) -> Scid {
    Scid::new(800_000 + n, n, 0).unwrap_or(Scid::from_u64(n as u64))
}

fn node(n: u8) -> NodeId {
    let mut b = [n; 33];
    b[0] = 2;
    NodeId(b)
}

/// A 1M sat channel with `local` sat on our side, current fee 0 msat + 100 ppm.
fn ch(local_sat: u64) -> ChannelInputs {
    ChannelInputs {
        scid: scid(1),
        peer: node(1),
        capacity: Msat(1_000_000_000),
        local: Msat(local_sat * 1_000),
        pending_htlcs: 0,
        flow: Flow {
            in_msat: Msat(0),
            out_msat: Msat(0),
            window_secs: 86_400,
        },
        rebalance_cost_ppm: None,
        peer_channels: None,
        current: ChannelFee::new(0, 100),
        last_update: None,
    }
}

fn policy(src: &str) -> Policy {
    match Policy::from_toml(src) {
        Ok(p) => p,
        Err(e) => panic!("policy should parse: {e}\n{src}"),
    }
}

/// Started long ago, nothing updated recently: decisions apply unless the change is small.
fn ctx() -> DecideCtx {
    DecideCtx {
        now: T0,
        started_at: T0 - 100_000,
        force: false,
    }
}

fn target(p: &Policy, c: &ChannelInputs) -> u32 {
    decide(p, &FeeConfig::default(), c, ctx()).target.ppm
}

fn static_rule(name: &str, ppm: u32) -> Rule {
    Rule::new(name, Strategy::Static { ppm }, 0, 10_000)
}

// ---------------------------------------------------------------- policy & matching

#[test]
fn sample_policy_parses_and_uses_every_strategy() {
    let p = policy(SAMPLE);
    let mut kinds: Vec<&str> = p.rules().iter().map(|r| r.strategy.name()).collect();
    for r in p.rules() {
        if let Strategy::CostFloor(CostFloorParams {
            strategy: Some(inner),
            ..
        }) = &r.strategy
        {
            kinds.push(inner.name());
        }
    }
    for k in ["static", "balance", "flow", "peer", "cost-floor"] {
        assert!(kinds.contains(&k), "sample lacks {k}: {kinds:?}");
    }
    // Defaults fill what a rule leaves out; a rule's own value wins.
    let partner = &p.rules()[0];
    assert_eq!(
        (partner.min_ppm, partner.max_ppm, partner.base_msat),
        (0, 2500, Some(Msat(1000)))
    );
    let busy = p.rules().iter().find(|r| r.name == "busy").unwrap();
    assert_eq!(
        (busy.min_ppm, busy.max_ppm, busy.base_msat),
        (1, 1500, Some(Msat(0)))
    );
}

#[test]
fn first_matching_rule_wins_in_order() {
    let a = static_rule("a", 111);
    let mut b = static_rule("b", 222);
    b.when.scid = vec![scid(1)];
    let p = Policy::new(vec![b.clone(), a.clone()]).unwrap();
    let d = decide(&p, &FeeConfig::default(), &ch(500_000), ctx());
    assert_eq!(
        d.rule.as_ref().map(|r| (r.index, r.name.as_str())),
        Some((0, "b"))
    );
    assert_eq!(d.target.ppm, 222);
    // A channel the first rule does not list falls through to the catch-all.
    let other = ChannelInputs {
        scid: scid(2),
        ..ch(500_000)
    };
    assert_eq!(target(&p, &other), 111);
    // Reversed, the catch-all shadows the specific rule.
    let p = Policy::new(vec![a, b]).unwrap();
    assert_eq!(target(&p, &ch(500_000)), 111);
}

#[test]
fn every_match_condition_is_checked() {
    let p = policy(&format!(
        "{GOOD_HEAD}[[rule]]\nmatch.peer = [\"{}\"]\nstrategy = {{ type = \"static\", ppm = 9 }}\n",
        node(2)
    ));
    assert_eq!(p.rules()[0].when.peer, vec![node(2)]);
    assert_eq!(
        target(
            &p,
            &ChannelInputs {
                peer: node(2),
                ..ch(1)
            }
        ),
        9
    );
    assert_eq!(p.rules()[0].name, "rule0");
    assert!(p.first_match(&ch(1), Some(0.0)).is_none(), "other peer");

    let p = policy(
        r#"
        [defaults]
        min_ppm = 0
        max_ppm = 5000
        [[rule]]
        match.capacity_msat = { max = 100_000 }
        strategy = { type = "static", ppm = 1 }
        [[rule]]
        match.local_ratio = { min = 0.9 }
        strategy = { type = "static", ppm = 2 }
        [[rule]]
        match.flow_in_msat = { min = 5_000 }
        strategy = { type = "static", ppm = 3 }
        [[rule]]
        match.flow_out_msat = { min = 5_000, max = 9_000 }
        strategy = { type = "static", ppm = 4 }
        [[rule]]
        match.pending_htlcs = { min = 10 }
        strategy = { type = "static", ppm = 5 }
        [[rule]]
        match.scid = ["800007x7x0"]
        strategy = { type = "static", ppm = 6 }
        [[rule]]
        strategy = { type = "static", ppm = 7 }
        "#,
    );
    let base = ch(500_000);
    assert_eq!(target(&p, &base), 7);
    assert_eq!(
        target(
            &p,
            &ChannelInputs {
                capacity: Msat(100_000),
                local: Msat(0),
                ..base
            }
        ),
        1
    );
    assert_eq!(target(&p, &ch(950_000)), 2);
    let mut c = base;
    c.flow.in_msat = Msat(5_000);
    assert_eq!(target(&p, &c), 3);
    let mut c = base;
    c.flow.out_msat = Msat(9_000);
    assert_eq!(target(&p, &c), 4);
    c.flow.out_msat = Msat(9_001);
    assert_eq!(target(&p, &c), 7, "max is inclusive, one above is out");
    assert_eq!(
        target(
            &p,
            &ChannelInputs {
                pending_htlcs: 10,
                ..base
            }
        ),
        5
    );
    assert_eq!(
        target(
            &p,
            &ChannelInputs {
                scid: scid(7),
                ..base
            }
        ),
        6
    );
    assert_eq!(p.rules()[6].name, "rule6", "unnamed rules are named by index");
}

#[test]
fn zero_capacity_never_matches_a_ratio_condition() {
    let p = policy(
        r#"
        [defaults]
        min_ppm = 0
        max_ppm = 5000
        [[rule]]
        match.local_ratio = { max = 1.0 }
        strategy = { type = "static", ppm = 1 }
        [[rule]]
        strategy = { type = "static", ppm = 2 }
        "#,
    );
    let c = ChannelInputs {
        capacity: Msat(0),
        local: Msat(0),
        ..ch(0)
    };
    assert_eq!(c.local_ratio(), None);
    assert_eq!(target(&p, &c), 2);
}

#[test]
fn no_rule_matched_leaves_fee_alone() {
    let p = Policy::default();
    let d = decide(&p, &FeeConfig::default(), &ch(1), ctx());
    assert_eq!(d.status, Status::NoRule);
    assert_eq!(d.target, d.current);
    assert!(!d.changes_fee());
    assert!(d.explanation.contains("no rule matched"), "{}", d.explanation);
}

// ---------------------------------------------------------------- strategies

fn balance(curve: Curve, empty: u32, full: u32) -> Policy {
    let s = Strategy::Balance(BalanceParams {
        curve,
        empty_ppm: empty,
        full_ppm: full,
    });
    Policy::new(vec![Rule::new("b", s, 0, 100_000)]).unwrap()
}

#[test]
fn balance_linear_curve() {
    let p = balance(Curve::Linear, 1000, 0);
    for (local, want) in [(0, 1000), (250_000, 750), (500_000, 500), (1_000_000, 0)] {
        assert_eq!(target(&p, &ch(local)), want, "local {local}");
    }
    // local above capacity (balance read racing a forward) counts as full, not beyond.
    assert_eq!(target(&p, &ch(2_000_000)), 0);
}

#[test]
fn balance_exponential_curve_is_geometric_and_monotonic() {
    let p = balance(Curve::Exponential, 1600, 100);
    assert_eq!(target(&p, &ch(0)), 1600);
    assert_eq!(target(&p, &ch(500_000)), 400, "geometric mean of the ends");
    assert_eq!(target(&p, &ch(1_000_000)), 100);
    assert_eq!(target(&p, &ch(250_000)), 800, "each quarter halves the fee");
    let mut prev = u32::MAX;
    for k in 0..=100 {
        let v = target(&p, &ch(k * 10_000));
        assert!(v <= prev, "not decreasing at {k}%: {v} > {prev}");
        prev = v;
    }
    // Low local = drained outward = high fee, and the exponential curve rises faster than
    // the linear one near empty.
    let lin = balance(Curve::Linear, 1600, 100);
    assert!(target(&p, &ch(100_000)) > target(&lin, &ch(100_000)) - 400);
    assert!(target(&p, &ch(500_000)) < target(&lin, &ch(500_000)));
}

fn flow_policy(min: u32, max: u32) -> Policy {
    let s = Strategy::Flow(FlowParams {
        idle_msat: Msat(1_000),
        ..FlowParams::default()
    });
    Policy::new(vec![Rule::new("f", s, min, max)]).unwrap()
}

fn with_flow(mut c: ChannelInputs, in_msat: u64, out_msat: u64, cur: u32) -> ChannelInputs {
    c.flow.in_msat = Msat(in_msat);
    c.flow.out_msat = Msat(out_msat);
    c.current.ppm = cur;
    c
}

#[test]
fn flow_steps_from_current_fee() {
    let p = flow_policy(0, 5000);
    let c = ch(500_000);
    // Draining: all out → +10 %.
    assert_eq!(target(&p, &with_flow(c, 0, 1_000_000, 1000)), 1100);
    // Net outward 0.2 exactly is draining (threshold inclusive).
    assert_eq!(target(&p, &with_flow(c, 400_000, 600_000, 1000)), 1100);
    // Steady: balanced flow holds.
    assert_eq!(target(&p, &with_flow(c, 500_000, 500_000, 1000)), 1000);
    // Refilling: mostly in → -5 %.
    assert_eq!(target(&p, &with_flow(c, 900_000, 100_000, 1000)), 950);
    // Idle: total flow at or below idle_msat → -5 %.
    assert_eq!(target(&p, &with_flow(c, 500, 500, 1000)), 950);
    assert_eq!(target(&p, &with_flow(c, 0, 0, 1000)), 950);
    // Near zero the minimum step still moves the fee, and never below zero.
    assert_eq!(target(&p, &with_flow(c, 0, 1_000_000, 10)), 15);
    assert_eq!(target(&p, &with_flow(c, 0, 0, 3)), 0);
}

#[test]
fn flow_starts_from_the_current_fee_brought_into_bounds() {
    let p = flow_policy(500, 800);
    let c = ch(500_000);
    // Current 0 is below min 500: step from 500, not from 0.
    assert_eq!(target(&p, &with_flow(c, 0, 1_000_000, 0)), 550);
    // Current 5000 is above max 800: step down from 800, then stays in bounds.
    assert_eq!(target(&p, &with_flow(c, 0, 0, 5000)), 760);
    // Raising at the ceiling stays at the ceiling.
    let d = decide(&p, &FeeConfig::default(), &with_flow(c, 0, 1_000_000, 800), ctx());
    assert_eq!(d.target.ppm, 800);
    assert_eq!(d.strategy_ppm, 880);
    assert!(
        d.explanation.contains("clamped to max 800 ppm"),
        "{}",
        d.explanation
    );
}

#[test]
fn peer_strategy_formula() {
    let s = Strategy::Peer(PeerParams {
        ppm: 400,
        reference_channels: 16,
        balance_weight: 1.0,
    });
    let p = Policy::new(vec![Rule::new("p", s, 0, 100_000)]).unwrap();
    let with_peers = |local: u64, n: Option<u32>| ChannelInputs {
        peer_channels: n,
        ..ch(local)
    };
    assert_eq!(target(&p, &with_peers(500_000, None)), 400);
    assert_eq!(target(&p, &with_peers(500_000, Some(16))), 400);
    assert_eq!(target(&p, &with_peers(0, Some(16))), 800, "empty doubles");
    assert_eq!(target(&p, &with_peers(1_000_000, Some(16))), 200, "full halves");
    assert_eq!(target(&p, &with_peers(500_000, Some(4))), 800, "sqrt(16/4) = 2");
    assert_eq!(target(&p, &with_peers(500_000, Some(1))), 800, "capped at x2");
    assert_eq!(
        target(&p, &with_peers(500_000, Some(0))),
        800,
        "0 channels treated as 1"
    );
    assert_eq!(
        target(&p, &with_peers(500_000, Some(64))),
        200,
        "sqrt(16/64) = 0.5"
    );
    assert_eq!(
        target(&p, &with_peers(500_000, Some(10_000))),
        200,
        "floored at x0.5"
    );
    assert_eq!(target(&p, &with_peers(0, Some(4))), 1600);
}

#[test]
fn cost_floor_over_inner_strategy() {
    let inner = Strategy::Static { ppm: 300 };
    let s = Strategy::CostFloor(CostFloorParams {
        margin_ppm: 50,
        margin_ratio: 0.10,
        strategy: Some(Box::new(inner)),
    });
    let p = Policy::new(vec![Rule::new("c", s, 10, 1000)]).unwrap();
    let cost = |c: Option<u32>| ChannelInputs {
        rebalance_cost_ppm: c,
        ..ch(100_000)
    };
    assert_eq!(target(&p, &cost(None)), 300, "no data, no floor");
    assert_eq!(target(&p, &cost(Some(100))), 300, "floor 160 not binding");
    assert_eq!(target(&p, &cost(Some(500))), 600, "floor 500*1.1+50 binds");
    let d = decide(&p, &FeeConfig::default(), &cost(Some(5_000)), ctx());
    assert_eq!(d.target.ppm, 1000, "max bound wins over the floor");
    assert_eq!(d.strategy_ppm, 5_550);
    assert!(
        d.explanation.contains("rebalancing cost 5000 ppm"),
        "{}",
        d.explanation
    );
    assert!(
        d.explanation.contains("clamped to max 1000 ppm"),
        "{}",
        d.explanation
    );
}

#[test]
fn cost_floor_alone_falls_back_to_min() {
    let s = Strategy::CostFloor(CostFloorParams {
        margin_ppm: 0,
        margin_ratio: 0.0,
        strategy: None,
    });
    let p = Policy::new(vec![Rule::new("c", s, 25, 1000)]).unwrap();
    assert_eq!(target(&p, &ch(1)), 25);
    let c = ChannelInputs {
        rebalance_cost_ppm: Some(700),
        ..ch(1)
    };
    assert_eq!(target(&p, &c), 700);
}

#[test]
fn bounds_hold_under_extreme_inputs() {
    let p = policy(SAMPLE);
    let mut extremes = vec![];
    for (cap, local) in [
        (0, 0),
        (0, u64::MAX),
        (1, 0),
        (1, 1),
        (u64::MAX, 0),
        (u64::MAX, u64::MAX),
        (10, 20),
    ] {
        for cur in [0, 1, 999, u32::MAX] {
            for flow in [(0, 0), (u64::MAX, 0), (0, u64::MAX), (u64::MAX, u64::MAX)] {
                extremes.push(ChannelInputs {
                    capacity: Msat(cap),
                    local: Msat(local),
                    pending_htlcs: u32::MAX,
                    flow: Flow {
                        in_msat: Msat(flow.0),
                        out_msat: Msat(flow.1),
                        window_secs: 0,
                    },
                    rebalance_cost_ppm: Some(u32::MAX),
                    peer_channels: Some(0),
                    current: ChannelFee::new(u64::MAX, cur),
                    last_update: Some(u64::MAX),
                    ..ch(0)
                });
            }
        }
    }
    for c in &extremes {
        let ratio = c.local_ratio();
        assert!(ratio.is_none_or(|r| (0.0..=1.0).contains(&r)));
        let d = decide(&p, &FeeConfig::default(), c, ctx());
        let r = &p.rules()[d.rule.as_ref().expect("sample ends in a catch-all").index];
        assert!((r.min_ppm..=r.max_ppm).contains(&d.target.ppm), "{d:?}");
        assert!(
            !d.explanation.contains("NaN") && !d.explanation.contains("inf"),
            "{}",
            d.explanation
        );
    }
}

// ---------------------------------------------------------------- policy files

fn err(src: &str) -> PolicyError {
    match Policy::from_toml(src) {
        Ok(p) => panic!("should be rejected: {p:?}"),
        Err(e) => e,
    }
}

const GOOD_HEAD: &str = "[defaults]\nmin_ppm = 1\nmax_ppm = 1000\n";

#[test]
fn toml_syntax_error_reports_line() {
    let src = format!("{GOOD_HEAD}\n[[rule]]\nname = \"x\"\nstrategy = {{ type = \"static\", ppm = 5 \n");
    let e = err(&src);
    assert!(matches!(e, PolicyError::Syntax { .. }), "{e:?}");
    assert_eq!(e.location().line, Some(7), "{e}");
    assert!(e.to_string().starts_with("line 7, column"), "{e}");
}

#[test]
fn unknown_strategy_names_rule_and_line() {
    let src = format!(
        "{GOOD_HEAD}\n[[rule]]\nname = \"ok\"\nstrategy = {{ type = \"static\", ppm = 5 }}\n\n\
         [[rule]]\nname = \"typo\"\nstrategy = {{ type = \"blance\", empty_ppm = 1, full_ppm = 2 }}\n"
    );
    let e = err(&src);
    let s = e.to_string();
    assert_eq!(e.location().line, Some(11), "{s}");
    assert!(s.contains("rule[1] 'typo'"), "{s}");
    assert!(s.contains("unknown strategy type `blance`"), "{s}");
    // A parameter of another strategy is named, with what the strategy does take.
    let e = err(&format!(
        "{GOOD_HEAD}[[rule]]\nstrategy = {{ type = \"static\", ppm = 5, raise_step = 0.1 }}\n"
    ));
    assert!(
        e.to_string()
            .contains("`raise_step` does not apply to a `static` strategy (it takes ppm)"),
        "{e}"
    );
    let e = err(&format!(
        "{GOOD_HEAD}[[rule]]\nstrategy = {{ type = \"balance\", empty_ppm = 1, full_ppm = 2 }}\n"
    ));
    assert!(e.to_string().contains("needs `curve`"), "{e}");
    assert_eq!(e.location().line, Some(5), "{e}");
}

#[test]
fn unknown_field_is_rejected_with_its_line() {
    let src = format!(
        "{GOOD_HEAD}[[rule]]\nname = \"a\"\nmax_pm = 5\nstrategy = {{ type = \"static\", ppm = 5 }}\n"
    );
    let e = err(&src);
    assert_eq!(e.location().line, Some(6), "{e}");
    assert!(e.to_string().contains("max_pm"), "{e}");
    // ...also inside a strategy sub-table written after the rule header.
    let src =
        format!("{GOOD_HEAD}[[rule]]\nname = \"a\"\n[rule.strategy]\ntype = \"flow\"\nraise_stp = 0.1\n");
    let e = err(&src);
    assert!(e.to_string().contains("raise_stp"), "{e}");
    assert_eq!(e.location().line, Some(8), "{e}");
    assert_eq!(
        e.location().rule.as_ref().map(|r| r.name.as_str()),
        Some("a"),
        "{e}"
    );
}

#[test]
fn validation_errors_name_rule_and_line() {
    let src = "[[rule]]\nname = \"first\"\nmin_ppm = 0\nmax_ppm = 9\nstrategy = { type = \"static\", ppm = 5 }\n\n\
               [[rule]]\nname = \"inverted\"\nmin_ppm = 900\nmax_ppm = 100\nstrategy = { type = \"static\", ppm = 5 }\n";
    let e = err(src);
    assert!(matches!(e, PolicyError::Invalid { .. }), "{e:?}");
    let s = e.to_string();
    assert!(s.starts_with("line 7, rule[1] 'inverted'"), "{s}");
    assert!(s.contains("min_ppm 900 is greater than max_ppm 100"), "{s}");

    let cases: &[(&str, &str)] = &[
        (
            "match.local_ratio = { max = 1.5 }\nstrategy = { type = \"static\", ppm = 5 }",
            "outside 0..1",
        ),
        (
            "match.local_ratio = { min = -0.1 }\nstrategy = { type = \"static\", ppm = 5 }",
            "outside 0..1",
        ),
        (
            "match.local_ratio = { min = nan }\nstrategy = { type = \"static\", ppm = 5 }",
            "outside 0..1",
        ),
        (
            "match.flow_out_msat = { min = 9, max = 1 }\nstrategy = { type = \"static\", ppm = 5 }",
            "min is greater",
        ),
        ("strategy = { type = \"flow\", raise_step = inf }", "raise_step"),
        ("strategy = { type = \"flow\", lower_step = 1.5 }", "lower_step"),
        (
            "strategy = { type = \"peer\", ppm = 1, reference_channels = 0 }",
            "reference_channels",
        ),
        (
            "strategy = { type = \"balance\", curve = \"exponential\", empty_ppm = 0, full_ppm = 5 }",
            "exponential",
        ),
        (
            "strategy = { type = \"cost-floor\", strategy = { type = \"cost-floor\" } }",
            "cannot be cost-floor",
        ),
        (
            "name = \"  \"\nstrategy = { type = \"static\", ppm = 5 }",
            "name is empty",
        ),
    ];
    for (body, want) in cases {
        let src = format!("{GOOD_HEAD}\n[[rule]]\n{body}\n");
        let e = err(&src);
        assert_eq!(e.location().line, Some(5), "{body}: {e}");
        assert_eq!(
            e.location().rule.as_ref().map(|r| r.index),
            Some(0),
            "{body}: {e}"
        );
        assert!(e.to_string().contains(want), "{body}: {e}");
    }
}

#[test]
fn missing_bounds_and_duplicate_names_are_rejected() {
    let e = err("[[rule]]\nmin_ppm = 1\nstrategy = { type = \"static\", ppm = 5 }\n");
    assert!(e.to_string().contains("max_ppm is not set"), "{e}");
    assert_eq!(e.location().line, Some(1));
    let src = format!(
        "{GOOD_HEAD}[[rule]]\nname = \"d\"\nstrategy = {{ type = \"static\", ppm = 5 }}\n\
         [[rule]]\nname = \"d\"\nstrategy = {{ type = \"static\", ppm = 6 }}\n"
    );
    let e = err(&src);
    assert_eq!(e.location().rule.as_ref().map(|r| r.index), Some(1), "{e}");
    assert!(e.to_string().contains("already has this name"), "{e}");
    // Wrong types are syntax errors with a line.
    let e = err(&format!(
        "{GOOD_HEAD}[[rule]]\nstrategy = {{ type = \"static\", ppm = -5 }}\n"
    ));
    assert_eq!(e.location().line, Some(5), "{e}");
    let e = err(&format!(
        "{GOOD_HEAD}[[rule]]\nmatch.scid = [\"nope\"]\nstrategy = {{ type = \"static\", ppm = 5 }}\n"
    ));
    assert!(e.to_string().contains("short_channel_id"), "{e}");
}

#[test]
fn empty_policy_is_valid() {
    assert!(policy("").is_empty());
    assert!(policy("[defaults]\nmin_ppm = 1\n").is_empty());
}

#[test]
fn json_round_trip_and_validation() {
    let p = policy(SAMPLE);
    let json = p.to_json();
    let text = json.to_string();
    assert_eq!(Policy::from_json(&text).unwrap(), p);
    assert_eq!(Policy::from_json_value(json.clone()).unwrap(), p);
    assert_eq!(serde_json::from_str::<Policy>(&text).unwrap(), p);
    // The serialized form spells every rule out (no defaults needed to read it back).
    assert!(json["rules"][1]["max_ppm"].is_number(), "{json}");
    assert_eq!(json["rules"][2]["strategy"]["type"], "cost-floor");

    let bad = r#"{"rules":[{"name":"x","min_ppm":5,"max_ppm":1,"strategy":{"type":"static","ppm":1}}]}"#;
    let e = Policy::from_json(bad).unwrap_err();
    assert!(e.to_string().contains("rule[0] 'x'"), "{e}");
    assert!(
        serde_json::from_str::<Policy>(bad).is_err(),
        "serde path validates too"
    );
    let e = Policy::from_json("{\"rules\": [\n{\"strategy\": {\"type\": \"nope\"}}]}").unwrap_err();
    assert_eq!(e.location().line, Some(2), "{e}");
}

// ---------------------------------------------------------------- when to apply

fn static_policy(ppm: u32) -> Policy {
    Policy::new(vec![Rule::new("s", Strategy::Static { ppm }, 0, 10_000)]).unwrap()
}

#[test]
fn min_delta_needs_both_absolute_and_relative_change() {
    let cfg = FeeConfig {
        min_delta_ppm: 10,
        min_delta_ratio: 0.05,
        ..FeeConfig::default()
    };
    let at = |cur: u32, tgt: u32| {
        let c = ChannelInputs {
            current: ChannelFee::new(0, cur),
            ..ch(1)
        };
        decide(&static_policy(tgt), &cfg, &c, ctx()).status
    };
    assert_eq!(at(100, 100), Status::Unchanged);
    assert!(matches!(at(100, 109), Status::BelowMinDelta { delta_ppm: 9, .. }));
    assert_eq!(at(100, 110), Status::Apply);
    assert_eq!(at(100, 90), Status::Apply);
    // 2000 → 2050 is 50 ppm but only 2.5 %.
    assert!(matches!(at(2000, 2050), Status::BelowMinDelta { .. }));
    assert_eq!(at(2000, 2100), Status::Apply);
    // From zero any change above the absolute floor is relative enough.
    assert_eq!(at(0, 10), Status::Apply);
    let s = at(100, 105).to_string();
    assert!(
        s.contains("below min delta: 5 ppm change, needs 10 ppm and 5%"),
        "{s}"
    );
}

#[test]
fn out_of_bounds_or_base_change_ignores_min_delta() {
    let cfg = FeeConfig::default();
    let mut rule = Rule::new("s", Strategy::Static { ppm: 0 }, 100, 500);
    let p = Policy::new(vec![rule.clone()]).unwrap();
    // Current 95 is under min 100: a 5 ppm fix is still made.
    let c = ChannelInputs {
        current: ChannelFee::new(0, 95),
        ..ch(1)
    };
    assert_eq!(decide(&p, &cfg, &c, ctx()).status, Status::Apply);
    // A base fee change goes through even with the same ppm.
    rule.base_msat = Some(Msat(1000));
    let p = Policy::new(vec![rule]).unwrap();
    let c = ChannelInputs {
        current: ChannelFee::new(0, 100),
        ..ch(1)
    };
    let d = decide(&p, &cfg, &c, ctx());
    assert_eq!(d.status, Status::Apply);
    assert_eq!(d.target, ChannelFee::new(1000, 100));
}

#[test]
fn startup_hold_rate_limit_force_and_dry_run() {
    let p = static_policy(500);
    let cfg = FeeConfig::default();
    let c = ch(1);
    let fresh = DecideCtx {
        now: T0 + 60,
        started_at: T0,
        force: false,
    };
    let d = decide(&p, &cfg, &c, fresh);
    assert_eq!(d.status, Status::StartupHold { until: T0 + 3_600 });
    assert_eq!(d.status.not_before(), Some(T0 + 3_600));
    assert_eq!(d.target.ppm, 500, "computed even while held");
    assert_eq!(
        decide(&p, &cfg, &c, DecideCtx { force: true, ..fresh }).status,
        Status::Apply
    );

    let recent = ChannelInputs {
        last_update: Some(T0 - 600),
        ..c
    };
    assert_eq!(
        decide(&p, &cfg, &recent, ctx()).status,
        Status::RateLimited { until: T0 + 3_000 }
    );
    let later = DecideCtx {
        now: T0 + 3_000,
        ..ctx()
    };
    assert_eq!(decide(&p, &cfg, &recent, later).status, Status::Apply);

    let dry = FeeConfig { dry_run: true, ..cfg };
    assert_eq!(decide(&p, &dry, &c, ctx()).status, Status::DryRun);
    assert_eq!(
        decide(&p, &dry, &c, DecideCtx { force: true, ..ctx() }).status,
        Status::DryRun
    );
    assert!(!Status::DryRun.applies());
    let line = decide(&p, &dry, &recent, ctx()).to_string();
    assert!(line.starts_with("800001x1x0: rule[0] 's'"), "{line}");
    assert!(
        line.ends_with(&format!("[rate-limited until {}]", T0 + 3_000)),
        "{line}"
    );
}

#[test]
fn explanation_reads_like_the_reasoning() {
    let p = policy(
        r#"
        [[rule]]
        name = "drained"
        match.local_ratio = { max = 0.2 }
        min_ppm = 10
        max_ppm = 800
        strategy = { type = "balance", curve = "linear", empty_ppm = 1000, full_ppm = 0 }
        "#,
    );
    let d = decide(&p, &FeeConfig::default(), &ch(120_000), ctx());
    let e = &d.explanation;
    assert_eq!(d.target.ppm, 800);
    assert_eq!(d.strategy_ppm, 880);
    assert_eq!(d.local_ratio, Some(0.12));
    for want in [
        "rule[0] 'drained'",
        "local ratio 0.12 <= 0.20",
        "balance linear curve",
        "-> 880 ppm",
        "clamped to max 800 ppm",
        "target 0 msat + 800 ppm (current 0 msat + 100 ppm)",
    ] {
        assert!(e.contains(want), "missing {want:?} in {e:?}");
    }
    // Flow explanations carry the window and the verdict.
    let d = decide(
        &flow_policy(0, 5000),
        &FeeConfig::default(),
        &with_flow(ch(1), 0, 7_000, 200),
        ctx(),
    );
    for want in [
        "flow over 1d",
        "out 7000 msat",
        "net outward 1.00",
        "draining: 200 ppm -> 220 ppm",
    ] {
        assert!(
            d.explanation.contains(want),
            "missing {want:?} in {:?}",
            d.explanation
        );
    }
    let d = decide(
        &balance(Curve::Linear, 100, 0),
        &FeeConfig::default(),
        &ChannelInputs {
            capacity: Msat(0),
            ..ch(0)
        },
        ctx(),
    );
    assert!(
        d.explanation
            .contains("capacity 0, local ratio unknown, assuming 0.50"),
        "{}",
        d.explanation
    );
    assert_eq!(d.target.ppm, 50);
}

// ---------------------------------------------------------------- coalescing

#[test]
fn burst_of_1000_events_gives_one_apply() {
    let cfg = FeeConfig::default();
    let p = balance(Curve::Linear, 2000, 0);
    let started = T0 - 10 * cfg.min_interval_secs;
    let mut co = Coalescer::new(&cfg, started);
    let mut c = ch(900_000);
    let mut applies = vec![];
    let mut decisions = 0;
    // 1,000 forwards within 20 s, each pushing 500 sat out.
    for i in 0..1_000u64 {
        let now = T0 + i / 50;
        c.local = c.local.saturating_sub(Msat(500_000));
        co.on_event(c.scid, now);
        while let Some((scid, pending)) = co.pop_due(now) {
            decisions += 1;
            let _ = (scid, pending);
        }
    }
    assert_eq!(co.pending(c.scid).map(|p| p.events), Some(1_000));
    let due = co.next_due().unwrap();
    assert_eq!(
        due,
        T0 + cfg.coalesce_secs,
        "one decision at the end of the window"
    );
    for (scid, _) in co.take_due(due) {
        decisions += 1;
        c.last_update = co.last_applied(scid);
        let d = decide(
            &p,
            &cfg,
            &c,
            DecideCtx {
                now: due,
                started_at: started,
                force: false,
            },
        );
        if d.status.applies() {
            co.record_applied(scid, due);
            applies.push(due);
            c.current = d.target;
        }
    }
    assert_eq!(decisions, 1);
    assert_eq!(applies, vec![due]);
    assert_eq!(co.pending_len(), 0);
}

#[test]
fn sustained_traffic_applies_at_most_once_per_interval() {
    let cfg = FeeConfig::default();
    let p = balance(Curve::Linear, 2000, 0);
    let mut co = Coalescer::new(&cfg, T0);
    let mut c = ch(1_000_000);
    let mut applies: Vec<u64> = vec![];
    let mut decisions = 0u32;
    // 1,000 forwards, one every 13 s for ~3.6 h, draining the channel steadily, with the
    // caller's timer polling every second.
    let end = T0 + 13 * 1_000;
    let mut next_event = T0;
    for now in T0..=end + 2 * cfg.min_interval_secs {
        if now == next_event && now <= end {
            c.local = c.local.saturating_sub(Msat(900_000));
            co.on_event(c.scid, now);
            next_event += 13;
        }
        while let Some((scid, _)) = co.pop_due(now) {
            decisions += 1;
            c.last_update = co.last_applied(scid);
            let d = decide(
                &p,
                &cfg,
                &c,
                DecideCtx {
                    now,
                    started_at: T0,
                    force: false,
                },
            );
            if d.status.applies() {
                co.record_applied(scid, now);
                applies.push(now);
                c.current = d.target;
            }
        }
    }
    assert!(!applies.is_empty());
    assert!(
        applies[0] >= T0 + cfg.min_interval_secs,
        "startup hold: {applies:?}"
    );
    for w in applies.windows(2) {
        assert!(w[1] - w[0] >= cfg.min_interval_secs, "{applies:?}");
    }
    let span = end + 2 * cfg.min_interval_secs - T0;
    assert!(
        applies.len() as u64 <= span / cfg.min_interval_secs + 1,
        "{applies:?}"
    );
    // The fee followed the drain.
    assert!(c.current.ppm > 1_000, "{:?}", c.current);
    assert!(
        decisions <= applies.len() as u32 + 5,
        "decisions {decisions} vs applies {applies:?}"
    );
}

#[test]
fn coalescer_respects_seeded_last_update_and_forgets() {
    let cfg = FeeConfig::default();
    let mut co = Coalescer::new(&cfg, 0);
    let s = scid(3);
    co.record_applied(s, T0);
    assert_eq!(co.on_event(s, T0 + 10), T0 + 3_600);
    assert_eq!(co.pop_due(T0 + 3_599), None);
    // A manual apply while pending pushes the decision back.
    co.record_applied(s, T0 + 100);
    assert_eq!(co.next_due(), Some(T0 + 3_700));
    // An older record never moves the clock backwards.
    co.record_applied(s, T0);
    assert_eq!(co.last_applied(s), Some(T0 + 100));
}

// ---------------------------------------------------------------- history

#[test]
fn fee_change_records_applied_decisions_only() {
    let p = static_policy(500);
    let d = decide(&p, &FeeConfig::default(), &ch(1), ctx());
    let rec = FeeChange::from_decision(&d, Trigger::Forward, T0).unwrap();
    assert_eq!(
        (rec.old.ppm, rec.new.ppm, rec.rule.name.as_str()),
        (100, 500, "s")
    );
    assert!(!rec.dry_run);
    assert_eq!(rec.explanation, d.explanation);
    let json = serde_json::to_string(&rec).unwrap();
    assert!(json.contains("\"trigger\":\"forward\""), "{json}");
    assert!(json.contains("\"scid\":\"800001x1x0\""), "{json}");
    assert_eq!(serde_json::from_str::<FeeChange>(&json).unwrap(), rec);

    let held = DecideCtx {
        started_at: T0,
        ..ctx()
    };
    assert!(FeeChange::from_decision(
        &decide(&p, &FeeConfig::default(), &ch(1), held),
        Trigger::Timer,
        T0
    )
    .is_none());
    let dry = FeeConfig {
        dry_run: true,
        ..FeeConfig::default()
    };
    let rec = FeeChange::from_decision(&decide(&p, &dry, &ch(1), ctx()), Trigger::Manual, T0).unwrap();
    assert!(rec.dry_run);
    // The decision itself serializes for fee-preview.
    let v = serde_json::to_value(decide(&p, &FeeConfig::default(), &ch(1), held)).unwrap();
    assert_eq!(v["status"]["kind"], "startup_hold");
    assert_eq!(v["rule"]["name"], "s");
}

// ---------------------------------------------------------------- properties

fn arb_strategy() -> impl Gen<Value = Strategy> {
    let leaf = prop_oneof![
        any::<u32>().prop_map(|ppm| Strategy::Static { ppm }),
        (any::<bool>(), any::<u32>(), any::<u32>()).prop_map(|(exp, e, f)| {
            Strategy::Balance(BalanceParams {
                curve: if exp { Curve::Exponential } else { Curve::Linear },
                empty_ppm: e,
                full_ppm: f,
            })
        }),
        (
            0.0..=10.0f64,
            0.0..=1.0f64,
            any::<u32>(),
            0.0..=1.0f64,
            any::<u64>()
        )
            .prop_map(|(r, l, m, t, i)| {
                Strategy::Flow(FlowParams {
                    raise_step: r,
                    lower_step: l,
                    min_step_ppm: m,
                    drain_threshold: t,
                    idle_msat: Msat(i),
                })
            }),
        (any::<u32>(), any::<u32>(), 0.0..=10.0f64).prop_map(|(ppm, n, w)| {
            Strategy::Peer(PeerParams {
                ppm,
                reference_channels: n,
                balance_weight: w,
            })
        }),
    ];
    leaf.prop_flat_map(|inner| {
        prop_oneof![
            Just(inner.clone()),
            (any::<u32>(), 0.0..=100.0f64, any::<bool>()).prop_map(move |(m, r, nest)| {
                Strategy::CostFloor(CostFloorParams {
                    margin_ppm: m,
                    margin_ratio: r,
                    strategy: nest.then(|| Box::new(inner.clone())),
                })
            }),
        ]
    })
}

fn arb_inputs() -> impl Gen<Value = ChannelInputs> {
    let edge = prop_oneof![
        Just(0u64),
        Just(1),
        Just(u64::MAX),
        any::<u64>(),
        0..2_000_000_000u64
    ];
    (
        (edge.clone(), edge.clone(), edge.clone(), edge),
        (any::<u32>(), any::<Option<u32>>(), any::<Option<u32>>()),
        (
            any::<u64>(),
            any::<u32>(),
            any::<Option<u16>>(),
            any::<Option<u64>>(),
            any::<u64>(),
        ),
    )
        .prop_map(
            |((cap, local, fin, fout), (pending, cost, peers), (base, ppm, cltv, last, win))| ChannelInputs {
                capacity: Msat(cap),
                local: Msat(local),
                pending_htlcs: pending,
                flow: Flow {
                    in_msat: Msat(fin),
                    out_msat: Msat(fout),
                    window_secs: win,
                },
                rebalance_cost_ppm: cost,
                peer_channels: peers,
                current: ChannelFee {
                    base_msat: Msat(base),
                    ppm,
                    cltv_delta: cltv,
                },
                last_update: last,
                ..ch(0)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn no_input_drives_fee_out_of_bounds(
        strategy in arb_strategy(),
        a in any::<u32>(),
        b in any::<u32>(),
        c in arb_inputs(),
        now in any::<u64>(),
        started in any::<u64>(),
        force in any::<bool>(),
        min_delta_ppm in any::<u32>(),
        min_delta_ratio in prop_oneof![Just(f64::NAN), Just(f64::INFINITY), -1.0..2.0f64],
        interval in any::<u64>(),
    ) {
        let (lo, hi) = (a.min(b), a.max(b));
        let rule = Rule::new("r", strategy, lo, hi);
        let policy = match Policy::new(vec![rule]) {
            Ok(p) => p,
            // Out-of-range parameters are rejected, never decided on.
            Err(_) => return Ok(()),
        };
        let cfg = FeeConfig { min_delta_ppm, min_delta_ratio, min_interval_secs: interval, coalesce_secs: 30, dry_run: false };
        let d = decide(&policy, &cfg, &c, DecideCtx { now, started_at: started, force });
        prop_assert!(d.rule.is_some());
        prop_assert!(d.target.ppm >= lo && d.target.ppm <= hi, "{} not in [{lo}, {hi}]: {}", d.target.ppm, d.explanation);
        prop_assert!(!d.explanation.contains("NaN"));
        if let Some(r) = d.local_ratio {
            prop_assert!((0.0..=1.0).contains(&r));
        }
    }

    #[test]
    fn arbitrary_policy_text_never_panics(s in "\\PC{0,200}") {
        let _ = Policy::from_toml(&s);
        let _ = Policy::from_json(&s);
    }

    #[test]
    fn coalescer_never_panics_and_stays_consistent(events in proptest::collection::vec((0u32..5, any::<u64>()), 0..50)) {
        let mut co = Coalescer::new(&FeeConfig::default(), 0);
        for (i, (ch, t)) in events.iter().enumerate() {
            let s = scid(*ch);
            co.on_event(s, *t);
            if i % 3 == 0 {
                co.record_applied(s, *t);
            }
            if i % 5 == 0 {
                let _ = co.take_due(*t);
            }
        }
        let _ = co.take_due(u64::MAX);
        prop_assert_eq!(co.pending_len(), 0);
    }
}

#[test]
fn the_builtin_policy_follows_the_balance_within_its_bounds() {
    let p = Policy::builtin().unwrap();
    let at = |local_sat: u64| decide(&p, &FeeConfig::default(), &ch(local_sat), ctx());
    let (empty, half, full) = (at(0), at(500_000), at(1_000_000));
    assert_eq!((empty.target.ppm, full.target.ppm), (1000, 10));
    assert!((90..=110).contains(&half.target.ppm), "{half}");
    // The base fee stays as the operator set it.
    assert_eq!(half.target.base_msat, Msat(0), "{half}");
    // Less local balance never means a lower fee, and never outside 10..1000 ppm.
    let mut last = u32::MAX;
    for i in 0..=20 {
        let t = at(i * 50_000).target.ppm;
        assert!(t <= last && (10..=1000).contains(&t), "{i}: {t}");
        last = t;
    }
}
