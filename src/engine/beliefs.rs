//! What we have learned about where the liquidity sits in other people's channels.
//!
//! For each directed channel we keep bounds `[lower, upper]` on the amount its source can
//! forward: a payment that went through proves `lower >= amount`, one that failed at the
//! channel proves `upper < amount`. Between the bounds the liquidity is taken as uniformly
//! distributed (as in Pickhardt & Richter, "Optimally Reliable & Cheap Payment Flows"), which
//! gives the success probability of an amount in closed form.
//!
//! Balances move all the time, so knowledge decays: after one half-life the gap between a
//! bound and "unknown" (0 for the lower, the capacity for the upper) has halved. Time is
//! always passed in by the caller; nothing here reads a clock.

use crate::engine::graph::{Edge, EdgeIdx, Graph};
use crate::types::{Msat, Scid};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Six hours: long enough to remember a failure for the next few plans, short enough that
/// a channel blamed once is not shunned for the rest of the day.
pub(crate) const DEFAULT_HALFLIFE_SECS: u64 = 6 * 3600;

/// Below this fraction of its original strength a bound says nothing worth storing.
const FORGET_BELOW: f64 = 1.0 / 1024.0;

/// One direction of a channel, by BOLT 7 direction bit (0 = from the smaller node id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DirectedChannel {
    pub scid: Scid,
    pub direction: u8,
}

impl DirectedChannel {
    pub fn of(edge: &Edge) -> DirectedChannel {
        DirectedChannel {
            scid: edge.scid,
            direction: edge.direction,
        }
    }
}

/// Bounds as last recorded, before decay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bounds {
    pub lower: Msat,
    /// `None`: no failure seen, so the capacity is the only limit.
    pub upper: Option<Msat>,
    /// Unix seconds of the observation these bounds include.
    pub updated: u64,
}

/// Effective bounds at some instant, after decay and clamping to the capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Liquidity {
    pub lower: Msat,
    pub upper: Msat,
}

impl Liquidity {
    pub fn unknown(capacity: Msat) -> Liquidity {
        Liquidity {
            lower: Msat::ZERO,
            upper: capacity,
        }
    }

    /// Probability that the channel can forward `amount`, with the liquidity uniform over
    /// the integers in `[lower, upper]`.
    pub fn probability(&self, amount: Msat) -> f64 {
        if amount <= self.lower {
            return 1.0;
        }
        if amount > self.upper {
            return 0.0;
        }
        let span = (self.upper.0 - self.lower.0) as f64 + 1.0;
        let good = (self.upper.0 - amount.0) as f64 + 1.0;
        good / span
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "BeliefsRepr", into = "BeliefsRepr")]
pub struct Beliefs {
    halflife_secs: u64,
    entries: BTreeMap<DirectedChannel, Bounds>,
}

impl Default for Beliefs {
    fn default() -> Self {
        Beliefs::new(DEFAULT_HALFLIFE_SECS)
    }
}

impl Beliefs {
    pub fn new(halflife_secs: u64) -> Beliefs {
        Beliefs {
            halflife_secs,
            entries: BTreeMap::new(),
        }
    }

    pub(crate) fn set_halflife_secs(&mut self, secs: u64) {
        self.halflife_secs = secs;
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn raw(&self, ch: DirectedChannel) -> Option<&Bounds> {
        self.entries.get(&ch)
    }

    /// How much of a bound recorded at `then` still holds at `now`.
    fn retention(&self, then: u64, now: u64) -> f64 {
        let dt = now.saturating_sub(then);
        if dt == 0 {
            return 1.0;
        }
        if self.halflife_secs == 0 {
            return 0.0;
        }
        (-(dt as f64) / self.halflife_secs as f64).exp2()
    }

    fn decayed(&self, b: &Bounds, capacity: Msat, now: u64) -> Liquidity {
        let keep = self.retention(b.updated, now);
        // Rounded toward "unknown" on both sides, so decay never invents knowledge.
        let lower = ((b.lower.0.min(capacity.0) as f64) * keep).floor() as u64;
        let upper = match b.upper {
            None => capacity.0,
            Some(u) => {
                let gap = capacity.0.saturating_sub(u.0) as f64 * keep;
                capacity.0.saturating_sub(gap.floor() as u64)
            }
        };
        Liquidity {
            lower: Msat(lower.min(upper)),
            upper: Msat(upper),
        }
    }

    /// Current bounds for a directed channel of the given capacity.
    pub fn liquidity(&self, ch: DirectedChannel, capacity: Msat, now: u64) -> Liquidity {
        match self.entries.get(&ch) {
            None => Liquidity::unknown(capacity),
            Some(b) => self.decayed(b, capacity, now),
        }
    }

    pub fn probability(&self, ch: DirectedChannel, capacity: Msat, amount: Msat, now: u64) -> f64 {
        self.liquidity(ch, capacity, now).probability(amount)
    }

    /// `amount` went through `ch`: its source had at least that much.
    pub fn record_success(&mut self, ch: DirectedChannel, capacity: Msat, amount: Msat, now: u64) {
        let cur = self.current(ch, capacity, now);
        let lower = cur.lower.max(amount);
        // A success above an old failure means the old failure is stale.
        let upper = cur.upper.map(|u| u.max(lower));
        self.entries.insert(
            ch,
            Bounds {
                lower,
                upper,
                updated: now,
            },
        );
    }

    /// `amount` failed at `ch` for lack of liquidity: its source had less than that.
    pub fn record_failure(&mut self, ch: DirectedChannel, capacity: Msat, amount: Msat, now: u64) {
        let cur = self.current(ch, capacity, now);
        let upper = amount.saturating_sub(Msat(1));
        let upper = cur.upper.map_or(upper, |u| u.min(upper));
        // Fresh evidence beats an older lower bound that contradicts it.
        let lower = cur.lower.min(upper);
        self.entries.insert(
            ch,
            Bounds {
                lower,
                upper: Some(upper),
                updated: now,
            },
        );
    }

    /// `amount` went through `ch` and settled: its source had at least that much before,
    /// and now has exactly that much less, which the other direction gained. (A success
    /// that merely forwarded and was failed back later, as on the hops before a failure,
    /// is [`Beliefs::record_success`]: nothing moved.)
    pub(crate) fn record_settled(&mut self, ch: DirectedChannel, capacity: Msat, amount: Msat, now: u64) {
        let cur = self.current(ch, capacity, now);
        let had_lower = cur.lower.max(amount);
        // What it had is at most the capacity, or the (stale-checked) upper bound.
        let had_upper = cur.upper.map_or(capacity, |u| u.max(had_lower)).max(had_lower);
        self.entries.insert(
            ch,
            Bounds {
                lower: had_lower.saturating_sub(amount),
                upper: Some(had_upper.saturating_sub(amount)),
                updated: now,
            },
        );
        let back = DirectedChannel {
            scid: ch.scid,
            direction: ch.direction ^ 1,
        };
        let rev = self.current(back, capacity, now);
        let lower = Msat(rev.lower.0.saturating_add(amount.0).min(capacity.0));
        let upper = rev
            .upper
            .map(|u| Msat(u.0.saturating_add(amount.0).min(capacity.0)).max(lower));
        self.entries.insert(
            back,
            Bounds {
                lower,
                upper,
                updated: now,
            },
        );
    }

    /// Records one payment attempt along `hops` (each with its capacity and the amount it
    /// carried). With `failed_at = Some(i)`, hops before `i` forwarded (and were failed
    /// back: their liquidity is where it was) and hop `i` lacked the liquidity; later hops
    /// never saw the HTLC and teach nothing. With `None` the payment settled: every hop's
    /// liquidity moved by its amount.
    pub(crate) fn record_attempt(
        &mut self,
        hops: &[(DirectedChannel, Msat, Msat)],
        failed_at: Option<usize>,
        now: u64,
    ) {
        for (i, &(ch, capacity, amount)) in hops.iter().enumerate() {
            match failed_at {
                Some(f) if i == f => {
                    self.record_failure(ch, capacity, amount, now);
                    return;
                }
                Some(f) if i > f => return,
                Some(_) => self.record_success(ch, capacity, amount, now),
                None => self.record_settled(ch, capacity, amount, now),
            }
        }
    }

    /// Drops entries that have decayed to (nearly) nothing.
    pub(crate) fn prune(&mut self, now: u64) -> usize {
        let before = self.entries.len();
        let hl = self.halflife_secs;
        let probe = Beliefs::new(hl);
        self.entries
            .retain(|_, b| probe.retention(b.updated, now) >= FORGET_BELOW);
        before - self.entries.len()
    }

    /// The bounds as they stand at `now`, with "no upper bound" kept distinct from an upper
    /// bound that has decayed up to the capacity.
    fn current(&self, ch: DirectedChannel, capacity: Msat, now: u64) -> CurrentBounds {
        match self.entries.get(&ch) {
            None => CurrentBounds {
                lower: Msat::ZERO,
                upper: None,
            },
            Some(b) => {
                let l = self.decayed(b, capacity, now);
                CurrentBounds {
                    lower: l.lower,
                    upper: b.upper.map(|_| l.upper),
                }
            }
        }
    }

    /// Resolves every belief against `graph` once, so routing reads bounds by edge index
    /// instead of hashing a scid per relaxed edge.
    pub fn view(&self, graph: &Graph, now: u64) -> BeliefView {
        let mut view = BeliefView::default();
        if self.entries.is_empty() {
            return view;
        }
        view.slot = vec![u32::MAX; graph.edge_count()];
        for (ch, b) in &self.entries {
            let Some(e) = graph
                .channel(ch.scid)
                .get(ch.direction as usize)
                .copied()
                .flatten()
            else {
                continue;
            };
            let Some(edge) = graph.edge(e) else { continue };
            let liq = self.decayed(b, edge.capacity, now);
            view.set(e, liq);
        }
        view
    }
}

struct CurrentBounds {
    lower: Msat,
    upper: Option<Msat>,
}

/// Beliefs resolved to edge indices of one graph at one instant. An empty view means "know
/// nothing": every channel gets the uniform prior over its capacity.
#[derive(Debug, Clone, Default)]
pub struct BeliefView {
    slot: Vec<u32>,
    bounds: Vec<Liquidity>,
}

impl BeliefView {
    pub fn empty() -> BeliefView {
        BeliefView::default()
    }

    /// Overrides the bounds of one edge, e.g. with the exact balance of one of our own
    /// channels. Ignores an index outside the graph the view was built for.
    pub fn set(&mut self, e: EdgeIdx, liq: Liquidity) {
        if self.slot.is_empty() {
            return;
        }
        let Some(s) = self.slot.get_mut(e.ix()) else {
            return;
        };
        if let Some(b) = self.bounds.get_mut(*s as usize) {
            *b = liq;
        } else {
            *s = self.bounds.len() as u32;
            self.bounds.push(liq);
        }
    }

    #[cfg(test)]
    /// Like [`BeliefView::set`], sizing the view for `graph` first if it is still empty.
    pub(crate) fn set_for(&mut self, graph: &Graph, e: EdgeIdx, liq: Liquidity) {
        if self.slot.is_empty() {
            self.slot = vec![u32::MAX; graph.edge_count()];
        }
        self.set(e, liq);
    }

    pub fn liquidity(&self, e: EdgeIdx, capacity: Msat) -> Liquidity {
        match self.slot.get(e.ix()).and_then(|&s| self.bounds.get(s as usize)) {
            Some(l) => *l,
            None => Liquidity::unknown(capacity),
        }
    }

    pub fn probability(&self, e: EdgeIdx, capacity: Msat, amount: Msat) -> f64 {
        self.liquidity(e, capacity).probability(amount)
    }
}

#[derive(Serialize, Deserialize)]
struct BeliefsRepr {
    halflife_secs: u64,
    entries: Vec<EntryRepr>,
}

#[derive(Serialize, Deserialize)]
struct EntryRepr {
    scid: Scid,
    direction: u8,
    lower: Msat,
    upper: Option<Msat>,
    updated: u64,
}

impl From<BeliefsRepr> for Beliefs {
    fn from(r: BeliefsRepr) -> Beliefs {
        let mut b = Beliefs::new(r.halflife_secs);
        for e in r.entries {
            let ch = DirectedChannel {
                scid: e.scid,
                direction: e.direction & 1,
            };
            b.entries.insert(
                ch,
                Bounds {
                    lower: e.lower,
                    upper: e.upper,
                    updated: e.updated,
                },
            );
        }
        b
    }
}

impl From<Beliefs> for BeliefsRepr {
    fn from(b: Beliefs) -> BeliefsRepr {
        BeliefsRepr {
            halflife_secs: b.halflife_secs,
            entries: b
                .entries
                .into_iter()
                .map(|(ch, v)| EntryRepr {
                    scid: ch.scid,
                    direction: ch.direction,
                    lower: v.lower,
                    upper: v.upper,
                    updated: v.updated,
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::graph::tests::{chan, scid};

    const CAP: Msat = Msat(1_000_000);
    const H: u64 = 3600;

    fn ch(i: u32) -> DirectedChannel {
        DirectedChannel {
            scid: scid(i),
            direction: 0,
        }
    }

    #[test]
    fn uniform_prior_and_bounds() {
        let l = Liquidity::unknown(Msat(99));
        assert_eq!(l.probability(Msat(0)), 1.0);
        assert_eq!(l.probability(Msat(100)), 0.0);
        assert!((l.probability(Msat(50)) - 0.5).abs() < 1e-12);
        let l = Liquidity {
            lower: Msat(10),
            upper: Msat(19),
        };
        assert_eq!(l.probability(Msat(10)), 1.0);
        assert!((l.probability(Msat(15)) - 0.5).abs() < 1e-12);
        assert_eq!(l.probability(Msat(20)), 0.0);
    }

    #[test]
    fn success_and_failure_narrow_the_bounds() {
        let mut b = Beliefs::new(H);
        b.record_success(ch(1), CAP, Msat(300_000), 1000);
        assert_eq!(
            b.liquidity(ch(1), CAP, 1000),
            Liquidity {
                lower: Msat(300_000),
                upper: CAP
            }
        );
        assert_eq!(b.probability(ch(1), CAP, Msat(300_000), 1000), 1.0);
        b.record_failure(ch(1), CAP, Msat(600_000), 1000);
        assert_eq!(b.liquidity(ch(1), CAP, 1000).upper, Msat(599_999));
        assert_eq!(b.probability(ch(1), CAP, Msat(600_000), 1000), 0.0);
        let p = b.probability(ch(1), CAP, Msat(450_000), 1000);
        assert!((p - 0.5).abs() < 1e-5, "{p}");
        // A contradicting fresh failure wins over the older success.
        b.record_failure(ch(1), CAP, Msat(100_000), 1000);
        let l = b.liquidity(ch(1), CAP, 1000);
        assert_eq!((l.lower, l.upper), (Msat(99_999), Msat(99_999)));
        // Other channels are untouched.
        assert_eq!(b.liquidity(ch(2), CAP, 1000), Liquidity::unknown(CAP));
    }

    #[test]
    fn knowledge_decays_with_the_halflife() {
        let mut b = Beliefs::new(H);
        b.record_success(ch(1), CAP, Msat(400_000), 0);
        b.record_failure(ch(2), CAP, Msat(200_001), 0);
        assert_eq!(b.liquidity(ch(1), CAP, H).lower, Msat(200_000));
        assert_eq!(b.liquidity(ch(2), CAP, H).upper, Msat(600_000));
        assert_eq!(b.liquidity(ch(1), CAP, 2 * H).lower, Msat(100_000));
        // A clock that went backwards does not sharpen anything.
        assert_eq!(b.liquidity(ch(1), CAP, 0).lower, Msat(400_000));
        // Long after: back to the prior, and pruned.
        assert_eq!(b.liquidity(ch(1), CAP, 40 * H), Liquidity::unknown(CAP));
        assert_eq!(b.prune(H), 0);
        assert_eq!(b.prune(40 * H), 2);
        assert!(b.is_empty());
        // Zero half-life: nothing survives a second.
        let mut z = Beliefs::new(0);
        z.record_failure(ch(1), CAP, Msat(10), 5);
        assert_eq!(z.liquidity(ch(1), CAP, 5).upper, Msat(9));
        assert_eq!(z.liquidity(ch(1), CAP, 6).upper, CAP);
    }

    #[test]
    fn decayed_failure_is_tightened_not_reset_by_new_evidence() {
        let mut b = Beliefs::new(H);
        b.record_failure(ch(1), CAP, Msat(200_001), 0);
        // One half-life later the upper bound is 600k; a success at 100k keeps it.
        b.record_success(ch(1), CAP, Msat(100_000), H);
        let l = b.liquidity(ch(1), CAP, H);
        assert_eq!((l.lower, l.upper), (Msat(100_000), Msat(600_000)));
    }

    #[test]
    fn attempt_teaches_hops_up_to_the_failure() {
        let mut b = Beliefs::new(H);
        let hops = [
            (ch(1), CAP, Msat(5000)),
            (ch(2), CAP, Msat(4000)),
            (ch(3), CAP, Msat(3000)),
        ];
        b.record_attempt(&hops, Some(1), 7);
        assert_eq!(b.liquidity(ch(1), CAP, 7).lower, Msat(5000));
        assert_eq!(b.liquidity(ch(2), CAP, 7).upper, Msat(3999));
        assert!(b.raw(ch(3)).is_none());
        b.record_attempt(&hops, None, 8);
        // Settled: each hop had its amount and now has that much less; the way back gained it.
        let l = b.liquidity(ch(3), CAP, 8);
        assert_eq!((l.lower, l.upper), (Msat(0), Msat(CAP.0 - 3000)));
        let l = b.liquidity(ch(1), CAP, 8);
        assert_eq!((l.lower, l.upper), (Msat(0), Msat(CAP.0 - 5000)));
        let back = DirectedChannel {
            scid: scid(2),
            direction: 1,
        };
        assert_eq!(b.liquidity(back, CAP, 8).lower, Msat(4000));
    }

    #[test]
    fn a_settled_payment_moves_the_bounds_it_narrowed() {
        let mut b = Beliefs::new(H);
        // Known to hold 300k..=600k; 200k settles through it.
        b.record_success(ch(1), CAP, Msat(300_000), 0);
        b.record_failure(ch(1), CAP, Msat(600_001), 0);
        b.record_settled(ch(1), CAP, Msat(200_000), 0);
        let l = b.liquidity(ch(1), CAP, 0);
        assert_eq!((l.lower, l.upper), (Msat(100_000), Msat(400_000)));
        // The same amount again is no longer certain, as it was before the first settled.
        assert!(b.probability(ch(1), CAP, Msat(200_000), 0) < 1.0);
        // More than the whole capacity never makes the bounds cross or wrap.
        b.record_settled(ch(1), CAP, Msat(5_000_000), 0);
        let l = b.liquidity(ch(1), CAP, 0);
        assert!(l.lower <= l.upper, "{l:?}");
        let back = DirectedChannel {
            scid: scid(1),
            direction: 1,
        };
        let r = b.liquidity(back, CAP, 0);
        assert!(r.lower <= r.upper && r.upper <= CAP, "{r:?}");
    }

    #[test]
    fn serde_round_trip_and_view() {
        let mut b = Beliefs::new(H);
        b.record_failure(ch(1), CAP, Msat(500), 3);
        b.record_success(
            DirectedChannel {
                scid: scid(1),
                direction: 1,
            },
            CAP,
            Msat(700),
            3,
        );
        let json = serde_json::to_string(&b).unwrap();
        let back: Beliefs = serde_json::from_str(&json).unwrap();
        assert_eq!(back, b);

        let g = Graph::from_edges(&chan(1, 1, 2, 0, 0, 40)).unwrap();
        let v = b.view(&g, 3);
        let [d0, d1] = g.channel(scid(1));
        let (d0, d1) = (d0.unwrap(), d1.unwrap());
        assert_eq!(v.liquidity(d0, g.edge(d0).unwrap().capacity).upper, Msat(499));
        assert_eq!(v.liquidity(d1, g.edge(d1).unwrap().capacity).lower, Msat(700));
        let empty = BeliefView::empty();
        let p = empty.probability(d0, g.edge(d0).unwrap().capacity, Msat(1));
        assert!((p - (1.0 - 1.0 / 10_000_000_001.0)).abs() < 1e-15);
    }
}
