//! Hold invoices at runtime: the book of invoices, one waiter per held HTLC, and the rule
//! that the store is flushed before any HTLC is answered.

use crate::engine::claims::ClaimSet;
use crate::engine::hodl::{
    CancelReason, DeadlineAction, Failure, HodlError, HodlInvoice, HodlParams, HodlState, HtlcKey,
    HtlcVerdict, IncomingHtlc,
};
use crate::node::{Node, NodeError};
use crate::store::{Record, Store, StoreError, TypedTree};
use crate::types::{PaymentHash, Preimage};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{broadcast, oneshot};

impl Record for HodlInvoice {
    const VERSION: u8 = 1;
}

pub(crate) const TREE: &str = "hodl_invoices";

/// The final answer for one held HTLC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Resolve(Preimage),
    Fail(Failure),
}

/// What an incoming HTLC gets from the service.
pub(crate) enum HtlcReply {
    /// Answer it now.
    Now(Answer),
    /// Answer when this fires (settle, cancel, timeout or stop).
    Wait(oneshot::Receiver<Answer>),
    /// Not one of our invoices after all: let lightningd handle it.
    NotOurs,
}

/// Something callers may want to announce: a state change or a deadline warning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HodlEvent {
    State {
        payment_hash: PaymentHash,
        from: HodlState,
        to: HodlState,
        reason: Option<CancelReason>,
    },
    DeadlineWarning {
        payment_hash: PaymentHash,
        blocks_to_cancel: u32,
    },
    /// Parts of an incomplete set were failed (MPP timeout or deadline); stays OPEN.
    PartsReleased { payment_hash: PaymentHash, count: usize },
}

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("unknown payment_hash {0}")]
    Unknown(PaymentHash),
    #[error("an invoice with payment_hash {0} already exists")]
    Duplicate(PaymentHash),
    #[error("label '{0}' is already used")]
    DuplicateLabel(String),
    #[error(transparent)]
    Hodl(#[from] HodlError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("no preimage known for {0}: pass the preimage")]
    NoPreimage(PaymentHash),
    /// Not every part of the invoice is held by a hook call that is waiting in this process
    /// right now, so a settle could not reach the money. Nothing was changed.
    #[error(
        "{payment_hash}: only {live} of {parts} HTLC(s) are held by ballast right now; not settling (after a node restart lightningd replays held HTLCs within seconds: retry)"
    )]
    NotHeld {
        payment_hash: PaymentHash,
        live: usize,
        parts: usize,
    },
    /// The node no longer holds the invoice's HTLCs: it was canceled (`htlcs_lost`).
    #[error("{0}: lightningd no longer holds this invoice's HTLCs; it was canceled (htlcs_lost) and cannot be settled")]
    HtlcsLost(PaymentHash),
}

/// Why [`HodlService::reconcile_with_node`] did not reconcile, or could not record it.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReconcileError {
    #[error("cannot list the node's HTLCs to reconcile hold invoices: {0}")]
    Node(NodeError),
    #[error("hold invoices reconciled, but the store could not record it: {0}")]
    Service(#[from] ServiceError),
}

#[derive(Default)]
struct Book {
    invoices: HashMap<PaymentHash, HodlInvoice>,
    waiters: HashMap<(PaymentHash, HtlcKey), oneshot::Sender<Answer>>,
}

pub struct HodlService {
    /// Parts are held by hook calls waiting in this process (Core Lightning): a settle
    /// needs each one live. False where the node holds them itself (LND).
    hook_held: bool,
    store: Store,
    tree: TypedTree<HodlInvoice>,
    claims: Arc<ClaimSet>,
    book: Mutex<Book>,
    params: HodlParams,
    events: broadcast::Sender<HodlEvent>,
}

impl HodlService {
    /// Loads every invoice; claims the hashes whose HTLCs ballast must still decide.
    /// `plugin_only_restart` is true when lightningd kept running while the plugin was
    /// stopped: nothing will be replayed, so HTLCs failed at stop are reconciled now.
    pub fn load(
        store: Store,
        claims: Arc<ClaimSet>,
        params: HodlParams,
        plugin_only_restart: bool,
        now: u64,
    ) -> Result<(Self, Vec<HodlEvent>), ServiceError> {
        let tree: TypedTree<HodlInvoice> = store.tree(TREE)?;
        let mut book = Book::default();
        let mut events = Vec::new();
        for item in tree.iter() {
            // An unreadable record is an error, not a skip: skipping could leave HTLCs of a
            // paid invoice to be failed by lightningd.
            let (_, mut inv) = item?;
            if plugin_only_restart {
                if let Some((from, to)) = inv.reconcile_after_plugin_restart(now) {
                    events.push(HodlEvent::State {
                        payment_hash: inv.payment_hash,
                        from,
                        to,
                        reason: inv.cancel_reason,
                    });
                }
                tree.put(inv.payment_hash.0, &inv)?;
            }
            if wants_claim(inv.state) {
                claims.claim(inv.payment_hash);
            }
            book.invoices.insert(inv.payment_hash, inv);
        }
        if plugin_only_restart {
            store.flush()?;
        }
        let (tx, _) = broadcast::channel(1024);
        Ok((
            HodlService {
                hook_held: true,
                store,
                tree,
                claims,
                book: Mutex::new(book),
                params,
                events: tx,
            },
            events,
        ))
    }

    /// For a node that holds hold-invoice HTLCs itself (LND): a settle does not look for
    /// hook calls waiting here.
    pub(crate) fn held_by_node(mut self) -> Self {
        self.hook_held = false;
        self
    }

    pub fn params(&self) -> &HodlParams {
        &self.params
    }

    pub fn subscribe(&self) -> broadcast::Receiver<HodlEvent> {
        self.events.subscribe()
    }

    fn lock(&self) -> MutexGuard<'_, Book> {
        // A panic while holding the lock cannot leave the maps half-written in a way that
        // matters more than refusing every later HTLC would.
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn emit(&self, e: HodlEvent) {
        // No subscribers is fine.
        let _ = self.events.send(e);
    }

    fn emit_transition(&self, inv: &HodlInvoice, (from, to): (HodlState, HodlState)) {
        self.emit(HodlEvent::State {
            payment_hash: inv.payment_hash,
            from,
            to,
            reason: inv.cancel_reason,
        });
    }

    /// Adds a new invoice, durably, before anyone can pay it. Hash and label are checked
    /// for uniqueness under the same lock that inserts, so concurrent calls cannot both win.
    pub fn create(&self, inv: HodlInvoice) -> Result<HodlInvoice, ServiceError> {
        let hash = inv.payment_hash;
        let mut book = self.lock();
        if book.invoices.contains_key(&hash) {
            return Err(ServiceError::Duplicate(hash));
        }
        if let Some(label) = &inv.label {
            if book.invoices.values().any(|i| i.label.as_ref() == Some(label)) {
                return Err(ServiceError::DuplicateLabel(label.clone()));
            }
        }
        self.tree.put(hash.0, &inv)?;
        if let Err(e) = self.store.flush() {
            let _ = self.tree.remove(hash.0);
            return Err(e.into());
        }
        book.invoices.insert(hash, inv.clone());
        self.claims.claim(hash);
        Ok(inv)
    }

    /// Writes `next` over the stored `prev` and makes it durable, or puts `prev` back.
    fn persist(&self, prev: &HodlInvoice, next: &HodlInvoice) -> Result<(), ServiceError> {
        let key = next.payment_hash.0;
        self.tree.put(key, next)?;
        if let Err(e) = self.store.flush() {
            let _ = self.tree.put(key, prev);
            return Err(e.into());
        }
        Ok(())
    }

    pub fn get(&self, hash: &PaymentHash) -> Option<HodlInvoice> {
        self.lock().invoices.get(hash).cloned()
    }

    /// Invoices, newest first, optionally of one state.
    pub fn list(&self, state: Option<HodlState>, limit: usize, offset: usize) -> (usize, Vec<HodlInvoice>) {
        let book = self.lock();
        let mut all: Vec<&HodlInvoice> = book
            .invoices
            .values()
            .filter(|i| state.is_none_or(|s| i.state == s))
            .collect();
        all.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then(a.payment_hash.cmp(&b.payment_hash))
        });
        let total = all.len();
        (total, all.into_iter().skip(offset).take(limit).cloned().collect())
    }

    pub(crate) fn label_taken(&self, label: &str) -> bool {
        self.lock()
            .invoices
            .values()
            .any(|i| i.label.as_deref() == Some(label))
    }

    pub fn counts(&self) -> HashMap<HodlState, usize> {
        let mut m = HashMap::new();
        for i in self.lock().invoices.values() {
            *m.entry(i.state).or_default() += 1;
        }
        m
    }

    /// Decides an HTLC for a claimed hash. Flushes before returning any final answer.
    pub(crate) fn on_htlc(
        &self,
        hash: PaymentHash,
        htlc: &IncomingHtlc,
        now: u64,
        height: u32,
    ) -> Result<HtlcReply, ServiceError> {
        // State changes are flushed and announced under the book lock, so the store and
        // the notifications see transitions in the order they happened.
        let mut book = self.lock();
        let Some(inv) = book.invoices.get_mut(&hash) else {
            return Ok(HtlcReply::NotOurs);
        };
        let prev = inv.clone();
        let mut next = prev.clone();
        let outcome = next.on_htlc(htlc, now, height, &self.params);
        // Parts that merely join a set are recovered from lightningd's replay if lost; a
        // state change or an answer is not, so those are made durable first.
        let must_flush =
            outcome.transition.is_some() || (outcome.changed && outcome.verdict != HtlcVerdict::Hold);
        let written = if must_flush {
            self.persist(&prev, &next)
        } else if outcome.changed {
            self.tree.put(hash.0, &next).map_err(ServiceError::from)
        } else {
            Ok(())
        };
        let replay = prev.htlcs.iter().any(|h| h.key == htlc.key);
        if let Err(e) = written {
            // A replayed part only had its stop mark cleared: losing that write costs
            // nothing, and failing the part would cost the payment.
            if !(replay && outcome.transition.is_none()) {
                // The caller fails this part. The set it was to join cannot complete now, so
                // the parts already taken are failed too rather than left to the MPP timeout.
                let amounts: HashMap<HtlcKey, crate::types::Msat> =
                    inv.htlcs.iter().map(|h| (h.key, h.amount)).collect();
                let keys = inv.release_parts(now);
                let snapshot = inv.clone();
                let answers = fail_waiters_of(&mut book, &snapshot, &keys, height, &amounts);
                drop(book);
                deliver(answers);
                return Err(e);
            }
        }
        *inv = next.clone();
        if let Some(t) = outcome.transition {
            self.emit_transition(&next, t);
        }
        {
            let reply = match outcome.verdict {
                HtlcVerdict::Hold => {
                    let (tx, rx) = oneshot::channel();
                    // A replay replaces the waiter of the previous lightningd run, whose
                    // request no longer exists.
                    book.waiters.insert((hash, htlc.key), tx);
                    HtlcReply::Wait(rx)
                }
                HtlcVerdict::Resolve(p) => HtlcReply::Now(Answer::Resolve(p)),
                HtlcVerdict::Fail(f) => HtlcReply::Now(Answer::Fail(f)),
            };
            Ok(reply)
        }
    }

    /// Settles with `preimage`, or with the stored preimage when only `hash` is given, at
    /// chain height `height`.
    ///
    /// SETTLED is recorded only when every part is held by a hook call waiting in this
    /// process, so the preimage reaches lightningd for each of them; otherwise nothing
    /// changes and [`ServiceError::NotHeld`] says so. Inside the cancel window the settle is
    /// refused and the invoice canceled instead, as the deadline would have done.
    pub fn settle(
        &self,
        preimage: Option<Preimage>,
        hash: Option<PaymentHash>,
        now: u64,
        height: u32,
    ) -> Result<HodlInvoice, ServiceError> {
        self.settle_checked(preimage, hash, now, Some(height))
    }

    /// Records SETTLED for an invoice the node has already settled itself (LND confirmed
    /// SettleInvoice): the money arrived, so no deadline can turn it into a cancel.
    pub(crate) fn record_node_settled(
        &self,
        preimage: Preimage,
        now: u64,
    ) -> Result<HodlInvoice, ServiceError> {
        self.settle_checked(Some(preimage), None, now, None)
    }

    fn settle_checked(
        &self,
        preimage: Option<Preimage>,
        hash: Option<PaymentHash>,
        now: u64,
        height: Option<u32>,
    ) -> Result<HodlInvoice, ServiceError> {
        let hash = match (preimage, hash) {
            (Some(p), _) => p.payment_hash(),
            (None, Some(h)) => h,
            (None, None) => return Err(ServiceError::NoPreimage(PaymentHash([0; 32]))),
        };
        let (inv, answers) = {
            let mut book = self.lock();
            let inv = book.invoices.get(&hash).ok_or(ServiceError::Unknown(hash))?;
            if inv.state == HodlState::Canceled && inv.cancel_reason == Some(CancelReason::HtlcsLost) {
                return Err(ServiceError::HtlcsLost(hash));
            }
            let pre = preimage.or(inv.preimage).ok_or(ServiceError::NoPreimage(hash))?;
            let mut next = inv.clone();
            // Height 0: no HTLC is near its expiry, which is what a node-confirmed settle means.
            let (keys, t) = match next.settle(pre, now, height.unwrap_or(0), &self.params) {
                Ok(v) => v,
                Err(e @ HodlError::TooLate { .. }) => {
                    drop(book);
                    self.cancel(hash, CancelReason::Deadline, now, height.unwrap_or(0))?;
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            };
            let live = keys.iter().filter(|k| is_live(&book, hash, k)).count();
            if self.hook_held && live < keys.len() {
                return Err(ServiceError::NotHeld {
                    payment_hash: hash,
                    live,
                    parts: keys.len(),
                });
            }
            // Durable before any HTLC is claimed: after a crash the replay must find SETTLED.
            self.persist(inv, &next)?;
            book.invoices.insert(hash, next.clone());
            self.emit_transition(&next, t);
            let answers = take_waiters(&mut book, hash, &keys, Answer::Resolve(pre));
            (next, answers)
        };
        deliver(answers);
        Ok(inv)
    }

    /// Compares the OPEN and ACCEPTED invoices with the incoming HTLCs the node holds
    /// undecided right now (`node_holds`). A part neither waiting on a hook call here nor
    /// held by the node is gone: it no longer counts, and an ACCEPTED invoice that lost one
    /// is canceled (`htlcs_lost`) and its remaining parts failed back. Returns the
    /// transitions, already announced.
    pub(crate) fn reconcile(
        &self,
        node_holds: &HashSet<HtlcKey>,
        now: u64,
        height: u32,
    ) -> Result<Vec<HodlEvent>, ServiceError> {
        let mut events = Vec::new();
        let mut answers = Vec::new();
        let mut released = Vec::new();
        let mut write_error = None;
        {
            let mut book = self.lock();
            let mut hashes: Vec<PaymentHash> = book
                .invoices
                .values()
                .filter(|i| matches!(i.state, HodlState::Open | HodlState::Accepted))
                .map(|i| i.payment_hash)
                .collect();
            hashes.sort_unstable();
            for hash in hashes {
                let Some(inv) = book.invoices.get(&hash) else {
                    continue;
                };
                let held = |k: &HtlcKey| is_live(&book, hash, k) || node_holds.contains(k);
                let mut next = inv.clone();
                let t = next.reconcile_held(held, now);
                if next == *inv {
                    continue;
                }
                // Lost parts are gone whether or not this is recorded; a record that still
                // lists them is reconciled again at the next start.
                if let Err(e) = self.persist(inv, &next) {
                    write_error.get_or_insert(e);
                }
                let remaining: Vec<HtlcKey> = next.htlcs.iter().map(|h| h.key).collect();
                book.invoices.insert(hash, next.clone());
                if let Some(t) = t {
                    events.push(HodlEvent::State {
                        payment_hash: hash,
                        from: t.0,
                        to: t.1,
                        reason: next.cancel_reason,
                    });
                    released.push(hash);
                    answers.extend(fail_waiters(&mut book, &next, &remaining, height));
                }
            }
            for e in &events {
                self.emit(e.clone());
            }
        }
        for h in &released {
            self.claims.release(h);
        }
        deliver(answers);
        match write_error {
            Some(e) => Err(e),
            None => Ok(events),
        }
    }

    /// Asks `node` which incoming HTLCs it holds undecided right now and reconciles with
    /// that ([`Self::reconcile`]). A node that holds hold-invoice HTLCs itself answers
    /// nothing to compare, and nothing changes; a node that cannot be asked changes nothing
    /// either (the settle-time check of live hook calls still guards the money).
    /// [`Self::reconcile`] against what `node` holds right now. A node that holds
    /// hold-invoice HTLCs itself (LND: `held_incoming` is `None`) changes nothing.
    pub(crate) async fn reconcile_with_node<N: Node>(
        &self,
        node: &N,
        now: u64,
        height: u32,
    ) -> Result<Vec<HodlEvent>, ReconcileError> {
        let Some(held) = node.held_incoming().await.map_err(ReconcileError::Node)? else {
            return Ok(Vec::new());
        };
        let keys: HashSet<HtlcKey> = held
            .iter()
            .map(|h| HtlcKey {
                scid: h.channel,
                id: h.id,
            })
            .collect();
        Ok(super::blocking(|| self.reconcile(&keys, now, height))?)
    }

    /// Cancels and fails every held part back. Failing is the safe direction, so the parts
    /// are answered even when the store cannot record the cancel: the error is returned
    /// after they were, and the next start reconciles the stale record with lightningd.
    pub fn cancel(
        &self,
        hash: PaymentHash,
        reason: CancelReason,
        now: u64,
        height: u32,
    ) -> Result<HodlInvoice, ServiceError> {
        let (inv, answers, written) = {
            let mut book = self.lock();
            let inv = book.invoices.get(&hash).ok_or(ServiceError::Unknown(hash))?;
            let mut next = inv.clone();
            let (keys, t) = next.cancel(reason, now)?;
            let written = self.persist(inv, &next);
            book.invoices.insert(hash, next.clone());
            self.emit_transition(&next, t);
            let answers = fail_waiters(&mut book, &next, &keys, height);
            (next, answers, written)
        };
        self.claims.release(&hash);
        deliver(answers);
        written.map(|()| inv)
    }

    /// Periodic work: MPP timeouts and expiry. Returns how many invoices changed. Parts
    /// are failed back even if the store cannot record it (the error is returned after).
    pub fn tick(&self, now: u64) -> Result<usize, ServiceError> {
        let mut answers = Vec::new();
        let mut events = Vec::new();
        let mut released_claims = Vec::new();
        let mut write_error: Option<ServiceError> = None;
        {
            let mut book = self.lock();
            let hashes: Vec<PaymentHash> = book
                .invoices
                .values()
                .filter(|i| i.state == HodlState::Open)
                .map(|i| i.payment_hash)
                .collect();
            // In hash order, not the map's: the same book gives the same events in the
            // same order (the simulator's runs are compared line by line).
            let mut hashes = hashes;
            hashes.sort_unstable();
            for hash in hashes {
                let Some(inv) = book.invoices.get_mut(&hash) else {
                    continue;
                };
                let keys = inv.mpp_timeout(now, &self.params);
                let expired = inv.expire(now);
                if keys.is_empty() && expired.is_none() {
                    continue;
                }
                if let Err(e) = self.tree.put(hash.0, inv) {
                    write_error.get_or_insert(e.into());
                }
                let snapshot = inv.clone();
                if !keys.is_empty() {
                    events.push(HodlEvent::PartsReleased {
                        payment_hash: hash,
                        count: keys.len(),
                    });
                    answers.extend(take_waiters(
                        &mut book,
                        hash,
                        &keys,
                        Answer::Fail(Failure::MppTimeout),
                    ));
                }
                if let Some((from, to)) = expired {
                    released_claims.push(hash);
                    events.push(HodlEvent::State {
                        payment_hash: hash,
                        from,
                        to,
                        reason: snapshot.cancel_reason,
                    });
                }
            }
            if events.is_empty() {
                return Ok(0);
            }
            // Durable and announced under the lock, in order with every other transition.
            if let Err(e) = self.store.flush() {
                write_error.get_or_insert(e.into());
            }
            for e in &events {
                self.emit(e.clone());
            }
        }
        for h in &released_claims {
            self.claims.release(h);
        }
        deliver(answers);
        match write_error {
            Some(e) => Err(e),
            None => Ok(events.len()),
        }
    }

    /// A new block: warn about and enforce HTLC deadlines. Parts are failed back even if
    /// the store cannot record it (the error is returned after).
    pub(crate) fn on_block(&self, height: u32, now: u64) -> Result<Vec<HodlEvent>, ServiceError> {
        let mut to_cancel = Vec::new();
        let mut events = Vec::new();
        let mut answers = Vec::new();
        let mut write_error: Option<ServiceError> = None;
        {
            let mut book = self.lock();
            let mut hashes: Vec<PaymentHash> = book.invoices.keys().copied().collect();
            hashes.sort_unstable();
            for hash in hashes {
                let Some(inv) = book.invoices.get_mut(&hash) else {
                    continue;
                };
                // Once every HTLC of a settled invoice has expired lightningd cannot replay
                // any of them: the claim (and its memory) can go.
                if inv.state == HodlState::Settled
                    && inv.htlcs.iter().all(|h| h.cltv_expiry < height)
                    && self.claims.contains(&hash)
                {
                    self.claims.release(&hash);
                }
                match inv.on_block(height, &self.params) {
                    DeadlineAction::None => {}
                    DeadlineAction::Warn { blocks_to_cancel } => events.push(HodlEvent::DeadlineWarning {
                        payment_hash: hash,
                        blocks_to_cancel,
                    }),
                    DeadlineAction::Cancel => to_cancel.push(hash),
                    DeadlineAction::ReleaseParts => {
                        // Taken before the parts are dropped from the invoice.
                        let amounts: HashMap<HtlcKey, crate::types::Msat> =
                            inv.htlcs.iter().map(|h| (h.key, h.amount)).collect();
                        let keys = inv.release_parts(now);
                        if let Err(e) = self.tree.put(hash.0, inv) {
                            write_error.get_or_insert(e.into());
                        }
                        events.push(HodlEvent::PartsReleased {
                            payment_hash: hash,
                            count: keys.len(),
                        });
                        let snapshot = inv.clone();
                        answers.extend(fail_waiters_of(&mut book, &snapshot, &keys, height, &amounts));
                    }
                }
            }
            if !answers.is_empty() {
                if let Err(e) = self.store.flush() {
                    write_error.get_or_insert(e.into());
                }
            }
            for e in &events {
                self.emit(e.clone());
            }
        }
        deliver(answers);
        for hash in to_cancel {
            // Another caller may have settled or canceled it since: that is fine. Every
            // deadline is acted on, whatever an earlier one's store write did.
            match self.cancel(hash, CancelReason::Deadline, now, height) {
                Ok(_) | Err(ServiceError::Hodl(HodlError::IllegalTransition { .. })) => {}
                Err(e) => {
                    write_error.get_or_insert(e);
                }
            }
        }
        match write_error {
            Some(e) => Err(e),
            None => Ok(events),
        }
    }

    /// The plugin is stopping: answer every held HTLC rather than abandon it.
    pub fn stop(&self, now: u64, height: u32) -> Result<usize, ServiceError> {
        let mut answers = Vec::new();
        let mut write_error: Option<ServiceError> = None;
        {
            let mut book = self.lock();
            let mut hashes: Vec<PaymentHash> = book.invoices.keys().copied().collect();
            hashes.sort_unstable();
            for hash in hashes {
                let Some(inv) = book.invoices.get_mut(&hash) else {
                    continue;
                };
                match (inv.state, inv.preimage) {
                    (HodlState::Settled, Some(p)) => {
                        let keys: Vec<HtlcKey> = inv.htlcs.iter().map(|h| h.key).collect();
                        answers.extend(take_waiters(&mut book, hash, &keys, Answer::Resolve(p)));
                    }
                    _ => {
                        let keys = inv.release_at_stop(now);
                        if keys.is_empty() {
                            continue;
                        }
                        if let Err(e) = self.tree.put(hash.0, inv) {
                            write_error.get_or_insert(e.into());
                        }
                        let snapshot = inv.clone();
                        answers.extend(fail_waiters(&mut book, &snapshot, &keys, height));
                    }
                }
            }
        }
        if let Err(e) = self.store.flush() {
            write_error.get_or_insert(e.into());
        }
        let n = answers.len();
        deliver(answers);
        match write_error {
            Some(e) => Err(e),
            None => Ok(n),
        }
    }

    /// How many HTLCs are waiting for an answer right now.
    pub(crate) fn held_count(&self) -> usize {
        self.lock().waiters.len()
    }
}

/// True when a hook call for this part is waiting in this process: lightningd holds the
/// HTLC for ballast and will act on the answer.
fn is_live(book: &Book, hash: PaymentHash, key: &HtlcKey) -> bool {
    book.waiters.get(&(hash, *key)).is_some_and(|tx| !tx.is_closed())
}

fn wants_claim(s: HodlState) -> bool {
    // Settled invoices stay claimed so a replayed HTLC is resolved, not failed.
    matches!(s, HodlState::Open | HodlState::Accepted | HodlState::Settled)
}

type Delivery = (oneshot::Sender<Answer>, Answer);

fn take_waiters(book: &mut Book, hash: PaymentHash, keys: &[HtlcKey], answer: Answer) -> Vec<Delivery> {
    take_waiters_with(book, hash, keys, |_| answer.clone())
}

fn take_waiters_with(
    book: &mut Book,
    hash: PaymentHash,
    keys: &[HtlcKey],
    answer: impl Fn(&HtlcKey) -> Answer,
) -> Vec<Delivery> {
    keys.iter()
        .filter_map(|k| book.waiters.remove(&(hash, *k)).map(|tx| (tx, answer(k))))
        .collect()
}

/// Fails the waiters of `keys` with BOLT 4's incorrect_or_unknown_payment_details, each
/// carrying its own HTLC amount as the spec asks.
fn fail_waiters(book: &mut Book, inv: &HodlInvoice, keys: &[HtlcKey], height: u32) -> Vec<Delivery> {
    let amounts: HashMap<HtlcKey, crate::types::Msat> = inv.htlcs.iter().map(|h| (h.key, h.amount)).collect();
    fail_waiters_of(book, inv, keys, height, &amounts)
}

fn fail_waiters_of(
    book: &mut Book,
    inv: &HodlInvoice,
    keys: &[HtlcKey],
    height: u32,
    amounts: &HashMap<HtlcKey, crate::types::Msat>,
) -> Vec<Delivery> {
    take_waiters_with(book, inv.payment_hash, keys, |k| {
        Answer::Fail(Failure::IncorrectOrUnknownPaymentDetails {
            htlc_msat: amounts.get(k).copied().unwrap_or(inv.amount),
            height,
        })
    })
}

fn deliver(answers: Vec<Delivery>) {
    for (tx, a) in answers {
        // The hook call may be gone (lightningd restarted); its replay will be answered.
        let _ = tx.send(a);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::HeldIncoming;
    use crate::service::testnode::ScriptedNode;
    use crate::types::{Msat, Scid};

    const PRE: Preimage = Preimage([7; 32]);
    const SECRET: [u8; 32] = [3; 32];

    fn service() -> HodlService {
        let store = Store::temporary().unwrap();
        let (svc, events) =
            HodlService::load(store, Arc::new(ClaimSet::new()), HodlParams::default(), false, 0).unwrap();
        assert!(events.is_empty());
        svc
    }

    fn invoice(amount: u64) -> HodlInvoice {
        HodlInvoice {
            payment_hash: PRE.payment_hash(),
            preimage: Some(PRE),
            payment_secret: SECRET,
            amount: Msat(amount),
            bolt11: "lnbcrt1".into(),
            label: None,
            description: None,
            created_at: 0,
            expires_at: 3_600,
            min_final_cltv: 18,
            state: HodlState::Open,
            htlcs: vec![],
            mpp_total: None,
            updated_at: 0,
            cancel_reason: None,
        }
    }

    fn key(id: u64) -> HtlcKey {
        HtlcKey {
            scid: Scid::new(103, 1, 0).unwrap(),
            id,
        }
    }

    fn part(id: u64, amount: u64, total: u64) -> IncomingHtlc {
        IncomingHtlc {
            key: key(id),
            amount: Msat(amount),
            cltv_expiry: 100 + 40,
            cltv_expiry_relative: 40,
            payment_secret: Some(SECRET),
            total_msat: Some(Msat(total)),
        }
    }

    fn hold(svc: &HodlService, id: u64, amount: u64, total: u64) -> oneshot::Receiver<Answer> {
        match svc
            .on_htlc(PRE.payment_hash(), &part(id, amount, total), 10, 100)
            .unwrap()
        {
            HtlcReply::Wait(rx) => rx,
            _ => panic!("part {id} was not held"),
        }
    }

    #[test]
    fn settle_needs_every_part_held_by_a_live_hook_call() {
        let svc = service();
        svc.create(invoice(10_000)).unwrap();
        let first = hold(&svc, 1, 5_000, 10_000);
        let second = hold(&svc, 2, 5_000, 10_000);
        assert_eq!(svc.get(&PRE.payment_hash()).unwrap().state, HodlState::Accepted);
        // The hook call of one part is gone (lightningd no longer waits on it).
        drop(second);
        let e = svc.settle(None, Some(PRE.payment_hash()), 20, 100).unwrap_err();
        assert!(
            matches!(
                e,
                ServiceError::NotHeld {
                    live: 1,
                    parts: 2,
                    ..
                }
            ),
            "{e}"
        );
        // Nothing changed: still ACCEPTED, the live part still waiting, no preimage shown.
        assert_eq!(svc.get(&PRE.payment_hash()).unwrap().state, HodlState::Accepted);
        assert_eq!(svc.held_count(), 2);
        drop(first);
    }

    /// [`PRE`]'s invoice went from ACCEPTED to CANCELED because its HTLCs are gone.
    fn canceled_as_lost() -> HodlEvent {
        HodlEvent::State {
            payment_hash: PRE.payment_hash(),
            from: HodlState::Accepted,
            to: HodlState::Canceled,
            reason: Some(CancelReason::HtlcsLost),
        }
    }

    #[test]
    fn reconcile_cancels_what_the_node_no_longer_holds_and_fails_the_rest() {
        let svc = service();
        svc.create(invoice(10_000)).unwrap();
        let mut first = hold(&svc, 1, 5_000, 10_000);
        let second = hold(&svc, 2, 5_000, 10_000);
        drop(second);
        // The node still holds part 1 (its hook call is live here too), not part 2.
        let held: HashSet<HtlcKey> = [key(1)].into_iter().collect();
        let events = svc.reconcile(&held, 30, 100).unwrap();
        assert_eq!(events, [canceled_as_lost()]);
        // The part still held is failed back rather than left hanging.
        assert!(matches!(first.try_recv(), Ok(Answer::Fail(_))));
        let e = svc.settle(None, Some(PRE.payment_hash()), 31, 100).unwrap_err();
        assert!(matches!(e, ServiceError::HtlcsLost(_)), "{e}");
    }

    #[test]
    fn reconcile_keeps_parts_the_node_holds_before_their_replay() {
        let svc = service();
        svc.create(invoice(10_000)).unwrap();
        drop(hold(&svc, 1, 10_000, 10_000));
        // After a node restart: no hook call yet, but lightningd lists the HTLC.
        let held: HashSet<HtlcKey> = [key(1)].into_iter().collect();
        assert!(svc.reconcile(&held, 30, 100).unwrap().is_empty());
        assert_eq!(svc.get(&PRE.payment_hash()).unwrap().state, HodlState::Accepted);
        // Not replayed yet: a settle is refused and changes nothing; after the replay it works.
        assert!(matches!(
            svc.settle(None, Some(PRE.payment_hash()), 31, 100),
            Err(ServiceError::NotHeld {
                live: 0,
                parts: 1,
                ..
            })
        ));
        let mut replay = hold(&svc, 1, 10_000, 10_000);
        let inv = svc.settle(None, Some(PRE.payment_hash()), 32, 100).unwrap();
        assert_eq!(inv.state, HodlState::Settled);
        assert_eq!(replay.try_recv().unwrap(), Answer::Resolve(PRE));
    }

    /// What a node lists for the parts of [`PRE`]'s invoice it still holds.
    fn node_holding(ids: &[u64]) -> ScriptedNode {
        let node = ScriptedNode::new(crate::engine::graph::tests::nid(1), Vec::new());
        let held = ids
            .iter()
            .map(|&id| HeldIncoming {
                channel: key(id).scid,
                id,
                payment_hash: PRE.payment_hash(),
            })
            .collect();
        node.holds(Ok(Some(held)));
        node
    }

    #[tokio::test]
    async fn settle_is_refused_while_no_hook_call_waits_though_the_node_holds_the_htlc() {
        let svc = service();
        svc.create(invoice(10_000)).unwrap();
        // The hook call is gone (lightningd restarted), the HTLC is still held by the node.
        drop(hold(&svc, 1, 10_000, 10_000));
        let node = node_holding(&[1]);
        assert!(svc.reconcile_with_node(&node, 30, 100).await.unwrap().is_empty());
        assert!(node.script_used_up());
        assert_eq!(svc.get(&PRE.payment_hash()).unwrap().state, HodlState::Accepted);
        match svc.settle(None, Some(PRE.payment_hash()), 31, 100) {
            Err(ServiceError::NotHeld { live, parts, .. }) => assert_eq!((live, parts), (0, 1)),
            other => panic!("{other:?}"),
        }
        assert_eq!(svc.get(&PRE.payment_hash()).unwrap().state, HodlState::Accepted);
    }

    #[tokio::test]
    async fn reconcile_cancels_an_accepted_invoice_whose_htlc_the_node_no_longer_holds() {
        let svc = service();
        svc.create(invoice(10_000)).unwrap();
        drop(hold(&svc, 1, 10_000, 10_000));
        // The node lists another HTLC of the same channel, not ours.
        let events = svc
            .reconcile_with_node(&node_holding(&[2]), 30, 100)
            .await
            .unwrap();
        assert_eq!(events, [canceled_as_lost()]);
        let e = svc.settle(None, Some(PRE.payment_hash()), 31, 100).unwrap_err();
        assert!(matches!(e, ServiceError::HtlcsLost(_)), "{e}");
    }

    #[tokio::test]
    async fn a_node_that_cannot_be_asked_or_holds_htlcs_itself_changes_nothing() {
        let svc = service();
        svc.create(invoice(10_000)).unwrap();
        drop(hold(&svc, 1, 10_000, 10_000));
        let node = ScriptedNode::new(crate::engine::graph::tests::nid(1), Vec::new());
        node.holds(Err(crate::node::NodeError::Transport {
            method: "listpeerchannels",
            message: "connection refused".into(),
        }));
        node.holds(Ok(None));
        let e = svc.reconcile_with_node(&node, 30, 100).await.unwrap_err();
        assert!(matches!(e, ReconcileError::Node(_)), "{e}");
        assert!(svc.reconcile_with_node(&node, 31, 100).await.unwrap().is_empty());
        assert!(node.script_used_up());
        assert_eq!(svc.get(&PRE.payment_hash()).unwrap().state, HodlState::Accepted);
    }

    #[test]
    fn settle_inside_the_window_is_refused_and_cancels() {
        let svc = service();
        svc.create(invoice(10_000)).unwrap();
        let mut rx = hold(&svc, 1, 10_000, 10_000);
        // Expires at 140; the default window is 10 blocks.
        let e = svc.settle(None, Some(PRE.payment_hash()), 40, 130).unwrap_err();
        assert!(matches!(e, ServiceError::Hodl(HodlError::TooLate { .. })), "{e}");
        let inv = svc.get(&PRE.payment_hash()).unwrap();
        assert_eq!(
            (inv.state, inv.cancel_reason),
            (HodlState::Canceled, Some(CancelReason::Deadline))
        );
        assert!(matches!(rx.try_recv(), Ok(Answer::Fail(_))));
    }
}
