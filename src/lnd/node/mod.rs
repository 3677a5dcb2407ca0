//! [`LndNode`]: the [`Node`] trait over LND's gRPC API, plus the hold-invoice, HTLC-event
//! and block subscriptions the LND sidecar needs.
//!
//! The work is split by concern: `convert` turns LND's messages into ballast's types,
//! `listings`, `fees`, `payments` and `hold` hold the calls behind each part of [`Node`],
//! `streams` the subscriptions, `errors` how gRPC failures are sorted, and `node_impl` the
//! thin [`Node`] implementation delegating to them.

mod convert;
mod errors;
mod fees;
mod hold;
mod listings;
mod node_impl;
mod payments;
mod streams;
#[cfg(test)]
mod tests;

pub(crate) use errors::grpc_error;
use errors::{error_chain, status_line};

use super::config::Resolved;
use super::macaroon::MacaroonInterceptor;
use super::proto::chainrpc::chain_notifier_client::ChainNotifierClient;
use super::proto::invoicesrpc::invoices_client::InvoicesClient;
use super::proto::lnrpc::{self, lightning_client::LightningClient};
use super::proto::routerrpc::router_client::RouterClient;
use super::tls::PinnedConnector;
use crate::node::NodeResult;
use crate::types::{Msat, PaymentHash, Scid};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel as GrpcChannel, Endpoint};
use tonic::Code;

type Svc = InterceptedService<GrpcChannel, MacaroonInterceptor>;
/// payment_addr and amount of our own invoices for circular payments, by hash.
type SelfPayments = HashMap<PaymentHash, ([u8; 32], Msat)>;

/// Largest answer we accept (DescribeGraph on mainnet is tens of MB).
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

/// lnd's `routing.MinCLTVDelta`: the smallest `cltv_expiry` AddInvoice and AddHoldInvoice
/// take (invoicesrpc.AddInvoice), and the smallest time-lock delta UpdateChannelPolicy
/// sets (`validateCltvDeltaBounds`).
pub const MIN_CLTV_DELTA: u32 = 24;
/// lnd's `lncfg.DefaultHoldInvoiceExpiryDelta` (`DefaultIncomingBroadcastDelta` 16 + 2), the
/// default of `invoices.holdexpirydelta`: lnd cancels an accepted hold invoice itself once
/// its earliest HTLC is this many blocks from expiry.
pub(crate) const DEFAULT_HOLD_EXPIRY_DELTA: u32 = 18;
/// The key of that option in GetDebugInfo's flattened configuration.
const HOLD_EXPIRY_DELTA_KEY: &str = "invoices.holdexpirydelta";

/// A hold invoice to add (`invoicesrpc.AddHoldInvoice`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldInvoiceRequest {
    pub payment_hash: PaymentHash,
    pub amount: Msat,
    pub memo: Option<String>,
    pub description_hash: Option<[u8; 32]>,
    pub expiry_secs: u64,
    pub cltv_expiry: u32,
    pub private: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LndInvoiceState {
    Open,
    Accepted,
    Settled,
    Canceled,
}

/// One HTLC paying an invoice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceHtlc {
    pub scid: Scid,
    pub htlc_index: u64,
    pub amount: Msat,
    pub expiry_height: u32,
    /// Height and time at which LND accepted it (which may be long before ballast sees it).
    pub accept_height: u32,
    pub accept_time: u64,
    /// ACCEPTED, SETTLED or CANCELED.
    pub state: String,
}

/// An invoice's state as `SubscribeSingleInvoice` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceUpdate {
    pub state: LndInvoiceState,
    pub htlcs: Vec<InvoiceHtlc>,
    pub amount_paid: Msat,
}

/// A forwarded HTLC resolving (from `routerrpc.SubscribeHtlcEvents`, FORWARD events only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardEvent {
    pub in_channel: Scid,
    pub out_channel: Scid,
    pub in_htlc_id: u64,
    pub out_htlc_id: u64,
    /// True on settle, false on forward_fail/link_fail.
    pub settled: bool,
    /// (in, out) from the FORWARD event that offered the HTLC, when this stream saw it;
    /// `None` when the HTLC was offered before the subscription started.
    pub amounts: Option<(Msat, Msat)>,
}

/// A connection to LND. Cloning is cheap and clones share the connection.
#[derive(Clone)]
pub struct LndNode {
    lightning: LightningClient<Svc>,
    invoices: InvoicesClient<Svc>,
    router: RouterClient<Svc>,
    chain: ChainNotifierClient<Svc>,
    network: String,
    /// payment_addr (and amount) of the invoices `prepare_self_payment` made, by hash:
    /// `pay_route` must put them in the final hop's MPP record.
    self_payments: Arc<Mutex<SelfPayments>>,
}

impl std::fmt::Debug for LndNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LndNode")
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

impl LndNode {
    /// Connects (TLS pinned to `tlscertpath`, macaroon from `macaroonpath`), then checks
    /// with GetInfo that LND answers and is on the configured network. Every error is one
    /// line saying what is wrong.
    pub async fn connect(r: &Resolved) -> anyhow::Result<LndNode> {
        let interceptor = MacaroonInterceptor::from_file(&r.macaroonpath).map_err(anyhow::Error::msg)?;
        let connector = PinnedConnector::new(r).map_err(anyhow::Error::msg)?;
        let endpoint = Endpoint::from_shared(format!("http://{}", r.rpcserver))
            .map_err(|e| anyhow::anyhow!("invalid LND rpcserver '{}': {e}", r.rpcserver))?
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        let c = connector.clone();
        let service = tower::service_fn(move |_uri: tonic::transport::Uri| {
            let c = c.clone();
            async move { c.connect().await }
        });
        let channel = match endpoint.connect_with_connector(service).await {
            Ok(ch) => ch,
            Err(e) => {
                if connector.saw_mismatch() {
                    anyhow::bail!("LND's TLS certificate does not match {}", r.tlscertpath.display());
                }
                anyhow::bail!("cannot reach LND at {}: {}", r.rpcserver, error_chain(&e));
            }
        };
        let node = LndNode {
            lightning: LightningClient::with_interceptor(channel.clone(), interceptor.clone())
                .max_decoding_message_size(MAX_MESSAGE),
            invoices: InvoicesClient::with_interceptor(channel.clone(), interceptor.clone())
                .max_decoding_message_size(MAX_MESSAGE),
            router: RouterClient::with_interceptor(channel.clone(), interceptor.clone())
                .max_decoding_message_size(MAX_MESSAGE),
            chain: ChainNotifierClient::with_interceptor(channel, interceptor),
            network: r.network.clone(),
            self_payments: Arc::default(),
        };
        let info = match node.lightning.clone().get_info(lnrpc::GetInfoRequest {}).await {
            Ok(info) => info.into_inner(),
            Err(s) if s.code() == Code::Unauthenticated || s.code() == Code::PermissionDenied => {
                anyhow::bail!(
                    "LND at {} refused the macaroon {}: {}",
                    r.rpcserver,
                    r.macaroonpath.display(),
                    s.message()
                );
            }
            Err(s) => {
                if connector.saw_mismatch() {
                    anyhow::bail!("LND's TLS certificate does not match {}", r.tlscertpath.display());
                }
                anyhow::bail!(
                    "cannot reach LND at {}: GetInfo failed: {}",
                    r.rpcserver,
                    status_line(&s)
                );
            }
        };
        let actual = info.chains.first().map(|c| c.network.as_str()).unwrap_or("");
        if actual != r.network {
            anyhow::bail!(
                "LND at {} is on network '{}', but ballast is configured for '{}'",
                r.rpcserver,
                actual,
                r.network
            );
        }
        Ok(node)
    }

    /// The network this node was checked to be on.
    pub fn network(&self) -> &str {
        &self.network
    }

    pub(super) async fn get_info(&self) -> NodeResult<lnrpc::GetInfoResponse> {
        Ok(self
            .lightning
            .clone()
            .get_info(lnrpc::GetInfoRequest {})
            .await
            .map_err(|s| grpc_error("GetInfo", s))?
            .into_inner())
    }

    pub(super) async fn list_channels(&self) -> NodeResult<Vec<lnrpc::Channel>> {
        Ok(self
            .lightning
            .clone()
            .list_channels(lnrpc::ListChannelsRequest::default())
            .await
            .map_err(|s| grpc_error("ListChannels", s))?
            .into_inner()
            .channels)
    }

    /// The graph edge of one channel; `None` when LND does not know it (yet).
    pub(super) async fn chan_info(&self, chan_id: u64) -> NodeResult<Option<lnrpc::ChannelEdge>> {
        match self
            .lightning
            .clone()
            .get_chan_info(lnrpc::ChanInfoRequest { chan_id })
            .await
        {
            Ok(e) => Ok(Some(e.into_inner())),
            // LND answers an unknown edge with code Unknown and its graph store's text
            // ("edge not found"; a zombie edge for a closed one): not an error here.
            Err(s)
                if s.code() == Code::NotFound
                    || ["unable to find", "edge not found", "zombie"]
                        .iter()
                        .any(|t| s.message().contains(t)) =>
            {
                Ok(None)
            }
            Err(s) => Err(grpc_error("GetChanInfo", s)),
        }
    }

    /// Our own identity, for telling our side of a graph edge.
    pub(super) async fn own_id(&self) -> NodeResult<String> {
        Ok(self.get_info().await?.identity_pubkey)
    }
}
