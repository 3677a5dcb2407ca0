//! Coalescing and rate limiting of forward events, with the clock passed in.
//!
//! A busy channel sees a forward every few seconds; deciding (and worse, updating gossip)
//! on each would be churn. The [`Coalescer`] keeps, per channel, when ballast last applied a
//! fee and whether a decision is pending. The first event of a quiet channel schedules one
//! decision for the end of the coalescing window, or for when the rate limit next allows an
//! update if that is later; further events only count towards it. So a burst of any size
//! costs one decision per window and at most one update per interval.

use super::decide::FeeConfig;
use crate::types::Scid;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// A decision waiting for its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub first_event: u64,
    pub last_event: u64,
    pub events: u64,
    /// Unix seconds at which the channel should be decided.
    pub due: u64,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    last_applied: Option<u64>,
    pending: Option<Pending>,
}

#[derive(Debug, Clone)]
pub struct Coalescer {
    min_interval_secs: u64,
    coalesce_secs: u64,
    started_at: u64,
    slots: HashMap<Scid, Slot>,
    // Ordered by (due, scid) so that draining is cheap and its order deterministic.
    queue: BTreeSet<(u64, Scid)>,
}

impl Coalescer {
    pub fn new(cfg: &FeeConfig, started_at: u64) -> Coalescer {
        Coalescer {
            min_interval_secs: cfg.min_interval_secs,
            coalesce_secs: cfg.coalesce_secs,
            started_at,
            slots: HashMap::new(),
            queue: BTreeSet::new(),
        }
    }

    /// Seeds (at startup, from the store) or records (after `setchannel`) the last update.
    /// A pending decision is pushed back if the new update makes it early.
    pub fn record_applied(&mut self, scid: Scid, at: u64) {
        let slot = self.slots.entry(scid).or_default();
        if slot.last_applied.is_some_and(|prev| prev > at) {
            return;
        }
        slot.last_applied = Some(at);
        let allowed = self.next_allowed(scid);
        self.reschedule(scid, |p| p.due.max(allowed));
    }

    pub fn last_applied(&self, scid: Scid) -> Option<u64> {
        self.slots.get(&scid).and_then(|s| s.last_applied)
    }

    /// The earliest time an unforced update of this channel may be applied.
    pub(crate) fn next_allowed(&self, scid: Scid) -> u64 {
        let startup = self.started_at.saturating_add(self.min_interval_secs);
        match self.last_applied(scid) {
            Some(t) => startup.max(t.saturating_add(self.min_interval_secs)),
            None => startup,
        }
    }

    /// Notes a forward event on `scid` at `now`; returns when the channel will be due.
    pub fn on_event(&mut self, scid: Scid, now: u64) -> u64 {
        let allowed = self.next_allowed(scid);
        let window_end = now.saturating_add(self.coalesce_secs);
        let slot = self.slots.entry(scid).or_default();
        match &mut slot.pending {
            Some(p) => {
                p.events = p.events.saturating_add(1);
                p.last_event = p.last_event.max(now);
                p.due
            }
            None => {
                let due = window_end.max(allowed);
                slot.pending = Some(Pending {
                    first_event: now,
                    last_event: now,
                    events: 1,
                    due,
                });
                self.queue.insert((due, scid));
                due
            }
        }
    }

    /// Removes and returns the next channel whose decision is due at `now`.
    pub fn pop_due(&mut self, now: u64) -> Option<(Scid, Pending)> {
        loop {
            let &(due, scid) = self.queue.first()?;
            if due > now {
                return None;
            }
            self.queue.remove(&(due, scid));
            // Queue and slots change together, so a queued channel always has its pending
            // entry; skipping (rather than stopping) keeps a mismatch from hiding the rest.
            if let Some(pending) = self.slots.get_mut(&scid).and_then(|s| s.pending.take()) {
                return Some((scid, pending));
            }
        }
    }

    /// Every channel due at `now`, in (due, scid) order.
    pub fn take_due(&mut self, now: u64) -> Vec<(Scid, Pending)> {
        let mut out = Vec::new();
        while let Some(d) = self.pop_due(now) {
            out.push(d);
        }
        out
    }

    /// When the caller's timer should next wake up, if anything is pending.
    pub fn next_due(&self) -> Option<u64> {
        self.queue.first().map(|&(due, _)| due)
    }

    pub fn pending(&self, scid: Scid) -> Option<&Pending> {
        self.slots.get(&scid).and_then(|s| s.pending.as_ref())
    }

    pub(crate) fn pending_len(&self) -> usize {
        self.queue.len()
    }

    fn reschedule(&mut self, scid: Scid, f: impl FnOnce(&Pending) -> u64) {
        let Some(p) = self.slots.get_mut(&scid).and_then(|s| s.pending.as_mut()) else {
            return;
        };
        let due = f(p);
        if due != p.due {
            self.queue.remove(&(p.due, scid));
            p.due = due;
            self.queue.insert((due, scid));
        }
    }
}
