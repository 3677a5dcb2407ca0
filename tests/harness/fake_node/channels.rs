//! Our channels (`listpeerchannels`), the gossip graph (`listchannels`, `listnodes`) and the
//! simulated network's topology, policies and per-direction liquidity.

use super::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            Direction::In => "in",
            Direction::Out => "out",
        }
    }
}

/// An HTLC pending on one of our channels.
#[derive(Clone, Debug)]
pub struct Htlc {
    pub direction: Direction,
    pub id: u64,
    pub amount_msat: u64,
    pub expiry: u32,
    pub payment_hash: String,
    /// One of CLN's HTLC states valid for `direction`.
    pub state: String,
    /// Set while lightningd waits on a plugin's `htlc_accepted` hook for it
    /// (`listpeerchannels` shows it, lightningd/peer_control.c).
    pub status: Option<String>,
}

impl Htlc {
    pub fn incoming(id: u64, amount_msat: u64, expiry: u32, payment_hash: &str) -> Self {
        Htlc {
            direction: Direction::In,
            id,
            amount_msat,
            expiry,
            payment_hash: payment_hash.to_string(),
            state: "RCVD_ADD_ACK_REVOCATION".into(),
            status: None,
        }
    }

    pub fn outgoing(id: u64, amount_msat: u64, expiry: u32, payment_hash: &str) -> Self {
        Htlc {
            direction: Direction::Out,
            id,
            amount_msat,
            expiry,
            payment_hash: payment_hash.to_string(),
            state: "SENT_ADD_ACK_REVOCATION".into(),
            status: None,
        }
    }
}

/// One of our channels, as `listpeerchannels` reports it.
#[derive(Clone, Debug)]
pub struct Channel {
    pub peer_id: String,
    pub peer_connected: bool,
    pub state: String,
    pub short_channel_id: Option<String>,
    pub channel_id: String,
    pub funding_txid: String,
    pub funding_outnum: u32,
    pub opener: String,
    pub private: bool,
    pub total_msat: u64,
    pub to_us_msat: u64,
    pub our_reserve_msat: u64,
    pub their_reserve_msat: u64,
    /// Our fee policy (what `setchannel` changes).
    pub fee_base_msat: u64,
    pub fee_proportional_millionths: u32,
    pub htlc_minimum_msat: u64,
    pub htlc_maximum_msat: u64,
    pub cltv_expiry_delta: u32,
    /// The peer's policy towards us.
    pub remote_fee_base_msat: u64,
    pub remote_fee_proportional_millionths: u32,
    pub remote_cltv_expiry_delta: u32,
    pub htlcs: Vec<Htlc>,
    pub ignore_fee_limits: bool,
}

impl Channel {
    /// A normal, connected, public channel we opened, with CLN's default
    /// policy (1 sat base, 10 ppm, cltv delta 34) and 1% reserves.
    pub fn new(peer_id: &str, scid: &str, total_msat: u64, to_us_msat: u64) -> Self {
        assert!(to_us_msat <= total_msat, "to_us_msat exceeds capacity");
        let reserve = (total_msat / 100 / 1000) * 1000;
        Channel {
            peer_id: peer_id.to_string(),
            peer_connected: true,
            state: "CHANNELD_NORMAL".into(),
            short_channel_id: Some(scid.to_string()),
            channel_id: hash_hex(&format!("channel_id:{scid}")),
            funding_txid: hash_hex(&format!("funding:{scid}")),
            funding_outnum: 0,
            opener: "local".into(),
            private: false,
            total_msat,
            to_us_msat,
            our_reserve_msat: reserve,
            their_reserve_msat: reserve,
            fee_base_msat: 1000,
            fee_proportional_millionths: 10,
            htlc_minimum_msat: 0,
            htlc_maximum_msat: total_msat / 100 * 99,
            cltv_expiry_delta: 34,
            remote_fee_base_msat: 1000,
            remote_fee_proportional_millionths: 10,
            remote_cltv_expiry_delta: 34,
            htlcs: Vec::new(),
            ignore_fee_limits: false,
        }
    }

    pub(super) fn pending(&self, dir: Direction) -> u64 {
        self.htlcs
            .iter()
            .filter(|h| h.direction == dir)
            .map(|h| h.amount_msat)
            .sum()
    }

    /// What we can still send: our balance minus reserve and in-flight
    /// outgoing HTLCs (fees of the commitment tx are ignored).
    pub fn spendable_msat(&self) -> u64 {
        self.to_us_msat
            .saturating_sub(self.our_reserve_msat)
            .saturating_sub(self.pending(Direction::Out))
    }

    pub fn receivable_msat(&self) -> u64 {
        (self.total_msat - self.to_us_msat)
            .saturating_sub(self.their_reserve_msat)
            .saturating_sub(self.pending(Direction::In))
    }

    pub(super) fn matches(&self, id: &str) -> bool {
        id == "all"
            || id == self.peer_id
            || id == self.channel_id
            || self.short_channel_id.as_deref() == Some(id)
    }

    /// `direction` in listpeerchannels: 0 if our node id sorts first.
    pub(super) fn direction(&self, our_id: &str) -> u32 {
        u32::from(our_id > self.peer_id.as_str())
    }

    pub fn to_json(&self, our_id: &str) -> Value {
        let policy = |base: u64, ppm: u32, cltv: u32| {
            json!({
                "htlc_minimum_msat": self.htlc_minimum_msat,
                "htlc_maximum_msat": self.htlc_maximum_msat,
                "cltv_expiry_delta": cltv,
                "fee_base_msat": base,
                "fee_proportional_millionths": ppm,
            })
        };
        let local_funds = if self.opener == "local" {
            self.total_msat
        } else {
            0
        };
        let htlcs: Vec<Value> = self
            .htlcs
            .iter()
            .map(|h| {
                let mut v = json!({
                    "direction": h.direction.as_str(),
                    "id": h.id,
                    "amount_msat": h.amount_msat,
                    "expiry": h.expiry,
                    "payment_hash": h.payment_hash,
                    "state": h.state,
                });
                if let Some(status) = &h.status {
                    v["status"] = json!(status);
                }
                v
            })
            .collect();
        let mut v = json!({
            "peer_id": self.peer_id,
            "peer_connected": self.peer_connected,
            "channel_type": {"bits": [12, 22], "names": ["static_remotekey/even", "anchors/even"]},
            "updates": {
                "local": policy(self.fee_base_msat, self.fee_proportional_millionths, self.cltv_expiry_delta),
                "remote": policy(
                    self.remote_fee_base_msat,
                    self.remote_fee_proportional_millionths,
                    self.remote_cltv_expiry_delta
                ),
            },
            "ignore_fee_limits": self.ignore_fee_limits,
            "lost_state": false,
            "feerate": {"perkw": 253, "perkb": 1012},
            "owner": "channeld",
            "state": self.state,
            "channel_id": self.channel_id,
            "funding_txid": self.funding_txid,
            "funding_outnum": self.funding_outnum,
            "private": self.private,
            "opener": self.opener,
            "features": ["option_static_remotekey", "option_anchors"],
            "funding": {
                "local_funds_msat": local_funds,
                "remote_funds_msat": self.total_msat - local_funds,
                "pushed_msat": 0,
            },
        });
        // Split in two literals: one would exceed json!'s recursion limit.
        let balances = json!({
            "to_us_msat": self.to_us_msat,
            "min_to_us_msat": self.to_us_msat,
            "max_to_us_msat": self.to_us_msat,
            "total_msat": self.total_msat,
            "fee_base_msat": self.fee_base_msat,
            "fee_proportional_millionths": self.fee_proportional_millionths,
            "dust_limit_msat": 546000,
            "their_max_htlc_value_in_flight_msat": u64::MAX,
            "our_max_htlc_value_in_flight_msat": u64::MAX,
            "their_reserve_msat": self.their_reserve_msat,
            "our_reserve_msat": self.our_reserve_msat,
            "spendable_msat": self.spendable_msat(),
            "receivable_msat": self.receivable_msat(),
            "minimum_htlc_in_msat": 0,
            "minimum_htlc_out_msat": self.htlc_minimum_msat,
            "maximum_htlc_out_msat": self.htlc_maximum_msat,
            "their_to_self_delay": 144,
            "our_to_self_delay": 144,
            "max_accepted_htlcs": 483,
            "state_changes": [],
            "status": [],
            "in_payments_offered": 0,
            "in_offered_msat": 0,
            "in_payments_fulfilled": 0,
            "in_fulfilled_msat": 0,
            "out_payments_offered": 0,
            "out_offered_msat": 0,
            "out_payments_fulfilled": 0,
            "out_fulfilled_msat": 0,
            "htlcs": htlcs,
        });
        if let (Some(obj), Value::Object(more)) = (v.as_object_mut(), balances) {
            obj.extend(more);
        }
        if self.peer_connected {
            v["reestablished"] = json!(true);
        }
        if let Some(scid) = &self.short_channel_id {
            v["short_channel_id"] = json!(scid);
            v["direction"] = json!(self.direction(our_id));
            v["alias"] =
                json!({"local": format!("{}x{}x{}", 15_000_000 + (self.funding_outnum % 1000), 1, 0)});
        }
        v
    }
}

/// One direction of a gossiped channel (`listchannels` entry).
#[derive(Clone, Debug)]
pub struct GossipChannel {
    pub source: String,
    pub destination: String,
    pub short_channel_id: String,
    pub public: bool,
    pub amount_msat: u64,
    pub active: bool,
    pub last_update: u32,
    pub base_fee_millisatoshi: u32,
    pub fee_per_millionth: u32,
    pub delay: u32,
    pub htlc_minimum_msat: u64,
    pub htlc_maximum_msat: u64,
    /// Simulated network only (not listed): what `source` can send over the
    /// channel right now. `None` leaves the direction unsimulated: only
    /// its policy limits a payment, and payments do not change it. The two
    /// directions of a channel hold its two balances; see
    /// [`FakeNode::add_network_channel`].
    pub liquidity_msat: Option<u64>,
}

impl GossipChannel {
    pub(super) fn direction(&self) -> u32 {
        u32::from(self.source > self.destination)
    }

    pub fn to_json(&self) -> Value {
        let dir = self.direction();
        json!({
            "source": self.source,
            "destination": self.destination,
            "short_channel_id": self.short_channel_id,
            "direction": dir,
            "public": self.public,
            "amount_msat": self.amount_msat,
            "message_flags": 1,
            // bit 0 is the direction, bit 1 "disabled"
            "channel_flags": dir | if self.active { 0 } else { 2 },
            "active": self.active,
            "last_update": self.last_update,
            "base_fee_millisatoshi": self.base_fee_millisatoshi,
            "fee_per_millionth": self.fee_per_millionth,
            "delay": self.delay,
            "htlc_minimum_msat": self.htlc_minimum_msat,
            "htlc_maximum_msat": self.htlc_maximum_msat,
            "features": "",
        })
    }
}

/// A node in the gossip graph (`listnodes`). Without `alias` the node has
/// no announcement and only its id is listed, as in lightningd.
#[derive(Clone, Debug)]
pub struct GossipNode {
    pub nodeid: String,
    pub alias: Option<String>,
    pub color: String,
    pub last_timestamp: u32,
}

impl GossipNode {
    pub fn to_json(&self) -> Value {
        match &self.alias {
            None => json!({"nodeid": self.nodeid}),
            Some(alias) => json!({
                "nodeid": self.nodeid,
                "last_timestamp": self.last_timestamp,
                "alias": alias,
                "color": self.color,
                "features": "88a0000a8a5961",
                "addresses": [],
            }),
        }
    }
}

/// One direction of a channel as a forwarding node sees it.
#[derive(Clone, Debug)]
pub(super) struct HopPolicy {
    pub(super) base: u64,
    pub(super) ppm: u64,
    pub(super) delay: u32,
    pub(super) htlc_min: u64,
    pub(super) htlc_max: u64,
    pub(super) active: bool,
    /// What the sending side can forward now (`u64::MAX`: not simulated).
    pub(super) liquidity: u64,
    /// Index in `channels` when the channel is one of ours.
    pub(super) ours: Option<usize>,
}

pub(super) fn our_channel_between(s: &NodeState, scid: &str, from: &str, to: &str) -> Option<usize> {
    s.channels.iter().position(|c| {
        c.short_channel_id.as_deref() == Some(scid)
            && ((from == s.id && to == c.peer_id) || (to == s.id && from == c.peer_id))
    })
}

/// `from` → `to` over `scid`: our channel (policy and balances from `Channel`), else the
/// gossip entry.
pub(super) fn directed(s: &NodeState, scid: &str, from: &str, to: &str) -> Option<HopPolicy> {
    if let Some(i) = our_channel_between(s, scid, from, to) {
        let c = &s.channels[i];
        let active = c.state == "CHANNELD_NORMAL" && c.peer_connected;
        return Some(if from == s.id {
            HopPolicy {
                base: c.fee_base_msat,
                ppm: u64::from(c.fee_proportional_millionths),
                delay: c.cltv_expiry_delta,
                htlc_min: c.htlc_minimum_msat,
                htlc_max: c.htlc_maximum_msat,
                active,
                liquidity: c.spendable_msat(),
                ours: Some(i),
            }
        } else {
            HopPolicy {
                base: c.remote_fee_base_msat,
                ppm: u64::from(c.remote_fee_proportional_millionths),
                delay: c.remote_cltv_expiry_delta,
                htlc_min: c.htlc_minimum_msat,
                htlc_max: c.htlc_maximum_msat,
                active,
                liquidity: c.receivable_msat(),
                ours: Some(i),
            }
        });
    }
    s.gossip_channels
        .iter()
        .find(|g| g.short_channel_id == scid && g.source == from && g.destination == to)
        .map(|g| HopPolicy {
            base: u64::from(g.base_fee_millisatoshi),
            ppm: u64::from(g.fee_per_millionth),
            delay: g.delay,
            htlc_min: g.htlc_minimum_msat,
            htlc_max: g.htlc_maximum_msat,
            active: g.active,
            liquidity: g.liquidity_msat.unwrap_or(u64::MAX),
            ours: None,
        })
}

/// The gossip as `listchannels` shows it: entries of our own channels carry the policy
/// and state that `Channel` holds now (what `setchannel` changed, the peer's policy as
/// `listpeerchannels` reports it), so the two listings agree.
pub(super) fn gossip_view(s: &NodeState) -> Vec<GossipChannel> {
    s.gossip_channels
        .iter()
        .map(|g| {
            let mut g = g.clone();
            if our_channel_between(s, &g.short_channel_id, &g.source, &g.destination).is_some() {
                if let Some(d) = directed(s, &g.short_channel_id, &g.source, &g.destination) {
                    g.base_fee_millisatoshi = u32::try_from(d.base).unwrap_or(u32::MAX);
                    g.fee_per_millionth = u32::try_from(d.ppm).unwrap_or(u32::MAX);
                    g.delay = d.delay;
                    g.htlc_minimum_msat = d.htlc_min;
                    g.htlc_maximum_msat = d.htlc_max;
                    g.active = d.active;
                }
            }
            g
        })
        .collect()
}

impl FakeNode {
    /// Adds one of our channels; returns its short channel id.
    pub fn add_channel(&self, channel: Channel) -> String {
        let scid = channel.short_channel_id.clone().unwrap_or_default();
        self.with(|s| s.channels.push(channel));
        scid
    }

    /// Adds both directions of a public channel between `a` and `b`.
    pub fn add_gossip_channel(&self, a: &str, b: &str, scid: &str, capacity_msat: u64) {
        let make = |src: &str, dst: &str| GossipChannel {
            source: src.into(),
            destination: dst.into(),
            short_channel_id: scid.into(),
            public: true,
            amount_msat: capacity_msat,
            active: true,
            last_update: now_secs() as u32,
            base_fee_millisatoshi: 1000,
            fee_per_millionth: 10,
            delay: 6,
            htlc_minimum_msat: 0,
            htlc_maximum_msat: capacity_msat / 100 * 99,
            liquidity_msat: None,
        };
        self.with(|s| {
            s.gossip_channels.push(make(a, b));
            s.gossip_channels.push(make(b, a));
        });
    }

    pub fn add_gossip_node(&self, nodeid: &str, alias: Option<&str>) {
        self.with(|s| {
            s.gossip_nodes.push(GossipNode {
                nodeid: nodeid.into(),
                alias: alias.map(str::to_string),
                color: "3399ff".into(),
                last_timestamp: now_secs() as u32,
            })
        });
    }

    /// Adds a public channel between `a` and `b` to the simulated network: both directions
    /// announced with CLN's default policy (1 sat + 10 ppm, delay 6), `a_msat` of the
    /// capacity on `a`'s side and the rest on `b`'s. Payments along it move the balance.
    pub fn add_network_channel(&self, a: &str, b: &str, scid: &str, capacity_msat: u64, a_msat: u64) {
        assert!(a_msat <= capacity_msat, "{scid}: a_msat exceeds the capacity");
        self.add_gossip_channel(a, b, scid, capacity_msat);
        self.with(|s| {
            for g in s
                .gossip_channels
                .iter_mut()
                .filter(|g| g.short_channel_id == scid)
            {
                g.liquidity_msat = Some(if g.source == a {
                    a_msat
                } else {
                    capacity_msat - a_msat
                });
            }
            for n in [a, b] {
                if n != s.id && !s.gossip_nodes.iter().any(|x| x.nodeid == n) {
                    s.gossip_nodes.push(GossipNode {
                        nodeid: n.to_string(),
                        alias: Some(format!("SIM{}", &n[2..8])),
                        color: "3399ff".into(),
                        last_timestamp: now_secs() as u32,
                    });
                }
            }
        });
    }

    /// Adds one of our channels and announces it: both directions in `listchannels`,
    /// listed with the policies the `Channel` holds (ours out, the peer's in). Its balance
    /// is the channel's own (`to_us_msat`). Returns the short channel id.
    pub fn add_public_channel(&self, channel: Channel) -> String {
        let scid = channel
            .short_channel_id
            .clone()
            .expect("a public channel needs a short channel id");
        let (us, peer, capacity) = (self.id(), channel.peer_id.clone(), channel.total_msat);
        self.add_channel(channel);
        self.add_gossip_channel(&us, &peer, &scid, capacity);
        scid
    }

    /// Sets the policy of one direction of a gossip channel (`source`'s side). For one of
    /// our channels, the `Channel` is updated instead (ours when `source` is us, the
    /// peer's otherwise), which is what gets listed.
    pub fn set_channel_policy(&self, scid: &str, source: &str, base_msat: u32, ppm: u32, delay: u32) {
        self.with(|s| {
            let us = s.id.clone();
            if let Some(c) = s.channels.iter_mut().find(|c| {
                c.short_channel_id.as_deref() == Some(scid) && (source == us || source == c.peer_id)
            }) {
                if source == us {
                    c.fee_base_msat = u64::from(base_msat);
                    c.fee_proportional_millionths = ppm;
                    c.cltv_expiry_delta = delay;
                } else {
                    c.remote_fee_base_msat = u64::from(base_msat);
                    c.remote_fee_proportional_millionths = ppm;
                    c.remote_cltv_expiry_delta = delay;
                }
                return;
            }
            let g = s
                .gossip_channels
                .iter_mut()
                .find(|g| g.short_channel_id == scid && g.source == source)
                .unwrap_or_else(|| panic!("no gossip for {scid} from {source}"));
            g.base_fee_millisatoshi = base_msat;
            g.fee_per_millionth = ppm;
            g.delay = delay;
        });
    }

    /// Enables or disables `source`'s direction of a gossip channel.
    pub fn set_channel_active(&self, scid: &str, source: &str, active: bool) {
        self.with(|s| {
            let g = s
                .gossip_channels
                .iter_mut()
                .find(|g| g.short_channel_id == scid && g.source == source)
                .unwrap_or_else(|| panic!("no gossip for {scid} from {source}"));
            g.active = active;
        });
    }

    /// Sets the balance of a simulated channel: `msat` on `node`'s side, the rest of the
    /// capacity on the other side.
    pub fn set_balance(&self, scid: &str, node: &str, msat: u64) {
        self.with(|s| {
            let mut found = false;
            for g in s
                .gossip_channels
                .iter_mut()
                .filter(|g| g.short_channel_id == scid)
            {
                assert!(msat <= g.amount_msat, "{scid}: {msat} exceeds the capacity");
                g.liquidity_msat = Some(if g.source == node {
                    msat
                } else {
                    g.amount_msat - msat
                });
                found = true;
            }
            assert!(found, "no gossip channel {scid}");
        });
    }

    /// What `source` can send over `scid` now: the simulated liquidity of a gossip
    /// channel, or for one of our channels what `Channel` says (spendable out of our
    /// node, receivable into it). `None` if unknown or not simulated.
    pub fn liquidity(&self, scid: &str, source: &str) -> Option<u64> {
        let s = self.lock();
        let g = s
            .gossip_channels
            .iter()
            .find(|g| g.short_channel_id == scid && g.source == source)?;
        let d = directed(&s, scid, source, &g.destination)?;
        (d.liquidity != u64::MAX).then_some(d.liquidity)
    }

    /// Our channel with this short channel id (a snapshot).
    pub fn channel(&self, scid: &str) -> Option<Channel> {
        self.lock()
            .channels
            .iter()
            .find(|c| c.short_channel_id.as_deref() == Some(scid))
            .cloned()
    }
}
