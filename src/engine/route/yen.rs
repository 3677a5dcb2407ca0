//! Yen's k shortest loop-free paths over the searched middle of the route, with Lawler's
//! pruning of spurs the parent path already explored.

use super::assembly::Route;
use super::problem::Problem;
use crate::engine::graph::{EdgeIdx, NodeIdx};
use crate::types::Scid;
use std::collections::HashSet;

/// A Yen candidate: cost, scid key for tie-breaks, middle path, evaluated route, and the
/// index where it deviates from the path it was derived from.
type Candidate = (u64, Vec<(Scid, u8)>, Vec<EdgeIdx>, Route, usize);

impl Problem<'_> {
    fn key(&self, middle: &[EdgeIdx]) -> Vec<(Scid, u8)> {
        middle
            .iter()
            .filter_map(|&e| self.graph.edge(e).map(|x| (x.scid, x.direction)))
            .collect()
    }

    /// Yen's k shortest loop-free paths over the middle part of the route.
    pub(super) fn k_routes(&mut self, k: usize) -> Vec<Route> {
        let budget = self.max_hops.saturating_sub(self.forced_hops());
        if budget == 0 {
            return Vec::new();
        }
        let from_pays = self.prefix.is_none();
        let Some(first) = self.search(self.from, from_pays, budget) else {
            return Vec::new();
        };
        let Some(route) = self.legs(&first).and_then(|l| self.evaluate(&l)) else {
            return Vec::new();
        };
        let mut accepted: Vec<(Vec<EdgeIdx>, Route, usize)> = vec![(first.clone(), route, 0)];
        let mut seen: HashSet<Vec<EdgeIdx>> = HashSet::new();
        seen.insert(first);
        let mut candidates: Vec<Candidate> = Vec::new();

        while accepted.len() < k {
            let (prev, dev) = accepted.last().map(|a| (a.0.clone(), a.2)).unwrap_or_default();
            // Lawler: spurs before the deviation point were explored with the parent path
            // and would only find candidates already known.
            for i in dev..prev.len() {
                let root = &prev[..i];
                let Some(spur) = self.graph.edge(prev[i]).map(|e| e.source) else {
                    continue;
                };
                // Edges that would rebuild an accepted path through this root.
                let mut blocked_edges = Vec::new();
                for (path, _, _) in &accepted {
                    if path.len() > i && path[..i] == *root {
                        blocked_edges.push(path[i]);
                    }
                }
                let root_nodes: Vec<NodeIdx> = root
                    .iter()
                    .filter_map(|&e| self.graph.edge(e).map(|x| x.source))
                    .collect();
                let prev_edge_state: Vec<bool> = blocked_edges
                    .iter()
                    .map(|e| self.edge_blocked.get(e.ix()).copied().unwrap_or(true))
                    .collect();
                let prev_node_state: Vec<bool> = root_nodes
                    .iter()
                    .map(|n| self.node_blocked.get(n.ix()).copied().unwrap_or(true))
                    .collect();
                for &e in &blocked_edges {
                    self.set_edge_blocked(e, true);
                }
                for &n in &root_nodes {
                    self.set_node_blocked(n, true);
                }

                let spur_path = self.search(spur, from_pays && i == 0, budget.saturating_sub(i));

                for (&e, &was) in blocked_edges.iter().zip(&prev_edge_state) {
                    self.set_edge_blocked(e, was);
                }
                for (&n, &was) in root_nodes.iter().zip(&prev_node_state) {
                    self.set_node_blocked(n, was);
                }

                let Some(spur_path) = spur_path else { continue };
                let mut cand = root.to_vec();
                cand.extend_from_slice(&spur_path);
                if !seen.insert(cand.clone()) {
                    continue;
                }
                if let Some(r) = self.legs(&cand).and_then(|l| self.evaluate(&l)) {
                    candidates.push((r.cost, self.key(&cand), cand, r, i));
                }
            }
            let best = candidates
                .iter()
                .enumerate()
                .min_by(|a, b| (a.1 .0, &a.1 .1).cmp(&(b.1 .0, &b.1 .1)))
                .map(|(i, _)| i);
            let Some(best) = best else { break };
            let (_, _, path, r, dev) = candidates.swap_remove(best);
            accepted.push((path, r, dev));
        }

        let mut out: Vec<(Vec<(Scid, u8)>, Route)> =
            accepted.into_iter().map(|(p, r, _)| (self.key(&p), r)).collect();
        out.sort_by(|a, b| (a.1.cost, &a.0).cmp(&(b.1.cost, &b.0)));
        out.into_iter().map(|(_, r)| r).collect()
    }
}
