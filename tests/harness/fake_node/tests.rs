use super::rpc::parse_msat;
use super::*;

fn call(node: &FakeNode, method: &str, params: Value) -> Value {
    node.handle_request(
        &json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params}),
        0,
    )
}

fn populated() -> FakeNode {
    let node = FakeNode::new();
    let mut ch = Channel::new(&pubkey(1), "103x1x0", 1_000_000_000, 600_000_000);
    ch.htlcs.push(Htlc::incoming(0, 5_000, 200, &hash_hex("h0")));
    ch.htlcs.push(Htlc::outgoing(3, 7_000, 190, &hash_hex("h1")));
    node.add_channel(ch);
    let mut pending = Channel::new(&pubkey(2), "104x1x0", 500_000_000, 0);
    pending.state = "CHANNELD_AWAITING_LOCKIN".into();
    pending.short_channel_id = None;
    pending.peer_connected = false;
    pending.opener = "remote".into();
    node.add_channel(pending);
    node.add_gossip_channel(&pubkey(0), &pubkey(1), "103x1x0", 1_000_000_000);
    node.add_gossip_node(&pubkey(1), Some("PEER1"));
    node.add_gossip_node(&pubkey(3), None);
    node.add_forward(Forward::settled("103x1x0", "105x1x0", 1_001_010, 1_000_000));
    let mut failed = Forward::settled("103x1x0", "105x1x0", 2_000, 1_000);
    failed.status = ForwardStatus::LocalFailed;
    failed.failcode = Some(16399);
    failed.failreason = Some("WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS".into());
    node.add_forward(failed);
    let mut offered = Forward::settled("103x1x0", "105x1x0", 3_000, 2_000);
    offered.status = ForwardStatus::Offered;
    offered.resolved_time = None;
    node.add_forward(offered);
    node.add_invoice(Invoice::unpaid("a", Some(10_000)));
    let mut paid = Invoice::unpaid("b", None);
    paid.status = InvoiceStatus::Paid;
    paid.amount_received_msat = Some(5000);
    node.add_invoice(paid);
    node
}

#[test]
fn builtin_answers_match_schemas() {
    let node = populated();
    node.with(|s| {
        s.extra_configs.insert(
            "ballast-db-path".into(),
            json!({"value_str": "ballast", "source": "default", "plugin": "/x/ballast"}),
        )
    });
    for (method, params) in [
        ("getinfo", json!({})),
        ("listpeerchannels", json!({})),
        ("listpeerchannels", json!([pubkey(1)])),
        ("listpeers", json!({})),
        ("listfunds", json!({})),
        ("listchannels", json!({})),
        ("listchannels", json!({"source": pubkey(0)})),
        ("listnodes", json!({})),
        ("listforwards", json!({})),
        ("listforwards", json!({"status": "settled"})),
        ("listinvoices", json!({})),
        ("listinvoices", json!({"label": "b"})),
        ("feerates", json!({"style": "perkw"})),
        ("feerates", json!(["perkb"])),
        ("listconfigs", json!({})),
        ("listconfigs", json!({"config": "ballast-db-path"})),
        ("waitblockheight", json!({"blockheight": 100})),
        (
            "setchannel",
            json!({"id": "103x1x0", "feebase": "2000msat", "feeppm": 50}),
        ),
    ] {
        let resp = call(&node, method, params.clone());
        assert!(resp.get("result").is_some(), "{method} {params}: {resp}");
    }
    assert_eq!(node.take_violations(), Vec::<String>::new());
    assert_eq!(node.calls().len(), 18);
}

#[test]
fn setchannel_records_and_applies() {
    let node = populated();
    let r = call(
        &node,
        "setchannel",
        json!(["103x1x0", 2000, 55, null, "900000000msat"]),
    );
    assert_eq!(r["result"]["channels"][0]["fee_base_msat"], 2000, "{r}");
    let ch = node.with(|s| s.channels[0].clone());
    assert_eq!((ch.fee_base_msat, ch.fee_proportional_millionths), (2000, 55));
    assert_eq!(ch.htlc_maximum_msat, 900_000_000);
    let lpc = call(&node, "listpeerchannels", json!({"short_channel_id": "103x1x0"}));
    assert_eq!(
        lpc["result"]["channels"][0]["updates"]["local"]["fee_proportional_millionths"],
        55
    );
    let err = call(&node, "setchannel", json!({"id": "999x1x1"}));
    assert_eq!(err["error"]["code"], INVALID_PARAMS);
    assert_eq!(node.calls_to("setchannel").len(), 2);
    assert!(node.take_violations().is_empty());
}

#[test]
fn invalid_traffic_is_flagged() {
    let node = FakeNode::new();
    let r = call(&node, "nosuchmethod", json!({}));
    assert_eq!(r["error"]["code"], METHOD_NOT_FOUND);
    assert!(
        node.take_violations().is_empty(),
        "unknown methods are legitimate"
    );

    let r = call(&node, "listpeerchannels", json!({"id": "nope"}));
    assert_eq!(r["error"]["code"], INVALID_PARAMS);
    let v = node.take_violations();
    assert!(v.len() == 1 && v[0].contains("/id"), "{v:?}");

    node.handle_request(&json!({"id": 1, "method": "getinfo"}), 0);
    assert!(node.take_violations()[0].contains("jsonrpc"));

    node.script_once("getinfo", Scripted::Result(json!({"id": "garbage"})));
    let r = call(&node, "getinfo", json!({}));
    assert_eq!(r["result"]["id"], "garbage", "scripted answers are still sent");
    let v = node.take_violations();
    assert!(
        v.iter()
            .any(|m| m.contains("getinfo") && m.contains("our own answer")),
        "{v:?}"
    );
    // `once` scripts are consumed.
    call(&node, "getinfo", json!({}));
    assert!(node.take_violations().is_empty());
}

#[test]
fn handlers_and_scripts() {
    let node = FakeNode::new();
    node.set_handler("signinvoice", |p| {
        Ok(json!({"bolt11": format!("signed:{}", p["invstring"].as_str().unwrap())}))
    });
    let r = call(&node, "signinvoice", json!(["lnbcrt1x"]));
    assert_eq!(r["result"]["bolt11"], "signed:lnbcrt1x");
    node.script_always("signinvoice", Scripted::Error(JsonRpcError::new(-1, "nope")));
    assert_eq!(
        call(&node, "signinvoice", json!({"invstring": "x"}))["error"]["message"],
        "nope"
    );
    assert_eq!(
        call(&node, "signinvoice", json!({"invstring": "x"}))["error"]["message"],
        "nope"
    );
    node.clear_script("signinvoice");
    // Back to the handler.
    assert_eq!(
        call(&node, "signinvoice", json!({"invstring": "x"}))["result"]["bolt11"],
        "signed:x"
    );
    assert!(node.take_violations().is_empty());
}

#[test]
fn signinvoice_resigns_as_the_node() {
    use bitcoin::hashes::{sha256, Hash};
    use bitcoin::secp256k1::{Secp256k1, SecretKey};
    use lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret, SignedRawBolt11Invoice};
    let throwaway = SecretKey::from_slice(&[7u8; 32]).unwrap();
    let unsigned = InvoiceBuilder::new(Currency::Regtest)
        .description("test".into())
        .payment_hash(sha256::Hash::hash(b"p"))
        .payment_secret(PaymentSecret([1; 32]))
        .duration_since_epoch(Duration::from_secs(now_secs()))
        .min_final_cltv_expiry_delta(80)
        .amount_milli_satoshis(5000)
        .build_raw()
        .unwrap()
        .sign::<_, ()>(|m| Ok(Secp256k1::new().sign_ecdsa_recoverable(m, &throwaway)))
        .unwrap()
        .to_string();
    let node = FakeNode::new();
    let r = call(&node, "signinvoice", json!({ "invstring": unsigned }));
    let bolt11 = r["result"]["bolt11"].as_str().unwrap_or_else(|| panic!("{r}"));
    let signed: SignedRawBolt11Invoice = bolt11.parse().unwrap();
    assert!(signed.check_signature());
    let payee = signed.recover_payee_pub_key().unwrap();
    assert_eq!(payee.0.to_string(), node.id());
    assert_ne!(bolt11, unsigned);

    node.with(|s| s.network = "bitcoin".into());
    let r = call(&node, "signinvoice", json!({ "invstring": unsigned }));
    assert!(r["error"]["message"].as_str().unwrap().contains("network"), "{r}");
    let r = call(&node, "signinvoice", json!({"invstring": "lnbcrt1garbage"}));
    assert_eq!(r["error"]["code"], INVALID_PARAMS);
    assert!(node.take_violations().is_empty());
}

#[test]
fn amounts_parse_like_lightningd() {
    assert_eq!(parse_msat(&json!(5)).unwrap(), 5);
    assert_eq!(parse_msat(&json!("5msat")).unwrap(), 5);
    assert_eq!(parse_msat(&json!("5sat")).unwrap(), 5000);
    assert_eq!(parse_msat(&json!("0.001btc")).unwrap(), 100_000_000);
    assert!(parse_msat(&json!("x")).is_err());
}

/// A small network: us -A- (A-E) -E- (E-B) -B- us, each channel 1M sat.
fn simulated() -> (FakeNode, String, String, String) {
    let node = FakeNode::new();
    let (a, b, e) = (pubkey(1), pubkey(2), pubkey(5));
    node.add_public_channel(Channel::new(&a, "100x1x0", 1_000_000_000, 900_000_000));
    node.add_public_channel(Channel::new(&b, "101x1x0", 1_000_000_000, 100_000_000));
    node.add_network_channel(&a, &e, "200x1x0", 1_000_000_000, 600_000_000);
    node.add_network_channel(&e, &b, "201x1x0", 1_000_000_000, 50_000_000);
    (node, a, b, e)
}

/// The circle us → A → E → B → us delivering `amount`, with exact fees (1 sat +
/// 10 ppm everywhere) and CLTV deltas (6 on gossip, 34 on our channels).
fn circle(a: &str, b: &str, e: &str, us: &str, amount: u64) -> Value {
    let fee = |x: u64| 1000 + x * 10 / 1_000_000;
    let at_b = amount + fee(amount); // B forwards to us
    let at_e = at_b + fee(at_b); // E forwards to B
    let at_a = at_e + fee(at_e); // A forwards to E
    json!([
        {"id": a, "channel": "100x1x0", "amount_msat": at_a, "delay": 18 + 34 + 6 + 6},
        {"id": e, "channel": "200x1x0", "amount_msat": at_e, "delay": 18 + 34 + 6},
        {"id": b, "channel": "201x1x0", "amount_msat": at_b, "delay": 18 + 34},
        {"id": us, "channel": "101x1x0", "amount_msat": amount, "delay": 18},
    ])
}

#[test]
fn sendpay_routes_hop_by_hop_and_moves_balances() {
    let (node, a, b, e) = simulated();
    let us = node.id();
    let preimage = hash_hex("rebalance preimage");
    let hash = payment_hash_of(&preimage);
    let key = preimage.clone();
    node.set_htlc_hook(move |p| {
        assert!(p["htlc"]["cltv_expiry_relative"].as_u64().unwrap() >= 18, "{p}");
        Ok(json!({"result": "resolve", "payment_key": key}))
    });
    // listchannels shows our channels with the policy listpeerchannels has.
    let lc = call(&node, "listchannels", json!({"short_channel_id": "101x1x0"}));
    let from_b = lc["result"]["channels"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["source"] == b.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (from_b["delay"].as_u64(), from_b["fee_per_millionth"].as_u64()),
        (Some(34), Some(10))
    );

    let route = circle(&a, &b, &e, &us, 40_000_000);
    let sent = route[0]["amount_msat"].as_u64().unwrap();
    let r = call(
        &node,
        "sendpay",
        json!({"route": route, "payment_hash": hash, "amount_msat": 40_000_000}),
    );
    assert_eq!(r["result"]["status"], "pending", "{r}");
    let r = call(&node, "waitsendpay", json!({"payment_hash": hash, "timeout": 10}));
    assert_eq!(r["result"]["status"], "complete", "{r}");
    assert_eq!(r["result"]["payment_preimage"], preimage.as_str());
    assert_eq!(node.channel("100x1x0").unwrap().to_us_msat, 900_000_000 - sent);
    assert_eq!(node.channel("101x1x0").unwrap().to_us_msat, 140_000_000);
    assert!(node.channel("100x1x0").unwrap().htlcs.is_empty());
    let at_e = route[1]["amount_msat"].as_u64().unwrap();
    assert_eq!(node.liquidity("200x1x0", &a), Some(600_000_000 - at_e));
    assert_eq!(node.liquidity("200x1x0", &e), Some(400_000_000 + at_e));
    let at_b = route[2]["amount_msat"].as_u64().unwrap();
    assert_eq!(node.liquidity("201x1x0", &e), Some(50_000_000 - at_b));
    let pay = &node.payments()[0];
    assert_eq!(
        (pay.status, pay.fee_msat()),
        (PaymentStatus::Complete, sent - 40_000_000)
    );
    // Paid before: sendpay hands back the preimage.
    let again = call(
        &node,
        "sendpay",
        json!({"route": route, "payment_hash": hash, "amount_msat": 40_000_000}),
    );
    assert_eq!(again["result"]["status"], "complete", "{again}");

    // E has only ~10M left towards B: the payment fails there, and nothing moves.
    let before = (
        node.channel("100x1x0").unwrap().to_us_msat,
        node.liquidity("200x1x0", &a),
    );
    let hash2 = hash_hex("no preimage known");
    let r = call(
        &node,
        "sendpay",
        json!({"route": circle(&a, &b, &e, &us, 20_000_000), "payment_hash": hash2, "amount_msat": 20_000_000}),
    );
    assert_eq!(r["result"]["status"], "pending", "{r}");
    let r = call(&node, "waitsendpay", json!([hash2, 10]));
    let err = &r["error"];
    assert_eq!(err["code"], PAY_TRY_OTHER_ROUTE, "{r}");
    assert_eq!(err["data"]["erring_index"], 2);
    assert_eq!(err["data"]["erring_node"], e.as_str());
    assert_eq!(err["data"]["erring_channel"], "201x1x0");
    assert_eq!(err["data"]["failcode"], failcode::TEMPORARY_CHANNEL_FAILURE);
    assert_eq!(err["data"]["failcodename"], "WIRE_TEMPORARY_CHANNEL_FAILURE");
    let after = (
        node.channel("100x1x0").unwrap().to_us_msat,
        node.liquidity("200x1x0", &a),
    );
    assert_eq!(before, after);

    // Our own channel cannot send it: sendpay itself fails, at index 0.
    let r = call(
        &node,
        "sendpay",
        json!({"route": circle(&a, &b, &e, &us, 950_000_000), "payment_hash": hash_hex("big"), "amount_msat": 950_000_000}),
    );
    assert_eq!(r["error"]["code"], PAY_TRY_OTHER_ROUTE, "{r}");
    assert_eq!(r["error"]["data"]["erring_index"], 0);
    assert_eq!(r["error"]["data"]["erring_node"], us.as_str());
    assert_eq!(r["error"]["data"]["erring_channel"], "100x1x0");

    // A fee one msat short is refused by the node that charges it.
    let mut short = circle(&a, &b, &e, &us, 1_000_000);
    short[0]["amount_msat"] = json!(short[0]["amount_msat"].as_u64().unwrap() - 1);
    let h = hash_hex("short");
    call(
        &node,
        "sendpay",
        json!({"route": short, "payment_hash": h, "amount_msat": 1_000_000}),
    );
    let r = call(&node, "waitsendpay", json!({"payment_hash": h}));
    assert_eq!(r["error"]["data"]["failcode"], failcode::FEE_INSUFFICIENT, "{r}");
    assert_eq!(r["error"]["data"]["erring_node"], a.as_str());

    // A self-payment needs amount_msat; an unknown hash has nothing to wait for.
    let r = call(
        &node,
        "sendpay",
        json!({"route": circle(&a, &b, &e, &us, 1_000_000), "payment_hash": hash_hex("x")}),
    );
    assert_eq!(r["error"]["code"], INVALID_PARAMS, "{r}");
    let r = call(&node, "waitsendpay", json!({"payment_hash": hash_hex("never")}));
    assert_eq!(r["error"]["code"], PAY_NO_SUCH_PAYMENT, "{r}");
    assert_eq!(node.take_violations(), Vec::<String>::new());
}

#[test]
fn destination_refusal_gives_the_balances_back() {
    let (node, a, b, e) = simulated();
    let us = node.id();
    node.set_htlc_hook(|_| Ok(json!({"result": "fail", "failure_message": "2002"})));
    let h = hash_hex("refused");
    let route = circle(&a, &b, &e, &us, 30_000_000);
    call(
        &node,
        "sendpay",
        json!({"route": route, "payment_hash": h, "amount_msat": 30_000_000}),
    );
    let r = call(&node, "waitsendpay", json!({"payment_hash": h, "timeout": 10}));
    assert_eq!(r["error"]["code"], PAY_DESTINATION_PERM_FAIL, "{r}");
    assert_eq!(r["error"]["data"]["erring_index"], 4);
    assert_eq!(r["error"]["data"]["erring_node"], us.as_str());
    assert_eq!(r["error"]["data"]["failcode"], failcode::TEMPORARY_NODE_FAILURE);
    assert_eq!(node.channel("100x1x0").unwrap().to_us_msat, 900_000_000);
    assert_eq!(node.channel("101x1x0").unwrap().to_us_msat, 100_000_000);
    assert_eq!(node.liquidity("200x1x0", &a), Some(600_000_000));
    assert!(node.channel("101x1x0").unwrap().htlcs.is_empty());

    // `continue`: lightningd finds no invoice for the hash.
    node.set_htlc_hook(|_| Ok(json!({"result": "continue"})));
    let h = hash_hex("continued");
    call(
        &node,
        "sendpay",
        json!({"route": route, "payment_hash": h, "amount_msat": 30_000_000}),
    );
    let r = call(&node, "waitsendpay", json!({"payment_hash": h, "timeout": 10}));
    assert_eq!(
        r["error"]["data"]["failcode"],
        failcode::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS,
        "{r}"
    );
    assert_eq!(node.take_violations(), Vec::<String>::new());

    // No hook attached: a violation, and the payment fails.
    node.clear_htlc_hook();
    let h = hash_hex("nobody");
    call(
        &node,
        "sendpay",
        json!({"route": route, "payment_hash": h, "amount_msat": 30_000_000}),
    );
    let r = call(&node, "waitsendpay", json!({"payment_hash": h, "timeout": 10}));
    assert_eq!(r["error"]["code"], PAY_DESTINATION_PERM_FAIL, "{r}");
    let v = node.take_violations();
    assert!(v.len() == 1 && v[0].contains("no htlc_accepted hook"), "{v:?}");
}

#[test]
fn pubkeys_are_curve_points() {
    for i in 0..PUBKEYS.len() {
        let k = pubkey(i);
        k.parse::<cln_rpc::primitives::PublicKey>()
            .unwrap_or_else(|e| panic!("{k}: {e}"));
    }
}

#[test]
fn socket_serves_streamed_requests() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lightning-rpc");
    let node = FakeNode::new();
    let server = RpcServer::start(node.clone(), &path).unwrap();
    let mut a = UnixStream::connect(&path).unwrap();
    let b = UnixStream::connect(&path).unwrap();
    // Two requests in one write, no delimiter, plus one split in two
    // writes: the server must not depend on framing.
    a.write_all(br#"{"jsonrpc":"2.0","id":1,"method":"getinfo","params":{}}{"jsonrpc":"2.0","id":"x/2","method":"nope"}"#)
        .unwrap();
    a.write_all(br#"{"jsonrpc":"2.0","id":3,"met"#).unwrap();
    a.flush().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    a.write_all(br#"hod":"getinfo"}"#).unwrap();
    let mut b_w = b.try_clone().unwrap();
    b_w.write_all(br#"{"jsonrpc":"2.0","id":9,"method":"getinfo","params":[]}"#)
        .unwrap();
    let read_n = |s: UnixStream, n: usize| -> Vec<Value> {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = Vec::new();
        let mut out = Vec::new();
        let mut s = s;
        while out.len() < n {
            let mut chunk = [0u8; 4096];
            let k = std::io::Read::read(&mut s, &mut chunk).unwrap();
            assert!(k > 0, "server closed early");
            buf.extend_from_slice(&chunk[..k]);
            while let Some(pos) = buf.windows(2).position(|w| w == b"\n\n") {
                out.push(serde_json::from_slice(&buf[..pos]).unwrap());
                buf.drain(..pos + 2);
            }
        }
        out
    };
    let ra = read_n(a, 3);
    assert_eq!(ra[0]["id"], 1);
    assert_eq!(ra[0]["result"]["id"], pubkey(0));
    assert_eq!(ra[1]["id"], "x/2");
    assert_eq!(ra[1]["error"]["code"], METHOD_NOT_FOUND);
    assert_eq!(ra[2]["id"], 3);
    let rb = read_n(b, 1);
    assert_eq!(rb[0]["id"], 9);
    let calls = node.calls();
    assert_eq!(calls.len(), 4);
    assert!(calls.iter().any(|c| c.connection != calls[0].connection));
    drop(server);
    assert!(!path.exists(), "socket file must be removed");
    assert!(node.take_violations().is_empty());
}
