//! Whether one rule's condition holds for one snapshot, and the message that tells the
//! operator what to do about it.

use super::alerts::AlertKind;
use super::rules::{Rules, Severity, Threshold};
use super::snapshot::{sat, ChannelSnapshot};
use crate::node::ChannelState;
use crate::types::{Msat, NodeId};

/// Facts about a channel that one snapshot cannot show, derived by the evaluator from the
/// ones before it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Observed {
    /// Blocks since ballast first saw the channel opening.
    pub opening_blocks: Option<u32>,
    /// Seconds since ballast first saw the peer disconnected.
    pub disconnected_secs: Option<u64>,
    /// Local balance in the previous snapshot.
    pub previous_local: Option<Msat>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Finding {
    pub severity: Severity,
    pub message: String,
}

pub(crate) fn check(kind: AlertKind, rules: &Rules, s: &ChannelSnapshot, o: &Observed) -> Option<Finding> {
    let ch = s.key;
    let peer = short(&s.peer);
    let normal = s.state == ChannelState::Normal;
    let (severity, message) = match kind {
        AlertKind::LowLocal => {
            let r = rules.low_local;
            let limit = r.limit.resolve(s.capacity)?;
            if !(r.enabled && normal && s.local < limit) {
                return None;
            }
            (
                r.severity,
                format!(
                    "Channel {ch} (peer {peer}): local balance {} ({}) is below {}. It can barely \
                     send or forward outgoing payments: rebalance liquidity into it, or raise its \
                     fees to slow the outflow.",
                    sat(s.local),
                    share(s.local, s.capacity),
                    describe(r.limit, limit)
                ),
            )
        }
        AlertKind::LowRemote => {
            let r = rules.low_remote;
            let limit = r.limit.resolve(s.capacity)?;
            if !(r.enabled && normal && s.remote < limit) {
                return None;
            }
            (
                r.severity,
                format!(
                    "Channel {ch} (peer {peer}): remote balance {} ({}) is below {}. It can barely \
                     receive payments: move liquidity out of it (rebalance out, or spend through \
                     it), or lower its fees to attract outgoing flow.",
                    sat(s.remote),
                    share(s.remote, s.capacity),
                    describe(r.limit, limit)
                ),
            )
        }
        AlertKind::PendingHtlcs => {
            let r = rules.pending_htlcs;
            let n = s.pending_htlcs();
            if !(r.enabled && normal && n > r.limit) {
                return None;
            }
            (
                r.severity,
                format!(
                    "Channel {ch} (peer {peer}) has {n} pending HTLCs (over {}): {} in ({}), {} out \
                     ({}). Stuck HTLCs lock up liquidity and HTLC slots: check the peer's \
                     connectivity and `listpeerchannels` for HTLCs that do not resolve.",
                    r.limit,
                    s.htlcs_in,
                    sat(s.htlc_in_msat),
                    s.htlcs_out,
                    sat(s.htlc_out_msat)
                ),
            )
        }
        AlertKind::HtlcNearExpiry => {
            let r = rules.htlc_near_expiry;
            let left = s.min_expiry_blocks?;
            // HTLCs stay at risk while a channel closes, so only a finished channel is exempt.
            if !(r.enabled && s.state != ChannelState::Closed && left <= r.limit) {
                return None;
            }
            (
                r.severity,
                format!(
                    "Channel {ch} (peer {peer}) has a pending HTLC expiring in {left} blocks (alert at \
                     {} or fewer). Unless it resolves, the channel will be force-closed on chain: \
                     make sure the peer is connected (`connect {}`) and keep this node online.",
                    r.limit, s.peer
                ),
            )
        }
        AlertKind::PendingOpen => {
            let r = rules.pending_open;
            let blocks = o.opening_blocks?;
            if !(r.enabled && s.state == ChannelState::Opening && blocks > r.limit) {
                return None;
            }
            (
                r.severity,
                format!(
                    "Channel {ch} with peer {peer} has been opening for {blocks} blocks (over {}). Its \
                     funding transaction may be stuck on a low fee: look it up and bump it with \
                     CPFP, or wait for the node to forget it to get the funds back.",
                    r.limit
                ),
            )
        }
        AlertKind::Closing => {
            let r = rules.closing;
            if !(r.enabled && s.state == ChannelState::Closing) {
                return None;
            }
            (
                r.severity,
                format!(
                    "Channel {ch} with peer {peer} is closing cooperatively. Nothing to do unless it \
                     stays here: the funds return to the on-chain wallet once the closing \
                     transaction confirms."
                ),
            )
        }
        AlertKind::ForceClosed => {
            let r = rules.force_closed;
            if !(r.enabled && s.state == ChannelState::ForceClosing) {
                return None;
            }
            (
                r.severity,
                format!(
                    "Channel {ch} with peer {peer} is being force-closed. Its funds are locked until \
                     the timelocks expire: keep this node online so it can claim its outputs and \
                     resolve HTLCs on chain, and watch `listfunds`."
                ),
            )
        }
        AlertKind::PeerDisconnected => {
            let r = rules.peer_disconnected;
            let gone = o.disconnected_secs?;
            // A force close needs nothing from the peer and a closed channel nothing at all.
            let matters = matches!(
                s.state,
                ChannelState::Opening | ChannelState::Normal | ChannelState::Closing
            );
            if !(r.enabled && matters && gone > r.limit) {
                return None;
            }
            (
                r.severity,
                format!(
                    "Peer {} of channel {ch} has been disconnected for {} (over {}). The channel \
                     cannot route meanwhile: try `connect {}`, and if the peer stays away consider \
                     closing the channel to free its liquidity.",
                    s.peer,
                    duration(gone),
                    duration(r.limit),
                    s.peer
                ),
            )
        }
        AlertKind::BalanceChange => {
            let r = rules.balance_change;
            let prev = o.previous_local?;
            let limit = r.limit.resolve(s.capacity)?;
            let delta = Msat(prev.0.abs_diff(s.local.0));
            if !(r.enabled && normal && delta > limit) {
                return None;
            }
            (
                r.severity,
                format!(
                    "Channel {ch} (peer {peer}): local balance moved by {} since the last snapshot \
                     ({} to {}), more than {}. Check it was expected (a payment, a rebalance or a \
                     burst of forwards); an unexplained swing can mean a stuck or failed payment.",
                    sat(delta),
                    sat(prev),
                    sat(s.local),
                    describe(r.limit, limit)
                ),
            )
        }
    };
    Some(Finding { severity, message })
}

/// Enough of a node id to recognise it in a message; the alert carries the full id.
fn short(peer: &NodeId) -> String {
    hex::encode(&peer.0[..8])
}

fn share(part: Msat, whole: Msat) -> String {
    match super::snapshot::ratio(part, whole) {
        Some(r) => format!("{:.1}% of capacity", r * 100.0),
        None => "capacity unknown".into(),
    }
}

fn describe(t: Threshold, resolved: Msat) -> String {
    match t {
        Threshold::Msat(_) => sat(resolved),
        Threshold::Ratio(_) => format!("{} ({t})", sat(resolved)),
    }
}

pub(crate) fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(125), "2m 5s");
        assert_eq!(duration(3_700), "1h 1m");
        assert_eq!(duration(90_000), "1d 1h");
        assert!(!duration(u64::MAX).is_empty());
    }
}
