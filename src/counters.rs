//! Counters shown by `ballast-status`, shared by every adapter. Relaxed atomics: they are
//! statistics, never used to make decisions.

use serde::Serialize;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default)]
pub struct Counters {
    pub htlc_accepted: AtomicU64,
    pub htlcs_passed_through: AtomicU64,
    pub htlcs_claimed: AtomicU64,
    pub invoice_payment: AtomicU64,
    pub invoices_passed_through: AtomicU64,
    pub notifications: AtomicU64,
    pub forward_events: AtomicU64,
    pub blocks: AtomicU64,
    pub channel_state_changes: AtomicU64,
    pub peer_connects: AtomicU64,
    pub peer_disconnects: AtomicU64,
    pub rpc_calls: AtomicU64,
    pub rpc_errors: AtomicU64,
    pub fee_changes: AtomicU64,
    pub rebalances: AtomicU64,
}

pub(crate) fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CountersSnapshot {
    pub htlc_accepted: u64,
    pub htlcs_passed_through: u64,
    pub htlcs_claimed: u64,
    pub invoice_payment: u64,
    pub invoices_passed_through: u64,
    pub notifications: u64,
    pub forward_events: u64,
    pub blocks: u64,
    pub channel_state_changes: u64,
    pub peer_connects: u64,
    pub peer_disconnects: u64,
    pub rpc_calls: u64,
    pub rpc_errors: u64,
    pub fee_changes: u64,
    pub rebalances: u64,
}

impl Counters {
    pub fn snapshot(&self) -> CountersSnapshot {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        CountersSnapshot {
            htlc_accepted: g(&self.htlc_accepted),
            htlcs_passed_through: g(&self.htlcs_passed_through),
            htlcs_claimed: g(&self.htlcs_claimed),
            invoice_payment: g(&self.invoice_payment),
            invoices_passed_through: g(&self.invoices_passed_through),
            notifications: g(&self.notifications),
            forward_events: g(&self.forward_events),
            blocks: g(&self.blocks),
            channel_state_changes: g(&self.channel_state_changes),
            peer_connects: g(&self.peer_connects),
            peer_disconnects: g(&self.peer_disconnects),
            rpc_calls: g(&self.rpc_calls),
            rpc_errors: g(&self.rpc_errors),
            fee_changes: g(&self.fee_changes),
            rebalances: g(&self.rebalances),
        }
    }
}
