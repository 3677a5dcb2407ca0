//! One channel frozen at a time and height: the single input of the rules, the history and
//! the exports, so they all agree on what the channel looked like.

use crate::node::{Channel, ChannelState, HtlcDirection};
use crate::types::{Msat, NodeId, ParseError, Scid};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;
use std::str::FromStr;

const PENDING_PREFIX: &str = "pending:";

/// What alerts, tracking and history are keyed by.
///
/// A channel has no scid until its funding confirms, and the node offers no other id that
/// survives a restart, so until then it is known by its peer. Two unconfirmed opens to the
/// same peer therefore share a key (and their alerts) until they confirm; that is rare and
/// far better than alerts that change identity on every restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ChannelKey {
    Scid(Scid),
    Pending(NodeId),
}

impl ChannelKey {
    pub fn of(channel: &Channel) -> ChannelKey {
        match channel.scid {
            Some(scid) => ChannelKey::Scid(scid),
            None => ChannelKey::Pending(channel.peer),
        }
    }

    pub fn scid(&self) -> Option<Scid> {
        match self {
            ChannelKey::Scid(s) => Some(*s),
            ChannelKey::Pending(_) => None,
        }
    }
}

impl fmt::Display for ChannelKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelKey::Scid(s) => write!(f, "{s}"),
            ChannelKey::Pending(p) => write!(f, "{PENDING_PREFIX}{p}"),
        }
    }
}

impl FromStr for ChannelKey {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.strip_prefix(PENDING_PREFIX) {
            Some(peer) => peer.parse().map(ChannelKey::Pending),
            None => s.parse().map(ChannelKey::Scid),
        }
    }
}

impl Serialize for ChannelKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChannelKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A channel's balances and HTLCs at `time` (unix seconds) and block `height`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelSnapshot {
    pub key: ChannelKey,
    pub peer: NodeId,
    pub state: ChannelState,
    pub peer_connected: bool,
    pub capacity: Msat,
    pub local: Msat,
    pub remote: Msat,
    pub spendable: Msat,
    pub receivable: Msat,
    pub htlcs_in: u32,
    pub htlcs_out: u32,
    pub htlc_in_msat: Msat,
    pub htlc_out_msat: Msat,
    /// Blocks from `height` to the earliest expiry among pending HTLCs in either direction
    /// (0 once it has passed): both ends can force a close, so either can cost us.
    pub min_expiry_blocks: Option<u32>,
    pub height: u32,
    pub time: u64,
}

impl ChannelSnapshot {
    pub fn from_channel(ch: &Channel, height: u32, time: u64) -> ChannelSnapshot {
        let (mut htlcs_in, mut htlcs_out) = (0u32, 0u32);
        let (mut in_msat, mut out_msat) = (0u64, 0u64);
        let mut min_expiry: Option<u32> = None;
        for h in &ch.htlcs {
            // Sums saturate rather than wrap: a node reporting absurd amounts should give an
            // absurd-but-large figure, never a small one that hides the problem.
            match h.direction {
                HtlcDirection::In => {
                    htlcs_in = htlcs_in.saturating_add(1);
                    in_msat = in_msat.saturating_add(h.amount.0);
                }
                HtlcDirection::Out => {
                    htlcs_out = htlcs_out.saturating_add(1);
                    out_msat = out_msat.saturating_add(h.amount.0);
                }
            }
            let left = h.expiry.saturating_sub(height);
            min_expiry = Some(min_expiry.map_or(left, |m| m.min(left)));
        }
        ChannelSnapshot {
            key: ChannelKey::of(ch),
            peer: ch.peer,
            state: ch.state,
            peer_connected: ch.peer_connected,
            capacity: ch.capacity,
            local: ch.local,
            remote: ch.remote,
            spendable: ch.spendable,
            receivable: ch.receivable,
            htlcs_in,
            htlcs_out,
            htlc_in_msat: Msat(in_msat),
            htlc_out_msat: Msat(out_msat),
            min_expiry_blocks: min_expiry,
            height,
            time,
        }
    }

    pub fn scid(&self) -> Option<Scid> {
        self.key.scid()
    }

    pub fn pending_htlcs(&self) -> u32 {
        self.htlcs_in.saturating_add(self.htlcs_out)
    }

    /// Local balance as a share of capacity; `None` for a zero-capacity channel, which has
    /// no meaningful ratio.
    pub fn local_ratio(&self) -> Option<f64> {
        ratio(self.local, self.capacity)
    }
}

pub(crate) fn ratio(part: Msat, whole: Msat) -> Option<f64> {
    (whole.0 != 0).then(|| part.0 as f64 / whole.0 as f64)
}

/// Amounts in alert messages are in sat because that is what operators think in; the msat
/// remainder is kept so that a threshold and a balance never print as equal when they differ.
pub(crate) fn sat(m: Msat) -> String {
    let (s, rest) = (m.0 / 1000, m.0 % 1000);
    if rest == 0 {
        format!("{s} sat")
    } else {
        format!("{s}.{rest:03} sat")
    }
}

pub(crate) fn state_name(s: ChannelState) -> &'static str {
    match s {
        ChannelState::Opening => "opening",
        ChannelState::Normal => "normal",
        ChannelState::Closing => "closing",
        ChannelState::ForceClosing => "force_closing",
        ChannelState::Closed => "closed",
    }
}

pub(crate) fn parse_state(s: &str) -> Option<ChannelState> {
    Some(match s {
        "opening" => ChannelState::Opening,
        "normal" => ChannelState::Normal,
        "closing" => ChannelState::Closing,
        "force_closing" => ChannelState::ForceClosing,
        "closed" => ChannelState::Closed,
        _ => return None,
    })
}

#[cfg(test)]
pub(crate) mod test_support {
    use super::*;
    use crate::node::PendingHtlc;
    use crate::types::PaymentHash;

    pub fn node(n: u8) -> NodeId {
        let mut b = [n; 33];
        b[0] = 2;
        NodeId(b)
    }

    pub fn scid(n: u32) -> Scid {
        Scid::new(700_000 + n, n, 0).expect("small scid")
    }

    pub fn channel(n: u32, peer: u8, capacity: u64, local: u64) -> Channel {
        Channel {
            scid: Some(scid(n)),
            peer: node(peer),
            peer_connected: true,
            state: ChannelState::Normal,
            raw_state: "CHANNELD_NORMAL".into(),
            capacity: Msat(capacity),
            local: Msat(local),
            remote: Msat(capacity.saturating_sub(local)),
            spendable: Msat(local),
            receivable: Msat(capacity.saturating_sub(local)),
            htlcs: vec![],
            fee_base: Msat(1_000),
            fee_ppm: 100,
            remote_policy: None,
            private: false,
        }
    }

    pub fn htlc(direction: HtlcDirection, id: u64, amount: u64, expiry: u32) -> PendingHtlc {
        PendingHtlc {
            direction,
            id,
            amount: Msat(amount),
            expiry,
            payment_hash: PaymentHash([id as u8; 32]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn snapshot_counts_htlcs_and_nearest_expiry() {
        let mut ch = channel(1, 1, 1_000_000, 400_000);
        ch.htlcs = vec![
            htlc(HtlcDirection::In, 1, 10, 850),
            htlc(HtlcDirection::Out, 2, 20, 820),
            htlc(HtlcDirection::Out, 3, u64::MAX, 900),
        ];
        let s = ChannelSnapshot::from_channel(&ch, 800, 5);
        assert_eq!((s.htlcs_in, s.htlcs_out), (1, 2));
        assert_eq!((s.htlc_in_msat, s.htlc_out_msat), (Msat(10), Msat(u64::MAX)));
        assert_eq!(s.min_expiry_blocks, Some(20));
        assert_eq!(
            ChannelSnapshot::from_channel(&ch, 1_000, 5).min_expiry_blocks,
            Some(0)
        );
        assert_eq!(s.local_ratio(), Some(0.4));
        ch.capacity = Msat(0);
        assert_eq!(ChannelSnapshot::from_channel(&ch, 800, 5).local_ratio(), None);
    }

    #[test]
    fn channel_keys_round_trip_as_strings() {
        for k in [ChannelKey::Scid(scid(3)), ChannelKey::Pending(node(9))] {
            let s = k.to_string();
            assert_eq!(s.parse::<ChannelKey>().unwrap(), k);
            let j = serde_json::to_string(&k).unwrap();
            assert_eq!(serde_json::from_str::<ChannelKey>(&j).unwrap(), k);
        }
        assert!("pending:zz".parse::<ChannelKey>().is_err());
        assert!("nope".parse::<ChannelKey>().is_err());
        let mut ch = channel(1, 4, 10, 5);
        ch.scid = None;
        assert_eq!(ChannelKey::of(&ch), ChannelKey::Pending(node(4)));
    }

    #[test]
    fn amounts_print_in_sat_without_hiding_msat() {
        assert_eq!(sat(Msat(5_000)), "5 sat");
        assert_eq!(sat(Msat(5_001)), "5.001 sat");
        for s in [
            ChannelState::Opening,
            ChannelState::Normal,
            ChannelState::Closing,
            ChannelState::ForceClosing,
            ChannelState::Closed,
        ] {
            assert_eq!(parse_state(state_name(s)), Some(s));
            assert_eq!(
                serde_json::to_string(&s).unwrap(),
                format!("\"{}\"", state_name(s))
            );
        }
    }
}
