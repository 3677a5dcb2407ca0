//! The node a running ballast talks to. An enum rather than a trait object: the `Node`
//! trait's async methods are not object-safe, and there are exactly two implementations.

use crate::cln::ClnNode;
use crate::engine::bolt11::{self, Description, InvoiceSpec};
use crate::lnd::node::{HoldInvoiceRequest, LndNode};
use crate::node::{
    Channel, FeeUpdate, Forward, GraphEdge, HeldIncoming, Invoice, Node, NodeInfo, NodeResult, PayOutcome,
    RouteHop,
};
use crate::types::{Msat, PaymentHash, Preimage, Scid};

#[derive(Clone)]
pub enum Backend {
    Cln(ClnNode),
    // Boxed: the gRPC clients make it far larger than the CLN adapter.
    Lnd(Box<LndNode>),
}

/// Why a hold invoice could not be made.
#[derive(Debug)]
pub enum HoldInvoiceError {
    /// The request cannot be expressed as an invoice.
    Invalid(String),
    /// The node refused, failed, or returned an invoice for something else.
    Node(String),
}

impl Backend {
    /// For `ballast-status`: which daemon this instance drives.
    pub fn implementation(&self) -> &'static str {
        match self {
            Backend::Cln(_) => "core-lightning",
            Backend::Lnd(_) => "lnd",
        }
    }

    /// The smallest final CLTV delta the node lets a hold invoice ask for, beyond ballast's
    /// own rules (LND refuses a `cltv_expiry` under `routing.MinCLTVDelta`).
    pub fn min_invoice_cltv(&self) -> u32 {
        match self {
            Backend::Cln(_) => 0,
            Backend::Lnd(_) => crate::lnd::node::MIN_CLTV_DELTA,
        }
    }

    /// Makes the BOLT11 string of a hold invoice and returns it with its payment secret.
    /// Core Lightning signs the invoice ballast built (ballast holds the HTLCs in
    /// `htlc_accepted`); LND builds its own hold invoice and holds the HTLCs itself.
    /// Either way the result is checked to pay `spec`'s hash and amount before anyone
    /// sees it.
    pub async fn hold_invoice(
        &self,
        spec: &InvoiceSpec,
        private: bool,
    ) -> Result<(String, [u8; 32]), HoldInvoiceError> {
        match self {
            Backend::Cln(n) => {
                let unsigned =
                    bolt11::build_unsigned(spec).map_err(|e| HoldInvoiceError::Invalid(e.to_string()))?;
                let signed = n.sign_invoice(&unsigned).await.map_err(|e| {
                    HoldInvoiceError::Node(format!("lightningd could not sign the invoice: {e}"))
                })?;
                bolt11::verify_signed(&signed, spec).map_err(|e| HoldInvoiceError::Node(e.to_string()))?;
                Ok((signed, spec.payment_secret))
            }
            Backend::Lnd(n) => {
                let (memo, description_hash) = match &spec.description {
                    Description::Text(t) => ((!t.is_empty()).then(|| t.clone()), None),
                    Description::Hash(h) => (None, Some(*h)),
                };
                let req = HoldInvoiceRequest {
                    payment_hash: spec.payment_hash,
                    amount: spec.amount,
                    memo,
                    description_hash,
                    expiry_secs: spec.expiry_secs,
                    cltv_expiry: spec.min_final_cltv,
                    private,
                };
                let bolt11 = n.add_hold_invoice(&req).await.map_err(|e| {
                    HoldInvoiceError::Node(format!("LND could not add the hold invoice: {e}"))
                })?;
                let d = bolt11::decode(&bolt11).map_err(|e| {
                    HoldInvoiceError::Node(format!("LND returned an unreadable invoice: {e}"))
                })?;
                let mut checked = spec.clone();
                checked.payment_secret = d.payment_secret;
                bolt11::verify_signed(&bolt11, &checked)
                    .map_err(|e| HoldInvoiceError::Node(e.to_string()))?;
                Ok((bolt11, d.payment_secret))
            }
        }
    }
}

macro_rules! each {
    ($self:ident, $n:ident => $e:expr) => {
        match $self {
            Backend::Cln($n) => $e,
            Backend::Lnd($n) => $e,
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
    async fn held_incoming(&self) -> NodeResult<Option<Vec<HeldIncoming>>> {
        each!(self, n => n.held_incoming().await)
    }
    fn holds_htlcs_through_hook(&self) -> bool {
        each!(self, n => n.holds_htlcs_through_hook())
    }
    async fn cltv_delta(&self) -> NodeResult<Option<u32>> {
        each!(self, n => n.cltv_delta().await)
    }
}
