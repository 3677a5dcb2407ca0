//! The set of payment hashes some ballast feature has claimed (hold invoices, rebalance
//! self-payments). The `htlc_accepted` fast path asks only "is this hash claimed?", so this
//! is the one piece of engine state read on every HTLC the node sees.

use crate::types::PaymentHash;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::RwLock;

#[derive(Default)]
pub struct ClaimSet {
    // Readers vastly outnumber writers (every HTLC vs. every invoice created), and a read
    // lock on an uncontended RwLock costs two atomics: cheaper than anything cleverer.
    hashes: RwLock<HashSet<PaymentHash>>,
    // Lets the common case (no claims at all) skip even the read lock.
    len: AtomicUsize,
}

impl ClaimSet {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn contains(&self, hash: &PaymentHash) -> bool {
        if self.len.load(Ordering::Acquire) == 0 {
            return false;
        }
        // A poisoned lock only means a writer panicked mid-insert; the set itself is still
        // a valid HashSet, so keep answering rather than take the HTLC path down with it.
        let guard = self.hashes.read().unwrap_or_else(|p| p.into_inner());
        guard.contains(hash)
    }

    /// Returns false if the hash was already claimed.
    pub fn claim(&self, hash: PaymentHash) -> bool {
        let mut guard = self.hashes.write().unwrap_or_else(|p| p.into_inner());
        let added = guard.insert(hash);
        self.len.store(guard.len(), Ordering::Release);
        added
    }

    pub fn release(&self, hash: &PaymentHash) -> bool {
        let mut guard = self.hashes.write().unwrap_or_else(|p| p.into_inner());
        let removed = guard.remove(hash);
        self.len.store(guard.len(), Ordering::Release);
        removed
    }

    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_contains_release() {
        let set = ClaimSet::new();
        let a = PaymentHash([1; 32]);
        let b = PaymentHash([2; 32]);
        assert!(!set.contains(&a));
        assert!(set.claim(a));
        assert!(!set.claim(a), "double claim must be reported");
        assert!(set.contains(&a) && !set.contains(&b));
        assert_eq!(set.len(), 1);
        assert!(set.release(&a));
        assert!(!set.release(&a));
        assert!(set.is_empty() && !set.contains(&a));
    }
}
