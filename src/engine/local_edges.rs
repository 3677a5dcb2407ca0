//! Our own channels, merged into the gossip graph from what the node itself knows.
//!
//! Gossip lags: a channel is announced six blocks after it confirms and reaches our own
//! `listchannels` later still, and a private channel never does. Yet the node knows every
//! channel of its own at once (`listpeerchannels`), with our fee and the fee the peer sent
//! us. So the graph ballast routes over always carries our channels as the node sees them:
//! a rebalance between channels opened minutes ago finds both ends.

use crate::node::{Channel, ChannelState, GraphEdge};
use crate::types::{Msat, NodeId};
use std::collections::HashSet;

/// `gossip` with our channels' edges replaced (or added) from `channels`. Our direction
/// always comes from the node; the peer's from the policy it sent us, or gossip's when it
/// has sent none yet. Channels that cannot carry a payment (opening, closing) add nothing,
/// and their gossip edges are left as gossip has them.
pub(crate) fn merge_local(
    mut gossip: Vec<GraphEdge>,
    ours: NodeId,
    channels: &[Channel],
    now: u64,
) -> Vec<GraphEdge> {
    let stamp = u32::try_from(now).unwrap_or(u32::MAX);
    let mut local = Vec::new();
    let mut replaced = HashSet::new();
    for c in channels.iter().filter(|c| c.state == ChannelState::Normal) {
        let Some(scid) = c.scid else { continue };
        if c.peer == ours {
            continue;
        }
        let active = c.peer_connected;
        // Our direction: the first hop, which charges nothing, so only capacity and
        // liveness matter; what we can send now is checked against `spendable` elsewhere.
        local.push(GraphEdge {
            scid,
            source: ours,
            destination: c.peer,
            capacity: c.capacity,
            fee_base: c.fee_base,
            fee_ppm: c.fee_ppm,
            cltv_delta: 0,
            htlc_min: Msat(0),
            htlc_max: Msat(0),
            active,
            last_update: stamp,
        });
        replaced.insert((scid, ours));
        if let Some(p) = c.remote_policy {
            local.push(GraphEdge {
                scid,
                source: c.peer,
                destination: ours,
                capacity: c.capacity,
                fee_base: p.fee_base,
                fee_ppm: p.fee_ppm,
                cltv_delta: p.cltv_delta,
                htlc_min: Msat(0),
                htlc_max: Msat(0),
                active,
                last_update: stamp,
            });
            replaced.insert((scid, c.peer));
        }
    }
    gossip.retain(|e| !replaced.contains(&(e.scid, e.source)));
    gossip.extend(local);
    gossip
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::PeerPolicy;
    use crate::types::Scid;

    fn channel(scid: u32, peer: u8, remote: Option<PeerPolicy>) -> Channel {
        Channel {
            scid: Some(Scid::new(scid, 1, 0).unwrap()),
            peer: NodeId([peer; 33]),
            peer_connected: true,
            state: ChannelState::Normal,
            raw_state: "CHANNELD_NORMAL".into(),
            capacity: Msat(1_000_000_000),
            local: Msat(500_000_000),
            remote: Msat(500_000_000),
            spendable: Msat(490_000_000),
            receivable: Msat(490_000_000),
            htlcs: vec![],
            fee_base: Msat(1000),
            fee_ppm: 10,
            remote_policy: remote,
            private: false,
        }
    }

    fn edge(scid: u32, from: u8, to: u8, ppm: u32) -> GraphEdge {
        GraphEdge {
            scid: Scid::new(scid, 1, 0).unwrap(),
            source: NodeId([from; 33]),
            destination: NodeId([to; 33]),
            capacity: Msat(1_000_000_000),
            fee_base: Msat(1000),
            fee_ppm: ppm,
            cltv_delta: 6,
            htlc_min: Msat(0),
            htlc_max: Msat(0),
            active: true,
            last_update: 1,
        }
    }

    #[test]
    fn our_channels_are_in_the_graph_before_gossip_has_them() {
        let me = NodeId([1; 33]);
        let remote = PeerPolicy {
            fee_base: Msat(0),
            fee_ppm: 77,
            cltv_delta: 40,
        };
        let gossip = vec![
            edge(10, 2, 3, 5),   // someone else's channel: untouched
            edge(11, 1, 2, 999), // ours, stale fee in gossip
            edge(11, 2, 1, 999),
            edge(12, 4, 1, 55), // ours, peer sent no update yet: gossip's edge stays
        ];
        let channels = vec![
            channel(11, 2, Some(remote)),
            channel(12, 4, None),
            channel(13, 5, Some(remote)), // opened minutes ago: not announced yet
        ];
        let mut opening = channel(14, 6, Some(remote));
        opening.state = ChannelState::Opening;
        let mut all = channels.clone();
        all.push(opening);
        let merged = merge_local(gossip, me, &all, 100);
        let find = |scid: u32, from: u8| {
            let s = Scid::new(scid, 1, 0).unwrap();
            merged
                .iter()
                .filter(|e| e.scid == s && e.source == NodeId([from; 33]))
                .collect::<Vec<_>>()
        };
        assert_eq!(find(10, 2).len(), 1);
        assert_eq!(find(11, 1).len(), 1);
        assert_eq!(find(11, 1)[0].fee_ppm, 10, "our fee from the node");
        assert_eq!(find(11, 2)[0].fee_ppm, 77, "the peer's fee as it sent it");
        assert_eq!(find(11, 2)[0].cltv_delta, 40);
        assert_eq!(find(12, 4)[0].fee_ppm, 55);
        assert_eq!(find(12, 1).len(), 1);
        assert_eq!(find(13, 1).len(), 1, "a new channel is routable at once");
        assert_eq!(find(13, 5).len(), 1);
        assert!(find(14, 1).is_empty() && find(14, 6).is_empty());
        assert_eq!(merged.len(), 7);
    }
}
