//! The graph search: a backwards Dijkstra from the destination that keeps a node's label
//! whenever it improves the hop count, so the hop limit is exact. One `Workspace` is reused
//! across Yen's many spur searches.

use super::params::MAX_HOPS;
use super::problem::Problem;
use crate::engine::graph::{fee_for, EdgeIdx, NodeIdx};
use crate::types::Msat;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

#[derive(Debug, Clone, Copy)]
struct Label {
    node: u32,
    /// Edge from `node` towards the destination; `NONE` on the seed.
    edge: u32,
    /// Label of the next node towards the destination; `NONE` on the seed.
    next: u32,
    /// Amount that must arrive at `node` (its own fee included).
    amount: u64,
    cost: u64,
    delay: u32,
    hops: u8,
}

const NONE: u32 = u32::MAX;

/// Orders labels by cost, then fewer hops, then creation order (for determinism).
fn heap_key(cost: u64, hops: u8, id: u32) -> u128 {
    (cost as u128) << 64 | (hops as u128) << 32 | id as u128
}

/// Per-search scratch, reset through `touched` so Yen's many spur searches don't each pay
/// for clearing whole-graph arrays.
pub(super) struct Workspace {
    best_hops: Vec<u8>,
    tent_cost: Vec<u64>,
    tent_hops: Vec<u8>,
    touched: Vec<u32>,
    labels: Vec<Label>,
    /// Keys pack (cost, hops, label) into one integer: one compare per heap step.
    heap: BinaryHeap<Reverse<u128>>,
}

impl Workspace {
    pub(super) fn new(n: usize) -> Workspace {
        Workspace {
            best_hops: vec![u8::MAX; n],
            tent_cost: vec![u64::MAX; n],
            tent_hops: vec![u8::MAX; n],
            touched: Vec::new(),
            labels: Vec::new(),
            heap: BinaryHeap::new(),
        }
    }

    fn reset(&mut self) {
        for &n in &self.touched {
            let i = n as usize;
            if let Some(x) = self.best_hops.get_mut(i) {
                *x = u8::MAX;
            }
            if let Some(x) = self.tent_cost.get_mut(i) {
                *x = u64::MAX;
            }
            if let Some(x) = self.tent_hops.get_mut(i) {
                *x = u8::MAX;
            }
        }
        self.touched.clear();
        self.labels.clear();
        self.heap.clear();
    }

    fn dominated(&self, node: u32, cost: u64, hops: u8) -> bool {
        let i = node as usize;
        match (self.tent_cost.get(i), self.tent_hops.get(i)) {
            (Some(&tc), Some(&th)) => cost >= tc && hops >= th,
            _ => true,
        }
    }

    fn push(&mut self, l: Label) {
        let i = l.node as usize;
        if let (Some(tc), Some(th)) = (self.tent_cost.get_mut(i), self.tent_hops.get_mut(i)) {
            if *tc == u64::MAX {
                self.touched.push(l.node);
            }
            // Dominated by a label already queued: no cheaper and no shorter.
            if l.cost >= *tc && l.hops >= *th {
                return;
            }
            // Only the cheapest queued label is remembered, with its own hop count, so
            // the test above is an exact dominance check, never a lossy one.
            if l.cost < *tc {
                *tc = l.cost;
                *th = l.hops;
            }
        }
        let Ok(id) = u32::try_from(self.labels.len()) else {
            return;
        };
        self.labels.push(l);
        self.heap.push(Reverse(heap_key(l.cost, l.hops, id)));
    }
}

impl Problem<'_> {
    /// The label where the middle search starts: the destination, or B after the forced
    /// hop back to us.
    fn seed(&self) -> Option<Label> {
        let mut l = Label {
            node: self.to.0,
            edge: NONE,
            next: NONE,
            amount: self.amount,
            cost: 0,
            delay: self.final_cltv,
            hops: 0,
        };
        if let Some(s) = self.suffix {
            let fee = fee_for(s.policy.base, s.policy.ppm, Msat(self.amount))?.0;
            l.cost = fee.saturating_add(self.risk(self.amount, s.policy.cltv));
            l.amount = self.amount.checked_add(fee)?;
            l.delay = self.final_cltv.checked_add(s.policy.cltv)?;
        }
        Some(l)
    }

    /// Cheapest path (as middle edges in forward order) from `target` to `self.to`, using
    /// at most `hop_budget` edges.
    pub(super) fn search(
        &mut self,
        target: NodeIdx,
        target_pays: bool,
        hop_budget: usize,
    ) -> Option<Vec<EdgeIdx>> {
        let seed = self.seed()?;
        let hop_budget = hop_budget.min(u8::MAX as usize - 1) as u8;
        if hop_budget == 0 {
            return None;
        }
        self.ws.reset();
        self.ws.push(seed);
        let graph = self.graph;
        let fee_cap = self
            .max_fee
            .and_then(|m| self.amount.checked_add(m))
            .unwrap_or(u64::MAX);

        while let Some(Reverse(key)) = self.ws.heap.pop() {
            let id = key as u32;
            let Some(&lab) = self.ws.labels.get(id as usize) else {
                continue;
            };
            let v = lab.node as usize;
            let Some(best) = self.ws.best_hops.get_mut(v) else {
                continue;
            };
            if lab.hops >= *best {
                continue;
            }
            *best = lab.hops;
            if lab.node == target.0 {
                return Some(self.path_from(id));
            }
            if lab.hops >= hop_budget {
                continue;
            }
            let amt = Msat(lab.amount);
            for edge in graph.in_edges_hot(NodeIdx(lab.node)) {
                let (e, u) = (edge.edge, edge.source);
                if !edge.usable || !edge.admits(amt) {
                    continue;
                }
                if self.edge_blocked.get(e.ix()).copied().unwrap_or(true) {
                    continue;
                }
                if self.node_blocked.get(u.ix()).copied().unwrap_or(true) {
                    continue;
                }
                let hops = lab.hops + 1;
                if self.ws.best_hops.get(u.ix()).is_none_or(|&b| hops >= b) {
                    continue;
                }
                let (amount, delay, fee_cost) = if u == target && target_pays {
                    (lab.amount, lab.delay, 0)
                } else {
                    let Some(fee) = fee_for(edge.fee_base, edge.fee_ppm, amt) else {
                        continue;
                    };
                    let (Some(a), Some(d)) = (
                        lab.amount.checked_add(fee.0),
                        lab.delay.checked_add(edge.cltv_delta),
                    ) else {
                        continue;
                    };
                    (a, d, fee.0.saturating_add(self.risk(lab.amount, edge.cltv_delta)))
                };
                if amount > fee_cap || delay > self.max_total_cltv {
                    continue;
                }
                // The probability term only adds cost: a label already dominated without it
                // is dropped before paying for the logarithm.
                let cost = lab.cost.saturating_add(fee_cost);
                if self.ws.dominated(u.0, cost, hops) {
                    continue;
                }
                let p = self.view.probability(e, edge.capacity, amt);
                if p <= 0.0 {
                    continue;
                }
                let cost = cost.saturating_add(self.prob_cost(p, lab.amount));
                self.ws.push(Label {
                    node: u.0,
                    edge: e.0,
                    next: id,
                    amount,
                    cost,
                    delay,
                    hops,
                });
            }
        }
        None
    }

    fn path_from(&self, mut id: u32) -> Vec<EdgeIdx> {
        let mut path = Vec::new();
        while let Some(l) = self.ws.labels.get(id as usize) {
            if l.edge == NONE || path.len() > MAX_HOPS {
                break;
            }
            path.push(EdgeIdx(l.edge));
            id = l.next;
        }
        path
    }
}
