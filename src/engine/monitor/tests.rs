//! Evaluator scenarios: every rule fires and clears, de-duplication, acknowledgement,
//! override precedence, and a property test of the alert invariants.

use super::snapshot::test_support::{channel, htlc, node, scid};
use super::*;
use crate::node::{Channel, ChannelState, HtlcDirection};
use crate::types::Msat;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};

const T: u64 = 1_700_000_000;
const H: u32 = 800_000;
const CAP: u64 = 10_000_000;

fn healthy(n: u32, peer: u8) -> Channel {
    channel(n, peer, CAP, CAP / 2)
}

fn with(base: &Channel, f: impl FnOnce(&mut Channel)) -> Channel {
    let mut c = base.clone();
    f(&mut c);
    c
}

fn snap_at(ch: &Channel, height: u32, time: u64) -> ChannelSnapshot {
    ChannelSnapshot::from_channel(ch, height, time)
}

fn snap(ch: &Channel) -> ChannelSnapshot {
    snap_at(ch, H, T)
}

/// Defaults with every rule but `only` switched off, so a scenario sees one rule at a time.
fn only(kind: AlertKind) -> MonitorConfig {
    let mut cfg = MonitorConfig::default();
    let d = &mut cfg.defaults;
    for k in AlertKind::ALL {
        let on = k == kind;
        match k {
            AlertKind::LowLocal => d.low_local.enabled = on,
            AlertKind::LowRemote => d.low_remote.enabled = on,
            AlertKind::PendingHtlcs => d.pending_htlcs.enabled = on,
            AlertKind::HtlcNearExpiry => d.htlc_near_expiry.enabled = on,
            AlertKind::PendingOpen => d.pending_open.enabled = on,
            AlertKind::Closing => d.closing.enabled = on,
            AlertKind::ForceClosed => d.force_closed.enabled = on,
            AlertKind::PeerDisconnected => d.peer_disconnected.enabled = on,
            AlertKind::BalanceChange => d.balance_change.enabled = on,
        }
    }
    cfg
}

fn summary(ts: &[Transition]) -> Vec<(&'static str, AlertKind)> {
    ts.iter()
        .map(|t| {
            let what = match t {
                Transition::Raised(_) => "raised",
                Transition::Updated(_) => "updated",
                Transition::Cleared(_) => "cleared",
            };
            (what, t.alert().kind)
        })
        .collect()
}

/// Feeds `firing` one snapshot per evaluation, expecting only the last to raise `kind`,
/// then `clearing`, expecting exactly that alert to clear.
fn fires_then_clears(kind: AlertKind, firing: &[ChannelSnapshot], clearing: &ChannelSnapshot) {
    let cfg = only(kind);
    let mut ev = Evaluator::new();
    let (last, before) = firing.split_last().expect("a firing snapshot");
    for s in before {
        let t = ev.evaluate(std::slice::from_ref(s), &cfg, s.time);
        assert!(t.is_empty(), "{kind}: fired early: {t:?}");
    }
    let t = ev.evaluate(std::slice::from_ref(last), &cfg, last.time);
    assert_eq!(summary(&t), vec![("raised", kind)], "{kind}");
    let raised = t[0].alert().clone();
    assert_eq!(
        (raised.channel, raised.peer, raised.count),
        (last.key, last.peer, 1)
    );
    assert!(raised.is_active() && !raised.message.is_empty());

    let t = ev.evaluate(std::slice::from_ref(clearing), &cfg, clearing.time);
    assert_eq!(summary(&t), vec![("cleared", kind)], "{kind}");
    let gone = t[0].alert();
    assert_eq!(
        (gone.id, gone.state, gone.cleared_at),
        (raised.id, AlertState::Cleared, Some(clearing.time))
    );
    assert_eq!(ev.active_count(), 0);
}

#[test]
fn every_rule_fires_and_clears() {
    let ok = healthy(1, 1);

    let drained = with(&ok, |c| {
        c.local = Msat(100_000);
        c.remote = Msat(CAP - 100_000);
    });
    fires_then_clears(AlertKind::LowLocal, &[snap(&drained)], &snap(&ok));

    let full = with(&ok, |c| {
        c.local = Msat(CAP - 100_000);
        c.remote = Msat(100_000);
    });
    fires_then_clears(AlertKind::LowRemote, &[snap(&full)], &snap(&ok));

    // 30 is the limit, so 30 pending HTLCs are fine and 31 are too many.
    let busy = |n: u64| {
        with(&ok, |c| {
            c.htlcs = (0..n)
                .map(|i| htlc(HtlcDirection::In, i, 1_000, H + 500))
                .collect()
        })
    };
    fires_then_clears(
        AlertKind::PendingHtlcs,
        &[snap(&busy(30)), snap(&busy(31))],
        &snap(&ok),
    );

    // An HTLC 19 blocks out is outside the 18-block window; at 18 it is inside.
    let expiring = |left: u32| {
        with(&ok, |c| {
            c.htlcs = vec![htlc(HtlcDirection::Out, 1, 5_000, H + left)]
        })
    };
    fires_then_clears(
        AlertKind::HtlcNearExpiry,
        &[snap(&expiring(19)), snap(&expiring(18))],
        &snap(&ok),
    );

    // Opening is counted from the first block ballast saw it: 144 blocks on is not over the
    // limit, 145 is. Confirming gives the channel an scid, so its pending key goes away.
    let opening = with(&ok, |c| {
        c.scid = None;
        c.state = ChannelState::Opening;
    });
    fires_then_clears(
        AlertKind::PendingOpen,
        &[
            snap_at(&opening, H, T),
            snap_at(&opening, H + 144, T + 1),
            snap_at(&opening, H + 145, T + 2),
        ],
        &snap_at(&ok, H + 146, T + 3),
    );

    let closed = with(&ok, |c| c.state = ChannelState::Closed);
    let closing = with(&ok, |c| c.state = ChannelState::Closing);
    fires_then_clears(AlertKind::Closing, &[snap(&closing)], &snap(&closed));
    let forced = with(&ok, |c| c.state = ChannelState::ForceClosing);
    fires_then_clears(AlertKind::ForceClosed, &[snap(&forced)], &snap(&closed));

    let away = with(&ok, |c| c.peer_connected = false);
    fires_then_clears(
        AlertKind::PeerDisconnected,
        &[
            snap_at(&away, H, T),
            snap_at(&away, H, T + 1_800),
            snap_at(&away, H, T + 1_801),
        ],
        &snap_at(&ok, H, T + 1_900),
    );

    // 20% of 10M is 2M: a 2M move is not over it, 2,000,001 msat is; a steady balance clears.
    let at = |local: u64, time| snap_at(&with(&ok, |c| c.local = Msat(local)), H, time);
    fires_then_clears(
        AlertKind::BalanceChange,
        &[at(5_000_000, T), at(7_000_000, T + 60), at(9_000_001, T + 120)],
        &at(9_000_001, T + 180),
    );
}

#[test]
fn defaults_leave_a_healthy_channel_alone_and_messages_say_what_to_do() {
    let cfg = MonitorConfig::default();
    let mut ev = Evaluator::new();
    let ok = snap(&healthy(1, 1));
    for i in 0..10 {
        assert!(ev.evaluate(std::slice::from_ref(&ok), &cfg, T + i).is_empty());
    }
    let mut drained = healthy(1, 1);
    drained.local = Msat(1_000);
    let t = ev.evaluate(&[snap(&drained)], &cfg, T + 20);
    // Draining also moved the balance by more than 20% since the last snapshot.
    assert_eq!(
        summary(&t),
        vec![
            ("raised", AlertKind::LowLocal),
            ("raised", AlertKind::BalanceChange)
        ]
    );
    let msg = &t[0].alert().message;
    assert!(
        msg.contains("balance 1 sat") && msg.contains("below 500 sat (5.0% of capacity)"),
        "{msg}"
    );
    assert!(msg.contains("rebalance"), "{msg}");
    assert_eq!(t[0].alert().severity, Severity::Warning);
}

#[test]
fn a_standing_condition_is_one_alert_across_100_evaluations() {
    let cfg = only(AlertKind::LowLocal);
    let mut ch = healthy(1, 1);
    ch.local = Msat(10);
    let mut ev = Evaluator::new();
    let mut notable = 0;
    let mut ids = BTreeSet::new();
    for i in 0..100u64 {
        let t = ev.evaluate(&[snap_at(&ch, H, T + 60 * i)], &cfg, T + 60 * i);
        assert_eq!(t.len(), 1);
        notable += t.iter().filter(|t| t.is_notable()).count();
        ids.insert(t[0].alert().id);
    }
    assert_eq!((notable, ids.len(), ev.active_count()), (1, 1, 1));
    let a = ev.active().next().unwrap();
    assert_eq!((a.count, a.first_seen, a.last_seen), (100, T, T + 60 * 99));
}

#[test]
fn acknowledging_keeps_an_alert_active_and_a_return_gets_a_new_id() {
    let cfg = only(AlertKind::LowLocal);
    let mut low = healthy(1, 1);
    low.local = Msat(10);
    let ok = healthy(1, 1);
    let mut ev = Evaluator::new();
    let id = ev.evaluate(&[snap(&low)], &cfg, T)[0].alert().id;

    let acked = ev.acknowledge(id, T + 5).unwrap();
    assert!(acked.is_active() && acked.acknowledged_at == Some(T + 5));
    assert_eq!(ev.acknowledge(id, T + 9).unwrap().acknowledged_at, Some(T + 5));
    let t = ev.evaluate(&[snap(&low)], &cfg, T + 10);
    assert_eq!(summary(&t), vec![("updated", AlertKind::LowLocal)]);
    assert_eq!(t[0].alert().acknowledged_at, Some(T + 5));

    let t = ev.evaluate(&[snap(&ok)], &cfg, T + 20);
    assert_eq!(t[0].alert().acknowledged_at, Some(T + 5));
    assert_eq!(ev.acknowledge(id, T + 21), Err(AckError::NotActive(id)));

    let t = ev.evaluate(&[snap(&low)], &cfg, T + 30);
    let again = t[0].alert();
    assert_eq!(summary(&t), vec![("raised", AlertKind::LowLocal)]);
    assert!(again.id > id && !again.is_acknowledged() && again.first_seen == T + 30);
}

#[test]
fn channel_override_beats_peer_override_beats_default() {
    let mut cfg = only(AlertKind::LowLocal);
    let peer: RulesPatch = serde_json::from_str(r#"{"low_local":{"limit":{"msat":2000000}}}"#).unwrap();
    let chan: RulesPatch =
        serde_json::from_str(r#"{"low_local":{"limit":{"msat":4000000},"severity":"critical"}}"#).unwrap();
    let off: RulesPatch = serde_json::from_str(r#"{"low_local":{"enabled":false}}"#).unwrap();
    cfg.apply(Scope::Peer(node(1)), &peer).unwrap();
    cfg.apply(Scope::Channel(scid(1)), &chan).unwrap();
    cfg.apply(Scope::Channel(scid(4)), &off).unwrap();

    let with_local = |n: u32, peer: u8, local: u64| {
        let mut c = healthy(n, peer);
        c.local = Msat(local);
        snap(&c)
    };
    let snaps = [
        // Channel override (4M) fires where the peer's (2M) would not.
        with_local(1, 1, 3_000_000),
        // The peer override (2M) fires where the default (5% = 500k) would not.
        with_local(2, 1, 1_000_000),
        // Another peer's channel follows the default.
        with_local(3, 2, 1_000_000),
        // A channel override can switch the rule off under a peer that has it on.
        with_local(4, 1, 100),
    ];
    let mut ev = Evaluator::new();
    let t = ev.evaluate(&snaps, &cfg, T);
    let fired: Vec<_> = t
        .iter()
        .map(|t| (t.alert().channel, t.alert().severity))
        .collect();
    assert_eq!(
        fired,
        vec![
            (ChannelKey::Scid(scid(1)), Severity::Critical),
            (ChannelKey::Scid(scid(2)), Severity::Warning)
        ]
    );
    assert!(t[0].alert().message.contains("below 4000 sat"));
}

#[test]
fn vanished_channels_disabled_rules_duplicates_and_zero_capacity() {
    let cfg = only(AlertKind::LowLocal);
    let mut low = healthy(1, 1);
    low.local = Msat(1);
    let other = healthy(2, 1);
    let mut ev = Evaluator::new();

    // Listed twice in one pass: still one alert.
    let t = ev.evaluate(&[snap(&low), snap(&low), snap(&other)], &cfg, T);
    assert_eq!(t.len(), 1);
    assert_eq!(ev.active_for(ChannelKey::Scid(scid(1))).count(), 1);

    // A channel the node no longer lists is gone: its alert clears.
    let t = ev.evaluate(&[snap(&other)], &cfg, T + 1);
    assert_eq!(summary(&t), vec![("cleared", AlertKind::LowLocal)]);

    // Switching the rule off clears what it raised.
    ev.evaluate(&[snap(&low)], &cfg, T + 2);
    let t = ev.evaluate(&[snap(&low)], &only(AlertKind::Closing), T + 3);
    assert_eq!(summary(&t), vec![("cleared", AlertKind::LowLocal)]);

    // Ratio thresholds mean nothing without capacity: no alert, no panic.
    let mut empty = healthy(3, 3);
    empty.capacity = Msat(0);
    empty.local = Msat(0);
    empty.remote = Msat(0);
    let t = ev.evaluate(&[snap(&empty)], &MonitorConfig::default(), T + 4);
    assert!(t.is_empty(), "{t:?}");
}

#[test]
fn evaluator_state_survives_a_restart() {
    let cfg = MonitorConfig::default();
    let mut away = healthy(1, 1);
    away.peer_connected = false;
    away.local = Msat(1);
    let mut ev = Evaluator::new();
    ev.evaluate(&[snap_at(&away, H, T)], &cfg, T);
    let first: Vec<_> = ev.active().map(|a| a.id).collect();
    assert_eq!(first.len(), 1);

    let saved = serde_json::to_string(&ev).unwrap();
    let mut back: Evaluator = serde_json::from_str(&saved).unwrap();
    assert_eq!(back, ev);
    // Still the same alerts, and the disconnection is timed from before the restart.
    let t = back.evaluate(&[snap_at(&away, H, T + 3_600)], &cfg, T + 3_600);
    assert_eq!(
        summary(&t),
        vec![
            ("updated", AlertKind::LowLocal),
            ("raised", AlertKind::PeerDisconnected)
        ]
    );
    assert!(t[1].alert().id > first[0]);
    assert!(t[1].alert().message.contains("1h 0m"), "{}", t[1].alert().message);

    // A damaged state (two active alerts for one condition, a stale counter) is repaired.
    let a = t[0].alert().clone();
    let dup = Alert {
        id: AlertId(99),
        ..a.clone()
    };
    let state = serde_json::json!({"next_id": 1, "active": [a, dup], "tracks": {}});
    let mut fixed: Evaluator = serde_json::from_value(state).unwrap();
    assert_eq!(fixed.active_count(), 1);
    let t = fixed.evaluate(&[snap_at(&away, H, T)], &only(AlertKind::Closing), T);
    assert_eq!(t.len(), 1);
    let mut fresh = Evaluator::new();
    fresh.reserve_ids_through(AlertId(41));
    let t = fresh.evaluate(&[snap(&away)], &cfg, T);
    assert_eq!(t[0].alert().id, AlertId(42));
}

#[test]
fn evaluation_is_deterministic() {
    let cfg = MonitorConfig::default();
    let chans: Vec<_> = (0..50u32)
        .map(|i| {
            let mut c = healthy(i, (i % 7) as u8);
            c.local = Msat(u64::from(i) * 200_000);
            c.peer_connected = i % 3 != 0;
            c
        })
        .collect();
    let run = || {
        let mut ev = Evaluator::new();
        let mut all = Vec::new();
        for step in 0..5u64 {
            let snaps: Vec<_> = chans.iter().map(|c| snap_at(c, H, T + step * 1_000)).collect();
            all.extend(ev.evaluate(&snaps, &cfg, T + step * 1_000));
        }
        all
    };
    assert_eq!(run(), run());
}

// ---------------------------------------------------------------------------------------
// Property: whatever the input, the evaluator does not panic and its alert bookkeeping is
// consistent with the transitions it reports.
// ---------------------------------------------------------------------------------------

fn arb_threshold() -> impl Strategy<Value = Threshold> {
    prop_oneof![
        (0.0f64..=1.0).prop_map(Threshold::Ratio),
        // Unvalidated configs can reach the evaluator too (a hand-edited store).
        any::<f64>().prop_map(Threshold::Ratio),
        prop_oneof![0u64..20_000_000, any::<u64>()].prop_map(|m| Threshold::Msat(Msat(m))),
    ]
}

fn arb_rules() -> impl Strategy<Value = Rules> {
    (
        (any::<bool>(), arb_threshold()),
        (any::<bool>(), arb_threshold()),
        (any::<bool>(), 0u32..50),
        (any::<bool>(), 0u32..50),
        (any::<bool>(), 0u32..50),
        (any::<bool>(), any::<bool>()),
        (any::<bool>(), 0u64..5_000),
        (any::<bool>(), arb_threshold()),
    )
        .prop_map(|(ll, lr, ph, ne, po, (cl, fc), pd, bc)| {
            let mut r = Rules::default();
            (r.low_local.enabled, r.low_local.limit) = ll;
            (r.low_remote.enabled, r.low_remote.limit) = lr;
            (r.pending_htlcs.enabled, r.pending_htlcs.limit) = ph;
            (r.htlc_near_expiry.enabled, r.htlc_near_expiry.limit) = ne;
            (r.pending_open.enabled, r.pending_open.limit) = po;
            (r.closing.enabled, r.force_closed.enabled) = (cl, fc);
            (r.peer_disconnected.enabled, r.peer_disconnected.limit) = pd;
            (r.balance_change.enabled, r.balance_change.limit) = bc;
            r
        })
}

fn arb_config() -> impl Strategy<Value = MonitorConfig> {
    (
        arb_rules(),
        prop::option::of(arb_threshold()),
        prop::option::of(any::<bool>()),
    )
        .prop_map(|(defaults, peer_limit, chan_enabled)| {
            let mut cfg = MonitorConfig {
                defaults,
                ..Default::default()
            };
            if let Some(limit) = peer_limit {
                let patch = RulesPatch {
                    low_local: Some(RulePatch {
                        limit: Some(limit),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                cfg.peers.insert(node(1), patch);
            }
            if let Some(enabled) = chan_enabled {
                let patch = RulesPatch {
                    peer_disconnected: Some(RulePatch {
                        enabled: Some(enabled),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                cfg.channels.insert(scid(1), patch);
            }
            cfg
        })
}

/// A snapshot of one of a few channels (so keys collide and channels come and go), with any
/// state and balances, consistent or not.
fn arb_snapshot() -> impl Strategy<Value = ChannelSnapshot> {
    let state = prop_oneof![
        Just(ChannelState::Opening),
        Just(ChannelState::Normal),
        Just(ChannelState::Closing),
        Just(ChannelState::ForceClosing),
        Just(ChannelState::Closed),
    ];
    let amount = || prop_oneof![Just(0u64), 0u64..20_000_000, any::<u64>()];
    (
        (0u32..4, state, any::<bool>()),
        (amount(), amount(), amount()),
        (0u32..40, 0u32..40, amount(), amount(), prop::option::of(0u32..40)),
    )
        .prop_map(
            |((slot, state, connected), (capacity, local, remote), (hin, hout, ain, aout, expiry))| {
                let peer = node((slot % 2) as u8 + 1);
                let key = if slot == 3 {
                    ChannelKey::Pending(peer)
                } else {
                    ChannelKey::Scid(scid(slot))
                };
                ChannelSnapshot {
                    key,
                    peer,
                    state,
                    peer_connected: connected,
                    capacity: Msat(capacity),
                    local: Msat(local),
                    remote: Msat(remote),
                    spendable: Msat(local),
                    receivable: Msat(remote),
                    htlcs_in: hin,
                    htlcs_out: hout,
                    htlc_in_msat: Msat(ain),
                    htlc_out_msat: Msat(aout),
                    min_expiry_blocks: expiry,
                    height: 0,
                    time: 0,
                }
            },
        )
}

#[derive(Debug, Clone)]
struct Step {
    snaps: Vec<ChannelSnapshot>,
    dt: i64,
    dh: i32,
    ack: Option<u64>,
}

fn arb_step() -> impl Strategy<Value = Step> {
    (
        prop::collection::vec(arb_snapshot(), 0..6),
        -600i64..5_000,
        -3i32..200,
        prop::option::of(0u64..30),
    )
        .prop_map(|(snaps, dt, dh, ack)| Step { snaps, dt, dh, ack })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn evaluator_never_panics_and_keeps_one_active_alert_per_condition(
        cfg in arb_config(),
        steps in prop::collection::vec(arb_step(), 1..40),
    ) {
        let mut ev = Evaluator::new();
        let mut model: BTreeMap<AlertId, Alert> = BTreeMap::new();
        let mut ever: BTreeSet<AlertId> = BTreeSet::new();
        let (mut now, mut height) = (T, H);
        for step in steps {
            now = now.saturating_add_signed(step.dt);
            height = height.saturating_add_signed(step.dh);
            let snaps: Vec<_> = step
                .snaps
                .into_iter()
                .map(|s| ChannelSnapshot { height, time: now, ..s })
                .collect();
            if let Some(id) = step.ack {
                let res = ev.acknowledge(AlertId(id), now);
                prop_assert_eq!(res.is_ok(), model.contains_key(&AlertId(id)));
                if let Ok(a) = res {
                    model.insert(a.id, a);
                }
            }
            for t in ev.evaluate(&snaps, &cfg, now) {
                let a = t.alert().clone();
                prop_assert!(a.count >= 1 && a.first_seen <= a.last_seen);
                match t {
                    Transition::Raised(_) => {
                        prop_assert!(ever.insert(a.id), "id {} reused", a.id);
                        prop_assert!(a.is_active() && a.count == 1 && !a.is_acknowledged());
                        model.insert(a.id, a);
                    }
                    Transition::Updated(_) => {
                        let Some(old) = model.get(&a.id) else {
                            return Err(TestCaseError::fail(format!("update of inactive {}", a.id)));
                        };
                        prop_assert_eq!(a.count, old.count + 1);
                        prop_assert_eq!(a.acknowledged_at, old.acknowledged_at);
                        prop_assert!(a.is_active());
                        model.insert(a.id, a);
                    }
                    Transition::Cleared(_) => {
                        prop_assert!(model.remove(&a.id).is_some(), "clear of inactive {}", a.id);
                        prop_assert!(!a.is_active() && a.cleared_at >= Some(a.last_seen));
                    }
                }
            }
            // At most one active alert per (kind, channel), and the evaluator agrees with
            // what its transitions said.
            let conditions: BTreeSet<_> = model.values().map(|a| (a.channel, a.kind)).collect();
            prop_assert_eq!(conditions.len(), model.len());
            let active: Vec<_> = ev.active().cloned().collect();
            prop_assert_eq!(active.len(), model.len());
            for a in &active {
                prop_assert_eq!(Some(a), model.get(&a.id));
            }
            // Nothing stays active for a channel that was not listed.
            let listed: BTreeSet<_> = snaps.iter().map(|s| s.key).collect();
            prop_assert!(model.values().all(|a| listed.contains(&a.channel)));
        }
        // The state round-trips through its stored form.
        let back: Evaluator = serde_json::from_str(&serde_json::to_string(&ev).unwrap()).unwrap();
        prop_assert_eq!(back, ev);
    }
}
