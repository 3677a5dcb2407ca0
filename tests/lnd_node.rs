//! `LndNode` against a fake LND (tests/lnd_fake): TLS pinning, macaroon, the `Node` trait
//! mappings, hold invoices, subscriptions and a server restart.

mod lnd_fake;

use ballast::lnd::proto::lnrpc;
use ballast::lnd::{HoldInvoiceRequest, LndConfig, LndInvoiceState, LndNode};
use ballast::node::{ChannelState, FeeUpdate, Node, NodeError, PayOutcome, RouteHop};
use ballast::types::{Msat, NodeId, PaymentHash, Preimage, Scid};
use lnd_fake::{make_cert, pubkey, FakeChannel, FakeLnd, SendScript};
use std::time::Duration;

const CHAN_A: u64 = (700_000u64 << 40) | (12 << 16) | 1;
const CHAN_B: u64 = (700_100u64 << 40) | (3 << 16);

async fn started(network: &str) -> FakeLnd {
    let fake = FakeLnd::new(network);
    fake.start(None).await;
    fake
}

async fn connect(fake: &FakeLnd) -> LndNode {
    LndNode::connect(&fake.config().resolve().unwrap()).await.unwrap()
}

async fn connect_err(cfg: &LndConfig) -> String {
    let r = cfg.resolve().unwrap();
    match LndNode::connect(&r).await {
        Ok(_) => panic!("connected"),
        Err(e) => e.to_string(),
    }
}

fn channel(chan_id: u64, peer: u8, local_sat: i64, remote_sat: i64) -> FakeChannel {
    FakeChannel {
        channel: lnrpc::Channel {
            active: true,
            remote_pubkey: pubkey(peer),
            channel_point: format!("{}:{}", hex::encode([peer; 32]), chan_id & 0xffff),
            chan_id,
            capacity: local_sat + remote_sat,
            local_balance: local_sat,
            remote_balance: remote_sat,
            pending_htlcs: vec![lnrpc::Htlc {
                incoming: true,
                amount: 5,
                hash_lock: vec![7; 32],
                expiration_height: 800_100,
                htlc_index: 4,
                ..Default::default()
            }],
            local_constraints: Some(lnrpc::ChannelConstraints {
                chan_reserve_sat: 1000,
                ..Default::default()
            }),
            remote_constraints: Some(lnrpc::ChannelConstraints {
                chan_reserve_sat: 2000,
                ..Default::default()
            }),
            ..Default::default()
        },
        base_fee_msat: 1000,
        fee_ppm: 250,
        time_lock_delta: 80,
        peer_policy: Some(lnrpc::RoutingPolicy {
            time_lock_delta: 40,
            fee_base_msat: 500,
            fee_rate_milli_msat: 100,
            ..Default::default()
        }),
        no_edge: false,
    }
}

async fn recv<T>(rx: &mut tokio::sync::mpsc::Receiver<T>) -> T {
    tokio::time::timeout(Duration::from_secs(5), rx.recv())
        .await
        .expect("nothing within 5s")
        .expect("channel closed")
}

#[tokio::test]
async fn connect_and_info() {
    let fake = started("regtest").await;
    let node = connect(&fake).await;
    let info = node.info().await.unwrap();
    assert_eq!(info.id.to_hex(), pubkey(0xaa));
    assert_eq!(
        (info.alias.as_str(), info.network.as_str()),
        ("fake-lnd", "regtest")
    );
    assert_eq!(info.blockheight, 800_000);
    fake.mine(2);
    assert_eq!(node.block_height().await.unwrap(), 800_002);
    assert_eq!(node.feerate_perkb().await.unwrap(), None);
    let err = node.sign_invoice("lnbc1").await.unwrap_err();
    assert!(err.to_string().contains("use AddHoldInvoice"), "{err}");
}

#[tokio::test]
async fn channels_and_graph_are_mapped() {
    let fake = started("regtest").await;
    fake.with_state(|s| {
        s.channels.push(channel(CHAN_A, 1, 600_000, 400_000));
        s.pending
            .pending_open_channels
            .push(lnrpc::pending_channels_response::PendingOpenChannel {
                channel: Some(lnrpc::pending_channels_response::PendingChannel {
                    remote_node_pub: pubkey(2),
                    channel_point: format!("{}:0", hex::encode([2; 32])),
                    capacity: 50_000,
                    local_balance: 49_000,
                    ..Default::default()
                }),
                commit_fee: 1000,
            });
        s.pending
            .pending_force_closing_channels
            .push(lnrpc::pending_channels_response::ForceClosedChannel {
                channel: Some(lnrpc::pending_channels_response::PendingChannel {
                    remote_node_pub: pubkey(3),
                    capacity: 70_000,
                    ..Default::default()
                }),
                ..Default::default()
            });
        s.edges.push(lnrpc::ChannelEdge {
            channel_id: CHAN_B,
            chan_point: "x:0".into(),
            node1_pub: pubkey(4),
            node2_pub: pubkey(5),
            capacity: 2_000_000,
            node1_policy: Some(lnrpc::RoutingPolicy {
                time_lock_delta: 144,
                min_htlc: 1000,
                fee_base_msat: 1,
                fee_rate_milli_msat: 10,
                disabled: true,
                max_htlc_msat: 0,
                last_update: 1_700_000_000,
            }),
            node2_policy: None,
        });
    });
    let node = connect(&fake).await;
    let chans = node.channels().await.unwrap();
    assert_eq!(chans.len(), 3);
    let a = &chans[0];
    assert_eq!(a.scid, Some(Scid::from_u64(CHAN_A)));
    assert_eq!(a.scid.unwrap().to_string(), "700000x12x1");
    assert_eq!(a.state, ChannelState::Normal);
    assert_eq!(
        (a.local, a.remote, a.capacity),
        (Msat(600_000_000), Msat(400_000_000), Msat(1_000_000_000))
    );
    assert_eq!(
        (a.spendable, a.receivable),
        (Msat(599_000_000), Msat(398_000_000))
    );
    assert_eq!((a.fee_base, a.fee_ppm), (Msat(1000), 250));
    let rp = a.remote_policy.unwrap();
    assert_eq!((rp.fee_base, rp.fee_ppm, rp.cltv_delta), (Msat(500), 100, 40));
    assert_eq!(a.htlcs.len(), 1);
    assert_eq!(
        (a.htlcs[0].id, a.htlcs[0].amount, a.htlcs[0].expiry),
        (4, Msat(5000), 800_100)
    );
    assert_eq!(a.htlcs[0].payment_hash, PaymentHash([7; 32]));
    assert_eq!((chans[1].state, chans[1].scid), (ChannelState::Opening, None));
    assert_eq!(chans[1].local, Msat(49_000_000));
    assert_eq!(chans[2].state, ChannelState::ForceClosing);

    let graph = node.graph().await.unwrap();
    assert_eq!(graph.len(), 1, "a missing policy gives no edge");
    let e = &graph[0];
    assert_eq!(e.scid, Scid::from_u64(CHAN_B));
    assert_eq!(e.source.to_hex(), pubkey(4));
    assert_eq!(e.destination.to_hex(), pubkey(5));
    assert!(!e.active);
    assert_eq!((e.fee_base, e.fee_ppm, e.cltv_delta), (Msat(1), 10, 144));
    assert_eq!((e.htlc_min, e.htlc_max), (Msat(1000), Msat(2_000_000_000)));
}

/// A fake with channel A (our time-lock delta `delta`), after `set_fee(A, 7, 1234)`.
async fn fee_set_on_a(delta: u32) -> (FakeLnd, LndNode) {
    let fake = started("regtest").await;
    let mut c = channel(CHAN_A, 1, 600_000, 400_000);
    c.time_lock_delta = delta;
    fake.with_state(|s| s.channels.push(c));
    let node = connect(&fake).await;
    node.set_fee(
        Scid::from_u64(CHAN_A),
        FeeUpdate {
            base: Msat(7),
            ppm: 1234,
        },
    )
    .await
    .unwrap();
    (fake, node)
}

#[tokio::test]
async fn set_fee_uses_the_channel_point_and_keeps_the_cltv_delta() {
    let (fake, node) = fee_set_on_a(80).await;
    let ups = fake.policy_updates();
    assert_eq!(ups.len(), 1);
    let u = &ups[0];
    assert_eq!(
        (u.base_fee_msat, u.fee_rate_ppm, u.time_lock_delta),
        (7, 1234, 80)
    );
    let Some(lnrpc::policy_update_request::Scope::ChanPoint(cp)) = &u.scope else {
        panic!("no chan_point")
    };
    assert_eq!(cp.output_index, 1);
    assert_eq!(
        cp.funding_txid,
        Some(lnrpc::channel_point::FundingTxid::FundingTxidStr(hex::encode(
            [1; 32]
        )))
    );
    let chans = node.channels().await.unwrap();
    assert_eq!((chans[0].fee_base, chans[0].fee_ppm), (Msat(7), 1234));
    let err = node
        .set_fee(
            Scid::from_u64(CHAN_B),
            FeeUpdate {
                base: Msat(1),
                ppm: 1,
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::Rejected { .. }), "{err}");
}

#[tokio::test]
async fn set_fee_raises_a_time_lock_delta_below_lnds_minimum() {
    // A channel whose delta was set under an older lnd (minimum 18 then): v0.21 refuses
    // to keep it, so the fee update carries LND's minimum instead.
    let (fake, _node) = fee_set_on_a(18).await;
    let ups = fake.policy_updates();
    assert_eq!(ups.last().map(|u| u.time_lock_delta), Some(24), "{ups:?}");
    assert_eq!(fake.with_state(|s| s.channels[0].time_lock_delta), 24);
}

#[tokio::test]
async fn forwards_page_through_history() {
    let fake = started("regtest").await;
    fake.with_state(|s| {
        for i in 0..3u64 {
            s.forwards.push(lnrpc::ForwardingEvent {
                chan_id_in: CHAN_A,
                chan_id_out: CHAN_B,
                amt_in_msat: 10_010 + i,
                amt_out_msat: 10_000,
                fee_msat: 10 + i,
                timestamp_ns: (1_700_000_000 + i * 100) * 1_000_000_000,
                ..Default::default()
            });
        }
    });
    let node = connect(&fake).await;
    let fw = node.forwards(1_700_000_050).await.unwrap();
    assert_eq!(fw.len(), 2);
    assert_eq!(fw[0].in_channel, Scid::from_u64(CHAN_A));
    assert_eq!(fw[0].out_channel, Some(Scid::from_u64(CHAN_B)));
    assert_eq!((fw[0].in_msat, fw[0].fee), (Msat(10_011), Some(Msat(11))));
    assert_eq!(fw[0].received_time, 1_700_000_100.0);
}

#[tokio::test]
async fn hold_invoice_accept_then_settle_through_the_stream() {
    let fake = started("regtest").await;
    let node = connect(&fake).await;
    let preimage = Preimage([5; 32]);
    let hash = preimage.payment_hash();
    let bolt11 = node
        .add_hold_invoice(&HoldInvoiceRequest {
            payment_hash: hash,
            amount: Msat(50_000),
            memo: Some("swap".into()),
            description_hash: None,
            expiry_secs: 600,
            cltv_expiry: 144,
            private: false,
        })
        .await
        .unwrap();
    assert!(bolt11.starts_with("lnbcrt"), "{bolt11}");
    let inv = fake.invoice(hash.0).unwrap();
    assert_eq!(
        (inv.memo.as_str(), inv.value_msat, inv.cltv_expiry),
        ("swap", 50_000, 144)
    );

    let mut updates = node.subscribe_single_invoice(hash).await.unwrap();
    assert_eq!(recv(&mut updates).await.unwrap().state, LndInvoiceState::Open);
    let err = node.settle_invoice(preimage).await.unwrap_err();
    assert!(err.to_string().contains("invoice still open"), "{err}");

    fake.accept_htlc(hash.0, 50_000, 800_150);
    let u = recv(&mut updates).await.unwrap();
    assert_eq!(u.state, LndInvoiceState::Accepted);
    assert_eq!(u.htlcs.len(), 1);
    assert_eq!(
        (u.htlcs[0].amount, u.htlcs[0].expiry_height),
        (Msat(50_000), 800_150)
    );
    assert_eq!(u.htlcs[0].state, "ACCEPTED");

    let wrong = node.settle_invoice(Preimage([6; 32])).await.unwrap_err();
    assert!(matches!(wrong, NodeError::Rejected { .. }), "{wrong}");
    node.settle_invoice(preimage).await.unwrap();
    let u = recv(&mut updates).await.unwrap();
    assert_eq!((u.state, u.amount_paid), (LndInvoiceState::Settled, Msat(50_000)));
    assert_eq!(u.htlcs[0].state, "SETTLED");
    let err = node.cancel_invoice(hash).await.unwrap_err();
    assert!(err.to_string().contains("already settled"), "{err}");

    let invoices = node.invoices().await.unwrap();
    assert_eq!(invoices.len(), 1);
    assert_eq!(
        (invoices[0].status.as_str(), invoices[0].received),
        ("paid", Some(Msat(50_000)))
    );
}

#[tokio::test]
async fn hold_invoice_cancel_through_the_stream() {
    let fake = started("regtest").await;
    let node = connect(&fake).await;
    let hash = PaymentHash([9; 32]);
    node.add_hold_invoice(&HoldInvoiceRequest {
        payment_hash: hash,
        amount: Msat(1000),
        memo: None,
        description_hash: Some([3; 32]),
        expiry_secs: 60,
        cltv_expiry: 40,
        private: true,
    })
    .await
    .unwrap();
    let dup = node
        .add_hold_invoice(&HoldInvoiceRequest {
            payment_hash: hash,
            amount: Msat(1000),
            memo: None,
            description_hash: None,
            expiry_secs: 60,
            cltv_expiry: 40,
            private: false,
        })
        .await
        .unwrap_err();
    assert!(dup.to_string().contains("already exists"), "{dup}");
    let mut updates = node.subscribe_single_invoice(hash).await.unwrap();
    assert_eq!(recv(&mut updates).await.unwrap().state, LndInvoiceState::Open);
    fake.accept_htlc(hash.0, 1000, 800_040);
    assert_eq!(recv(&mut updates).await.unwrap().state, LndInvoiceState::Accepted);
    node.cancel_invoice(hash).await.unwrap();
    let u = recv(&mut updates).await.unwrap();
    assert_eq!(u.state, LndInvoiceState::Canceled);
    assert_eq!(u.htlcs[0].state, "CANCELED");
}

/// As ballast's route engine makes them: each hop's delay relative to the chain tip
/// (here 40 for the forwarding peer plus a final CLTV of 18).
fn two_hop_route() -> Vec<RouteHop> {
    vec![
        RouteHop {
            scid: Scid::from_u64(CHAN_A),
            node: pubkey(1).parse::<NodeId>().unwrap(),
            amount: Msat(100_050),
            delay: 58,
        },
        RouteHop {
            scid: Scid::from_u64(CHAN_B),
            node: pubkey(0xaa).parse::<NodeId>().unwrap(),
            amount: Msat(100_000),
            delay: 18,
        },
    ]
}

#[tokio::test]
async fn circular_payment_succeeds_with_the_invoice_payment_addr() {
    let fake = started("regtest").await;
    let node = connect(&fake).await;
    let preimage = Preimage([0x42; 32]);
    let hash = preimage.payment_hash();
    node.prepare_self_payment(preimage, Msat(100_000)).await.unwrap();
    let inv = fake.invoice(hash.0).unwrap();
    assert_eq!(
        (inv.memo.as_str(), inv.value_msat, inv.expiry),
        ("ballast rebalance", 100_000, 3600)
    );
    let out = node.pay_route(&two_hop_route(), hash, 10).await.unwrap();
    assert_eq!(out, PayOutcome::Success { preimage });
    let route = fake.with_state(|s| s.sent_routes[0].clone());
    // Absolute heights from the tip (800,000), the final CLTV raised to LND's minimum
    // invoice delta (24) plus its block padding (3), every hop's delta kept.
    assert_eq!(
        (route.total_amt_msat, route.total_fees_msat, route.total_time_lock),
        (100_050, 50, 800_067)
    );
    assert_eq!((route.hops[0].expiry, route.hops[1].expiry), (800_027, 800_027));
    assert_eq!(
        inv.cltv_expiry, 24,
        "the invoice asks for LND's minimum final CLTV"
    );
    let mpp = route.hops[1].mpp_record.clone().unwrap();
    assert_eq!(
        (mpp.payment_addr, mpp.total_amt_msat),
        (inv.payment_addr, 100_000)
    );
    // Tracking a finished payment gives the same answer.
    assert_eq!(
        node.wait_payment(hash, 5).await.unwrap(),
        PayOutcome::Success { preimage }
    );
}

#[tokio::test]
async fn failed_route_names_the_channel_and_bolt4_code() {
    let fake = started("regtest").await;
    let node = connect(&fake).await;
    let preimage = Preimage([0x43; 32]);
    node.prepare_self_payment(preimage, Msat(100_000)).await.unwrap();
    fake.with_state(|s| {
        s.send_script.push_back(SendScript::Fail {
            code: lnrpc::failure::FailureCode::TemporaryChannelFailure,
            source_index: 1,
        })
    });
    let out = node
        .pay_route(&two_hop_route(), preimage.payment_hash(), 10)
        .await
        .unwrap();
    let PayOutcome::Failed {
        failing_channel,
        failing_node,
        code,
        ..
    } = out
    else {
        panic!("{out:?}")
    };
    assert_eq!(failing_channel, Some(Scid::from_u64(CHAN_B)));
    assert_eq!(failing_node.unwrap().to_hex(), pubkey(1));
    assert_eq!(code, Some(0x1007));
}

#[tokio::test]
async fn payment_still_in_flight_is_in_flight() {
    let fake = started("regtest").await;
    let node = connect(&fake).await;
    let preimage = Preimage([0x44; 32]);
    node.prepare_self_payment(preimage, Msat(100_000)).await.unwrap();
    fake.with_state(|s| s.send_script.push_back(SendScript::Hang));
    let hash = preimage.payment_hash();
    for out in [
        node.pay_route(&two_hop_route(), hash, 1).await.unwrap(),
        node.wait_payment(hash, 1).await.unwrap(),
    ] {
        assert!(matches!(out, PayOutcome::InFlight { .. }), "{out:?}");
    }
}

#[tokio::test]
async fn a_payment_lnd_never_saw_is_unknown() {
    let fake = started("regtest").await;
    let node = connect(&fake).await;
    let err = node
        .wait_payment(Preimage([0x45; 32]).payment_hash(), 1)
        .await
        .unwrap_err();
    assert!(matches!(err, NodeError::UnknownPayment { .. }), "{err}");
}

#[tokio::test]
async fn forward_events_and_blocks_arrive() {
    let fake = started("regtest").await;
    let node = connect(&fake).await;
    let mut fw = node.subscribe_forward_events().await.unwrap();
    let mut blocks = node.subscribe_blocks().await.unwrap();
    assert_eq!(recv(&mut blocks).await.unwrap(), 800_000);
    let (i1, o1) = fake.push_forward(CHAN_A, CHAN_B, true);
    fake.push_forward(CHAN_B, CHAN_A, false);
    let e = recv(&mut fw).await.unwrap();
    assert_eq!(
        (e.in_channel, e.out_channel),
        (Scid::from_u64(CHAN_A), Scid::from_u64(CHAN_B))
    );
    assert_eq!((e.in_htlc_id, e.out_htlc_id, e.settled), (i1, o1, true));
    // The amounts come from the FORWARD event that offered the HTLC.
    assert_eq!(
        e.amounts,
        Some((Msat(lnd_fake::FORWARD_IN_MSAT), Msat(lnd_fake::FORWARD_OUT_MSAT)))
    );
    let e = recv(&mut fw).await.unwrap();
    assert_eq!((e.in_channel, e.settled), (Scid::from_u64(CHAN_B), false));
    // Offered before the subscription: no amounts (not zeros), until history has them.
    fake.push_settle_only(CHAN_A, CHAN_B, 3_003, 3_000, true);
    let e = recv(&mut fw).await.unwrap();
    assert_eq!((e.settled, e.amounts), (true, None));
    assert!(node.forward_amounts(&e, 0).await.unwrap().is_none());
    fake.flush_forwards();
    let f = node.forward_amounts(&e, 0).await.unwrap().expect("in history");
    assert_eq!((f.in_msat, f.out_msat), (Msat(3_003), Some(Msat(3_000))));
    fake.mine(2);
    assert_eq!(recv(&mut blocks).await.unwrap(), 800_001);
    assert_eq!(recv(&mut blocks).await.unwrap(), 800_002);
}

#[tokio::test]
async fn restart_ends_streams_and_subscribing_again_works() {
    let fake = started("regtest").await;
    let port = fake.addr().unwrap().port();
    let node = connect(&fake).await;
    let mut blocks = node.subscribe_blocks().await.unwrap();
    assert_eq!(recv(&mut blocks).await.unwrap(), 800_000);
    fake.stop().await;
    let err = recv(&mut blocks).await.unwrap_err();
    assert!(matches!(err, NodeError::Transport { .. }), "{err}");
    let down = node.block_height().await.unwrap_err();
    assert!(matches!(down, NodeError::Transport { .. }), "{down}");

    fake.mine(1);
    fake.start(Some(port)).await;
    let mut again = None;
    for _ in 0..50 {
        match node.subscribe_blocks().await {
            Ok(rx) => {
                again = Some(rx);
                break;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let mut blocks = again.expect("could not subscribe after restart");
    assert_eq!(recv(&mut blocks).await.unwrap(), 800_001);
    fake.mine(1);
    assert_eq!(recv(&mut blocks).await.unwrap(), 800_002);
    assert_eq!(node.block_height().await.unwrap(), 800_002);
}

#[tokio::test]
async fn a_different_certificate_is_refused() {
    let fake = started("regtest").await;
    let other = fake.lnddir().join("other.cert");
    std::fs::write(&other, make_cert().pem).unwrap();
    let cfg = LndConfig {
        tlscertpath: Some(other.clone()),
        ..fake.config()
    };
    let err = connect_err(&cfg).await;
    assert_eq!(
        err,
        format!("LND's TLS certificate does not match {}", other.display())
    );
}

#[tokio::test]
async fn a_wrong_macaroon_is_refused() {
    let fake = started("regtest").await;
    let other = fake.lnddir().join("other.macaroon");
    std::fs::write(&other, [1u8; 32]).unwrap();
    let cfg = LndConfig {
        macaroonpath: Some(other),
        ..fake.config()
    };
    let err = connect_err(&cfg).await;
    assert!(err.contains("refused the macaroon"), "{err}");
}

#[tokio::test]
async fn a_missing_macaroon_is_a_clear_error() {
    let fake = started("regtest").await;
    let cfg = LndConfig {
        macaroonpath: Some(fake.lnddir().join("nope/admin.macaroon")),
        ..fake.config()
    };
    let err = cfg.resolve().unwrap_err();
    assert!(
        err.starts_with("LND macaroon not found at ") && err.contains("nope/admin.macaroon"),
        "{err}"
    );
    assert!(!err.contains('\n'));
}

#[tokio::test]
async fn a_wrong_network_is_refused() {
    let fake = started("regtest").await;
    // A macaroon where a testnet lnd would keep it, so only the network differs.
    let dir = fake.lnddir().join("data/chain/bitcoin/testnet");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(
        fake.lnddir().join("data/chain/bitcoin/regtest/admin.macaroon"),
        dir.join("admin.macaroon"),
    )
    .unwrap();
    let cfg = LndConfig {
        network: Some("testnet".into()),
        ..fake.config()
    };
    let err = connect_err(&cfg).await;
    assert!(
        err.contains("is on network 'regtest', but ballast is configured for 'testnet'"),
        "{err}"
    );
    let bad = LndConfig {
        network: Some("bitcoin".into()),
        ..fake.config()
    };
    assert!(bad
        .resolve()
        .unwrap_err()
        .starts_with("unknown LND network 'bitcoin'"));
}

#[tokio::test]
async fn an_unreachable_lnd_is_a_clear_error() {
    let fake = started("regtest").await;
    let cfg = fake.config();
    let addr = fake.addr().unwrap();
    fake.stop().await;
    let err = connect_err(&cfg).await;
    assert!(err.starts_with(&format!("cannot reach LND at {addr}: ")), "{err}");
    assert!(!err.contains('\n'), "{err}");
}

#[tokio::test]
async fn a_channel_lnd_has_no_graph_edge_for_is_listed_without_a_peer_policy() {
    // A fresh (or zero-conf, or alias-scid) channel: GetChanInfo says "edge not found" with
    // code Unknown. That must not fail the whole channel list.
    let fake = started("regtest").await;
    fake.with_state(|s| {
        s.channels.push(channel(CHAN_A, 1, 600_000, 400_000));
        let mut fresh = channel(CHAN_B, 2, 100_000, 0);
        fresh.no_edge = true;
        s.channels.push(fresh);
    });
    let node = connect(&fake).await;
    let chans = node
        .channels()
        .await
        .expect("one edge-less channel must not fail the list");
    let a = chans
        .iter()
        .find(|c| c.scid == Some(Scid::from_u64(CHAN_A)))
        .unwrap();
    let b = chans
        .iter()
        .find(|c| c.scid == Some(Scid::from_u64(CHAN_B)))
        .unwrap();
    assert!(a.remote_policy.is_some());
    assert_eq!(b.remote_policy, None);
}

#[tokio::test]
async fn has_invoice_tells_known_from_unknown_hashes() {
    let fake = started("regtest").await;
    let node = connect(&fake).await;
    let known = PaymentHash([0x11; 32]);
    node.add_hold_invoice(&HoldInvoiceRequest {
        payment_hash: known,
        amount: Msat(1_000),
        memo: None,
        description_hash: None,
        expiry_secs: 3_600,
        cltv_expiry: 80,
        private: false,
    })
    .await
    .unwrap();
    assert!(node.has_invoice(known).await.unwrap());
    assert!(!node.has_invoice(PaymentHash([0x22; 32])).await.unwrap());
}

#[tokio::test]
async fn a_certificate_lnd_replaced_while_running_is_picked_up_on_reconnect() {
    let fake = started("regtest").await;
    let port = fake.addr().unwrap().port();
    let node = connect(&fake).await;
    node.info().await.unwrap();
    fake.stop().await;
    fake.rotate_cert();
    fake.start(Some(port)).await;
    // The same node handle reconnects, pinned to the new tls.cert on disk.
    let mut last = None;
    for _ in 0..50 {
        match node.info().await {
            Ok(_) => return,
            Err(e) => last = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("never reconnected after the certificate changed: {last:?}");
}
