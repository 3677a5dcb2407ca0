//! A scriptable in-memory Lightning node, served on a fake `lightning-rpc`
//! unix socket.
//!
//! The plugin talks to it with the `cln-rpc` client exactly as it would talk
//! to lightningd. Every request is checked against CLN's request schema and
//! every answer the fake produces against the response schema, so neither
//! side can drift from v26.06 unnoticed. Problems are recorded as
//! *violations* (the server runs on its own threads, where a panic would
//! not fail the test); [`super::Lightningd`] turns them into test failures.

use super::lightningd::Lightningd;
use super::protocol::{check_rpc_request_envelope, JsonRpcError, INVALID_PARAMS, METHOD_NOT_FOUND};
use super::schema::schemas;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::io::{BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub type RpcResult = Result<Value, JsonRpcError>;

/// How the fake answers one request: checked against the response schema, or not.
enum Answer {
    Checked(RpcResult),
    Unchecked(Value),
    Wire(Wire),
}

/// A test-provided implementation of one RPC method; receives the params
/// already converted to an object (positional params are mapped by name
/// for the methods the fake knows).
pub type Handler = Arc<dyn Fn(&Value) -> RpcResult + Send + Sync>;

/// Valid secp256k1 public keys (k·G for k = 1..24, compressed). The
/// `cln-rpc` client parses node ids as curve points, so arbitrary
/// 33-byte hex strings would not do.
const PUBKEYS: [&str; 24] = [
    "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
    "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5",
    "02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9",
    "02e493dbf1c10d80f3581e4904930b1404cc6c13900ee0758474fa94abe8c4cd13",
    "022f8bde4d1a07209355b4a7250a5c5128e88b84bddc619ab7cba8d569b240efe4",
    "03fff97bd5755eeea420453a14355235d382f6472f8568a18b2f057a1460297556",
    "025cbdf0646e5db4eaa398f365f2ea7a0e3d419b7e0330e39ce92bddedcac4f9bc",
    "022f01e5e15cca351daff3843fb70f3c2f0a1bdd05e5af888a67784ef3e10a2a01",
    "03acd484e2f0c7f65309ad178a9f559abde09796974c57e714c35f110dfc27ccbe",
    "03a0434d9e47f3c86235477c7b1ae6ae5d3442d49b1943c2b752a68e2a47e247c7",
    "03774ae7f858a9411e5ef4246b70c65aac5649980be5c17891bbec17895da008cb",
    "03d01115d548e7561b15c38f004d734633687cf4419620095bc5b0f47070afe85a",
    "03f28773c2d975288bc7d1d205c3748651b075fbc6610e58cddeeddf8f19405aa8",
    "03499fdf9e895e719cfd64e67f07d38e3226aa7b63678949e6e49b241a60e823e4",
    "02d7924d4f7d43ea965a465ae3095ff41131e5946f3c85f79e44adbcf8e27e080e",
    "03e60fce93b59e9ec53011aabc21c23e97b2a31369b87a5ae9c44ee89e2a6dec0a",
    "03defdea4cdb677750a420fee807eacf21eb9898ae79b9768766e4faa04a2d4a34",
    "025601570cb47f238d2b0286db4a990fa0f3ba28d1a319f5e7cf55c2a2444da7cc",
    "022b4ea0a797a443d293ef5cff444f4979f06acfebd7e86d277475656138385b6c",
    "024ce119c96e2fa357200b559b2f7dd5a5f02d5290aff74b03f3e471b273211c97",
    "02352bbf4a4cdd12564f93fa332ce333301d9ad40271f8107181340aef25be59d5",
    "03421f5fc9a21065445c96fdb91c0c1e2f2431741c72713b4b99ddcb316f31e9fc",
    "032fa2104d6b38d11b0230010559879124e42ab8dfeff5ff29dc9cdadd4ecacc3f",
    "03fe72c435413d33d48ac09c9161ba8b09683215439d62b7940502bda8b202e6ce",
];

/// A valid node id; index 0 is the fake node itself, 1.. are peers.
pub fn pubkey(i: usize) -> String {
    PUBKEYS[i % PUBKEYS.len()].to_string()
}

/// Deterministic 32-byte hex derived from a seed (hashes, txids, ...).
pub fn hash_hex(seed: &str) -> String {
    hex::encode(Sha256::digest(seed.as_bytes()))
}

/// Payment hash of a preimage, as lightningd computes it.
pub fn payment_hash_of(preimage_hex: &str) -> String {
    let bytes = hex::decode(preimage_hex).expect("preimage must be hex");
    hex::encode(Sha256::digest(bytes))
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// One JSON-RPC call the plugin made.
#[derive(Clone, Debug)]
pub struct RpcCall {
    pub method: String,
    /// Params exactly as sent (object, array, or null when absent).
    pub params: Value,
    pub id: Value,
    /// Which socket connection carried it (0-based, in accept order).
    pub connection: usize,
    pub at: Instant,
}

/// A canned answer.
#[derive(Clone, Debug)]
pub enum Scripted {
    /// A `result`, which must satisfy the method's response schema.
    Result(Value),
    Error(JsonRpcError),
    /// A `result` that deliberately breaks the response schema (a malformed answer).
    Unchecked(Value),
    /// A whole JSON-RPC envelope, written as is.
    Envelope(Value),
    /// Raw bytes instead of JSON.
    Bytes(String),
    /// Close the connection without answering.
    Hangup,
}

/// What goes back on the socket for one request.
#[derive(Clone, Debug)]
pub enum Wire {
    Json(Value),
    Bytes(Vec<u8>),
    Hangup,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    In,
    Out,
}

impl Direction {
    fn as_str(self) -> &'static str {
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

    fn pending(&self, dir: Direction) -> u64 {
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

    fn matches(&self, id: &str) -> bool {
        id == "all"
            || id == self.peer_id
            || id == self.channel_id
            || self.short_channel_id.as_deref() == Some(id)
    }

    /// `direction` in listpeerchannels: 0 if our node id sorts first.
    fn direction(&self, our_id: &str) -> u32 {
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
    fn direction(&self) -> u32 {
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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardStatus {
    Offered,
    Settled,
    LocalFailed,
    Failed,
}

impl ForwardStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ForwardStatus::Offered => "offered",
            ForwardStatus::Settled => "settled",
            ForwardStatus::LocalFailed => "local_failed",
            ForwardStatus::Failed => "failed",
        }
    }
}

/// A forwarding attempt (`listforwards` entry, `forward_event` payload).
#[derive(Clone, Debug)]
pub struct Forward {
    pub created_index: u64,
    pub updated_index: Option<u64>,
    pub payment_hash: String,
    pub in_channel: String,
    pub in_htlc_id: u64,
    pub in_msat: u64,
    pub out_channel: Option<String>,
    pub out_htlc_id: Option<u64>,
    /// Known once an outgoing HTLC was offered.
    pub out_msat: Option<u64>,
    pub status: ForwardStatus,
    pub received_time: f64,
    pub resolved_time: Option<f64>,
    pub failcode: Option<u32>,
    pub failreason: Option<String>,
}

impl Forward {
    /// A settled forward earning `in_msat - out_msat`.
    pub fn settled(in_channel: &str, out_channel: &str, in_msat: u64, out_msat: u64) -> Self {
        let now = now_secs() as f64;
        Forward {
            created_index: 0,
            updated_index: None,
            payment_hash: hash_hex(&format!("fwd:{in_channel}:{out_channel}:{in_msat}:{now}")),
            in_channel: in_channel.into(),
            in_htlc_id: 0,
            in_msat,
            out_channel: Some(out_channel.into()),
            out_htlc_id: Some(0),
            out_msat: Some(out_msat),
            status: ForwardStatus::Settled,
            received_time: now - 1.0,
            resolved_time: Some(now),
            failcode: None,
            failreason: None,
        }
    }

    pub fn fee_msat(&self) -> Option<u64> {
        self.out_msat.map(|o| self.in_msat.saturating_sub(o))
    }

    /// The `listforwards` entry (CLN omits the payment hash there).
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "created_index": self.created_index,
            "in_channel": self.in_channel,
            "in_htlc_id": self.in_htlc_id,
            "in_msat": self.in_msat,
            "status": self.status.as_str(),
            "received_time": self.received_time,
            "style": "tlv",
        });
        if let Some(u) = self.updated_index {
            v["updated_index"] = json!(u);
        }
        if let Some(oc) = &self.out_channel {
            v["out_channel"] = json!(oc);
        }
        if let Some(h) = self.out_htlc_id {
            v["out_htlc_id"] = json!(h);
        }
        if let (Some(out), Some(_)) = (self.out_msat, &self.out_channel) {
            v["out_msat"] = json!(out);
            v["fee_msat"] = json!(self.fee_msat());
        }
        // The v26.06 schema only allows (and then requires) a resolution
        // time on `settled` and `failed` forwards.
        if matches!(self.status, ForwardStatus::Settled | ForwardStatus::Failed) {
            v["resolved_time"] = json!(self.resolved_time.unwrap_or(self.received_time));
        }
        if matches!(self.status, ForwardStatus::LocalFailed | ForwardStatus::Failed) {
            if let Some(c) = self.failcode {
                v["failcode"] = json!(c);
            }
            if let Some(r) = &self.failreason {
                v["failreason"] = json!(r);
            }
        }
        v
    }

    /// Payload of the `forward_event` notification for this forward.
    pub fn to_notification(&self) -> Value {
        let mut v = self.to_json();
        let o = v.as_object_mut().expect("object");
        o.remove("created_index");
        o.remove("updated_index");
        o.remove("in_htlc_id");
        o.remove("out_htlc_id");
        o.insert("payment_hash".into(), json!(self.payment_hash));
        v
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvoiceStatus {
    Unpaid,
    Paid,
    Expired,
}

#[derive(Clone, Debug)]
pub struct Invoice {
    pub label: String,
    pub description: String,
    pub bolt11: String,
    pub payment_hash: String,
    pub preimage: String,
    pub amount_msat: Option<u64>,
    pub status: InvoiceStatus,
    pub expires_at: u64,
    pub created_index: u64,
    pub updated_index: Option<u64>,
    pub pay_index: Option<u64>,
    pub amount_received_msat: Option<u64>,
    pub paid_at: Option<u64>,
}

impl Invoice {
    /// An unpaid invoice whose preimage is derived from the label. The
    /// bolt11 string is a placeholder: the fake node cannot sign.
    pub fn unpaid(label: &str, amount_msat: Option<u64>) -> Self {
        let preimage = hash_hex(&format!("preimage:{label}"));
        Invoice {
            label: label.into(),
            description: format!("invoice {label}"),
            bolt11: format!("lnbcrt1fake{}", &hash_hex(label)[..20]),
            payment_hash: payment_hash_of(&preimage),
            preimage,
            amount_msat,
            status: InvoiceStatus::Unpaid,
            expires_at: now_secs() + 3600,
            created_index: 0,
            updated_index: None,
            pay_index: None,
            amount_received_msat: None,
            paid_at: None,
        }
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "label": self.label,
            "description": self.description,
            "bolt11": self.bolt11,
            "payment_hash": self.payment_hash,
            "status": match self.status {
                InvoiceStatus::Unpaid => "unpaid",
                InvoiceStatus::Paid => "paid",
                InvoiceStatus::Expired => "expired",
            },
            "expires_at": self.expires_at,
            "created_index": self.created_index,
        });
        if let Some(a) = self.amount_msat {
            v["amount_msat"] = json!(a);
        }
        if let Some(u) = self.updated_index {
            v["updated_index"] = json!(u);
        }
        if self.status == InvoiceStatus::Paid {
            v["pay_index"] = json!(self.pay_index.unwrap_or(1));
            v["amount_received_msat"] = json!(self.amount_received_msat.or(self.amount_msat).unwrap_or(0));
            v["paid_at"] = json!(self.paid_at.unwrap_or_else(now_secs));
            v["payment_preimage"] = json!(self.preimage);
        }
        v
    }
}

/// Everything the fake node knows. Mutate it through [`FakeNode::with`].
pub struct NodeState {
    pub id: String,
    pub alias: String,
    pub color: String,
    pub version: String,
    pub network: String,
    pub blockheight: u32,
    pub lightning_dir: String,
    pub channels: Vec<Channel>,
    pub gossip_channels: Vec<GossipChannel>,
    pub gossip_nodes: Vec<GossipNode>,
    pub forwards: Vec<Forward>,
    pub invoices: Vec<Invoice>,
    pub feerate_perkw: u32,
    /// lightningd's `cltv-delta` option, as `listconfigs` reports it (34 by default).
    pub cltv_delta: u32,
    /// Extra `listconfigs` entries (plugin options, set by the driver).
    pub extra_configs: Map<String, Value>,
    /// Incoming HTLCs handed to the plugin's `htlc_accepted` hook and not yet answered,
    /// by the hook request's id (see [`FakeNode::htlc_to_hook`]).
    hook_htlcs: HashMap<String, (String, u64)>,
    /// Hook HTLCs whose answer lightningd never applied: it went down first, or the plugin
    /// died. Undecided in its database until the next start decides (see
    /// [`FakeNode::plugin_started`]).
    unapplied: Vec<(String, u64)>,
    /// Every `sendpay` attempt, oldest first (see [`Payment`]).
    pub payments: Vec<Payment>,
    /// Where HTLCs that reach our node go (see [`FakeNode::set_htlc_hook`]).
    htlc_hook: Option<HtlcHook>,
    next_htlc_id: u64,
    /// Most payments in flight at once so far.
    peak_in_flight: usize,
    calls: Vec<RpcCall>,
    violations: Vec<String>,
    once: HashMap<String, VecDeque<Scripted>>,
    always: HashMap<String, Scripted>,
    handlers: HashMap<String, Handler>,
}

impl NodeState {
    fn set_hook_status(&mut self, (scid, id): &(String, u64), status: Option<String>) {
        for c in self
            .channels
            .iter_mut()
            .filter(|c| c.short_channel_id.as_deref() == Some(scid))
        {
            for h in c
                .htlcs
                .iter_mut()
                .filter(|h| h.direction == Direction::In && h.id == *id)
            {
                h.status = status.clone();
            }
        }
    }

    fn remove_incoming(&mut self, (scid, id): &(String, u64)) {
        for c in self
            .channels
            .iter_mut()
            .filter(|c| c.short_channel_id.as_deref() == Some(scid))
        {
            c.htlcs.retain(|h| !(h.direction == Direction::In && h.id == *id));
        }
    }
}

/// Shared handle on the fake node; clones see the same node. Keep one
/// across plugin restarts to give the plugin a persistent world.
#[derive(Clone)]
pub struct FakeNode {
    inner: Arc<(Mutex<NodeState>, Condvar)>,
}

impl Default for FakeNode {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeNode {
    pub fn new() -> Self {
        let state = NodeState {
            id: pubkey(0),
            alias: "BALLASTFAKE".into(),
            color: "0266e4".into(),
            version: "v26.06".into(),
            network: "regtest".into(),
            blockheight: 110,
            lightning_dir: String::new(),
            channels: Vec::new(),
            gossip_channels: Vec::new(),
            gossip_nodes: Vec::new(),
            forwards: Vec::new(),
            invoices: Vec::new(),
            feerate_perkw: 253,
            cltv_delta: 34,
            extra_configs: Map::new(),
            hook_htlcs: HashMap::new(),
            unapplied: Vec::new(),
            payments: Vec::new(),
            htlc_hook: None,
            next_htlc_id: 1000,
            peak_in_flight: 0,
            calls: Vec::new(),
            violations: Vec::new(),
            once: HashMap::new(),
            always: HashMap::new(),
            handlers: HashMap::new(),
        };
        FakeNode {
            inner: Arc::new((Mutex::new(state), Condvar::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, NodeState> {
        // A panicking test thread must not hide the state from Drop-time
        // diagnostics.
        self.inner.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self) {
        self.inner.1.notify_all();
    }

    /// Runs `f` with exclusive access to the node's state.
    pub fn with<R>(&self, f: impl FnOnce(&mut NodeState) -> R) -> R {
        let r = f(&mut self.lock());
        self.changed();
        r
    }

    pub fn id(&self) -> String {
        self.lock().id.clone()
    }

    /// lightningd hands an incoming HTLC to the plugin's `htlc_accepted` hook (request id
    /// `key`): it is in the channel (created if the test has none by that name), undecided,
    /// with the status lightningd shows while it waits. A replay of an HTLC already there
    /// waits on the new request.
    pub fn htlc_to_hook(&self, payload: &Value, key: &str) {
        let htlc = &payload["htlc"];
        let (Some(scid), Some(id)) = (htlc["short_channel_id"].as_str(), htlc["id"].as_u64()) else {
            return;
        };
        let mut s = self.lock();
        let status = "Waiting for the htlc_accepted hook of plugin ballast".to_string();
        let c = match s
            .channels
            .iter()
            .position(|c| c.short_channel_id.as_deref() == Some(scid))
        {
            Some(c) => c,
            None => {
                let peer = pubkey(200 + s.channels.len());
                s.channels
                    .push(Channel::new(&peer, scid, 10_000_000_000, 5_000_000_000));
                s.channels.len() - 1
            }
        };
        let ch = &mut s.channels[c];
        match ch
            .htlcs
            .iter_mut()
            .find(|h| h.direction == Direction::In && h.id == id)
        {
            Some(h) => h.status = Some(status),
            None => {
                let mut h = Htlc::incoming(
                    id,
                    htlc["amount_msat"].as_u64().unwrap_or(0),
                    htlc["cltv_expiry"].as_u64().unwrap_or(0) as u32,
                    htlc["payment_hash"].as_str().unwrap_or_default(),
                );
                h.status = Some(status);
                ch.htlcs.push(h);
            }
        }
        s.unapplied.retain(|u| u != &(scid.to_string(), id));
        s.hook_htlcs.insert(key.to_string(), (scid.to_string(), id));
    }

    /// The plugin answered hook request `key`. lightningd applies the answer (the HTLC is
    /// resolved or failed: gone from the channel), unless it was shutting down: then it
    /// ignored the answer and the HTLC stays undecided in its database.
    pub fn hook_answered(&self, key: &str, lightningd_shutting_down: bool) {
        let mut s = self.lock();
        let Some(htlc) = s.hook_htlcs.remove(key) else {
            return;
        };
        if lightningd_shutting_down {
            s.set_hook_status(&htlc, None);
            s.unapplied.push(htlc);
        } else {
            s.remove_incoming(&htlc);
        }
    }

    /// The plugin process died with hook calls open: lightningd no longer waits on them.
    pub fn plugin_gone(&self) {
        let mut s = self.lock();
        let open: Vec<(String, u64)> = s.hook_htlcs.drain().map(|(_, h)| h).collect();
        for h in open {
            s.set_hook_status(&h, None);
            s.unapplied.push(h);
        }
    }

    /// The plugin starts again. After a node restart (`startup`) lightningd still holds
    /// the HTLCs it never saw answered and will replay them; after a plugin-only start it
    /// had failed them already (a dead plugin's hook call continues, and no invoice of its
    /// own matches), and answers given at `plugin stop` were applied.
    pub fn plugin_started(&self, startup: bool) {
        let mut s = self.lock();
        let unapplied = std::mem::take(&mut s.unapplied);
        if !startup {
            for h in unapplied {
                s.remove_incoming(&h);
            }
        }
    }

    pub fn blockheight(&self) -> u32 {
        self.lock().blockheight
    }

    pub fn set_blockheight(&self, h: u32) {
        self.with(|s| s.blockheight = h);
    }

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

    /// Appends a forward, assigning its `created_index`; returns it.
    pub fn add_forward(&self, mut fwd: Forward) -> u64 {
        self.with(|s| {
            fwd.created_index = s.forwards.len() as u64 + 1;
            s.forwards.push(fwd);
            s.forwards.len() as u64
        })
    }

    /// Appends an invoice, assigning its `created_index`; returns it.
    pub fn add_invoice(&self, mut inv: Invoice) -> u64 {
        self.with(|s| {
            inv.created_index = s.invoices.len() as u64 + 1;
            s.invoices.push(inv);
            s.invoices.len() as u64
        })
    }

    /// The next call to `method` gets this answer (queued, FIFO).
    pub fn script_once(&self, method: &str, answer: Scripted) {
        self.with(|s| s.once.entry(method.into()).or_default().push_back(answer));
    }

    /// Every call to `method` gets this answer until cleared.
    pub fn script_always(&self, method: &str, answer: Scripted) {
        self.with(|s| s.always.insert(method.into(), answer));
    }

    pub fn clear_script(&self, method: &str) {
        self.with(|s| {
            s.once.remove(method);
            s.always.remove(method);
        });
    }

    /// Implements (or overrides) a method with test code.
    pub fn set_handler(&self, method: &str, f: impl Fn(&Value) -> RpcResult + Send + Sync + 'static) {
        self.with(|s| s.handlers.insert(method.into(), Arc::new(f)));
    }

    /// Every call so far, in arrival order.
    pub fn calls(&self) -> Vec<RpcCall> {
        self.lock().calls.clone()
    }

    /// Params of every call to `method`.
    pub fn calls_to(&self, method: &str) -> Vec<Value> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .map(|c| c.params.clone())
            .collect()
    }

    pub fn clear_calls(&self) {
        self.with(|s| s.calls.clear());
    }

    /// Blocks until the plugin has called `method` at least `count` times.
    pub fn wait_for_calls(&self, method: &str, count: usize, timeout: Duration) -> Vec<RpcCall> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lock();
        loop {
            let matching: Vec<RpcCall> = guard
                .calls
                .iter()
                .filter(|c| c.method == method)
                .cloned()
                .collect();
            if matching.len() >= count {
                return matching;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "plugin called `{method}` {} times, expected {count} within {timeout:?}; calls: {:?}",
                    matching.len(),
                    guard.calls.iter().map(|c| &c.method).collect::<Vec<_>>()
                );
            }
            guard = self
                .inner
                .1
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Schema or protocol problems seen so far, without clearing them.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Schema or protocol problems seen so far; clears the list.
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().violations)
    }

    fn violation(&self, msg: String) {
        self.with(|s| s.violations.push(format!("fake lightningd RPC: {msg}")));
    }

    /// Handles one request end to end: checks, records, answers, checks the
    /// answer. Returns the full JSON-RPC response to write back.
    pub fn handle_request(&self, request: &Value, connection: usize) -> Value {
        match self.handle_request_wire(request, connection) {
            Wire::Json(v) => v,
            Wire::Bytes(b) => Value::String(String::from_utf8_lossy(&b).into_owned()),
            Wire::Hangup => Value::Null,
        }
    }

    /// [`FakeNode::handle_request`], with the scripted answers that are no JSON-RPC
    /// response (raw bytes, a hang-up) as they go on the wire.
    pub fn handle_request_wire(&self, request: &Value, connection: usize) -> Wire {
        if let Err(e) = check_rpc_request_envelope(request) {
            self.violation(e.clone());
            let id = request.get("id").cloned().unwrap_or(Value::Null);
            return Wire::Json(json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32600, "message": e}}));
        }
        let id = request["id"].clone();
        let method = request["method"].as_str().unwrap_or_default().to_string();
        let raw_params = request.get("params").cloned().unwrap_or(Value::Null);
        self.with(|s| {
            s.calls.push(RpcCall {
                method: method.clone(),
                params: raw_params.clone(),
                id: id.clone(),
                connection,
                at: Instant::now(),
            })
        });
        let outcome = match self.answer(&method, &raw_params) {
            Answer::Checked(r) => r,
            Answer::Unchecked(v) => return Wire::Json(json!({"jsonrpc": "2.0", "id": id, "result": v})),
            Answer::Wire(w) => return w,
        };
        match outcome {
            Ok(result) => {
                if schemas().has_rpc(&method) {
                    if let Err(e) = schemas().check_rpc_response(&method, &result) {
                        self.violation(format!("our own answer is invalid: {e}"));
                    }
                }
                Wire::Json(json!({"jsonrpc": "2.0", "id": id, "result": result}))
            }
            Err(err) => Wire::Json(json!({"jsonrpc": "2.0", "id": id, "error": err.to_json()})),
        }
    }

    fn answer(&self, method: &str, raw_params: &Value) -> Answer {
        let known = schemas().has_rpc(method);
        let params = match named_params(method, raw_params) {
            Ok(p) => p,
            Err(e) => {
                if known {
                    self.violation(format!("`{method}` params {raw_params}: {}", e.message));
                }
                return Answer::Checked(Err(e));
            }
        };
        if known {
            if let Err(e) = schemas().check_rpc_request(method, &params) {
                // lightningd's parameter parser would refuse the call.
                self.violation(e.clone());
                return Answer::Checked(Err(JsonRpcError::new(INVALID_PARAMS, e)));
            }
        }
        let (scripted, handler) = {
            let mut s = self.lock();
            let once = s.once.get_mut(method).and_then(VecDeque::pop_front);
            let scripted = once.or_else(|| s.always.get(method).cloned());
            (scripted, s.handlers.get(method).cloned())
        };
        if let Some(answer) = scripted {
            return match answer {
                Scripted::Result(v) => Answer::Checked(Ok(v)),
                Scripted::Error(e) => Answer::Checked(Err(e)),
                Scripted::Unchecked(v) => Answer::Unchecked(v),
                Scripted::Envelope(v) => Answer::Wire(Wire::Json(v)),
                Scripted::Bytes(b) => Answer::Wire(Wire::Bytes(b.into_bytes())),
                Scripted::Hangup => Answer::Wire(Wire::Hangup),
            };
        }
        if let Some(h) = handler {
            return Answer::Checked(h(&params));
        }
        Answer::Checked(self.builtin(method, &params))
    }

    fn builtin(&self, method: &str, p: &Value) -> RpcResult {
        let str_param = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_string);
        match method {
            "getinfo" => Ok(self.getinfo()),
            "listpeerchannels" => {
                let s = self.lock();
                let id = str_param("id");
                let scid = str_param("short_channel_id");
                let cid = str_param("channel_id");
                let channels: Vec<Value> = s
                    .channels
                    .iter()
                    .filter(|c| id.as_ref().is_none_or(|i| *i == c.peer_id))
                    .filter(|c| scid.is_none() || c.short_channel_id == scid)
                    .filter(|c| cid.as_ref().is_none_or(|i| *i == c.channel_id))
                    .map(|c| c.to_json(&s.id))
                    .collect();
                Ok(json!({ "channels": channels }))
            }
            "listpeers" => {
                let s = self.lock();
                let id = str_param("id");
                let mut peers: Vec<(String, bool, u32)> = Vec::new();
                for c in &s.channels {
                    match peers.iter_mut().find(|(p, _, _)| *p == c.peer_id) {
                        Some(entry) => entry.2 += 1,
                        None => peers.push((c.peer_id.clone(), c.peer_connected, 1)),
                    }
                }
                let peers: Vec<Value> = peers
                    .into_iter()
                    .filter(|(p, _, _)| id.as_ref().is_none_or(|i| i == p))
                    .map(|(p, connected, n)| {
                        let mut v = json!({"id": p, "connected": connected, "num_channels": n});
                        if connected {
                            v["netaddr"] = json!(["127.0.0.1:9735"]);
                            v["features"] = json!("08a0000a8a5961");
                        }
                        v
                    })
                    .collect();
                Ok(json!({ "peers": peers }))
            }
            "listfunds" => {
                let s = self.lock();
                let channels: Vec<Value> = s
                    .channels
                    .iter()
                    .map(|c| {
                        let mut v = json!({
                            "peer_id": c.peer_id,
                            "our_amount_msat": c.to_us_msat,
                            "amount_msat": c.total_msat,
                            "funding_txid": c.funding_txid,
                            "funding_output": c.funding_outnum,
                            "connected": c.peer_connected,
                            "state": c.state,
                            "channel_id": c.channel_id,
                        });
                        if let Some(scid) = &c.short_channel_id {
                            v["short_channel_id"] = json!(scid);
                        }
                        v
                    })
                    .collect();
                Ok(json!({"outputs": [], "channels": channels}))
            }
            "listchannels" => {
                let s = self.lock();
                let scid = str_param("short_channel_id");
                let src = str_param("source");
                let dst = str_param("destination");
                let channels: Vec<Value> = gossip_view(&s)
                    .iter()
                    .filter(|c| scid.as_ref().is_none_or(|x| *x == c.short_channel_id))
                    .filter(|c| src.as_ref().is_none_or(|x| *x == c.source))
                    .filter(|c| dst.as_ref().is_none_or(|x| *x == c.destination))
                    .map(GossipChannel::to_json)
                    .collect();
                Ok(json!({ "channels": channels }))
            }
            "listnodes" => {
                let s = self.lock();
                let id = str_param("id");
                let nodes: Vec<Value> = s
                    .gossip_nodes
                    .iter()
                    .filter(|n| id.as_ref().is_none_or(|x| *x == n.nodeid))
                    .map(GossipNode::to_json)
                    .collect();
                Ok(json!({ "nodes": nodes }))
            }
            "listforwards" => {
                let s = self.lock();
                let status = str_param("status");
                let in_ch = str_param("in_channel");
                let out_ch = str_param("out_channel");
                let (start, limit) = paging(p);
                let by_updated = str_param("index").as_deref() == Some("updated");
                let forwards: Vec<Value> = s
                    .forwards
                    .iter()
                    .filter(|f| status.as_ref().is_none_or(|x| x == f.status.as_str()))
                    .filter(|f| in_ch.as_ref().is_none_or(|x| *x == f.in_channel))
                    .filter(|f| out_ch.is_none() || f.out_channel == out_ch)
                    .filter(|f| {
                        let idx = if by_updated {
                            f.updated_index.unwrap_or(0)
                        } else {
                            f.created_index
                        };
                        idx >= start
                    })
                    .take(limit)
                    .map(Forward::to_json)
                    .collect();
                Ok(json!({ "forwards": forwards }))
            }
            "listinvoices" => {
                let s = self.lock();
                let label = p.get("label").map(|l| match l {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                });
                let hash = str_param("payment_hash");
                let invstring = str_param("invstring");
                let (start, limit) = paging(p);
                let by_updated = str_param("index").as_deref() == Some("updated");
                let invoices: Vec<Value> = s
                    .invoices
                    .iter()
                    .filter(|i| label.as_ref().is_none_or(|x| *x == i.label))
                    .filter(|i| hash.as_ref().is_none_or(|x| *x == i.payment_hash))
                    .filter(|i| invstring.as_ref().is_none_or(|x| *x == i.bolt11))
                    .filter(|i| {
                        let idx = if by_updated {
                            i.updated_index.unwrap_or(0)
                        } else {
                            i.created_index
                        };
                        idx >= start
                    })
                    .take(limit)
                    .map(Invoice::to_json)
                    .collect();
                Ok(json!({ "invoices": invoices }))
            }
            "setchannel" => self.setchannel(p),
            "sendpay" => self.sendpay(p),
            "waitsendpay" => self.waitsendpay(p),
            "signinvoice" => {
                let (id, network) = {
                    let s = self.lock();
                    (s.id.clone(), s.network.clone())
                };
                let invstring = str_param("invstring").unwrap_or_default();
                sign_invoice(&invstring, &id, &network)
                    .map(|bolt11| json!({ "bolt11": bolt11 }))
                    .map_err(|e| JsonRpcError::new(INVALID_PARAMS, e))
            }
            "feerates" => {
                let s = self.lock();
                let style = str_param("style").unwrap_or_else(|| "perkw".into());
                let mult = if style == "perkb" { 4 } else { 1 };
                let rate = s.feerate_perkw * mult;
                let estimates: Vec<Value> = [2, 6, 12, 100]
                    .iter()
                    .map(|b| json!({"blockcount": b, "feerate": rate, "smoothed_feerate": rate}))
                    .collect();
                let mut out = json!({
                    "onchain_fee_estimates": {
                        "opening_channel_satoshis": 177 * u64::from(s.feerate_perkw) * 4 / 1000,
                        "mutual_close_satoshis": 170 * u64::from(s.feerate_perkw) * 4 / 1000,
                        "unilateral_close_satoshis": 151 * u64::from(s.feerate_perkw) * 4 / 1000,
                        "htlc_timeout_satoshis": 166 * u64::from(s.feerate_perkw) * 4 / 1000,
                        "htlc_success_satoshis": 176 * u64::from(s.feerate_perkw) * 4 / 1000,
                    }
                });
                out[style.as_str()] = json!({
                    "opening": rate,
                    "mutual_close": rate,
                    "unilateral_close": rate,
                    "unilateral_anchor_close": rate,
                    "penalty": rate,
                    "splice": rate,
                    "min_acceptable": 253 * mult,
                    "max_acceptable": rate * 10,
                    "floor": 253 * mult,
                    "estimates": estimates,
                });
                Ok(out)
            }
            "listconfigs" => {
                let configs = self.configs();
                match str_param("config") {
                    None => Ok(json!({ "configs": configs })),
                    Some(name) => match configs.get(&name) {
                        Some(v) => Ok(json!({"configs": { name: v }})),
                        None => Err(JsonRpcError::new(
                            INVALID_PARAMS,
                            format!("Unknown config option {name}"),
                        )),
                    },
                }
            }
            "waitblockheight" => {
                let target = p.get("blockheight").and_then(Value::as_u64).unwrap_or(0);
                let timeout = Duration::from_secs(p.get("timeout").and_then(Value::as_u64).unwrap_or(60));
                let deadline = Instant::now() + timeout;
                let mut guard = self.lock();
                loop {
                    if u64::from(guard.blockheight) >= target {
                        return Ok(json!({"blockheight": guard.blockheight}));
                    }
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(JsonRpcError::new(2000, "Timed out."));
                    }
                    guard = self
                        .inner
                        .1
                        .wait_timeout(guard, (deadline - now).min(Duration::from_millis(200)))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
            _ => Err(JsonRpcError::new(
                METHOD_NOT_FOUND,
                format!("Unknown command '{method}'"),
            )),
        }
    }

    fn getinfo(&self) -> Value {
        let s = self.lock();
        let mut peers: Vec<&str> = s
            .channels
            .iter()
            .filter(|c| c.peer_connected)
            .map(|c| c.peer_id.as_str())
            .collect();
        peers.sort();
        peers.dedup();
        let pending = s
            .channels
            .iter()
            .filter(|c| {
                matches!(
                    c.state.as_str(),
                    "OPENINGD"
                        | "CHANNELD_AWAITING_LOCKIN"
                        | "DUALOPEND_OPEN_INIT"
                        | "DUALOPEND_AWAITING_LOCKIN"
                )
            })
            .count();
        let active = s.channels.iter().filter(|c| c.state == "CHANNELD_NORMAL").count();
        let fees: u64 = s
            .forwards
            .iter()
            .filter(|f| f.status == ForwardStatus::Settled)
            .filter_map(Forward::fee_msat)
            .sum();
        json!({
            "id": s.id,
            "alias": s.alias,
            "color": s.color,
            "num_peers": peers.len(),
            "num_pending_channels": pending,
            "num_active_channels": active,
            "num_inactive_channels": s.channels.len() - pending - active,
            "address": [],
            "binding": [{"type": "ipv4", "address": "127.0.0.1", "port": 19735}],
            "version": s.version,
            "blockheight": s.blockheight,
            "network": s.network,
            "fees_collected_msat": fees,
            "lightning-dir": s.lightning_dir,
            "our_features": {
                "init": "08a0000a8a5961",
                "node": "88a0000a8a5961",
                "channel": "",
                "invoice": "02000002024100"
            }
        })
    }

    fn setchannel(&self, p: &Value) -> RpcResult {
        let id = p
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let feebase = p.get("feebase").map(parse_msat).transpose()?;
        let feeppm = p.get("feeppm").and_then(Value::as_u64);
        let htlcmin = p.get("htlcmin").map(parse_msat).transpose()?;
        let htlcmax = p.get("htlcmax").map(parse_msat).transpose()?;
        let ignore = p.get("ignorefeelimits").and_then(Value::as_bool);
        let mut s = self.lock();
        let mut touched = Vec::new();
        for c in s.channels.iter_mut().filter(|c| c.matches(&id)) {
            // lightningd skips channels that cannot carry updates.
            if !matches!(
                c.state.as_str(),
                "CHANNELD_NORMAL" | "CHANNELD_AWAITING_LOCKIN" | "DUALOPEND_AWAITING_LOCKIN"
            ) {
                continue;
            }
            if let Some(b) = feebase {
                c.fee_base_msat = b;
            }
            if let Some(ppm) = feeppm {
                c.fee_proportional_millionths = ppm as u32;
            }
            if let Some(m) = htlcmin {
                c.htlc_minimum_msat = m;
            }
            if let Some(m) = htlcmax {
                c.htlc_maximum_msat = m.min(c.total_msat);
            }
            if let Some(i) = ignore {
                c.ignore_fee_limits = i;
            }
            let mut v = json!({
                "peer_id": c.peer_id,
                "channel_id": c.channel_id,
                "fee_base_msat": c.fee_base_msat,
                "fee_proportional_millionths": c.fee_proportional_millionths,
                "minimum_htlc_out_msat": c.htlc_minimum_msat,
                "maximum_htlc_out_msat": c.htlc_maximum_msat,
                "ignore_fee_limits": c.ignore_fee_limits,
            });
            if let Some(scid) = &c.short_channel_id {
                v["short_channel_id"] = json!(scid);
            }
            touched.push(v);
        }
        drop(s);
        self.changed();
        if touched.is_empty() && id != "all" {
            return Err(JsonRpcError::new(
                INVALID_PARAMS,
                "Could not find any active channels of peer with that id",
            ));
        }
        Ok(json!({ "channels": touched }))
    }

    fn configs(&self) -> Map<String, Value> {
        let s = self.lock();
        let mut c = Map::new();
        let text = |v: &str, src: &str| json!({"value_str": v, "source": src});
        let int = |v: u64, src: &str| json!({"value_int": v, "source": src});
        c.insert("alias".into(), text(&s.alias, "default"));
        c.insert("rgb".into(), text(&s.color, "default"));
        c.insert("network".into(), text(&s.network, "cmdline"));
        c.insert(s.network.clone(), json!({"set": true, "source": "cmdline"}));
        c.insert("lightning-dir".into(), text(&s.lightning_dir, "cmdline"));
        c.insert("rpc-file".into(), text("lightning-rpc", "default"));
        c.insert("fee-base".into(), int(1000, "default"));
        c.insert("fee-per-satoshi".into(), int(10, "default"));
        let source = if s.cltv_delta == 34 { "default" } else { "cmdline" };
        c.insert("cltv-delta".into(), int(u64::from(s.cltv_delta), source));
        c.insert("max-concurrent-htlcs".into(), int(30, "default"));
        c.insert(
            "htlc-minimum-msat".into(),
            json!({"value_msat": 0, "source": "default"}),
        );
        for (k, v) in &s.extra_configs {
            c.insert(k.clone(), v.clone());
        }
        c
    }
}

fn paging(p: &Value) -> (u64, usize) {
    let start = p.get("start").and_then(Value::as_u64).unwrap_or(0);
    let limit = p
        .get("limit")
        .and_then(Value::as_u64)
        .map_or(usize::MAX, |l| l as usize);
    (start, limit)
}

/// Parses an amount the way lightningd accepts it in params.
fn parse_msat(v: &Value) -> Result<u64, JsonRpcError> {
    let bad = || JsonRpcError::new(INVALID_PARAMS, format!("should be a millisatoshi amount: {v}"));
    match v {
        Value::Number(n) => n.as_u64().ok_or_else(bad),
        Value::String(s) => {
            if let Some(n) = s.strip_suffix("msat") {
                n.parse().map_err(|_| bad())
            } else if let Some(n) = s.strip_suffix("sat") {
                n.parse::<u64>().map(|x| x * 1000).map_err(|_| bad())
            } else if let Some(n) = s.strip_suffix("btc") {
                let (whole, frac) = n.split_once('.').unwrap_or((n, ""));
                if frac.len() > 11 {
                    return Err(bad());
                }
                let whole: u64 = whole.parse().map_err(|_| bad())?;
                let frac_val: u64 = if frac.is_empty() {
                    0
                } else {
                    format!("{frac:0<11}").parse().map_err(|_| bad())?
                };
                Ok(whole * 100_000_000_000 + frac_val)
            } else {
                s.parse().map_err(|_| bad())
            }
        }
        _ => Err(bad()),
    }
}

/// Private key of one of [`PUBKEYS`]: they are k·G, so the key is k.
pub fn secret_key_of(node_id: &str) -> Option<[u8; 32]> {
    let k = PUBKEYS.iter().position(|p| *p == node_id)? + 1;
    let mut key = [0u8; 32];
    key[31] = k as u8;
    Some(key)
}

/// What lightningd's `signinvoice` does: replace the signature of a BOLT11
/// invoice with the node's, whatever signature it carried. Like lightningd,
/// refuses an invoice for another network.
pub fn sign_invoice(invstring: &str, node_id: &str, network: &str) -> Result<String, String> {
    use bitcoin::secp256k1::{Secp256k1, SecretKey};
    use lightning_invoice::{Currency, SignedRawBolt11Invoice};
    let parsed: SignedRawBolt11Invoice = invstring
        .parse()
        .map_err(|e| format!("Unparsable invoice: {e:?}"))?;
    let (raw, _, _) = parsed.into_parts();
    let expected = match network {
        "bitcoin" => Currency::Bitcoin,
        "testnet" | "testnet4" => Currency::BitcoinTestnet,
        "signet" => Currency::Signet,
        _ => Currency::Regtest,
    };
    if raw.hrp.currency != expected {
        return Err(format!(
            "Invoice is for another network: {:?}, we are on {network}",
            raw.hrp.currency
        ));
    }
    let secret = secret_key_of(node_id)
        .ok_or_else(|| format!("fake node cannot sign as {node_id}: use one of harness::pubkey(i)"))?;
    let key = SecretKey::from_slice(&secret).map_err(|e| e.to_string())?;
    let secp = Secp256k1::signing_only();
    let signed = raw
        .sign::<_, std::convert::Infallible>(|msg| Ok(secp.sign_ecdsa_recoverable(msg, &key)))
        .unwrap_or_else(|never| match never {});
    Ok(signed.to_string())
}

/// Positional parameter order of the commands the fake implements, as
/// lightningd declares them (the order of its `param()` calls).
fn positional_order(method: &str) -> Option<&'static [&'static str]> {
    Some(match method {
        "getinfo" => &[],
        "listpeerchannels" => &["id", "short_channel_id", "channel_id"],
        "listpeers" => &["id", "level"],
        "listfunds" => &["spent"],
        "listchannels" => &["short_channel_id", "source", "destination"],
        "listnodes" => &["id"],
        "listforwards" => &["status", "in_channel", "out_channel", "index", "start", "limit"],
        "listinvoices" => &[
            "label",
            "invstring",
            "payment_hash",
            "offer_id",
            "index",
            "start",
            "limit",
        ],
        "setchannel" => &[
            "id",
            "feebase",
            "feeppm",
            "htlcmin",
            "htlcmax",
            "enforcedelay",
            "ignorefeelimits",
        ],
        "signinvoice" => &["invstring"],
        "sendpay" => &[
            "route",
            "payment_hash",
            "label",
            "amount_msat",
            "bolt11",
            "payment_secret",
            "partid",
            "localinvreqid",
            "groupid",
            "payment_metadata",
            "description",
        ],
        "waitsendpay" => &["payment_hash", "timeout", "partid", "groupid"],
        "feerates" => &["style"],
        "listconfigs" => &["config"],
        "waitblockheight" => &["blockheight", "timeout"],
        _ => return None,
    })
}

/// Converts params to an object. Positional params are mapped by the
/// command's declared order, like lightningd's parser does.
fn named_params(method: &str, params: &Value) -> Result<Value, JsonRpcError> {
    match params {
        Value::Null => Ok(json!({})),
        Value::Object(_) => Ok(params.clone()),
        Value::Array(items) => {
            let Some(order) = positional_order(method) else {
                // Not a command the fake implements: keep the array (the
                // schema check then verifies arity only) and let a script,
                // a handler or "unknown command" answer.
                return Ok(params.clone());
            };
            if items.len() > order.len() {
                return Err(JsonRpcError::new(
                    INVALID_PARAMS,
                    format!(
                        "too many parameters: got {}, expected at most {}",
                        items.len(),
                        order.len()
                    ),
                ));
            }
            let mut m = Map::new();
            for (name, v) in order.iter().zip(items) {
                // lightning-cli sends `null` for skipped optional params.
                if !v.is_null() {
                    m.insert((*name).to_string(), v.clone());
                }
            }
            Ok(Value::Object(m))
        }
        other => Err(JsonRpcError::new(
            INVALID_PARAMS,
            format!("params must be an object or an array, got {other}"),
        )),
    }
}

// ---- Simulated network ------------------------------------------------------------------
//
// Gossip channels carry per-direction liquidity (`GossipChannel::liquidity_msat`); our own
// channels keep theirs in `Channel` (`spendable_msat` out, `receivable_msat` in), and their
// gossip entries are listed with the policy `Channel` holds, so `listchannels` and
// `listpeerchannels` never disagree. `sendpay` walks the route hop by hop like the
// forwarding nodes would; an HTLC that reaches our node goes to the plugin's
// `htlc_accepted` hook through [`FakeNode::set_htlc_hook`] (see [`deliver_htlcs`]), and
// its answer settles or fails the payment, moving the balances along the route.

/// Receives the `htlc_accepted` payload of an HTLC that reached our node and returns the
/// hook's answer (the JSON-RPC `result`), or why there is none.
pub type HtlcHook = Arc<dyn Fn(&Value) -> Result<Value, String> + Send + Sync>;

/// lightningd's error codes for payments.
pub const PAY_IN_PROGRESS: i64 = 200;
pub const PAY_DESTINATION_PERM_FAIL: i64 = 203;
pub const PAY_TRY_OTHER_ROUTE: i64 = 204;
pub const PAY_NO_SUCH_PAYMENT: i64 = 208;

/// BOLT 4 failure codes the simulation produces.
pub mod failcode {
    pub const TEMPORARY_CHANNEL_FAILURE: u32 = 0x1007;
    pub const AMOUNT_BELOW_MINIMUM: u32 = 0x100B;
    pub const FEE_INSUFFICIENT: u32 = 0x100C;
    pub const INCORRECT_CLTV_EXPIRY: u32 = 0x100D;
    pub const CHANNEL_DISABLED: u32 = 0x1014;
    pub const TEMPORARY_NODE_FAILURE: u32 = 0x2002;
    pub const UNKNOWN_NEXT_PEER: u32 = 0x400A;
    pub const INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS: u32 = 0x400F;

    /// lightningd's `failcodename`.
    pub fn name(code: u32) -> String {
        match code {
            TEMPORARY_CHANNEL_FAILURE => "WIRE_TEMPORARY_CHANNEL_FAILURE".into(),
            AMOUNT_BELOW_MINIMUM => "WIRE_AMOUNT_BELOW_MINIMUM".into(),
            FEE_INSUFFICIENT => "WIRE_FEE_INSUFFICIENT".into(),
            INCORRECT_CLTV_EXPIRY => "WIRE_INCORRECT_CLTV_EXPIRY".into(),
            CHANNEL_DISABLED => "WIRE_CHANNEL_DISABLED".into(),
            TEMPORARY_NODE_FAILURE => "WIRE_TEMPORARY_NODE_FAILURE".into(),
            UNKNOWN_NEXT_PEER => "WIRE_UNKNOWN_NEXT_PEER".into(),
            INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS => "WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS".into(),
            other => format!("UNKNOWN_{other:#06x}"),
        }
    }
}

/// One hop of a `sendpay` route: the HTLC offered to `id` over `channel`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendpayHop {
    pub id: String,
    pub channel: String,
    pub amount_msat: u64,
    /// CLTV relative to the block height (lightningd adds `blockheight + 1`).
    pub delay: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    Pending,
    Complete,
    Failed,
}

/// Where and why a payment failed: lightningd's routing failure object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteFailure {
    /// 0 for our node, `i` for the node at the end of hop `i - 1`.
    pub erring_index: usize,
    pub erring_node: String,
    pub erring_channel: String,
    pub erring_direction: u32,
    pub failcode: u32,
    /// [`PAY_TRY_OTHER_ROUTE`] along the route, [`PAY_DESTINATION_PERM_FAIL`] at the end.
    pub code: i64,
    pub detail: String,
}

/// One `sendpay` attempt and what became of it.
#[derive(Clone, Debug)]
pub struct Payment {
    pub created_index: u64,
    pub updated_index: Option<u64>,
    pub payment_hash: String,
    pub route: Vec<SendpayHop>,
    /// Delivered to the destination.
    pub amount_msat: u64,
    /// Left our node: the first hop's amount.
    pub amount_sent_msat: u64,
    pub destination: String,
    pub created_at: u64,
    pub completed_at: Option<u64>,
    pub status: PaymentStatus,
    pub preimage: Option<String>,
    pub failure: Option<RouteFailure>,
    /// The `htlc_accepted` payload sent to the plugin, if the HTLC reached us.
    pub hook_payload: Option<Value>,
    /// The hook's answer, if any.
    pub hook_answer: Option<Value>,
    /// While in flight: the HTLC id on each hop that is one of our channels.
    htlc_ids: Vec<Option<u64>>,
    locked: bool,
}

impl Payment {
    /// What the route cost: sent minus delivered.
    pub fn fee_msat(&self) -> u64 {
        self.amount_sent_msat.saturating_sub(self.amount_msat)
    }

    pub fn scids(&self) -> Vec<String> {
        self.route.iter().map(|h| h.channel.clone()).collect()
    }

    fn fields(&self) -> Value {
        let mut v = json!({
            "created_index": self.created_index,
            "id": self.created_index,
            "payment_hash": self.payment_hash,
            "groupid": 1,
            "destination": self.destination,
            "amount_msat": self.amount_msat,
            "amount_sent_msat": self.amount_sent_msat,
            "created_at": self.created_at,
        });
        if let Some(u) = self.updated_index {
            v["updated_index"] = json!(u);
        }
        v
    }

    /// `sendpay`'s answer, or `waitsendpay`'s for a complete payment.
    fn to_json(&self) -> Value {
        let mut v = self.fields();
        match self.status {
            PaymentStatus::Complete => {
                v["status"] = json!("complete");
                v["completed_at"] = json!(self.completed_at.unwrap_or(self.created_at));
                v["payment_preimage"] = json!(self.preimage);
            }
            _ => {
                v["status"] = json!("pending");
                v["message"] = json!("Monitor status with listpays or waitsendpay");
            }
        }
        v
    }

    /// lightningd's error for a failed payment, the routing failure object as `data`.
    fn failure_error(&self) -> JsonRpcError {
        let f = self.failure.clone().unwrap_or_else(|| RouteFailure {
            erring_index: 0,
            erring_node: String::new(),
            erring_channel: String::new(),
            erring_direction: 0,
            failcode: failcode::TEMPORARY_NODE_FAILURE,
            code: -1,
            detail: "failed".into(),
        });
        let name = failcode::name(f.failcode);
        let mut data = self.fields();
        data["status"] = json!("failed");
        data["erring_index"] = json!(f.erring_index);
        data["failcode"] = json!(f.failcode);
        data["failcodename"] = json!(name);
        data["erring_node"] = json!(f.erring_node);
        data["erring_channel"] = json!(f.erring_channel);
        data["erring_direction"] = json!(f.erring_direction);
        data["raw_message"] = json!(format!("{:04x}", f.failcode));
        JsonRpcError {
            code: f.code,
            message: format!("failed: {name} ({})", f.detail),
            data: Some(data),
        }
    }
}

/// One direction of a channel as a forwarding node sees it.
#[derive(Clone, Debug)]
struct HopPolicy {
    base: u64,
    ppm: u64,
    delay: u32,
    htlc_min: u64,
    htlc_max: u64,
    active: bool,
    /// What the sending side can forward now (`u64::MAX`: not simulated).
    liquidity: u64,
    /// Index in `channels` when the channel is one of ours.
    ours: Option<usize>,
}

fn our_channel_between(s: &NodeState, scid: &str, from: &str, to: &str) -> Option<usize> {
    s.channels.iter().position(|c| {
        c.short_channel_id.as_deref() == Some(scid)
            && ((from == s.id && to == c.peer_id) || (to == s.id && from == c.peer_id))
    })
}

/// `from` → `to` over `scid`: our channel (policy and balances from `Channel`), else the
/// gossip entry.
fn directed(s: &NodeState, scid: &str, from: &str, to: &str) -> Option<HopPolicy> {
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
fn gossip_view(s: &NodeState) -> Vec<GossipChannel> {
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

/// BOLT 4 final-hop payload: `amt_to_forward` (2), `outgoing_cltv_value` (4) and, with a
/// secret, `payment_data` (8).
fn final_payload(amount: u64, cltv: u32, secret_total: Option<(&str, u64)>) -> String {
    fn tu(v: u64) -> Vec<u8> {
        let b = v.to_be_bytes();
        let skip = b.iter().take_while(|x| **x == 0).count();
        b[skip..].to_vec()
    }
    let mut out = Vec::new();
    let mut record = |t: u8, value: Vec<u8>| {
        out.push(t);
        out.push(value.len() as u8);
        out.extend(value);
    };
    record(2, tu(amount));
    record(4, tu(u64::from(cltv)));
    if let Some((secret, total)) = secret_total {
        let mut v = hex::decode(secret).unwrap_or_default();
        v.extend(tu(total));
        record(8, v);
    }
    hex::encode(out)
}

fn parse_hop(v: &Value) -> Result<SendpayHop, JsonRpcError> {
    let bad = |m: &str| JsonRpcError::new(INVALID_PARAMS, format!("route: {m}: {v}"));
    let id = v
        .get("id")
        .or_else(|| v.get("node_id_out"))
        .and_then(Value::as_str)
        .ok_or_else(|| bad("hop without id"))?;
    let channel = match (v.get("channel"), v.get("short_channel_id_dir")) {
        (Some(c), _) => c.as_str().map(str::to_string),
        (None, Some(d)) => d.as_str().and_then(|d| d.split('/').next()).map(str::to_string),
        (None, None) => None,
    }
    .ok_or_else(|| bad("hop without channel"))?;
    let amount = v
        .get("amount_msat")
        .or_else(|| v.get("amount_out_msat"))
        .ok_or_else(|| bad("hop without amount_msat"))
        .and_then(parse_msat)?;
    let delay = v
        .get("delay")
        .or_else(|| v.get("cltv_out"))
        .and_then(Value::as_u64)
        .and_then(|d| u32::try_from(d).ok())
        .ok_or_else(|| bad("hop without delay"))?;
    Ok(SendpayHop {
        id: id.to_string(),
        channel,
        amount_msat: amount,
        delay,
    })
}

impl FakeNode {
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

    /// Every `sendpay` attempt so far, oldest first.
    pub fn payments(&self) -> Vec<Payment> {
        self.lock().payments.clone()
    }

    /// Where HTLCs that reach our node go: `hook` gets the `htlc_accepted` payload and
    /// returns the plugin's answer. It runs on its own thread per HTLC, so it may block.
    /// [`deliver_htlcs`] sets one that calls the plugin through [`Lightningd`].
    pub fn set_htlc_hook(&self, hook: impl Fn(&Value) -> Result<Value, String> + Send + Sync + 'static) {
        self.with(|s| s.htlc_hook = Some(Arc::new(hook)));
    }

    pub fn clear_htlc_hook(&self) {
        self.with(|s| s.htlc_hook = None);
    }

    /// The hook in place, e.g. to wrap it (hold an HTLC, then pass it on).
    pub fn htlc_hook(&self) -> Option<HtlcHook> {
        self.lock().htlc_hook.clone()
    }

    /// Most payments that were in flight (HTLCs out, not yet settled or failed) at once.
    pub fn peak_payments_in_flight(&self) -> usize {
        self.lock().peak_in_flight
    }

    /// Waits until no payment is in flight.
    pub fn wait_payments_settled(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lock();
        while guard.payments.iter().any(|p| p.status == PaymentStatus::Pending) {
            let now = Instant::now();
            assert!(now < deadline, "payments still in flight after {timeout:?}");
            guard = self
                .inner
                .1
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// lightningd's `sendpay`: checks the first hop at once (a local failure is the
    /// command's error), walks the rest like the forwarding nodes would, and hands an HTLC
    /// that reaches us to the hook. The outcome is for `waitsendpay`.
    fn sendpay(&self, p: &Value) -> RpcResult {
        let route: Vec<SendpayHop> = p
            .get("route")
            .and_then(Value::as_array)
            .ok_or_else(|| JsonRpcError::new(INVALID_PARAMS, "route: should be an array"))?
            .iter()
            .map(parse_hop)
            .collect::<Result<_, _>>()?;
        let Some(last) = route.last().cloned() else {
            return Err(JsonRpcError::new(INVALID_PARAMS, "Empty route"));
        };
        let hash = p
            .get("payment_hash")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let amount = p.get("amount_msat").map(parse_msat).transpose()?;
        let mut s = self.lock();
        let to_self = last.id == s.id;
        let delivered = match amount {
            None if to_self => {
                return Err(JsonRpcError::new(
                    INVALID_PARAMS,
                    "Must specify amount_msat for a payment to ourselves",
                ))
            }
            None => last.amount_msat,
            Some(a) if !to_self && a != last.amount_msat => {
                return Err(JsonRpcError::new(
                    INVALID_PARAMS,
                    format!(
                        "Do not specify amount_msat ({a}msat) without partid: if you do, it must be exactly the final amount ({}msat)",
                        last.amount_msat
                    ),
                ))
            }
            Some(a) => a,
        };
        if let Some(prev) = s.payments.iter().rev().find(|x| x.payment_hash == hash) {
            match prev.status {
                PaymentStatus::Complete | PaymentStatus::Pending => return Ok(prev.to_json()),
                PaymentStatus::Failed => {}
            }
        }
        let created_index = s.payments.len() as u64 + 1;
        let mut payment = Payment {
            created_index,
            updated_index: None,
            payment_hash: hash,
            route: route.clone(),
            amount_msat: delivered,
            amount_sent_msat: route[0].amount_msat,
            destination: last.id.clone(),
            created_at: now_secs(),
            completed_at: None,
            status: PaymentStatus::Pending,
            preimage: None,
            failure: None,
            hook_payload: None,
            hook_answer: None,
            htlc_ids: vec![None; route.len()],
            locked: false,
        };
        if let Err(failure) = walk(&s, &route) {
            payment.status = PaymentStatus::Failed;
            payment.updated_index = Some(created_index);
            let local = failure.erring_index == 0;
            payment.failure = Some(failure);
            let answer = if local {
                // Our own channel refused the HTLC: sendpay itself fails.
                Err(payment.failure_error())
            } else {
                Ok(payment.to_json())
            };
            s.payments.push(payment);
            drop(s);
            self.changed();
            return answer;
        }
        lock_route(&mut s, &mut payment);
        let answer = payment.to_json();
        s.payments.push(payment);
        let in_flight = s.payments.iter().filter(|x| x.locked).count();
        s.peak_in_flight = s.peak_in_flight.max(in_flight);
        drop(s);
        self.changed();
        let node = self.clone();
        std::thread::Builder::new()
            .name(format!("fake-htlc-{created_index}"))
            .spawn(move || node.arrive(created_index))
            .expect("spawn HTLC thread");
        Ok(answer)
    }

    /// The HTLC of payment `index` reaches the destination: our node asks the plugin.
    fn arrive(&self, index: u64) {
        let (payload, hook, hash) = {
            let s = self.lock();
            let Some(pay) = s.payments.iter().find(|x| x.created_index == index) else {
                return;
            };
            let n = pay.route.len();
            let last = &pay.route[n - 1];
            if last.id != s.id {
                // Another node: the simulation keeps no invoices for it.
                drop(s);
                self.finish(
                    index,
                    Err((
                        failcode::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS,
                        "no invoice".into(),
                    )),
                );
                return;
            }
            let cltv = s.blockheight + 1 + last.delay;
            let peer = if n >= 2 {
                pay.route[n - 2].id.clone()
            } else {
                s.id.clone()
            };
            let payload = json!({
                "peer_id": peer,
                "onion": {
                    "payload": final_payload(last.amount_msat, cltv, None),
                    "type": "tlv",
                    "forward_msat": last.amount_msat,
                    "outgoing_cltv_value": cltv,
                    "total_msat": pay.amount_msat,
                    "next_onion": "00".repeat(1366),
                    "shared_secret": hash_hex(&format!("shared:{}:{index}", pay.payment_hash)),
                },
                "htlc": {
                    "short_channel_id": last.channel,
                    "id": pay.htlc_ids[n - 1].unwrap_or(0),
                    "amount_msat": last.amount_msat,
                    "cltv_expiry": cltv,
                    "cltv_expiry_relative": cltv - s.blockheight,
                    "payment_hash": pay.payment_hash,
                }
            });
            (payload, s.htlc_hook.clone(), pay.payment_hash.clone())
        };
        if let Err(e) = schemas().check_hook_request("htlc_accepted", &payload) {
            self.violation(format!("simulated htlc_accepted payload is invalid: {e}"));
        }
        self.with(|s| {
            if let Some(p) = s.payments.iter_mut().find(|x| x.created_index == index) {
                p.hook_payload = Some(payload.clone());
            }
        });
        let answer = match hook {
            Some(h) => h(&payload),
            None => Err("an HTLC reached our node but no htlc_accepted hook is attached \
                         (run the payment inside harness::fake_node::deliver_htlcs)"
                .into()),
        };
        self.with(|s| {
            if let Some(p) = s.payments.iter_mut().find(|x| x.created_index == index) {
                p.hook_answer = answer.as_ref().ok().cloned();
            }
        });
        let outcome = match answer {
            Err(e) => {
                self.violation(format!("htlc_accepted for payment {index}: {e}"));
                Err((
                    failcode::TEMPORARY_NODE_FAILURE,
                    "no answer from the htlc_accepted hook".into(),
                ))
            }
            Ok(v) => match v.get("result").and_then(Value::as_str) {
                Some("resolve") => {
                    let key = v.get("payment_key").and_then(Value::as_str).unwrap_or_default();
                    if hex::decode(key).is_ok_and(|k| k.len() == 32) && payment_hash_of(key) == hash {
                        Ok(key.to_string())
                    } else {
                        self.violation(format!(
                            "htlc_accepted resolved payment {index} with a payment_key that does not hash to {hash}: {v}"
                        ));
                        Err((
                            failcode::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS,
                            "bad payment_key".into(),
                        ))
                    }
                }
                Some("fail") => {
                    let code = v
                        .get("failure_message")
                        .and_then(Value::as_str)
                        .and_then(|m| hex::decode(m).ok())
                        .filter(|b| b.len() >= 2)
                        .map_or(failcode::TEMPORARY_NODE_FAILURE, |b| {
                            u32::from(u16::from_be_bytes([b[0], b[1]]))
                        });
                    Err((code, "failed by the htlc_accepted hook".into()))
                }
                // lightningd would look for an invoice; the simulation keeps none for
                // payments to ourselves.
                _ => Err((
                    failcode::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS,
                    "no invoice for this payment hash".into(),
                )),
            },
        };
        self.finish(index, outcome);
    }

    /// Settles (moves the balances along the route) or fails (gives them back) payment
    /// `index`.
    fn finish(&self, index: u64, outcome: Result<String, (u32, String)>) {
        self.with(|s| {
            let us = s.id.clone();
            let updated = s
                .payments
                .iter()
                .filter_map(|p| p.updated_index)
                .max()
                .unwrap_or(0)
                .max(s.payments.len() as u64)
                + 1;
            let Some(pos) = s.payments.iter().position(|x| x.created_index == index) else {
                return;
            };
            let mut pay = s.payments[pos].clone();
            unlock_route(s, &mut pay, outcome.is_ok());
            pay.updated_index = Some(updated);
            pay.completed_at = Some(now_secs());
            match outcome {
                Ok(preimage) => {
                    pay.status = PaymentStatus::Complete;
                    pay.preimage = Some(preimage);
                }
                Err((code, detail)) => {
                    let n = pay.route.len();
                    let from = if n >= 2 {
                        pay.route[n - 2].id.clone()
                    } else {
                        us.clone()
                    };
                    pay.status = PaymentStatus::Failed;
                    pay.failure = Some(RouteFailure {
                        erring_index: n,
                        erring_node: pay.destination.clone(),
                        erring_channel: pay.route[n - 1].channel.clone(),
                        erring_direction: u32::from(from > pay.destination),
                        failcode: code,
                        code: PAY_DESTINATION_PERM_FAIL,
                        detail,
                    });
                }
            }
            s.payments[pos] = pay;
        });
    }

    /// lightningd's `waitsendpay`: the outcome of the latest attempt with this hash.
    fn waitsendpay(&self, p: &Value) -> RpcResult {
        let hash = p
            .get("payment_hash")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // Without a timeout lightningd waits for ever; a test should not.
        let timeout = Duration::from_secs(p.get("timeout").and_then(Value::as_u64).unwrap_or(600));
        let deadline = Instant::now() + timeout;
        let mut guard = self.lock();
        loop {
            let Some(pay) = guard.payments.iter().rev().find(|x| x.payment_hash == hash) else {
                return Err(JsonRpcError::new(
                    PAY_NO_SUCH_PAYMENT,
                    format!("Never attempted payment to {hash}"),
                ));
            };
            match pay.status {
                PaymentStatus::Complete => return Ok(pay.to_json()),
                PaymentStatus::Failed => return Err(pay.failure_error()),
                PaymentStatus::Pending => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(JsonRpcError::new(PAY_IN_PROGRESS, "Timed out"));
            }
            guard = self
                .inner
                .1
                .wait_timeout(guard, (deadline - now).min(Duration::from_millis(200)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

/// Checks every hop as its sending node would, in route order: the first failure wins.
fn walk(s: &NodeState, route: &[SendpayHop]) -> Result<(), RouteFailure> {
    for (i, hop) in route.iter().enumerate() {
        let from = if i == 0 {
            s.id.as_str()
        } else {
            route[i - 1].id.as_str()
        };
        let fail = |code: u32, detail: &str| RouteFailure {
            erring_index: i,
            erring_node: from.to_string(),
            erring_channel: hop.channel.clone(),
            erring_direction: u32::from(from > hop.id.as_str()),
            failcode: code,
            code: PAY_TRY_OTHER_ROUTE,
            detail: if i == 0 {
                format!("First peer not ready: {detail}")
            } else {
                format!("reply from remote: {detail}")
            },
        };
        let Some(d) = directed(s, &hop.channel, from, &hop.id) else {
            return Err(fail(failcode::UNKNOWN_NEXT_PEER, "no such channel to that node"));
        };
        if !d.active {
            return Err(fail(failcode::CHANNEL_DISABLED, "channel disabled"));
        }
        if i > 0 {
            let prev = &route[i - 1];
            let fee = d.base + (u128::from(hop.amount_msat) * u128::from(d.ppm) / 1_000_000) as u64;
            if prev.amount_msat < hop.amount_msat.saturating_add(fee) {
                return Err(fail(failcode::FEE_INSUFFICIENT, "fee insufficient"));
            }
            if prev.delay < hop.delay.saturating_add(d.delay) {
                return Err(fail(failcode::INCORRECT_CLTV_EXPIRY, "cltv expiry too soon"));
            }
        }
        if hop.amount_msat < d.htlc_min {
            return Err(fail(failcode::AMOUNT_BELOW_MINIMUM, "below htlc minimum"));
        }
        if hop.amount_msat > d.htlc_max {
            return Err(fail(failcode::TEMPORARY_CHANNEL_FAILURE, "above htlc maximum"));
        }
        if hop.amount_msat > d.liquidity {
            return Err(fail(
                failcode::TEMPORARY_CHANNEL_FAILURE,
                "insufficient liquidity",
            ));
        }
    }
    Ok(())
}

/// Puts the payment's HTLCs in flight: pending HTLCs on our channels, the amounts taken
/// from the sending side of simulated ones.
fn lock_route(s: &mut NodeState, pay: &mut Payment) {
    let us = s.id.clone();
    let height = s.blockheight;
    for (i, hop) in pay.route.iter().enumerate() {
        let from = if i == 0 {
            us.clone()
        } else {
            pay.route[i - 1].id.clone()
        };
        let expiry = height + 1 + hop.delay;
        if let Some(c) = our_channel_between(s, &hop.channel, &from, &hop.id) {
            let id = s.next_htlc_id;
            s.next_htlc_id += 1;
            let htlc = if from == us {
                Htlc::outgoing(id, hop.amount_msat, expiry, &pay.payment_hash)
            } else {
                Htlc::incoming(id, hop.amount_msat, expiry, &pay.payment_hash)
            };
            s.channels[c].htlcs.push(htlc);
            pay.htlc_ids[i] = Some(id);
        } else if let Some(g) = s
            .gossip_channels
            .iter_mut()
            .find(|g| g.short_channel_id == hop.channel && g.source == from && g.destination == hop.id)
        {
            if let Some(l) = g.liquidity_msat.as_mut() {
                *l -= hop.amount_msat;
            }
        }
    }
    pay.locked = true;
}

/// Ends the payment's HTLCs: fulfilled, each amount moves to the receiving side; failed,
/// it goes back to the sender.
fn unlock_route(s: &mut NodeState, pay: &mut Payment, fulfilled: bool) {
    if !pay.locked {
        return;
    }
    let us = s.id.clone();
    for (i, hop) in pay.route.iter().enumerate() {
        let from = if i == 0 {
            us.clone()
        } else {
            pay.route[i - 1].id.clone()
        };
        if let Some(id) = pay.htlc_ids[i] {
            if let Some(c) = our_channel_between(s, &hop.channel, &from, &hop.id) {
                let ch = &mut s.channels[c];
                ch.htlcs.retain(|h| h.id != id);
                if fulfilled {
                    if from == us {
                        ch.to_us_msat = ch.to_us_msat.saturating_sub(hop.amount_msat);
                    } else {
                        ch.to_us_msat = (ch.to_us_msat + hop.amount_msat).min(ch.total_msat);
                    }
                }
            }
            continue;
        }
        let (credit_from, credit_to) = if fulfilled {
            (hop.id.as_str(), from.as_str())
        } else {
            (from.as_str(), hop.id.as_str())
        };
        if let Some(l) = s
            .gossip_channels
            .iter_mut()
            .find(|g| {
                g.short_channel_id == hop.channel && g.source == credit_from && g.destination == credit_to
            })
            .and_then(|g| g.liquidity_msat.as_mut())
        {
            *l += hop.amount_msat;
        }
    }
    pay.locked = false;
    pay.htlc_ids.iter_mut().for_each(|h| *h = None);
}

/// How long the bridge waits for the plugin to answer one `htlc_accepted`.
const HOOK_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `body` while HTLCs that reach our node are handed to the plugin's
/// `htlc_accepted` hook through `ld` (checked like [`Lightningd::call_hook`]) and settled
/// by its answer. Wrap every call that makes the plugin pay (e.g. `rebalance-execute`).
/// Problems (no answer, an error answer) become violations.
pub fn deliver_htlcs<R>(ld: &Lightningd, body: impl FnOnce() -> R) -> R {
    type Request = (Value, mpsc::Sender<Result<Value, String>>);
    let node = ld.node().clone();
    let (tx, rx) = mpsc::channel::<Request>();
    let tx = Mutex::new(tx);
    node.set_htlc_hook(move |payload| {
        let (reply_tx, reply_rx) = mpsc::channel();
        tx.lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((payload.clone(), reply_tx))
            .map_err(|_| "the htlc_accepted bridge is gone".to_string())?;
        reply_rx
            .recv()
            .map_err(|_| "the htlc_accepted bridge stopped before the plugin answered".to_string())?
    });
    struct Stop<'a>(&'a AtomicBool, &'a FakeNode);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.1.clear_htlc_hook();
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let stop = &stop;
        scope.spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match rx.recv_timeout(Duration::from_millis(20)) {
                    Ok((payload, reply)) => {
                        // One thread per HTLC: the plugin may hold several at once.
                        scope.spawn(move || {
                            let answer = ld
                                .try_send_hook("htlc_accepted", payload)
                                .and_then(|p| ld.try_wait_hook(&p, HOOK_ANSWER_TIMEOUT))
                                .map_err(|e| e.to_string());
                            let _ = reply.send(answer);
                        });
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
        });
        let _stop = Stop(stop, &node);
        body()
    })
}

/// The fake `lightning-rpc` socket. Serves until dropped; dropping also
/// closes every connection and removes the socket file.
pub struct RpcServer {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<()>>,
    connections: Arc<Mutex<Vec<UnixStream>>>,
}

impl RpcServer {
    pub fn start(node: FakeNode, path: &Path) -> std::io::Result<RpcServer> {
        // Like lightningd, take over a stale socket left by a killed run.
        if path.exists() {
            std::fs::remove_file(path)?;
        }
        let listener = UnixListener::bind(path)?;
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<UnixStream>>> = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(AtomicUsize::new(0));
        let accept_thread = {
            let stop = stop.clone();
            let connections = connections.clone();
            std::thread::Builder::new()
                .name("fake-rpc-accept".into())
                .spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        match listener.accept() {
                            Ok((stream, _)) => {
                                // Accepted sockets inherit non-blocking mode
                                // on some platforms; serve them blocking.
                                let _ = stream.set_nonblocking(false);
                                if let Ok(c) = stream.try_clone() {
                                    connections.lock().unwrap().push(c);
                                }
                                let n = counter.fetch_add(1, Ordering::SeqCst);
                                let node = node.clone();
                                let _ = std::thread::Builder::new()
                                    .name(format!("fake-rpc-conn-{n}"))
                                    .spawn(move || serve_connection(node, stream, n));
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                                std::thread::sleep(Duration::from_millis(5));
                            }
                            Err(_) => std::thread::sleep(Duration::from_millis(20)),
                        }
                    }
                })?
        };
        Ok(RpcServer {
            path: path.to_path_buf(),
            stop,
            accept_thread: Some(accept_thread),
            connections,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.accept_thread.take() {
            let _ = t.join();
        }
        for c in self
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Reads requests as a stream of JSON values (lightningd does not require
/// any delimiter on its socket) and answers each, followed by `\n\n`, which
/// `cln-rpc` relies on to split responses.
fn serve_connection(node: FakeNode, stream: UnixStream, connection: usize) {
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let reader = BufReader::new(stream);
    for item in serde_json::Deserializer::from_reader(reader).into_iter::<Value>() {
        match item {
            Ok(request) => {
                let mut bytes = match node.handle_request_wire(&request, connection) {
                    Wire::Json(response) => serde_json::to_vec(&response).expect("serializable"),
                    Wire::Bytes(bytes) => bytes,
                    Wire::Hangup => {
                        let _ = writer.shutdown(std::net::Shutdown::Both);
                        return;
                    }
                };
                bytes.extend_from_slice(b"\n\n");
                if writer.write_all(&bytes).and_then(|_| writer.flush()).is_err() {
                    return;
                }
            }
            Err(e) if e.is_io() => return,
            Err(e) if e.is_eof() => {
                node.violation(format!(
                    "connection {connection} closed in the middle of a request: {e}"
                ));
                return;
            }
            Err(e) => {
                // lightningd drops a connection that sends malformed JSON.
                node.violation(format!("connection {connection} sent invalid JSON: {e}"));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(node: &FakeNode, method: &str, params: Value) -> Value {
        node.handle_request(
            &json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}),
            0,
        )
    }

    fn populated() -> FakeNode {
        let node = FakeNode::new();
        let mut ch = Channel::new(&pubkey(1), "103x1x0", 1_000_000_000, 600_000_000);
        ch.htlcs.push(Htlc::incoming(0, 5_000, 200, &hash_hex("h0")));
        ch.htlcs.push(Htlc::outgoing(3, 7_000, 190, &hash_hex("h1")));
        node.add_channel(ch);
        let mut pending = Channel::new(&pubkey(2), "104x1x0", 500_000_000, 0);
        pending.state = "CHANNELD_AWAITING_LOCKIN".into();
        pending.short_channel_id = None;
        pending.peer_connected = false;
        pending.opener = "remote".into();
        node.add_channel(pending);
        node.add_gossip_channel(&pubkey(0), &pubkey(1), "103x1x0", 1_000_000_000);
        node.add_gossip_node(&pubkey(1), Some("PEER1"));
        node.add_gossip_node(&pubkey(3), None);
        node.add_forward(Forward::settled("103x1x0", "105x1x0", 1_001_010, 1_000_000));
        let mut failed = Forward::settled("103x1x0", "105x1x0", 2_000, 1_000);
        failed.status = ForwardStatus::LocalFailed;
        failed.failcode = Some(16399);
        failed.failreason = Some("WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS".into());
        node.add_forward(failed);
        let mut offered = Forward::settled("103x1x0", "105x1x0", 3_000, 2_000);
        offered.status = ForwardStatus::Offered;
        offered.resolved_time = None;
        node.add_forward(offered);
        node.add_invoice(Invoice::unpaid("a", Some(10_000)));
        let mut paid = Invoice::unpaid("b", None);
        paid.status = InvoiceStatus::Paid;
        paid.amount_received_msat = Some(5000);
        node.add_invoice(paid);
        node
    }

    #[test]
    fn builtin_answers_match_schemas() {
        let node = populated();
        node.with(|s| {
            s.extra_configs.insert(
                "ballast-db-path".into(),
                json!({"value_str": "ballast", "source": "default", "plugin": "/x/ballast"}),
            )
        });
        for (method, params) in [
            ("getinfo", json!({})),
            ("listpeerchannels", json!({})),
            ("listpeerchannels", json!([pubkey(1)])),
            ("listpeers", json!({})),
            ("listfunds", json!({})),
            ("listchannels", json!({})),
            ("listchannels", json!({"source": pubkey(0)})),
            ("listnodes", json!({})),
            ("listforwards", json!({})),
            ("listforwards", json!({"status": "settled"})),
            ("listinvoices", json!({})),
            ("listinvoices", json!({"label": "b"})),
            ("feerates", json!({"style": "perkw"})),
            ("feerates", json!(["perkb"])),
            ("listconfigs", json!({})),
            ("listconfigs", json!({"config": "ballast-db-path"})),
            ("waitblockheight", json!({"blockheight": 100})),
            (
                "setchannel",
                json!({"id": "103x1x0", "feebase": "2000msat", "feeppm": 50}),
            ),
        ] {
            let resp = call(&node, method, params.clone());
            assert!(resp.get("result").is_some(), "{method} {params}: {resp}");
        }
        assert_eq!(node.take_violations(), Vec::<String>::new());
        assert_eq!(node.calls().len(), 18);
    }

    #[test]
    fn setchannel_records_and_applies() {
        let node = populated();
        let r = call(
            &node,
            "setchannel",
            json!(["103x1x0", 2000, 55, null, "900000000msat"]),
        );
        assert_eq!(r["result"]["channels"][0]["fee_base_msat"], 2000, "{r}");
        let ch = node.with(|s| s.channels[0].clone());
        assert_eq!((ch.fee_base_msat, ch.fee_proportional_millionths), (2000, 55));
        assert_eq!(ch.htlc_maximum_msat, 900_000_000);
        let lpc = call(&node, "listpeerchannels", json!({"short_channel_id": "103x1x0"}));
        assert_eq!(
            lpc["result"]["channels"][0]["updates"]["local"]["fee_proportional_millionths"],
            55
        );
        let err = call(&node, "setchannel", json!({"id": "999x1x1"}));
        assert_eq!(err["error"]["code"], INVALID_PARAMS);
        assert_eq!(node.calls_to("setchannel").len(), 2);
        assert!(node.take_violations().is_empty());
    }

    #[test]
    fn invalid_traffic_is_flagged() {
        let node = FakeNode::new();
        let r = call(&node, "nosuchmethod", json!({}));
        assert_eq!(r["error"]["code"], METHOD_NOT_FOUND);
        assert!(
            node.take_violations().is_empty(),
            "unknown methods are legitimate"
        );

        let r = call(&node, "listpeerchannels", json!({"id": "nope"}));
        assert_eq!(r["error"]["code"], INVALID_PARAMS);
        let v = node.take_violations();
        assert!(v.len() == 1 && v[0].contains("/id"), "{v:?}");

        node.handle_request(&json!({"id": 1, "method": "getinfo"}), 0);
        assert!(node.take_violations()[0].contains("jsonrpc"));

        node.script_once("getinfo", Scripted::Result(json!({"id": "garbage"})));
        let r = call(&node, "getinfo", json!({}));
        assert_eq!(r["result"]["id"], "garbage", "scripted answers are still sent");
        let v = node.take_violations();
        assert!(
            v.iter()
                .any(|m| m.contains("getinfo") && m.contains("our own answer")),
            "{v:?}"
        );
        // `once` scripts are consumed.
        call(&node, "getinfo", json!({}));
        assert!(node.take_violations().is_empty());
    }

    #[test]
    fn handlers_and_scripts() {
        let node = FakeNode::new();
        node.set_handler("signinvoice", |p| {
            Ok(json!({"bolt11": format!("signed:{}", p["invstring"].as_str().unwrap())}))
        });
        let r = call(&node, "signinvoice", json!(["lnbcrt1x"]));
        assert_eq!(r["result"]["bolt11"], "signed:lnbcrt1x");
        node.script_always("signinvoice", Scripted::Error(JsonRpcError::new(-1, "nope")));
        assert_eq!(
            call(&node, "signinvoice", json!({"invstring": "x"}))["error"]["message"],
            "nope"
        );
        assert_eq!(
            call(&node, "signinvoice", json!({"invstring": "x"}))["error"]["message"],
            "nope"
        );
        node.clear_script("signinvoice");
        // Back to the handler.
        assert_eq!(
            call(&node, "signinvoice", json!({"invstring": "x"}))["result"]["bolt11"],
            "signed:x"
        );
        assert!(node.take_violations().is_empty());
    }

    #[test]
    fn signinvoice_resigns_as_the_node() {
        use bitcoin::hashes::{sha256, Hash};
        use bitcoin::secp256k1::{Secp256k1, SecretKey};
        use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret, SignedRawBolt11Invoice};
        let throwaway = SecretKey::from_slice(&[7u8; 32]).unwrap();
        let unsigned = InvoiceBuilder::new(Currency::Regtest)
            .description("test".into())
            .payment_hash(sha256::Hash::hash(b"p"))
            .payment_secret(PaymentSecret([1; 32]))
            .duration_since_epoch(Duration::from_secs(now_secs()))
            .min_final_cltv_expiry_delta(80)
            .amount_milli_satoshis(5000)
            .build_raw()
            .unwrap()
            .sign::<_, ()>(|m| Ok(Secp256k1::new().sign_ecdsa_recoverable(m, &throwaway)))
            .unwrap()
            .to_string();
        let node = FakeNode::new();
        let r = call(&node, "signinvoice", json!({ "invstring": unsigned }));
        let bolt11 = r["result"]["bolt11"].as_str().unwrap_or_else(|| panic!("{r}"));
        let signed: SignedRawBolt11Invoice = bolt11.parse().unwrap();
        assert!(signed.check_signature());
        let payee = signed.recover_payee_pub_key().unwrap();
        assert_eq!(payee.0.to_string(), node.id());
        assert_ne!(bolt11, unsigned);

        node.with(|s| s.network = "bitcoin".into());
        let r = call(&node, "signinvoice", json!({ "invstring": unsigned }));
        assert!(r["error"]["message"].as_str().unwrap().contains("network"), "{r}");
        let r = call(&node, "signinvoice", json!({"invstring": "lnbcrt1garbage"}));
        assert_eq!(r["error"]["code"], INVALID_PARAMS);
        assert!(node.take_violations().is_empty());
    }

    #[test]
    fn amounts_parse_like_lightningd() {
        assert_eq!(parse_msat(&json!(5)).unwrap(), 5);
        assert_eq!(parse_msat(&json!("5msat")).unwrap(), 5);
        assert_eq!(parse_msat(&json!("5sat")).unwrap(), 5000);
        assert_eq!(parse_msat(&json!("0.001btc")).unwrap(), 100_000_000);
        assert!(parse_msat(&json!("x")).is_err());
    }

    /// A small network: us -A- (A-E) -E- (E-B) -B- us, each channel 1M sat.
    fn simulated() -> (FakeNode, String, String, String) {
        let node = FakeNode::new();
        let (a, b, e) = (pubkey(1), pubkey(2), pubkey(5));
        node.add_public_channel(Channel::new(&a, "100x1x0", 1_000_000_000, 900_000_000));
        node.add_public_channel(Channel::new(&b, "101x1x0", 1_000_000_000, 100_000_000));
        node.add_network_channel(&a, &e, "200x1x0", 1_000_000_000, 600_000_000);
        node.add_network_channel(&e, &b, "201x1x0", 1_000_000_000, 50_000_000);
        (node, a, b, e)
    }

    /// The circle us → A → E → B → us delivering `amount`, with exact fees (1 sat +
    /// 10 ppm everywhere) and CLTV deltas (6 on gossip, 34 on our channels).
    fn circle(a: &str, b: &str, e: &str, us: &str, amount: u64) -> Value {
        let fee = |x: u64| 1000 + x * 10 / 1_000_000;
        let at_b = amount + fee(amount); // B forwards to us
        let at_e = at_b + fee(at_b); // E forwards to B
        let at_a = at_e + fee(at_e); // A forwards to E
        json!([
            {"id": a, "channel": "100x1x0", "amount_msat": at_a, "delay": 18 + 34 + 6 + 6},
            {"id": e, "channel": "200x1x0", "amount_msat": at_e, "delay": 18 + 34 + 6},
            {"id": b, "channel": "201x1x0", "amount_msat": at_b, "delay": 18 + 34},
            {"id": us, "channel": "101x1x0", "amount_msat": amount, "delay": 18},
        ])
    }

    #[test]
    fn sendpay_routes_hop_by_hop_and_moves_balances() {
        let (node, a, b, e) = simulated();
        let us = node.id();
        let preimage = hash_hex("rebalance preimage");
        let hash = payment_hash_of(&preimage);
        let key = preimage.clone();
        node.set_htlc_hook(move |p| {
            assert!(p["htlc"]["cltv_expiry_relative"].as_u64().unwrap() >= 18, "{p}");
            Ok(json!({"result": "resolve", "payment_key": key}))
        });
        // listchannels shows our channels with the policy listpeerchannels has.
        let lc = call(&node, "listchannels", json!({"short_channel_id": "101x1x0"}));
        let from_b = lc["result"]["channels"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["source"] == b.as_str())
            .unwrap()
            .clone();
        assert_eq!(
            (from_b["delay"].as_u64(), from_b["fee_per_millionth"].as_u64()),
            (Some(34), Some(10))
        );

        let route = circle(&a, &b, &e, &us, 40_000_000);
        let sent = route[0]["amount_msat"].as_u64().unwrap();
        let r = call(
            &node,
            "sendpay",
            json!({"route": route, "payment_hash": hash, "amount_msat": 40_000_000}),
        );
        assert_eq!(r["result"]["status"], "pending", "{r}");
        let r = call(&node, "waitsendpay", json!({"payment_hash": hash, "timeout": 10}));
        assert_eq!(r["result"]["status"], "complete", "{r}");
        assert_eq!(r["result"]["payment_preimage"], preimage.as_str());
        assert_eq!(node.channel("100x1x0").unwrap().to_us_msat, 900_000_000 - sent);
        assert_eq!(node.channel("101x1x0").unwrap().to_us_msat, 140_000_000);
        assert!(node.channel("100x1x0").unwrap().htlcs.is_empty());
        let at_e = route[1]["amount_msat"].as_u64().unwrap();
        assert_eq!(node.liquidity("200x1x0", &a), Some(600_000_000 - at_e));
        assert_eq!(node.liquidity("200x1x0", &e), Some(400_000_000 + at_e));
        let at_b = route[2]["amount_msat"].as_u64().unwrap();
        assert_eq!(node.liquidity("201x1x0", &e), Some(50_000_000 - at_b));
        let pay = &node.payments()[0];
        assert_eq!(
            (pay.status, pay.fee_msat()),
            (PaymentStatus::Complete, sent - 40_000_000)
        );
        // Paid before: sendpay hands back the preimage.
        let again = call(
            &node,
            "sendpay",
            json!({"route": route, "payment_hash": hash, "amount_msat": 40_000_000}),
        );
        assert_eq!(again["result"]["status"], "complete", "{again}");

        // E has only ~10M left towards B: the payment fails there, and nothing moves.
        let before = (
            node.channel("100x1x0").unwrap().to_us_msat,
            node.liquidity("200x1x0", &a),
        );
        let hash2 = hash_hex("no preimage known");
        let r = call(
            &node,
            "sendpay",
            json!({"route": circle(&a, &b, &e, &us, 20_000_000), "payment_hash": hash2, "amount_msat": 20_000_000}),
        );
        assert_eq!(r["result"]["status"], "pending", "{r}");
        let r = call(&node, "waitsendpay", json!([hash2, 10]));
        let err = &r["error"];
        assert_eq!(err["code"], PAY_TRY_OTHER_ROUTE, "{r}");
        assert_eq!(err["data"]["erring_index"], 2);
        assert_eq!(err["data"]["erring_node"], e.as_str());
        assert_eq!(err["data"]["erring_channel"], "201x1x0");
        assert_eq!(err["data"]["failcode"], failcode::TEMPORARY_CHANNEL_FAILURE);
        assert_eq!(err["data"]["failcodename"], "WIRE_TEMPORARY_CHANNEL_FAILURE");
        let after = (
            node.channel("100x1x0").unwrap().to_us_msat,
            node.liquidity("200x1x0", &a),
        );
        assert_eq!(before, after);

        // Our own channel cannot send it: sendpay itself fails, at index 0.
        let r = call(
            &node,
            "sendpay",
            json!({"route": circle(&a, &b, &e, &us, 950_000_000), "payment_hash": hash_hex("big"), "amount_msat": 950_000_000}),
        );
        assert_eq!(r["error"]["code"], PAY_TRY_OTHER_ROUTE, "{r}");
        assert_eq!(r["error"]["data"]["erring_index"], 0);
        assert_eq!(r["error"]["data"]["erring_node"], us.as_str());
        assert_eq!(r["error"]["data"]["erring_channel"], "100x1x0");

        // A fee one msat short is refused by the node that charges it.
        let mut short = circle(&a, &b, &e, &us, 1_000_000);
        short[0]["amount_msat"] = json!(short[0]["amount_msat"].as_u64().unwrap() - 1);
        let h = hash_hex("short");
        call(
            &node,
            "sendpay",
            json!({"route": short, "payment_hash": h, "amount_msat": 1_000_000}),
        );
        let r = call(&node, "waitsendpay", json!({"payment_hash": h}));
        assert_eq!(r["error"]["data"]["failcode"], failcode::FEE_INSUFFICIENT, "{r}");
        assert_eq!(r["error"]["data"]["erring_node"], a.as_str());

        // A self-payment needs amount_msat; an unknown hash has nothing to wait for.
        let r = call(
            &node,
            "sendpay",
            json!({"route": circle(&a, &b, &e, &us, 1_000_000), "payment_hash": hash_hex("x")}),
        );
        assert_eq!(r["error"]["code"], INVALID_PARAMS, "{r}");
        let r = call(&node, "waitsendpay", json!({"payment_hash": hash_hex("never")}));
        assert_eq!(r["error"]["code"], PAY_NO_SUCH_PAYMENT, "{r}");
        assert_eq!(node.take_violations(), Vec::<String>::new());
    }

    #[test]
    fn destination_refusal_gives_the_balances_back() {
        let (node, a, b, e) = simulated();
        let us = node.id();
        node.set_htlc_hook(|_| Ok(json!({"result": "fail", "failure_message": "2002"})));
        let h = hash_hex("refused");
        let route = circle(&a, &b, &e, &us, 30_000_000);
        call(
            &node,
            "sendpay",
            json!({"route": route, "payment_hash": h, "amount_msat": 30_000_000}),
        );
        let r = call(&node, "waitsendpay", json!({"payment_hash": h, "timeout": 10}));
        assert_eq!(r["error"]["code"], PAY_DESTINATION_PERM_FAIL, "{r}");
        assert_eq!(r["error"]["data"]["erring_index"], 4);
        assert_eq!(r["error"]["data"]["erring_node"], us.as_str());
        assert_eq!(r["error"]["data"]["failcode"], failcode::TEMPORARY_NODE_FAILURE);
        assert_eq!(node.channel("100x1x0").unwrap().to_us_msat, 900_000_000);
        assert_eq!(node.channel("101x1x0").unwrap().to_us_msat, 100_000_000);
        assert_eq!(node.liquidity("200x1x0", &a), Some(600_000_000));
        assert!(node.channel("101x1x0").unwrap().htlcs.is_empty());

        // `continue`: lightningd finds no invoice for the hash.
        node.set_htlc_hook(|_| Ok(json!({"result": "continue"})));
        let h = hash_hex("continued");
        call(
            &node,
            "sendpay",
            json!({"route": route, "payment_hash": h, "amount_msat": 30_000_000}),
        );
        let r = call(&node, "waitsendpay", json!({"payment_hash": h, "timeout": 10}));
        assert_eq!(
            r["error"]["data"]["failcode"],
            failcode::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS,
            "{r}"
        );
        assert_eq!(node.take_violations(), Vec::<String>::new());

        // No hook attached: a violation, and the payment fails.
        node.clear_htlc_hook();
        let h = hash_hex("nobody");
        call(
            &node,
            "sendpay",
            json!({"route": route, "payment_hash": h, "amount_msat": 30_000_000}),
        );
        let r = call(&node, "waitsendpay", json!({"payment_hash": h, "timeout": 10}));
        assert_eq!(r["error"]["code"], PAY_DESTINATION_PERM_FAIL, "{r}");
        let v = node.take_violations();
        assert!(v.len() == 1 && v[0].contains("no htlc_accepted hook"), "{v:?}");
    }

    #[test]
    fn pubkeys_are_curve_points() {
        for i in 0..PUBKEYS.len() {
            let k = pubkey(i);
            k.parse::<cln_rpc::primitives::PublicKey>()
                .unwrap_or_else(|e| panic!("{k}: {e}"));
        }
    }

    #[test]
    fn socket_serves_streamed_requests() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lightning-rpc");
        let node = FakeNode::new();
        let server = RpcServer::start(node.clone(), &path).unwrap();
        let mut a = UnixStream::connect(&path).unwrap();
        let b = UnixStream::connect(&path).unwrap();
        // Two requests in one write, no delimiter, plus one split in two
        // writes: the server must not depend on framing.
        a.write_all(br#"{"jsonrpc":"2.0","id":1,"method":"getinfo","params":{}}{"jsonrpc":"2.0","id":"x/2","method":"nope"}"#)
            .unwrap();
        a.write_all(br#"{"jsonrpc":"2.0","id":3,"met"#).unwrap();
        a.flush().unwrap();
        std::thread::sleep(Duration::from_millis(50));
        a.write_all(br#"hod":"getinfo"}"#).unwrap();
        let mut b_w = b.try_clone().unwrap();
        b_w.write_all(br#"{"jsonrpc":"2.0","id":9,"method":"getinfo","params":[]}"#)
            .unwrap();
        let read_n = |s: UnixStream, n: usize| -> Vec<Value> {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = Vec::new();
            let mut out = Vec::new();
            let mut s = s;
            while out.len() < n {
                let mut chunk = [0u8; 4096];
                let k = std::io::Read::read(&mut s, &mut chunk).unwrap();
                assert!(k > 0, "server closed early");
                buf.extend_from_slice(&chunk[..k]);
                while let Some(pos) = buf.windows(2).position(|w| w == b"\n\n") {
                    out.push(serde_json::from_slice(&buf[..pos]).unwrap());
                    buf.drain(..pos + 2);
                }
            }
            out
        };
        let ra = read_n(a, 3);
        assert_eq!(ra[0]["id"], 1);
        assert_eq!(ra[0]["result"]["id"], pubkey(0));
        assert_eq!(ra[1]["id"], "x/2");
        assert_eq!(ra[1]["error"]["code"], METHOD_NOT_FOUND);
        assert_eq!(ra[2]["id"], 3);
        let rb = read_n(b, 1);
        assert_eq!(rb[0]["id"], 9);
        let calls = node.calls();
        assert_eq!(calls.len(), 4);
        assert!(calls.iter().any(|c| c.connection != calls[0].connection));
        drop(server);
        assert!(!path.exists(), "socket file must be removed");
        assert!(node.take_violations().is_empty());
    }
}
