use super::*;
use crate::engine::beliefs::{BeliefView, Liquidity};
use crate::engine::graph::tests::{chan, edge, nid, scid};
use crate::engine::graph::{fee_for, EdgeIdx, Graph, NodeIdx};
use crate::node::{GraphEdge, PeerPolicy};
use crate::types::{Msat, NodeId, Scid};
use proptest::prelude::*;
use std::collections::HashSet;

/// Ranks by fee alone: the setting where the search is provably optimal, so results can
/// be compared with brute force.
fn fee_only() -> RouteParams {
    RouteParams {
        cost: CostModel {
            risk_factor: 0.0,
            prob_base_msat: 0,
            prob_ppm: 0,
        },
        ..RouteParams::default()
    }
}

fn graph(es: &[GraphEdge]) -> Graph {
    Graph::from_edges(es).unwrap()
}

fn chans(list: &[(u32, u8, u8, u64, u32, u32)]) -> Vec<GraphEdge> {
    list.iter()
        .flat_map(|&(s, a, b, base, ppm, cltv)| chan(s, a, b, base, ppm, cltv))
        .collect()
}

fn route_scids(r: &Route) -> Vec<Scid> {
    r.hops.iter().map(|h| h.scid).collect()
}

#[test]
fn fees_are_computed_on_the_forwarded_amount() {
    // 1 -> 2 -> 3 -> 4. Node 2 charges on what it forwards to 3, which includes 3's fee.
    let g = graph(&[
        edge(1, 1, 2, 999, 999, 99), // our own policy: never charged
        edge(2, 2, 3, 1000, 2500, 40),
        edge(3, 3, 4, 7, 100_000, 144),
    ]);
    let amount = Msat(1_234_567);
    let p = RouteParams {
        final_cltv: 9,
        ..fee_only()
    };
    let rs = find_routes(&g, &BeliefView::empty(), &nid(1), &nid(4), amount, &p).unwrap();
    assert_eq!(rs.len(), 1);
    let r = &rs[0];
    let fee3 = 7 + 1_234_567 * 100_000 / 1_000_000; // 123_463
    let at3 = 1_234_567 + fee3;
    let fee2 = 1000 + at3 * 2500 / 1_000_000;
    let at2 = at3 + fee2;
    assert_eq!(fee3, 123_463);
    assert_eq!(fee2, 1000 + 3395);
    assert_eq!(route_scids(r), vec![scid(1), scid(2), scid(3)]);
    let amounts: Vec<u64> = r.hops.iter().map(|h| h.amount.0).collect();
    assert_eq!(amounts, vec![at2, at3, 1_234_567]);
    let fees: Vec<u64> = r.hops.iter().map(|h| h.fee.0).collect();
    assert_eq!(fees, vec![0, fee2, fee3]);
    let delays: Vec<u32> = r.hops.iter().map(|h| h.delay).collect();
    assert_eq!(delays, vec![9 + 144 + 40, 9 + 144, 9]);
    assert_eq!(r.fee, Msat(fee2 + fee3));
    assert_eq!(r.amount_sent, Msat(at2));
    assert_eq!(r.total_cltv, 193);
    assert_eq!(r.fee_ppm, ((fee2 + fee3) * 1_000_000).div_ceil(1_234_567));
    assert_eq!(r.cost, fee2 + fee3);
    assert_eq!(r.to_route_hops()[0].amount, Msat(at2));
}

#[test]
fn risk_and_probability_terms_shape_the_cost() {
    let g = graph(&chans(&[(1, 1, 2, 0, 0, 40), (2, 2, 3, 0, 0, 100)]));
    let p = RouteParams {
        cost: CostModel {
            risk_factor: 10.0,
            prob_base_msat: 0,
            prob_ppm: 0,
        },
        ..RouteParams::default()
    };
    let amt = 5_259_600u64;
    let r = &find_routes(&g, &BeliefView::empty(), &nid(1), &nid(3), Msat(amt), &p).unwrap()[0];
    // One block at 10% a year on 5,259,600 msat is 10 msat; node 2's delta is 100 blocks,
    // ours (the first hop) does not count.
    assert_eq!(r.cost, 1000);
    assert_eq!(r.fee, Msat(0));
    let cap = 10_000_000_000f64;
    let expect = ((cap - amt as f64 + 1.0) / (cap + 1.0)).powi(2);
    assert!((r.probability - expect).abs() < 1e-12);
}

#[test]
fn beliefs_rule_out_and_rank_edges() {
    // Two parallel paths 1-2-4 and 1-3-4, the one through 2 slightly cheaper.
    let g = graph(&chans(&[
        (1, 1, 2, 0, 10, 40),
        (2, 2, 4, 0, 10, 40),
        (3, 1, 3, 0, 11, 40),
        (4, 3, 4, 0, 11, 40),
    ]));
    let amount = Msat(1_000_000);
    let p = fee_only();
    let mut view = BeliefView::empty();
    let r = find_routes(&g, &view, &nid(1), &nid(4), amount, &p).unwrap();
    assert_eq!(route_scids(&r[0]), vec![scid(1), scid(2)]);
    // 2 -> 4 is known to hold less than the amount: that path disappears.
    let e = g.edge_from(scid(2), g.node_index(&nid(2)).unwrap()).unwrap();
    view.set_for(
        &g,
        e,
        Liquidity {
            lower: Msat(0),
            upper: Msat(999_999),
        },
    );
    let r = find_routes(&g, &view, &nid(1), &nid(4), amount, &p).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(route_scids(&r[0]), vec![scid(3), scid(4)]);
    // Doubtful but possible: with a probability price the likelier path wins.
    view.set(
        e,
        Liquidity {
            lower: Msat(0),
            upper: Msat(1_000_001),
        },
    );
    let priced = RouteParams {
        cost: CostModel {
            risk_factor: 0.0,
            prob_base_msat: 1000,
            prob_ppm: 0,
        },
        ..RouteParams::default()
    };
    let r = find_routes(&g, &view, &nid(1), &nid(4), amount, &priced).unwrap();
    assert_eq!(route_scids(&r[0]), vec![scid(3), scid(4)]);
    assert!(r[1].probability < 1e-5);
}

#[test]
fn yen_returns_k_distinct_loop_free_routes_in_cost_order() {
    // A small mesh with many alternatives between 1 and 6.
    let es = chans(&[
        (1, 1, 2, 0, 100, 40),
        (2, 1, 3, 0, 200, 40),
        (3, 2, 3, 0, 10, 40),
        (4, 2, 4, 0, 300, 40),
        (5, 3, 4, 0, 50, 40),
        (6, 3, 5, 0, 400, 40),
        (7, 4, 6, 0, 20, 40),
        (8, 5, 6, 0, 30, 40),
        (9, 4, 5, 0, 5, 40),
    ]);
    let g = graph(&es);
    let p = RouteParams { k: 6, ..fee_only() };
    let rs = find_routes(&g, &BeliefView::empty(), &nid(1), &nid(6), Msat(10_000_000), &p).unwrap();
    assert_eq!(rs.len(), 6);
    let mut keys = HashSet::new();
    for w in rs.windows(2) {
        assert!(w[0].cost <= w[1].cost);
    }
    for r in &rs {
        assert!(keys.insert(route_scids(r)), "duplicate route");
        check_route(&g, r, &nid(1), &nid(6), p.max_hops);
    }
    let brute = brute_force(&g, &nid(1), &nid(6), 10_000_000, p.max_hops, &[], &[]);
    let want: Vec<u64> = brute.iter().take(6).map(|b| b.0).collect();
    let got: Vec<u64> = rs.iter().map(|r| r.fee.0).collect();
    assert_eq!(got, want);
    assert_eq!(route_scids(&rs[0]), brute[0].1);
}

#[test]
fn excluded_nodes_and_channels_are_avoided() {
    let g = graph(&chans(&[
        (1, 1, 2, 0, 1, 40),
        (2, 2, 4, 0, 1, 40),
        (3, 1, 3, 0, 5, 40),
        (4, 3, 4, 0, 5, 40),
        (5, 1, 5, 0, 50, 40),
        (6, 5, 4, 0, 50, 40),
    ]));
    let amt = Msat(1_000_000);
    let none = BeliefView::empty();
    let r = find_routes(&g, &none, &nid(1), &nid(4), amt, &fee_only()).unwrap();
    assert_eq!(route_scids(&r[0]), vec![scid(1), scid(2)]);
    let p = RouteParams {
        exclude_nodes: vec![nid(2)],
        ..fee_only()
    };
    let r = find_routes(&g, &none, &nid(1), &nid(4), amt, &p).unwrap();
    assert!(r.iter().all(|r| r.hops.iter().all(|h| h.node != nid(2))));
    assert_eq!(route_scids(&r[0]), vec![scid(3), scid(4)]);
    let p = RouteParams {
        exclude_nodes: vec![nid(2)],
        exclude_channels: vec![scid(4)],
        ..fee_only()
    };
    let r = find_routes(&g, &none, &nid(1), &nid(4), amt, &p).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(route_scids(&r[0]), vec![scid(5), scid(6)]);
}

#[test]
fn hop_limit_is_exact_even_when_the_cheapest_tail_is_long() {
    // From 2 the cheapest way to 9 is the 3-hop chain; the direct edge is dear. With
    // max_hops = 4 only 1 -> 6 -> 2 -> 9 fits. Node 2 is first settled through the long
    // chain, and the search must settle it again through the short edge to find it.
    let g = graph(&chans(&[
        (1, 1, 6, 0, 1, 40),
        (6, 6, 2, 0, 1, 40),
        (2, 2, 9, 0, 5000, 40),
        (3, 2, 3, 0, 1, 40),
        (4, 3, 4, 0, 1, 40),
        (5, 4, 9, 0, 1, 40),
    ]));
    let none = BeliefView::empty();
    let amt = Msat(1_000_000);
    let r = find_routes(
        &g,
        &none,
        &nid(1),
        &nid(9),
        amt,
        &RouteParams { k: 1, ..fee_only() },
    )
    .unwrap();
    assert_eq!(
        route_scids(&r[0]),
        vec![scid(1), scid(6), scid(3), scid(4), scid(5)]
    );
    let p = RouteParams {
        k: 3,
        max_hops: 4,
        ..fee_only()
    };
    let r = find_routes(&g, &none, &nid(1), &nid(9), amt, &p).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(route_scids(&r[0]), vec![scid(1), scid(6), scid(2)]);
    let p = RouteParams { max_hops: 2, ..p };
    assert!(find_routes(&g, &none, &nid(1), &nid(9), amt, &p)
        .unwrap()
        .is_empty());
}

#[test]
fn htlc_limits_capacity_and_disabled_edges_are_respected() {
    let mut es = chans(&[
        (1, 1, 2, 0, 1, 40),
        (2, 2, 4, 0, 1, 40),
        (3, 1, 3, 0, 9, 40),
        (4, 3, 4, 0, 9, 40),
    ]);
    es[2].htlc_max = Msat(500_000); // 2 -> 4
    let g = graph(&es);
    let none = BeliefView::empty();
    let small = find_routes(&g, &none, &nid(1), &nid(4), Msat(400_000), &fee_only()).unwrap();
    assert_eq!(route_scids(&small[0]), vec![scid(1), scid(2)]);
    let big = find_routes(&g, &none, &nid(1), &nid(4), Msat(600_000), &fee_only()).unwrap();
    assert_eq!(big.len(), 1);
    assert_eq!(route_scids(&big[0]), vec![scid(3), scid(4)]);
    es[6].active = false; // 3 -> 4
    es[2].htlc_max = Msat(0);
    es[2].capacity = Msat(100);
    let g = graph(&es);
    assert!(
        find_routes(&g, &none, &nid(1), &nid(4), Msat(600_000), &fee_only())
            .unwrap()
            .is_empty()
    );
    let mut es2 = es.clone();
    es2[2].capacity = Msat(10_000_000);
    es2[2].htlc_min = Msat(700_000);
    let g = graph(&es2);
    assert!(
        find_routes(&g, &none, &nid(1), &nid(4), Msat(600_000), &fee_only())
            .unwrap()
            .is_empty()
    );
}

#[test]
fn fee_budget_and_cltv_limit_prune() {
    let g = graph(&chans(&[
        (1, 1, 2, 0, 1, 40),
        (2, 2, 3, 0, 900, 40),
        (3, 1, 4, 0, 1, 40),
        (4, 4, 3, 0, 100, 400),
    ]));
    let none = BeliefView::empty();
    let amt = Msat(1_000_000);
    let p = RouteParams { k: 5, ..fee_only() };
    let all = find_routes(&g, &none, &nid(1), &nid(3), amt, &p).unwrap();
    assert_eq!(all.len(), 2);
    let p = RouteParams {
        max_fee: Some(Msat(500)),
        ..p
    };
    let capped = find_routes(&g, &none, &nid(1), &nid(3), amt, &p).unwrap();
    assert_eq!(capped.len(), 1);
    assert!(capped[0].fee <= Msat(500));
    let p = RouteParams {
        max_fee: None,
        max_total_cltv: 100,
        ..p
    };
    let quick = find_routes(&g, &none, &nid(1), &nid(3), amt, &p).unwrap();
    assert_eq!(quick.len(), 1);
    assert_eq!(route_scids(&quick[0]), vec![scid(1), scid(2)]);
    assert_eq!(fastest(&all).map(|r| r.total_cltv), Some(58));
    assert_eq!(cheapest(&all).map(|r| r.fee), Some(Msat(100)));
}

/// Us = 1 with channels to peers 2 (scid 1 and 2: two channels) and 3 (scid 3); the rest of
/// the network 4, 5 links the peers. Zero-fee channels through us would be the cheapest way
/// from 2 to 3 if the middle could touch our node.
fn ring() -> Graph {
    graph(&chans(&[
        (1, 1, 2, 0, 0, 40),
        (2, 1, 2, 0, 0, 40),
        (3, 1, 3, 0, 0, 40),
        (4, 2, 4, 1000, 100, 40),
        (5, 4, 3, 1000, 100, 40),
        (6, 2, 5, 1000, 300, 40),
        (7, 5, 3, 2000, 300, 40),
    ]))
}

fn circ(out_scid: u32, out_peer: u8, in_scid: u32, in_peer: u8, amount: u64) -> CircularRequest {
    CircularRequest {
        ours: nid(1),
        out_scid: scid(out_scid),
        out_peer: nid(out_peer),
        in_scid: scid(in_scid),
        in_peer: nid(in_peer),
        amount: Msat(amount),
        in_policy: None,
    }
}

#[test]
fn circular_route_goes_out_and_back_through_different_peers() {
    let g = ring();
    let p = RouteParams { k: 5, ..fee_only() };
    let rs = find_circular_routes(&g, &BeliefView::empty(), &circ(1, 2, 3, 3, 1_000_000), &p).unwrap();
    assert_eq!(rs.len(), 2, "only the two paths that avoid our node");
    let r = &rs[0];
    assert_eq!(route_scids(r), vec![scid(1), scid(4), scid(5), scid(3)]);
    let nodes: Vec<NodeId> = r.hops.iter().map(|h| h.node).collect();
    assert_eq!(nodes, vec![nid(2), nid(4), nid(3), nid(1)]);
    // 3 charges nothing on its channel to us; 4 charges on 1,000,000; 2 on that plus 4's fee.
    let fee4 = 1000 + 100;
    let fee2 = 1000 + (1_000_000 + fee4) * 100 / 1_000_000;
    assert_eq!(r.fee, Msat(fee4 + fee2));
    assert_eq!(r.hops[0].fee, Msat(0));
    assert_eq!(r.hops[0].amount, Msat(1_000_000 + fee4 + fee2));
    assert_eq!(r.hops[3].amount, Msat(1_000_000));
    for r in &rs {
        assert!(r.hops[1..3].iter().all(|h| h.node != nid(1)));
    }
}

#[test]
fn same_peer_loop_is_refused() {
    let g = ring();
    let p = fee_only();
    let err = find_circular_routes(&g, &BeliefView::empty(), &circ(1, 2, 2, 2, 1_000_000), &p).unwrap_err();
    assert_eq!(err, RouteError::SamePeer(nid(2)));
    // Wrong peer for a channel, unknown channel, too few hops: errors, not routes.
    let e = find_circular_routes(&g, &BeliefView::empty(), &circ(3, 2, 1, 2, 1), &p);
    assert!(matches!(e, Err(RouteError::SamePeer(_))));
    let e = find_circular_routes(&g, &BeliefView::empty(), &circ(4, 2, 3, 3, 1), &p);
    assert!(matches!(e, Err(RouteError::ChannelMismatch { .. })));
    let e = find_circular_routes(&g, &BeliefView::empty(), &circ(1, 2, 99, 3, 1), &p);
    assert!(matches!(e, Err(RouteError::UnknownChannel(_))));
    let short = RouteParams {
        max_hops: 2,
        ..fee_only()
    };
    let e = find_circular_routes(&g, &BeliefView::empty(), &circ(1, 2, 3, 3, 1), &short);
    assert!(matches!(e, Err(RouteError::InvalidParams(_))));
}

#[test]
fn private_source_channel_is_allowed() {
    // The outgoing channel to 2 is not in gossip at all.
    let g = ring();
    let req = CircularRequest {
        out_scid: scid(77),
        ..circ(1, 2, 3, 3, 500_000)
    };
    let rs = find_circular_routes(&g, &BeliefView::empty(), &req, &fee_only()).unwrap();
    assert_eq!(rs[0].hops[0].scid, scid(77));
}

#[test]
fn sink_policy_comes_from_the_peer_when_given() {
    let g = ring();
    let none = BeliefView::empty();
    let policy = PeerPolicy {
        fee_base: Msat(5),
        fee_ppm: 1000,
        cltv_delta: 100,
    };
    // Overrides gossip (which says 3 charges nothing on scid 3).
    let req = CircularRequest {
        in_policy: Some(policy),
        ..circ(1, 2, 3, 3, 1_000_000)
    };
    let r = &find_circular_routes(&g, &none, &req, &fee_only()).unwrap()[0];
    let last = r.hops.last().unwrap();
    assert_eq!((last.fee, last.cltv_delta), (Msat(1005), 100));
    assert_eq!(r.hops[2].amount, Msat(1_001_005));
    // A private sink channel (scid 78, not in gossip): usable only with the peer's policy.
    let private = CircularRequest {
        in_scid: scid(78),
        ..req.clone()
    };
    assert!(!find_circular_routes(&g, &none, &private, &fee_only())
        .unwrap()
        .is_empty());
    let unknown = CircularRequest {
        in_policy: None,
        ..private
    };
    assert_eq!(
        find_circular_routes(&g, &none, &unknown, &fee_only()),
        Err(RouteError::UnknownChannel(scid(78)))
    );
    // Only our direction of the sink channel in gossip: fine with the peer's policy.
    let mut es = chans(&[(1, 1, 2, 0, 0, 40), (4, 2, 4, 0, 0, 40), (5, 4, 3, 0, 0, 40)]);
    es.push(edge(3, 1, 3, 0, 0, 40));
    let g = graph(&es);
    assert!(!find_circular_routes(&g, &none, &req, &fee_only())
        .unwrap()
        .is_empty());
}

#[test]
fn bad_inputs_give_errors() {
    let g = ring();
    let none = BeliefView::empty();
    let p = fee_only();
    assert!(matches!(
        find_routes(&g, &none, &nid(1), &nid(1), Msat(1), &p),
        Err(RouteError::SameEndpoints)
    ));
    assert!(matches!(
        find_routes(&g, &none, &nid(1), &nid(99), Msat(1), &p),
        Err(RouteError::UnknownNode(_))
    ));
    assert!(matches!(
        find_routes(&g, &none, &nid(1), &nid(3), Msat(0), &p),
        Err(RouteError::InvalidParams(_))
    ));
    let bad = [
        RouteParams { k: 0, ..fee_only() },
        RouteParams {
            max_hops: 0,
            ..fee_only()
        },
        RouteParams {
            max_hops: MAX_HOPS + 1,
            ..fee_only()
        },
        RouteParams {
            cost: CostModel {
                risk_factor: f64::NAN,
                ..CostModel::default()
            },
            ..fee_only()
        },
    ];
    for p in &bad {
        assert!(find_routes(&g, &none, &nid(1), &nid(3), Msat(1), p).is_err());
    }
    // An empty graph knows nobody.
    let empty = Graph::new();
    assert!(find_routes(&empty, &none, &nid(1), &nid(3), Msat(1), &p).is_err());
    // Amounts near u64::MAX overflow fees: no route, no panic.
    let r = find_routes(&g, &none, &nid(2), &nid(3), Msat(u64::MAX - 1), &p).unwrap();
    assert!(r.is_empty());
}

/// Route shape checks shared by the tests and the proptests.
fn check_route(g: &Graph, r: &Route, from: &NodeId, to: &NodeId, max_hops: usize) {
    assert!(!r.hops.is_empty() && r.hops.len() <= max_hops);
    let mut at = *from;
    let mut seen = vec![*from];
    let last = r.hops.len() - 1;
    for (i, h) in r.hops.iter().enumerate() {
        let a = g.node_index(&at).unwrap();
        let e = g.edge_from(h.scid, a).expect("hop follows a real edge");
        assert_eq!(g.node_id(g.edge(e).unwrap().destination), Some(&h.node));
        let closes_circle = i == last && from == to && h.node == *from;
        assert!(closes_circle || !seen.contains(&h.node), "loop at {:?}", h.node);
        seen.push(h.node);
        at = h.node;
    }
    assert_eq!(&at, to);
    // Recompute the fee with the plain BOLT 7 formula, from the destination back.
    let mut amt = r.amount.0;
    let mut fee_total = 0u64;
    for j in (0..r.hops.len()).rev() {
        assert_eq!(r.hops[j].amount.0, amt);
        if j > 0 {
            let a = g.node_index(&r.hops[j - 1].node).unwrap();
            let e = g.edge(g.edge_from(r.hops[j].scid, a).unwrap()).unwrap();
            let fee = e.fee_base.0 + (amt as u128 * e.fee_ppm as u128 / 1_000_000) as u64;
            assert_eq!(r.hops[j].fee.0, fee);
            fee_total += fee;
            amt += fee;
        }
    }
    assert_eq!(r.fee.0, fee_total);
    assert_eq!(r.amount_sent.0, r.amount.0 + fee_total);
}

/// Every simple path within `max_hops`, with its fee, cheapest first (ties by scids).
fn brute_force(
    g: &Graph,
    from: &NodeId,
    to: &NodeId,
    amount: u64,
    max_hops: usize,
    skip_nodes: &[NodeId],
    skip_scids: &[Scid],
) -> Vec<(u64, Vec<Scid>)> {
    fn dfs(
        g: &Graph,
        at: NodeIdx,
        to: NodeIdx,
        path: &mut Vec<EdgeIdx>,
        seen: &mut Vec<NodeIdx>,
        max: usize,
        out: &mut Vec<Vec<EdgeIdx>>,
    ) {
        if at == to {
            out.push(path.clone());
            return;
        }
        if path.len() == max {
            return;
        }
        for &e in g.out_edges(at) {
            let x = g.edge(e).unwrap();
            if !x.usable() || seen.contains(&x.destination) {
                continue;
            }
            path.push(e);
            seen.push(x.destination);
            dfs(g, x.destination, to, path, seen, max, out);
            seen.pop();
            path.pop();
        }
    }
    let (f, t) = (g.node_index(from).unwrap(), g.node_index(to).unwrap());
    let mut seen = vec![f];
    seen.extend(skip_nodes.iter().filter_map(|n| g.node_index(n)));
    let mut paths = Vec::new();
    dfs(g, f, t, &mut Vec::new(), &mut seen, max_hops, &mut paths);
    let mut out = Vec::new();
    'path: for p in paths {
        let mut amt = amount;
        for (j, &e) in p.iter().enumerate().rev() {
            let x = g.edge(e).unwrap();
            if skip_scids.contains(&x.scid) || amt < x.htlc_min.0 || amt > x.htlc_max.0 || amt > x.capacity.0
            {
                continue 'path;
            }
            if j > 0 {
                let Some(fee) = fee_for(x.fee_base, x.fee_ppm, Msat(amt)) else {
                    continue 'path;
                };
                amt += fee.0;
            }
        }
        let scids = p.iter().map(|&e| g.edge(e).unwrap().scid).collect();
        out.push((amt - amount, scids));
    }
    out.sort();
    out
}

/// Up to `N` nodes, dense enough that most queries have several routes.
const N: u8 = 6;

fn arb_graph() -> impl Strategy<Value = Vec<GraphEdge>> {
    let one = (
        1u8..=N,
        1u8..=N,
        0u64..3000,
        0u32..5000,
        1u32..150,
        0u64..4,
        any::<bool>(),
        0u8..10,
    );
    prop::collection::vec(one, 4..28).prop_map(|list| {
        let mut es = Vec::new();
        for (i, (a, b, base, ppm, cltv, maxk, both, dis)) in list.into_iter().enumerate() {
            if a == b {
                continue;
            }
            let mut e = edge(i as u32 + 1, a, b, base, ppm, cltv);
            // Some edges capped near typical test amounts, some disabled.
            e.htlc_max = Msat(maxk * 2_000_000);
            e.active = dis != 0;
            es.push(e.clone());
            if both {
                let mut r = edge(i as u32 + 1, b, a, base / 2, ppm / 2, cltv);
                r.htlc_max = e.htlc_max;
                es.push(r);
            }
        }
        es
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn routes_are_loop_free_connected_bounded_and_correctly_priced(
        es in arb_graph(),
        from in 1u8..=N,
        to in 1u8..=N,
        amount in 1u64..5_000_000,
        max_hops in 1usize..6,
        k in 1usize..6,
        excl in prop::option::of(1u8..=N),
    ) {
        let g = graph(&es);
        let to = if to == from { from % N + 1 } else { to };
        if g.node_index(&nid(from)).is_none() || g.node_index(&nid(to)).is_none() {
            return Ok(());
        }
        let skip: Vec<NodeId> = excl.filter(|&x| x != from && x != to).map(nid).into_iter().collect();
        let p = RouteParams { k, max_hops, exclude_nodes: skip.clone(), ..fee_only() };
        let rs = find_routes(&g, &BeliefView::empty(), &nid(from), &nid(to), Msat(amount), &p).unwrap();
        let mut keys = HashSet::new();
        for r in &rs {
            check_route(&g, r, &nid(from), &nid(to), max_hops);
            prop_assert!(keys.insert(route_scids(r)));
            prop_assert!(r.hops.iter().all(|h| !skip.contains(&h.node)));
        }
        for w in rs.windows(2) {
            prop_assert!(w[0].cost <= w[1].cost);
        }
        // With fee-only costs the search is exact: same k best fees as brute force.
        let brute = brute_force(&g, &nid(from), &nid(to), amount, max_hops, &skip, &[]);
        let want: Vec<u64> = brute.iter().take(k).map(|b| b.0).collect();
        let got: Vec<u64> = rs.iter().map(|r| r.fee.0).collect();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn circular_routes_never_touch_us_in_the_middle(
        es in arb_graph(),
        a in 2u8..=N,
        b in 2u8..=N,
        amount in 1u64..3_000_000,
        max_hops in 3usize..7,
        with_beliefs in any::<bool>(),
    ) {
        // Node 1 is us, with a channel to every other node.
        let mut es = es;
        for n in 2u8..=N {
            es.extend(chan(100 + n as u32, 1, n, 0, 0, 40));
        }
        let g = graph(&es);
        let req = circ(100 + a as u32, a, 100 + b as u32, b, amount);
        let mut p = RouteParams { k: 4, max_hops, ..RouteParams::default() };
        if !with_beliefs {
            p.cost = fee_only().cost;
        }
        let res = find_circular_routes(&g, &BeliefView::empty(), &req, &p);
        if a == b {
            prop_assert!(matches!(res, Err(RouteError::SamePeer(_))));
            return Ok(());
        }
        let rs = res.unwrap();
        for r in &rs {
            let n = r.hops.len();
            prop_assert!(n >= 3 && n <= max_hops);
            prop_assert_eq!(r.hops[0].scid, req.out_scid);
            prop_assert_eq!(r.hops[0].node, nid(a));
            prop_assert_eq!(r.hops[n - 1].scid, req.in_scid);
            prop_assert_eq!(r.hops[n - 1].node, nid(1));
            prop_assert_eq!(r.hops[n - 2].node, nid(b));
            let mut mids: Vec<NodeId> = r.hops[..n - 1].iter().map(|h| h.node).collect();
            prop_assert!(!mids.contains(&nid(1)));
            mids.sort();
            mids.dedup();
            prop_assert_eq!(mids.len(), n - 1);
            // Fees recomputed as the nodes will.
            check_route(&g, r, &nid(1), &nid(1), max_hops);
        }
        for w in rs.windows(2) {
            prop_assert!(w[0].cost <= w[1].cost);
        }
    }
}
