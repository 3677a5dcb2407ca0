//! lightningd's JSON (cln-rpc's typed responses) as ballast's types: channels and their
//! HTLCs, graph edges, forwards, invoices, and the amounts, ids and hashes inside them.

use super::rpc::malformed;
use crate::node::{
    Channel, ChannelState, Forward, ForwardStatus, GraphEdge, HtlcDirection, Invoice, NodeResult, PeerPolicy,
    PendingHtlc,
};
use crate::types::{Msat, NodeId, PaymentHash, Scid};
use cln_rpc::model::responses::{
    ListchannelsChannels, ListforwardsForwards, ListforwardsForwardsStatus, ListinvoicesInvoices,
    ListinvoicesInvoicesStatus, ListpeerchannelsChannels, ListpeerchannelsChannelsHtlcs,
    ListpeerchannelsChannelsHtlcsDirection,
};
use cln_rpc::primitives::{Amount, ChannelState as ClnState, HtlcState, PublicKey, Sha256, ShortChannelId};

pub(super) fn msat(amount: Amount) -> Msat {
    Msat(amount.msat())
}

pub(super) fn scid(s: ShortChannelId) -> Scid {
    Scid::from_u64(s.to_u64())
}

pub(super) fn node_id(key: &PublicKey) -> NodeId {
    NodeId(key.serialize())
}

pub(super) fn payment_hash(hash: &Sha256) -> PaymentHash {
    let bytes: &[u8; 32] = hash.as_ref();
    PaymentHash(*bytes)
}

pub(super) fn sha256(hash: &PaymentHash) -> Sha256 {
    *Sha256::from_bytes_ref(&hash.0)
}

/// Where a channel is in its life.
///
/// `CHANNELD_AWAITING_SPLICE` is `Normal`: lightningd keeps adding HTLCs while a splice
/// confirms. `FUNDING_SPEND_SEEN` and `ONCHAIN` follow a cooperative close as well as a
/// unilateral one, so `mutual_close` tells the two apart.
fn channel_state(state: ClnState, mutual_close: bool) -> ChannelState {
    use ClnState::*;
    // No wildcard: a state added in a future cln-rpc must be placed here by hand.
    match state {
        OPENINGD
        | CHANNELD_AWAITING_LOCKIN
        | DUALOPEND_OPEN_INIT
        | DUALOPEND_OPEN_COMMITTED
        | DUALOPEND_OPEN_COMMIT_READY
        | DUALOPEND_AWAITING_LOCKIN => ChannelState::Opening,
        CHANNELD_NORMAL | CHANNELD_AWAITING_SPLICE => ChannelState::Normal,
        CHANNELD_SHUTTING_DOWN | CLOSINGD_SIGEXCHANGE | CLOSINGD_COMPLETE => ChannelState::Closing,
        FUNDING_SPEND_SEEN | ONCHAIN if mutual_close => ChannelState::Closing,
        AWAITING_UNILATERAL | FUNDING_SPEND_SEEN | ONCHAIN => ChannelState::ForceClosing,
        CLOSED => ChannelState::Closed,
    }
}

/// A channel whose funding was spent right after both sides agreed on the closing
/// transaction was closed cooperatively.
fn closed_mutually(c: &ListpeerchannelsChannels) -> bool {
    c.state_changes.iter().flatten().any(|change| {
        change.old_state == ClnState::CLOSINGD_COMPLETE && change.new_state == ClnState::FUNDING_SPEND_SEEN
    })
}

pub(super) fn channel(c: ListpeerchannelsChannels) -> NodeResult<Channel> {
    let state = channel_state(c.state, closed_mutually(&c));
    let raw_state = c.state.to_string();
    // Until its funding is committed (a dual-funded open still negotiating, or an open we only
    // accept), lightningd has no balances, fee policy or announcement flag for a channel and
    // leaves them out: they read as zero. In every other state they must be there.
    let opening = state == ChannelState::Opening;
    let need = |value: Option<u64>, field: &str| {
        value.or(opening.then_some(0)).ok_or_else(|| {
            let scid = c
                .short_channel_id
                .map_or_else(|| "without scid".into(), |s| s.to_string());
            let peer = node_id(&c.peer_id);
            malformed(
                "listpeerchannels",
                format!("channel {scid} with {peer} in state {raw_state} has no {field}"),
            )
        })
    };
    let amount = |value: Option<Amount>, field| need(value.map(|a| a.msat()), field).map(Msat);

    let capacity = amount(c.total_msat, "total_msat")?;
    let local = amount(c.to_us_msat, "to_us_msat")?;
    // Our policy: the top-level fields are the older, always-present ones; `updates.local`
    // (v24.02+) carries the same values.
    let ours = c.updates.as_ref().map(|u| &u.local);
    let fee_base = c.fee_base_msat.or(ours.map(|l| l.fee_base_msat));
    let fee_ppm = c
        .fee_proportional_millionths
        .or(ours.map(|l| l.fee_proportional_millionths));
    Ok(Channel {
        scid: c.short_channel_id.map(scid),
        peer: node_id(&c.peer_id),
        peer_connected: c.peer_connected,
        state,
        capacity,
        local,
        remote: capacity.saturating_sub(local),
        spendable: amount(c.spendable_msat, "spendable_msat")?,
        receivable: amount(c.receivable_msat, "receivable_msat")?,
        htlcs: c.htlcs.iter().flatten().map(pending_htlc).collect(),
        fee_base: amount(fee_base, "fee_base_msat")?,
        // Went in as a u32, so it comes back as one.
        fee_ppm: need(fee_ppm.map(u64::from), "fee_proportional_millionths")? as u32,
        remote_policy: c
            .updates
            .as_ref()
            .and_then(|u| u.remote.as_ref())
            .map(|r| PeerPolicy {
                fee_base: msat(r.fee_base_msat),
                fee_ppm: r.fee_proportional_millionths,
                cltv_delta: r.cltv_expiry_delta,
            }),
        private: need(c.private.map(u64::from), "private")? != 0,
        raw_state,
    })
}

fn pending_htlc(h: &ListpeerchannelsChannelsHtlcs) -> PendingHtlc {
    PendingHtlc {
        direction: match h.direction {
            ListpeerchannelsChannelsHtlcsDirection::IN => HtlcDirection::In,
            ListpeerchannelsChannelsHtlcsDirection::OUT => HtlcDirection::Out,
        },
        id: h.id,
        amount: msat(h.amount_msat),
        expiry: h.expiry,
        payment_hash: payment_hash(&h.payment_hash),
    }
}

/// An incoming HTLC in one of these states has been added and not yet answered: no fail or
/// fulfil has started (`SENT_REMOVE_*` and later mean lightningd is removing it).
pub(super) fn incoming_undecided(state: HtlcState) -> bool {
    matches!(
        state,
        HtlcState::RCVD_ADD_HTLC
            | HtlcState::RCVD_ADD_COMMIT
            | HtlcState::SENT_ADD_REVOCATION
            | HtlcState::SENT_ADD_ACK_COMMIT
            | HtlcState::RCVD_ADD_ACK_REVOCATION
    )
}

pub(super) fn graph_edge(c: ListchannelsChannels) -> GraphEdge {
    let capacity = msat(c.amount_msat);
    GraphEdge {
        scid: scid(c.short_channel_id),
        source: node_id(&c.source),
        destination: node_id(&c.destination),
        capacity,
        fee_base: Msat(u64::from(c.base_fee_millisatoshi)),
        fee_ppm: c.fee_per_millionth,
        cltv_delta: c.delay,
        htlc_min: msat(c.htlc_minimum_msat),
        // Absent only in channel_updates from before the field was mandatory; the channel's
        // capacity is then the limit.
        htlc_max: c.htlc_maximum_msat.map_or(capacity, msat),
        active: c.active,
        last_update: c.last_update,
    }
}

pub(super) fn forward(f: ListforwardsForwards) -> Forward {
    Forward {
        in_channel: scid(f.in_channel),
        out_channel: f.out_channel.map(scid),
        in_msat: msat(f.in_msat),
        out_msat: f.out_msat.map(msat),
        fee: f.fee_msat.map(msat),
        status: match f.status {
            ListforwardsForwardsStatus::OFFERED => ForwardStatus::Offered,
            ListforwardsForwardsStatus::SETTLED => ForwardStatus::Settled,
            ListforwardsForwardsStatus::LOCAL_FAILED => ForwardStatus::LocalFailed,
            ListforwardsForwardsStatus::FAILED => ForwardStatus::Failed,
        },
        received_time: f.received_time,
        resolved_time: f.resolved_time,
    }
}

pub(super) fn invoice(i: ListinvoicesInvoices) -> Invoice {
    Invoice {
        payment_hash: payment_hash(&i.payment_hash),
        amount: i.amount_msat.map(msat),
        received: i.amount_received_msat.map(msat),
        paid_at: i.paid_at,
        // lightningd's own words for it.
        status: match i.status {
            ListinvoicesInvoicesStatus::UNPAID => "unpaid",
            ListinvoicesInvoicesStatus::PAID => "paid",
            ListinvoicesInvoicesStatus::EXPIRED => "expired",
        }
        .to_string(),
        label: i.label,
    }
}
