//! Totals over channels and income over time windows, for `monitor-stats`.

use super::snapshot::ChannelSnapshot;
use crate::node::{ChannelState, Forward, ForwardStatus};
use crate::types::Msat;
use serde::{Deserialize, Serialize};

/// The windows income is reported over: label and length in seconds.
pub(crate) const WINDOWS: [(&str, u64); 3] = [("24h", 86_400), ("7d", 7 * 86_400), ("30d", 30 * 86_400)];

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct BalanceTotals {
    pub channels: u64,
    pub capacity: Msat,
    pub local: Msat,
    pub remote: Msat,
    pub spendable: Msat,
    pub receivable: Msat,
    pub avg_capacity: Msat,
    pub avg_local: Msat,
    pub avg_remote: Msat,
    /// Total local over total capacity; `None` with no capacity at all.
    pub local_ratio: Option<f64>,
}

/// Totals and per-channel averages over every channel that still holds funds in a channel:
/// closed ones are left out so they do not drag the averages down.
pub(crate) fn balance_totals(snapshots: &[ChannelSnapshot]) -> BalanceTotals {
    // u128 so that even absurd inputs sum exactly; results saturate back into msat.
    let mut sums = [0u128; 5];
    let mut n = 0u64;
    for s in snapshots.iter().filter(|s| s.state != ChannelState::Closed) {
        n += 1;
        for (sum, v) in sums
            .iter_mut()
            .zip([s.capacity, s.local, s.remote, s.spendable, s.receivable])
        {
            *sum += u128::from(v.0);
        }
    }
    let msat = |v: u128| Msat(u64::try_from(v).unwrap_or(u64::MAX));
    let avg = |sum: u128| msat(sum.checked_div(u128::from(n)).unwrap_or(0));
    let [capacity, local, remote, spendable, receivable] = sums;
    BalanceTotals {
        channels: n,
        capacity: msat(capacity),
        local: msat(local),
        remote: msat(remote),
        spendable: msat(spendable),
        receivable: msat(receivable),
        avg_capacity: avg(capacity),
        avg_local: avg(local),
        avg_remote: avg(remote),
        local_ratio: (capacity != 0).then(|| local as f64 / capacity as f64),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FeeWindow {
    pub window: String,
    pub window_secs: u64,
    pub forwards: u64,
    pub fees: Msat,
    /// Amount delivered onward by those forwards.
    pub forwarded: Msat,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct IncomeWindow {
    pub window: String,
    pub window_secs: u64,
    pub invoices: u64,
    pub received: Msat,
}

fn in_window(t: f64, now: u64, secs: u64) -> bool {
    // NaN compares false both ways, so a garbled time is simply outside every window.
    t >= now.saturating_sub(secs) as f64 && t <= now as f64
}

/// Fees earned by settled forwards in each of [`WINDOWS`] ending at `now`. A forward counts
/// when it resolved (when the fee was actually earned), or when it arrived if the node did
/// not say.
pub(crate) fn fee_income(forwards: &[Forward], now: u64) -> Vec<FeeWindow> {
    WINDOWS
        .iter()
        .map(|&(label, secs)| {
            let mut w = FeeWindow {
                window: label.to_string(),
                window_secs: secs,
                forwards: 0,
                fees: Msat::ZERO,
                forwarded: Msat::ZERO,
            };
            for f in forwards.iter().filter(|f| f.status == ForwardStatus::Settled) {
                if !in_window(f.resolved_time.unwrap_or(f.received_time), now, secs) {
                    continue;
                }
                // Older nodes omit `fee`; it is then what came in minus what went out.
                let fee = f
                    .fee
                    .or_else(|| f.out_msat.map(|o| f.in_msat.saturating_sub(o)))
                    .unwrap_or_default();
                w.forwards += 1;
                w.fees = Msat(w.fees.0.saturating_add(fee.0));
                w.forwarded = Msat(w.forwarded.0.saturating_add(f.out_msat.unwrap_or_default().0));
            }
            w
        })
        .collect()
}

/// Income from paid invoices, given as (amount, paid_at unix seconds), in each of [`WINDOWS`].
pub(crate) fn invoice_income(paid: &[(Msat, u64)], now: u64) -> Vec<IncomeWindow> {
    WINDOWS
        .iter()
        .map(|&(label, secs)| {
            let mut w = IncomeWindow {
                window: label.to_string(),
                window_secs: secs,
                invoices: 0,
                received: Msat::ZERO,
            };
            for &(amount, at) in paid {
                if at >= now.saturating_sub(secs) && at <= now {
                    w.invoices += 1;
                    w.received = Msat(w.received.0.saturating_add(amount.0));
                }
            }
            w
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::snapshot::test_support::{channel, scid};
    use super::*;

    const NOW: u64 = 1_700_000_000;
    const H: u64 = 3_600;

    fn fwd(fee: Option<u64>, out: u64, at: f64, status: ForwardStatus) -> Forward {
        Forward {
            in_channel: scid(1),
            out_channel: Some(scid(2)),
            in_msat: Msat(out + 7),
            out_msat: Some(Msat(out)),
            fee: fee.map(Msat),
            status,
            received_time: at - 1.0,
            resolved_time: Some(at),
        }
    }

    #[test]
    fn totals_and_averages_skip_closed_channels_and_empty_input() {
        let mut snaps: Vec<_> = [(1_000, 400), (3_000, 1_000)]
            .iter()
            .enumerate()
            .map(|(i, &(cap, local))| {
                ChannelSnapshot::from_channel(&channel(i as u32, 1, cap, local), 1, NOW)
            })
            .collect();
        let mut closed = snaps[0].clone();
        closed.state = ChannelState::Closed;
        snaps.push(closed);
        let t = balance_totals(&snaps);
        assert_eq!(
            (t.channels, t.capacity, t.local, t.remote),
            (2, Msat(4_000), Msat(1_400), Msat(2_600))
        );
        assert_eq!(
            (t.avg_capacity, t.avg_local, t.avg_remote),
            (Msat(2_000), Msat(700), Msat(1_300))
        );
        assert_eq!(t.local_ratio, Some(0.35));
        let empty = balance_totals(&[]);
        assert_eq!(
            (empty.channels, empty.avg_local, empty.local_ratio),
            (0, Msat(0), None)
        );
    }

    #[test]
    fn fees_fall_into_the_right_windows() {
        let now = NOW as f64;
        let forwards = vec![
            fwd(Some(10), 1_000, now - 1.0, ForwardStatus::Settled),
            fwd(Some(20), 2_000, now - (2 * 24 * H) as f64, ForwardStatus::Settled),
            fwd(None, 3_000, now - (10 * 24 * H) as f64, ForwardStatus::Settled),
            fwd(Some(1_000), 9, now - 5.0, ForwardStatus::Failed),
            fwd(Some(1_000), 9, now - (40 * 24 * H) as f64, ForwardStatus::Settled),
            fwd(Some(1_000), 9, f64::NAN, ForwardStatus::Settled),
            fwd(Some(1_000), 9, now + 60.0, ForwardStatus::Settled),
        ];
        let w = fee_income(&forwards, NOW);
        let got: Vec<_> = w
            .iter()
            .map(|w| (w.window.as_str(), w.forwards, w.fees.0, w.forwarded.0))
            .collect();
        assert_eq!(
            got,
            vec![("24h", 1, 10, 1_000), ("7d", 2, 30, 3_000), ("30d", 3, 37, 6_000)]
        );
    }

    #[test]
    fn invoice_income_counts_per_window() {
        let paid = [
            (Msat(5), NOW),
            (Msat(7), NOW - 3 * 24 * H),
            (Msat(11), NOW - 29 * 24 * H),
            (Msat(1), 0),
        ];
        let w = invoice_income(&paid, NOW);
        let got: Vec<_> = w.iter().map(|w| (w.invoices, w.received.0)).collect();
        assert_eq!(got, vec![(1, 5), (2, 12), (3, 23)]);
        // Early in the epoch, windows reaching before 0 must not underflow.
        assert_eq!(invoice_income(&paid, 10)[0].invoices, 1);
    }
}
