//! Unit tests of the route and failure translations.

use super::payments::{bolt4_code, build_route, route_hops};
use crate::lnd::proto::lnrpc;
use crate::node::RouteHop;
use crate::types::{Msat, NodeId, Scid};

fn id(b: u8) -> NodeId {
    let mut k = [b; 33];
    k[0] = 2;
    NodeId(k)
}

/// Two hops paying 10,000 msat with a 20 msat fee, with these delays.
fn two_hops(first: u32, last: u32) -> [RouteHop; 2] {
    [
        RouteHop {
            scid: Scid::new(100, 1, 0).unwrap(),
            node: id(1),
            amount: Msat(10_020),
            delay: first,
        },
        RouteHop {
            scid: Scid::new(200, 2, 1).unwrap(),
            node: id(2),
            amount: Msat(10_000),
            delay: last,
        },
    ]
}

#[test]
fn route_expiries_are_absolute_with_lnds_final_minimum() {
    // As the route engine makes it: 40 for the peer's delta on top of a final 18.
    let route = two_hops(58, 18);
    let r = build_route("t", &route, None, 900_000, 27).unwrap();
    assert_eq!(r.total_time_lock, 900_067);
    assert_eq!((r.hops[0].expiry, r.hops[1].expiry), (900_027, 900_027));
    // A final CLTV already above the minimum is kept.
    let r = build_route("t", &route, None, 900_000, 10).unwrap();
    assert_eq!((r.total_time_lock, r.hops[1].expiry), (900_058, 900_018));
    assert!(build_route("t", &route, None, u32::MAX - 10, 27).is_err());
}

#[test]
fn route_amounts_fees_and_expiries() {
    let route = two_hops(160, 120);
    let r = build_route("t", &route, Some([9; 32]), 0, 0).unwrap();
    assert_eq!(
        (r.total_amt_msat, r.total_fees_msat, r.total_time_lock),
        (10_020, 20, 160)
    );
    assert_eq!(r.hops[0].amt_to_forward_msat, 10_000);
    assert_eq!((r.hops[0].fee_msat, r.hops[0].expiry), (20, 120));
    assert_eq!((r.hops[1].amt_to_forward_msat, r.hops[1].fee_msat), (10_000, 0));
    assert_eq!(r.hops[1].expiry, 120);
    assert!(r.hops[0].mpp_record.is_none());
    let mpp = r.hops[1].mpp_record.as_ref().unwrap();
    assert_eq!(
        (mpp.payment_addr.as_slice(), mpp.total_amt_msat),
        (&[9u8; 32][..], 10_000)
    );
    assert_eq!(
        route_hops(&lnrpc::HtlcAttempt {
            route: Some(r),
            ..Default::default()
        }),
        route
    );
    assert!(build_route("t", &[], None, 0, 0).is_err());
}

#[test]
fn failure_codes_are_bolt4() {
    use lnrpc::failure::FailureCode as F;
    assert_eq!(bolt4_code(F::TemporaryChannelFailure), Some(4103));
    assert_eq!(bolt4_code(F::IncorrectOrUnknownPaymentDetails), Some(16399));
    assert_eq!(bolt4_code(F::UnreadableFailure), None);
}
