//! The node a running ballast talks to. An enum rather than a trait object: the `Node`
//! trait's async methods are not object-safe, and there are exactly two implementations.

use crate::cln::ClnNode;
use crate::node::{
    Channel, FeeUpdate, Forward, GraphEdge, Invoice, Node, NodeInfo, NodeResult, PayOutcome, RouteHop,
};
use crate::types::{Msat, PaymentHash, Preimage, Scid};

#[derive(Clone)]
pub enum Backend {
    Cln(ClnNode),
}

impl Backend {
    /// For `ballast-status`: which daemon this instance drives.
    pub fn implementation(&self) -> &'static str {
        match self {
            Backend::Cln(_) => "core-lightning",
        }
    }
}

macro_rules! each {
    ($self:ident, $n:ident => $e:expr) => {
        match $self {
            Backend::Cln($n) => $e,
        }
    };
}

impl Node for Backend {
    async fn info(&self) -> NodeResult<NodeInfo> {
        each!(self, n => n.info().await)
    }
    async fn block_height(&self) -> NodeResult<u32> {
        each!(self, n => n.block_height().await)
    }
    async fn channels(&self) -> NodeResult<Vec<Channel>> {
        each!(self, n => n.channels().await)
    }
    async fn graph(&self) -> NodeResult<Vec<GraphEdge>> {
        each!(self, n => n.graph().await)
    }
    async fn forwards(&self, since: u64) -> NodeResult<Vec<Forward>> {
        each!(self, n => n.forwards(since).await)
    }
    async fn set_fee(&self, scid: Scid, fee: FeeUpdate) -> NodeResult<()> {
        each!(self, n => n.set_fee(scid, fee).await)
    }
    async fn pay_route(
        &self,
        route: &[RouteHop],
        hash: PaymentHash,
        timeout_secs: u32,
    ) -> NodeResult<PayOutcome> {
        each!(self, n => n.pay_route(route, hash, timeout_secs).await)
    }
    async fn wait_payment(&self, hash: PaymentHash, timeout_secs: u32) -> NodeResult<PayOutcome> {
        each!(self, n => n.wait_payment(hash, timeout_secs).await)
    }
    async fn sign_invoice(&self, unsigned: &str) -> NodeResult<String> {
        each!(self, n => n.sign_invoice(unsigned).await)
    }
    async fn invoices(&self) -> NodeResult<Vec<Invoice>> {
        each!(self, n => n.invoices().await)
    }
    async fn feerate_perkb(&self) -> NodeResult<Option<u64>> {
        each!(self, n => n.feerate_perkb().await)
    }
    async fn prepare_self_payment(&self, preimage: Preimage, amount: Msat) -> NodeResult<()> {
        each!(self, n => n.prepare_self_payment(preimage, amount).await)
    }
}
