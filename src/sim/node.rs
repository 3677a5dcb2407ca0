//! `SimNode`: the [`Node`] trait over the simulated network, so the simulator drives the
//! engine through the same interface (and, for rebalancing, the same `service` code) the
//! plugin uses with lightningd.
//!
//! A `SimNode` borrows the network for one round of engine work (a fee decision, a monitor
//! check, a rebalance) and is dropped after it; whatever it changed (balances, our fees) is
//! in the network by then, and the fee changes it applied are listed by
//! [`SimNode::fee_changes`]. Its futures are ready at once: simulated payments resolve
//! within the call.

use super::network::{Network, PathHop, Sent};
use crate::engine::bolt11::InvoiceSpec;
use crate::node::{
    Channel, FeeUpdate, Forward, GraphEdge, HoldInvoiceError, Invoice, Node, NodeError, NodeInfo, NodeResult,
    PayOutcome, PendingHtlc, RouteHop,
};
use crate::types::{Msat, NodeId, PaymentHash, Preimage, Scid};
use std::collections::HashMap;
use std::future::{ready, Future};
use std::sync::{Mutex, MutexGuard};

/// BOLT 4 failure codes the simulated node reports.
const TEMPORARY_CHANNEL_FAILURE: u32 = 0x1007;
const UNKNOWN_NEXT_PEER: u32 = 0x400a;
const INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS: u32 = 0x400f;

struct State<'a> {
    net: &'a mut Network,
    /// Pending HTLCs on our channels, by channel index (held hold-invoice payments and
    /// payments still settling).
    htlcs: &'a HashMap<u32, Vec<PendingHtlc>>,
    forwards: &'a [Forward],
    fee_changes: Vec<(Scid, FeeUpdate)>,
    /// Self-payments announced by `prepare_self_payment`: hash → (preimage, amount).
    expected: HashMap<PaymentHash, (Preimage, Msat)>,
    /// Outcomes of `pay_route` calls, for `wait_payment`.
    outcomes: HashMap<PaymentHash, PayOutcome>,
}

pub(crate) struct SimNode<'a> {
    id: NodeId,
    height: u32,
    st: Mutex<State<'a>>,
}

impl<'a> SimNode<'a> {
    pub fn new(
        net: &'a mut Network,
        htlcs: &'a HashMap<u32, Vec<PendingHtlc>>,
        forwards: &'a [Forward],
        height: u32,
    ) -> SimNode<'a> {
        SimNode {
            id: net.ids[net.ours as usize],
            height,
            st: Mutex::new(State {
                net,
                htlcs,
                forwards,
                fee_changes: Vec::new(),
                expected: HashMap::new(),
                outcomes: HashMap::new(),
            }),
        }
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    fn state(&self) -> MutexGuard<'_, State<'a>> {
        self.st.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn failed(at: Option<&RouteHop>, from: Option<NodeId>, code: u32, message: &str) -> PayOutcome {
    PayOutcome::Failed {
        failing_channel: at.map(|h| h.scid),
        failing_node: from,
        code: Some(code),
        message: message.to_string(),
    }
}

impl State<'_> {
    /// Sends along `route` from our node: the hops must chain, every channel must be up
    /// with the liquidity for its hop, every forwarder must get its fee, and the final node
    /// must know the payment (only our own announced self-payments are known).
    fn pay(&mut self, route: &[RouteHop], hash: PaymentHash) -> PayOutcome {
        let net = &*self.net;
        let mut path: Vec<PathHop> = Vec::with_capacity(route.len());
        let mut from = net.ours;
        for h in route {
            let Some(&ci) = net.by_scid.get(&h.scid) else {
                return failed(
                    Some(h),
                    Some(net.ids[from as usize]),
                    UNKNOWN_NEXT_PEER,
                    "unknown channel",
                );
            };
            let c = &net.channels[ci as usize];
            let Some(d) = c.node.iter().position(|&n| n == from) else {
                return failed(
                    Some(h),
                    Some(net.ids[from as usize]),
                    UNKNOWN_NEXT_PEER,
                    "channel not at hop",
                );
            };
            let to = c.node[1 - d];
            if net.ids[to as usize] != h.node {
                return failed(
                    Some(h),
                    Some(net.ids[from as usize]),
                    UNKNOWN_NEXT_PEER,
                    "wrong next node",
                );
            }
            path.push((ci, d as u8));
            from = to;
        }
        let Some(last) = route.last() else {
            return failed(None, None, INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS, "empty route");
        };
        let known = from == net.ours
            && self
                .expected
                .get(&hash)
                .is_some_and(|(p, amount)| p.payment_hash() == hash && *amount == last.amount);
        if !known {
            return failed(
                Some(last),
                Some(last.node),
                INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS,
                "payee does not know this payment",
            );
        }
        let amounts: Vec<u64> = route.iter().map(|h| h.amount.0).collect();
        match self.net.send(&path, &amounts, false) {
            Sent::Done { .. } => {
                let (preimage, _) = self.expected.remove(&hash).expect("checked above");
                PayOutcome::Success { preimage }
            }
            Sent::Failed { at } => {
                let sender = self.net.hop_from(path[at]);
                failed(
                    Some(&route[at]),
                    Some(self.net.ids[sender as usize]),
                    TEMPORARY_CHANNEL_FAILURE,
                    "insufficient liquidity or channel down",
                )
            }
        }
    }
}

impl Node for SimNode<'_> {
    fn info(&self) -> impl Future<Output = NodeResult<NodeInfo>> + Send {
        ready(Ok(NodeInfo {
            id: self.id,
            alias: "ballast-sim".into(),
            network: "regtest".into(),
            blockheight: self.height,
            version: "simulated".into(),
        }))
    }

    fn block_height(&self) -> impl Future<Output = NodeResult<u32>> + Send {
        ready(Ok(self.height))
    }

    fn channels(&self) -> impl Future<Output = NodeResult<Vec<Channel>>> + Send {
        let st = self.state();
        ready(Ok(st.net.our_channels(st.htlcs)))
    }

    fn graph(&self) -> impl Future<Output = NodeResult<Vec<GraphEdge>>> + Send {
        ready(Ok(self.state().net.graph_edges()))
    }

    fn forwards(&self, since: u64) -> impl Future<Output = NodeResult<Vec<Forward>>> + Send {
        let st = self.state();
        let out = st
            .forwards
            .iter()
            .filter(|f| f.received_time >= since as f64)
            .cloned()
            .collect();
        ready(Ok(out))
    }

    fn set_fee(&self, scid: Scid, fee: FeeUpdate) -> impl Future<Output = NodeResult<()>> + Send {
        let mut st = self.state();
        let r = if st.net.set_our_fee(scid, fee.base.0, fee.ppm) {
            st.fee_changes.push((scid, fee));
            Ok(())
        } else {
            Err(NodeError::Rejected {
                method: "setchannel",
                code: None,
                message: format!("{scid} is not one of our channels"),
            })
        };
        ready(r)
    }

    fn pay_route(
        &self,
        route: &[RouteHop],
        payment_hash: PaymentHash,
        _timeout_secs: u32,
    ) -> impl Future<Output = NodeResult<PayOutcome>> + Send {
        let mut st = self.state();
        let outcome = st.pay(route, payment_hash);
        st.outcomes.insert(payment_hash, outcome.clone());
        ready(Ok(outcome))
    }

    fn wait_payment(
        &self,
        payment_hash: PaymentHash,
        _timeout_secs: u32,
    ) -> impl Future<Output = NodeResult<PayOutcome>> + Send {
        let r = self
            .state()
            .outcomes
            .get(&payment_hash)
            .cloned()
            .ok_or_else(|| NodeError::UnknownPayment {
                method: "wait_payment",
                message: "no such payment".into(),
            });
        ready(r)
    }

    fn sign_invoice(&self, _unsigned: &str) -> impl Future<Output = NodeResult<String>> + Send {
        // The simulated hold invoices are never encoded: payers pay them by hash.
        ready(Err(NodeError::Rejected {
            method: "signinvoice",
            code: None,
            message: "the simulated node does not sign invoices".into(),
        }))
    }

    fn invoices(&self) -> impl Future<Output = NodeResult<Vec<Invoice>>> + Send {
        ready(Ok(Vec::new()))
    }

    fn implementation(&self) -> &'static str {
        "simulator"
    }

    fn create_hold_invoice(
        &self,
        _spec: &InvoiceSpec,
        _private: bool,
    ) -> impl Future<Output = Result<(String, [u8; 32]), HoldInvoiceError>> + Send {
        // As with `sign_invoice`: simulated payers pay hold invoices by hash.
        ready(Err(HoldInvoiceError::Node(
            "the simulated node does not make invoices".into(),
        )))
    }

    fn feerate_perkb(&self) -> impl Future<Output = NodeResult<Option<u64>>> + Send {
        ready(Ok(None))
    }

    fn prepare_self_payment(
        &self,
        preimage: Preimage,
        amount: Msat,
    ) -> impl Future<Output = NodeResult<()>> + Send {
        self.state()
            .expected
            .insert(preimage.payment_hash(), (preimage, amount));
        ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::graph::Graph;
    use crate::engine::route::{find_circular_routes, CircularRequest, RouteParams};

    fn block_on<T>(f: impl Future<Output = T>) -> T {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn self_payments_need_preparing_and_liquidity_and_move_balances() {
        let mut net = Network::generate(3, 40, 6);
        let htlcs = HashMap::new();
        let node = SimNode::new(&mut net, &htlcs, &[], 800_000);
        let me = node.id();
        let channels = block_on(node.channels()).unwrap();
        let graph = Graph::from_edges(&block_on(node.graph()).unwrap()).unwrap();
        graph.prepare();
        let beliefs = crate::engine::beliefs::Beliefs::new(3_600);
        let view = beliefs.view(&graph, 0);
        let (src, dst) = (&channels[0], &channels[1]);
        let req = CircularRequest {
            ours: me,
            out_scid: src.scid.unwrap(),
            out_peer: src.peer,
            in_scid: dst.scid.unwrap(),
            in_peer: dst.peer,
            amount: Msat(10_000),
            in_policy: dst.remote_policy,
        };
        let route = find_circular_routes(&graph, &view, &req, &RouteParams::default()).unwrap()[0].clone();
        let hops = route.to_route_hops();
        let pre = Preimage([7; 32]);
        let hash = pre.payment_hash();
        // Unannounced: the final hop (us) does not know the payment.
        let PayOutcome::Failed { failing_channel, .. } = block_on(node.pay_route(&hops, hash, 60)).unwrap()
        else {
            panic!("paid an unknown hash")
        };
        assert_eq!(failing_channel, Some(hops.last().unwrap().scid));
        block_on(node.prepare_self_payment(pre, route.amount)).unwrap();
        let out = block_on(node.pay_route(&hops, hash, 60)).unwrap();
        assert_eq!(out, PayOutcome::Success { preimage: pre });
        assert_eq!(block_on(node.wait_payment(hash, 1)).unwrap(), out);
        let after = block_on(node.channels()).unwrap();
        assert_eq!(after[0].spendable.0, src.spendable.0 - route.hops[0].amount.0);
        assert_eq!(after[1].spendable.0, dst.spendable.0 + route.amount.0);
        drop(node);
        // A disconnected first hop carries nothing, and says where it failed.
        let ci = net.by_scid[&src.scid.unwrap()];
        net.channels[ci as usize].down = true;
        let node = SimNode::new(&mut net, &htlcs, &[], 800_000);
        let pre = Preimage([8; 32]);
        block_on(node.prepare_self_payment(pre, route.amount)).unwrap();
        let PayOutcome::Failed { failing_channel, .. } =
            block_on(node.pay_route(&hops, pre.payment_hash(), 60)).unwrap()
        else {
            panic!("paid over a channel that is down")
        };
        assert_eq!(failing_channel, src.scid);
        assert!(!block_on(node.channels()).unwrap()[0].peer_connected);
    }
}
