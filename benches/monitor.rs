//! Balance-monitoring benchmark (`cargo bench --bench monitor`).
//!
//! Prints two figures the issue asks for, over 1,000 channels:
//!
//! * one rules evaluation (pure engine): `Evaluator::evaluate` over 1,000 snapshots, both in
//!   a steady state (standing alerts only update) and with churn (alerts raise and clear
//!   every pass);
//! * the store write per snapshot: for each of the 1,000 channels, plan its history update
//!   and write it (2 points per channel with the default tiers, plus deletions once
//!   retention kicks in), write the alert transitions, then flush. Write and flush are timed
//!   apart, since the plugin need not flush after every snapshot;
//! * the same through the real runtime path, `MonitorService::snapshot_and_evaluate` (build,
//!   evaluate, alert and evaluator writes, history read-modify-write, latest-snapshot writes,
//!   the hourly sweep and the flush it does when an alert is raised or cleared), in a steady
//!   state and with churn.
//!
//! Environment: `MONITOR_BENCH_EVALS` (default 500), `MONITOR_BENCH_ROUNDS` (default 200).
//! Arguments cargo passes (`--bench`, filters) are ignored.

mod common;

use ballast::engine::monitor::records::{ALERTS_TREE, HISTORY_TREE};
use ballast::engine::monitor::{
    plan_history, Alert, ChannelSnapshot, Evaluator, HistoryPoint, HistoryPolicy, MonitorConfig, RulesPatch,
    Scope,
};
use ballast::node::{Channel, ChannelState, HtlcDirection, PendingHtlc};
use ballast::service::monitor::MonitorService;
use ballast::store::Store;
use ballast::types::{Msat, NodeId, PaymentHash, Scid};
use common::rng::Rng;
use std::collections::HashMap;
use std::time::{Duration, Instant};

const CHANNELS: usize = 1_000;
const T0: u64 = 1_700_000_000;
const HEIGHT: u32 = 850_000;

fn node(i: u64) -> NodeId {
    let mut b = [0u8; 33];
    b[0] = 2;
    b[1..9].copy_from_slice(&i.to_be_bytes());
    NodeId(b)
}

fn channels(rng: &mut Rng) -> Vec<Channel> {
    (0..CHANNELS as u64)
        .map(|i| {
            let capacity = (1 + rng.below(16)) * 1_000_000_000;
            // About one channel in ten sits near an edge, so some alerts stand.
            let local = match rng.below(10) {
                0 => rng.below(capacity / 50),
                1 => capacity - rng.below(capacity / 50),
                _ => rng.below(capacity),
            };
            let htlcs = (0..rng.below(4))
                .map(|id| PendingHtlc {
                    direction: if id % 2 == 0 {
                        HtlcDirection::In
                    } else {
                        HtlcDirection::Out
                    },
                    id,
                    amount: Msat(1_000 + rng.below(1_000_000)),
                    expiry: HEIGHT + 10 + rng.below(200) as u32,
                    payment_hash: PaymentHash([id as u8; 32]),
                })
                .collect();
            let state = match rng.below(100) {
                0 => ChannelState::Opening,
                1 => ChannelState::Closing,
                2 => ChannelState::ForceClosing,
                _ => ChannelState::Normal,
            };
            Channel {
                scid: (state != ChannelState::Opening).then(|| Scid::new(700_000 + i as u32, 1, 0).unwrap()),
                peer: node(i % 300),
                peer_connected: rng.below(20) != 0,
                state,
                raw_state: "CHANNELD_NORMAL".into(),
                capacity: Msat(capacity),
                local: Msat(local),
                remote: Msat(capacity - local),
                spendable: Msat(local),
                receivable: Msat(capacity - local),
                htlcs,
                fee_base: Msat(1_000),
                fee_ppm: 100,
                remote_policy: None,
                private: false,
            }
        })
        .collect()
}

fn config() -> MonitorConfig {
    let mut cfg = MonitorConfig::default();
    let patch: RulesPatch =
        serde_json::from_str(r#"{"low_local":{"limit":{"ratio":0.1}},"peer_disconnected":{"limit":600}}"#)
            .expect("valid patch");
    for p in 0..30 {
        cfg.apply(Scope::Peer(node(p * 10)), &patch).expect("valid");
    }
    for c in 0..100 {
        let scid = Scid::new(700_000 + c * 10, 1, 0).expect("valid scid");
        cfg.apply(Scope::Channel(scid), &patch).expect("valid");
    }
    cfg
}

struct Figures {
    samples: Vec<Duration>,
}

impl Figures {
    fn new() -> Self {
        Figures { samples: Vec::new() }
    }
    fn push(&mut self, d: Duration) {
        self.samples.push(d);
    }
    fn report(&mut self, what: &str, extra: &str) {
        self.samples.sort();
        let n = self.samples.len().max(1);
        let total: Duration = self.samples.iter().sum();
        let pct = |p: usize| {
            self.samples
                .get((n * p / 100).min(n - 1))
                .copied()
                .unwrap_or_default()
        };
        println!(
            "{what:<44} mean {:>9.3} ms  p50 {:>9.3} ms  p99 {:>9.3} ms  (n={}){extra}",
            ms(total / n as u32),
            ms(pct(50)),
            ms(pct(99)),
            self.samples.len()
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let evals = env("MONITOR_BENCH_EVALS", 500);
    let rounds = env("MONITOR_BENCH_ROUNDS", 200);
    let mut rng = Rng::new(0x9e37_79b9_7f4a_7c15);
    let chans = channels(&mut rng);
    let cfg = config();
    println!("monitor bench: {CHANNELS} channels, {evals} evaluations, {rounds} store rounds");

    // Snapshot construction, the step before every evaluation.
    let mut build = Figures::new();
    let mut snaps = Vec::new();
    for i in 0..evals {
        let t = Instant::now();
        snaps = chans
            .iter()
            .map(|c| ChannelSnapshot::from_channel(c, HEIGHT, T0 + i as u64))
            .collect::<Vec<_>>();
        build.push(t.elapsed());
    }
    build.report("snapshot build (1,000 channels)", "");

    // Steady state: the same channels every pass, so standing alerts are only updated.
    let mut ev = Evaluator::new();
    for i in 0..20 {
        ev.evaluate(&snaps, &cfg, T0 + i);
    }
    let mut steady = Figures::new();
    let mut transitions = 0;
    for i in 0..evals {
        let t = Instant::now();
        let out = ev.evaluate(&snaps, &cfg, T0 + 100 + i as u64);
        steady.push(t.elapsed());
        transitions += out.len();
    }
    let per = transitions / evals.max(1);
    steady.report(
        "rules evaluation, steady (1,000 channels)",
        &format!("  {} active alerts, {per} transitions/eval", ev.active_count()),
    );

    // Churn: two views of the channels alternate, so alerts raise and clear every pass.
    let other: Vec<ChannelSnapshot> = snaps
        .iter()
        .map(|s| ChannelSnapshot {
            local: s.remote,
            remote: s.local,
            peer_connected: !s.peer_connected,
            ..s.clone()
        })
        .collect();
    let mut churn = Figures::new();
    let mut notable = 0;
    for i in 0..evals {
        let view = if i % 2 == 0 { &other } else { &snaps };
        let t = Instant::now();
        let out = ev.evaluate(view, &cfg, T0 + 10_000 + 60 * i as u64);
        churn.push(t.elapsed());
        notable += out.iter().filter(|t| t.is_notable()).count();
    }
    churn.report(
        "rules evaluation, churn (1,000 channels)",
        &format!("  {} raised+cleared/eval", notable / evals.max(1)),
    );

    if let Err(e) = store_bench(&chans, &cfg, rounds) {
        eprintln!("monitor bench: store figure failed: {e}");
        std::process::exit(1);
    }
    if let Err(e) = service_bench(&chans, &cfg, rounds) {
        eprintln!("monitor bench: service figure failed: {e}");
        std::process::exit(1);
    }
}

/// The runtime path: what one snapshot round costs the plugin's blocking thread.
fn service_bench(
    chans: &[Channel],
    cfg: &MonitorConfig,
    rounds: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("ballast"), T0)?;
    let (svc, _) = MonitorService::load(store.clone(), T0)?;
    for (peer, patch) in &cfg.peers {
        svc.set_rules(Scope::Peer(*peer), patch)?;
    }
    for (scid, patch) in &cfg.channels {
        svc.set_rules(Scope::Channel(*scid), patch)?;
    }
    // The churn view: balances mirrored and connections flipped, so alerts raise and clear.
    let other: Vec<Channel> = chans
        .iter()
        .map(|c| Channel {
            local: c.remote,
            remote: c.local,
            spendable: c.receivable,
            receivable: c.spendable,
            peer_connected: !c.peer_connected,
            ..c.clone()
        })
        .collect();
    let mut now = T0;
    for (label, churn) in [("steady", false), ("churn", true)] {
        let mut fig = Figures::new();
        let mut notable = 0usize;
        for round in 0..=rounds {
            now += 60;
            let view = if churn && round % 2 == 1 { &other } else { chans };
            let t = Instant::now();
            let out = svc.snapshot_and_evaluate(view, HEIGHT, now)?;
            let d = t.elapsed();
            // The first steady round creates every key; the first churn round only switches.
            if round > 0 {
                fig.push(d);
                notable += out.iter().filter(|t| t.is_notable()).count();
            }
        }
        fig.report(
            &format!("service round, {label} (1,000 channels)"),
            &format!(
                "  {} raised+cleared/round; includes build+evaluate",
                notable / rounds.max(1)
            ),
        );
    }
    println!(
        "service store: {:.1} MiB on disk",
        store.size_on_disk() as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}

fn store_bench(
    chans: &[Channel],
    cfg: &MonitorConfig,
    rounds: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = Store::open(&dir.path().join("ballast"), T0)?;
    let history = store.tree::<HistoryPoint>(HISTORY_TREE)?;
    let alerts = store.tree::<Alert>(ALERTS_TREE)?;
    let policy = HistoryPolicy::default();
    // What the plugin would keep in memory: each channel's open bucket per tier.
    let mut open: HashMap<Scid, Vec<HistoryPoint>> = HashMap::new();
    let mut ev = Evaluator::new();
    let (mut write, mut flush, mut total) = (Figures::new(), Figures::new(), Figures::new());
    let (mut puts, mut alert_puts) = (0usize, 0usize);
    for round in 0..rounds {
        // One snapshot a minute, as with the default monitor interval.
        let now = T0 + 60 * round as u64;
        let snaps: Vec<_> = chans
            .iter()
            .map(|c| ChannelSnapshot::from_channel(c, HEIGHT, now))
            .collect();
        let transitions = ev.evaluate(&snaps, cfg, now);

        let t = Instant::now();
        for s in &snaps {
            let Some(scid) = s.scid() else { continue };
            let cached = open.entry(scid).or_default();
            let plan = plan_history(&policy, cached, s)?;
            for k in &plan.deletes {
                history.remove(k.to_bytes())?;
            }
            for p in &plan.writes {
                history.put(p.key().to_bytes(), p)?;
            }
            puts += plan.writes.len();
            *cached = plan.writes;
        }
        for tr in &transitions {
            alerts.put(tr.alert().store_key(), tr.alert())?;
            alert_puts += 1;
        }
        let written = t.elapsed();
        let f = Instant::now();
        store.flush()?;
        let flushed = f.elapsed();
        write.push(written);
        flush.push(flushed);
        total.push(written + flushed);
        if round == 0 {
            // The first round creates every key; keep it out of the steady figures.
            write.samples.clear();
            flush.samples.clear();
            total.samples.clear();
        }
    }
    let n = rounds.max(1);
    write.report(
        "store write per snapshot (no flush)",
        &format!(
            "  {} history puts + {} alert puts/snapshot",
            puts / n,
            alert_puts / n
        ),
    );
    flush.report("store flush per snapshot", "");
    total.report("store write + flush per snapshot", "");
    println!(
        "store: {} history points, {} alerts ({} active), {:.1} MiB on disk",
        history.len(),
        alerts.len(),
        ev.active_count(),
        store.size_on_disk() as f64 / (1024.0 * 1024.0)
    );
    Ok(())
}
