//! The simulation's `report.html`: the monitor's report (`crate::report`) fed from the run,
//! with the simulation's own sections (figures, fee changes, earnings against rebalance
//! cost, alerts timeline) added through `report::render_with`.

use super::run::{Outcome, T0};
use super::summary::{group, Summary};
use super::SimPolicy;
use crate::engine::monitor::{balance_totals, fee_income, invoice_income, ChannelKey};
use crate::report::{self, escape, line_chart, timeline_chart, ReportData, ReportError, Section, Series};
use std::collections::BTreeMap;
use std::fmt::Write;

/// At most this many alerts are listed (most recent first); the timeline shows them all.
const MAX_LISTED_ALERTS: usize = 300;

/// `all`: the summaries of every run on this seed (this one included), for the rebalancer
/// comparison.
pub fn report(o: &Outcome, policy: &SimPolicy, all: &[&Summary]) -> Result<String, ReportError> {
    let t = &o.trace;
    let s = &o.summary;
    let end = t.end;
    let days = (end - T0).div_ceil(86_400).max(1);
    let mut alerts: Vec<_> = t.alerts.values().cloned().collect();
    alerts.sort_by(|a, b| {
        b.is_active()
            .cmp(&a.is_active())
            .then(b.first_seen.cmp(&a.first_seen))
    });
    alerts.truncate(MAX_LISTED_ALERTS);
    let data = ReportData {
        generated_at: end,
        node_id: None,
        network: "simulated".into(),
        channels: t.snapshots.clone(),
        history: t.history.clone(),
        charted_days: days,
        totals: balance_totals(&t.snapshots),
        alerts,
        fees: fee_income(&t.forwards, end),
        income: invoice_income(&t.hodl_paid, end),
        daily_fees: report::daily_fees(&t.forwards, end, days),
    };

    let mut sections = Vec::new();
    let mut h = String::new();
    let _ = writeln!(
        h,
        "<p class=\"meta\">Policy <b>{}</b> · seed {} · {} simulated hours · {} nodes, {} channels, {} of them ours · rebalance budget {} sat/day at most {} ppm.</p>",
        escape(&policy.name),
        s.seed,
        s.hours,
        group(s.nodes),
        group(s.channels),
        s.our_channels,
        group(policy.daily_budget_msat / 1_000),
        policy.max_ppm
    );
    h.push_str("<table>\n");
    let rows: [(&str, String); 12] = [
        (
            "payments on the network (ok / total)",
            format!("{} / {}", group(s.payments_ok), group(s.payments)),
        ),
        ("forwards through our node", group(s.forwards)),
        ("fees earned (sat)", group(s.fees_earned_msat / 1_000)),
        ("fee changes applied", group(s.fee_changes)),
        (
            "rebalances (ok / attempts)",
            format!("{} / {}", s.rebalance_ok, s.rebalance_attempts),
        ),
        ("rebalance spend (sat)", group(s.rebalance_spend_msat / 1_000)),
        (
            "highest 24 h spend / daily budget (sat)",
            format!(
                "{} / {}",
                group(s.max_24h_spend_msat / 1_000),
                group(s.daily_budget_msat / 1_000)
            ),
        ),
        (
            "net: fees minus rebalance spend (sat)",
            format!("{}", s.net_msat() / 1_000),
        ),
        (
            "alerts raised (critical)",
            format!("{} ({})", s.alerts_raised, s.alerts_critical),
        ),
        ("hold invoices created", s.hodl_created.to_string()),
        (
            "hold invoices settled / canceled / canceled at deadline / expired",
            format!(
                "{} / {} / {} / {}",
                s.hodl_settled, s.hodl_canceled, s.hodl_canceled_deadline, s.hodl_expired
            ),
        ),
        ("events", group(s.events)),
    ];
    for (k, v) in rows {
        let _ = writeln!(
            h,
            "<tr><td class=\"l\">{}</td><td>{}</td></tr>",
            escape(k),
            escape(&v)
        );
    }
    h.push_str("</table>\n");
    sections.push(Section {
        title: "Simulation".into(),
        html: h,
    });
    sections.push(Section {
        title: "Rebalancers compared".into(),
        html: rebalancers(all),
    });

    // Fee changes: our ppm per channel over time.
    let fee_series: Vec<Series> = t
        .fee_series
        .iter()
        .map(|(scid, pts)| Series {
            name: scid.to_string(),
            points: pts.iter().map(|&(t, p)| (t as f64, p as f64)).collect(),
        })
        .collect();
    let chart = line_chart(
        "fee changes",
        "Our fee per channel (ppm)",
        "ppm",
        &fee_series,
        end as f64,
        true,
    )?;
    sections.push(Section {
        title: format!("Fee changes ({})", s.fee_changes),
        html: chart,
    });

    // Earnings against rebalance cost.
    let mut earned = vec![(T0 as f64, 0.0)];
    let mut spent = vec![(T0 as f64, 0.0)];
    let mut net = vec![(T0 as f64, 0.0)];
    for &(t, e, r) in &t.money {
        earned.push((t as f64, e as f64 / 1_000.0));
        spent.push((t as f64, r as f64 / 1_000.0));
        net.push((t as f64, (e as f64 - r as f64) / 1_000.0));
    }
    let chart = line_chart(
        "earnings vs cost",
        "Cumulative fees earned, rebalance spend and net (sat)",
        "sat",
        &[
            Series {
                name: "fees earned".into(),
                points: earned,
            },
            Series {
                name: "rebalance spend".into(),
                points: spent,
            },
            Series {
                name: "net".into(),
                points: net,
            },
        ],
        end as f64,
        false,
    )?;
    sections.push(Section {
        title: "Earnings vs rebalance cost".into(),
        html: chart,
    });

    // Alerts timeline: one row per channel (and kind), a bar per alert while active.
    let mut rows: BTreeMap<(ChannelKey, &'static str), usize> = BTreeMap::new();
    for a in t.alerts.values() {
        let n = rows.len();
        rows.entry((a.channel, a.kind.as_str())).or_insert(n);
    }
    let mut order: Vec<((ChannelKey, &'static str), usize)> = rows.into_iter().collect();
    order.sort();
    let index: BTreeMap<(ChannelKey, &'static str), usize> =
        order.iter().enumerate().map(|(i, (k, _))| (*k, i)).collect();
    let labels: Vec<String> = order.iter().map(|((c, k), _)| format!("{c} {k}")).collect();
    let spans: Vec<_> = t
        .alerts
        .values()
        .map(|a| {
            (
                index[&(a.channel, a.kind.as_str())],
                a.first_seen,
                a.cleared_at.unwrap_or(end),
                a.severity,
            )
        })
        .collect();
    let html = if spans.is_empty() {
        "<p>No alerts were raised.</p>".to_string()
    } else {
        timeline_chart(
            "alerts timeline",
            "Alerts while active (red critical, orange warning, blue info)",
            &labels,
            &spans,
            T0,
            end,
        )?
    };
    sections.push(Section {
        title: format!("Alerts timeline ({} raised)", s.alerts_raised),
        html,
    });

    let title = format!("ballast simulate: policy {}", policy.name);
    report::render_with(&data, Some(&title), &sections)
}

/// A figure of the rebalancer comparison: its label and how to read it from a summary.
type Row = (&'static str, fn(&Summary) -> String);

/// The rebalance figures of every run on this seed, one column each.
fn rebalancers(all: &[&Summary]) -> String {
    let mut h = String::from(
        "<p class=\"meta\">Same seed, same traffic. Imbalance: the sum over our channels of |local ratio − target| × capacity.</p>\n<table>\n<tr><th class=\"l\">figure</th>",
    );
    for s in all {
        let _ = write!(h, "<th>{} / {}</th>", escape(&s.policy), escape(&s.rebalancer));
    }
    h.push_str("</tr>\n");
    let per_fee = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.0}"));
    let rows: [Row; 10] = [
        ("attempts", |s| group(s.rebalance_attempts)),
        ("successful", |s| group(s.rebalance_ok)),
        ("success rate", |s| {
            format!("{:.1} %", s.rebalance_success_rate * 100.0)
        }),
        ("moved (sat)", |s| group(s.rebalance_moved_msat / 1_000)),
        ("fees paid (sat)", |s| group(s.rebalance_spend_msat / 1_000)),
        ("average ppm paid", |s| s.rebalance_avg_ppm.to_string()),
        ("imbalance start → end (sat)", |s| {
            format!(
                "{} → {}",
                group(s.imbalance_start_msat / 1_000),
                group(s.imbalance_end_msat / 1_000)
            )
        }),
        (
            "of the end imbalance, what no circular rebalance can remove (sat)",
            |s| group(s.imbalance_floor_end_msat / 1_000),
        ),
        ("imbalance, hourly average (sat)", |s| {
            group(s.imbalance_avg_msat / 1_000)
        }),
        ("net: fees earned minus rebalance spend (sat)", |s| {
            format!("{}", s.net_msat() / 1_000)
        }),
    ];
    for (k, f) in rows {
        let _ = write!(h, "<tr><td class=\"l\">{}</td>", escape(k));
        for s in all {
            let _ = write!(h, "<td>{}</td>", escape(&f(s)));
        }
        h.push_str("</tr>\n");
    }
    for (k, f) in [
        (
            "moved per fee sat (sat)",
            (|s: &Summary| s.moved_per_fee_sat) as fn(&Summary) -> Option<f64>,
        ),
        ("imbalance left per fee sat (sat)", |s: &Summary| {
            s.imbalance_left_per_fee_sat
        }),
    ] {
        let _ = write!(h, "<tr><td class=\"l\">{}</td>", escape(k));
        for s in all {
            let _ = write!(h, "<td>{}</td>", escape(&per_fee(f(s))));
        }
        h.push_str("</tr>\n");
    }
    h.push_str("</table>\n");
    h
}
