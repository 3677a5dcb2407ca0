//! [`AnyNode`]: whichever [`Node`] an adapter runs on, behind one type.
//!
//! The method table (`api::METHODS`) is a `const` of plain function pointers taking the
//! app state, and every handler, hook and loop names that state's type. Making the state
//! generic over `Node` would make each of them generic and turn the table into a function
//! per node type; type erasure keeps all of that as it is and still lets `api` hold a node
//! without naming an adapter. `Node`'s `impl Future` methods are not object-safe, so
//! [`DynNode`] mirrors them with boxed futures, is implemented for every `Node`, and
//! `AnyNode` implements `Node` again by delegating, so generic code (`Executor<N>`) takes
//! it like any other node. The cost is one allocation per node call, next to an RPC.
//!
//! Every `Node` method, defaults included, must be forwarded here: a default left to the
//! trait would silently answer for the node underneath (the unit test below catches that).

use super::{
    Channel, FeeUpdate, Forward, GraphEdge, HeldIncoming, HoldInvoiceError, Invoice, Node, NodeInfo,
    NodeResult, PayOutcome, RouteHop,
};
use crate::engine::bolt11::InvoiceSpec;
use crate::types::{Msat, PaymentHash, Preimage, Scid};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// [`Node`] in object-safe form.
trait DynNode: Send + Sync {
    fn info(&self) -> Boxed<'_, NodeResult<NodeInfo>>;
    fn block_height(&self) -> Boxed<'_, NodeResult<u32>>;
    fn channels(&self) -> Boxed<'_, NodeResult<Vec<Channel>>>;
    fn graph(&self) -> Boxed<'_, NodeResult<Vec<GraphEdge>>>;
    fn forwards(&self, since: u64) -> Boxed<'_, NodeResult<Vec<Forward>>>;
    fn set_fee(&self, scid: Scid, fee: FeeUpdate) -> Boxed<'_, NodeResult<()>>;
    fn pay_route<'a>(
        &'a self,
        route: &'a [RouteHop],
        payment_hash: PaymentHash,
        timeout_secs: u32,
    ) -> Boxed<'a, NodeResult<PayOutcome>>;
    fn wait_payment(&self, payment_hash: PaymentHash, timeout_secs: u32)
        -> Boxed<'_, NodeResult<PayOutcome>>;
    fn sign_invoice<'a>(&'a self, unsigned: &'a str) -> Boxed<'a, NodeResult<String>>;
    fn invoices(&self) -> Boxed<'_, NodeResult<Vec<Invoice>>>;
    fn feerate_perkb(&self) -> Boxed<'_, NodeResult<Option<u64>>>;
    fn held_incoming(&self) -> Boxed<'_, NodeResult<Option<Vec<HeldIncoming>>>>;
    fn holds_htlcs_through_hook(&self) -> bool;
    fn cltv_delta(&self) -> Boxed<'_, NodeResult<Option<u32>>>;
    fn prepare_self_payment(&self, preimage: Preimage, amount: Msat) -> Boxed<'_, NodeResult<()>>;
    fn implementation(&self) -> &'static str;
    fn min_invoice_cltv(&self) -> u32;
    fn chooses_route_hints(&self) -> bool;
    fn create_hold_invoice<'a>(
        &'a self,
        spec: &'a InvoiceSpec,
        private: bool,
    ) -> Boxed<'a, Result<(String, [u8; 32]), HoldInvoiceError>>;
}

impl<N: Node> DynNode for N {
    fn info(&self) -> Boxed<'_, NodeResult<NodeInfo>> {
        Box::pin(Node::info(self))
    }
    fn block_height(&self) -> Boxed<'_, NodeResult<u32>> {
        Box::pin(Node::block_height(self))
    }
    fn channels(&self) -> Boxed<'_, NodeResult<Vec<Channel>>> {
        Box::pin(Node::channels(self))
    }
    fn graph(&self) -> Boxed<'_, NodeResult<Vec<GraphEdge>>> {
        Box::pin(Node::graph(self))
    }
    fn forwards(&self, since: u64) -> Boxed<'_, NodeResult<Vec<Forward>>> {
        Box::pin(Node::forwards(self, since))
    }
    fn set_fee(&self, scid: Scid, fee: FeeUpdate) -> Boxed<'_, NodeResult<()>> {
        Box::pin(Node::set_fee(self, scid, fee))
    }
    fn pay_route<'a>(
        &'a self,
        route: &'a [RouteHop],
        payment_hash: PaymentHash,
        timeout_secs: u32,
    ) -> Boxed<'a, NodeResult<PayOutcome>> {
        Box::pin(Node::pay_route(self, route, payment_hash, timeout_secs))
    }
    fn wait_payment(
        &self,
        payment_hash: PaymentHash,
        timeout_secs: u32,
    ) -> Boxed<'_, NodeResult<PayOutcome>> {
        Box::pin(Node::wait_payment(self, payment_hash, timeout_secs))
    }
    fn sign_invoice<'a>(&'a self, unsigned: &'a str) -> Boxed<'a, NodeResult<String>> {
        Box::pin(Node::sign_invoice(self, unsigned))
    }
    fn invoices(&self) -> Boxed<'_, NodeResult<Vec<Invoice>>> {
        Box::pin(Node::invoices(self))
    }
    fn feerate_perkb(&self) -> Boxed<'_, NodeResult<Option<u64>>> {
        Box::pin(Node::feerate_perkb(self))
    }
    fn held_incoming(&self) -> Boxed<'_, NodeResult<Option<Vec<HeldIncoming>>>> {
        Box::pin(Node::held_incoming(self))
    }
    fn holds_htlcs_through_hook(&self) -> bool {
        Node::holds_htlcs_through_hook(self)
    }
    fn cltv_delta(&self) -> Boxed<'_, NodeResult<Option<u32>>> {
        Box::pin(Node::cltv_delta(self))
    }
    fn prepare_self_payment(&self, preimage: Preimage, amount: Msat) -> Boxed<'_, NodeResult<()>> {
        Box::pin(Node::prepare_self_payment(self, preimage, amount))
    }
    fn implementation(&self) -> &'static str {
        Node::implementation(self)
    }
    fn min_invoice_cltv(&self) -> u32 {
        Node::min_invoice_cltv(self)
    }
    fn chooses_route_hints(&self) -> bool {
        Node::chooses_route_hints(self)
    }
    fn create_hold_invoice<'a>(
        &'a self,
        spec: &'a InvoiceSpec,
        private: bool,
    ) -> Boxed<'a, Result<(String, [u8; 32]), HoldInvoiceError>> {
        Box::pin(Node::create_hold_invoice(self, spec, private))
    }
}

/// A shared handle on some [`Node`]; cloning it clones the handle, not the node.
#[derive(Clone)]
pub struct AnyNode(Arc<dyn DynNode>);

impl AnyNode {
    pub fn new(node: impl Node + 'static) -> Self {
        AnyNode(Arc::new(node))
    }
}

impl Node for AnyNode {
    fn info(&self) -> impl Future<Output = NodeResult<NodeInfo>> + Send {
        self.0.info()
    }
    fn block_height(&self) -> impl Future<Output = NodeResult<u32>> + Send {
        self.0.block_height()
    }
    fn channels(&self) -> impl Future<Output = NodeResult<Vec<Channel>>> + Send {
        self.0.channels()
    }
    fn graph(&self) -> impl Future<Output = NodeResult<Vec<GraphEdge>>> + Send {
        self.0.graph()
    }
    fn forwards(&self, since: u64) -> impl Future<Output = NodeResult<Vec<Forward>>> + Send {
        self.0.forwards(since)
    }
    fn set_fee(&self, scid: Scid, fee: FeeUpdate) -> impl Future<Output = NodeResult<()>> + Send {
        self.0.set_fee(scid, fee)
    }
    // `async fn` where an argument is borrowed: the future holds that borrow too.
    async fn pay_route(
        &self,
        route: &[RouteHop],
        payment_hash: PaymentHash,
        timeout_secs: u32,
    ) -> NodeResult<PayOutcome> {
        self.0.pay_route(route, payment_hash, timeout_secs).await
    }
    fn wait_payment(
        &self,
        payment_hash: PaymentHash,
        timeout_secs: u32,
    ) -> impl Future<Output = NodeResult<PayOutcome>> + Send {
        self.0.wait_payment(payment_hash, timeout_secs)
    }
    async fn sign_invoice(&self, unsigned: &str) -> NodeResult<String> {
        self.0.sign_invoice(unsigned).await
    }
    fn invoices(&self) -> impl Future<Output = NodeResult<Vec<Invoice>>> + Send {
        self.0.invoices()
    }
    fn feerate_perkb(&self) -> impl Future<Output = NodeResult<Option<u64>>> + Send {
        self.0.feerate_perkb()
    }
    fn held_incoming(&self) -> impl Future<Output = NodeResult<Option<Vec<HeldIncoming>>>> + Send {
        self.0.held_incoming()
    }
    fn holds_htlcs_through_hook(&self) -> bool {
        self.0.holds_htlcs_through_hook()
    }
    fn cltv_delta(&self) -> impl Future<Output = NodeResult<Option<u32>>> + Send {
        self.0.cltv_delta()
    }
    fn prepare_self_payment(
        &self,
        preimage: Preimage,
        amount: Msat,
    ) -> impl Future<Output = NodeResult<()>> + Send {
        self.0.prepare_self_payment(preimage, amount)
    }
    fn implementation(&self) -> &'static str {
        self.0.implementation()
    }
    fn min_invoice_cltv(&self) -> u32 {
        self.0.min_invoice_cltv()
    }
    fn chooses_route_hints(&self) -> bool {
        self.0.chooses_route_hints()
    }
    async fn create_hold_invoice(
        &self,
        spec: &InvoiceSpec,
        private: bool,
    ) -> Result<(String, [u8; 32]), HoldInvoiceError> {
        self.0.create_hold_invoice(spec, private).await
    }
}

#[cfg(test)]
mod tests {
    // Not `super::*`: `DynNode` in scope would make every call below ambiguous.
    use super::AnyNode;
    use crate::engine::bolt11::{Description, InvoiceSpec};
    use crate::node::{
        Channel, ChannelState, FeeUpdate, Forward, ForwardStatus, GraphEdge, HeldIncoming, HoldInvoiceError,
        Invoice, Node, NodeError, NodeInfo, NodeResult, PayOutcome, RouteHop,
    };
    use crate::types::{Msat, NodeId, PaymentHash, Preimage, Scid};
    use std::sync::{Arc, Mutex};

    /// Answers every method with something no default gives, and records what it was asked.
    struct Marked(Arc<Mutex<Vec<String>>>);

    impl Marked {
        fn saw(&self, what: impl Into<String>) {
            self.0.lock().unwrap().push(what.into());
        }
    }

    fn id() -> NodeId {
        "02eec7245d6b7d2ccb30380bfbe2a3648cd7a942653f5aa340edcea1f283686619"
            .parse()
            .unwrap()
    }

    fn scid() -> Scid {
        "103x1x0".parse().unwrap()
    }

    impl Node for Marked {
        async fn info(&self) -> NodeResult<NodeInfo> {
            self.saw("info");
            Ok(NodeInfo {
                id: id(),
                alias: "marked".into(),
                network: "regtest".into(),
                blockheight: 7,
                version: "v0".into(),
            })
        }
        async fn block_height(&self) -> NodeResult<u32> {
            self.saw("block_height");
            Ok(812)
        }
        async fn channels(&self) -> NodeResult<Vec<Channel>> {
            self.saw("channels");
            Ok(vec![Channel {
                scid: Some(scid()),
                peer: id(),
                peer_connected: true,
                state: ChannelState::Normal,
                raw_state: "CHANNELD_NORMAL".into(),
                capacity: Msat(10),
                local: Msat(4),
                remote: Msat(6),
                spendable: Msat(3),
                receivable: Msat(5),
                htlcs: Vec::new(),
                fee_base: Msat(1),
                fee_ppm: 2,
                remote_policy: None,
                private: false,
            }])
        }
        async fn graph(&self) -> NodeResult<Vec<GraphEdge>> {
            self.saw("graph");
            Ok(Vec::new())
        }
        async fn forwards(&self, since: u64) -> NodeResult<Vec<Forward>> {
            self.saw(format!("forwards {since}"));
            Ok(vec![Forward {
                in_channel: scid(),
                out_channel: None,
                in_msat: Msat(9),
                out_msat: None,
                fee: None,
                status: ForwardStatus::LocalFailed,
                received_time: 1.5,
                resolved_time: None,
            }])
        }
        async fn set_fee(&self, scid: Scid, fee: FeeUpdate) -> NodeResult<()> {
            self.saw(format!("set_fee {scid} {} {}", fee.base, fee.ppm));
            Ok(())
        }
        async fn pay_route(
            &self,
            route: &[RouteHop],
            hash: PaymentHash,
            timeout: u32,
        ) -> NodeResult<PayOutcome> {
            self.saw(format!("pay_route {} {hash} {timeout}", route.len()));
            Ok(PayOutcome::Success {
                preimage: Preimage([1; 32]),
            })
        }
        async fn wait_payment(&self, hash: PaymentHash, timeout: u32) -> NodeResult<PayOutcome> {
            self.saw(format!("wait_payment {hash} {timeout}"));
            Err(NodeError::Malformed {
                method: "wait",
                message: "marked".into(),
            })
        }
        async fn sign_invoice(&self, unsigned: &str) -> NodeResult<String> {
            self.saw(format!("sign_invoice {unsigned}"));
            Ok(format!("signed {unsigned}"))
        }
        async fn invoices(&self) -> NodeResult<Vec<Invoice>> {
            self.saw("invoices");
            Ok(Vec::new())
        }
        async fn feerate_perkb(&self) -> NodeResult<Option<u64>> {
            self.saw("feerate_perkb");
            Ok(Some(2_500))
        }
        async fn held_incoming(&self) -> NodeResult<Option<Vec<HeldIncoming>>> {
            self.saw("held_incoming");
            Ok(Some(vec![HeldIncoming {
                channel: scid(),
                id: 3,
                payment_hash: PaymentHash([4; 32]),
            }]))
        }
        fn holds_htlcs_through_hook(&self) -> bool {
            false
        }
        async fn cltv_delta(&self) -> NodeResult<Option<u32>> {
            self.saw("cltv_delta");
            Ok(Some(34))
        }
        async fn prepare_self_payment(&self, preimage: Preimage, amount: Msat) -> NodeResult<()> {
            self.saw(format!(
                "prepare_self_payment {} {amount}",
                preimage.payment_hash()
            ));
            Err(NodeError::Transport {
                method: "prepare",
                message: "marked".into(),
            })
        }
        fn implementation(&self) -> &'static str {
            "marked"
        }
        fn min_invoice_cltv(&self) -> u32 {
            41
        }
        fn chooses_route_hints(&self) -> bool {
            true
        }
        async fn create_hold_invoice(
            &self,
            spec: &InvoiceSpec,
            private: bool,
        ) -> Result<(String, [u8; 32]), HoldInvoiceError> {
            self.saw(format!("create_hold_invoice {} {private}", spec.payment_hash));
            Err(HoldInvoiceError::Invalid("marked".into()))
        }
    }

    #[test]
    fn every_method_reaches_the_node_underneath() {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let node = AnyNode::new(Marked(asked.clone()));
        let copy = node.clone();
        drop(node);
        let spec = InvoiceSpec {
            network: "regtest".into(),
            amount: Msat(1),
            payment_hash: PaymentHash([5; 32]),
            payment_secret: [6; 32],
            description: Description::Text(String::new()),
            created_at: 0,
            expiry_secs: 60,
            min_final_cltv: 40,
            hints: Vec::new(),
        };
        let hash = PaymentHash([2; 32]);
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            assert_eq!(copy.info().await.unwrap().alias, "marked");
            assert_eq!(copy.block_height().await.unwrap(), 812);
            assert_eq!(copy.channels().await.unwrap().len(), 1);
            assert!(copy.graph().await.unwrap().is_empty());
            assert_eq!(copy.forwards(11).await.unwrap().len(), 1);
            copy.set_fee(
                scid(),
                FeeUpdate {
                    base: Msat(5),
                    ppm: 6,
                },
            )
            .await
            .unwrap();
            assert!(matches!(
                copy.pay_route(&[], hash, 60).await.unwrap(),
                PayOutcome::Success { .. }
            ));
            assert!(matches!(
                copy.wait_payment(hash, 1).await,
                Err(NodeError::Malformed { .. })
            ));
            assert_eq!(copy.sign_invoice("lnbc").await.unwrap(), "signed lnbc");
            assert!(copy.invoices().await.unwrap().is_empty());
            assert_eq!(copy.feerate_perkb().await.unwrap(), Some(2_500));
            assert_eq!(copy.held_incoming().await.unwrap().unwrap().len(), 1);
            assert_eq!(copy.cltv_delta().await.unwrap(), Some(34));
            assert!(matches!(
                copy.prepare_self_payment(Preimage([9; 32]), Msat(8)).await,
                Err(NodeError::Transport { .. })
            ));
            assert_eq!(
                copy.create_hold_invoice(&spec, true).await,
                Err(HoldInvoiceError::Invalid("marked".into()))
            );
        });
        assert!(!copy.holds_htlcs_through_hook());
        assert_eq!(copy.implementation(), "marked");
        assert_eq!(copy.min_invoice_cltv(), 41);
        assert!(copy.chooses_route_hints());
        let asked = asked.lock().unwrap().clone();
        assert_eq!(
            asked,
            [
                "info".to_string(),
                "block_height".into(),
                "channels".into(),
                "graph".into(),
                "forwards 11".into(),
                "set_fee 103x1x0 5msat 6".into(),
                format!("pay_route 0 {hash} 60"),
                format!("wait_payment {hash} 1"),
                "sign_invoice lnbc".into(),
                "invoices".into(),
                "feerate_perkb".into(),
                "held_incoming".into(),
                "cltv_delta".into(),
                format!("prepare_self_payment {} 8msat", Preimage([9; 32]).payment_hash()),
                format!("create_hold_invoice {} true", PaymentHash([5; 32])),
            ]
        );
    }
}
