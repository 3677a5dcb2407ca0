//! Hold invoices on LND: adding, settling and cancelling them through `invoicesrpc`, looking
//! them up, and the hold-expiry setting that bounds how long LND keeps their HTLCs.

use super::convert::{invoice_update, msat_i64};
use super::errors::{grpc_error, malformed};
use super::{HoldInvoiceRequest, LndInvoiceState, LndNode, HOLD_EXPIRY_DELTA_KEY};
use crate::engine::bolt11::{self, Description, InvoiceSpec};
use crate::lnd::proto::invoicesrpc::{AddHoldInvoiceRequest, CancelInvoiceMsg, SettleInvoiceMsg};
use crate::lnd::proto::lnrpc;
use crate::node::{HoldInvoiceError, NodeResult};
use crate::types::{PaymentHash, Preimage};
use tonic::Code;

impl LndNode {
    /// Adds a hold invoice; returns its BOLT11 payment request.
    pub async fn add_hold_invoice(&self, r: &HoldInvoiceRequest) -> NodeResult<String> {
        const M: &str = "AddHoldInvoice";
        let request = AddHoldInvoiceRequest {
            memo: r.memo.clone().unwrap_or_default(),
            hash: r.payment_hash.0.to_vec(),
            value_msat: msat_i64(M, r.amount)?,
            description_hash: r.description_hash.map(|h| h.to_vec()).unwrap_or_default(),
            expiry: i64::try_from(r.expiry_secs).map_err(|_| malformed(M, "expiry too large"))?,
            fallback_addr: String::new(),
            cltv_expiry: u64::from(r.cltv_expiry),
            route_hints: Vec::new(),
            private: r.private,
        };
        let resp = self
            .invoices
            .clone()
            .add_hold_invoice(request)
            .await
            .map_err(|s| grpc_error(M, s))?;
        Ok(resp.into_inner().payment_request)
    }

    /// Settles an accepted hold invoice with its preimage.
    pub async fn settle_invoice(&self, preimage: Preimage) -> NodeResult<()> {
        let request = SettleInvoiceMsg {
            preimage: preimage.0.to_vec(),
        };
        self.invoices
            .clone()
            .settle_invoice(request)
            .await
            .map_err(|s| grpc_error("SettleInvoice", s))?;
        Ok(())
    }

    /// Cancels a hold invoice (failing back any HTLCs it holds).
    pub async fn cancel_invoice(&self, hash: PaymentHash) -> NodeResult<()> {
        let request = CancelInvoiceMsg {
            payment_hash: hash.0.to_vec(),
        };
        self.invoices
            .clone()
            .cancel_invoice(request)
            .await
            .map_err(|s| grpc_error("CancelInvoice", s))?;
        Ok(())
    }

    /// Whether LND has an invoice for `hash`. Asked before subscribing: LND answers a
    /// subscription to an unknown hash by waiting for it to appear, forever.
    pub async fn has_invoice(&self, hash: PaymentHash) -> NodeResult<bool> {
        match self
            .lightning
            .clone()
            .lookup_invoice(lnrpc::PaymentHash {
                r_hash: hash.0.to_vec(),
            })
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if s.code() == Code::NotFound || s.message().contains("unable to locate invoice") => {
                Ok(false)
            }
            Err(s) => Err(grpc_error("LookupInvoice", s)),
        }
    }

    /// The state LND reports for the invoice of `hash`.
    pub(crate) async fn invoice_state(&self, hash: PaymentHash) -> NodeResult<LndInvoiceState> {
        let i = self
            .lightning
            .clone()
            .lookup_invoice(lnrpc::PaymentHash {
                r_hash: hash.0.to_vec(),
            })
            .await
            .map_err(|s| grpc_error("LookupInvoice", s))?
            .into_inner();
        Ok(invoice_update(&i).state)
    }

    /// lnd's `invoices.holdexpirydelta`, from GetDebugInfo (lnd 0.18 and later, with a
    /// macaroon that may read the node's info). `Ok(None)` when LND's configuration does
    /// not show it.
    pub async fn hold_expiry_delta(&self) -> NodeResult<Option<u32>> {
        const M: &str = "GetDebugInfo";
        let info = self
            .lightning
            .clone()
            .get_debug_info(lnrpc::GetDebugInfoRequest { include_log: false })
            .await
            .map_err(|s| grpc_error(M, s))?
            .into_inner();
        match info.config.get(HOLD_EXPIRY_DELTA_KEY) {
            None => Ok(None),
            Some(v) => v
                .trim()
                .parse()
                .map(Some)
                .map_err(|_| malformed(M, format!("{HOLD_EXPIRY_DELTA_KEY} is '{v}'"))),
        }
    }

    /// LND builds the hold invoice itself (and holds its HTLCs), choosing its own payment
    /// secret: the invoice is checked against `spec` with that secret.
    pub(super) async fn add_checked_hold_invoice(
        &self,
        spec: &InvoiceSpec,
        private: bool,
    ) -> Result<(String, [u8; 32]), HoldInvoiceError> {
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
        let invoice = self
            .add_hold_invoice(&req)
            .await
            .map_err(|e| HoldInvoiceError::Node(format!("LND could not add the hold invoice: {e}")))?;
        let d = bolt11::decode(&invoice)
            .map_err(|e| HoldInvoiceError::Node(format!("LND returned an unreadable invoice: {e}")))?;
        let mut checked = spec.clone();
        checked.payment_secret = d.payment_secret;
        bolt11::verify_signed(&invoice, &checked).map_err(|e| HoldInvoiceError::Node(e.to_string()))?;
        Ok((invoice, d.payment_secret))
    }
}
