//! Alerts and the evaluator that raises, updates and clears them.
//!
//! An alert stands for one condition on one channel for as long as it lasts: the evaluator
//! keeps at most one active alert per (kind, channel), bumps its `count`/`last_seen` while
//! the condition holds, clears it when the condition ends, and raises a fresh alert (new id)
//! if the condition comes back. Callers notify on `Raised`/`Cleared` and merely persist
//! `Updated`, so a standing condition is announced once, not on every poll.

use super::check::{check, Finding, Observed};
use super::rules::{MonitorConfig, Severity};
use super::snapshot::{ChannelKey, ChannelSnapshot};
use crate::node::ChannelState;
use crate::types::{Msat, NodeId};
use serde::{Deserialize, Serialize};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    LowLocal,
    LowRemote,
    PendingHtlcs,
    HtlcNearExpiry,
    PendingOpen,
    Closing,
    ForceClosed,
    PeerDisconnected,
    BalanceChange,
}

impl AlertKind {
    /// In declaration (and therefore `Ord`) order.
    pub(crate) const ALL: [AlertKind; 9] = [
        AlertKind::LowLocal,
        AlertKind::LowRemote,
        AlertKind::PendingHtlcs,
        AlertKind::HtlcNearExpiry,
        AlertKind::PendingOpen,
        AlertKind::Closing,
        AlertKind::ForceClosed,
        AlertKind::PeerDisconnected,
        AlertKind::BalanceChange,
    ];

    /// The same name as the rule that raises it, so `monitor-set` and alerts read alike.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::LowLocal => "low_local",
            AlertKind::LowRemote => "low_remote",
            AlertKind::PendingHtlcs => "pending_htlcs",
            AlertKind::HtlcNearExpiry => "htlc_near_expiry",
            AlertKind::PendingOpen => "pending_open",
            AlertKind::Closing => "closing",
            AlertKind::ForceClosed => "force_closed",
            AlertKind::PeerDisconnected => "peer_disconnected",
            AlertKind::BalanceChange => "balance_change",
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown alert type '{0}'")]
pub struct UnknownAlertKind(pub String);

impl FromStr for AlertKind {
    type Err = UnknownAlertKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AlertKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownAlertKind(s.chars().take(80).collect()))
    }
}

/// A counter rather than a hash of (kind, channel): a condition that returns after clearing
/// must get a new id, so that acknowledging the old one does not silence the new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct AlertId(pub u64);

impl fmt::Display for AlertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Active,
    Cleared,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub id: AlertId,
    #[serde(rename = "type")]
    pub kind: AlertKind,
    pub severity: Severity,
    pub channel: ChannelKey,
    pub peer: NodeId,
    /// What is wrong and what to do, with the figures of the latest evaluation.
    pub message: String,
    pub first_seen: u64,
    pub last_seen: u64,
    /// Evaluations in which the condition held.
    pub count: u64,
    pub state: AlertState,
    pub cleared_at: Option<u64>,
    /// Set by acknowledging; the alert stays active (the condition has not gone away), it is
    /// just known to someone.
    pub acknowledged_at: Option<u64>,
}

impl Alert {
    pub(crate) fn is_active(&self) -> bool {
        self.state == AlertState::Active
    }

    pub(crate) fn is_acknowledged(&self) -> bool {
        self.acknowledged_at.is_some()
    }

    /// Big-endian id: store iteration order is then creation order.
    pub fn store_key(&self) -> [u8; 8] {
        self.id.0.to_be_bytes()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    Raised(Alert),
    Updated(Alert),
    Cleared(Alert),
}

impl Transition {
    pub fn alert(&self) -> &Alert {
        match self {
            Transition::Raised(a) | Transition::Updated(a) | Transition::Cleared(a) => a,
        }
    }

    pub(crate) fn into_alert(self) -> Alert {
        match self {
            Transition::Raised(a) | Transition::Updated(a) | Transition::Cleared(a) => a,
        }
    }

    /// Raised and cleared alerts are news; updates only need persisting.
    pub fn is_notable(&self) -> bool {
        !matches!(self, Transition::Updated(_))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("alert {0} is not active (unknown, or already cleared)")]
    NotActive(AlertId),
}

/// Per-channel memory the rules need but a single snapshot cannot give.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Track {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    opening_since: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    disconnected_since: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    last_local: Option<Msat>,
}

impl Track {
    /// Tracks whatever the rules might need, enabled or not, so that enabling a rule later
    /// judges from when the condition really began.
    fn observe(&mut self, s: &ChannelSnapshot, now: u64) -> Observed {
        let opening_blocks = if s.state == ChannelState::Opening {
            let since = *self.opening_since.get_or_insert(s.height);
            Some(s.height.saturating_sub(since))
        } else {
            self.opening_since = None;
            None
        };
        let disconnected_secs = if s.peer_connected {
            self.disconnected_since = None;
            None
        } else {
            let since = *self.disconnected_since.get_or_insert(now);
            Some(now.saturating_sub(since))
        };
        let previous_local = self.last_local.replace(s.local);
        Observed {
            opening_blocks,
            disconnected_secs,
            previous_local,
        }
    }
}

/// The monitor's memory between evaluations: active alerts, the id counter, and per-channel
/// tracking. Serializable so the plugin can persist it and resume after a restart without
/// re-raising every standing alert or forgetting how long a peer has been away.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "EvaluatorState", into = "EvaluatorState")]
pub struct Evaluator {
    next_id: u64,
    active: BTreeMap<(ChannelKey, AlertKind), Alert>,
    tracks: BTreeMap<ChannelKey, Track>,
}

/// The stored form: JSON maps need string keys, which a (channel, kind) pair is not.
#[derive(Serialize, Deserialize)]
struct EvaluatorState {
    next_id: u64,
    active: Vec<Alert>,
    tracks: BTreeMap<ChannelKey, Track>,
}

impl From<EvaluatorState> for Evaluator {
    fn from(st: EvaluatorState) -> Self {
        let mut ev = Evaluator {
            next_id: st.next_id.max(1),
            active: BTreeMap::new(),
            tracks: st.tracks,
        };
        // A hand-edited or half-written state must not break the one-active-alert invariant
        // or make new ids collide with stored ones.
        for a in st.active.into_iter().filter(Alert::is_active) {
            ev.next_id = ev.next_id.max(a.id.0.saturating_add(1));
            ev.active.entry((a.channel, a.kind)).or_insert(a);
        }
        ev
    }
}

impl From<Evaluator> for EvaluatorState {
    fn from(ev: Evaluator) -> Self {
        EvaluatorState {
            next_id: ev.next_id,
            active: ev.active.into_values().collect(),
            tracks: ev.tracks,
        }
    }
}

impl Default for Evaluator {
    fn default() -> Self {
        Evaluator {
            next_id: 1,
            active: BTreeMap::new(),
            tracks: BTreeMap::new(),
        }
    }
}

impl Evaluator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes sure future ids are above `id`, for when the evaluator state was lost but
    /// alerts with ids up to `id` are still stored.
    pub(crate) fn reserve_ids_through(&mut self, id: AlertId) {
        self.next_id = self.next_id.max(id.0.saturating_add(1));
    }

    /// Judges every channel against the rules in force for it and returns what changed.
    ///
    /// `snapshots` must list every channel the node knows: a channel missing from it is
    /// taken as gone, and its alerts clear. A channel listed twice is judged once (first
    /// listing wins), so one pass can never hold two alerts of a kind for it.
    pub fn evaluate(
        &mut self,
        snapshots: &[ChannelSnapshot],
        config: &MonitorConfig,
        now: u64,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut seen: HashSet<ChannelKey> = HashSet::with_capacity(snapshots.len());
        for s in snapshots {
            if !seen.insert(s.key) {
                continue;
            }
            let observed = self.tracks.entry(s.key).or_default().observe(s, now);
            let rules = config.rules_for(s.scid(), &s.peer);
            for kind in AlertKind::ALL {
                let finding = check(kind, &rules, s, &observed);
                self.settle(s, kind, finding, now, &mut out);
            }
        }
        let gone: Vec<_> = self
            .active
            .keys()
            .filter(|(k, _)| !seen.contains(k))
            .copied()
            .collect();
        for key in gone {
            if let Some(a) = self.active.remove(&key) {
                out.push(Transition::Cleared(cleared(a, now)));
            }
        }
        self.tracks.retain(|k, _| seen.contains(k));
        out
    }

    fn settle(
        &mut self,
        s: &ChannelSnapshot,
        kind: AlertKind,
        finding: Option<Finding>,
        now: u64,
        out: &mut Vec<Transition>,
    ) {
        match (self.active.entry((s.key, kind)), finding) {
            (Entry::Occupied(mut e), Some(f)) => {
                let a = e.get_mut();
                // A clock stepping back must not make an alert look older than it is.
                a.last_seen = a.last_seen.max(now);
                a.count = a.count.saturating_add(1);
                a.severity = f.severity;
                a.message = f.message;
                a.peer = s.peer;
                out.push(Transition::Updated(a.clone()));
            }
            (Entry::Occupied(e), None) => out.push(Transition::Cleared(cleared(e.remove(), now))),
            (Entry::Vacant(e), Some(f)) => {
                let id = AlertId(self.next_id);
                self.next_id = self.next_id.saturating_add(1);
                let a = e.insert(Alert {
                    id,
                    kind,
                    severity: f.severity,
                    channel: s.key,
                    peer: s.peer,
                    message: f.message,
                    first_seen: now,
                    last_seen: now,
                    count: 1,
                    state: AlertState::Active,
                    cleared_at: None,
                    acknowledged_at: None,
                });
                out.push(Transition::Raised(a.clone()));
            }
            (Entry::Vacant(_), None) => {}
        }
    }

    /// Marks an active alert as seen by someone. Acknowledging twice keeps the first time.
    pub fn acknowledge(&mut self, id: AlertId, now: u64) -> Result<Alert, AckError> {
        let a = self
            .active
            .values_mut()
            .find(|a| a.id == id)
            .ok_or(AckError::NotActive(id))?;
        a.acknowledged_at.get_or_insert(now);
        Ok(a.clone())
    }

    pub fn active(&self) -> impl Iterator<Item = &Alert> + '_ {
        self.active.values()
    }

    pub(crate) fn active_for(&self, channel: ChannelKey) -> impl Iterator<Item = &Alert> + '_ {
        let first = AlertKind::ALL[0];
        let last = AlertKind::ALL[AlertKind::ALL.len() - 1];
        self.active
            .range((channel, first)..=(channel, last))
            .map(|(_, a)| a)
    }

    pub fn active_count(&self) -> usize {
        self.active.len()
    }

    pub fn get(&self, id: AlertId) -> Option<&Alert> {
        self.active.values().find(|a| a.id == id)
    }
}

fn cleared(mut a: Alert, now: u64) -> Alert {
    a.state = AlertState::Cleared;
    a.cleared_at = Some(now.max(a.last_seen));
    a
}
