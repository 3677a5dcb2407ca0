//! The Prometheus (OpenMetrics text) exposition: one section per job — channels and
//! alerts (monitoring), hold invoices, fee policy, rebalancing — built from figures the
//! services already hold, so a scrape reads numbers and never walks the store.

use crate::api::now_unix;
use crate::api::state::AppState;
use crate::engine::hodl::HodlState;
use crate::engine::monitor::AlertKind;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::Ordering;

type Labels = Vec<(String, String)>;

/// A gauge holds an i64; msat figures beyond that are shown as the largest it can hold.
fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn gauge(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let g: Gauge = Gauge::default();
    g.set(clamp(v));
    reg.register(name, help, g);
}

/// Registered as `<name>_total`.
fn counter(reg: &mut Registry, name: &str, help: &str, v: u64) {
    let c: Counter = Counter::default();
    c.inc_by(v);
    reg.register(name, help, c);
}

fn label(key: &str, value: &str) -> Labels {
    vec![(key.to_string(), value.to_string())]
}

/// Builds the exposition from the current state (a fresh registry per scrape, so closed
/// channels drop out instead of lingering with stale values).
pub(crate) fn metrics_text(s: &AppState) -> Result<String, std::fmt::Error> {
    let mut reg = Registry::with_prefix("ballast");
    channels(&mut reg, s);
    alerts(&mut reg, s);
    hodl(&mut reg, s);
    fees(&mut reg, s);
    rebalance(&mut reg, s);
    monitor(&mut reg, s);
    let mut out = String::new();
    encode(&mut out, &reg)?;
    Ok(out)
}

/// Balances and pending HTLCs of each channel, from the latest snapshot.
fn channels(reg: &mut Registry, s: &AppState) {
    let local = Family::<Labels, Gauge>::default();
    let remote = Family::<Labels, Gauge>::default();
    let capacity = Family::<Labels, Gauge>::default();
    let connected = Family::<Labels, Gauge>::default();
    let htlcs = Family::<Labels, Gauge>::default();
    let htlc_msat = Family::<Labels, Gauge>::default();
    for sn in s.monitor.snapshots() {
        let ch = label("channel", &sn.key.to_string());
        local.get_or_create(&ch).set(clamp(sn.local.0));
        remote.get_or_create(&ch).set(clamp(sn.remote.0));
        capacity.get_or_create(&ch).set(clamp(sn.capacity.0));
        connected.get_or_create(&ch).set(i64::from(sn.peer_connected));
        for (dir, n, m) in [
            ("in", sn.htlcs_in, sn.htlc_in_msat),
            ("out", sn.htlcs_out, sn.htlc_out_msat),
        ] {
            let mut l = ch.clone();
            l.push(("direction".to_string(), dir.to_string()));
            htlcs.get_or_create(&l).set(i64::from(n));
            htlc_msat.get_or_create(&l).set(clamp(m.0));
        }
    }
    reg.register("channel_local_msat", "Local balance of the channel, msat", local);
    reg.register(
        "channel_remote_msat",
        "Remote balance of the channel, msat",
        remote,
    );
    reg.register("channel_capacity_msat", "Capacity of the channel, msat", capacity);
    reg.register(
        "channel_peer_connected",
        "1 if the channel's peer is connected",
        connected,
    );
    reg.register(
        "channel_htlcs",
        "Pending HTLCs on the channel by direction",
        htlcs,
    );
    reg.register(
        "channel_htlc_msat",
        "Amount in pending HTLCs on the channel by direction, msat",
        htlc_msat,
    );
}

fn alerts(reg: &mut Registry, s: &AppState) {
    let alerts = Family::<Labels, Gauge>::default();
    let active = s.monitor.active_alerts();
    for kind in AlertKind::ALL {
        let n = active.iter().filter(|a| a.kind == kind).count();
        alerts.get_or_create(&label("type", kind.as_str())).set(n as i64);
    }
    reg.register("alerts_active", "Active monitor alerts by type", alerts);
}

/// Hold invoices by state, and the HTLCs held for them right now.
fn hodl(reg: &mut Registry, s: &AppState) {
    let by_state = Family::<Labels, Gauge>::default();
    let counts = s.hodl.counts();
    for st in [
        HodlState::Open,
        HodlState::Accepted,
        HodlState::Settled,
        HodlState::Canceled,
        HodlState::Expired,
    ] {
        let n = counts.get(&st).copied().unwrap_or(0);
        by_state.get_or_create(&label("state", st.as_str())).set(n as i64);
    }
    reg.register("hodl_invoices", "Hold invoices by state", by_state);

    // Only OPEN (a partial multi-part payment) and ACCEPTED invoices hold HTLCs; one
    // released when ballast stopped is no longer held.
    let (mut n, mut msat) = (0u64, 0u64);
    for st in [HodlState::Open, HodlState::Accepted] {
        for inv in s.hodl.list(Some(st), usize::MAX, 0).1 {
            for h in inv.htlcs.iter().filter(|h| !h.released_at_stop) {
                n += 1;
                msat = msat.saturating_add(h.amount.0);
            }
        }
    }
    gauge(
        reg,
        "hodl_held_htlcs",
        "HTLCs held for hold invoices awaiting settle or cancel",
        n,
    );
    gauge(
        reg,
        "hodl_held_msat",
        "Amount in HTLCs held for hold invoices awaiting settle or cancel, msat",
        msat,
    );
}

fn fees(reg: &mut Registry, s: &AppState) {
    counter(
        reg,
        "fee_changes",
        "Channel fee changes applied by the fee policy",
        s.counters.fee_changes.load(Ordering::Relaxed),
    );
    counter(
        reg,
        "forward_events",
        "Forward events seen since start (what the fee policy reacts to)",
        s.counters.forward_events.load(Ordering::Relaxed),
    );
    gauge(
        reg,
        "fee_decisions_pending",
        "Channels whose fee decision waits for forwards to settle or the coalescing window",
        s.fees.pending_decisions() as u64,
    );
}

/// Rebalance attempts and their fees, from the service's running totals (so the figures
/// span restarts without reading the attempt history).
fn rebalance(reg: &mut Registry, s: &AppState) {
    let t = s.rebalance.attempt_totals();
    counter(
        reg,
        "rebalance_fees_msat",
        "Fees paid by successful rebalance attempts, all time, msat",
        t.fees_paid.0,
    );
    gauge(
        reg,
        "rebalance_fees_24h_msat",
        "Fees paid by successful rebalance attempts in the last 24 hours, msat",
        s.rebalance.paid_since(now_unix().saturating_sub(86_400)).0,
    );
    counter(
        reg,
        "rebalances",
        "Successful rebalance attempts since start",
        s.counters.rebalances.load(Ordering::Relaxed),
    );
    let resolved = Family::<Labels, Counter>::default();
    for (outcome, n) in [("success", t.succeeded), ("failed", t.failed)] {
        resolved.get_or_create(&label("outcome", outcome)).inc_by(n);
    }
    reg.register(
        "rebalance_attempts",
        "Resolved rebalance attempts by outcome, all time",
        resolved,
    );
    gauge(
        reg,
        "rebalance_pending_attempts",
        "Rebalance attempts still in flight",
        t.pending,
    );
    gauge(
        reg,
        "rebalance_pending_fees_msat",
        "Fees of rebalance attempts still in flight (counted as spent until they resolve), msat",
        t.fees_pending.0,
    );
    counter(
        reg,
        "rebalance_moved_msat",
        "Amount moved by successful rebalance attempts, all time, msat",
        t.moved.0,
    );
}

/// The monitor itself: webhook delivery and snapshot rounds.
fn monitor(reg: &mut Registry, s: &AppState) {
    let webhook = Family::<Labels, Counter>::default();
    let wh = &s.monitor_rt.webhook_stats;
    for (result, v) in [
        ("delivered", &wh.delivered),
        ("failed", &wh.failed),
        ("dropped", &wh.dropped),
    ] {
        webhook
            .get_or_create(&label("result", result))
            .inc_by(v.load(Ordering::Relaxed));
    }
    reg.register(
        "alert_webhook_deliveries",
        "Alert webhook posts by outcome",
        webhook,
    );

    let (at, rounds) = s.monitor.last_run();
    gauge(
        reg,
        "monitor_last_snapshot_timestamp_seconds",
        "Unix time of the latest snapshot round (0 before the first)",
        at.unwrap_or(0),
    );
    counter(
        reg,
        "monitor_snapshots",
        "Snapshot rounds taken since start",
        rounds,
    );
}
