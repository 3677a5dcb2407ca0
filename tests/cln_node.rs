//! `ClnNode`, ballast's client of lightningd's RPC, against the harness's fake node on a real
//! unix socket: canned v26.06 answers in, ballast's types out, and every request we send and
//! every answer served held to v26.06's JSON schemas (a violation fails the test).

mod harness;

use ballast::cln::ClnNode;
use ballast::node::{
    ChannelState, FeeUpdate, Forward, ForwardStatus, GraphEdge, HtlcDirection, Invoice, Node, NodeError,
    NodeInfo, PayOutcome, PendingHtlc, RouteHop,
};
use ballast::types::{Msat, NodeId, PaymentHash, Preimage, Scid};
use harness::{schemas, FakeNode, JsonRpcError, RpcSocket, Scripted};
use serde_json::{json, Value};

// Node ids from the v26.06 schema examples (real regtest keys, so they are valid points).
const L1: &str = "033845802d25b4e074ccfd7cd8b339a41dc75bf9978a034800444b51d42b07799a";
const L2: &str = "038194b5f32bdf0aa59812c86c4ef7ad2f294104fa027d1ace9b469bb6f88cf37b";
const L3: &str = "03cecbfdc68544cc596223b68ce0710c9e5d2c9cb317ee07822d95079acc703d31";
const L4: &str = "02287bfac8b99b35477ebe9334eede1e32b189e24644eb701c079614712331cec0";

// lightningd's payment error codes (common/jsonrpc_errors.h).
const PAY_UNPARSEABLE_ONION: i64 = 202;
const PAY_DESTINATION_PERM_FAIL: i64 = 203;

/// A fake lightningd answering each `method` with its scripted answer, every time.
fn serve(answers: Vec<(&str, Scripted)>) -> RpcSocket {
    let node = FakeNode::new();
    for (method, answer) in answers {
        node.script_always(method, answer);
    }
    RpcSocket::start(node)
}

fn cln(ld: &RpcSocket) -> ClnNode {
    ClnNode::new(ld.path())
}

fn error(code: i64, message: &str, data: Option<Value>) -> Scripted {
    Scripted::Error(JsonRpcError {
        code,
        message: message.into(),
        data,
    })
}

fn hash_of(preimage: [u8; 32]) -> PaymentHash {
    Preimage(preimage).payment_hash()
}

fn id(s: &str) -> NodeId {
    s.parse().unwrap()
}

fn sc(s: &str) -> Scid {
    s.parse().unwrap()
}

/// `err` is a failure to talk to lightningd during `method`.
fn assert_transport(err: &NodeError, method: &str) {
    assert!(
        matches!(err, NodeError::Transport { method: m, .. } if *m == method),
        "{err}"
    );
}

/// `err` is an answer to `method` we could not read.
fn assert_malformed(err: &NodeError, method: &str) {
    assert!(
        matches!(err, NodeError::Malformed { method: m, .. } if *m == method),
        "{err}"
    );
}

/// `err` is lightningd refusing `method` with `code`.
fn assert_rejected(err: &NodeError, method: &str, code: Option<i64>) {
    assert!(
        matches!(err, NodeError::Rejected { method: m, code: c, .. } if *m == method && *c == code),
        "{err}"
    );
}

#[test]
fn the_schema_check_bites() {
    assert!(schemas()
        .check_rpc_response("getinfo", &json!({"id": L1}))
        .is_err());
    // Why setchannel and sendpay go out as our own request types: cln-rpc's `Amount`
    // serializes as "4000msat" (see `set_fee_sends_integer_msat_to_setchannel`).
    let theirs = serde_json::to_value(cln_rpc::model::requests::SetchannelRequest {
        id: "122x1x1".into(),
        feebase: Some(cln_rpc::primitives::Amount::from_msat(4000)),
        feeppm: Some(300),
        enforcedelay: None,
        htlcmax: None,
        htlcmin: None,
        ignorefeelimits: None,
    })
    .unwrap();
    assert_eq!(theirs["feebase"], "4000msat");
}

// ---- canned answers ---------------------------------------------------------------

fn getinfo() -> Value {
    json!({
        "id": L1, "alias": "SILENTARTIST", "color": "033845",
        "num_peers": 2, "num_pending_channels": 0, "num_active_channels": 2,
        "num_inactive_channels": 0, "address": [],
        "binding": [{"type": "ipv4", "address": "127.0.0.1", "port": 30003}],
        "version": "v26.06", "blockheight": 850123, "network": "bitcoin",
        "fees_collected_msat": 12345, "lightning-dir": "/home/op/.lightning/bitcoin",
        "our_features": {"init": "08a0000a8a5961", "node": "88a0000a8a5961", "channel": "",
                         "invoice": "02000002024100"}
    })
}

/// A `CHANNELD_NORMAL` channel as listpeerchannels shows it, with policy 1000/250.
fn normal_channel(peer: &str, scid: &str, to_us: u64, total: u64) -> Value {
    let policy = json!({"htlc_minimum_msat": 0, "htlc_maximum_msat": total / 100 * 99,
                        "cltv_expiry_delta": 34, "fee_base_msat": 1000,
                        "fee_proportional_millionths": 250});
    let identity = json!({
        "peer_id": peer, "peer_connected": true, "reestablished": true,
        "channel_type": {"bits": [12, 22], "names": ["static_remotekey/even", "anchors/even"]},
        "updates": {"local": policy, "remote": policy},
        "last_stable_connection": 1738000000, "state": "CHANNELD_NORMAL",
        "lost_state": false, "feerate": {"perkw": 3755, "perkb": 15020},
        "owner": "channeld", "short_channel_id": scid, "direction": 0,
        "channel_id": "2c383675809577b343f57acbea98d51dd913817874a3b621173f3fe2ea519c45",
        "funding_txid": "6958d6b2c23a79254dfd48b9b3d2a357c8c12c52a8bbd90bf48bd04e55996368",
        "funding_outnum": 1, "private": false, "opener": "local",
        "alias": {"local": "13567504x10523633x59145", "remote": "15641710x10742513x46200"},
        "features": ["option_static_remotekey", "option_anchors"],
        "funding": {"local_funds_msat": total, "remote_funds_msat": 0, "pushed_msat": 0},
    });
    // Two halves: one json! this size exceeds the default macro recursion limit.
    let balances = json!({
        "to_us_msat": to_us, "min_to_us_msat": to_us, "max_to_us_msat": total,
        "total_msat": total, "fee_base_msat": 1000, "fee_proportional_millionths": 250,
        "dust_limit_msat": 546000, "their_reserve_msat": 10000000, "our_reserve_msat": 10000000,
        "spendable_msat": to_us.saturating_sub(10_000_000 + 4_867_000),
        "receivable_msat": (total - to_us).saturating_sub(10_000_000),
        "minimum_htlc_in_msat": 0, "minimum_htlc_out_msat": 0,
        "maximum_htlc_out_msat": total / 100 * 99, "their_to_self_delay": 144,
        "our_to_self_delay": 144, "max_accepted_htlcs": 483,
        "state_changes": [
            {"timestamp": "2025-01-27T17:46:40.000Z", "old_state": "CHANNELD_AWAITING_LOCKIN",
             "new_state": "CHANNELD_NORMAL", "cause": "user", "message": "Lockin complete"}
        ],
        "status": ["CHANNELD_NORMAL:Channel ready for use."],
        "in_payments_offered": 0, "in_offered_msat": 0, "in_payments_fulfilled": 0,
        "in_fulfilled_msat": 0, "out_payments_offered": 0, "out_offered_msat": 0,
        "out_payments_fulfilled": 0, "out_fulfilled_msat": 0, "htlcs": []
    });
    let mut channel = identity;
    channel
        .as_object_mut()
        .unwrap()
        .extend(balances.as_object().unwrap().clone());
    channel
}

/// The same channel after its funding output was spent, having passed through `path`.
fn onchain_channel(peer: &str, scid: &str, path: &[&str]) -> Value {
    let mut c = normal_channel(peer, scid, 400_000_000, 1_000_000_000);
    c["state"] = json!("ONCHAIN");
    c["peer_connected"] = json!(false);
    c.as_object_mut().unwrap().remove("reestablished");
    c["owner"] = json!("onchaind");
    c["closer"] = json!("local");
    c["spendable_msat"] = json!(0);
    c["receivable_msat"] = json!(0);
    c["status"] = json!(["ONCHAIN:All outputs resolved: waiting 90 more blocks before forgetting channel"]);
    let mut changes = vec![c["state_changes"][0].clone()];
    let mut old = "CHANNELD_NORMAL";
    for new in path.iter().copied().chain(["FUNDING_SPEND_SEEN", "ONCHAIN"]) {
        changes.push(json!({"timestamp": "2025-01-28T09:00:00.000Z", "old_state": old,
                            "new_state": new, "cause": "user", "message": "state change"}));
        old = new;
    }
    c["state_changes"] = json!(changes);
    c
}

/// A dual-funded open still negotiating, exactly the fields lightningd shows for one.
fn unsaved_channel(peer: &str) -> Value {
    json!({
        "peer_id": peer, "peer_connected": true,
        "channel_type": {"bits": [12, 22], "names": ["static_remotekey/even", "anchors/even"]},
        "state": "DUALOPEND_OPEN_INIT", "owner": "dualopend", "opener": "local",
        "lost_state": false, "status": [], "to_us_msat": 2000000000, "total_msat": 2000000000,
        "features": ["option_static_remotekey", "option_anchors"]
    })
}

fn listchannels() -> Value {
    let edge = |source: &str, destination: &str, scid: &str, direction: u32, active: bool| {
        json!({"source": source, "destination": destination, "short_channel_id": scid,
               "direction": direction, "public": true, "amount_msat": 1000000000u64,
               "message_flags": 1, "channel_flags": direction, "active": active,
               "last_update": 1738000001, "base_fee_millisatoshi": 1, "fee_per_millionth": 10,
               "delay": 6, "htlc_minimum_msat": 0, "htlc_maximum_msat": 990000000,
               "features": ""})
    };
    let mut old = edge(L3, L4, "118x1x0", 0, false);
    // A channel_update from before htlc_maximum_msat was mandatory.
    old.as_object_mut().unwrap().remove("htlc_maximum_msat");
    old["message_flags"] = json!(0);
    json!({"channels": [edge(L1, L2, "116x1x1", 0, true), edge(L2, L1, "116x1x1", 1, true), old]})
}

/// Five forwards received 100s apart from 1738000100, one of every status.
fn forwards_list() -> Vec<Value> {
    let base = |i: u64, status: &str| {
        json!({"created_index": i, "updated_index": i, "in_channel": "116x1x1", "in_htlc_id": i,
               "in_msat": 10001 * i, "status": status, "style": "tlv",
               "received_time": 1738000000.0 + 100.0 * i as f64})
    };
    let mut settled = base(1, "settled");
    settled.as_object_mut().unwrap().extend(
        json!({"out_channel": "130x1x0", "out_htlc_id": 1, "out_msat": 10000, "fee_msat": 1,
               "resolved_time": 1738000100.5})
        .as_object()
        .unwrap()
        .clone(),
    );
    let mut failed = base(2, "failed");
    failed.as_object_mut().unwrap().extend(
        json!({"out_channel": "130x1x0", "out_htlc_id": 2, "out_msat": 20000, "fee_msat": 2,
               "resolved_time": 1738000201.25})
        .as_object()
        .unwrap()
        .clone(),
    );
    let mut local_failed = base(3, "local_failed");
    local_failed.as_object_mut().unwrap().extend(
        json!({"out_channel": "130x1x0", "failcode": 4103,
               "failreason": "WIRE_TEMPORARY_CHANNEL_FAILURE"})
        .as_object()
        .unwrap()
        .clone(),
    );
    let mut offered = base(4, "offered");
    offered.as_object_mut().unwrap().extend(
        json!({"out_channel": "130x1x0", "out_htlc_id": 4, "out_msat": 40000, "fee_msat": 4})
            .as_object()
            .unwrap()
            .clone(),
    );
    let mut settled2 = base(5, "settled");
    settled2.as_object_mut().unwrap().extend(
        json!({"out_channel": "130x1x0", "out_htlc_id": 5, "out_msat": 50000, "fee_msat": 5,
               "resolved_time": 1738000500.0})
        .as_object()
        .unwrap()
        .clone(),
    );
    vec![settled, failed, local_failed, offered, settled2]
}

fn invoices_list() -> Vec<Value> {
    let hash = |b: u8| hash_of([b; 32]).to_hex();
    vec![
        json!({"label": "paid one", "bolt11": "lnbcrt5m1pne035q", "payment_hash": hash(1),
               "amount_msat": 500000000, "status": "paid", "pay_index": 1,
               "amount_received_msat": 500000100, "paid_at": 1738000000,
               "payment_preimage": hex::encode([1u8; 32]), "description": "paid",
               "expires_at": 1738604800, "created_index": 1, "updated_index": 1}),
        json!({"label": "any amount", "bolt11": "lnbcrt1pne035q", "payment_hash": hash(2),
               "status": "unpaid", "description": "donation", "expires_at": 1738604800,
               "created_index": 2}),
        json!({"label": "too late", "bolt11": "lnbcrt1pne035q", "payment_hash": hash(3),
               "amount_msat": 1000, "status": "expired", "description": "late",
               "expires_at": 1738000001, "created_index": 3}),
    ]
}

/// lightningd's answer listing entries `created_index >= start`, at most `limit` of them.
fn page_of(entries: &[Value], params: &Value) -> Vec<Value> {
    let start = params["start"].as_u64().unwrap_or(0);
    let limit = params["limit"].as_u64().unwrap_or(u64::MAX) as usize;
    entries
        .iter()
        .filter(|e| e["created_index"].as_u64().unwrap() >= start)
        .take(limit)
        .cloned()
        .collect()
}

fn route() -> Vec<RouteHop> {
    vec![
        RouteHop {
            scid: sc("116x1x1"),
            node: id(L2),
            amount: Msat(10001),
            delay: 15,
        },
        RouteHop {
            scid: sc("130x1x0"),
            node: id(L3),
            amount: Msat(10000),
            delay: 9,
        },
    ]
}

fn sendpay_pending(hash: PaymentHash) -> Value {
    json!({"message": "Monitor status with listpays or waitsendpay", "created_index": 2, "id": 2,
           "payment_hash": hash.to_hex(), "groupid": 1, "destination": L3, "amount_msat": 10000,
           "amount_sent_msat": 10001, "created_at": 1738000000, "status": "pending"})
}

fn waitsendpay_complete(hash: PaymentHash, preimage: [u8; 32]) -> Value {
    json!({"created_index": 2, "id": 2, "payment_hash": hash.to_hex(), "groupid": 1,
           "updated_index": 2, "destination": L3, "amount_msat": 10000,
           "amount_sent_msat": 10001, "created_at": 1738000000, "completed_at": 1738000001,
           "status": "complete", "payment_preimage": hex::encode(preimage)})
}

/// waitsendpay's routing failure object, as lightningd attaches it to the error.
fn failure_data(
    hash: PaymentHash,
    erring_node: &str,
    erring_channel: &str,
    failcode: u32,
    name: &str,
) -> Value {
    json!({"created_index": 2, "id": 2, "payment_hash": hash.to_hex(), "groupid": 1,
           "updated_index": 2, "destination": L3, "amount_msat": 10000, "amount_sent_msat": 10001,
           "created_at": 1738000000, "status": "failed", "erring_index": 1, "failcode": failcode,
           "failcodename": name, "erring_node": erring_node, "erring_channel": erring_channel,
           "erring_direction": 0, "raw_message": "1007"})
}

// ---- mapping --------------------------------------------------------------------------

#[tokio::test]
async fn info_and_block_height_come_from_getinfo() {
    let ld = serve(vec![("getinfo", Scripted::Result(getinfo()))]);
    let node = cln(&ld);
    let info = node.info().await.unwrap();
    assert_eq!(
        info,
        NodeInfo {
            id: id(L1),
            alias: "SILENTARTIST".into(),
            network: "bitcoin".into(),
            blockheight: 850123,
            version: "v26.06".into(),
        }
    );
    assert_eq!(node.block_height().await.unwrap(), 850123);
    assert_eq!(ld.methods(), ["getinfo", "getinfo"]);
    assert_eq!(ld.requests()[0].1, json!({}));
}

#[tokio::test]
async fn channels_map_balances_policy_htlcs_and_states() {
    let mut busy = normal_channel(L2, "116x1x1", 609_507_210, 1_000_000_000);
    busy["htlcs"] = json!([{"direction": "in", "id": 17, "amount_msat": 4000082, "expiry": 190,
        "payment_hash": "917d0cb42f300c663e8fa4ec70db9ed8e8d1d715cde8b968e869ac45bba165ff",
        "state": "RCVD_ADD_ACK_REVOCATION"}]);
    busy["private"] = json!(true);
    // Policy only under `updates.local`, as a newer lightningd might show it.
    let mut newer = normal_channel(L3, "130x1x0", 899_996_000, 1_000_000_000);
    let newer_obj = newer.as_object_mut().unwrap();
    newer_obj.remove("fee_base_msat");
    newer_obj.remove("fee_proportional_millionths");
    newer["updates"]["local"]["fee_base_msat"] = json!(4000);
    newer["updates"]["local"]["fee_proportional_millionths"] = json!(300);
    let listing = json!({"channels": [
        busy,
        newer,
        unsaved_channel(L4),
        onchain_channel(L4, "168x1x0", &["CHANNELD_SHUTTING_DOWN", "CLOSINGD_SIGEXCHANGE", "CLOSINGD_COMPLETE"]),
        onchain_channel(L2, "170x1x0", &["AWAITING_UNILATERAL"]),
    ]});
    let ld = serve(vec![("listpeerchannels", Scripted::Result(listing))]);
    let channels = cln(&ld).channels().await.unwrap();
    assert_eq!(ld.methods(), ["listpeerchannels"]);
    assert_eq!(channels.len(), 5);

    let c = &channels[0];
    assert_eq!(c.scid, Some(sc("116x1x1")));
    assert_eq!(c.peer, id(L2));
    assert!(c.peer_connected);
    assert_eq!(
        (c.state, c.raw_state.as_str()),
        (ChannelState::Normal, "CHANNELD_NORMAL")
    );
    assert_eq!(c.capacity, Msat(1_000_000_000));
    assert_eq!(c.local, Msat(609_507_210));
    assert_eq!(c.remote, Msat(390_492_790));
    assert_eq!(c.spendable, Msat(609_507_210 - 14_867_000));
    assert_eq!(c.receivable, Msat(380_492_790));
    assert_eq!((c.fee_base, c.fee_ppm), (Msat(1000), 250));
    assert!(c.private);
    assert_eq!(
        c.htlcs,
        vec![PendingHtlc {
            direction: HtlcDirection::In,
            id: 17,
            amount: Msat(4000082),
            expiry: 190,
            payment_hash: "917d0cb42f300c663e8fa4ec70db9ed8e8d1d715cde8b968e869ac45bba165ff"
                .parse()
                .unwrap(),
        }]
    );

    assert_eq!((channels[1].fee_base, channels[1].fee_ppm), (Msat(4000), 300));
    assert!(!channels[1].private);

    let opening = &channels[2];
    assert_eq!(opening.state, ChannelState::Opening);
    assert_eq!(opening.raw_state, "DUALOPEND_OPEN_INIT");
    assert_eq!(opening.scid, None);
    assert_eq!(
        (opening.capacity, opening.local, opening.remote),
        (Msat(2_000_000_000), Msat(2_000_000_000), Msat(0))
    );
    assert_eq!(
        (
            opening.spendable,
            opening.receivable,
            opening.fee_base,
            opening.fee_ppm
        ),
        (Msat(0), Msat(0), Msat(0), 0)
    );

    assert_eq!(
        (channels[3].state, channels[3].raw_state.as_str()),
        (ChannelState::Closing, "ONCHAIN")
    );
    assert_eq!(channels[4].state, ChannelState::ForceClosing);
    assert!(!channels[4].peer_connected);
}

/// Every state lightningd can show, read through `listpeerchannels`. `FUNDING_SPEND_SEEN`
/// and `ONCHAIN` after a cooperative close (`CLOSINGD_COMPLETE` then `FUNDING_SPEND_SEEN` in
/// the state changes) are `Closing`; after a unilateral one, `ForceClosing`.
#[tokio::test]
async fn every_lightningd_state_has_a_place() {
    let expect = [
        ("OPENINGD", ChannelState::Opening),
        ("CHANNELD_AWAITING_LOCKIN", ChannelState::Opening),
        ("DUALOPEND_OPEN_INIT", ChannelState::Opening),
        ("DUALOPEND_OPEN_COMMITTED", ChannelState::Opening),
        ("DUALOPEND_OPEN_COMMIT_READY", ChannelState::Opening),
        ("DUALOPEND_AWAITING_LOCKIN", ChannelState::Opening),
        ("CHANNELD_NORMAL", ChannelState::Normal),
        ("CHANNELD_AWAITING_SPLICE", ChannelState::Normal),
        ("CHANNELD_SHUTTING_DOWN", ChannelState::Closing),
        ("CLOSINGD_SIGEXCHANGE", ChannelState::Closing),
        ("CLOSINGD_COMPLETE", ChannelState::Closing),
        ("AWAITING_UNILATERAL", ChannelState::ForceClosing),
        ("FUNDING_SPEND_SEEN", ChannelState::ForceClosing),
        ("ONCHAIN", ChannelState::ForceClosing),
    ];
    let mutual = [
        "CHANNELD_SHUTTING_DOWN",
        "CLOSINGD_SIGEXCHANGE",
        "CLOSINGD_COMPLETE",
    ];
    let mut listed: Vec<Value> = expect
        .iter()
        .enumerate()
        .map(|(i, (state, _))| {
            let mut c = normal_channel(L2, &format!("{}x1x0", 200 + i), 400_000_000, 1_000_000_000);
            c["state"] = json!(state);
            c
        })
        .collect();
    let mut want: Vec<(String, ChannelState)> = expect.iter().map(|(s, w)| (s.to_string(), *w)).collect();
    for state in ["FUNDING_SPEND_SEEN", "ONCHAIN"] {
        let mut c = onchain_channel(L2, "300x1x0", &mutual);
        c["state"] = json!(state);
        listed.push(c);
        want.push((state.to_string(), ChannelState::Closing));
    }
    let ld = serve(vec![(
        "listpeerchannels",
        Scripted::Result(json!({"channels": listed})),
    )]);
    let got: Vec<(String, ChannelState)> = cln(&ld)
        .channels()
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.raw_state, c.state))
        .collect();
    assert_eq!(got, want);

    // `CLOSED` is in cln-rpc's states though v26.06's schema never lists it: closed either way.
    let closed = |path: &[&str]| {
        let mut c = onchain_channel(L2, "301x1x0", path);
        c["state"] = json!("CLOSED");
        c
    };
    let ld = serve(vec![(
        "listpeerchannels",
        Scripted::Unchecked(json!({"channels": [closed(&[]), closed(&mutual)]})),
    )]);
    let states: Vec<ChannelState> = cln(&ld)
        .channels()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.state)
        .collect();
    assert_eq!(states, [ChannelState::Closed, ChannelState::Closed]);
}

#[tokio::test]
async fn graph_maps_listchannels_and_defaults_htlc_max_to_capacity() {
    let ld = serve(vec![("listchannels", Scripted::Result(listchannels()))]);
    let edges = cln(&ld).graph().await.unwrap();
    assert_eq!(ld.requests(), [("listchannels".to_string(), json!({}))]);
    assert_eq!(
        edges[1],
        GraphEdge {
            scid: sc("116x1x1"),
            source: id(L2),
            destination: id(L1),
            capacity: Msat(1_000_000_000),
            fee_base: Msat(1),
            fee_ppm: 10,
            cltv_delta: 6,
            htlc_min: Msat(0),
            htlc_max: Msat(990_000_000),
            active: true,
            last_update: 1738000001,
        }
    );
    assert!(!edges[2].active);
    assert_eq!(edges[2].htlc_max, Msat(1_000_000_000));
}

#[tokio::test]
async fn forwards_page_through_everything_and_keep_those_since() {
    let all = forwards_list();
    let node = FakeNode::new();
    node.set_handler("listforwards", move |params| {
        Ok(json!({"forwards": page_of(&all, params)}))
    });
    let ld = RpcSocket::start(node);
    let node = cln(&ld).with_page_size(2);
    let forwards = node.forwards(1_738_000_300).await.unwrap();
    let pages: Vec<Value> = ld.requests().into_iter().map(|(_, p)| p).collect();
    assert_eq!(
        pages,
        [
            json!({"index": "created", "start": 0, "limit": 2}),
            json!({"index": "created", "start": 3, "limit": 2}),
            json!({"index": "created", "start": 5, "limit": 2}),
        ]
    );
    let statuses: Vec<_> = forwards.iter().map(|f| f.status).collect();
    assert_eq!(
        statuses,
        [
            ForwardStatus::LocalFailed,
            ForwardStatus::Offered,
            ForwardStatus::Settled
        ]
    );
    assert_eq!(
        forwards[0],
        Forward {
            in_channel: sc("116x1x1"),
            out_channel: Some(sc("130x1x0")),
            in_msat: Msat(30003),
            out_msat: None,
            fee: None,
            status: ForwardStatus::LocalFailed,
            received_time: 1738000300.0,
            resolved_time: None,
        }
    );
    assert_eq!(forwards[2].fee, Some(Msat(5)));
    assert_eq!(forwards[2].resolved_time, Some(1738000500.0));

    let everything = node.forwards(0).await.unwrap();
    assert_eq!(everything.len(), 5);
    assert_eq!(everything[1].status, ForwardStatus::Failed);
}

#[tokio::test]
async fn paging_stops_on_a_page_that_does_not_move_forward() {
    let all = forwards_list();
    // Ignores `start`, so the same full page comes back for ever.
    let ld = serve(vec![(
        "listforwards",
        Scripted::Result(json!({"forwards": all[..2]})),
    )]);
    let node = cln(&ld).with_page_size(2);
    let err = node.forwards(0).await.unwrap_err();
    assert_malformed(&err, "listforwards");
    assert_eq!(ld.methods().len(), 2);
}

#[tokio::test]
async fn invoices_page_and_map_status() {
    let all = invoices_list();
    let node = FakeNode::new();
    node.set_handler("listinvoices", move |params| {
        Ok(json!({"invoices": page_of(&all, params)}))
    });
    let ld = RpcSocket::start(node);
    let node = cln(&ld).with_page_size(2);
    let invoices = node.invoices().await.unwrap();
    assert_eq!(ld.methods(), ["listinvoices", "listinvoices"]);
    assert_eq!(
        invoices,
        vec![
            Invoice {
                label: "paid one".into(),
                payment_hash: hash_of([1; 32]),
                amount: Some(Msat(500_000_000)),
                received: Some(Msat(500_000_100)),
                paid_at: Some(1738000000),
                status: "paid".into(),
            },
            Invoice {
                label: "any amount".into(),
                payment_hash: hash_of([2; 32]),
                amount: None,
                received: None,
                paid_at: None,
                status: "unpaid".into(),
            },
            Invoice {
                label: "too late".into(),
                payment_hash: hash_of([3; 32]),
                amount: Some(Msat(1000)),
                received: None,
                paid_at: None,
                status: "expired".into(),
            },
        ]
    );
}

#[tokio::test]
async fn set_fee_sends_integer_msat_to_setchannel() {
    let node = FakeNode::new();
    node.set_handler("setchannel", |params| {
        Ok(json!({"channels": [{
            "peer_id": "0258f3ff3e0853ccc09f6fe89823056d7c0c55c95fab97674df5e1ad97a72f6265",
            "channel_id": "58073dac0d6d0e06d167ce2cfa1e134fe8d76ac2689567b5415ca8fef8e8a998",
            "short_channel_id": params["id"], "fee_base_msat": params["feebase"],
            "fee_proportional_millionths": params["feeppm"], "minimum_htlc_out_msat": 0,
            "maximum_htlc_out_msat": 990000000, "ignore_fee_limits": false}]}))
    });
    let ld = RpcSocket::start(node);
    let fee = FeeUpdate {
        base: Msat(4000),
        ppm: 300,
    };
    cln(&ld).set_fee(sc("122x1x1"), fee).await.unwrap();
    assert_eq!(
        ld.requests(),
        [(
            "setchannel".to_string(),
            json!({"id": "122x1x1", "feebase": 4000, "feeppm": 300})
        )]
    );
}

#[tokio::test]
async fn set_fee_on_an_unknown_channel_is_rejected() {
    let ld = serve(vec![(
        "setchannel",
        error(-32602, "Could not find any active channels", None),
    )]);
    let err = cln(&ld)
        .set_fee(
            sc("999x1x0"),
            FeeUpdate {
                base: Msat(0),
                ppm: 1,
            },
        )
        .await
        .unwrap_err();
    match err {
        NodeError::Rejected {
            method,
            code,
            message,
        } => {
            assert_eq!((method, code), ("setchannel", Some(-32602)));
            assert_eq!(message, "Could not find any active channels");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn set_fee_that_changed_nothing_is_malformed() {
    let ld = serve(vec![("setchannel", Scripted::Result(json!({"channels": []})))]);
    let err = cln(&ld)
        .set_fee(
            sc("122x1x1"),
            FeeUpdate {
                base: Msat(0),
                ppm: 1,
            },
        )
        .await
        .unwrap_err();
    assert_malformed(&err, "setchannel");
}

#[tokio::test]
async fn sign_invoice_returns_signed_bolt11() {
    let ld = serve(vec![(
        "signinvoice",
        Scripted::Result(json!({"bolt11": "lnbcrt10n1pne035qsigned"})),
    )]);
    let signed = cln(&ld).sign_invoice("lnbcrt10n1pne035qunsigned").await.unwrap();
    assert_eq!(signed, "lnbcrt10n1pne035qsigned");
    assert_eq!(ld.methods(), ["signinvoice"]);
    assert_eq!(
        ld.node().calls_to("signinvoice")[0]["invstring"],
        "lnbcrt10n1pne035qunsigned"
    );
}

// ---- payments -------------------------------------------------------------------------

#[tokio::test]
async fn pay_route_sends_then_waits_and_returns_the_preimage() {
    let preimage = [0x42; 32];
    let hash = hash_of(preimage);
    let ld = serve(vec![
        ("sendpay", Scripted::Result(sendpay_pending(hash))),
        (
            "waitsendpay",
            Scripted::Result(waitsendpay_complete(hash, preimage)),
        ),
    ]);
    let outcome = cln(&ld).pay_route(&route(), hash, 60).await.unwrap();
    assert_eq!(
        outcome,
        PayOutcome::Success {
            preimage: Preimage(preimage)
        }
    );
    assert_eq!(
        ld.requests(),
        [
            (
                "sendpay".to_string(),
                json!({"route": [
                    {"id": L2, "channel": "116x1x1", "amount_msat": 10001, "delay": 15},
                    {"id": L3, "channel": "130x1x0", "amount_msat": 10000, "delay": 9},
                ], "payment_hash": hash.to_hex(), "amount_msat": 10000})
            ),
            (
                "waitsendpay".to_string(),
                json!({"payment_hash": hash.to_hex(), "timeout": 60})
            ),
        ]
    );
}

#[tokio::test]
async fn pay_route_already_paid_needs_no_wait() {
    let preimage = [7; 32];
    let hash = hash_of(preimage);
    let mut done = waitsendpay_complete(hash, preimage);
    done["completed_at"] = json!(1738000001);
    let ld = serve(vec![("sendpay", Scripted::Result(done))]);
    let outcome = cln(&ld).pay_route(&route(), hash, 60).await.unwrap();
    assert!(matches!(outcome, PayOutcome::Success { .. }));
    assert_eq!(ld.methods(), ["sendpay"]);
}

#[tokio::test]
async fn pay_route_failure_along_the_route_is_an_outcome() {
    let hash = hash_of([9; 32]);
    let ld = serve(vec![
        ("sendpay", Scripted::Result(sendpay_pending(hash))),
        (
            "waitsendpay",
            error(
                204,
                "failed: WIRE_TEMPORARY_CHANNEL_FAILURE (reply from remote)",
                Some(failure_data(
                    hash,
                    L2,
                    "130x1x0",
                    4103,
                    "WIRE_TEMPORARY_CHANNEL_FAILURE",
                )),
            ),
        ),
    ]);
    let outcome = cln(&ld).pay_route(&route(), hash, 60).await.unwrap();
    assert_eq!(
        outcome,
        PayOutcome::Failed {
            failing_channel: Some(sc("130x1x0")),
            failing_node: Some(id(L2)),
            code: Some(4103),
            message: "failed: WIRE_TEMPORARY_CHANNEL_FAILURE (reply from remote)".into(),
        }
    );
}

#[tokio::test]
async fn pay_route_refused_by_the_destination_is_an_outcome() {
    let hash = hash_of([9; 32]);
    let ld = serve(vec![
        ("sendpay", Scripted::Result(sendpay_pending(hash))),
        (
            "waitsendpay",
            error(
                203,
                "failed: WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS (reply from remote)",
                Some(failure_data(
                    hash,
                    L3,
                    "130x1x0",
                    16399,
                    "WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS",
                )),
            ),
        ),
    ]);
    match cln(&ld).pay_route(&route(), hash, 60).await.unwrap() {
        PayOutcome::Failed {
            failing_node, code, ..
        } => assert_eq!((failing_node, code), (Some(id(L3)), Some(16399))),
        other => panic!("expected Failed, got {other:?}"),
    }
}

#[tokio::test]
async fn pay_route_failing_at_the_first_hop_never_waits() {
    let hash = hash_of([9; 32]);
    let mut data = failure_data(hash, L1, "116x1x1", 4103, "WIRE_TEMPORARY_CHANNEL_FAILURE");
    data["erring_index"] = json!(0);
    let ld = serve(vec![("sendpay", error(204, "First peer not ready", Some(data)))]);
    let outcome = cln(&ld).pay_route(&route(), hash, 60).await.unwrap();
    assert!(
        matches!(&outcome, PayOutcome::Failed { failing_channel: Some(c), .. } if *c == sc("116x1x1")),
        "{outcome:?}"
    );
    assert_eq!(ld.methods(), ["sendpay"]);
}

#[tokio::test]
async fn pay_route_timeout_is_not_a_failure() {
    let hash = hash_of([9; 32]);
    let ld = serve(vec![
        ("sendpay", Scripted::Result(sendpay_pending(hash))),
        ("waitsendpay", error(200, "Timed out", None)),
    ]);
    let outcome = cln(&ld).pay_route(&route(), hash, 0).await.unwrap();
    assert_eq!(
        outcome,
        PayOutcome::InFlight {
            message: "Timed out".into()
        }
    );
}

#[tokio::test]
async fn wait_payment_for_a_payment_lightningd_does_not_know_is_unknown() {
    let ld = serve(vec![("waitsendpay", error(208, "payment_hash not found", None))]);
    let err = cln(&ld).wait_payment(hash_of([9; 32]), 1).await.unwrap_err();
    assert!(
        matches!(
            err,
            NodeError::UnknownPayment {
                method: "waitsendpay",
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn pay_route_other_refusals_are_rejected() {
    let hash = hash_of([9; 32]);
    let ld = serve(vec![(
        "sendpay",
        error(
            201,
            "Already succeeded with amount 20000msat (not 10000msat)",
            None,
        ),
    )]);
    let err = cln(&ld).pay_route(&route(), hash, 60).await.unwrap_err();
    assert_rejected(&err, "sendpay", Some(201));
}

#[tokio::test]
async fn pay_route_with_a_preimage_that_does_not_match_is_malformed() {
    let hash = hash_of([9; 32]);
    let ld = serve(vec![
        ("sendpay", Scripted::Result(sendpay_pending(hash))),
        (
            "waitsendpay",
            Scripted::Result(waitsendpay_complete(hash, [8; 32])),
        ),
    ]);
    let err = cln(&ld).pay_route(&route(), hash, 60).await.unwrap_err();
    assert_malformed(&err, "waitsendpay");
}

#[tokio::test]
async fn pay_route_refuses_an_empty_route_without_asking() {
    let ld = serve(vec![("sendpay", Scripted::Hangup)]);
    let err = cln(&ld).pay_route(&[], hash_of([1; 32]), 60).await.unwrap_err();
    assert_rejected(&err, "sendpay", None);
    assert!(ld.requests().is_empty());
}

/// What a payment failure reports, read from the failure object waitsendpay attaches.
async fn route_failure(code: i64, data: Option<Value>) -> PayOutcome {
    let hash = hash_of([9; 32]);
    let ld = serve(vec![
        ("sendpay", Scripted::Result(sendpay_pending(hash))),
        ("waitsendpay", error(code, "failed", data)),
    ]);
    cln(&ld).pay_route(&route(), hash, 60).await.unwrap()
}

#[tokio::test]
async fn route_failure_reads_what_it_can() {
    // The destination itself, in sendpay's words.
    let PayOutcome::Failed {
        failing_channel,
        failing_node,
        code,
        ..
    } = route_failure(
        PAY_DESTINATION_PERM_FAIL,
        Some(json!({"erring_channel": "0x0x0", "erring_node": L3, "failcode": 16399})),
    )
    .await
    else {
        panic!("expected Failed")
    };
    assert_eq!(
        (failing_channel, failing_node, code),
        (None, Some(id(L3)), Some(16399))
    );
    // Nonsense in every field still reads as a failure, just without details.
    assert_eq!(
        route_failure(
            PAY_DESTINATION_PERM_FAIL,
            Some(json!({"erring_channel": 5, "erring_node": "zz", "failcode": -1}))
        )
        .await,
        PayOutcome::Failed {
            failing_channel: None,
            failing_node: None,
            code: None,
            message: "failed".into(),
        }
    );
    let bare = route_failure(PAY_UNPARSEABLE_ONION, None).await;
    assert!(matches!(
        bare,
        PayOutcome::Failed {
            failing_channel: None,
            code: None,
            ..
        }
    ));
}

// ---- errors ---------------------------------------------------------------------------

#[tokio::test]
async fn lightningd_errors_are_rejected_with_code_and_message() {
    let ld = serve(vec![(
        "getinfo",
        error(-32601, "Unknown command 'getinfo'", None),
    )]);
    match cln(&ld).info().await.unwrap_err() {
        NodeError::Rejected {
            method,
            code,
            message,
        } => {
            assert_eq!((method, code), ("getinfo", Some(-32601)));
            assert_eq!(message, "Unknown command 'getinfo'");
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
}

#[tokio::test]
async fn no_socket_is_a_transport_failure() {
    let dir = tempfile::tempdir().unwrap();
    let err = ClnNode::new(dir.path().join("lightning-rpc"))
        .info()
        .await
        .unwrap_err();
    assert_transport(&err, "getinfo");
}

#[tokio::test]
async fn a_closed_connection_is_a_transport_failure() {
    let ld = serve(vec![("listpeerchannels", Scripted::Hangup)]);
    let err = cln(&ld).channels().await.unwrap_err();
    assert_transport(&err, "listpeerchannels");
}

#[tokio::test]
async fn a_closed_connection_mid_payment_is_a_transport_failure() {
    let hash = hash_of([9; 32]);
    let ld = serve(vec![
        ("sendpay", Scripted::Result(sendpay_pending(hash))),
        ("waitsendpay", Scripted::Hangup),
    ]);
    let err = cln(&ld).pay_route(&route(), hash, 60).await.unwrap_err();
    assert_transport(&err, "waitsendpay");
}

/// cln-rpc's codec drops the reason when a frame is not JSON, leaving it
/// indistinguishable from a read error: the stream is unusable either way.
#[tokio::test]
async fn bytes_that_are_not_json_are_a_transport_failure() {
    let ld = serve(vec![("getinfo", Scripted::Bytes("this is not JSON".into()))]);
    let err = cln(&ld).info().await.unwrap_err();
    assert_transport(&err, "getinfo");
}

#[tokio::test]
async fn json_that_is_no_json_rpc_answer_is_malformed() {
    let ld = serve(vec![(
        "getinfo",
        Scripted::Envelope(json!({"jsonrpc": "2.0", "id": 1})),
    )]);
    let err = cln(&ld).info().await.unwrap_err();
    assert_malformed(&err, "getinfo");
}

#[tokio::test]
async fn answers_missing_or_mangling_fields_are_malformed() {
    let mut no_id = getinfo();
    no_id.as_object_mut().unwrap().remove("id");
    let ld = serve(vec![("getinfo", Scripted::Unchecked(no_id))]);
    let err = cln(&ld).info().await.unwrap_err();
    assert!(
        matches!(&err, NodeError::Malformed { method: "getinfo", message } if message.contains("`id`")),
        "{err}"
    );

    let mut bad_graph = listchannels();
    bad_graph["channels"][0]["short_channel_id"] = json!("116:1:1");
    bad_graph["channels"][1]["source"] = json!("02");
    let ld = serve(vec![("listchannels", Scripted::Unchecked(bad_graph))]);
    let err = cln(&ld).graph().await.unwrap_err();
    assert_malformed(&err, "listchannels");

    let ld = serve(vec![(
        "listpeerchannels",
        Scripted::Unchecked(json!({"channels": [{"state": "NOT_A_STATE"}]})),
    )]);
    let err = cln(&ld).channels().await.unwrap_err();
    assert_malformed(&err, "listpeerchannels");

    let ld = serve(vec![(
        "listinvoices",
        Scripted::Unchecked(json!(["not", "an", "object"])),
    )]);
    let err = cln(&ld).invoices().await.unwrap_err();
    assert_malformed(&err, "listinvoices");
}

#[tokio::test]
async fn an_open_channel_without_balances_is_malformed() {
    let mut channel = normal_channel(L2, "116x1x1", 1, 2);
    channel.as_object_mut().unwrap().remove("to_us_msat");
    let listing = json!({"channels": [channel]});
    let ld = serve(vec![("listpeerchannels", Scripted::Result(listing))]);
    let err = cln(&ld).channels().await.unwrap_err();
    assert!(
        matches!(&err, NodeError::Malformed { method: "listpeerchannels", message }
            if message.contains("to_us_msat") && message.contains("116x1x1")),
        "{err}"
    );
}

// ---- the schemas' own examples ------------------------------------------------------

/// The v26.06 schema's example answers for `method`.
fn examples(method: &str) -> Vec<Value> {
    let path = schemas().root().join(format!("{method}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).expect("schema file is JSON");
    let examples: Vec<Value> = schema["examples"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["response"].clone())
        .collect();
    assert!(!examples.is_empty(), "{method} has no examples");
    examples
}

/// Every v26.06 example answer for the methods we use decodes and maps.
#[tokio::test]
async fn schema_examples_decode_and_map() {
    for info in examples("getinfo") {
        let ld = serve(vec![("getinfo", Scripted::Result(info))]);
        assert_eq!(cln(&ld).info().await.unwrap().id, id(L1));
    }
    for listing in examples("listpeerchannels") {
        let ld = serve(vec![("listpeerchannels", Scripted::Result(listing))]);
        for c in cln(&ld).channels().await.unwrap() {
            assert!(c.local <= c.capacity, "{c:?}");
        }
    }
    for listing in examples("listchannels") {
        let ld = serve(vec![("listchannels", Scripted::Result(listing))]);
        assert_eq!(cln(&ld).graph().await.unwrap()[0].scid, sc("116x1x1"));
    }
    for listing in examples("listforwards") {
        let ld = serve(vec![("listforwards", Scripted::Result(listing))]);
        assert_eq!(
            cln(&ld).forwards(0).await.unwrap()[0].status,
            ForwardStatus::Settled
        );
    }
    for listing in examples("listinvoices") {
        let ld = serve(vec![("listinvoices", Scripted::Result(listing))]);
        assert_eq!(cln(&ld).invoices().await.unwrap()[0].status, "paid");
    }
    for changed in examples("setchannel") {
        let scid = sc(changed["channels"][0]["short_channel_id"].as_str().unwrap());
        let ld = serve(vec![("setchannel", Scripted::Result(changed))]);
        let fee = FeeUpdate {
            base: Msat(1),
            ppm: 1,
        };
        cln(&ld).set_fee(scid, fee).await.unwrap();
    }
    // sendpay's answer decodes: a complete one settles (its preimage matching its hash),
    // a pending one goes on to waitsendpay.
    for sent in examples("sendpay") {
        let hash: PaymentHash = sent["payment_hash"].as_str().unwrap().parse().unwrap();
        let complete = sent["status"] == "complete";
        let ld = serve(vec![
            ("sendpay", Scripted::Result(sent)),
            ("waitsendpay", error(200, "Timed out", None)),
        ]);
        let got = cln(&ld).pay_route(&route(), hash, 0).await;
        if complete {
            assert!(matches!(got, Ok(PayOutcome::Success { .. })), "{got:?}");
        } else {
            assert!(matches!(got, Ok(PayOutcome::InFlight { .. })), "{got:?}");
        }
    }
    for done in examples("waitsendpay") {
        let hash: PaymentHash = done["payment_hash"].as_str().unwrap().parse().unwrap();
        let ld = serve(vec![
            ("sendpay", Scripted::Result(sendpay_pending(hash))),
            ("waitsendpay", Scripted::Result(done)),
        ]);
        let got = cln(&ld).pay_route(&route(), hash, 60).await;
        assert!(matches!(got, Ok(PayOutcome::Success { .. })), "{got:?}");
    }
    for signed in examples("signinvoice") {
        let bolt11 = signed["bolt11"].as_str().unwrap().to_string();
        let ld = serve(vec![("signinvoice", Scripted::Result(signed))]);
        assert_eq!(cln(&ld).sign_invoice("lnbcrt1unsigned").await.unwrap(), bolt11);
    }
}
