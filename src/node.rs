//! What the engine needs from a Lightning node, in ballast's own types.
//!
//! `cln::ClnNode` implements this over lightningd's JSON-RPC socket and the LND sidecar over
//! gRPC; tests and the simulator implement it in memory. Nothing here mentions cln-rpc or
//! tonic types, so the engine stays independent of either daemon.

use crate::engine::bolt11::InvoiceSpec;
use crate::types::{Msat, NodeId, PaymentHash, Preimage, Scid};
use serde::{Deserialize, Serialize};
use std::future::Future;

mod any;
pub use any::AnyNode;

/// The node's identity and chain view.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub id: NodeId,
    pub alias: String,
    pub network: String,
    pub blockheight: u32,
    pub version: String,
}

/// Where a channel is in its life; only `Normal` channels route payments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelState {
    Opening,
    Normal,
    Closing,
    ForceClosing,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HtlcDirection {
    In,
    Out,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingHtlc {
    pub direction: HtlcDirection,
    pub id: u64,
    pub amount: Msat,
    pub expiry: u32,
    pub payment_hash: PaymentHash,
}

/// An incoming HTLC the node holds undecided right now: added, and not being failed or
/// fulfilled. A channel known by several names (its short channel id and its local alias)
/// is listed once under each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct HeldIncoming {
    pub channel: Scid,
    pub id: u64,
    pub payment_hash: PaymentHash,
}

/// One of our own channels, with its balances as the node sees them now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Channel {
    /// `None` until the funding transaction is confirmed deeply enough.
    pub scid: Option<Scid>,
    pub peer: NodeId,
    pub peer_connected: bool,
    pub state: ChannelState,
    /// The node's own state name (e.g. `CHANNELD_NORMAL`), for display.
    pub raw_state: String,
    pub capacity: Msat,
    pub local: Msat,
    pub remote: Msat,
    pub spendable: Msat,
    pub receivable: Msat,
    pub htlcs: Vec<PendingHtlc>,
    /// Our side's current fee policy on this channel.
    pub fee_base: Msat,
    pub fee_ppm: u32,
    /// The peer's policy for forwarding to us, once it has sent one; route hints for
    /// private channels advertise it.
    pub remote_policy: Option<PeerPolicy>,
    pub private: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerPolicy {
    pub fee_base: Msat,
    pub fee_ppm: u32,
    pub cltv_delta: u32,
}

/// One direction of a channel in the gossip graph.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GraphEdge {
    pub scid: Scid,
    pub source: NodeId,
    pub destination: NodeId,
    pub capacity: Msat,
    pub fee_base: Msat,
    pub fee_ppm: u32,
    pub cltv_delta: u32,
    pub htlc_min: Msat,
    pub htlc_max: Msat,
    pub active: bool,
    pub last_update: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForwardStatus {
    Offered,
    Settled,
    LocalFailed,
    Failed,
}

/// A forwarded (or attempted) HTLC through our node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Forward {
    pub in_channel: Scid,
    pub out_channel: Option<Scid>,
    pub in_msat: Msat,
    pub out_msat: Option<Msat>,
    pub fee: Option<Msat>,
    pub status: ForwardStatus,
    pub received_time: f64,
    pub resolved_time: Option<f64>,
}

/// The fee policy we advertise on a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeeUpdate {
    pub base: Msat,
    pub ppm: u32,
}

/// One hop of a route we ask the node to pay along.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteHop {
    pub scid: Scid,
    pub node: NodeId,
    /// Amount delivered to `node` over this hop.
    pub amount: Msat,
    /// CLTV expiry of the HTLC offered over this hop.
    pub delay: u32,
}

/// What became of a payment sent along a route, as far as the node knows when asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PayOutcome {
    Success {
        preimage: Preimage,
    },
    /// The route failed; `failing_channel` is where, if the node could tell.
    Failed {
        failing_channel: Option<Scid>,
        failing_node: Option<NodeId>,
        /// The BOLT #4 failure code the erring node returned in its onion error (e.g.
        /// `0x1007` temporary_channel_failure), when the node passed it on. A protocol
        /// number, the same whichever node sent the payment.
        code: Option<u32>,
        message: String,
    },
    /// The wait ended with the HTLC still out: the payment may yet succeed or fail, so it
    /// is no failed route, and its fee counts as spent until a later `wait_payment` tells.
    InFlight {
        /// The node's own words for it, for the record.
        message: String,
    },
}

/// An invoice as the node stores it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invoice {
    pub label: String,
    pub payment_hash: PaymentHash,
    pub amount: Option<Msat>,
    pub received: Option<Msat>,
    pub paid_at: Option<u64>,
    pub status: String,
}

/// Errors a node adapter reports. Node-side refusals are kept apart from transport
/// failures so callers can tell "lightningd said no" from "lightningd is gone".
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("node rejected {method}: {message} (code {code:?})")]
    Rejected {
        method: &'static str,
        code: Option<i64>,
        message: String,
    },
    /// The node has no record of the payment asked about: it never left, or its record is
    /// gone. Either way it did not complete.
    #[error("node does not know the payment asked about in {method}: {message}")]
    UnknownPayment { method: &'static str, message: String },
    #[error("node connection failed during {method}: {message}")]
    Transport { method: &'static str, message: String },
    #[error("unexpected answer to {method}: {message}")]
    Malformed { method: &'static str, message: String },
}

pub(crate) type NodeResult<T> = Result<T, NodeError>;

/// Why a hold invoice could not be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HoldInvoiceError {
    /// The request cannot be expressed as an invoice: the caller's parameters are at fault.
    #[error("{0}")]
    Invalid(String),
    /// The node refused, failed, or returned an invoice for something else.
    #[error("{0}")]
    Node(String),
}

/// Everything the engine asks of a node. Futures are `Send` so adapters can be driven from
/// any runtime thread.
pub trait Node: Send + Sync {
    fn info(&self) -> impl Future<Output = NodeResult<NodeInfo>> + Send;
    fn block_height(&self) -> impl Future<Output = NodeResult<u32>> + Send;
    fn channels(&self) -> impl Future<Output = NodeResult<Vec<Channel>>> + Send;
    /// The whole public graph, both directions of every channel.
    fn graph(&self) -> impl Future<Output = NodeResult<Vec<GraphEdge>>> + Send;
    /// Forwards that were received at or after `since` (unix seconds).
    fn forwards(&self, since: u64) -> impl Future<Output = NodeResult<Vec<Forward>>> + Send;
    fn set_fee(&self, scid: Scid, fee: FeeUpdate) -> impl Future<Output = NodeResult<()>> + Send;
    /// Sends along `route` and waits up to `timeout_secs` for the outcome
    /// ([`PayOutcome::InFlight`] when the wait ends first).
    fn pay_route(
        &self,
        route: &[RouteHop],
        payment_hash: PaymentHash,
        timeout_secs: u32,
    ) -> impl Future<Output = NodeResult<PayOutcome>> + Send;
    /// Waits up to `timeout_secs` for the outcome of an earlier `pay_route` by its hash
    /// (one that was still in flight when its own wait ended); [`NodeError::UnknownPayment`]
    /// when the node has no such payment.
    fn wait_payment(
        &self,
        payment_hash: PaymentHash,
        timeout_secs: u32,
    ) -> impl Future<Output = NodeResult<PayOutcome>> + Send;
    /// Has the node sign an unsigned BOLT11 invoice string; returns the signed invoice.
    fn sign_invoice(&self, unsigned: &str) -> impl Future<Output = NodeResult<String>> + Send;
    fn invoices(&self) -> impl Future<Output = NodeResult<Vec<Invoice>>> + Send;
    /// The node's on-chain feerate for opening transactions, sat per 1000 vbytes, if it
    /// has an estimate (swap recommendations price the on-chain leg with it).
    fn feerate_perkb(&self) -> impl Future<Output = NodeResult<Option<u64>>> + Send;
    /// The incoming HTLCs the node holds undecided, for reconciling hold invoices whose
    /// HTLCs ballast holds through the node's hook (Core Lightning). `None` where the node
    /// holds hold-invoice HTLCs itself (LND) and this question does not apply.
    fn held_incoming(&self) -> impl Future<Output = NodeResult<Option<Vec<HeldIncoming>>>> + Send {
        async { Ok(None) }
    }
    /// True when the node hands hold-invoice HTLCs to ballast to hold (Core Lightning's
    /// `htlc_accepted` hook, where a settle needs the hook call still waiting); false when
    /// the node holds them itself and settles on request (LND).
    fn holds_htlcs_through_hook(&self) -> bool {
        true
    }
    /// The node's own `cltv-delta`, where it has one that bounds when a fulfilled HTLC
    /// must be acknowledged (Core Lightning's fulfilment deadline); `None` elsewhere.
    fn cltv_delta(&self) -> impl Future<Output = NodeResult<Option<u32>>> + Send {
        async { Ok(None) }
    }
    /// Makes our own node ready to be paid `amount` by a circular payment whose preimage
    /// is `preimage`, before `pay_route` sends it. Core Lightning needs nothing here
    /// (ballast claims such HTLCs itself in `htlc_accepted`); LND needs an invoice.
    fn prepare_self_payment(
        &self,
        _preimage: Preimage,
        _amount: Msat,
    ) -> impl Future<Output = NodeResult<()>> + Send {
        async { Ok(()) }
    }
    /// Which daemon this is, as `ballast-status` names it (`core-lightning`, `lnd`).
    fn implementation(&self) -> &'static str;
    /// The smallest final CLTV delta the node lets a hold invoice ask for, beyond ballast's
    /// own rules (LND refuses a `cltv_expiry` under its `routing.MinCLTVDelta`).
    fn min_invoice_cltv(&self) -> u32 {
        0
    }
    /// True when the node picks the route hints of its hold invoices itself and can only be
    /// told whether to add any (LND); false when ballast chooses the channels and puts
    /// them into `InvoiceSpec::hints` (Core Lightning signs the invoice ballast built).
    fn chooses_route_hints(&self) -> bool {
        false
    }
    /// Makes the BOLT11 string of a hold invoice for `spec` and returns it with its payment
    /// secret (the node may choose its own). `private` asks a node that chooses its own
    /// route hints to add hints for private channels. The invoice is checked to pay
    /// `spec`'s hash and amount before it is returned: nobody may be shown an invoice for
    /// something else.
    fn create_hold_invoice(
        &self,
        spec: &InvoiceSpec,
        private: bool,
    ) -> impl Future<Output = Result<(String, [u8; 32]), HoldInvoiceError>> + Send;
}
