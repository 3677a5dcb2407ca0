//! Routing and planning benchmark (`cargo bench --bench routing`).
//!
//! Two graphs:
//! * the real mainnet snapshot `../shared/graphs/mainnet-2021-04-16.listchannels.json.gz`
//!   (relative to the crate root), when present: load time (gunzip, parse, build) and RSS;
//! * a seeded synthetic graph of mainnet-like shape: 15,000 nodes, 50,000 channels,
//!   heavy-tailed degrees (Zipf-weighted endpoints over a random spanning tree) and a fee
//!   spread like mainnet's (many 1 ppm channels, a long tail to several thousand ppm).
//!
//! On each: a well-connected node (about 50 peers) plays "ours"; one circular route is
//! searched for 1,000 random (source, sink) pairs of its channels, and a full plan is made
//! for 50 of its channels with random lopsided balances. Goals: circular route p50 <= 2 ms,
//! plan < 250 ms.
//!
//! Arguments other than `--quick` (100 pairs, 3 plan runs) are ignored, so `cargo bench`
//! filters pass through harmlessly. `ROUTING_GRAPH=<path>` reads another gzipped
//! `listchannels` answer instead of the snapshot.

mod common;

use ballast::engine::beliefs::{Beliefs, DirectedChannel};
use ballast::engine::graph::{Graph, NodeIdx};
use ballast::engine::listchannels;
use ballast::engine::planner::{plan, MoveStatus, Plan, PlanRequest, PlannerConfig};
use ballast::engine::route::{find_circular_routes, CircularRequest, RouteParams};
use ballast::node::{Channel, ChannelState, GraphEdge};
use ballast::types::{Msat, NodeId, Scid};
use common::rng::Rng;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    ms(sorted[i.min(sorted.len() - 1)])
}

fn mib(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

// ---------------------------------------------------------------------------------------
// Synthetic graph

const SYN_NODES: usize = 15_000;
const SYN_CHANNELS: usize = 50_000;

fn node_id(rng: &mut Rng) -> NodeId {
    let mut b = [0u8; 33];
    b[0] = 2 + (rng.next() & 1) as u8;
    for chunk in b[1..].chunks_mut(8) {
        let v = rng.next().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
    NodeId(b)
}

/// Fee policy of one node, with a per-channel jitter: operators set a house rate and tweak
/// some channels.
fn ppm_profile(rng: &mut Rng) -> u32 {
    match rng.below(100) {
        0..=34 => 1,
        35..=49 => rng.range(2, 100) as u32,
        50..=74 => rng.range(100, 500) as u32,
        75..=91 => rng.range(500, 2000) as u32,
        _ => rng.log_range(2000.0, 20_000.0) as u32,
    }
}

fn base_fee(rng: &mut Rng) -> u64 {
    match rng.below(100) {
        0..=59 => 1000,
        60..=79 => 0,
        80..=89 => 1,
        _ => rng.range(2, 5000),
    }
}

fn cltv(rng: &mut Rng) -> u32 {
    match rng.below(100) {
        0..=44 => 40,
        45..=69 => 144,
        70..=79 => 34,
        80..=84 => 18,
        85..=94 => 80,
        _ => 288,
    }
}

fn synthetic_graph(seed: u64) -> Vec<GraphEdge> {
    let mut rng = Rng::new(seed);
    let ids: Vec<NodeId> = (0..SYN_NODES).map(|_| node_id(&mut rng)).collect();
    let house_ppm: Vec<u32> = (0..SYN_NODES).map(|_| ppm_profile(&mut rng)).collect();
    let house_base: Vec<u64> = (0..SYN_NODES).map(|_| base_fee(&mut rng)).collect();
    // Zipf(0.7) weights on node rank give a few hubs with ~1,000+ channels and a long tail
    // of nodes with one or two, as on mainnet.
    let mut cum = Vec::with_capacity(SYN_NODES);
    let mut total = 0.0;
    for i in 0..SYN_NODES {
        total += 1.0 / ((i + 1) as f64).powf(0.7);
        cum.push(total);
    }
    let pick = |rng: &mut Rng, limit: usize| -> usize {
        let x = rng.unit() * cum[limit - 1];
        cum[..limit].partition_point(|&c| c < x).min(limit - 1)
    };

    let mut pairs: Vec<(usize, usize)> = Vec::with_capacity(SYN_CHANNELS);
    // A spanning tree first, so the graph is connected: each node opens one channel to an
    // older, popularity-weighted node.
    for i in 1..SYN_NODES {
        pairs.push((i, pick(&mut rng, i)));
    }
    while pairs.len() < SYN_CHANNELS {
        let a = pick(&mut rng, SYN_NODES);
        let b = if rng.below(3) == 0 {
            rng.below(SYN_NODES as u64) as usize
        } else {
            pick(&mut rng, SYN_NODES)
        };
        if a != b {
            pairs.push((a, b));
        }
    }

    let mut edges = Vec::with_capacity(2 * SYN_CHANNELS);
    for (i, &(a, b)) in pairs.iter().enumerate() {
        let block = 500_000 + (i as u32 / 40);
        let scid = Scid::new(block, i as u32 % 40 * 7 + 1, (i % 2) as u16).expect("scid in range");
        let cap_sat = if rng.below(100) < 5 {
            rng.log_range(16_777_216.0, 100_000_000.0)
        } else {
            rng.log_range(100_000.0, 16_777_215.0)
        };
        let capacity = Msat(cap_sat * 1000);
        for (s, d) in [(a, b), (b, a)] {
            let mut ppm = house_ppm[s];
            if rng.below(100) < 30 {
                ppm = ((ppm as f64) * (0.5 + 1.5 * rng.unit())) as u32;
            }
            let htlc_max = if rng.below(2) == 0 {
                capacity
            } else {
                Msat(capacity.0 / 100 * 99)
            };
            edges.push(GraphEdge {
                scid,
                source: ids[s],
                destination: ids[d],
                capacity,
                fee_base: Msat(house_base[s]),
                fee_ppm: ppm,
                cltv_delta: cltv(&mut rng),
                htlc_min: Msat(if rng.below(2) == 0 { 1 } else { 1000 }),
                htlc_max,
                active: rng.below(100) < 92,
                last_update: 1_618_000_000 + rng.below(600_000) as u32,
            });
        }
    }
    edges
}

// ---------------------------------------------------------------------------------------
// Our node and its channels

/// (scid, peer, capacity) of one of our channels.
type PeerChan = (Scid, NodeId, Msat);

struct Ours {
    id: NodeId,
    /// Channels usable in both directions, one per peer.
    chans: Vec<PeerChan>,
}

/// The node whose count of distinct usable peers is closest to `want` (ties: more total
/// channels, then node id), with one channel per peer.
fn pick_ours(g: &Graph, want: usize) -> Option<Ours> {
    let mut best: Option<(usize, NodeIdx, Vec<PeerChan>)> = None;
    for n in 0..g.node_count() as u32 {
        let n = NodeIdx(n);
        let outs = g.out_edges(n);
        if outs.len() < want {
            continue;
        }
        let mut chans: Vec<PeerChan> = Vec::new();
        for &e in outs {
            let Some(x) = g.edge(e) else { continue };
            let back = g.edge_from(x.scid, x.destination).and_then(|b| g.edge(b));
            let Some(peer) = g.node_id(x.destination) else {
                continue;
            };
            if !x.usable() || !back.is_some_and(|b| b.usable()) || chans.iter().any(|c| c.1 == *peer) {
                continue;
            }
            chans.push((x.scid, *peer, x.capacity));
        }
        if chans.len() < want {
            continue;
        }
        let d = chans.len() - want;
        if best.as_ref().is_none_or(|b| d < b.0) {
            best = Some((d, n, chans));
        }
    }
    let (_, n, chans) = best?;
    Some(Ours {
        id: *g.node_id(n)?,
        chans,
    })
}

fn bench_circular(g: &Graph, ours: &Ours, pairs: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let view = Beliefs::default().view(g, 0);
    let variants: [(&str, usize, Option<u32>); 3] = [
        ("k=1, no fee cap      ", 1, None),
        ("k=1, cap 500 ppm     ", 1, Some(500)),
        ("k=5 (Yen), no fee cap", 5, None),
    ];
    let mut reqs = Vec::with_capacity(pairs);
    while reqs.len() < pairs {
        let a = &ours.chans[rng.below(ours.chans.len() as u64) as usize];
        let b = &ours.chans[rng.below(ours.chans.len() as u64) as usize];
        if a.1 == b.1 {
            continue;
        }
        let amount_sat = rng.log_range(50_000.0, 500_000.0);
        reqs.push(CircularRequest {
            ours: ours.id,
            out_scid: a.0,
            out_peer: a.1,
            in_scid: b.0,
            in_peer: b.1,
            amount: Msat(amount_sat * 1000),
            in_policy: None,
        });
    }
    println!(
        "  circular route, {} random (source, sink) pairs, 50k-500k sat, max 8 hops:",
        pairs
    );
    for (name, k, cap) in variants {
        let mut times = Vec::with_capacity(pairs);
        let (mut found, mut hops, mut ppm) = (0usize, 0usize, Vec::new());
        for r in &reqs {
            let params = RouteParams {
                k,
                max_hops: 8,
                max_fee: cap.map(|p| Msat(r.amount.0 * p as u64 / 1_000_000)),
                ..RouteParams::default()
            };
            let t = Instant::now();
            let res = find_circular_routes(g, &view, r, &params);
            times.push(t.elapsed());
            if let Ok(routes) = res {
                if let Some(best) = routes.first() {
                    found += 1;
                    hops += best.hops.len();
                    ppm.push(best.fee_ppm);
                }
            }
        }
        times.sort();
        ppm.sort();
        let mean = times.iter().sum::<Duration>() / times.len().max(1) as u32;
        println!(
            "    {name}: p50 {:7.3} ms  p99 {:7.3} ms  mean {:7.3} ms  max {:7.3} ms | found {}/{}, avg {:.1} hops, median fee {} ppm",
            pct(&times, 0.5),
            pct(&times, 0.99),
            ms(mean),
            pct(&times, 1.0),
            found,
            reqs.len(),
            hops as f64 / found.max(1) as f64,
            ppm.get(ppm.len() / 2).copied().unwrap_or(0),
        );
    }
}

/// 50 channels with random lopsided balances: a third too full, a third too empty.
fn our_channels(ours: &Ours, n: usize, seed: u64) -> Vec<Channel> {
    let mut rng = Rng::new(seed);
    ours.chans
        .iter()
        .take(n)
        .map(|&(scid, peer, cap)| {
            let ratio = match rng.below(3) {
                0 => 0.85 + 0.15 * rng.unit(),
                1 => 0.15 * rng.unit(),
                _ => 0.3 + 0.4 * rng.unit(),
            };
            let local = (cap.0 as f64 * ratio) as u64;
            let remote = cap.0 - local;
            let reserve = cap.0 / 100;
            Channel {
                scid: Some(scid),
                peer,
                peer_connected: true,
                state: ChannelState::Normal,
                raw_state: "CHANNELD_NORMAL".into(),
                capacity: cap,
                local: Msat(local),
                remote: Msat(remote),
                spendable: Msat(local.saturating_sub(reserve)),
                receivable: Msat(remote.saturating_sub(reserve)),
                htlcs: Vec::new(),
                fee_base: Msat(1000),
                fee_ppm: rng.range(100, 2000) as u32,
                remote_policy: None,
                private: false,
            }
        })
        .collect()
}

/// Random beliefs over the graph, as a node accumulates after a while of rebalancing.
fn some_beliefs(g: &Graph, n: usize, now: u64, seed: u64) -> Beliefs {
    let mut rng = Rng::new(seed);
    let mut b = Beliefs::default();
    let edges = g.edges();
    for _ in 0..n {
        let Some(e) = edges.get(rng.below(edges.len() as u64) as usize) else {
            continue;
        };
        let ch = DirectedChannel::of(e);
        let amount = Msat(rng.below(e.capacity.0.max(1)));
        let at = now - rng.below(12 * 3600);
        if rng.below(2) == 0 {
            b.record_success(ch, e.capacity, amount, at);
        } else {
            b.record_failure(ch, e.capacity, amount, at);
        }
    }
    b
}

fn bench_plan(g: &Graph, ours: &Ours, runs: usize, seed: u64) {
    let channels = our_channels(ours, 50, seed);
    let now = 1_700_000_000;
    let beliefs = some_beliefs(g, 5_000, now, seed ^ 0x55);
    let cfg = PlannerConfig::default();
    let req = PlanRequest {
        ours: ours.id,
        channels: &channels,
        graph: g,
        beliefs: &beliefs,
        config: &cfg,
        feerate_perkb: Some(10_000),
        now,
        resting: &[],
    };
    let mut times = Vec::with_capacity(runs);
    let mut last: Option<Plan> = None;
    for _ in 0..runs {
        let t = Instant::now();
        let p = plan(&req);
        times.push(t.elapsed());
        last = p.ok();
    }
    times.sort();
    let Some(p) = last else {
        println!("  plan failed");
        return;
    };
    let n_src = p
        .channels
        .iter()
        .filter(|c| c.class == ballast::engine::planner::Class::Source)
        .count();
    let n_snk = p
        .channels
        .iter()
        .filter(|c| c.class == ballast::engine::planner::Class::Sink)
        .count();
    let count = |s: MoveStatus| p.moves.iter().filter(|m| m.status == s).count();
    println!(
        "  rebalance plan, {} channels ({} sources, {} sinks), k={}, max {} moves, 5,000 beliefs:",
        channels.len(),
        n_src,
        n_snk,
        cfg.k,
        cfg.max_moves
    );
    println!(
        "    time over {} runs: p50 {:.1} ms  max {:.1} ms  (goal < 250 ms)",
        runs,
        pct(&times, 0.5),
        pct(&times, 1.0)
    );
    println!(
        "    {} planned ({} sat, fee {} sat), {} over budget, {} without route, {} swap recommendations",
        count(MoveStatus::Planned),
        p.totals.amount.0 / 1000,
        p.totals.fee.0 / 1000,
        count(MoveStatus::OverBudget),
        count(MoveStatus::NoRoute),
        p.swaps.len()
    );
    for m in &p.moves {
        let route = m
            .routes
            .first()
            .map(|r| format!("{} hops, p={:.2}", r.hops.len(), r.probability))
            .unwrap_or_default();
        let price = match (m.fee_ppm, m.cheapest_ppm) {
            (Some(p), _) => format!("{p:>5} ppm"),
            (None, Some(p)) => format!("{p:>5} ppm (cheapest)"),
            _ => "    - ".into(),
        };
        println!(
            "      {:>13} -> {:<13} {:>9} sat  cap {:>4} ppm  {:<22} {:<24} {}",
            m.source_scid.to_string(),
            m.sink_scid.to_string(),
            m.amount.0 / 1000,
            m.fee_cap_ppm,
            price,
            format!("{:?}", m.status),
            route
        );
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (pairs, runs) = if quick { (100, 3) } else { (1000, 10) };
    println!("ballast routing benchmark{}", if quick { " (quick)" } else { "" });

    let snap = match std::env::var_os("ROUTING_GRAPH") {
        Some(p) => Path::new(&p).to_path_buf(),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/graphs/mainnet-2021-04-16.listchannels.json.gz"),
    };
    if snap.exists() {
        println!("\n== mainnet snapshot {} ==", snap.display());
        let rss0 = rss_kb();
        let t0 = Instant::now();
        let mut json = Vec::new();
        let gz = std::fs::read(&snap).unwrap_or_default();
        let ok = flate2::read::GzDecoder::new(&gz[..])
            .read_to_end(&mut json)
            .is_ok();
        let t1 = Instant::now();
        let parsed = if ok {
            listchannels::parse_slice(&json)
        } else {
            Ok(Default::default())
        };
        let t2 = Instant::now();
        match parsed {
            Err(e) => println!("  parse failed: {e}"),
            Ok(parsed) => {
                let g = Graph::from_edges(&parsed.edges).unwrap_or_default();
                g.prepare();
                let t3 = Instant::now();
                let rss_peak = rss_kb();
                let (n_edges, skipped) = (parsed.edges.len(), parsed.skipped);
                drop(parsed);
                drop(json);
                drop(gz);
                let rss_graph = rss_kb();
                println!(
                    "  {} directed edges ({} skipped), {} nodes, {} channels",
                    n_edges,
                    skipped,
                    g.node_count(),
                    g.channel_count()
                );
                println!(
                    "  load: gunzip {:.0} ms + parse {:.0} ms + build {:.0} ms = {:.0} ms",
                    ms(t1 - t0),
                    ms(t2 - t1),
                    ms(t3 - t2),
                    ms(t3 - t0)
                );
                println!(
                    "  RSS: {:.1} MiB before, {:.1} MiB peak while loading, {:.1} MiB with only the graph kept (graph heap ~{:.1} MiB)",
                    mib(rss0),
                    mib(rss_peak),
                    mib(rss_graph),
                    g.memory_bytes() as f64 / (1024.0 * 1024.0)
                );
                match pick_ours(&g, 50) {
                    Some(ours) => {
                        println!("  ours: {} ({} peers)", ours.id, ours.chans.len());
                        bench_circular(&g, &ours, pairs, 1);
                        bench_plan(&g, &ours, runs, 2);
                    }
                    None => println!("  no node with 50 usable peers"),
                }
            }
        }
    } else {
        println!(
            "\n(no mainnet snapshot at {}; synthetic graph only)",
            snap.display()
        );
    }

    println!("\n== synthetic graph, seed 42: {SYN_NODES} nodes, {SYN_CHANNELS} channels ==");
    let rss0 = rss_kb();
    let t0 = Instant::now();
    let edges = synthetic_graph(42);
    let t1 = Instant::now();
    let g = Graph::from_edges(&edges).unwrap_or_default();
    g.prepare();
    let t2 = Instant::now();
    drop(edges);
    let rss1 = rss_kb();
    let mut degs: Vec<usize> = (0..g.node_count() as u32)
        .map(|n| g.out_edges(NodeIdx(n)).len())
        .collect();
    degs.sort_unstable();
    let q = |p: f64| {
        degs.get(((degs.len() as f64 - 1.0) * p) as usize)
            .copied()
            .unwrap_or(0)
    };
    println!(
        "  {} nodes, {} channels, {} directed edges; degree p50 {} p90 {} p99 {} max {}",
        g.node_count(),
        g.channel_count(),
        g.edge_count(),
        q(0.5),
        q(0.9),
        q(0.99),
        q(1.0)
    );
    println!(
        "  generate {:.0} ms, build {:.0} ms; RSS {:.1} -> {:.1} MiB (graph heap ~{:.1} MiB)",
        ms(t1 - t0),
        ms(t2 - t1),
        mib(rss0),
        mib(rss1),
        g.memory_bytes() as f64 / (1024.0 * 1024.0)
    );
    match pick_ours(&g, 50) {
        Some(ours) => {
            println!("  ours: {} ({} peers)", ours.id, ours.chans.len());
            bench_circular(&g, &ours, pairs, 3);
            bench_plan(&g, &ours, runs, 4);
        }
        None => println!("  no node with 50 usable peers"),
    }
}
