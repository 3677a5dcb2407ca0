//! The simulated network: nodes, channels with real per-direction balances, source-routed
//! payments that move those balances hop by hop (and fail where liquidity is short), and a
//! ledger per node so conservation can be checked to the msat.

use super::rng::Rng;
use crate::engine::graph::fee_for;
use crate::node::{Channel, ChannelState, GraphEdge, HtlcDirection, PeerPolicy, PendingHtlc};
use crate::types::{Msat, NodeId, PaymentHash, Scid};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// Longest route a simulated payer tries.
const MAX_HOPS: usize = 20;

/// 21 million bitcoin, in msat: no real channel or fee can exceed it.
const MAX_MSAT: u64 = 21_000_000 * 100_000_000 * 1_000;

#[derive(Debug, Clone)]
pub struct SimChannel {
    pub scid: Scid,
    /// The two ends; `balance[d]`, `fee[d]` and `cltv[d]` belong to `node[d]`.
    pub node: [u32; 2],
    pub capacity: u64,
    pub balance: [u64; 2],
    /// Offered by `node[d]` and not yet resolved (held HTLCs): out of `balance[d]`, not yet
    /// the other side's.
    pub locked: [u64; 2],
    /// `node[d]`'s policy for forwarding over this channel to the other end: (base, ppm).
    pub fee: [(u64, u32); 2],
    pub cltv: [u32; 2],
    /// Last liquidity failure seen in each direction: (unix seconds, amount). Payers avoid
    /// the direction for that amount or more for a while, as lightningd's and LND's
    /// mission control do (shared by all simulated payers).
    pub failed: [(u64, u64); 2],
    /// The peers are disconnected: the channel carries nothing and gossip shows it
    /// disabled until they reconnect.
    pub down: bool,
}

/// How long a liquidity failure keeps payers away from a channel direction.
pub(crate) const FAILURE_MEMORY_SECS: u64 = 1_800;

/// Per-node money flows, so each node's balance change can be explained exactly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Payment amounts delivered to this node as the final hop.
    pub received: u64,
    /// Payment amounts this node paid for (excluding fees).
    pub sent: u64,
    pub fees_paid: u64,
    pub fees_earned: u64,
}

/// One hop of a path: channel index and the direction it is used in (sender is `node[dir]`).
pub(crate) type PathHop = (u32, u8);

/// A payment that went through, or where it stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Amount carried by each hop, in path order.
    Done { amounts: Vec<u64> },
    /// Hop `at` lacked the liquidity (or refused the fee); nothing moved.
    Failed { at: usize },
}

#[derive(Debug, Clone)]
pub struct Network {
    pub ids: Vec<NodeId>,
    pub channels: Vec<SimChannel>,
    /// Per node: (channel, direction) pairs in which the node is the sender.
    pub adj: Vec<Vec<PathHop>>,
    pub by_scid: HashMap<Scid, u32>,
    pub ours: u32,
    pub ledger: Vec<Ledger>,
}

fn node_id(rng: &mut Rng, tag: u8) -> NodeId {
    let mut id = [0u8; 33];
    id[0] = 2 + (tag & 1);
    id[1..].copy_from_slice(&rng.bytes32());
    NodeId(id)
}

fn scid_of(i: usize) -> Scid {
    Scid::new(
        600_000 + (i / 2_000) as u32,
        (i % 2_000) as u32 + 1,
        (i % 3) as u16,
    )
    .expect("scid parts in range")
}

const CAPACITIES_SAT: [u64; 6] = [500_000, 1_000_000, 2_000_000, 5_000_000, 10_000_000, 16_000_000];
/// Advertised fee rates of other nodes: mostly cheap, a few expensive, as on mainnet.
const PPMS: [u32; 10] = [0, 1, 1, 5, 10, 20, 50, 100, 200, 500];

impl Network {
    fn empty(ids: Vec<NodeId>, ours: u32) -> Network {
        let n = ids.len();
        Network {
            ids,
            channels: Vec::new(),
            adj: vec![Vec::new(); n],
            by_scid: HashMap::new(),
            ours,
            ledger: vec![Ledger::default(); n],
        }
    }

    fn add_channel(&mut self, c: SimChannel) {
        let i = self.channels.len() as u32;
        self.adj[c.node[0] as usize].push((i, 0));
        self.adj[c.node[1] as usize].push((i, 1));
        self.by_scid.insert(c.scid, i);
        self.channels.push(c);
    }

    fn random_policy(rng: &mut Rng) -> (u64, u32) {
        let base = if rng.chance(0.3) { 1_000 } else { 0 };
        (base, PPMS[rng.below(PPMS.len() as u64) as usize])
    }

    /// A seeded random network of `nodes` nodes (ours is node 0), about three channels per
    /// node, connected, plus `our_channels` channels of ours with varied balances.
    pub fn generate(seed: u64, nodes: usize, our_channels: usize) -> Network {
        let mut rng = Rng::new(seed, 0xA11CE);
        let nodes = nodes.max(3);
        let ids: Vec<NodeId> = (0..nodes).map(|i| node_id(&mut rng, i as u8)).collect();
        let mut net = Network::empty(ids, 0);
        let mut pairs = std::collections::HashSet::new();
        let mut add = |net: &mut Network, rng: &mut Rng, a: u32, b: u32, ours: bool| {
            if a == b || !pairs.insert((a.min(b), a.max(b))) {
                return false;
            }
            let cap_sat = if ours {
                CAPACITIES_SAT[2 + rng.below(4) as usize]
            } else {
                CAPACITIES_SAT[rng.below(CAPACITIES_SAT.len() as u64) as usize]
            };
            let capacity = cap_sat * 1_000;
            // Our channels start anywhere from nearly empty to nearly full, so the
            // rebalancer and the fee policy have something to do from the first hour.
            let share = if ours { rng.range(5, 96) } else { rng.range(20, 81) };
            let local = capacity / 100 * share;
            let scid = scid_of(net.channels.len());
            let c = SimChannel {
                scid,
                node: [a, b],
                capacity,
                balance: [local, capacity - local],
                locked: [0, 0],
                fee: [Self::random_policy(rng), Self::random_policy(rng)],
                cltv: [40 + rng.below(4) as u32 * 20, 40 + rng.below(4) as u32 * 20],
                failed: [(0, 0); 2],
                down: false,
            };
            net.add_channel(c);
            true
        };
        // A spanning tree with preferential attachment (hubs emerge), then random extras.
        let mut ends: Vec<u32> = vec![1];
        for i in 2..nodes as u32 {
            let to = ends[rng.below(ends.len() as u64) as usize];
            add(&mut net, &mut rng, i, to, false);
            ends.push(i);
            ends.push(to);
        }
        let extra = nodes * 2;
        let mut tries = 0;
        let mut added = 0;
        while added < extra && tries < extra * 10 {
            tries += 1;
            let a = 1 + rng.below(nodes as u64 - 1) as u32;
            let b = ends[rng.below(ends.len() as u64) as usize];
            if add(&mut net, &mut rng, a, b, false) {
                ends.push(a);
                ends.push(b);
                added += 1;
            }
        }
        net.connect_ours(&mut rng, our_channels, &mut |net, rng, b| {
            add(net, rng, 0, b, true)
        });
        net
    }

    fn connect_ours(
        &mut self,
        rng: &mut Rng,
        count: usize,
        add: &mut dyn FnMut(&mut Network, &mut Rng, u32) -> bool,
    ) {
        // Peers picked in proportion to their channel count: ours is a routing node that
        // connects to well-connected nodes.
        let mut ends: Vec<u32> = Vec::new();
        for (i, a) in self.adj.iter().enumerate() {
            if i as u32 != self.ours {
                ends.extend(std::iter::repeat_n(i as u32, a.len().max(1)));
            }
        }
        let want = count.min(self.ids.len() - 1);
        let mut have = 0;
        let mut tries = 0;
        while have < want && tries < want * 50 {
            tries += 1;
            let b = ends[rng.below(ends.len() as u64) as usize];
            if add(self, rng, b) {
                have += 1;
            }
        }
    }

    /// A network from a `listchannels` dump, with our node added and connected to it.
    pub fn from_edges(seed: u64, edges: &[GraphEdge], our_channels: usize) -> Result<Network, String> {
        let mut rng = Rng::new(seed, 0xA11CE);
        let ours_id = node_id(&mut rng, 0);
        let mut index: HashMap<NodeId, u32> = HashMap::new();
        let mut ids = vec![ours_id];
        index.insert(ours_id, 0);
        let mut by_scid: std::collections::BTreeMap<Scid, Vec<&GraphEdge>> = Default::default();
        for e in edges {
            for n in [e.source, e.destination] {
                index.entry(n).or_insert_with(|| {
                    ids.push(n);
                    ids.len() as u32 - 1
                });
            }
            by_scid.entry(e.scid).or_default().push(e);
        }
        if ids.len() < 3 {
            return Err("the graph has fewer than two nodes".into());
        }
        let mut net = Network::empty(ids, 0);
        let mut pairs = std::collections::HashSet::new();
        let mut total_capacity = 0u64;
        for (scid, dirs) in by_scid {
            let first = dirs[0];
            let (a, b) = (index[&first.source], index[&first.destination]);
            // No channel holds more than all bitcoin, nor charges more: such entries in a
            // graph file are damage, and would overflow the network's msat totals.
            // The whole network holds no more than that either, so its totals fit a u64.
            let absurd = |m: u64| m > MAX_MSAT;
            if a == b
                || first.capacity.0 == 0
                || absurd(total_capacity.saturating_add(first.capacity.0))
                || dirs.iter().any(|e| absurd(e.fee_base.0))
            {
                continue;
            }
            total_capacity += first.capacity.0;
            pairs.insert((a.min(b), a.max(b)));
            let policy = |from: u32| {
                dirs.iter()
                    .find(|e| index[&e.source] == from)
                    .map(|e| ((e.fee_base.0, e.fee_ppm), e.cltv_delta))
            };
            let (pa, ca) = policy(a).unwrap_or(((1_000, 100), 40));
            let (pb, cb) = policy(b).unwrap_or(((1_000, 100), 40));
            let capacity = first.capacity.0;
            let local = capacity / 100 * rng.range(20, 81);
            net.add_channel(SimChannel {
                scid,
                node: [a, b],
                capacity,
                balance: [local, capacity - local],
                locked: [0, 0],
                fee: [pa, pb],
                cltv: [ca, cb],
                failed: [(0, 0); 2],
                down: false,
            });
        }
        let mut next = net.channels.len();
        net.connect_ours(&mut rng, our_channels, &mut |net, rng, b| {
            if !pairs.insert((0, b)) {
                return false;
            }
            // Scids of our channels come after the dump's, in a block no dump uses.
            let scid = Scid::new(16_000_000, next as u32 % 16_000_000, 0).expect("in range");
            next += 1;
            let capacity = CAPACITIES_SAT[2 + rng.below(4) as usize] * 1_000;
            let local = capacity / 100 * rng.range(5, 96);
            net.add_channel(SimChannel {
                scid,
                node: [0, b],
                capacity,
                balance: [local, capacity - local],
                locked: [0, 0],
                fee: [Self::random_policy(rng), Self::random_policy(rng)],
                cltv: [40, 40],
                failed: [(0, 0); 2],
                down: false,
            });
            true
        });
        Ok(net)
    }

    /// What each node owns: its balances plus what it has offered and not yet resolved.
    pub(crate) fn wealth(&self) -> Vec<u64> {
        let mut w = vec![0u64; self.ids.len()];
        for c in &self.channels {
            for d in 0..2 {
                w[c.node[d] as usize] += c.balance[d] + c.locked[d];
            }
        }
        w
    }

    pub fn total_capacity(&self) -> u64 {
        self.channels.iter().map(|c| c.capacity).sum()
    }

    /// Our channels as the node reports them (`listpeerchannels` in the plugin).
    pub fn our_channels(&self, htlcs: &HashMap<u32, Vec<PendingHtlc>>) -> Vec<Channel> {
        self.adj[self.ours as usize]
            .iter()
            .map(|&(ci, d)| {
                let c = &self.channels[ci as usize];
                let o = 1 - d as usize;
                let d = d as usize;
                Channel {
                    scid: Some(c.scid),
                    peer: self.ids[c.node[o] as usize],
                    peer_connected: !c.down,
                    state: ChannelState::Normal,
                    raw_state: "CHANNELD_NORMAL".into(),
                    capacity: Msat(c.capacity),
                    local: Msat(c.balance[d] + c.locked[d]),
                    remote: Msat(c.balance[o] + c.locked[o]),
                    spendable: Msat(c.balance[d]),
                    receivable: Msat(c.balance[o]),
                    htlcs: htlcs.get(&ci).cloned().unwrap_or_default(),
                    fee_base: Msat(c.fee[d].0),
                    fee_ppm: c.fee[d].1,
                    remote_policy: Some(PeerPolicy {
                        fee_base: Msat(c.fee[o].0),
                        fee_ppm: c.fee[o].1,
                        cltv_delta: c.cltv[o],
                    }),
                    private: false,
                }
            })
            .collect()
    }

    /// The public graph, both directions of every channel (`listchannels`).
    pub fn graph_edges(&self) -> Vec<GraphEdge> {
        let mut out = Vec::with_capacity(self.channels.len() * 2);
        for c in &self.channels {
            for d in 0..2 {
                out.push(GraphEdge {
                    scid: c.scid,
                    source: self.ids[c.node[d] as usize],
                    destination: self.ids[c.node[1 - d] as usize],
                    capacity: Msat(c.capacity),
                    fee_base: Msat(c.fee[d].0),
                    fee_ppm: c.fee[d].1,
                    cltv_delta: c.cltv[d],
                    htlc_min: Msat(1),
                    htlc_max: Msat(c.capacity),
                    active: !c.down,
                    last_update: 0,
                });
            }
        }
        out
    }

    /// The cheapest path by advertised fees (balances are private, as for a real payer),
    /// avoiding `exclude`d directions and those that recently failed for this amount (at
    /// `now`). `None` when the payee is unreachable.
    pub(crate) fn find_path(
        &self,
        from: u32,
        to: u32,
        amount: u64,
        exclude: &[PathHop],
        now: u64,
    ) -> Option<Vec<PathHop>> {
        // Dijkstra from the payee back to the payer, so each hop's fee is priced on the
        // amount it will carry (approximately: the destination amount).
        let n = self.ids.len();
        let mut dist = vec![u64::MAX; n];
        let mut hops = vec![0u8; n];
        let mut next: Vec<Option<PathHop>> = vec![None; n];
        let mut heap = BinaryHeap::new();
        dist[to as usize] = 0;
        heap.push(Reverse((0u64, to)));
        while let Some(Reverse((d, v))) = heap.pop() {
            if d > dist[v as usize] {
                continue;
            }
            if v == from {
                break;
            }
            if hops[v as usize] as usize >= MAX_HOPS {
                continue;
            }
            // Edges into v: for each channel of v, the other end u sends to v.
            for &(ci, dv) in &self.adj[v as usize] {
                let c = &self.channels[ci as usize];
                let du = 1 - dv;
                let u = c.node[du as usize];
                let (failed_at, failed_amount) = c.failed[du as usize];
                let recently_failed = failed_at > 0
                    && now.saturating_sub(failed_at) < FAILURE_MEMORY_SECS
                    && amount >= failed_amount;
                if c.down || c.capacity < amount || recently_failed || exclude.contains(&(ci, du)) {
                    continue;
                }
                // The payer pays no fee on its own first hop; everyone else charges theirs.
                let fee = if u == from {
                    0
                } else {
                    let (b, p) = c.fee[du as usize];
                    fee_for(Msat(b), p, Msat(amount)).map_or(u64::MAX / 4, |m| m.0)
                };
                // A small per-hop cost keeps equal-fee paths short.
                let nd = d.saturating_add(fee).saturating_add(10);
                if nd < dist[u as usize] {
                    dist[u as usize] = nd;
                    hops[u as usize] = hops[v as usize] + 1;
                    next[u as usize] = Some((ci, du));
                    heap.push(Reverse((nd, u)));
                }
            }
        }
        if dist[from as usize] == u64::MAX {
            return None;
        }
        let mut path = Vec::new();
        let mut at = from;
        while at != to {
            let hop = next[at as usize]?;
            path.push(hop);
            let c = &self.channels[hop.0 as usize];
            at = c.node[1 - hop.1 as usize];
            if path.len() > MAX_HOPS {
                return None;
            }
        }
        Some(path)
    }

    /// Amount each hop must carry for `amount` to arrive: each forwarder charges its fee on
    /// what it sends on.
    pub(crate) fn hop_amounts(&self, path: &[PathHop], amount: u64) -> Vec<u64> {
        let mut amounts = vec![0u64; path.len()];
        let mut carry = amount;
        for i in (0..path.len()).rev() {
            amounts[i] = carry;
            if i > 0 {
                let (ci, d) = path[i];
                let (b, p) = self.channels[ci as usize].fee[d as usize];
                carry = carry.saturating_add(fee_for(Msat(b), p, Msat(carry)).map_or(0, |m| m.0));
            }
        }
        amounts
    }

    /// Sends along `path` with the given per-hop amounts. Each forwarder checks that what it
    /// keeps covers its current fee. With `hold`, the HTLCs stay locked until
    /// [`Network::resolve`]; otherwise the payment settles at once.
    pub fn send(&mut self, path: &[PathHop], amounts: &[u64], hold: bool) -> Sent {
        for (i, &(ci, d)) in path.iter().enumerate() {
            let c = &self.channels[ci as usize];
            if c.down || c.balance[d as usize] < amounts[i] {
                return Sent::Failed { at: i };
            }
            if i > 0 {
                let (b, p) = c.fee[d as usize];
                let need = fee_for(Msat(b), p, Msat(amounts[i])).map_or(u64::MAX, |m| m.0);
                if amounts[i - 1] < amounts[i] || amounts[i - 1] - amounts[i] < need {
                    return Sent::Failed { at: i };
                }
            }
        }
        for (i, &(ci, d)) in path.iter().enumerate() {
            let c = &mut self.channels[ci as usize];
            c.balance[d as usize] -= amounts[i];
            if hold {
                c.locked[d as usize] += amounts[i];
            } else {
                c.balance[1 - d as usize] += amounts[i];
            }
        }
        if !hold {
            self.book(path, amounts);
        }
        Sent::Done {
            amounts: amounts.to_vec(),
        }
    }

    /// Settles (`settle`) or fails back held HTLCs along `path`.
    pub fn resolve(&mut self, path: &[PathHop], amounts: &[u64], settle: bool) {
        for (i, &(ci, d)) in path.iter().enumerate() {
            let c = &mut self.channels[ci as usize];
            c.locked[d as usize] -= amounts[i];
            if settle {
                c.balance[1 - d as usize] += amounts[i];
            } else {
                c.balance[d as usize] += amounts[i];
            }
        }
        if settle {
            self.book(path, amounts);
        }
    }

    fn book(&mut self, path: &[PathHop], amounts: &[u64]) {
        let (Some(&first), Some(&last)) = (path.first(), path.last()) else {
            return;
        };
        let payer = self.channels[first.0 as usize].node[first.1 as usize];
        let payee = self.channels[last.0 as usize].node[1 - last.1 as usize];
        let delivered = amounts[amounts.len() - 1];
        self.ledger[payer as usize].sent += delivered;
        self.ledger[payer as usize].fees_paid += amounts[0] - delivered;
        self.ledger[payee as usize].received += delivered;
        for i in 1..path.len() {
            let fwd = self.channels[path[i].0 as usize].node[path[i].1 as usize];
            self.ledger[fwd as usize].fees_earned += amounts[i - 1] - amounts[i];
        }
    }

    pub(crate) fn hop_from(&self, hop: PathHop) -> u32 {
        self.channels[hop.0 as usize].node[hop.1 as usize]
    }

    /// Sets our fee on our side of `scid`; false when it is not our channel.
    pub(crate) fn set_our_fee(&mut self, scid: Scid, base: u64, ppm: u32) -> bool {
        let Some(&ci) = self.by_scid.get(&scid) else {
            return false;
        };
        let c = &mut self.channels[ci as usize];
        let Some(d) = c.node.iter().position(|&n| n == self.ours) else {
            return false;
        };
        c.fee[d] = (base, ppm);
        true
    }

    /// Our side of one of our channels as (local, capacity).
    pub(crate) fn our_side(&self, ci: u32) -> (u64, u64) {
        let c = &self.channels[ci as usize];
        let d = if c.node[0] == self.ours { 0 } else { 1 };
        (c.balance[d] + c.locked[d], c.capacity)
    }
}

/// A pending HTLC on one of our channels, as `listpeerchannels` would show it.
pub(crate) fn held_htlc(id: u64, amount: u64, expiry: u32, hash: PaymentHash) -> PendingHtlc {
    htlc(HtlcDirection::In, id, amount, expiry, hash)
}

pub fn htlc(direction: HtlcDirection, id: u64, amount: u64, expiry: u32, hash: PaymentHash) -> PendingHtlc {
    PendingHtlc {
        direction,
        id,
        amount: Msat(amount),
        expiry,
        payment_hash: hash,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_network_is_connected_and_payments_conserve_msat() {
        let mut net = Network::generate(1, 50, 12);
        assert_eq!(net.adj[0].len(), 12);
        let total = net.total_capacity();
        let before = net.wealth();
        let mut ok = 0;
        for i in 1..50u32 {
            let to = 1 + (i * 7) % 49;
            if to == i {
                continue;
            }
            let Some(path) = net.find_path(i, to, 50_000_000, &[], 1) else {
                panic!("node {i} cannot reach {to}")
            };
            let amounts = net.hop_amounts(&path, 50_000_000);
            if let Sent::Done { .. } = net.send(&path, &amounts, false) {
                ok += 1;
            }
        }
        assert!(ok > 10, "{ok}");
        let after = net.wealth();
        assert_eq!(after.iter().sum::<u64>(), total);
        for (n, l) in net.ledger.iter().enumerate() {
            let delta = after[n] as i128 - before[n] as i128;
            let expect = l.received as i128 - l.sent as i128 - l.fees_paid as i128 + l.fees_earned as i128;
            assert_eq!(delta, expect, "node {n}");
        }
    }

    #[test]
    fn absurd_amounts_in_a_graph_file_are_left_out_not_overflowed() {
        let node = |b: u8| {
            let key = bitcoin::secp256k1::SecretKey::from_slice(&[b; 32]).unwrap();
            NodeId(
                bitcoin::secp256k1::PublicKey::from_secret_key(&bitcoin::secp256k1::Secp256k1::new(), &key)
                    .serialize(),
            )
        };
        let edge = |block: u32, a: u8, b: u8, capacity: u64, fee_base: u64| GraphEdge {
            scid: Scid::new(block, 0, 0).unwrap(),
            source: node(a),
            destination: node(b),
            capacity: Msat(capacity),
            fee_base: Msat(fee_base),
            fee_ppm: 10,
            cltv_delta: 40,
            htlc_min: Msat(1),
            htlc_max: Msat(capacity),
            active: true,
            last_update: 0,
        };
        let edges = vec![
            edge(1, 1, 2, 1 << 63, 1_000),
            edge(2, 2, 3, 1 << 63, 1_000),
            edge(3, 1, 3, 5_000_000_000, u64::MAX),
            edge(4, 1, 3, 5_000_000_000, 1_000),
            edge(5, 2, 3, 5_000_000_000, 1_000),
        ];
        let net = Network::from_edges(1, &edges, 2).unwrap();
        // Only the two sane channels of the file (plus ours) remain; totals are exact.
        let theirs = net
            .channels
            .iter()
            .filter(|c| c.node[0] != 0 && c.node[1] != 0)
            .count();
        assert_eq!(theirs, 2);
        assert_eq!(net.wealth().iter().sum::<u64>(), net.total_capacity());
    }
}
