use super::*;
use crate::engine::graph::tests::{chan, nid, scid};
use crate::engine::route::Hop;
use crate::node::GraphEdge;

const CAP: u64 = 1_000_000_000;

pub(crate) fn channel(s: u32, peer: u8, local: u64, fee_ppm: u32) -> Channel {
    let remote = CAP - local;
    Channel {
        scid: Some(scid(s)),
        peer: nid(peer),
        peer_connected: true,
        state: ChannelState::Normal,
        raw_state: "CHANNELD_NORMAL".into(),
        capacity: Msat(CAP),
        local: Msat(local),
        remote: Msat(remote),
        // 1% reserve on each side.
        spendable: Msat(local.saturating_sub(CAP / 100)),
        receivable: Msat(remote.saturating_sub(CAP / 100)),
        htlcs: Vec::new(),
        fee_base: Msat(1000),
        fee_ppm,
        remote_policy: None,
        private: false,
    }
}

/// Us = 1 with peers 2, 3, 4 (scids 1, 2, 3). The network links the peers through 5
/// (cheap) and 6 (dear); 4 hangs off 5.
fn network() -> Vec<GraphEdge> {
    let list: [(u32, u8, u8, u64, u32, u32); 8] = [
        (1, 1, 2, 0, 0, 40),
        (2, 1, 3, 0, 0, 40),
        (3, 1, 4, 0, 0, 40),
        (10, 2, 5, 1000, 100, 40),
        (11, 5, 3, 1000, 100, 40),
        (12, 2, 6, 1000, 300, 40),
        (13, 6, 3, 1000, 300, 40),
        (14, 4, 5, 0, 50, 40),
    ];
    list.iter()
        .flat_map(|&(s, a, b, base, ppm, cltv)| chan(s, a, b, base, ppm, cltv))
        .collect()
}

fn run(channels: &[Channel], cfg: &PlannerConfig) -> Result<Plan, PlanError> {
    run_on(network(), channels, cfg)
}

fn run_on(edges: Vec<GraphEdge>, channels: &[Channel], cfg: &PlannerConfig) -> Result<Plan, PlanError> {
    run_resting(edges, channels, cfg, &[])
}

fn run_resting(
    edges: Vec<GraphEdge>,
    channels: &[Channel],
    cfg: &PlannerConfig,
    resting: &[(Scid, Scid)],
) -> Result<Plan, PlanError> {
    let g = Graph::from_edges(&edges).unwrap();
    let beliefs = Beliefs::default();
    plan(&PlanRequest {
        ours: nid(1),
        channels,
        graph: &g,
        beliefs: &beliefs,
        config: cfg,
        feerate_perkb: Some(2000),
        now: 1_700_000_000,
        resting,
    })
}

/// The moves with a route within budget.
fn planned(plan: &Plan) -> Vec<&Move> {
    plan.moves
        .iter()
        .filter(|m| m.status == MoveStatus::Planned)
        .collect()
}

fn lopsided(sink_ppm: u32) -> Vec<Channel> {
    vec![
        channel(1, 2, 900_000_000, 200),
        channel(2, 3, 100_000_000, sink_ppm),
        channel(3, 4, 500_000_000, 200),
    ]
}

#[test]
fn classifies_and_plans_one_circular_move() {
    let plan = run(&lopsided(1000), &PlannerConfig::default()).unwrap();
    let classes: Vec<Class> = plan.channels.iter().map(|c| c.class).collect();
    assert_eq!(classes, vec![Class::Source, Class::Sink, Class::Balanced]);
    assert_eq!(plan.moves.len(), 1);
    let m = &plan.moves[0];
    assert_eq!(m.status, MoveStatus::Planned);
    assert_eq!((m.source_scid, m.sink_scid), (scid(1), scid(2)));
    assert_eq!((m.source_peer, m.sink_peer), (nid(2), nid(3)));
    // Both are 400M msat from the 50% target.
    assert_eq!(m.amount, Msat(400_000_000));
    // Cap: min(1000, 50% of the sink's 1000 ppm).
    assert_eq!(m.fee_cap_ppm, 500);
    assert_eq!(m.max_fee, Msat(200_000));
    // 5 charges on 400M (3 charges nothing on its channel to us), 2 on that plus 5's fee.
    let fee5 = 1000 + 40_000;
    let fee2 = 1000 + (400_000_000 + fee5) * 100 / 1_000_000;
    assert_eq!(m.fee, Some(Msat(fee5 + fee2)));
    assert_eq!(m.routes.len(), 1, "the route through 6 is over the cap");
    let hops: Vec<(Scid, NodeId)> = m.routes[0].hops.iter().map(|h: &Hop| (h.scid, h.node)).collect();
    assert_eq!(
        hops,
        vec![
            (scid(1), nid(2)),
            (scid(10), nid(5)),
            (scid(11), nid(3)),
            (scid(2), nid(1))
        ]
    );
    let pb = m.payback.as_ref().unwrap();
    assert_eq!(pb.expected_earnings, Msat(400_000));
    assert_eq!(pb.net_msat, 400_000 - (fee5 + fee2) as i64);
    assert!(m.reason.contains("planned") || m.reason.contains("best of 1 route"));
    assert!(plan.swaps.is_empty());
    assert_eq!(plan.totals.planned_moves, 1);
    assert_eq!(plan.totals.fee, Msat(fee5 + fee2));
}

#[test]
fn executing_the_plan_fixes_the_lopsided_node() {
    let mut chans = lopsided(1000);
    let cfg = PlannerConfig::default();
    let plan1 = run(&chans, &cfg).unwrap();
    for m in plan1.moves.iter().filter(|m| m.status == MoveStatus::Planned) {
        let fee = m.fee.unwrap().0;
        for c in chans.iter_mut() {
            if c.scid == Some(m.source_scid) {
                c.local.0 -= m.amount.0 + fee;
            }
            if c.scid == Some(m.sink_scid) {
                c.local.0 += m.amount.0;
            }
            c.remote = Msat(CAP - c.local.0);
            c.spendable = Msat(c.local.0 - CAP / 100);
            c.receivable = Msat(c.remote.0 - CAP / 100);
        }
    }
    let plan2 = run(&chans, &cfg).unwrap();
    assert!(
        plan2.channels.iter().all(|c| c.class == Class::Balanced),
        "{:?}",
        plan2.channels
    );
    assert!(plan2.moves.is_empty() && plan2.swaps.is_empty());
}

#[test]
fn budget_cap_is_respected_and_a_swap_is_offered() {
    // The sink earns 100 ppm: the cap is 50 ppm, and the cheapest loop costs ~205 ppm.
    let plan = run(&lopsided(100), &PlannerConfig::default()).unwrap();
    assert!(plan.moves.iter().all(|m| m.status != MoveStatus::Planned));
    let m = &plan.moves[0];
    assert_eq!(m.status, MoveStatus::OverBudget);
    assert_eq!(m.fee_cap_ppm, 50);
    assert!(m.routes.is_empty());
    assert_eq!(m.cheapest_fee, Some(Msat(82_004)));
    assert_eq!(m.cheapest_ppm, Some(206));
    assert!(m.reason.contains("no route within budget"));
    assert_eq!(serde_json::to_value(m.status).unwrap(), "no route within budget");

    let kinds: Vec<(Scid, SwapKind)> = plan.swaps.iter().map(|s| (s.scid, s.kind)).collect();
    assert_eq!(
        kinds,
        vec![(scid(1), SwapKind::LoopOut), (scid(2), SwapKind::LoopIn)]
    );
    let out = &plan.swaps[0];
    assert_eq!(out.amount, Msat(400_000_000));
    // 2000 sat/kvB × 350 vB.
    assert_eq!(out.onchain_fee_sat, Some(700));
    assert_eq!(out.onchain_fee_ppm, Some(1750));
    assert!(
        out.reason.contains("cheapest 206 ppm > cap 50 ppm"),
        "{}",
        out.reason
    );

    // The operator's max_ppm caps even a well-paid sink.
    let cfg = PlannerConfig {
        max_ppm: 100,
        ..PlannerConfig::default()
    };
    let plan = run(&lopsided(5000), &cfg).unwrap();
    assert_eq!(plan.moves[0].fee_cap_ppm, 100);
    assert_eq!(plan.moves[0].status, MoveStatus::OverBudget);
    // Every planned fee stays within its cap.
    for sink_ppm in [300, 420, 1000, 3000] {
        let plan = run(&lopsided(sink_ppm), &PlannerConfig::default()).unwrap();
        for m in &plan.moves {
            for r in &m.routes {
                assert!(r.fee <= m.max_fee);
            }
        }
    }
}

#[test]
fn a_move_too_big_for_the_network_is_halved() {
    // Every path from 2 to 3 carries at most 150M msat: 400M and 200M fail at any price,
    // 100M gets through.
    let mut edges = network();
    for e in edges
        .iter_mut()
        .filter(|e| e.source == nid(2) && e.destination != nid(1))
    {
        e.htlc_max = Msat(150_000_000);
    }
    let plan = run_on(edges.clone(), &lopsided(1000), &PlannerConfig::default()).unwrap();
    let m = &plan.moves[0];
    assert_eq!(m.status, MoveStatus::Planned);
    assert_eq!(m.amount, Msat(100_000_000));
    // Below min_amount after halving: reported as having no route at all.
    let cfg = PlannerConfig {
        min_amount: Msat(150_000_000),
        ..PlannerConfig::default()
    };
    let plan = run_on(edges, &lopsided(1000), &cfg).unwrap();
    assert_eq!(plan.moves[0].status, MoveStatus::NoRoute);
    assert_eq!(plan.moves[0].amount, Msat(200_000_000));
    assert!(plan.moves[0].reason.contains("no route carries this amount"));
}

#[test]
fn a_private_sink_channel_uses_the_peers_policy() {
    // The sink channel (scid 2 to peer 3) is not in gossip: without the peer's policy the
    // last hop cannot be priced, with it the move is planned at that price.
    let edges: Vec<GraphEdge> = network().into_iter().filter(|e| e.scid != scid(2)).collect();
    let mut chans = lopsided(1000);
    let plan = run_on(edges.clone(), &chans, &PlannerConfig::default()).unwrap();
    assert_eq!(plan.moves[0].status, MoveStatus::NoRoute);
    assert!(
        plan.moves[0].reason.contains("cannot route"),
        "{}",
        plan.moves[0].reason
    );
    chans[1].remote_policy = Some(crate::node::PeerPolicy {
        fee_base: Msat(0),
        fee_ppm: 10,
        cltv_delta: 40,
    });
    let plan = run_on(edges, &chans, &PlannerConfig::default()).unwrap();
    let m = &plan.moves[0];
    assert_eq!(m.status, MoveStatus::Planned);
    assert_eq!(m.routes[0].hops[3].fee, Msat(4000));
}

#[test]
fn same_peer_channels_are_never_paired() {
    // Two channels to peer 2, one full and one empty: a loop through 2 would only shuffle
    // balance between them and pay 2 for it.
    let chans = vec![channel(1, 2, 900_000_000, 500), channel(4, 2, 100_000_000, 500)];
    let plan = run(&chans, &PlannerConfig::default()).unwrap();
    assert!(plan.moves.is_empty());
    assert_eq!(plan.swaps.len(), 2);
    assert!(
        plan.swaps[0].reason.contains("no sink channel"),
        "{}",
        plan.swaps[0].reason
    );
    assert!(
        plan.swaps[1].reason.contains("no source channel"),
        "{}",
        plan.swaps[1].reason
    );
}

#[test]
fn unusable_channels_are_skipped_with_reasons() {
    let mut offline = channel(1, 2, 900_000_000, 500);
    offline.peer_connected = false;
    let mut closing = channel(2, 3, 100_000_000, 500);
    closing.state = ChannelState::Closing;
    closing.raw_state = "CHANNELD_SHUTTING_DOWN".into();
    let mut opening = channel(3, 4, 0, 500);
    opening.scid = None;
    opening.state = ChannelState::Opening;
    let plan = run(&[offline, closing, opening], &PlannerConfig::default()).unwrap();
    assert!(plan.channels.is_empty() && plan.moves.is_empty() && plan.swaps.is_empty());
    let reasons: Vec<&str> = plan.skipped.iter().map(|s| s.reason.as_str()).collect();
    assert_eq!(
        reasons,
        vec![
            "peer is offline",
            "not in normal state (CHANNELD_SHUTTING_DOWN)",
            "no short channel id yet (CHANNELD_NORMAL)"
        ]
    );
}

#[test]
fn overrides_filters_and_limits() {
    // A per-channel high of 95% makes the 90% channel acceptable, not a source; it still
    // lends its excess over target to the 10% sink, and no more than that.
    let mut cfg = PlannerConfig::default();
    cfg.overrides.insert(
        scid(1),
        ChannelOverride {
            high: Some(0.95),
            ..ChannelOverride::default()
        },
    );
    let plan = run(&lopsided(1000), &cfg).unwrap();
    assert_eq!(plan.channels[0].class, Class::Balanced);
    assert_eq!(plan.channels[0].high, 0.95);
    assert_eq!(plan.channels[0].imbalance, Msat(0));
    assert_eq!(plan.moves.len(), 1);
    assert_eq!(
        (plan.moves[0].source_scid, plan.moves[0].sink_scid),
        (scid(1), scid(2))
    );
    assert!(
        plan.moves[0].reason.contains("90% local (above 50%)"),
        "{}",
        plan.moves[0].reason
    );
    // With its target at 90% too, it has nothing to lend: nothing to pair.
    cfg.overrides.insert(
        scid(1),
        ChannelOverride {
            high: Some(0.95),
            target: Some(0.9),
            ..ChannelOverride::default()
        },
    );
    let plan = run(&lopsided(1000), &cfg).unwrap();
    assert!(plan.moves.is_empty(), "{:#?}", plan.moves);

    // max_amount caps the move.
    let cfg = PlannerConfig {
        max_amount: Msat(50_000_000),
        ..PlannerConfig::default()
    };
    let plan = run(&lopsided(1000), &cfg).unwrap();
    assert_eq!(plan.moves[0].amount, Msat(50_000_000));

    // max_moves = 0 plans nothing; a filter on an unknown channel is an error.
    let cfg = PlannerConfig {
        max_moves: 0,
        ..PlannerConfig::default()
    };
    let plan = run(&lopsided(1000), &cfg).unwrap();
    assert!(plan.moves.is_empty());
    // Untried is not hopeless: no swap is recommended for want of a try.
    assert!(plan.swaps.is_empty());
    let cfg = PlannerConfig {
        channels: Some(vec![scid(99)]),
        ..PlannerConfig::default()
    };
    assert_eq!(
        run(&lopsided(1000), &cfg),
        Err(PlanError::UnknownChannel(scid(99)))
    );
    // Filtering on the balanced channel: nothing of interest.
    let cfg = PlannerConfig {
        channels: Some(vec![scid(3)]),
        ..PlannerConfig::default()
    };
    assert!(run(&lopsided(1000), &cfg).unwrap().moves.is_empty());
}

#[test]
fn several_moves_split_the_work_between_pairs() {
    // Two sources and one deep sink: both sources can move into it, one after the other.
    let chans = vec![
        channel(1, 2, 950_000_000, 200),
        channel(2, 3, 0, 1000),
        channel(3, 4, 950_000_000, 200),
    ];
    let plan = run(&chans, &PlannerConfig::default()).unwrap();
    let planned = planned(&plan);
    assert_eq!(planned.len(), 2, "{:#?}", plan.moves);
    // The sink needed 500M and the first source gave 450M; the second tops it up.
    assert_eq!(planned[0].amount, Msat(450_000_000));
    assert_eq!(planned[1].amount, Msat(50_000_000));
    assert_eq!(planned[1].source_scid, scid(3));
    // The second source keeps most of its excess but is being worked on: no swap yet.
    assert!(plan.swaps.is_empty());
}

#[test]
fn a_lopsided_channel_is_fixed_against_one_inside_its_band() {
    // 90% and 35%: only the first is out of its band, and no channel is under 20%. The
    // 35% one takes the excess, but only up to its target.
    let chans = vec![
        channel(1, 2, 900_000_000, 200),
        channel(2, 3, 350_000_000, 1000),
        channel(3, 4, 500_000_000, 200),
    ];
    let plan = run(&chans, &PlannerConfig::default()).unwrap();
    let classes: Vec<Class> = plan.channels.iter().map(|c| c.class).collect();
    assert_eq!(classes, vec![Class::Source, Class::Balanced, Class::Balanced]);
    let planned = planned(&plan);
    assert_eq!(planned.len(), 1, "{:#?}", plan.moves);
    assert_eq!((planned[0].source_scid, planned[0].sink_scid), (scid(1), scid(2)));
    assert_eq!(planned[0].amount, Msat(150_000_000));
    assert!(
        planned[0].reason.contains("35% (below 50%)"),
        "{}",
        planned[0].reason
    );

    // Two channels inside their bands are never paired with each other: nothing is fixed.
    let calm = vec![channel(1, 2, 700_000_000, 200), channel(2, 3, 300_000_000, 1000)];
    assert!(run(&calm, &PlannerConfig::default()).unwrap().moves.is_empty());

    // A pair of two lopsided channels comes before a bigger one with a channel in band.
    // Channel 3 at 10% is inside its band (low 5%) and would take 400M; the lopsided
    // channel 2 at 18% takes 320M and goes first.
    let chans = vec![
        channel(1, 2, 990_000_000, 200),
        channel(2, 3, 180_000_000, 1000),
        channel(3, 4, 100_000_000, 1000),
    ];
    let mut cfg = PlannerConfig {
        max_moves: 1,
        ..PlannerConfig::default()
    };
    cfg.overrides.insert(
        scid(3),
        ChannelOverride {
            low: Some(0.05),
            ..ChannelOverride::default()
        },
    );
    let plan = run(&chans, &cfg).unwrap();
    assert_eq!(plan.moves.len(), 1);
    let m = &plan.moves[0];
    assert_eq!((m.source_scid, m.sink_scid), (scid(1), scid(2)), "{m:#?}");

    // A filter names what to fix: a selected channel inside its band is fixed by nobody.
    let cfg = PlannerConfig {
        channels: Some(vec![scid(2)]),
        ..PlannerConfig::default()
    };
    let chans = vec![channel(1, 2, 900_000_000, 200), channel(2, 3, 350_000_000, 1000)];
    assert!(run(&chans, &cfg).unwrap().moves.is_empty());
}

#[test]
fn resting_pairs_are_not_planned() {
    let chans = vec![
        channel(1, 2, 950_000_000, 200),
        channel(2, 3, 0, 1000),
        channel(3, 4, 950_000_000, 200),
    ];
    let resting = [(scid(1), scid(2))];
    let plan = run_resting(network(), &chans, &PlannerConfig::default(), &resting).unwrap();
    let pairs: Vec<(Scid, Scid)> = plan.moves.iter().map(|m| (m.source_scid, m.sink_scid)).collect();
    assert_eq!(pairs, vec![(scid(3), scid(2))]);
    // Resting is not failing: no swap is recommended for the source that rests.
    assert!(plan.swaps.is_empty(), "{:#?}", plan.swaps);
}

#[test]
fn plans_are_deterministic_and_serializable() {
    let mut chans = vec![
        channel(1, 2, 900_000_000, 1000),
        channel(2, 3, 100_000_000, 1000),
        channel(3, 4, 50_000_000, 1000),
    ];
    let a = run(&chans, &PlannerConfig::default()).unwrap();
    chans.reverse();
    let b = run(&chans, &PlannerConfig::default()).unwrap();
    assert_eq!(a, b);
    let json = serde_json::to_string(&a).unwrap();
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, a);
}

#[test]
fn bad_config_is_an_error() {
    let base = PlannerConfig::default;
    let bad = [
        PlannerConfig { low: 0.6, ..base() },
        PlannerConfig { high: 1.5, ..base() },
        PlannerConfig {
            target: f64::NAN,
            ..base()
        },
        PlannerConfig {
            fee_share: -0.1,
            ..base()
        },
        PlannerConfig { k: 0, ..base() },
        PlannerConfig {
            max_hops: 2,
            ..base()
        },
        PlannerConfig {
            max_amount: Msat(0),
            ..base()
        },
        PlannerConfig {
            min_amount: Msat(2_000_000_000),
            ..base()
        },
    ];
    for cfg in &bad {
        assert!(
            matches!(run(&lopsided(1000), cfg), Err(PlanError::InvalidConfig(_))),
            "{cfg:?}"
        );
    }
    let mut cfg = base();
    cfg.overrides.insert(
        scid(1),
        ChannelOverride {
            low: Some(0.9),
            ..ChannelOverride::default()
        },
    );
    assert!(matches!(
        run(&lopsided(1000), &cfg),
        Err(PlanError::InvalidConfig(_))
    ));
}
