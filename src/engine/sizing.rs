//! How much to send along a route, from what we believe about its channels' liquidity.
//!
//! With each hop's liquidity uniform between its bounds (Pickhardt & Richter, "Optimally
//! Reliable & Cheap Payment Flows"), the chance that a route carries `a` is the product of
//! the hops' chances, and it falls as `a` grows. An attempt of the whole planned amount
//! over hops of similar size mostly fails and teaches only that it was too much. So a part
//! is sized to the largest amount the route carries with a target chance; when not even the
//! smallest part reaches a lower floor, no attempt is worth sending and the move stops early.
//!
//! One departure from the uniform distribution: for sizing, the liquidity between the bounds
//! is taken to sit more likely near either end of the channel than in its middle (density
//! proportional to `(x/capacity - 1/2)^2`, as LDK's probabilistic scorer assumes by default).
//! Payments that take the cheapest path drain channels one way and leave them so; the
//! simulator shows it (cheap hops next to our peers fail at a few thousand sat, a week
//! long), and mainnet probing studies found the same. The route search keeps the uniform
//! model: it only ranks routes, while sizing decides how much is risked on one.

use crate::engine::beliefs::{BeliefView, Liquidity};
use crate::engine::graph::Graph;
use crate::engine::route::Route;
use crate::types::{Msat, NodeId};

/// Bisection steps at most when sizing a part.
const SEARCH_STEPS: u32 = 40;

/// One uncertain hop of a route, as sizing sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HopLiquidity {
    pub liquidity: Liquidity,
    pub capacity: Msat,
    /// What the hop carries per msat delivered (1 plus the fees of the hops after it).
    pub scale: f64,
}

/// A part's size and its chance of getting through.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sizing {
    pub amount: Msat,
    pub probability: f64,
}

/// The uncertain hops of `route`, paid by `payer`, with their current bounds. With
/// `known_ends`, the first and last hop are the payer's own channels (a circular route),
/// whose liquidity the caller knows and checks, so they are left out. A hop the graph does
/// not know (a private channel) is left out too: there is nothing to believe about it.
pub(crate) fn route_liquidity(
    graph: &Graph,
    view: &BeliefView,
    payer: &NodeId,
    route: &Route,
    known_ends: bool,
) -> Vec<HopLiquidity> {
    let n = route.hops.len();
    let delivered = route.amount.0.max(1) as f64;
    let mut out = Vec::with_capacity(n);
    let mut from = *payer;
    for (i, h) in route.hops.iter().enumerate() {
        let skip = known_ends && (i == 0 || i + 1 == n);
        if !skip {
            let edge = graph
                .node_index(&from)
                .and_then(|ix| graph.edge_from(h.scid, ix))
                .and_then(|e| graph.edge(e).map(|x| (e, x)));
            if let Some((e, x)) = edge {
                out.push(HopLiquidity {
                    liquidity: view.liquidity(e, x.capacity),
                    capacity: x.capacity,
                    scale: h.amount.0 as f64 / delivered,
                });
            }
        }
        from = h.node;
    }
    out
}

/// The share of a channel's liquidity (as a fraction `t` of its capacity) that lies below
/// `t`, under the density `12 (t - 1/2)^2` on `[0, 1]`.
fn edge_cdf(t: f64) -> f64 {
    let d = t.clamp(0.0, 1.0) - 0.5;
    4.0 * d * d * d + 0.5
}

/// Chance that a hop with these bounds carries `amount`, with its liquidity more likely near
/// the ends of the channel than in the middle.
pub(crate) fn hop_probability(liquidity: Liquidity, capacity: Msat, amount: Msat) -> f64 {
    if amount <= liquidity.lower {
        return 1.0;
    }
    if amount > liquidity.upper {
        return 0.0;
    }
    let c = capacity.0.max(liquidity.upper.0).max(1) as f64;
    let (lo, hi) = (
        edge_cdf(liquidity.lower.0 as f64 / c),
        edge_cdf(liquidity.upper.0 as f64 / c),
    );
    if hi - lo < 1e-12 {
        // Bounds too close for the density to tell apart: uniform between them.
        return liquidity.probability(amount);
    }
    ((hi - edge_cdf(amount.0 as f64 / c)) / (hi - lo)).clamp(0.0, 1.0)
}

/// Chance that every hop carries its share of `amount` delivered.
pub fn probability(hops: &[HopLiquidity], amount: u64) -> f64 {
    hops.iter()
        .map(|h| {
            let carried = (amount as f64 * h.scale).ceil();
            hop_probability(h.liquidity, h.capacity, Msat(carried.min(u64::MAX as f64) as u64))
        })
        .product()
}

/// The largest amount within `min..=max` that the hops carry with chance at least `target`.
/// When not even `min` is that likely, `min` still is if its chance reaches `floor`; below
/// that (or with `min > max`) `None`: no part is worth an attempt on this route.
///
/// Why not the amount that moves the most in expectation (`a × P(a)`): an attempt is not
/// free even when it fails (it locks liquidity along its route while pending, loads other
/// nodes, and its failure teaches less than a success), and with liquidity likely at the
/// ends of channels `a × P(a)` peaks at bold amounts that mostly fail.
pub fn size(hops: &[HopLiquidity], min: u64, max: u64, target: f64, floor: f64) -> Option<Sizing> {
    if min == 0 || min > max {
        return None;
    }
    let at = |a: u64| Sizing {
        amount: Msat(a),
        probability: probability(hops, a),
    };
    let top = at(max);
    if top.probability >= target {
        return Some(top);
    }
    let bottom = at(min);
    if bottom.probability < target {
        return (bottom.probability >= floor).then_some(bottom);
    }
    // P falls as the amount grows: bisect between a likely `lo` and an unlikely `hi`, on a
    // log scale (parts range over orders of magnitude), to within a percent.
    let (mut lo, mut hi) = (min, max);
    for _ in 0..SEARCH_STEPS {
        if hi <= lo.saturating_add(lo / 100).saturating_add(1) {
            break;
        }
        let mid = ((lo as f64).ln() / 2.0 + (hi as f64).ln() / 2.0).exp() as u64;
        let mid = mid.clamp(lo + 1, hi - 1);
        if probability(hops, mid) >= target {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    Some(at(lo))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: u64 = 1_000_000;

    fn hop(lower: u64, upper: u64) -> HopLiquidity {
        HopLiquidity {
            liquidity: Liquidity {
                lower: Msat(lower),
                upper: Msat(upper),
            },
            capacity: Msat(CAP),
            scale: 1.0,
        }
    }

    #[test]
    fn liquidity_is_likelier_near_the_ends_of_a_channel() {
        let unknown = Liquidity::unknown(Msat(CAP));
        let p = |a: u64| hop_probability(unknown, Msat(CAP), Msat(a));
        assert_eq!(p(0), 1.0);
        assert_eq!(p(CAP + 1), 0.0);
        assert!((p(CAP / 2) - 0.5).abs() < 1e-9, "symmetric");
        // A tenth of the capacity: likelier than under the uniform model (0.9)? No: a
        // quarter of channels hold less than a tenth, so less likely.
        assert!(
            (p(CAP / 10) - (0.5 + 4.0 * 0.4f64.powi(3))).abs() < 1e-9,
            "{}",
            p(CAP / 10)
        );
        assert!(p(CAP / 10) < 0.9 && p(CAP / 10) > 0.7);
        // Bounds narrow it as before: certain below the lower, impossible above the upper.
        let known = Liquidity {
            lower: Msat(200_000),
            upper: Msat(300_000),
        };
        assert_eq!(hop_probability(known, Msat(CAP), Msat(200_000)), 1.0);
        assert_eq!(hop_probability(known, Msat(CAP), Msat(300_001)), 0.0);
        let mid = hop_probability(known, Msat(CAP), Msat(250_000));
        assert!(mid > 0.0 && mid < 1.0);
        // Bounds that meet: no division by nothing.
        let point = Liquidity {
            lower: Msat(500_000),
            upper: Msat(500_001),
        };
        assert!(hop_probability(point, Msat(CAP), Msat(500_001)).is_finite());
    }

    #[test]
    fn parts_are_as_large_as_the_target_chance_allows() {
        let s = size(&[hop(0, CAP)], 1_000, CAP, 0.5, 0.2).unwrap();
        // One unknown hop: half the mass lies below the middle.
        assert!((s.amount.0 as f64 - 500_000.0).abs() < 10_000.0, "{s:?}");
        assert!(s.probability >= 0.5, "{s:?}");
        let four = size(&[hop(0, CAP); 4], 1_000, CAP, 0.5, 0.2).unwrap();
        assert!(four.amount < s.amount && four.probability >= 0.5, "{four:?}");
        // Still a meaningful share of the channels, not a token amount.
        assert!(four.amount.0 > CAP / 25, "{four:?}");
        // A larger part would miss the target.
        assert!(probability(&[hop(0, CAP); 4], four.amount.0 * 102 / 100) < 0.5);
    }

    #[test]
    fn a_known_lower_bound_is_used_in_full() {
        // The channel surely has 600k: sending 600k is certain.
        let s = size(&[hop(600_000, CAP)], 10_000, 2_000_000, 0.9, 0.2).unwrap();
        assert!(s.amount.0 >= 600_000, "{s:?}");
        let capped = size(&[hop(600_000, CAP)], 10_000, 500_000, 0.9, 0.2).unwrap();
        assert_eq!(capped.amount.0, 500_000);
    }

    #[test]
    fn nothing_is_sized_below_the_floor() {
        // Known to hold less than the smallest part: no attempt.
        assert_eq!(size(&[hop(0, 5_000)], 10_000, CAP, 0.5, 0.01), None);
        // Unlikely at the smallest part: no attempt under a floor above its chance...
        let p = probability(&[hop(0, 15_000)], 10_000);
        assert_eq!(size(&[hop(0, 15_000)], 10_000, CAP, 0.5, p + 0.01), None);
        // ...and the smallest part under a floor below it.
        let s = size(&[hop(0, 15_000)], 10_000, CAP, 0.5, p - 0.01).unwrap();
        assert_eq!(s.amount.0, 10_000);
        assert_eq!(size(&[], 10, 5, 0.5, 0.0), None, "min above max");
        // No uncertain hop: the largest amount, surely.
        assert_eq!(
            size(&[], 10, 500, 0.9, 0.2),
            Some(Sizing {
                amount: Msat(500),
                probability: 1.0
            })
        );
    }

    #[test]
    fn fees_downstream_make_earlier_hops_carry_more() {
        let mut h = hop(0, CAP);
        h.scale = 2.0;
        assert!((probability(&[h], 250_000) - 0.5).abs() < 1e-3);
    }
}
