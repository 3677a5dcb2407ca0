use super::*;
use proptest::prelude::*;

const SECRET: [u8; 32] = [9; 32];
const PRE: Preimage = Preimage([42; 32]);

fn invoice(amount: u64) -> HodlInvoice {
    HodlInvoice {
        payment_hash: PRE.payment_hash(),
        preimage: None,
        payment_secret: SECRET,
        amount: Msat(amount),
        bolt11: "lnbcrt1".into(),
        label: None,
        description: None,
        created_at: 1_000,
        expires_at: 1_000 + 3_600,
        min_final_cltv: 18,
        state: HodlState::Open,
        htlcs: vec![],
        mpp_total: None,
        updated_at: 1_000,
        cancel_reason: None,
    }
}

fn part(id: u64, amount: u64, total: u64) -> IncomingHtlc {
    IncomingHtlc {
        key: HtlcKey {
            scid: Scid::new(100, 1, 0).unwrap(),
            id,
        },
        amount: Msat(amount),
        cltv_expiry: 200 + 40,
        cltv_expiry_relative: 40,
        payment_secret: Some(SECRET),
        total_msat: Some(Msat(total)),
    }
}

const P: HodlParams = HodlParams {
    cancel_blocks: 10,
    warn_blocks: 6,
    mpp_timeout_secs: 60,
};

fn is_fail(o: &HtlcOutcome) -> bool {
    matches!(
        o.verdict,
        HtlcVerdict::Fail(Failure::IncorrectOrUnknownPaymentDetails { .. })
    )
}

#[test]
fn single_part_is_held_then_settled_and_replay_resolves() {
    let mut inv = invoice(10_000);
    let o = inv.on_htlc(&part(1, 10_000, 10_000), 1_010, 200, &P);
    assert_eq!(o.verdict, HtlcVerdict::Hold);
    assert_eq!(o.transition, Some((HodlState::Open, HodlState::Accepted)));
    let (keys, t) = inv.settle(PRE, 1_020, 200, &P).unwrap();
    assert_eq!((keys.len(), t.1), (1, HodlState::Settled));
    // A restart replays the HTLC: it is resolved at once, not held or counted again.
    let o = inv.on_htlc(&part(1, 10_000, 10_000), 1_030, 201, &P);
    assert_eq!(o.verdict, HtlcVerdict::Resolve(PRE));
    assert_eq!(inv.received(), Msat(10_000));
}

#[test]
fn three_part_mpp_accepts_on_the_last_part() {
    let mut inv = invoice(9_000);
    for id in 0..2 {
        let o = inv.on_htlc(&part(id, 3_000, 9_000), 1_010, 200, &P);
        assert_eq!((o.verdict.clone(), o.transition), (HtlcVerdict::Hold, None));
    }
    let o = inv.on_htlc(&part(2, 3_000, 9_000), 1_011, 200, &P);
    assert_eq!(o.transition, Some((HodlState::Open, HodlState::Accepted)));
    // A fourth part after the set is complete is refused.
    assert!(is_fail(&inv.on_htlc(&part(3, 3_000, 9_000), 1_012, 200, &P)));
}

#[test]
fn bad_htlcs_are_failed_with_the_right_code() {
    let inv = invoice(10_000);
    let cases: Vec<(&str, IncomingHtlc)> = vec![
        (
            "wrong secret",
            IncomingHtlc {
                payment_secret: Some([1; 32]),
                ..part(1, 10_000, 10_000)
            },
        ),
        (
            "no secret",
            IncomingHtlc {
                payment_secret: None,
                ..part(1, 10_000, 10_000)
            },
        ),
        ("too small", part(1, 9_999, 9_999)),
        ("over 2x", part(1, 20_001, 20_001)),
        (
            "cltv too low",
            IncomingHtlc {
                cltv_expiry_relative: 17,
                ..part(1, 10_000, 10_000)
            },
        ),
        (
            "inside cancel window",
            IncomingHtlc {
                cltv_expiry: 210,
                ..part(1, 10_000, 10_000)
            },
        ),
        ("part above announced total", part(1, 11_000, 10_000)),
    ];
    for (what, h) in cases {
        let mut i = inv.clone();
        let o = i.on_htlc(&h, 1_010, 200, &P);
        assert!(is_fail(&o), "{what}: {o:?}");
        assert_eq!(i, inv, "{what}: a refused HTLC must not change the invoice");
    }
    // Overpayment up to 2x is accepted.
    let mut i = inv.clone();
    assert_eq!(
        i.on_htlc(&part(1, 20_000, 20_000), 1_010, 200, &P).verdict,
        HtlcVerdict::Hold
    );
}

#[test]
fn expired_invoice_refuses_and_expires() {
    let mut inv = invoice(10_000);
    assert!(is_fail(&inv.on_htlc(&part(1, 10_000, 10_000), 4_600, 200, &P)));
    assert_eq!(inv.expire(4_599), None);
    assert_eq!(inv.expire(4_600), Some((HodlState::Open, HodlState::Expired)));
    assert!(matches!(
        inv.cancel(CancelReason::Requested, 4_700),
        Err(HodlError::IllegalTransition {
            current: HodlState::Expired,
            ..
        })
    ));
}

#[test]
fn mpp_timeout_fails_the_parts_and_keeps_the_invoice_open() {
    let mut inv = invoice(9_000);
    inv.on_htlc(&part(0, 3_000, 9_000), 1_000, 200, &P);
    assert!(inv.mpp_timeout(1_059, &P).is_empty());
    assert_eq!(inv.mpp_timeout(1_060, &P).len(), 1);
    assert_eq!(
        (inv.state, inv.received(), inv.mpp_total),
        (HodlState::Open, Msat(0), None)
    );
    assert_eq!(Failure::MppTimeout.to_hex(), "0017");
}

#[test]
fn deadline_warns_then_cancels() {
    let mut inv = invoice(10_000);
    inv.on_htlc(&part(1, 10_000, 10_000), 1_010, 200, &P); // expires at 240
    assert_eq!(inv.on_block(223, &P), DeadlineAction::None);
    assert_eq!(
        inv.on_block(224, &P),
        DeadlineAction::Warn { blocks_to_cancel: 6 }
    );
    assert_eq!(inv.on_block(230, &P), DeadlineAction::Cancel);
    let (keys, _) = inv.cancel(CancelReason::Deadline, 1_100).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(inv.on_block(231, &P), DeadlineAction::None);
}

#[test]
fn settle_and_cancel_are_exclusive_and_name_the_state() {
    let mut inv = invoice(10_000);
    assert!(matches!(
        inv.settle(PRE, 1, 200, &P),
        Err(HodlError::IllegalTransition {
            current: HodlState::Open,
            ..
        })
    ));
    inv.on_htlc(&part(1, 10_000, 10_000), 1_010, 200, &P);
    assert_eq!(
        inv.settle(Preimage([1; 32]), 2, 200, &P),
        Err(HodlError::WrongPreimage)
    );
    inv.settle(PRE, 3, 200, &P).unwrap();
    let e = inv.cancel(CancelReason::Requested, 4).unwrap_err();
    assert!(e.to_string().contains("SETTLED"), "{e}");
}

#[test]
fn stop_then_lightningd_replay_keeps_holding_but_plugin_only_restart_cancels() {
    let mut inv = invoice(10_000);
    inv.on_htlc(&part(1, 10_000, 10_000), 1_010, 200, &P);
    assert_eq!(inv.release_at_stop(1_020).len(), 1);
    // lightningd restarted too: it replays the HTLC, which is held again.
    let mut replayed = inv.clone();
    let o = replayed.on_htlc(&part(1, 10_000, 10_000), 1_030, 201, &P);
    assert_eq!((o.verdict, o.changed), (HtlcVerdict::Hold, true));
    // A crash instead of a clean stop: nothing was marked, yet lightningd failed the HTLC
    // it was waiting on; a plugin-only restart must not keep it as held.
    let t = replayed.reconcile_after_plugin_restart(1_031);
    assert_eq!(t, Some((HodlState::Accepted, HodlState::Canceled)));
    assert!(replayed.htlcs.is_empty());
    // Only the plugin restarted: the failed HTLC is gone, so the invoice is canceled.
    let t = inv.reconcile_after_plugin_restart(1_030);
    assert_eq!(t, Some((HodlState::Accepted, HodlState::Canceled)));
    assert_eq!(inv.cancel_reason, Some(CancelReason::Shutdown));
}

#[test]
fn lost_parts_cancel_an_accepted_invoice_and_are_not_counted_in_an_open_one() {
    // ACCEPTED, then the node is found not to hold one of the two parts any more.
    let mut inv = invoice(10_000);
    inv.on_htlc(&part(1, 5_000, 10_000), 1_010, 200, &P);
    inv.on_htlc(&part(2, 5_000, 10_000), 1_011, 200, &P);
    assert_eq!(inv.state, HodlState::Accepted);
    assert_eq!(inv.reconcile_held(|_| true, 1_012), None);
    let t = inv.reconcile_held(|k| k.id == 1, 1_012);
    assert_eq!(t, Some((HodlState::Accepted, HodlState::Canceled)));
    assert_eq!(inv.cancel_reason, Some(CancelReason::HtlcsLost));
    assert_eq!(inv.received(), Msat(5_000));
    assert!(matches!(
        inv.settle(PRE, 1_013, 200, &P),
        Err(HodlError::IllegalTransition { .. })
    ));

    // OPEN with half a set: the lost half is dropped, the invoice stays payable, and a part
    // that comes back later rejoins (it is new again to the invoice).
    let mut inv = invoice(10_000);
    inv.on_htlc(&part(1, 5_000, 10_000), 1_010, 200, &P);
    assert_eq!(inv.reconcile_held(|_| false, 1_011), None);
    assert_eq!(
        (inv.state, inv.received(), inv.mpp_total),
        (HodlState::Open, Msat(0), None)
    );
    inv.on_htlc(&part(3, 5_000, 10_000), 1_012, 200, &P);
    let o = inv.on_htlc(&part(4, 5_000, 10_000), 1_013, 200, &P);
    assert_eq!(o.transition, Some((HodlState::Open, HodlState::Accepted)));
}

#[test]
fn settle_is_refused_inside_the_cancel_window() {
    let mut inv = invoice(10_000);
    // Expires at 240; the window is 10 blocks.
    inv.on_htlc(&part(1, 10_000, 10_000), 1_010, 200, &P);
    let e = inv.settle(PRE, 1_020, 230, &P).unwrap_err();
    assert_eq!(
        e,
        HodlError::TooLate {
            blocks_left: 10,
            window: 10
        }
    );
    assert_eq!(inv.state, HodlState::Accepted);
    inv.settle(PRE, 1_020, 229, &P).unwrap();
}

#[test]
fn cancel_window_is_raised_to_lightningds_fulfilment_deadline() {
    // cltv-delta 34 (mainnet default): lightningd fails the channel 17 blocks before
    // expiry; ballast stops settling at 19.
    assert_eq!(fulfil_deadline_floor(34), 19);
    assert_eq!(fulfil_deadline_floor(6), 5);
    assert_eq!(effective_cancel_blocks(10, 34), (19, true));
    assert_eq!(effective_cancel_blocks(25, 34), (25, false));
    assert_eq!(effective_cancel_blocks(10, 6), (10, false));
}

#[test]
fn failure_message_encoding() {
    let f = Failure::IncorrectOrUnknownPaymentDetails {
        htlc_msat: Msat(1_000),
        height: 700_000,
    };
    assert_eq!(f.to_hex(), format!("400f{:016x}{:08x}", 1_000, 700_000));
}

#[derive(Debug, Clone)]
enum Op {
    Htlc {
        id: u64,
        amount: u64,
        total: u64,
        good_secret: bool,
    },
    Settle {
        right: bool,
    },
    Cancel,
    Block(u32),
    Tick(u64),
    /// The node no longer holds the part with this id.
    Lose(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (
            0u64..6,
            1u64..12_000,
            prop_oneof![Just(10_000u64), 1u64..25_000],
            any::<bool>()
        )
            .prop_map(|(id, amount, total, good_secret)| Op::Htlc {
                id,
                amount,
                total,
                good_secret
            }),
        any::<bool>().prop_map(|right| Op::Settle { right }),
        Just(Op::Cancel),
        (0u32..60).prop_map(Op::Block),
        (0u64..5_000).prop_map(Op::Tick),
        (0u64..6).prop_map(Op::Lose),
    ]
}

proptest! {
    /// Whatever happens, the invariants that protect the money hold.
    #[test]
    fn invariants_hold_over_random_operation_sequences(ops in proptest::collection::vec(op(), 1..40)) {
        let mut inv = invoice(10_000);
        let mut now = 1_000u64;
        let mut height = 200u32;
        let mut settled_keys: Option<Vec<HtlcKey>> = None;
        for op in ops {
            let before = inv.clone();
            match op {
                Op::Htlc { id, amount, total, good_secret } => {
                    let mut h = part(id, amount, total);
                    if !good_secret { h.payment_secret = Some([0; 32]); }
                    let o = inv.on_htlc(&h, now, height, &P);
                    if let HtlcVerdict::Resolve(p) = o.verdict {
                        prop_assert_eq!(p.payment_hash(), inv.payment_hash);
                        prop_assert_eq!(inv.state, HodlState::Settled);
                    }
                    if o.verdict == HtlcVerdict::Hold {
                        prop_assert!(matches!(inv.state, HodlState::Open | HodlState::Accepted));
                    }
                }
                Op::Settle { right } => {
                    let pre = if right { PRE } else { Preimage([0; 32]) };
                    match inv.settle(pre, now, height, &P) {
                        Ok((keys, _)) => {
                            prop_assert_eq!(before.state, HodlState::Accepted);
                            prop_assert!(right);
                            // Never inside the window where a fulfilled HTLC can cost the channel.
                            prop_assert!(inv.htlcs.iter().all(|h| h.cltv_expiry > height + P.cancel_blocks));
                            settled_keys = Some(keys);
                        }
                        Err(_) => prop_assert_eq!(&inv, &before),
                    }
                }
                Op::Cancel => {
                    if inv.cancel(CancelReason::Requested, now).is_err() {
                        prop_assert_eq!(&inv, &before);
                    }
                }
                Op::Block(step) => {
                    height += step;
                    if inv.on_block(height, &P) == DeadlineAction::Cancel {
                        inv.cancel(CancelReason::Deadline, now).unwrap();
                    }
                }
                Op::Tick(secs) => {
                    now += secs;
                    inv.mpp_timeout(now, &P);
                    inv.expire(now);
                }
                Op::Lose(id) => {
                    let had = inv.htlcs.iter().any(|h| h.key.id == id);
                    let t = inv.reconcile_held(|k| k.id != id, now);
                    if had && before.state == HodlState::Accepted {
                        prop_assert_eq!(t, Some((HodlState::Accepted, HodlState::Canceled)));
                        prop_assert_eq!(inv.cancel_reason, Some(CancelReason::HtlcsLost));
                    }
                    if !had || !matches!(before.state, HodlState::Open | HodlState::Accepted) {
                        prop_assert_eq!(&inv, &before);
                    }
                    // A lost part is never counted.
                    prop_assert!(inv.state.is_final() || inv.htlcs.iter().all(|h| h.key.id != id));
                }
            }
            // Final states are final.
            if before.state.is_final() {
                prop_assert_eq!(inv.state, before.state);
            }
            // Accepted means the full amount (and no more than twice it) is held.
            if inv.state == HodlState::Accepted {
                prop_assert!(inv.received() >= inv.amount);
                prop_assert!(inv.received().0 <= inv.amount.0 * 2);
            }
            // The preimage is known exactly when settled (this invoice's was not made by
            // ballast, so nothing else could have set it).
            prop_assert_eq!(inv.preimage.is_some(), inv.state == HodlState::Settled);
            // Settling never changes which HTLCs are held.
            if let Some(keys) = &settled_keys {
                let now_keys: Vec<_> = inv.htlcs.iter().map(|h| h.key).collect();
                prop_assert_eq!(keys, &now_keys);
            }
        }
    }
}
