//! The gossip graph, kept compact: node ids and scids are interned to `u32` indices, every
//! directed edge lives in one flat vector, and adjacency is a CSR index (offsets + edge
//! indices) in both directions.
//!
//! Routing walks the graph *backwards* from the destination, so the incoming index is the one
//! on the hot path; the outgoing one serves callers that look at a node's own channels.
//!
//! The graph is refreshed from the node's view on a timer. Policy changes, disables and
//! removals rewrite edges in place; only an edge that did not exist before invalidates the
//! adjacency index, which is then rebuilt once, on the next read (`OnceLock`), so a burst of
//! refreshes between two routing calls costs one rebuild.

use crate::node::GraphEdge;
use crate::types::{Msat, NodeId, Scid};
use std::collections::HashMap;
use std::sync::OnceLock;

/// Index of a node in a [`Graph`]; only meaningful for the graph that issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeIdx(pub u32);

/// Index of a directed edge in a [`Graph`]; only meaningful for the graph that issued it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EdgeIdx(pub u32);

impl NodeIdx {
    pub(crate) fn ix(self) -> usize {
        self.0 as usize
    }
}

impl EdgeIdx {
    pub(crate) fn ix(self) -> usize {
        self.0 as usize
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("graph too large: more than {0} nodes or edges")]
    TooLarge(u32),
}

/// One direction of a channel: the policy `source` applies when forwarding to `destination`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub scid: Scid,
    pub source: NodeIdx,
    pub destination: NodeIdx,
    /// BOLT 7 direction bit: 0 when `source` is the lexicographically smaller node id.
    pub direction: u8,
    pub fee_base: Msat,
    pub fee_ppm: u32,
    pub cltv_delta: u32,
    pub htlc_min: Msat,
    /// Never zero: an unset maximum is replaced by the capacity when loaded.
    pub htlc_max: Msat,
    pub capacity: Msat,
    /// The gossip `active` flag (the peer's disable bit, inverted).
    pub active: bool,
    /// Set when the edge vanished from the node's view; kept so indices stay stable.
    pub removed: bool,
    pub last_update: u32,
}

impl Edge {
    /// Whether routing may use this edge at all.
    pub fn usable(&self) -> bool {
        self.active && !self.removed
    }

    /// Whether the channel's own limits allow an HTLC of `amount` over this edge.
    pub(crate) fn admits(&self, amount: Msat) -> bool {
        amount >= self.htlc_min
            && amount <= self.htlc_max
            && (self.capacity.0 == 0 || amount <= self.capacity)
    }
}

/// `base + amount * ppm / 1_000_000`, rounded down as the forwarding node computes it.
pub(crate) fn fee_for(base: Msat, ppm: u32, amount: Msat) -> Option<Msat> {
    // This runs once per relaxed edge: the u64 path divides by a constant (a multiply),
    // while a u128 division is a library call, so take it only when u64 would overflow.
    let prop = match amount.0.checked_mul(ppm as u64) {
        Some(x) => x / 1_000_000,
        None => u64::try_from(amount.0 as u128 * ppm as u128 / 1_000_000).ok()?,
    };
    base.0.checked_add(prop).map(Msat)
}

/// What one call to [`Graph::apply_updates`] or [`Graph::upsert_edges`] changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct UpdateStats {
    pub added: usize,
    pub changed: usize,
    pub unchanged: usize,
    /// Edges absent from a full snapshot, now marked removed.
    pub removed: usize,
    /// Input edges refused: a scid seen before between other nodes, or a self-loop.
    pub rejected: usize,
}

/// The fields routing reads on every relaxation, copied next to each other in incoming
/// order: a node's incoming edges are then one sequential read instead of a cache miss per
/// edge into the big edge vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct InEdge {
    pub edge: EdgeIdx,
    pub source: NodeIdx,
    pub fee_ppm: u32,
    pub cltv_delta: u32,
    pub fee_base: Msat,
    pub htlc_min: Msat,
    /// The smaller of `htlc_max` and the capacity.
    pub max_amount: Msat,
    pub capacity: Msat,
    pub usable: bool,
}

impl InEdge {
    fn of(e: EdgeIdx, x: &Edge) -> InEdge {
        let cap = if x.capacity.0 == 0 { u64::MAX } else { x.capacity.0 };
        InEdge {
            edge: e,
            source: x.source,
            fee_ppm: x.fee_ppm,
            cltv_delta: x.cltv_delta,
            fee_base: x.fee_base,
            htlc_min: x.htlc_min,
            max_amount: Msat(x.htlc_max.0.min(cap)),
            capacity: x.capacity,
            usable: x.usable(),
        }
    }

    /// Same answer as [`Edge::admits`].
    pub(crate) fn admits(&self, amount: Msat) -> bool {
        amount >= self.htlc_min && amount <= self.max_amount
    }
}

#[derive(Debug, Clone, Default)]
struct Adjacency {
    out_off: Vec<u32>,
    out: Vec<EdgeIdx>,
    in_off: Vec<u32>,
    inc: Vec<EdgeIdx>,
    in_hot: Vec<InEdge>,
    /// Per edge: its position in `inc` / `in_hot`, to refresh the copy on policy updates.
    in_pos: Vec<u32>,
}

const NO_EDGE: u32 = u32::MAX;

#[derive(Debug, Clone, Default)]
pub struct Graph {
    nodes: Vec<NodeId>,
    node_ix: HashMap<NodeId, u32>,
    scids: Vec<Scid>,
    scid_ix: HashMap<Scid, u32>,
    /// Per interned scid: the edge index of direction 0 and 1, or `NO_EDGE`.
    chan_edges: Vec<[u32; 2]>,
    edges: Vec<Edge>,
    adj: OnceLock<Adjacency>,
}

// Leaves room for the `NO_EDGE` sentinel.
const MAX_ITEMS: u32 = u32::MAX - 1;

impl Graph {
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Builds a graph from both directions of every channel. Bad entries (self-loops, a
    /// scid reused between other nodes) are skipped; the last entry for a direction wins.
    pub fn from_edges(edges: &[GraphEdge]) -> Result<Graph, GraphError> {
        let mut g = Graph::new();
        g.nodes.reserve(edges.len() / 4);
        g.edges.reserve(edges.len());
        g.upsert_edges(edges)?;
        Ok(g)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Directed edges, removed ones included.
    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    pub fn channel_count(&self) -> usize {
        self.scids.len()
    }

    pub(crate) fn node_index(&self, id: &NodeId) -> Option<NodeIdx> {
        self.node_ix.get(id).map(|&i| NodeIdx(i))
    }

    pub fn node_id(&self, n: NodeIdx) -> Option<&NodeId> {
        self.nodes.get(n.ix())
    }

    pub fn edge(&self, e: EdgeIdx) -> Option<&Edge> {
        self.edges.get(e.ix())
    }

    pub fn edges(&self) -> &[Edge] {
        &self.edges
    }

    /// Both directions of a channel (index = direction bit).
    pub fn channel(&self, scid: Scid) -> [Option<EdgeIdx>; 2] {
        let Some(&c) = self.scid_ix.get(&scid) else {
            return [None, None];
        };
        let pair = self.chan_edges.get(c as usize).copied().unwrap_or([NO_EDGE; 2]);
        pair.map(|e| (e != NO_EDGE).then_some(EdgeIdx(e)))
    }

    /// The direction of `scid` that leaves `from`, if the graph has it.
    pub fn edge_from(&self, scid: Scid, from: NodeIdx) -> Option<EdgeIdx> {
        self.channel(scid)
            .into_iter()
            .flatten()
            .find(|&e| self.edges.get(e.ix()).is_some_and(|x| x.source == from))
    }

    /// Edges leaving `n`, ordered by scid.
    pub fn out_edges(&self, n: NodeIdx) -> &[EdgeIdx] {
        let a = self.adjacency();
        slice_of(&a.out_off, &a.out, n)
    }

    #[cfg(test)]
    /// Edges arriving at `n`, ordered by scid.
    pub(crate) fn in_edges(&self, n: NodeIdx) -> &[EdgeIdx] {
        let a = self.adjacency();
        slice_of(&a.in_off, &a.inc, n)
    }

    /// The routing-relevant data of the edges arriving at `n`, in `in_edges` order.
    pub(crate) fn in_edges_hot(&self, n: NodeIdx) -> &[InEdge] {
        let a = self.adjacency();
        let (Some(&lo), Some(&hi)) = (a.in_off.get(n.ix()), a.in_off.get(n.ix() + 1)) else {
            return &[];
        };
        a.in_hot.get(lo as usize..hi as usize).unwrap_or(&[])
    }

    /// Applies a full snapshot of the node's view: edges in it are added or rewritten in
    /// place, edges missing from it are marked removed (never deleted, so indices held by
    /// callers stay valid).
    pub(crate) fn apply_updates(&mut self, snapshot: &[GraphEdge]) -> Result<UpdateStats, GraphError> {
        let mut seen = vec![false; self.edges.len()];
        let mut stats = UpdateStats::default();
        for ge in snapshot {
            if let Some(e) = self.upsert_one(ge, &mut stats)? {
                if let Some(s) = seen.get_mut(e.ix()) {
                    *s = true;
                }
            }
        }
        for (i, (edge, was_seen)) in self.edges.iter_mut().zip(seen).enumerate() {
            if !was_seen && !edge.removed {
                edge.removed = true;
                stats.removed += 1;
                sync_hot(self.adj.get_mut(), EdgeIdx(i as u32), edge);
            }
        }
        Ok(stats)
    }

    /// Adds or rewrites the given edges and leaves every other edge alone: for partial
    /// news such as a `channel_update` carried in a routing failure.
    pub(crate) fn upsert_edges(&mut self, edges: &[GraphEdge]) -> Result<UpdateStats, GraphError> {
        let mut stats = UpdateStats::default();
        for ge in edges {
            self.upsert_one(ge, &mut stats)?;
        }
        Ok(stats)
    }

    #[cfg(test)]
    /// Marks both directions of the given channels removed (e.g. seen closing on chain).
    pub(crate) fn mark_removed(&mut self, scids: &[Scid]) -> usize {
        let mut n = 0;
        for &scid in scids {
            for e in self.channel(scid).into_iter().flatten() {
                if let Some(edge) = self.edges.get_mut(e.ix()) {
                    if !edge.removed {
                        edge.removed = true;
                        n += 1;
                        sync_hot(self.adj.get_mut(), e, edge);
                    }
                }
            }
        }
        n
    }

    fn upsert_one(&mut self, ge: &GraphEdge, stats: &mut UpdateStats) -> Result<Option<EdgeIdx>, GraphError> {
        if ge.source == ge.destination {
            stats.rejected += 1;
            return Ok(None);
        }
        let direction = u8::from(ge.source > ge.destination);
        // An unset maximum means "no limit beyond the channel"; storing the capacity keeps
        // the hot-path check to a plain comparison.
        let htlc_max = if ge.htlc_max.0 == 0 {
            if ge.capacity.0 == 0 {
                Msat(u64::MAX)
            } else {
                ge.capacity
            }
        } else {
            ge.htlc_max
        };

        if let Some(&c) = self.scid_ix.get(&ge.scid) {
            let pair = self.chan_edges.get(c as usize).copied().unwrap_or([NO_EDGE; 2]);
            let existing = pair[direction as usize];
            if existing != NO_EDGE {
                let Some(edge) = self.edges.get_mut(existing as usize) else {
                    stats.rejected += 1;
                    return Ok(None);
                };
                let same_ends = self.nodes.get(edge.source.ix()) == Some(&ge.source)
                    && self.nodes.get(edge.destination.ix()) == Some(&ge.destination);
                if !same_ends {
                    stats.rejected += 1;
                    return Ok(None);
                }
                let before = edge.clone();
                edge.fee_base = ge.fee_base;
                edge.fee_ppm = ge.fee_ppm;
                edge.cltv_delta = ge.cltv_delta;
                edge.htlc_min = ge.htlc_min;
                edge.htlc_max = htlc_max;
                edge.capacity = ge.capacity;
                edge.active = ge.active;
                edge.removed = false;
                edge.last_update = ge.last_update;
                if *edge == before {
                    stats.unchanged += 1;
                } else {
                    stats.changed += 1;
                    sync_hot(self.adj.get_mut(), EdgeIdx(existing), edge);
                }
                return Ok(Some(EdgeIdx(existing)));
            }
            // The other direction exists: this one must join the same two nodes.
            let other = pair[1 - direction as usize];
            if let Some(o) = self.edges.get(other as usize) {
                let ok = self.nodes.get(o.source.ix()) == Some(&ge.destination)
                    && self.nodes.get(o.destination.ix()) == Some(&ge.source);
                if !ok {
                    stats.rejected += 1;
                    return Ok(None);
                }
            }
        }

        let source = self.intern_node(&ge.source)?;
        let destination = self.intern_node(&ge.destination)?;
        let c = self.intern_scid(ge.scid)?;
        let idx = u32::try_from(self.edges.len())
            .ok()
            .filter(|&i| i < MAX_ITEMS)
            .ok_or(GraphError::TooLarge(MAX_ITEMS))?;
        self.edges.push(Edge {
            scid: ge.scid,
            source,
            destination,
            direction,
            fee_base: ge.fee_base,
            fee_ppm: ge.fee_ppm,
            cltv_delta: ge.cltv_delta,
            htlc_min: ge.htlc_min,
            htlc_max,
            capacity: ge.capacity,
            active: ge.active,
            removed: false,
            last_update: ge.last_update,
        });
        if let Some(pair) = self.chan_edges.get_mut(c as usize) {
            pair[direction as usize] = idx;
        }
        // Topology changed: the index is rebuilt on the next read, not per added edge.
        self.adj = OnceLock::new();
        stats.added += 1;
        Ok(Some(EdgeIdx(idx)))
    }

    fn intern_node(&mut self, id: &NodeId) -> Result<NodeIdx, GraphError> {
        if let Some(&i) = self.node_ix.get(id) {
            return Ok(NodeIdx(i));
        }
        let i = u32::try_from(self.nodes.len())
            .ok()
            .filter(|&i| i < MAX_ITEMS)
            .ok_or(GraphError::TooLarge(MAX_ITEMS))?;
        self.nodes.push(*id);
        self.node_ix.insert(*id, i);
        Ok(NodeIdx(i))
    }

    fn intern_scid(&mut self, scid: Scid) -> Result<u32, GraphError> {
        if let Some(&i) = self.scid_ix.get(&scid) {
            return Ok(i);
        }
        let i = u32::try_from(self.scids.len())
            .ok()
            .filter(|&i| i < MAX_ITEMS)
            .ok_or(GraphError::TooLarge(MAX_ITEMS))?;
        self.scids.push(scid);
        self.scid_ix.insert(scid, i);
        self.chan_edges.push([NO_EDGE; 2]);
        Ok(i)
    }

    fn adjacency(&self) -> &Adjacency {
        self.adj
            .get_or_init(|| build_adjacency(self.nodes.len(), &self.edges))
    }

    /// Approximate heap bytes held by the graph (vectors by capacity, hash maps by
    /// bucket count), for the operator's status output and the benchmark.
    pub fn memory_bytes(&self) -> usize {
        use std::mem::size_of;
        // hashbrown: one control byte per bucket plus the entry, ~8/7 load overhead.
        fn map<K, V>(m: &HashMap<K, V>) -> usize {
            m.capacity() * 8 / 7 * (size_of::<(K, V)>() + 1)
        }
        let adj = self.adj.get().map_or(0, |a| {
            (a.out_off.capacity() + a.in_off.capacity() + a.in_pos.capacity()) * size_of::<u32>()
                + (a.out.capacity() + a.inc.capacity()) * size_of::<EdgeIdx>()
                + a.in_hot.capacity() * size_of::<InEdge>()
        });
        self.nodes.capacity() * size_of::<NodeId>()
            + map(&self.node_ix)
            + self.scids.capacity() * size_of::<Scid>()
            + map(&self.scid_ix)
            + self.chan_edges.capacity() * size_of::<[u32; 2]>()
            + self.edges.capacity() * size_of::<Edge>()
            + adj
    }

    /// Builds the adjacency index now rather than on the first routing call, so its cost
    /// can be paid (and measured) where the caller chooses.
    pub fn prepare(&self) {
        self.adjacency();
    }
}

/// Keeps the hot copy of an edge in step with an in-place change (no-op before the
/// adjacency index exists).
fn sync_hot(adj: Option<&mut Adjacency>, e: EdgeIdx, edge: &Edge) {
    let Some(adj) = adj else { return };
    let Some(&pos) = adj.in_pos.get(e.ix()) else {
        return;
    };
    if let Some(h) = adj.in_hot.get_mut(pos as usize) {
        *h = InEdge::of(e, edge);
    }
}

fn slice_of<'a>(off: &[u32], items: &'a [EdgeIdx], n: NodeIdx) -> &'a [EdgeIdx] {
    let (Some(&a), Some(&b)) = (off.get(n.ix()), off.get(n.ix() + 1)) else {
        return &[];
    };
    items.get(a as usize..b as usize).unwrap_or(&[])
}

fn build_adjacency(n_nodes: usize, edges: &[Edge]) -> Adjacency {
    // Counting sort by node, then each node's run sorted by (scid, direction) so that route
    // tie-breaks do not depend on the order gossip arrived in.
    let csr = |key: &dyn Fn(&Edge) -> usize| -> (Vec<u32>, Vec<EdgeIdx>) {
        let mut off = vec![0u32; n_nodes + 1];
        for e in edges {
            if let Some(slot) = off.get_mut(key(e) + 1) {
                *slot += 1;
            }
        }
        for i in 0..n_nodes {
            off[i + 1] += off[i];
        }
        let mut fill = off.clone();
        let mut items = vec![EdgeIdx(0); edges.len()];
        for (i, e) in edges.iter().enumerate() {
            if let Some(pos) = fill.get_mut(key(e)) {
                if let Some(slot) = items.get_mut(*pos as usize) {
                    *slot = EdgeIdx(i as u32);
                }
                *pos += 1;
            }
        }
        for w in off.windows(2) {
            if let Some(run) = items.get_mut(w[0] as usize..w[1] as usize) {
                run.sort_unstable_by_key(|x| edges.get(x.ix()).map(|e| (e.scid, e.direction)));
            }
        }
        (off, items)
    };
    let (out_off, out) = csr(&|e| e.source.ix());
    let (in_off, inc) = csr(&|e| e.destination.ix());
    let mut in_pos = vec![u32::MAX; edges.len()];
    let mut in_hot = Vec::with_capacity(inc.len());
    for (pos, &e) in inc.iter().enumerate() {
        if let (Some(x), Some(slot)) = (edges.get(e.ix()), in_pos.get_mut(e.ix())) {
            *slot = pos as u32;
            in_hot.push(InEdge::of(e, x));
        }
    }
    Adjacency {
        out_off,
        out,
        in_off,
        inc,
        in_hot,
        in_pos,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn nid(i: u8) -> NodeId {
        let mut b = [0u8; 33];
        b[0] = 2;
        b[32] = i;
        NodeId(b)
    }

    pub fn scid(i: u32) -> Scid {
        Scid::new(700_000 + i, i, 0).expect("valid scid")
    }

    /// One direction with a given policy and a generous capacity.
    pub fn edge(s: u32, from: u8, to: u8, base: u64, ppm: u32, cltv: u32) -> GraphEdge {
        GraphEdge {
            scid: scid(s),
            source: nid(from),
            destination: nid(to),
            capacity: Msat(10_000_000_000),
            fee_base: Msat(base),
            fee_ppm: ppm,
            cltv_delta: cltv,
            htlc_min: Msat(1),
            htlc_max: Msat(0),
            active: true,
            last_update: 1,
        }
    }

    /// Both directions of a channel with the same policy.
    pub fn chan(s: u32, a: u8, b: u8, base: u64, ppm: u32, cltv: u32) -> [GraphEdge; 2] {
        [edge(s, a, b, base, ppm, cltv), edge(s, b, a, base, ppm, cltv)]
    }

    #[test]
    fn interns_and_indexes_both_directions() {
        let mut es = Vec::new();
        es.extend(chan(1, 1, 2, 1000, 1, 40));
        es.extend(chan(2, 2, 3, 0, 100, 40));
        let g = Graph::from_edges(&es).unwrap();
        assert_eq!((g.node_count(), g.edge_count(), g.channel_count()), (3, 4, 2));
        let n2 = g.node_index(&nid(2)).unwrap();
        assert_eq!(g.out_edges(n2).len(), 2);
        assert_eq!(g.in_edges(n2).len(), 2);
        let [d0, d1] = g.channel(scid(1));
        let (e0, e1) = (g.edge(d0.unwrap()).unwrap(), g.edge(d1.unwrap()).unwrap());
        assert_eq!(g.node_id(e0.source), Some(&nid(1)));
        assert_eq!(g.node_id(e1.source), Some(&nid(2)));
        // Unset maximum falls back to the capacity.
        assert_eq!(e0.htlc_max, Msat(10_000_000_000));
        assert!(g.out_edges(NodeIdx(99)).is_empty());
        assert!(g.edge(EdgeIdx(99)).is_none());
    }

    #[test]
    fn fee_math_is_bolt7_rounding_down() {
        assert_eq!(fee_for(Msat(1000), 1, Msat(1_000_000)), Some(Msat(1001)));
        assert_eq!(fee_for(Msat(0), 100, Msat(9_999)), Some(Msat(0)));
        assert_eq!(fee_for(Msat(0), 100, Msat(10_000)), Some(Msat(1)));
        assert_eq!(fee_for(Msat(5), 2500, Msat(123_456_789)), Some(Msat(5 + 308_641)));
        assert_eq!(fee_for(Msat(u64::MAX), 1, Msat(1_000_000)), None);
        // Past u64 in the product, still exact.
        assert_eq!(
            fee_for(Msat(0), 4_000_000, Msat(u64::MAX / 8)),
            Some(Msat(9_223_372_036_854_775_804))
        );
        assert_eq!(fee_for(Msat(0), u32::MAX, Msat(u64::MAX)), None);
    }

    #[test]
    fn rejects_self_loops_and_scid_reuse() {
        let mut es = vec![edge(1, 1, 1, 0, 0, 40)];
        es.extend(chan(2, 1, 2, 0, 0, 40));
        es.push(edge(2, 3, 4, 0, 0, 40));
        es.push(edge(2, 3, 1, 0, 0, 40));
        let mut g = Graph::new();
        let st = g.upsert_edges(&es).unwrap();
        assert_eq!(st.added, 2);
        assert_eq!(st.rejected, 3);
    }

    #[test]
    fn updates_in_place_and_rebuilds_only_for_new_edges() {
        let mut es = Vec::new();
        es.extend(chan(1, 1, 2, 1000, 1, 40));
        es.extend(chan(2, 2, 3, 0, 100, 40));
        let mut g = Graph::from_edges(&es).unwrap();
        g.prepare();
        let n2 = g.node_index(&nid(2)).unwrap();
        let before = g.in_edges(n2).as_ptr();

        // Same topology, new fee, one channel gone: no rebuild.
        let mut snap = vec![es[0].clone(), es[1].clone()];
        snap[0].fee_ppm = 7;
        let st = g.apply_updates(&snap).unwrap();
        assert_eq!((st.added, st.changed, st.unchanged, st.removed), (0, 1, 1, 2));
        assert_eq!(g.in_edges(n2).as_ptr(), before);
        let e = g.edge_from(scid(1), g.node_index(&nid(1)).unwrap()).unwrap();
        assert_eq!(g.edge(e).unwrap().fee_ppm, 7);
        let gone = g.edge_from(scid(2), n2).unwrap();
        assert!(!g.edge(gone).unwrap().usable());
        // The hot copies routing reads follow the in-place changes.
        let hot = g.in_edges_hot(n2);
        assert_eq!(hot.len(), g.in_edges(n2).len());
        let h = hot.iter().find(|h| h.edge == e).unwrap();
        assert_eq!(h.fee_ppm, 7);
        let n3 = g.node_index(&nid(3)).unwrap();
        assert!(!g.in_edges_hot(n3).iter().find(|h| h.edge == gone).unwrap().usable);

        // A new channel: adjacency now includes it.
        snap.extend(chan(3, 3, 1, 0, 0, 40));
        let st = g.apply_updates(&snap).unwrap();
        assert_eq!(st.added, 2);
        let n3 = g.node_index(&nid(3)).unwrap();
        assert_eq!(g.out_edges(n3).len(), 2);

        // The vanished channel comes back: re-enabled, not duplicated.
        snap.extend(chan(2, 2, 3, 0, 100, 40));
        let st = g.apply_updates(&snap).unwrap();
        assert_eq!(st.added, 0);
        assert!(g.edge(gone).unwrap().usable());
        assert_eq!(g.edge_count(), 6);
        assert_eq!(g.mark_removed(&[scid(3)]), 2);
    }

    #[test]
    fn adjacency_order_is_by_scid_not_input_order() {
        let mut a = Vec::new();
        a.extend(chan(3, 1, 2, 0, 0, 40));
        a.extend(chan(1, 1, 3, 0, 0, 40));
        a.extend(chan(2, 1, 4, 0, 0, 40));
        let g = Graph::from_edges(&a).unwrap();
        let n1 = g.node_index(&nid(1)).unwrap();
        let scids: Vec<Scid> = g.out_edges(n1).iter().map(|&e| g.edge(e).unwrap().scid).collect();
        assert_eq!(scids, vec![scid(1), scid(2), scid(3)]);
    }
}
