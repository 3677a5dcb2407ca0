//! LND's messages as ballast's types: channels (open and pending), graph edges and
//! policies, forwards, invoices, and the small amount and id conversions they share.

use super::errors::malformed;
use super::{InvoiceHtlc, InvoiceUpdate, LndInvoiceState};
use crate::lnd::proto::lnrpc;
use crate::node::{
    Channel, ChannelState, Forward, ForwardStatus, GraphEdge, HtlcDirection, Invoice, NodeResult, PeerPolicy,
    PendingHtlc,
};
use crate::types::{Msat, NodeId, PaymentHash, Scid};

fn sat(v: i64) -> Msat {
    Msat(u64::try_from(v).unwrap_or(0).saturating_mul(1000))
}

pub(super) fn msat_i64(method: &'static str, m: Msat) -> NodeResult<i64> {
    i64::try_from(m.0).map_err(|_| malformed(method, format!("{m} is too large")))
}

pub(super) fn node_id(method: &'static str, s: &str) -> NodeResult<NodeId> {
    s.parse()
        .map_err(|_| malformed(method, format!("bad node id '{s}'")))
}

pub(super) fn open_channel(
    c: lnrpc::Channel,
    fee_base: i64,
    fee_ppm: i64,
    remote_policy: Option<PeerPolicy>,
) -> NodeResult<Channel> {
    const M: &str = "ListChannels";
    let local = sat(c.local_balance);
    let remote = sat(c.remote_balance);
    let local_reserve = c.local_constraints.as_ref().map_or(0, |k| k.chan_reserve_sat);
    let remote_reserve = c.remote_constraints.as_ref().map_or(0, |k| k.chan_reserve_sat);
    let htlcs = c
        .pending_htlcs
        .iter()
        .map(|h| {
            Ok(PendingHtlc {
                direction: if h.incoming {
                    HtlcDirection::In
                } else {
                    HtlcDirection::Out
                },
                id: h.htlc_index,
                amount: sat(h.amount),
                expiry: h.expiration_height,
                payment_hash: PaymentHash(
                    h.hash_lock
                        .as_slice()
                        .try_into()
                        .map_err(|_| malformed(M, "htlc hash_lock is not 32 bytes"))?,
                ),
            })
        })
        .collect::<NodeResult<Vec<_>>>()?;
    Ok(Channel {
        scid: (c.chan_id != 0).then(|| Scid::from_u64(c.chan_id)),
        peer: node_id(M, &c.remote_pubkey)?,
        peer_connected: c.active,
        state: ChannelState::Normal,
        raw_state: if c.active { "ACTIVE" } else { "INACTIVE" }.to_string(),
        capacity: sat(c.capacity),
        local,
        remote,
        spendable: local.saturating_sub(Msat(local_reserve.saturating_mul(1000))),
        receivable: remote.saturating_sub(Msat(remote_reserve.saturating_mul(1000))),
        htlcs,
        fee_base: Msat(u64::try_from(fee_base).unwrap_or(0)),
        fee_ppm: u32::try_from(fee_ppm).unwrap_or(0),
        remote_policy,
        private: c.private,
    })
}

pub(super) fn pending_channel(
    p: Option<lnrpc::pending_channels_response::PendingChannel>,
    state: ChannelState,
    raw: &str,
) -> NodeResult<Channel> {
    const M: &str = "PendingChannels";
    let p = p.ok_or_else(|| malformed(M, "pending channel without details"))?;
    let local = sat(p.local_balance);
    let remote = sat(p.remote_balance);
    Ok(Channel {
        scid: None,
        peer: node_id(M, &p.remote_node_pub)?,
        peer_connected: false,
        state,
        raw_state: raw.to_string(),
        capacity: sat(p.capacity),
        local,
        remote,
        spendable: Msat::ZERO,
        receivable: Msat::ZERO,
        htlcs: Vec::new(),
        fee_base: Msat::ZERO,
        fee_ppm: 0,
        remote_policy: None,
        private: p.private,
    })
}

/// Our side's policy on an edge.
pub(super) fn own_policy<'a>(e: &'a lnrpc::ChannelEdge, me: &str) -> Option<&'a lnrpc::RoutingPolicy> {
    if e.node1_pub == me {
        e.node1_policy.as_ref()
    } else if e.node2_pub == me {
        e.node2_policy.as_ref()
    } else {
        None
    }
}

/// The peer's policy for forwarding to us.
pub(super) fn peer_policy(e: &lnrpc::ChannelEdge, me: &str, peer: &str) -> Option<PeerPolicy> {
    let p = if e.node1_pub == peer && e.node2_pub == me {
        e.node1_policy.as_ref()
    } else if e.node2_pub == peer && e.node1_pub == me {
        e.node2_policy.as_ref()
    } else {
        None
    }?;
    Some(PeerPolicy {
        fee_base: Msat(u64::try_from(p.fee_base_msat).ok()?),
        fee_ppm: u32::try_from(p.fee_rate_milli_msat).ok()?,
        cltv_delta: p.time_lock_delta,
    })
}

pub(super) fn graph_edge(
    method: &'static str,
    e: &lnrpc::ChannelEdge,
    source: NodeId,
    destination: NodeId,
    p: &lnrpc::RoutingPolicy,
) -> NodeResult<GraphEdge> {
    let capacity = sat(e.capacity);
    let bad = |what: &str| {
        malformed(
            method,
            format!("edge {}: bad {what}", Scid::from_u64(e.channel_id)),
        )
    };
    Ok(GraphEdge {
        scid: Scid::from_u64(e.channel_id),
        source,
        destination,
        capacity,
        fee_base: Msat(u64::try_from(p.fee_base_msat).map_err(|_| bad("fee_base_msat"))?),
        fee_ppm: u32::try_from(p.fee_rate_milli_msat).map_err(|_| bad("fee_rate_milli_msat"))?,
        cltv_delta: p.time_lock_delta,
        htlc_min: Msat(u64::try_from(p.min_htlc).map_err(|_| bad("min_htlc"))?),
        htlc_max: if p.max_htlc_msat == 0 {
            capacity
        } else {
            Msat(p.max_htlc_msat)
        },
        active: !p.disabled,
        last_update: p.last_update,
    })
}

pub(super) fn forward(f: &lnrpc::ForwardingEvent) -> Forward {
    let time = if f.timestamp_ns != 0 {
        f.timestamp_ns as f64 / 1e9
    } else {
        f.timestamp as f64
    };
    Forward {
        in_channel: Scid::from_u64(f.chan_id_in),
        out_channel: Some(Scid::from_u64(f.chan_id_out)),
        in_msat: Msat(f.amt_in_msat),
        out_msat: Some(Msat(f.amt_out_msat)),
        fee: Some(Msat(f.fee_msat)),
        status: ForwardStatus::Settled,
        received_time: time,
        resolved_time: Some(time),
    }
}

pub(super) fn invoice(method: &'static str, i: &lnrpc::Invoice) -> NodeResult<Invoice> {
    use lnrpc::invoice::InvoiceState;
    let hash: [u8; 32] = i
        .r_hash
        .as_slice()
        .try_into()
        .map_err(|_| malformed(method, "r_hash is not 32 bytes"))?;
    let status = match i.state() {
        InvoiceState::Open => "unpaid",
        InvoiceState::Accepted => "accepted",
        InvoiceState::Settled => "paid",
        InvoiceState::Canceled => "canceled",
    };
    Ok(Invoice {
        label: if i.memo.is_empty() {
            format!("lnd-{}", i.add_index)
        } else {
            format!("lnd-{}: {}", i.add_index, i.memo)
        },
        payment_hash: PaymentHash(hash),
        amount: (i.value_msat > 0).then_some(Msat(i.value_msat as u64)),
        received: (i.amt_paid_msat > 0).then_some(Msat(i.amt_paid_msat as u64)),
        paid_at: (i.state() == InvoiceState::Settled && i.settle_date > 0).then_some(i.settle_date as u64),
        status: status.to_string(),
    })
}

/// "txid:index" as LND's ChannelPoint.
pub(super) fn chan_point(method: &'static str, s: &str) -> NodeResult<lnrpc::ChannelPoint> {
    let (txid, index) = s
        .rsplit_once(':')
        .ok_or_else(|| malformed(method, format!("bad channel_point '{s}'")))?;
    let output_index = index
        .parse()
        .map_err(|_| malformed(method, format!("bad channel_point '{s}'")))?;
    Ok(lnrpc::ChannelPoint {
        funding_txid: Some(lnrpc::channel_point::FundingTxid::FundingTxidStr(
            txid.to_string(),
        )),
        output_index,
    })
}

pub(super) fn invoice_update(i: &lnrpc::Invoice) -> InvoiceUpdate {
    use lnrpc::invoice::InvoiceState;
    let state = match i.state() {
        InvoiceState::Open => LndInvoiceState::Open,
        InvoiceState::Accepted => LndInvoiceState::Accepted,
        InvoiceState::Settled => LndInvoiceState::Settled,
        InvoiceState::Canceled => LndInvoiceState::Canceled,
    };
    InvoiceUpdate {
        state,
        htlcs: i
            .htlcs
            .iter()
            .map(|h| InvoiceHtlc {
                scid: Scid::from_u64(h.chan_id),
                htlc_index: h.htlc_index,
                amount: Msat(h.amt_msat),
                expiry_height: u32::try_from(h.expiry_height).unwrap_or(0),
                accept_height: u32::try_from(h.accept_height).unwrap_or(0),
                accept_time: u64::try_from(h.accept_time).unwrap_or(0),
                state: h.state().as_str_name().to_string(),
            })
            .collect(),
        amount_paid: Msat(u64::try_from(i.amt_paid_msat).unwrap_or(0)),
    }
}
