//! Payments over the simulated network: `sendpay` walks the route hop by hop, `waitsendpay`
//! reports how it ended.

use super::rpc::parse_msat;
use super::*;

// ---- Simulated network ------------------------------------------------------------------
//
// Gossip channels carry per-direction liquidity (`GossipChannel::liquidity_msat`); our own
// channels keep theirs in `Channel` (`spendable_msat` out, `receivable_msat` in), and their
// gossip entries are listed with the policy `Channel` holds, so `listchannels` and
// `listpeerchannels` never disagree. `sendpay` walks the route hop by hop like the
// forwarding nodes would; an HTLC that reaches our node goes to the plugin's
// `htlc_accepted` hook through [`FakeNode::set_htlc_hook`] (see [`deliver_htlcs`]), and
// its answer settles or fails the payment, moving the balances along the route.

/// lightningd's error codes for payments.
pub const PAY_IN_PROGRESS: i64 = 200;

pub const PAY_DESTINATION_PERM_FAIL: i64 = 203;

pub const PAY_TRY_OTHER_ROUTE: i64 = 204;

pub const PAY_NO_SUCH_PAYMENT: i64 = 208;

/// BOLT 4 failure codes the simulation produces.
pub mod failcode {
    pub const TEMPORARY_CHANNEL_FAILURE: u32 = 0x1007;
    pub const AMOUNT_BELOW_MINIMUM: u32 = 0x100B;
    pub const FEE_INSUFFICIENT: u32 = 0x100C;
    pub const INCORRECT_CLTV_EXPIRY: u32 = 0x100D;
    pub const CHANNEL_DISABLED: u32 = 0x1014;
    pub const TEMPORARY_NODE_FAILURE: u32 = 0x2002;
    pub const UNKNOWN_NEXT_PEER: u32 = 0x400A;
    pub const INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS: u32 = 0x400F;

    /// lightningd's `failcodename`.
    pub fn name(code: u32) -> String {
        match code {
            TEMPORARY_CHANNEL_FAILURE => "WIRE_TEMPORARY_CHANNEL_FAILURE".into(),
            AMOUNT_BELOW_MINIMUM => "WIRE_AMOUNT_BELOW_MINIMUM".into(),
            FEE_INSUFFICIENT => "WIRE_FEE_INSUFFICIENT".into(),
            INCORRECT_CLTV_EXPIRY => "WIRE_INCORRECT_CLTV_EXPIRY".into(),
            CHANNEL_DISABLED => "WIRE_CHANNEL_DISABLED".into(),
            TEMPORARY_NODE_FAILURE => "WIRE_TEMPORARY_NODE_FAILURE".into(),
            UNKNOWN_NEXT_PEER => "WIRE_UNKNOWN_NEXT_PEER".into(),
            INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS => "WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS".into(),
            other => format!("UNKNOWN_{other:#06x}"),
        }
    }
}

/// One hop of a `sendpay` route: the HTLC offered to `id` over `channel`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SendpayHop {
    pub id: String,
    pub channel: String,
    pub amount_msat: u64,
    /// CLTV relative to the block height (lightningd adds `blockheight + 1`).
    pub delay: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    Pending,
    Complete,
    Failed,
}

/// Where and why a payment failed: lightningd's routing failure object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteFailure {
    /// 0 for our node, `i` for the node at the end of hop `i - 1`.
    pub erring_index: usize,
    pub erring_node: String,
    pub erring_channel: String,
    pub erring_direction: u32,
    pub failcode: u32,
    /// [`PAY_TRY_OTHER_ROUTE`] along the route, [`PAY_DESTINATION_PERM_FAIL`] at the end.
    pub code: i64,
    pub detail: String,
}

/// One `sendpay` attempt and what became of it.
#[derive(Clone, Debug)]
pub struct Payment {
    pub created_index: u64,
    pub updated_index: Option<u64>,
    pub payment_hash: String,
    pub route: Vec<SendpayHop>,
    /// Delivered to the destination.
    pub amount_msat: u64,
    /// Left our node: the first hop's amount.
    pub amount_sent_msat: u64,
    pub destination: String,
    pub created_at: u64,
    pub completed_at: Option<u64>,
    pub status: PaymentStatus,
    pub preimage: Option<String>,
    pub failure: Option<RouteFailure>,
    /// The `htlc_accepted` payload sent to the plugin, if the HTLC reached us.
    pub hook_payload: Option<Value>,
    /// The hook's answer, if any.
    pub hook_answer: Option<Value>,
    /// While in flight: the HTLC id on each hop that is one of our channels.
    htlc_ids: Vec<Option<u64>>,
    locked: bool,
}

impl Payment {
    /// What the route cost: sent minus delivered.
    pub fn fee_msat(&self) -> u64 {
        self.amount_sent_msat.saturating_sub(self.amount_msat)
    }

    pub fn scids(&self) -> Vec<String> {
        self.route.iter().map(|h| h.channel.clone()).collect()
    }

    pub(super) fn fields(&self) -> Value {
        let mut v = json!({
            "created_index": self.created_index,
            "id": self.created_index,
            "payment_hash": self.payment_hash,
            "groupid": 1,
            "destination": self.destination,
            "amount_msat": self.amount_msat,
            "amount_sent_msat": self.amount_sent_msat,
            "created_at": self.created_at,
        });
        if let Some(u) = self.updated_index {
            v["updated_index"] = json!(u);
        }
        v
    }

    /// `sendpay`'s answer, or `waitsendpay`'s for a complete payment.
    pub(super) fn to_json(&self) -> Value {
        let mut v = self.fields();
        match self.status {
            PaymentStatus::Complete => {
                v["status"] = json!("complete");
                v["completed_at"] = json!(self.completed_at.unwrap_or(self.created_at));
                v["payment_preimage"] = json!(self.preimage);
            }
            _ => {
                v["status"] = json!("pending");
                v["message"] = json!("Monitor status with listpays or waitsendpay");
            }
        }
        v
    }

    /// lightningd's error for a failed payment, the routing failure object as `data`.
    pub(super) fn failure_error(&self) -> JsonRpcError {
        let f = self.failure.clone().unwrap_or_else(|| RouteFailure {
            erring_index: 0,
            erring_node: String::new(),
            erring_channel: String::new(),
            erring_direction: 0,
            failcode: failcode::TEMPORARY_NODE_FAILURE,
            code: -1,
            detail: "failed".into(),
        });
        let name = failcode::name(f.failcode);
        let mut data = self.fields();
        data["status"] = json!("failed");
        data["erring_index"] = json!(f.erring_index);
        data["failcode"] = json!(f.failcode);
        data["failcodename"] = json!(name);
        data["erring_node"] = json!(f.erring_node);
        data["erring_channel"] = json!(f.erring_channel);
        data["erring_direction"] = json!(f.erring_direction);
        data["raw_message"] = json!(format!("{:04x}", f.failcode));
        JsonRpcError {
            code: f.code,
            message: format!("failed: {name} ({})", f.detail),
            data: Some(data),
        }
    }
}

/// BOLT 4 final-hop payload: `amt_to_forward` (2), `outgoing_cltv_value` (4) and, with a
/// secret, `payment_data` (8).
pub(super) fn final_payload(amount: u64, cltv: u32, secret_total: Option<(&str, u64)>) -> String {
    pub(super) fn tu(v: u64) -> Vec<u8> {
        let b = v.to_be_bytes();
        let skip = b.iter().take_while(|x| **x == 0).count();
        b[skip..].to_vec()
    }
    let mut out = Vec::new();
    let mut record = |t: u8, value: Vec<u8>| {
        out.push(t);
        out.push(value.len() as u8);
        out.extend(value);
    };
    record(2, tu(amount));
    record(4, tu(u64::from(cltv)));
    if let Some((secret, total)) = secret_total {
        let mut v = hex::decode(secret).unwrap_or_default();
        v.extend(tu(total));
        record(8, v);
    }
    hex::encode(out)
}

pub(super) fn parse_hop(v: &Value) -> Result<SendpayHop, JsonRpcError> {
    let bad = |m: &str| JsonRpcError::new(INVALID_PARAMS, format!("route: {m}: {v}"));
    let id = v
        .get("id")
        .or_else(|| v.get("node_id_out"))
        .and_then(Value::as_str)
        .ok_or_else(|| bad("hop without id"))?;
    let channel = match (v.get("channel"), v.get("short_channel_id_dir")) {
        (Some(c), _) => c.as_str().map(str::to_string),
        (None, Some(d)) => d.as_str().and_then(|d| d.split('/').next()).map(str::to_string),
        (None, None) => None,
    }
    .ok_or_else(|| bad("hop without channel"))?;
    let amount = v
        .get("amount_msat")
        .or_else(|| v.get("amount_out_msat"))
        .ok_or_else(|| bad("hop without amount_msat"))
        .and_then(parse_msat)?;
    let delay = v
        .get("delay")
        .or_else(|| v.get("cltv_out"))
        .and_then(Value::as_u64)
        .and_then(|d| u32::try_from(d).ok())
        .ok_or_else(|| bad("hop without delay"))?;
    Ok(SendpayHop {
        id: id.to_string(),
        channel,
        amount_msat: amount,
        delay,
    })
}

/// Checks every hop as its sending node would, in route order: the first failure wins.
pub(super) fn walk(s: &NodeState, route: &[SendpayHop]) -> Result<(), RouteFailure> {
    for (i, hop) in route.iter().enumerate() {
        let from = if i == 0 {
            s.id.as_str()
        } else {
            route[i - 1].id.as_str()
        };
        let fail = |code: u32, detail: &str| RouteFailure {
            erring_index: i,
            erring_node: from.to_string(),
            erring_channel: hop.channel.clone(),
            erring_direction: u32::from(from > hop.id.as_str()),
            failcode: code,
            code: PAY_TRY_OTHER_ROUTE,
            detail: if i == 0 {
                format!("First peer not ready: {detail}")
            } else {
                format!("reply from remote: {detail}")
            },
        };
        let Some(d) = directed(s, &hop.channel, from, &hop.id) else {
            return Err(fail(failcode::UNKNOWN_NEXT_PEER, "no such channel to that node"));
        };
        if !d.active {
            return Err(fail(failcode::CHANNEL_DISABLED, "channel disabled"));
        }
        if i > 0 {
            let prev = &route[i - 1];
            let fee = d.base + (u128::from(hop.amount_msat) * u128::from(d.ppm) / 1_000_000) as u64;
            if prev.amount_msat < hop.amount_msat.saturating_add(fee) {
                return Err(fail(failcode::FEE_INSUFFICIENT, "fee insufficient"));
            }
            if prev.delay < hop.delay.saturating_add(d.delay) {
                return Err(fail(failcode::INCORRECT_CLTV_EXPIRY, "cltv expiry too soon"));
            }
        }
        if hop.amount_msat < d.htlc_min {
            return Err(fail(failcode::AMOUNT_BELOW_MINIMUM, "below htlc minimum"));
        }
        if hop.amount_msat > d.htlc_max {
            return Err(fail(failcode::TEMPORARY_CHANNEL_FAILURE, "above htlc maximum"));
        }
        if hop.amount_msat > d.liquidity {
            return Err(fail(
                failcode::TEMPORARY_CHANNEL_FAILURE,
                "insufficient liquidity",
            ));
        }
    }
    Ok(())
}

/// Puts the payment's HTLCs in flight: pending HTLCs on our channels, the amounts taken
/// from the sending side of simulated ones.
pub(super) fn lock_route(s: &mut NodeState, pay: &mut Payment) {
    let us = s.id.clone();
    let height = s.blockheight;
    for (i, hop) in pay.route.iter().enumerate() {
        let from = if i == 0 {
            us.clone()
        } else {
            pay.route[i - 1].id.clone()
        };
        let expiry = height + 1 + hop.delay;
        if let Some(c) = our_channel_between(s, &hop.channel, &from, &hop.id) {
            let id = s.next_htlc_id;
            s.next_htlc_id += 1;
            let htlc = if from == us {
                Htlc::outgoing(id, hop.amount_msat, expiry, &pay.payment_hash)
            } else {
                Htlc::incoming(id, hop.amount_msat, expiry, &pay.payment_hash)
            };
            s.channels[c].htlcs.push(htlc);
            pay.htlc_ids[i] = Some(id);
        } else if let Some(g) = s
            .gossip_channels
            .iter_mut()
            .find(|g| g.short_channel_id == hop.channel && g.source == from && g.destination == hop.id)
        {
            if let Some(l) = g.liquidity_msat.as_mut() {
                *l -= hop.amount_msat;
            }
        }
    }
    pay.locked = true;
}

/// Ends the payment's HTLCs: fulfilled, each amount moves to the receiving side; failed,
/// it goes back to the sender.
pub(super) fn unlock_route(s: &mut NodeState, pay: &mut Payment, fulfilled: bool) {
    if !pay.locked {
        return;
    }
    let us = s.id.clone();
    for (i, hop) in pay.route.iter().enumerate() {
        let from = if i == 0 {
            us.clone()
        } else {
            pay.route[i - 1].id.clone()
        };
        if let Some(id) = pay.htlc_ids[i] {
            if let Some(c) = our_channel_between(s, &hop.channel, &from, &hop.id) {
                let ch = &mut s.channels[c];
                ch.htlcs.retain(|h| h.id != id);
                if fulfilled {
                    if from == us {
                        ch.to_us_msat = ch.to_us_msat.saturating_sub(hop.amount_msat);
                    } else {
                        ch.to_us_msat = (ch.to_us_msat + hop.amount_msat).min(ch.total_msat);
                    }
                }
            }
            continue;
        }
        let (credit_from, credit_to) = if fulfilled {
            (hop.id.as_str(), from.as_str())
        } else {
            (from.as_str(), hop.id.as_str())
        };
        if let Some(l) = s
            .gossip_channels
            .iter_mut()
            .find(|g| {
                g.short_channel_id == hop.channel && g.source == credit_from && g.destination == credit_to
            })
            .and_then(|g| g.liquidity_msat.as_mut())
        {
            *l += hop.amount_msat;
        }
    }
    pay.locked = false;
    pay.htlc_ids.iter_mut().for_each(|h| *h = None);
}

impl FakeNode {
    /// Every `sendpay` attempt so far, oldest first.
    pub fn payments(&self) -> Vec<Payment> {
        self.lock().payments.clone()
    }

    /// Most payments that were in flight (HTLCs out, not yet settled or failed) at once.
    pub fn peak_payments_in_flight(&self) -> usize {
        self.lock().peak_in_flight
    }

    /// Waits until no payment is in flight.
    pub fn wait_payments_settled(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lock();
        while guard.payments.iter().any(|p| p.status == PaymentStatus::Pending) {
            let now = Instant::now();
            assert!(now < deadline, "payments still in flight after {timeout:?}");
            guard = self
                .inner
                .1
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// lightningd's `sendpay`: checks the first hop at once (a local failure is the
    /// command's error), walks the rest like the forwarding nodes would, and hands an HTLC
    /// that reaches us to the hook. The outcome is for `waitsendpay`.
    pub(super) fn sendpay(&self, p: &Value) -> RpcResult {
        let route: Vec<SendpayHop> = p
            .get("route")
            .and_then(Value::as_array)
            .ok_or_else(|| JsonRpcError::new(INVALID_PARAMS, "route: should be an array"))?
            .iter()
            .map(parse_hop)
            .collect::<Result<_, _>>()?;
        let Some(last) = route.last().cloned() else {
            return Err(JsonRpcError::new(INVALID_PARAMS, "Empty route"));
        };
        let hash = p
            .get("payment_hash")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let amount = p.get("amount_msat").map(parse_msat).transpose()?;
        let mut s = self.lock();
        let to_self = last.id == s.id;
        let delivered = match amount {
            None if to_self => {
                return Err(JsonRpcError::new(
                    INVALID_PARAMS,
                    "Must specify amount_msat for a payment to ourselves",
                ))
            }
            None => last.amount_msat,
            Some(a) if !to_self && a != last.amount_msat => {
                return Err(JsonRpcError::new(
                    INVALID_PARAMS,
                    format!(
                        "Do not specify amount_msat ({a}msat) without partid: if you do, it must be exactly the final amount ({}msat)",
                        last.amount_msat
                    ),
                ))
            }
            Some(a) => a,
        };
        if let Some(prev) = s.payments.iter().rev().find(|x| x.payment_hash == hash) {
            match prev.status {
                PaymentStatus::Complete | PaymentStatus::Pending => return Ok(prev.to_json()),
                PaymentStatus::Failed => {}
            }
        }
        let created_index = s.payments.len() as u64 + 1;
        let mut payment = Payment {
            created_index,
            updated_index: None,
            payment_hash: hash,
            route: route.clone(),
            amount_msat: delivered,
            amount_sent_msat: route[0].amount_msat,
            destination: last.id.clone(),
            created_at: now_secs(),
            completed_at: None,
            status: PaymentStatus::Pending,
            preimage: None,
            failure: None,
            hook_payload: None,
            hook_answer: None,
            htlc_ids: vec![None; route.len()],
            locked: false,
        };
        if let Err(failure) = walk(&s, &route) {
            payment.status = PaymentStatus::Failed;
            payment.updated_index = Some(created_index);
            let local = failure.erring_index == 0;
            payment.failure = Some(failure);
            let answer = if local {
                // Our own channel refused the HTLC: sendpay itself fails.
                Err(payment.failure_error())
            } else {
                Ok(payment.to_json())
            };
            s.payments.push(payment);
            drop(s);
            self.changed();
            return answer;
        }
        lock_route(&mut s, &mut payment);
        let answer = payment.to_json();
        s.payments.push(payment);
        let in_flight = s.payments.iter().filter(|x| x.locked).count();
        s.peak_in_flight = s.peak_in_flight.max(in_flight);
        drop(s);
        self.changed();
        let node = self.clone();
        std::thread::Builder::new()
            .name(format!("fake-htlc-{created_index}"))
            .spawn(move || node.arrive(created_index))
            .expect("spawn HTLC thread");
        Ok(answer)
    }

    /// The HTLC of payment `index` reaches the destination: our node asks the plugin.
    pub(super) fn arrive(&self, index: u64) {
        let (payload, hook, hash) = {
            let s = self.lock();
            let Some(pay) = s.payments.iter().find(|x| x.created_index == index) else {
                return;
            };
            let n = pay.route.len();
            let last = &pay.route[n - 1];
            if last.id != s.id {
                // Another node: the simulation keeps no invoices for it.
                drop(s);
                self.finish(
                    index,
                    Err((
                        failcode::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS,
                        "no invoice".into(),
                    )),
                );
                return;
            }
            let cltv = s.blockheight + 1 + last.delay;
            let peer = if n >= 2 {
                pay.route[n - 2].id.clone()
            } else {
                s.id.clone()
            };
            let payload = json!({
                "peer_id": peer,
                "onion": {
                    "payload": final_payload(last.amount_msat, cltv, None),
                    "type": "tlv",
                    "forward_msat": last.amount_msat,
                    "outgoing_cltv_value": cltv,
                    "total_msat": pay.amount_msat,
                    "next_onion": "00".repeat(1366),
                    "shared_secret": hash_hex(&format!("shared:{}:{index}", pay.payment_hash)),
                },
                "htlc": {
                    "short_channel_id": last.channel,
                    "id": pay.htlc_ids[n - 1].unwrap_or(0),
                    "amount_msat": last.amount_msat,
                    "cltv_expiry": cltv,
                    "cltv_expiry_relative": cltv - s.blockheight,
                    "payment_hash": pay.payment_hash,
                }
            });
            (payload, s.htlc_hook.clone(), pay.payment_hash.clone())
        };
        if let Err(e) = schemas().check_hook_request("htlc_accepted", &payload) {
            self.violation(format!("simulated htlc_accepted payload is invalid: {e}"));
        }
        self.with(|s| {
            if let Some(p) = s.payments.iter_mut().find(|x| x.created_index == index) {
                p.hook_payload = Some(payload.clone());
            }
        });
        let answer = match hook {
            Some(h) => h(&payload),
            None => Err("an HTLC reached our node but no htlc_accepted hook is attached \
                         (run the payment inside harness::fake_node::deliver_htlcs)"
                .into()),
        };
        self.with(|s| {
            if let Some(p) = s.payments.iter_mut().find(|x| x.created_index == index) {
                p.hook_answer = answer.as_ref().ok().cloned();
            }
        });
        let outcome = match answer {
            Err(e) => {
                self.violation(format!("htlc_accepted for payment {index}: {e}"));
                Err((
                    failcode::TEMPORARY_NODE_FAILURE,
                    "no answer from the htlc_accepted hook".into(),
                ))
            }
            Ok(v) => match v.get("result").and_then(Value::as_str) {
                Some("resolve") => {
                    let key = v.get("payment_key").and_then(Value::as_str).unwrap_or_default();
                    if hex::decode(key).is_ok_and(|k| k.len() == 32) && payment_hash_of(key) == hash {
                        Ok(key.to_string())
                    } else {
                        self.violation(format!(
                            "htlc_accepted resolved payment {index} with a payment_key that does not hash to {hash}: {v}"
                        ));
                        Err((
                            failcode::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS,
                            "bad payment_key".into(),
                        ))
                    }
                }
                Some("fail") => {
                    let code = v
                        .get("failure_message")
                        .and_then(Value::as_str)
                        .and_then(|m| hex::decode(m).ok())
                        .filter(|b| b.len() >= 2)
                        .map_or(failcode::TEMPORARY_NODE_FAILURE, |b| {
                            u32::from(u16::from_be_bytes([b[0], b[1]]))
                        });
                    Err((code, "failed by the htlc_accepted hook".into()))
                }
                // lightningd would look for an invoice; the simulation keeps none for
                // payments to ourselves.
                _ => Err((
                    failcode::INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS,
                    "no invoice for this payment hash".into(),
                )),
            },
        };
        self.finish(index, outcome);
    }

    /// Settles (moves the balances along the route) or fails (gives them back) payment
    /// `index`.
    pub(super) fn finish(&self, index: u64, outcome: Result<String, (u32, String)>) {
        self.with(|s| {
            let us = s.id.clone();
            let updated = s
                .payments
                .iter()
                .filter_map(|p| p.updated_index)
                .max()
                .unwrap_or(0)
                .max(s.payments.len() as u64)
                + 1;
            let Some(pos) = s.payments.iter().position(|x| x.created_index == index) else {
                return;
            };
            let mut pay = s.payments[pos].clone();
            unlock_route(s, &mut pay, outcome.is_ok());
            pay.updated_index = Some(updated);
            pay.completed_at = Some(now_secs());
            match outcome {
                Ok(preimage) => {
                    pay.status = PaymentStatus::Complete;
                    pay.preimage = Some(preimage);
                }
                Err((code, detail)) => {
                    let n = pay.route.len();
                    let from = if n >= 2 {
                        pay.route[n - 2].id.clone()
                    } else {
                        us.clone()
                    };
                    pay.status = PaymentStatus::Failed;
                    pay.failure = Some(RouteFailure {
                        erring_index: n,
                        erring_node: pay.destination.clone(),
                        erring_channel: pay.route[n - 1].channel.clone(),
                        erring_direction: u32::from(from > pay.destination),
                        failcode: code,
                        code: PAY_DESTINATION_PERM_FAIL,
                        detail,
                    });
                }
            }
            s.payments[pos] = pay;
        });
    }

    /// lightningd's `waitsendpay`: the outcome of the latest attempt with this hash.
    pub(super) fn waitsendpay(&self, p: &Value) -> RpcResult {
        let hash = p
            .get("payment_hash")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        // Without a timeout lightningd waits for ever; a test should not.
        let timeout = Duration::from_secs(p.get("timeout").and_then(Value::as_u64).unwrap_or(600));
        let deadline = Instant::now() + timeout;
        let mut guard = self.lock();
        loop {
            let Some(pay) = guard.payments.iter().rev().find(|x| x.payment_hash == hash) else {
                return Err(JsonRpcError::new(
                    PAY_NO_SUCH_PAYMENT,
                    format!("Never attempted payment to {hash}"),
                ));
            };
            match pay.status {
                PaymentStatus::Complete => return Ok(pay.to_json()),
                PaymentStatus::Failed => return Err(pay.failure_error()),
                PaymentStatus::Pending => {}
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(JsonRpcError::new(PAY_IN_PROGRESS, "Timed out"));
            }
            guard = self
                .inner
                .1
                .wait_timeout(guard, (deadline - now).min(Duration::from_millis(200)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}
