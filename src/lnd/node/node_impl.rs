//! [`Node`] for [`LndNode`], kept thin: each method either answers directly or hands over to
//! the file that holds its concern.

use super::convert::{forward, node_id};
use super::{LndNode, MIN_CLTV_DELTA};
use crate::engine::bolt11::InvoiceSpec;
use crate::node::{
    Channel, FeeUpdate, Forward, GraphEdge, HoldInvoiceError, Invoice, Node, NodeError, NodeInfo, NodeResult,
    PayOutcome, RouteHop,
};
use crate::types::{Msat, PaymentHash, Preimage, Scid};

impl Node for LndNode {
    /// LND holds a hold invoice's HTLCs itself until SettleInvoice or CancelInvoice.
    fn holds_htlcs_through_hook(&self) -> bool {
        false
    }

    async fn info(&self) -> NodeResult<NodeInfo> {
        let info = self.get_info().await?;
        Ok(NodeInfo {
            id: node_id("GetInfo", &info.identity_pubkey)?,
            alias: info.alias,
            network: info.chains.first().map(|c| c.network.clone()).unwrap_or_default(),
            blockheight: info.block_height,
            version: info.version,
        })
    }

    async fn block_height(&self) -> NodeResult<u32> {
        Ok(self.get_info().await?.block_height)
    }

    async fn channels(&self) -> NodeResult<Vec<Channel>> {
        self.all_channels().await
    }

    async fn graph(&self) -> NodeResult<Vec<GraphEdge>> {
        self.graph_edges().await
    }

    async fn forwards(&self, since: u64) -> NodeResult<Vec<Forward>> {
        Ok(self.forwarding_events(since).await?.iter().map(forward).collect())
    }
    async fn set_fee(&self, scid: Scid, fee: FeeUpdate) -> NodeResult<()> {
        self.update_fee(scid, fee).await
    }

    async fn pay_route(
        &self,
        route: &[RouteHop],
        payment_hash: PaymentHash,
        timeout_secs: u32,
    ) -> NodeResult<PayOutcome> {
        self.send_to_route(route, payment_hash, timeout_secs).await
    }

    async fn wait_payment(&self, payment_hash: PaymentHash, timeout_secs: u32) -> NodeResult<PayOutcome> {
        self.track_payment(payment_hash, timeout_secs).await
    }

    async fn sign_invoice(&self, _unsigned: &str) -> NodeResult<String> {
        Err(NodeError::Rejected {
            method: "SignInvoice",
            code: None,
            message: "LND cannot sign a raw invoice; use AddHoldInvoice".into(),
        })
    }

    fn implementation(&self) -> &'static str {
        "lnd"
    }

    fn min_invoice_cltv(&self) -> u32 {
        MIN_CLTV_DELTA
    }

    /// AddHoldInvoice picks its own route hints; it can only be told whether to add them.
    fn chooses_route_hints(&self) -> bool {
        true
    }

    /// LND builds the hold invoice itself (and holds its HTLCs), choosing its own payment
    /// secret: the invoice is checked against `spec` with that secret.
    async fn create_hold_invoice(
        &self,
        spec: &InvoiceSpec,
        private: bool,
    ) -> Result<(String, [u8; 32]), HoldInvoiceError> {
        self.add_checked_hold_invoice(spec, private).await
    }

    async fn invoices(&self) -> NodeResult<Vec<Invoice>> {
        self.all_invoices().await
    }

    async fn feerate_perkb(&self) -> NodeResult<Option<u64>> {
        Ok(None)
    }

    async fn prepare_self_payment(&self, preimage: Preimage, amount: Msat) -> NodeResult<()> {
        self.add_self_payment_invoice(preimage, amount).await
    }
}
