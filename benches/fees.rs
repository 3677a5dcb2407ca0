//! Fee engine benchmark (`cargo bench --bench fees`).
//!
//! Measures the pure engine only (no RPC, no store), on 10,000 synthetic channels:
//!
//! * `decide/event`: every forward event updates its channel (balance, flow, HTLCs) and is
//!   decided at once with `decide()`, explanation included: the worst case, where no
//!   coalescing happens. Goal: >= 100,000 events/s. Run with the sample policy
//!   (`contrib/fee-policy.sample.toml`, every strategy) and with a 50-rule policy where
//!   every channel falls through to the last rule.
//! * `coalesced/event`: the plugin's path: each event only notes the channel in the
//!   `Coalescer`; due channels are decided as their window ends.
//! * `after burst`: every channel has a pending decision; the time from the window's end
//!   to one decision per channel (what precedes one `setchannel` per channel).
//!
//! Arguments: `--quick` (200,000 events instead of 2,000,000); others are ignored.
//! Environment: `FEES_BENCH_EVENTS` overrides the event count.

mod common;

use ballast::engine::fees::{
    decide, ChannelFee, ChannelInputs, Coalescer, DecideCtx, FeeConfig, Flow, Policy, Status,
};
use ballast::types::{Msat, NodeId, Scid};
use common::rng::Rng;
use std::fmt::Write as _;
use std::hint::black_box;
use std::time::{Duration, Instant};

const CHANNELS: usize = 10_000;
const PEERS: usize = 2_500;
const GOAL_EVENTS_PER_SEC: f64 = 100_000.0;
const T0: u64 = 1_700_000_000;
const SAMPLE: &str = include_str!("../contrib/fee-policy.sample.toml");

/// Inverse of the scid layout used by `channels`.
fn index(scid: Scid) -> usize {
    (scid.block() as usize).saturating_sub(800_000) * 1000 + scid.tx() as usize
}

fn node(i: usize) -> NodeId {
    let mut b = [0u8; 33];
    b[0] = 2;
    b[1..9].copy_from_slice(&(i as u64).to_be_bytes());
    NodeId(b)
}

fn channels(rng: &mut Rng) -> Vec<ChannelInputs> {
    (0..CHANNELS)
        .map(|i| {
            let capacity = (1_000_000 + rng.below(19_000_000)) * 1_000;
            ChannelInputs {
                scid: Scid::new(800_000 + (i / 1000) as u32, (i % 1000) as u32, 0)
                    .unwrap_or(Scid::from_u64(i as u64)),
                peer: node(rng.below(PEERS as u64) as usize),
                capacity: Msat(capacity),
                local: Msat(rng.below(capacity + 1)),
                pending_htlcs: 0,
                flow: Flow {
                    in_msat: Msat(0),
                    out_msat: Msat(0),
                    window_secs: 86_400,
                },
                rebalance_cost_ppm: (rng.below(3) == 0).then(|| rng.below(2_000) as u32),
                peer_channels: Some(1 + rng.below(500) as u32),
                current: ChannelFee::new(0, 1 + rng.below(1_500) as u32),
                last_update: None,
            }
        })
        .collect()
}

/// One forward through channel `i`: out of it or into it, moving the balance and the flow.
fn forward(ch: &mut ChannelInputs, rng: &mut Rng) {
    let amount = Msat(10_000 + rng.below(5_000_000));
    if rng.below(3) != 0 {
        ch.local = ch.local.saturating_sub(amount);
        ch.flow.out_msat = Msat(ch.flow.out_msat.0.saturating_add(amount.0));
    } else {
        ch.local = Msat(ch.local.0.saturating_add(amount.0).min(ch.capacity.0));
        ch.flow.in_msat = Msat(ch.flow.in_msat.0.saturating_add(amount.0));
    }
    ch.pending_htlcs = rng.below(4) as u32;
}

fn big_policy() -> Policy {
    let mut src = String::from("[defaults]\nmin_ppm = 1\nmax_ppm = 3000\n");
    for r in 0..49 {
        let _ = write!(
            src,
            "[[rule]]\nname = \"r{r}\"\nmatch.scid = [\"1x{r}x0\", \"2x{r}x0\"]\nmatch.local_ratio = {{ max = 0.5 }}\n\
             strategy = {{ type = \"static\", ppm = {r} }}\n"
        );
    }
    src.push_str(
        "[[rule]]\nname = \"last\"\nstrategy = { type = \"balance\", curve = \"exponential\", empty_ppm = 2000, full_ppm = 10 }\n",
    );
    Policy::from_toml(&src).unwrap_or_else(|e| panic!("bench policy: {e}"))
}

struct Tally {
    apply: u64,
    held: u64,
    explanation_bytes: u64,
}

fn per_event(policy: &Policy, events: u64, seed: u64) -> (Duration, Tally) {
    let cfg = FeeConfig::default();
    let mut rng = Rng::new(seed);
    let mut chans = channels(&mut rng);
    let mut t = Tally {
        apply: 0,
        held: 0,
        explanation_bytes: 0,
    };
    let start = Instant::now();
    for e in 0..events {
        let i = rng.below(CHANNELS as u64) as usize;
        let Some(ch) = chans.get_mut(i) else { continue };
        forward(ch, &mut rng);
        let ctx = DecideCtx {
            now: T0 + e / 1_000,
            started_at: T0 - 7_200,
            force: false,
        };
        let d = black_box(decide(policy, &cfg, ch, ctx));
        t.explanation_bytes += d.explanation.len() as u64;
        if d.status == Status::Apply {
            t.apply += 1;
            ch.current = d.target;
            ch.last_update = Some(ctx.now);
        } else {
            t.held += 1;
        }
    }
    (start.elapsed(), t)
}

/// Events noted in the coalescer at 1,000 events/s of simulated time, with due channels
/// decided as they come up; returns (elapsed, decisions).
fn coalesced(policy: &Policy, events: u64, seed: u64) -> (Duration, u64) {
    let cfg = FeeConfig::default();
    let mut rng = Rng::new(seed);
    let mut chans = channels(&mut rng);
    let started = T0 - 7_200;
    let mut co = Coalescer::new(&cfg, started);
    let mut decisions = 0;
    let start = Instant::now();
    for e in 0..events {
        let now = T0 + e / 1_000;
        let i = rng.below(CHANNELS as u64) as usize;
        let Some(ch) = chans.get_mut(i) else { continue };
        forward(ch, &mut rng);
        co.on_event(ch.scid, now);
        if e % 1_000 == 0 {
            while let Some((scid, _)) = co.pop_due(now) {
                let idx = index(scid);
                let Some(ch) = chans.get_mut(idx) else { continue };
                ch.last_update = co.last_applied(scid);
                let d = black_box(decide(
                    policy,
                    &cfg,
                    ch,
                    DecideCtx {
                        now,
                        started_at: started,
                        force: false,
                    },
                ));
                decisions += 1;
                if d.status.applies() {
                    co.record_applied(scid, now);
                    ch.current = d.target;
                }
            }
        }
    }
    (start.elapsed(), decisions)
}

/// Every channel gets a burst of events; then the window ends and each is decided once.
fn after_burst(policy: &Policy, seed: u64) -> (Duration, Duration, u64) {
    let cfg = FeeConfig::default();
    let mut rng = Rng::new(seed);
    let mut chans = channels(&mut rng);
    let started = T0 - 7_200;
    let mut co = Coalescer::new(&cfg, started);
    let burst_start = Instant::now();
    for round in 0..20 {
        for ch in chans.iter_mut() {
            forward(ch, &mut rng);
            co.on_event(ch.scid, T0 + round);
        }
    }
    let burst = burst_start.elapsed();
    let due = co.next_due().unwrap_or(T0);
    let start = Instant::now();
    let mut applies = 0;
    for (scid, _) in co.take_due(due) {
        let idx = index(scid);
        let Some(ch) = chans.get_mut(idx) else { continue };
        ch.last_update = co.last_applied(scid);
        let d = decide(
            policy,
            &cfg,
            ch,
            DecideCtx {
                now: due,
                started_at: started,
                force: false,
            },
        );
        if d.status.applies() {
            co.record_applied(scid, due);
            applies += 1;
        }
        black_box(d);
    }
    (burst, start.elapsed(), applies)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let events: u64 = std::env::var("FEES_BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 200_000 } else { 2_000_000 });
    let sample = Policy::from_toml(SAMPLE).unwrap_or_else(|e| panic!("sample policy: {e}"));
    let big = big_policy();

    println!("fee engine: {CHANNELS} channels, {events} forward events");
    // Warm-up so the first figure does not pay for page faults and cold caches.
    let _ = per_event(&sample, events / 10, 7);

    let mut pass = true;
    for (label, policy) in [
        ("sample policy, 6 rules", &sample),
        ("50 rules, last matches", &big),
    ] {
        let (el, t) = per_event(policy, events, 42);
        let rate = events as f64 / el.as_secs_f64();
        let ok = rate >= GOAL_EVENTS_PER_SEC;
        pass &= ok;
        println!(
            "decide/event    [{label:<24}] {rate:>12.0} events/s  {:>7.3} us/event  (apply {}, held {}, avg explanation {} B)  goal >= {:.0}: {}",
            el.as_secs_f64() * 1e6 / events as f64,
            t.apply,
            t.held,
            t.explanation_bytes / events.max(1),
            GOAL_EVENTS_PER_SEC,
            if ok { "PASS" } else { "FAIL" }
        );
    }

    let (el, decisions) = coalesced(&sample, events, 42);
    println!(
        "coalesced/event [sample policy, 6 rules  ] {:>12.0} events/s  {:>7.3} us/event  ({decisions} decisions for {events} events)",
        events as f64 / el.as_secs_f64(),
        el.as_secs_f64() * 1e6 / events as f64
    );

    let (burst, el, applies) = after_burst(&sample, 42);
    println!(
        "after burst     [sample policy, 6 rules  ] {} events noted in {:.1} ms; one decision per channel for {CHANNELS} channels in {:.2} ms ({:.2} us/channel, {applies} to apply)",
        CHANNELS * 20,
        burst.as_secs_f64() * 1e3,
        el.as_secs_f64() * 1e3,
        el.as_secs_f64() * 1e6 / CHANNELS as f64
    );
    println!("verdict: {}", if pass { "PASS" } else { "FAIL" });
}
