//! `ballast simulate`: determinism, conservation, budgets, the report, and usage errors.

use ballast::sim::{simulate, simulate_with, Args, Rebalancer, SimPolicy};
use std::process::Command;

fn args(seed: u64, hours: u64) -> Args {
    Args {
        nodes: 60,
        channels: 10,
        hours,
        seed,
        quiet: true,
        ..Args::default()
    }
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ballast"));
    // `simulate` must not need lightningd's environment.
    c.env_remove("LIGHTNINGD_PLUGIN");
    c
}

#[test]
fn the_same_seed_gives_the_same_summary() {
    let policy = SimPolicy::default_policy();
    let a = simulate(&args(7, 24), &policy).unwrap();
    let b = simulate(&args(7, 24), &policy).unwrap();
    assert_eq!(a.summary, b.summary);
    assert_eq!(a.conservation, b.conservation);
    assert!(
        a.summary.payments > 500 && a.summary.forwards > 0,
        "{:?}",
        a.summary
    );
    let c = simulate(&args(8, 24), &policy).unwrap();
    assert_ne!(a.summary, c.summary, "another seed, another run");
}

#[test]
fn msat_are_conserved_apart_from_fees_paid_and_earned() {
    let policy = SimPolicy::default_policy();
    for seed in [1, 2, 3] {
        let o = simulate(&args(seed, 48), &policy).unwrap();
        let c = &o.conservation;
        let s = &o.summary;
        assert_eq!(c.total_initial, c.total_capacity, "seed {seed}");
        assert_eq!(c.total_final, c.total_capacity, "seed {seed}");
        assert_eq!(
            c.fees_paid, c.fees_earned,
            "seed {seed}: every fee paid is earned by a forwarder"
        );
        assert_eq!(
            c.nodes_mismatched, 0,
            "seed {seed}: each node's change is explained by its ledger"
        );
        // Our node: exactly what it earned forwarding, plus hold invoices it settled, minus
        // what rebalancing cost.
        let delta = c.ours_final as i128 - c.ours_initial as i128;
        let expect =
            s.fees_earned_msat as i128 + s.hodl_received_msat as i128 - s.rebalance_spend_msat as i128;
        assert_eq!(delta, expect, "seed {seed}: {s:?}");
        assert!(
            s.hodl_settled > 0 && s.hodl_received_msat > 0,
            "seed {seed}: {s:?}"
        );
    }
}

#[test]
fn rebalance_budgets_are_never_exceeded() {
    let generous = SimPolicy::default_policy();
    let mut spent_any = false;
    for seed in 1..=4 {
        let o = simulate(&args(seed, 48), &generous).unwrap();
        let s = &o.summary;
        assert!(s.max_24h_spend_msat <= s.daily_budget_msat, "{s:?}");
        assert!(s.rebalance_max_ppm <= u64::from(s.max_ppm), "{s:?}");
        spent_any |= s.rebalance_ok > 0;
    }
    assert!(spent_any, "the default policy rebalances at all");

    // A tight budget and cap: hit, never crossed.
    let tight = SimPolicy::parse(
        "tight",
        &ballast::sim::DEFAULT_POLICY
            .replace("daily_budget_msat = 20000000", "daily_budget_msat = 60000")
            .replace("max_ppm = 500", "max_ppm = 150"),
    )
    .unwrap();
    assert_eq!((tight.daily_budget_msat, tight.max_ppm), (60_000, 150));
    let mut pressed = false;
    for seed in 1..=4 {
        let o = simulate(&args(seed, 72), &tight).unwrap();
        let s = &o.summary;
        assert!(s.max_24h_spend_msat <= 60_000, "{s:?}");
        assert!(s.rebalance_max_ppm <= 150, "{s:?}");
        assert_eq!(o.conservation.nodes_mismatched, 0);
        pressed |= s.max_24h_spend_msat > 30_000;
    }
    assert!(
        pressed,
        "some run spends most of the tight budget, so the limit is what stops it"
    );
}

#[test]
fn two_policies_see_the_same_traffic() {
    let a = SimPolicy::default_policy();
    let b = SimPolicy::parse(
        "static",
        "[defaults]\nmin_ppm = 0\nmax_ppm = 5000\n[[rule]]\nname = \"flat\"\nstrategy = { type = \"static\", ppm = 800 }\n",
    )
    .unwrap();
    let ra = simulate(&args(5, 24), &a).unwrap().summary;
    let rb = simulate(&args(5, 24), &b).unwrap().summary;
    assert_eq!(ra.payments, rb.payments);
    assert_eq!(ra.hodl_created, rb.hodl_created);
    assert_eq!(ra.disconnects, rb.disconnects, "the same peers go away");
    assert_ne!(
        ra.fees_earned_msat, rb.fees_earned_msat,
        "different policies, different earnings"
    );
}

#[test]
fn peers_disconnect_and_the_monitor_sees_it() {
    let policy = SimPolicy::default_policy();
    let mut alerted = false;
    for seed in 1..=3 {
        let o = simulate(&args(seed, 72), &policy).unwrap();
        assert!(o.summary.disconnects > 0, "seed {seed}: {:?}", o.summary);
        alerted |= o
            .trace
            .alerts
            .values()
            .any(|a| a.kind == ballast::engine::monitor::AlertKind::PeerDisconnected);
        // Payments still settling at the end hold their HTLCs; msat stay exact anyway.
        assert_eq!(o.conservation.total_final, o.conservation.total_capacity);
        assert_eq!(o.conservation.nodes_mismatched, 0);
    }
    assert!(
        alerted,
        "a long disconnect raises the monitor's peer_disconnected alert"
    );
}

fn balanced(html: &str, tag: &str) -> bool {
    let opens = html.matches(&format!("<{tag}>")).count() + html.matches(&format!("<{tag} ")).count();
    opens > 0 && opens == html.matches(&format!("</{tag}>")).count()
}

#[test]
fn the_binary_writes_a_report_with_svg_charts_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim");
    let policy = dir.path().join("flat.toml");
    std::fs::write(
        &policy,
        "[defaults]\nmin_ppm = 0\nmax_ppm = 5000\n[[rule]]\nname = \"flat\"\nstrategy = { type = \"static\", ppm = 800 }\n[rebalance]\ndaily_budget_msat = 100000\nmax_ppm = 200\n",
    )
    .unwrap();
    let run = bin()
        .args([
            "simulate",
            "--nodes",
            "40",
            "--channels",
            "8",
            "--hours",
            "12",
            "--seed",
            "3",
            "--quiet",
        ])
        .arg("--policy-b")
        .arg(&policy)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        stdout.contains("fees earned") && stdout.contains("events/s"),
        "{stdout}"
    );
    assert!(
        stdout.contains("default") && stdout.contains("flat") && stdout.contains("comparison"),
        "both policies side by side: {stdout}"
    );
    assert!(
        stdout.contains("rebalancers (default, same seed, same traffic): ballast")
            && stdout.contains("; baseline"),
        "the two rebalancers side by side: {stdout}"
    );
    for (report, events) in [
        ("report.html", "events.jsonl"),
        ("report-b.html", "events-b.jsonl"),
        ("report-baseline.html", "events-baseline.jsonl"),
        ("report-b-baseline.html", "events-b-baseline.jsonl"),
    ] {
        let html = std::fs::read_to_string(out.join(report)).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>"), "{report}");
        for tag in ["html", "head", "body", "svg", "table", "h2"] {
            assert!(balanced(&html, tag), "{report}: <{tag}> not balanced");
        }
        for section in [
            "Balance history",
            "Fee changes",
            "Earnings vs rebalance cost",
            "Alerts timeline",
            "Rebalancers compared",
        ] {
            assert!(html.contains(section), "{report}: no {section}");
        }
        assert!(!html.contains("<script"), "self-contained, no scripts");
        let lines = std::fs::read_to_string(out.join(events)).unwrap();
        let mut n = 0;
        for line in lines.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert!(v.get("type").is_some() && v.get("t").is_some(), "{line}");
            n += 1;
        }
        assert!(n > 100, "{events}: {n} events");
    }
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    // Two policies, each with both rebalancers.
    let runs = summary.as_array().unwrap();
    assert_eq!(runs.len(), 4);
    let names: Vec<(&str, &str)> = runs
        .iter()
        .map(|r| (r["policy"].as_str().unwrap(), r["rebalancer"].as_str().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("default", "ballast"),
            ("default", "baseline"),
            ("flat", "ballast"),
            ("flat", "baseline")
        ]
    );
    for r in runs {
        for field in [
            "rebalance_attempts",
            "rebalance_success_rate",
            "rebalance_moved_msat",
            "rebalance_spend_msat",
            "rebalance_avg_ppm",
            "imbalance_end_msat",
        ] {
            assert!(r.get(field).is_some(), "{field} in {r}");
        }
        assert_eq!(
            r["imbalance_start_msat"], runs[0]["imbalance_start_msat"],
            "same start"
        );
    }
    // One rebalancer alone: one run per policy.
    let one = dir.path().join("one");
    let run = bin()
        .args([
            "simulate",
            "--nodes",
            "30",
            "--hours",
            "2",
            "--quiet",
            "--rebalancer",
            "baseline",
            "--out",
        ])
        .arg(&one)
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(one.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary.as_array().map(Vec::len), Some(1));
    assert_eq!(summary[0]["rebalancer"], "baseline");
    assert!(one.join("report-baseline.html").exists() && !one.join("report.html").exists());
}

#[test]
fn bad_flags_get_a_usage_error() {
    for bad in [
        vec!["simulate", "--nodes", "abc"],
        vec!["simulate", "--hours"],
        vec!["simulate", "--frobnicate"],
        vec!["simulate", "--nodes", "1"],
        vec!["simulate", "--policy", "a", "--policy", "b", "--policy", "c"],
        vec!["simulate", "--rebalancer", "clever"],
        vec!["simulate", "--rebalancer"],
    ] {
        let run = bin().args(&bad).output().unwrap();
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert_eq!(run.status.code(), Some(2), "{bad:?}: {stderr}");
        assert!(stderr.contains("usage: ballast simulate"), "{bad:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{bad:?}: {stderr}");
    }
    // A policy file that does not parse is reported, not a panic.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("p.toml");
    std::fs::write(&policy, "[[rule]]\nname = 'x'\nstrategy = { type = 'blance' }\n").unwrap();
    let run = bin()
        .args(["simulate", "--hours", "1", "--nodes", "10", "--quiet", "--policy"])
        .arg(&policy)
        .arg("--out")
        .arg(dir.path().join("o"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ballast simulate:") && !stderr.contains("panicked"),
        "{stderr}"
    );
    let help = bin().args(["simulate", "--help"]).output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--policy-b"));
}

#[test]
fn a_listchannels_dump_can_be_the_network() {
    let edges = ballast::sim::Network::generate(11, 40, 4).graph_edges();
    let channels: Vec<serde_json::Value> = edges
        .iter()
        .map(|e| {
            serde_json::json!({
                "source": e.source.to_string(), "destination": e.destination.to_string(),
                "short_channel_id": e.scid.to_string(), "public": true,
                "amount_msat": e.capacity.0, "message_flags": 1, "channel_flags": 0,
                "active": true, "last_update": 1_700_000_000u32,
                "base_fee_millisatoshi": e.fee_base.0, "fee_per_millionth": e.fee_ppm,
                "delay": e.cltv_delta, "htlc_minimum_msat": 0, "htlc_maximum_msat": e.capacity.0,
                "features": ""
            })
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("listchannels.json");
    std::fs::write(&path, serde_json::json!({ "channels": channels }).to_string()).unwrap();
    let a = Args {
        graph: Some(path.clone()),
        ..args(4, 12)
    };
    let o = simulate(&a, &SimPolicy::default_policy()).unwrap();
    assert_eq!(o.summary.nodes, 41, "the dump's 40 nodes and ours");
    assert_eq!(o.summary.our_channels, 10);
    assert_eq!(o.conservation.nodes_mismatched, 0);
    assert!(o.summary.payments_ok > 0);
    // A broken dump is an error, not a panic.
    std::fs::write(&path, "{\"channels\": 5}").unwrap();
    assert!(simulate(&a, &SimPolicy::default_policy()).is_err());
}

/// Events with the fields that are random by design (preimages of our own rebalance
/// payments, so their hashes) taken out.
fn events_without_hashes(dir: &std::path::Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(dir.join("events.jsonl")).unwrap();
    text.lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            if let Some(o) = v.as_object_mut() {
                o.remove("payment_hash");
                if o.get("type")
                    .and_then(|t| t.as_str())
                    .is_some_and(|t| t.starts_with("rebalance"))
                {
                    o.remove("hash");
                }
            }
            v
        })
        .collect()
}

#[test]
fn the_same_seed_gives_the_same_events_line_by_line() {
    let run = |dir: &std::path::Path| {
        let out = bin()
            .args([
                "simulate", "--quiet", "--seed", "5", "--nodes", "80", "--hours", "48", "--out",
            ])
            .arg(dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        events_without_hashes(dir)
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (ea, eb) = (run(a.path()), run(b.path()));
    assert!(ea.len() > 1_000, "{} events", ea.len());
    let first_diff = ea.iter().zip(&eb).position(|(x, y)| x != y);
    assert!(
        first_diff.is_none() && ea.len() == eb.len(),
        "runs differ at event {first_diff:?}: {:?} vs {:?}",
        first_diff.map(|i| &ea[i]),
        first_diff.map(|i| &eb[i])
    );
}

#[test]
fn ballast_attempts_succeed_more_often_than_the_baseline_on_the_same_traffic() {
    let policy = SimPolicy::default_policy();
    let (mut ours, mut plain) = ((0u64, 0u64, 0u64), (0u64, 0u64, 0u64));
    for seed in 1..=4 {
        let a = simulate_with(&args(seed, 48), &policy, Rebalancer::Ballast)
            .unwrap()
            .summary;
        let b = simulate_with(&args(seed, 48), &policy, Rebalancer::Baseline)
            .unwrap()
            .summary;
        assert_eq!(
            (a.rebalancer.as_str(), b.rebalancer.as_str()),
            ("ballast", "baseline")
        );
        assert_eq!(a.payments, b.payments, "seed {seed}: the same traffic");
        assert_eq!(a.imbalance_start_msat, b.imbalance_start_msat, "seed {seed}");
        for s in [&a, &b] {
            assert!(s.max_24h_spend_msat <= s.daily_budget_msat, "{s:?}");
            assert!(s.rebalance_max_ppm <= u64::from(s.max_ppm), "{s:?}");
        }
        ours = (
            ours.0 + a.rebalance_ok,
            ours.1 + a.rebalance_attempts,
            ours.2 + a.rebalance_moved_msat,
        );
        plain = (
            plain.0 + b.rebalance_ok,
            plain.1 + b.rebalance_attempts,
            plain.2 + b.rebalance_moved_msat,
        );
    }
    let rate = |(ok, tried, _): (u64, u64, u64)| ok as f64 / tried.max(1) as f64;
    assert!(
        rate(ours) > 2.0 * rate(plain) && ours.1 < plain.1,
        "sized, learning attempts succeed more often, with fewer of them: ballast {ours:?}, baseline {plain:?}"
    );
    assert!(
        ours.2 >= plain.2,
        "and move at least as much: ballast {ours:?}, baseline {plain:?}"
    );
}
