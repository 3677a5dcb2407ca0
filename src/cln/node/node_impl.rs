//! [`Node`] for [`ClnNode`]: each method one or two lightningd calls, translated.

use super::convert::{
    channel, forward, graph_edge, incoming_undecided, invoice, node_id, payment_hash, scid,
};
use super::payments::{payment_error, settled};
use super::rpc::{malformed, Rpc, SendpayParams, SetchannelParams};
use super::ClnNode;
use crate::engine::bolt11::{self, InvoiceSpec};
use crate::node::{
    Channel, FeeUpdate, Forward, GraphEdge, HeldIncoming, HoldInvoiceError, Invoice, Node, NodeInfo,
    NodeResult, PayOutcome, RouteHop,
};
use crate::types::{PaymentHash, Scid};
use cln_rpc::model::requests::{
    FeeratesRequest, FeeratesStyle, GetinfoRequest, ListchannelsRequest, ListconfigsRequest,
    ListforwardsRequest, ListinvoicesRequest, ListpeerchannelsRequest, SigninvoiceRequest,
    WaitsendpayRequest,
};
use cln_rpc::model::responses::{ListpeerchannelsChannelsHtlcsDirection, SendpayStatus};

impl Node for ClnNode {
    async fn feerate_perkb(&self) -> NodeResult<Option<u64>> {
        let r = self
            .call(&FeeratesRequest {
                style: FeeratesStyle::PERKB,
            })
            .await?;
        Ok(r.perkb.and_then(|k| k.opening).map(u64::from))
    }

    async fn info(&self) -> NodeResult<NodeInfo> {
        let info = self.call(&GetinfoRequest {}).await?;
        Ok(NodeInfo {
            id: node_id(&info.id),
            alias: info.alias,
            network: info.network,
            blockheight: info.blockheight,
            version: info.version,
        })
    }

    async fn block_height(&self) -> NodeResult<u32> {
        Ok(self.call(&GetinfoRequest {}).await?.blockheight)
    }

    async fn channels(&self) -> NodeResult<Vec<Channel>> {
        let request = ListpeerchannelsRequest {
            id: None,
            short_channel_id: None,
            channel_id: None,
        };
        self.call(&request)
            .await?
            .channels
            .into_iter()
            .map(channel)
            .collect()
    }

    async fn held_incoming(&self) -> NodeResult<Option<Vec<HeldIncoming>>> {
        let request = ListpeerchannelsRequest {
            id: None,
            short_channel_id: None,
            channel_id: None,
        };
        let mut held = Vec::new();
        for c in self.call(&request).await?.channels {
            // The hook names a channel by its short channel id, or by our local alias
            // before it has one: list the HTLC under both.
            let names: Vec<Scid> = c
                .short_channel_id
                .into_iter()
                .chain(c.alias.as_ref().and_then(|a| a.local))
                .map(scid)
                .collect();
            for h in c.htlcs.iter().flatten() {
                if h.direction != ListpeerchannelsChannelsHtlcsDirection::IN || !incoming_undecided(h.state) {
                    continue;
                }
                for &channel in &names {
                    held.push(HeldIncoming {
                        channel,
                        id: h.id,
                        payment_hash: payment_hash(&h.payment_hash),
                    });
                }
            }
        }
        Ok(Some(held))
    }

    async fn cltv_delta(&self) -> NodeResult<Option<u32>> {
        let request = ListconfigsRequest {
            config: Some("cltv-delta".into()),
        };
        let configs = self.call(&request).await?.configs;
        Ok(configs.and_then(|c| c.cltv_delta).map(|d| d.value_int))
    }

    async fn graph(&self) -> NodeResult<Vec<GraphEdge>> {
        let request = ListchannelsRequest {
            short_channel_id: None,
            source: None,
            destination: None,
        };
        Ok(self
            .call(&request)
            .await?
            .channels
            .into_iter()
            .map(graph_edge)
            .collect())
    }

    /// listforwards cannot filter by time, so this pages through every forward in creation
    /// order and keeps those received at or after `since`.
    async fn forwards(&self, since: u64) -> NodeResult<Vec<Forward>> {
        let since = since as f64;
        let mut conn = self.connect(ListforwardsRequest::METHOD).await?;
        conn.list_all::<ListforwardsRequest, _>(self.page_size, |f| {
            (f.received_time >= since).then(|| forward(f))
        })
        .await
    }

    /// Uses lightningd's default `enforcedelay` (ten minutes), during which the old fee is
    /// still accepted, so HTLCs sent before peers saw the update are not failed.
    async fn set_fee(&self, scid: Scid, fee: FeeUpdate) -> NodeResult<()> {
        let request = SetchannelParams {
            id: scid,
            feebase: fee.base,
            feeppm: fee.ppm,
        };
        let changed = self.call(&request).await?;
        // lightningd lists every channel it changed; an `id` naming one channel that changed
        // nothing, without an error, is not an answer we understand.
        if changed.channels.is_empty() {
            return Err(malformed(
                SetchannelParams::METHOD,
                format!("no channel changed for {scid}"),
            ));
        }
        Ok(())
    }

    /// `sendpay` then `waitsendpay`, on one connection.
    ///
    /// A route failure, whether lightningd reports it straight away (first hop unusable) or
    /// once the HTLC comes back, is `Ok(PayOutcome::Failed)`. When `timeout_secs` passes with
    /// the HTLC still in flight (waitsendpay's code 200) the answer is
    /// `Ok(PayOutcome::InFlight)`: the payment may yet succeed, so it must not be read as a
    /// failed route.
    async fn pay_route(
        &self,
        route: &[RouteHop],
        payment_hash: PaymentHash,
        timeout_secs: u32,
    ) -> NodeResult<PayOutcome> {
        let request = SendpayParams::new(route, payment_hash)?;
        let mut conn = self.connect(SendpayParams::METHOD).await?;
        match conn.try_call(&request).await? {
            // Paid before with this hash: lightningd hands back the preimage it already has.
            Ok(sent) if sent.status == SendpayStatus::COMPLETE => {
                return settled(SendpayParams::METHOD, sent.payment_preimage, payment_hash);
            }
            Ok(_pending) => {}
            Err(e) => return payment_error(SendpayParams::METHOD, e),
        }

        conn.wait_payment(payment_hash, timeout_secs).await
    }

    async fn wait_payment(&self, payment_hash: PaymentHash, timeout_secs: u32) -> NodeResult<PayOutcome> {
        let mut conn = self.connect(WaitsendpayRequest::METHOD).await?;
        conn.wait_payment(payment_hash, timeout_secs).await
    }

    async fn sign_invoice(&self, unsigned: &str) -> NodeResult<String> {
        let request = SigninvoiceRequest {
            invstring: unsigned.to_string(),
        };
        Ok(self.call(&request).await?.bolt11)
    }

    fn implementation(&self) -> &'static str {
        "core-lightning"
    }

    /// lightningd signs the invoice ballast built (ballast holds its HTLCs in
    /// `htlc_accepted`), so the route hints are ballast's and `private` says nothing new.
    async fn create_hold_invoice(
        &self,
        spec: &InvoiceSpec,
        _private: bool,
    ) -> Result<(String, [u8; 32]), HoldInvoiceError> {
        let unsigned = bolt11::build_unsigned(spec).map_err(|e| HoldInvoiceError::Invalid(e.to_string()))?;
        let signed = self
            .sign_invoice(&unsigned)
            .await
            .map_err(|e| HoldInvoiceError::Node(format!("lightningd could not sign the invoice: {e}")))?;
        bolt11::verify_signed(&signed, spec).map_err(|e| HoldInvoiceError::Node(e.to_string()))?;
        Ok((signed, spec.payment_secret))
    }

    async fn invoices(&self) -> NodeResult<Vec<Invoice>> {
        let mut conn = self.connect(ListinvoicesRequest::METHOD).await?;
        conn.list_all::<ListinvoicesRequest, _>(self.page_size, |i| Some(invoice(i)))
            .await
    }
}
