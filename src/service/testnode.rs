//! A [`Node`] whose answers are scripted call by call, for testing the services that drive
//! a node. Each `pay_route` and `held_incoming` takes the next scripted answer; a call with
//! nothing scripted panics, so a test also fails when a service asks more than expected.

use crate::engine::bolt11::InvoiceSpec;
use crate::node::{
    Channel, FeeUpdate, Forward, GraphEdge, HeldIncoming, HoldInvoiceError, Invoice, Node, NodeError,
    NodeInfo, NodeResult, PayOutcome, RouteHop,
};
use crate::types::{Msat, NodeId, PaymentHash, Preimage, Scid};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// The answer to one `pay_route` call.
#[derive(Debug, Clone)]
pub enum Pay {
    /// Delivered: the preimage handed to `prepare_self_payment` comes back.
    Succeed,
    /// Failed at this channel of the route.
    FailAt(Scid),
    /// The wait ended with the HTLC still out.
    InFlight,
    /// The node refused to send it.
    Refuse,
    /// The connection broke: what became of it is unknown.
    Disconnect,
}

pub(crate) struct ScriptedNode {
    pub me: NodeId,
    pub channels: Vec<Channel>,
    /// What `holds_htlcs_through_hook` answers.
    pub hook_held: bool,
    pay: Mutex<VecDeque<Pay>>,
    held: Mutex<VecDeque<NodeResult<Option<Vec<HeldIncoming>>>>>,
    preimages: Mutex<HashMap<PaymentHash, Preimage>>,
    /// Every route `pay_route` was asked to send, in order.
    pub sent: Mutex<Vec<Vec<RouteHop>>>,
    /// When set, `set_fee` is refused with this message; every fee it took, in order.
    pub fee_refusal: Option<String>,
    pub fees_set: Mutex<Vec<(Scid, FeeUpdate)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ScriptedNode {
    pub fn new(me: NodeId, channels: Vec<Channel>) -> Self {
        ScriptedNode {
            me,
            channels,
            hook_held: true,
            pay: Mutex::new(VecDeque::new()),
            held: Mutex::new(VecDeque::new()),
            preimages: Mutex::new(HashMap::new()),
            sent: Mutex::new(Vec::new()),
            fee_refusal: None,
            fees_set: Mutex::new(Vec::new()),
        }
    }

    /// Scripts the answers of the next `pay_route` calls, in order.
    pub fn pays(self, answers: impl IntoIterator<Item = Pay>) -> Self {
        lock(&self.pay).extend(answers);
        self
    }

    /// Scripts the answer of the next `held_incoming` call.
    pub fn holds(&self, answer: NodeResult<Option<Vec<HeldIncoming>>>) {
        lock(&self.held).push_back(answer);
    }

    /// The channels of every route sent, in order.
    pub(crate) fn routes_sent(&self) -> Vec<Vec<Scid>> {
        lock(&self.sent)
            .iter()
            .map(|r| r.iter().map(|h| h.scid).collect())
            .collect()
    }

    /// True when every scripted answer was asked for.
    pub(crate) fn script_used_up(&self) -> bool {
        lock(&self.pay).is_empty() && lock(&self.held).is_empty()
    }
}

impl Node for ScriptedNode {
    async fn info(&self) -> NodeResult<NodeInfo> {
        Ok(NodeInfo {
            id: self.me,
            alias: "scripted".into(),
            network: "regtest".into(),
            blockheight: 100,
            version: "scripted".into(),
        })
    }

    async fn block_height(&self) -> NodeResult<u32> {
        Ok(100)
    }

    async fn channels(&self) -> NodeResult<Vec<Channel>> {
        Ok(self.channels.clone())
    }

    async fn graph(&self) -> NodeResult<Vec<GraphEdge>> {
        Ok(Vec::new())
    }

    async fn forwards(&self, _since: u64) -> NodeResult<Vec<Forward>> {
        Ok(Vec::new())
    }

    async fn set_fee(&self, scid: Scid, fee: FeeUpdate) -> NodeResult<()> {
        if let Some(message) = &self.fee_refusal {
            return Err(NodeError::Rejected {
                method: "set_fee",
                code: None,
                message: message.clone(),
            });
        }
        lock(&self.fees_set).push((scid, fee));
        Ok(())
    }

    async fn pay_route(
        &self,
        route: &[RouteHop],
        hash: PaymentHash,
        _timeout: u32,
    ) -> NodeResult<PayOutcome> {
        lock(&self.sent).push(route.to_vec());
        let answer = lock(&self.pay)
            .pop_front()
            .expect("pay_route called with no answer scripted");
        match answer {
            Pay::Succeed => Ok(PayOutcome::Success {
                preimage: *lock(&self.preimages)
                    .get(&hash)
                    .expect("a self-payment is prepared before it is sent"),
            }),
            Pay::FailAt(scid) => Ok(PayOutcome::Failed {
                failing_channel: Some(scid),
                failing_node: None,
                // temporary_channel_failure
                code: Some(0x1007),
                message: format!("failed at {scid}"),
            }),
            Pay::InFlight => Ok(PayOutcome::InFlight {
                message: "still in flight".into(),
            }),
            Pay::Refuse => Err(NodeError::Rejected {
                method: "pay_route",
                code: None,
                message: "refused".into(),
            }),
            Pay::Disconnect => Err(NodeError::Transport {
                method: "pay_route",
                message: "connection lost".into(),
            }),
        }
    }

    async fn wait_payment(&self, _hash: PaymentHash, _timeout: u32) -> NodeResult<PayOutcome> {
        Err(NodeError::UnknownPayment {
            method: "wait_payment",
            message: "nothing scripted".into(),
        })
    }

    async fn sign_invoice(&self, _unsigned: &str) -> NodeResult<String> {
        Err(NodeError::Rejected {
            method: "sign_invoice",
            code: None,
            message: "not scripted".into(),
        })
    }

    async fn invoices(&self) -> NodeResult<Vec<Invoice>> {
        Ok(Vec::new())
    }

    async fn feerate_perkb(&self) -> NodeResult<Option<u64>> {
        Ok(None)
    }

    async fn held_incoming(&self) -> NodeResult<Option<Vec<HeldIncoming>>> {
        lock(&self.held)
            .pop_front()
            .expect("held_incoming called with no answer scripted")
    }

    fn holds_htlcs_through_hook(&self) -> bool {
        self.hook_held
    }

    fn implementation(&self) -> &'static str {
        "scripted"
    }

    async fn create_hold_invoice(
        &self,
        _spec: &InvoiceSpec,
        _private: bool,
    ) -> Result<(String, [u8; 32]), HoldInvoiceError> {
        Err(HoldInvoiceError::Node("not scripted".into()))
    }

    async fn prepare_self_payment(&self, preimage: Preimage, _amount: Msat) -> NodeResult<()> {
        lock(&self.preimages).insert(preimage.payment_hash(), preimage);
        Ok(())
    }
}
