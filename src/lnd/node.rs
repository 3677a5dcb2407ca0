//! [`LndNode`]: the [`Node`] trait over LND's gRPC API, plus the hold-invoice, HTLC-event
//! and block subscriptions the LND sidecar needs.

use super::config::Resolved;
use super::macaroon::MacaroonInterceptor;
use super::proto::chainrpc::chain_notifier_client::ChainNotifierClient;
use super::proto::chainrpc::BlockEpoch;
use super::proto::invoicesrpc::invoices_client::InvoicesClient;
use super::proto::invoicesrpc::{
    AddHoldInvoiceRequest, CancelInvoiceMsg, SettleInvoiceMsg, SubscribeSingleInvoiceRequest,
};
use super::proto::lnrpc::{self, lightning_client::LightningClient};
use super::proto::routerrpc::{self, router_client::RouterClient};
use super::tls::PinnedConnector;
use crate::engine::bolt11::{self, Description, InvoiceSpec};
use crate::node::{
    Channel, ChannelState, FeeUpdate, Forward, ForwardStatus, GraphEdge, HoldInvoiceError, HtlcDirection,
    Invoice, Node, NodeError, NodeInfo, NodeResult, PayOutcome, PeerPolicy, PendingHtlc, RouteHop,
};
use crate::types::{Msat, NodeId, PaymentHash, Preimage, Scid};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel as GrpcChannel, Endpoint};
use tonic::{Code, Status};

type Svc = InterceptedService<GrpcChannel, MacaroonInterceptor>;
/// payment_addr and amount of our own invoices for circular payments, by hash.
type SelfPayments = HashMap<PaymentHash, ([u8; 32], Msat)>;

/// Largest answer we accept (DescribeGraph on mainnet is tens of MB).
const MAX_MESSAGE: usize = 256 * 1024 * 1024;
const FORWARDS_PAGE: u32 = 10_000;
const INVOICES_PAGE: u64 = 1_000;
/// Buffer of each subscription channel.
const SUBSCRIPTION_BUFFER: usize = 256;

/// lnd's `routing.MinCLTVDelta`: the smallest `cltv_expiry` AddInvoice and AddHoldInvoice
/// take (invoicesrpc.AddInvoice), and the smallest time-lock delta UpdateChannelPolicy
/// sets (`validateCltvDeltaBounds`).
pub const MIN_CLTV_DELTA: u32 = 24;
/// lnd's `routing.BlockPadding`: blocks lnd adds to a final CLTV so that a block found while
/// the HTLC travels does not leave it under the receiver's minimum.
const BLOCK_PADDING: u32 = 3;
/// lnd's `lncfg.DefaultHoldInvoiceExpiryDelta` (`DefaultIncomingBroadcastDelta` 16 + 2), the
/// default of `invoices.holdexpirydelta`: lnd cancels an accepted hold invoice itself once
/// its earliest HTLC is this many blocks from expiry.
pub const DEFAULT_HOLD_EXPIRY_DELTA: u32 = 18;
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
    pub async fn invoice_state(&self, hash: PaymentHash) -> NodeResult<LndInvoiceState> {
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

    /// The amounts and settle time of one settled forward, from ForwardingHistory since
    /// `since`: matched on both channels and both HTLC ids (which lnd 0.20 and later
    /// record). `None` when it is not (yet) there: lnd writes its forwarding log in
    /// batches, every 15 seconds by default.
    pub async fn forward_amounts(&self, ev: &ForwardEvent, since: u64) -> NodeResult<Option<Forward>> {
        Ok(self
            .forwarding_events(since)
            .await?
            .iter()
            .find(|f| {
                f.chan_id_in == ev.in_channel.as_u64()
                    && f.chan_id_out == ev.out_channel.as_u64()
                    && f.incoming_htlc_id == Some(ev.in_htlc_id)
                    && f.outgoing_htlc_id == Some(ev.out_htlc_id)
            })
            .map(forward))
    }

    /// Every forwarding event LND logged since `since`, page by page.
    async fn forwarding_events(&self, since: u64) -> NodeResult<Vec<lnrpc::ForwardingEvent>> {
        const M: &str = "ForwardingHistory";
        let mut out = Vec::new();
        let mut offset = 0u32;
        loop {
            let page = self
                .lightning
                .clone()
                .forwarding_history(lnrpc::ForwardingHistoryRequest {
                    start_time: since,
                    end_time: 0,
                    index_offset: offset,
                    num_max_events: FORWARDS_PAGE,
                })
                .await
                .map_err(|s| grpc_error(M, s))?
                .into_inner();
            let n = page.forwarding_events.len();
            out.extend(page.forwarding_events);
            if n < FORWARDS_PAGE as usize {
                return Ok(out);
            }
            if page.last_offset_index <= offset {
                return Err(malformed(
                    M,
                    format!("page from {offset} ended at {}", page.last_offset_index),
                ));
            }
            offset = page.last_offset_index;
        }
    }

    /// Updates of one invoice, starting with its current state. The channel carries an
    /// `Err` and closes when the stream breaks or ends.
    pub async fn subscribe_single_invoice(
        &self,
        hash: PaymentHash,
    ) -> NodeResult<mpsc::Receiver<NodeResult<InvoiceUpdate>>> {
        const M: &str = "SubscribeSingleInvoice";
        let request = SubscribeSingleInvoiceRequest {
            r_hash: hash.0.to_vec(),
        };
        let stream = self
            .invoices
            .clone()
            .subscribe_single_invoice(request)
            .await
            .map_err(|s| grpc_error(M, s))?
            .into_inner();
        Ok(forward_stream(M, stream, |i| Some(Ok(invoice_update(&i)))))
    }

    /// Forwards through our node as they settle or fail.
    pub async fn subscribe_forward_events(&self) -> NodeResult<mpsc::Receiver<NodeResult<ForwardEvent>>> {
        const M: &str = "SubscribeHtlcEvents";
        let stream = self
            .router
            .clone()
            .subscribe_htlc_events(routerrpc::SubscribeHtlcEventsRequest {})
            .await
            .map_err(|s| grpc_error(M, s))?
            .into_inner();
        // Amounts come with the FORWARD event, the outcome with a later one: remember the
        // first until the second arrives.
        let offered = std::sync::Mutex::new(std::collections::HashMap::new());
        Ok(forward_stream(M, stream, move |e| {
            let mut offered = offered.lock().unwrap_or_else(|p| p.into_inner());
            forward_event(&e, &mut offered).map(Ok)
        }))
    }

    /// Heights of new blocks, starting with the current tip.
    pub async fn subscribe_blocks(&self) -> NodeResult<mpsc::Receiver<NodeResult<u32>>> {
        const M: &str = "RegisterBlockEpochNtfn";
        let stream = self
            .chain
            .clone()
            .register_block_epoch_ntfn(BlockEpoch {
                hash: Vec::new(),
                height: 0,
            })
            .await
            .map_err(|s| grpc_error(M, s))?
            .into_inner();
        Ok(forward_stream(M, stream, |b| Some(Ok(b.height))))
    }

    async fn get_info(&self) -> NodeResult<lnrpc::GetInfoResponse> {
        Ok(self
            .lightning
            .clone()
            .get_info(lnrpc::GetInfoRequest {})
            .await
            .map_err(|s| grpc_error("GetInfo", s))?
            .into_inner())
    }

    async fn list_channels(&self) -> NodeResult<Vec<lnrpc::Channel>> {
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
    async fn chan_info(&self, chan_id: u64) -> NodeResult<Option<lnrpc::ChannelEdge>> {
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
    async fn own_id(&self) -> NodeResult<String> {
        Ok(self.get_info().await?.identity_pubkey)
    }
}

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
        let me = self.own_id().await?;
        let open = self.list_channels().await?;
        let fees: HashMap<u64, (i64, i64)> = self
            .lightning
            .clone()
            .fee_report(lnrpc::FeeReportRequest {})
            .await
            .map_err(|s| grpc_error("FeeReport", s))?
            .into_inner()
            .channel_fees
            .into_iter()
            .map(|f| (f.chan_id, (f.base_fee_msat, f.fee_per_mil)))
            .collect();
        // One GetChanInfo per channel for the peer's policy, all in flight at once over the
        // one HTTP/2 connection: a node with a hundred channels should not wait for a
        // hundred round trips in a row.
        let mut lookups = tokio::task::JoinSet::new();
        for (i, c) in open.iter().enumerate().filter(|(_, c)| c.chan_id != 0) {
            let node = self.clone();
            let id = c.chan_id;
            lookups.spawn(async move { (i, node.chan_info(id).await) });
        }
        let mut edges: Vec<Option<lnrpc::ChannelEdge>> = vec![None; open.len()];
        while let Some(done) = lookups.join_next().await {
            let (i, edge) = done.map_err(|e| malformed("GetChanInfo", format!("lookup task failed: {e}")))?;
            edges[i] = edge?;
        }
        let mut out = Vec::with_capacity(open.len());
        for (c, edge) in open.into_iter().zip(edges) {
            let (base, ppm) = fees.get(&c.chan_id).copied().unwrap_or((0, 0));
            let remote_policy = edge.and_then(|e| peer_policy(&e, &me, &c.remote_pubkey));
            out.push(open_channel(c, base, ppm, remote_policy)?);
        }
        const P: &str = "PendingChannels";
        let pending = self
            .lightning
            .clone()
            .pending_channels(lnrpc::PendingChannelsRequest {})
            .await
            .map_err(|s| grpc_error(P, s))?
            .into_inner();
        for p in pending.pending_open_channels {
            out.push(pending_channel(p.channel, ChannelState::Opening, "PENDING_OPEN")?);
        }
        for p in pending.waiting_close_channels {
            out.push(pending_channel(
                p.channel,
                ChannelState::Closing,
                "WAITING_CLOSE",
            )?);
        }
        for p in pending.pending_closing_channels {
            out.push(pending_channel(
                p.channel,
                ChannelState::Closing,
                "PENDING_CLOSE",
            )?);
        }
        for p in pending.pending_force_closing_channels {
            out.push(pending_channel(
                p.channel,
                ChannelState::ForceClosing,
                "PENDING_FORCE_CLOSE",
            )?);
        }
        Ok(out)
    }

    async fn graph(&self) -> NodeResult<Vec<GraphEdge>> {
        const M: &str = "DescribeGraph";
        let graph = self
            .lightning
            .clone()
            .describe_graph(lnrpc::ChannelGraphRequest {
                include_unannounced: true,
            })
            .await
            .map_err(|s| grpc_error(M, s))?
            .into_inner();
        let mut out = Vec::with_capacity(graph.edges.len() * 2);
        for e in &graph.edges {
            let n1 = node_id(M, &e.node1_pub)?;
            let n2 = node_id(M, &e.node2_pub)?;
            for (src, dst, pol) in [(n1, n2, &e.node1_policy), (n2, n1, &e.node2_policy)] {
                if let Some(p) = pol {
                    out.push(graph_edge(M, e, src, dst, p)?);
                }
            }
        }
        Ok(out)
    }

    async fn forwards(&self, since: u64) -> NodeResult<Vec<Forward>> {
        Ok(self.forwarding_events(since).await?.iter().map(forward).collect())
    }

    async fn set_fee(&self, scid: Scid, fee: FeeUpdate) -> NodeResult<()> {
        const M: &str = "UpdateChannelPolicy";
        let channel = self
            .list_channels()
            .await?
            .into_iter()
            .find(|c| c.chan_id == scid.as_u64())
            .ok_or_else(|| NodeError::Rejected {
                method: M,
                code: None,
                message: format!("no open channel {scid}"),
            })?;
        let me = self.own_id().await?;
        let current = self
            .chan_info(scid.as_u64())
            .await?
            .and_then(|e| own_policy(&e, &me).map(|p| p.time_lock_delta))
            .filter(|d| *d > 0)
            .ok_or_else(|| NodeError::Rejected {
                method: M,
                code: None,
                message: format!("LND has no policy of ours for {scid} yet"),
            })?;
        // The delta is re-sent unchanged, except that LND refuses one below its minimum
        // (set under an older lnd, whose minimum was lower): that one is raised to it.
        let time_lock_delta = current.max(MIN_CLTV_DELTA);
        if time_lock_delta != current {
            log::info!(
                "{scid}: time-lock delta {current} is below LND's minimum {MIN_CLTV_DELTA}; raising it with the fee update"
            );
        }
        let request = lnrpc::PolicyUpdateRequest {
            scope: Some(lnrpc::policy_update_request::Scope::ChanPoint(chan_point(
                M,
                &channel.channel_point,
            )?)),
            base_fee_msat: msat_i64(M, fee.base)?,
            fee_rate: 0.0,
            fee_rate_ppm: fee.ppm,
            time_lock_delta,
            max_htlc_msat: 0,
            min_htlc_msat: 0,
            min_htlc_msat_specified: false,
        };
        let resp = self
            .lightning
            .clone()
            .update_channel_policy(request)
            .await
            .map_err(|s| grpc_error(M, s))?
            .into_inner();
        if let Some(f) = resp.failed_updates.first() {
            return Err(NodeError::Rejected {
                method: M,
                code: Some(i64::from(f.reason)),
                message: format!("{scid}: {}", f.update_error),
            });
        }
        Ok(())
    }

    async fn pay_route(
        &self,
        route: &[RouteHop],
        payment_hash: PaymentHash,
        timeout_secs: u32,
    ) -> NodeResult<PayOutcome> {
        const M: &str = "SendToRouteV2";
        let mpp = self
            .self_payments
            .lock()
            .expect("lock")
            .get(&payment_hash)
            .copied();
        // LND takes absolute heights; ballast's route counts from the tip.
        let height = self.block_height().await?;
        let lnd_route = build_route(
            M,
            route,
            mpp.map(|(addr, _)| addr),
            height,
            MIN_CLTV_DELTA + BLOCK_PADDING,
        )?;
        let request = routerrpc::SendToRouteRequest {
            payment_hash: payment_hash.0.to_vec(),
            route: Some(lnd_route),
            skip_temp_err: false,
        };
        let mut router = self.router.clone();
        let limit = Duration::from_secs(u64::from(timeout_secs));
        let attempt = match tokio::time::timeout(limit, router.send_to_route_v2(request)).await {
            Err(_) => return Ok(in_flight(timeout_secs)),
            Ok(r) => r.map_err(|s| grpc_error(M, s))?.into_inner(),
        };
        match lnrpc::htlc_attempt::HtlcStatus::try_from(attempt.status) {
            Ok(lnrpc::htlc_attempt::HtlcStatus::Succeeded) => settled(M, &attempt.preimage, payment_hash),
            Ok(lnrpc::htlc_attempt::HtlcStatus::Failed) => Ok(attempt_failure(route, &attempt)),
            // SendToRouteV2 answers once the HTLC is resolved; anything else is still out.
            _ => Ok(in_flight(timeout_secs)),
        }
    }

    async fn wait_payment(&self, payment_hash: PaymentHash, timeout_secs: u32) -> NodeResult<PayOutcome> {
        const M: &str = "TrackPaymentV2";
        use lnrpc::payment::PaymentStatus;
        let limit = Duration::from_secs(u64::from(timeout_secs));
        let mut router = self.router.clone();
        let wait = async {
            let mut stream = router
                .track_payment_v2(routerrpc::TrackPaymentRequest {
                    payment_hash: payment_hash.0.to_vec(),
                    no_inflight_updates: true,
                })
                .await
                .map_err(|s| unknown_payment(M, s))?
                .into_inner();
            loop {
                let Some(p) = stream.message().await.map_err(|s| grpc_error(M, s))? else {
                    return Err(NodeError::Transport {
                        method: M,
                        message: "stream ended before the payment was final".into(),
                    });
                };
                match PaymentStatus::try_from(p.status) {
                    Ok(PaymentStatus::Succeeded) => {
                        let preimage = hex::decode(&p.payment_preimage)
                            .map_err(|_| malformed(M, "preimage is not hex"))?;
                        return settled(M, &preimage, payment_hash);
                    }
                    Ok(PaymentStatus::Failed) => {
                        let last_failed = p
                            .htlcs
                            .iter()
                            .rev()
                            .find(|h| h.status == lnrpc::htlc_attempt::HtlcStatus::Failed as i32);
                        return Ok(match last_failed {
                            Some(a) => attempt_failure(&route_hops(a), a),
                            None => PayOutcome::Failed {
                                failing_channel: None,
                                failing_node: None,
                                code: None,
                                message: format!("payment failed: {}", p.failure_reason().as_str_name()),
                            },
                        });
                    }
                    _ => continue,
                }
            }
        };
        match tokio::time::timeout(limit, wait).await {
            Ok(r) => r,
            Err(_) => Ok(in_flight(timeout_secs)),
        }
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

    async fn invoices(&self) -> NodeResult<Vec<Invoice>> {
        const M: &str = "ListInvoices";
        let mut out = Vec::new();
        let mut offset = 0u64;
        loop {
            let page = self
                .lightning
                .clone()
                .list_invoices(lnrpc::ListInvoiceRequest {
                    pending_only: false,
                    index_offset: offset,
                    num_max_invoices: INVOICES_PAGE,
                    reversed: false,
                })
                .await
                .map_err(|s| grpc_error(M, s))?
                .into_inner();
            let n = page.invoices.len();
            for i in &page.invoices {
                out.push(invoice(M, i)?);
            }
            if n < INVOICES_PAGE as usize {
                return Ok(out);
            }
            if page.last_index_offset <= offset {
                return Err(malformed(
                    M,
                    format!("page from {offset} ended at {}", page.last_index_offset),
                ));
            }
            offset = page.last_index_offset;
        }
    }

    async fn feerate_perkb(&self) -> NodeResult<Option<u64>> {
        Ok(None)
    }

    async fn prepare_self_payment(&self, preimage: Preimage, amount: Msat) -> NodeResult<()> {
        const M: &str = "AddInvoice";
        let request = lnrpc::Invoice {
            memo: "ballast rebalance".into(),
            r_preimage: preimage.0.to_vec(),
            value_msat: msat_i64(M, amount)?,
            expiry: 3600,
            // Explicit, and the least LND accepts: `pay_route` delivers this plus LND's
            // block padding. Left at 0, LND would ask for its default of 80.
            cltv_expiry: u64::from(MIN_CLTV_DELTA),
            ..Default::default()
        };
        let resp = self
            .lightning
            .clone()
            .add_invoice(request)
            .await
            .map_err(|s| grpc_error(M, s))?
            .into_inner();
        let addr: [u8; 32] = resp
            .payment_addr
            .as_slice()
            .try_into()
            .map_err(|_| malformed(M, format!("payment_addr of {} bytes", resp.payment_addr.len())))?;
        self.self_payments
            .lock()
            .expect("lock")
            .insert(preimage.payment_hash(), (addr, amount));
        Ok(())
    }
}

// ---- streams ------------------------------------------------------------------------------

/// Reads `stream` in a task, passing what `map` keeps to the returned channel; ends with an
/// `Err` when the stream breaks or ends, or quietly when the receiver is dropped.
fn forward_stream<T, U, F>(
    method: &'static str,
    mut stream: tonic::Streaming<T>,
    map: F,
) -> mpsc::Receiver<NodeResult<U>>
where
    T: Send + 'static,
    U: Send + 'static,
    F: Fn(T) -> Option<NodeResult<U>> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER);
    tokio::spawn(async move {
        loop {
            let item = tokio::select! {
                m = stream.message() => m,
                _ = tx.closed() => return,
            };
            match item {
                Ok(Some(m)) => {
                    if let Some(v) = map(m) {
                        if tx.send(v).await.is_err() {
                            return;
                        }
                    }
                }
                Ok(None) => {
                    let _ = tx
                        .send(Err(NodeError::Transport {
                            method,
                            message: "stream ended".into(),
                        }))
                        .await;
                    return;
                }
                Err(s) => {
                    let _ = tx.send(Err(grpc_error(method, s))).await;
                    return;
                }
            }
        }
    });
    rx
}

fn invoice_update(i: &lnrpc::Invoice) -> InvoiceUpdate {
    use lnrpc::invoice::InvoiceState;
    let state = match i.state() {
        InvoiceState::Open => LndInvoiceState::Open,
        InvoiceState::Accepted => LndInvoiceState::Accepted,
        InvoiceState::Settled => LndInvoiceState::Settled,
        InvoiceState::Canceled => LndInvoiceState::Canceled,
    };
    InvoiceUpdate {
        state,
        htlcs: i
            .htlcs
            .iter()
            .map(|h| InvoiceHtlc {
                scid: Scid::from_u64(h.chan_id),
                htlc_index: h.htlc_index,
                amount: Msat(h.amt_msat),
                expiry_height: u32::try_from(h.expiry_height).unwrap_or(0),
                accept_height: u32::try_from(h.accept_height).unwrap_or(0),
                accept_time: u64::try_from(h.accept_time).unwrap_or(0),
                state: h.state().as_str_name().to_string(),
            })
            .collect(),
        amount_paid: Msat(u64::try_from(i.amt_paid_msat).unwrap_or(0)),
    }
}

/// Offered forwards by incoming (channel, htlc id): their amounts in and out.
type Offered = std::collections::HashMap<(u64, u64), (Msat, Msat)>;

/// Bound on remembered offers: a forward that never resolves on this stream must not
/// grow the map forever.
const MAX_OFFERED: usize = 100_000;

fn forward_event(e: &routerrpc::HtlcEvent, offered: &mut Offered) -> Option<ForwardEvent> {
    use routerrpc::htlc_event::{Event, EventType};
    if e.event_type() != EventType::Forward {
        return None;
    }
    let key = (e.incoming_channel_id, e.incoming_htlc_id);
    let settled = match e.event.as_ref()? {
        Event::ForwardEvent(f) => {
            if offered.len() >= MAX_OFFERED {
                offered.clear();
            }
            if let Some(info) = &f.info {
                offered.insert(key, (Msat(info.incoming_amt_msat), Msat(info.outgoing_amt_msat)));
            }
            return None;
        }
        Event::SettleEvent(_) => true,
        Event::ForwardFailEvent(_) | Event::LinkFailEvent(_) => false,
        // The settle event already reported this HTLC; counting both would count it twice.
        Event::FinalHtlcEvent(_) | Event::SubscribedEvent(_) => return None,
    };
    Some(ForwardEvent {
        in_channel: Scid::from_u64(e.incoming_channel_id),
        out_channel: Scid::from_u64(e.outgoing_channel_id),
        in_htlc_id: e.incoming_htlc_id,
        out_htlc_id: e.outgoing_htlc_id,
        settled,
        amounts: offered.remove(&key),
    })
}

// ---- mapping ------------------------------------------------------------------------------

fn sat(v: i64) -> Msat {
    Msat(u64::try_from(v).unwrap_or(0).saturating_mul(1000))
}

fn msat_i64(method: &'static str, m: Msat) -> NodeResult<i64> {
    i64::try_from(m.0).map_err(|_| malformed(method, format!("{m} is too large")))
}

fn node_id(method: &'static str, s: &str) -> NodeResult<NodeId> {
    s.parse()
        .map_err(|_| malformed(method, format!("bad node id '{s}'")))
}

fn open_channel(
    c: lnrpc::Channel,
    fee_base: i64,
    fee_ppm: i64,
    remote_policy: Option<PeerPolicy>,
) -> NodeResult<Channel> {
    const M: &str = "ListChannels";
    let local = sat(c.local_balance);
    let remote = sat(c.remote_balance);
    let local_reserve = c.local_constraints.as_ref().map_or(0, |k| k.chan_reserve_sat);
    let remote_reserve = c.remote_constraints.as_ref().map_or(0, |k| k.chan_reserve_sat);
    let htlcs = c
        .pending_htlcs
        .iter()
        .map(|h| {
            Ok(PendingHtlc {
                direction: if h.incoming {
                    HtlcDirection::In
                } else {
                    HtlcDirection::Out
                },
                id: h.htlc_index,
                amount: sat(h.amount),
                expiry: h.expiration_height,
                payment_hash: PaymentHash(
                    h.hash_lock
                        .as_slice()
                        .try_into()
                        .map_err(|_| malformed(M, "htlc hash_lock is not 32 bytes"))?,
                ),
            })
        })
        .collect::<NodeResult<Vec<_>>>()?;
    Ok(Channel {
        scid: (c.chan_id != 0).then(|| Scid::from_u64(c.chan_id)),
        peer: node_id(M, &c.remote_pubkey)?,
        peer_connected: c.active,
        state: ChannelState::Normal,
        raw_state: if c.active { "ACTIVE" } else { "INACTIVE" }.to_string(),
        capacity: sat(c.capacity),
        local,
        remote,
        spendable: local.saturating_sub(Msat(local_reserve.saturating_mul(1000))),
        receivable: remote.saturating_sub(Msat(remote_reserve.saturating_mul(1000))),
        htlcs,
        fee_base: Msat(u64::try_from(fee_base).unwrap_or(0)),
        fee_ppm: u32::try_from(fee_ppm).unwrap_or(0),
        remote_policy,
        private: c.private,
    })
}

fn pending_channel(
    p: Option<lnrpc::pending_channels_response::PendingChannel>,
    state: ChannelState,
    raw: &str,
) -> NodeResult<Channel> {
    const M: &str = "PendingChannels";
    let p = p.ok_or_else(|| malformed(M, "pending channel without details"))?;
    let local = sat(p.local_balance);
    let remote = sat(p.remote_balance);
    Ok(Channel {
        scid: None,
        peer: node_id(M, &p.remote_node_pub)?,
        peer_connected: false,
        state,
        raw_state: raw.to_string(),
        capacity: sat(p.capacity),
        local,
        remote,
        spendable: Msat::ZERO,
        receivable: Msat::ZERO,
        htlcs: Vec::new(),
        fee_base: Msat::ZERO,
        fee_ppm: 0,
        remote_policy: None,
        private: p.private,
    })
}

/// Our side's policy on an edge.
fn own_policy<'a>(e: &'a lnrpc::ChannelEdge, me: &str) -> Option<&'a lnrpc::RoutingPolicy> {
    if e.node1_pub == me {
        e.node1_policy.as_ref()
    } else if e.node2_pub == me {
        e.node2_policy.as_ref()
    } else {
        None
    }
}

/// The peer's policy for forwarding to us.
fn peer_policy(e: &lnrpc::ChannelEdge, me: &str, peer: &str) -> Option<PeerPolicy> {
    let p = if e.node1_pub == peer && e.node2_pub == me {
        e.node1_policy.as_ref()
    } else if e.node2_pub == peer && e.node1_pub == me {
        e.node2_policy.as_ref()
    } else {
        None
    }?;
    Some(PeerPolicy {
        fee_base: Msat(u64::try_from(p.fee_base_msat).ok()?),
        fee_ppm: u32::try_from(p.fee_rate_milli_msat).ok()?,
        cltv_delta: p.time_lock_delta,
    })
}

fn graph_edge(
    method: &'static str,
    e: &lnrpc::ChannelEdge,
    source: NodeId,
    destination: NodeId,
    p: &lnrpc::RoutingPolicy,
) -> NodeResult<GraphEdge> {
    let capacity = sat(e.capacity);
    let bad = |what: &str| {
        malformed(
            method,
            format!("edge {}: bad {what}", Scid::from_u64(e.channel_id)),
        )
    };
    Ok(GraphEdge {
        scid: Scid::from_u64(e.channel_id),
        source,
        destination,
        capacity,
        fee_base: Msat(u64::try_from(p.fee_base_msat).map_err(|_| bad("fee_base_msat"))?),
        fee_ppm: u32::try_from(p.fee_rate_milli_msat).map_err(|_| bad("fee_rate_milli_msat"))?,
        cltv_delta: p.time_lock_delta,
        htlc_min: Msat(u64::try_from(p.min_htlc).map_err(|_| bad("min_htlc"))?),
        htlc_max: if p.max_htlc_msat == 0 {
            capacity
        } else {
            Msat(p.max_htlc_msat)
        },
        active: !p.disabled,
        last_update: p.last_update,
    })
}

fn forward(f: &lnrpc::ForwardingEvent) -> Forward {
    let time = if f.timestamp_ns != 0 {
        f.timestamp_ns as f64 / 1e9
    } else {
        f.timestamp as f64
    };
    Forward {
        in_channel: Scid::from_u64(f.chan_id_in),
        out_channel: Some(Scid::from_u64(f.chan_id_out)),
        in_msat: Msat(f.amt_in_msat),
        out_msat: Some(Msat(f.amt_out_msat)),
        fee: Some(Msat(f.fee_msat)),
        status: ForwardStatus::Settled,
        received_time: time,
        resolved_time: Some(time),
    }
}

fn invoice(method: &'static str, i: &lnrpc::Invoice) -> NodeResult<Invoice> {
    use lnrpc::invoice::InvoiceState;
    let hash: [u8; 32] = i
        .r_hash
        .as_slice()
        .try_into()
        .map_err(|_| malformed(method, "r_hash is not 32 bytes"))?;
    let status = match i.state() {
        InvoiceState::Open => "unpaid",
        InvoiceState::Accepted => "accepted",
        InvoiceState::Settled => "paid",
        InvoiceState::Canceled => "canceled",
    };
    Ok(Invoice {
        label: if i.memo.is_empty() {
            format!("lnd-{}", i.add_index)
        } else {
            format!("lnd-{}: {}", i.add_index, i.memo)
        },
        payment_hash: PaymentHash(hash),
        amount: (i.value_msat > 0).then_some(Msat(i.value_msat as u64)),
        received: (i.amt_paid_msat > 0).then_some(Msat(i.amt_paid_msat as u64)),
        paid_at: (i.state() == InvoiceState::Settled && i.settle_date > 0).then_some(i.settle_date as u64),
        status: status.to_string(),
    })
}

/// "txid:index" as LND's ChannelPoint.
fn chan_point(method: &'static str, s: &str) -> NodeResult<lnrpc::ChannelPoint> {
    let (txid, index) = s
        .rsplit_once(':')
        .ok_or_else(|| malformed(method, format!("bad channel_point '{s}'")))?;
    let output_index = index
        .parse()
        .map_err(|_| malformed(method, format!("bad channel_point '{s}'")))?;
    Ok(lnrpc::ChannelPoint {
        funding_txid: Some(lnrpc::channel_point::FundingTxid::FundingTxidStr(
            txid.to_string(),
        )),
        output_index,
    })
}

/// Ballast's route (each hop: the amount delivered over it and its HTLC's expiry, counted
/// in blocks from the tip) as LND's (each hop: what its node forwards onward, its fee and
/// the outgoing expiry, as absolute heights). Every expiry is moved up by the same number
/// of blocks when needed to give the final hop at least `min_final` blocks, so each hop
/// keeps the time-lock delta it asks for.
pub fn build_route(
    method: &'static str,
    route: &[RouteHop],
    payment_addr: Option<[u8; 32]>,
    height: u32,
    min_final: u32,
) -> NodeResult<lnrpc::Route> {
    let (Some(first), Some(last)) = (route.first(), route.last()) else {
        return Err(NodeError::Rejected {
            method,
            code: None,
            message: "cannot pay along an empty route".into(),
        });
    };
    let base = height.saturating_add(min_final.saturating_sub(last.delay));
    let absolute = |delay: u32| {
        base.checked_add(delay).ok_or_else(|| NodeError::Rejected {
            method,
            code: None,
            message: format!("expiry {delay} blocks after height {base} does not fit"),
        })
    };
    let mut hops = Vec::with_capacity(route.len());
    for (i, hop) in route.iter().enumerate() {
        let (forward, expiry) = match route.get(i + 1) {
            Some(next) => (next.amount, absolute(next.delay)?),
            None => (hop.amount, absolute(hop.delay)?),
        };
        let fee = hop
            .amount
            .0
            .checked_sub(forward.0)
            .ok_or_else(|| NodeError::Rejected {
                method,
                code: None,
                message: format!("hop {i} delivers less than the next hop carries"),
            })?;
        let is_last = i + 1 == route.len();
        hops.push(lnrpc::Hop {
            chan_id: hop.scid.as_u64(),
            expiry,
            amt_to_forward_msat: msat_i64(method, forward)?,
            fee_msat: msat_i64(method, Msat(fee))?,
            pub_key: hop.node.to_hex(),
            tlv_payload: true,
            mpp_record: match payment_addr {
                Some(addr) if is_last => Some(lnrpc::MppRecord {
                    payment_addr: addr.to_vec(),
                    total_amt_msat: msat_i64(method, last.amount)?,
                }),
                _ => None,
            },
        });
    }
    Ok(lnrpc::Route {
        total_time_lock: absolute(first.delay)?,
        hops,
        total_fees_msat: msat_i64(method, first.amount.saturating_sub(last.amount))?,
        total_amt_msat: msat_i64(method, first.amount)?,
    })
}

/// The route of an attempt in ballast's terms (for locating a failure).
fn route_hops(a: &lnrpc::HtlcAttempt) -> Vec<RouteHop> {
    let Some(r) = &a.route else { return Vec::new() };
    let mut amount = u64::try_from(r.total_amt_msat).unwrap_or(0);
    let mut delay = r.total_time_lock;
    r.hops
        .iter()
        .filter_map(|h| {
            let hop = RouteHop {
                scid: Scid::from_u64(h.chan_id),
                node: h.pub_key.parse().ok()?,
                amount: Msat(amount),
                delay,
            };
            amount = u64::try_from(h.amt_to_forward_msat).unwrap_or(0);
            delay = h.expiry;
            Some(hop)
        })
        .collect()
}

fn attempt_failure(route: &[RouteHop], a: &lnrpc::HtlcAttempt) -> PayOutcome {
    let Some(f) = &a.failure else {
        return PayOutcome::Failed {
            failing_channel: None,
            failing_node: None,
            code: None,
            message: "HTLC failed without failure details".into(),
        };
    };
    let idx = f.failure_source_index as usize;
    // Index 0 is us; index i is the node at the end of hop i-1, and the channel it could
    // not use is hop i (or the last one, for the destination), as lightningd reports it.
    let failing_channel = route.get(idx).or(route.last()).map(|h| h.scid);
    let failing_node = idx.checked_sub(1).and_then(|i| route.get(i)).map(|h| h.node);
    PayOutcome::Failed {
        failing_channel: if route.is_empty() { None } else { failing_channel },
        failing_node,
        code: bolt4_code(f.code()),
        message: format!("{} at hop {idx}", f.code().as_str_name()),
    }
}

/// LND's failure enum as BOLT #4's failure codes (what lightningd's `failcode` holds).
pub fn bolt4_code(c: lnrpc::failure::FailureCode) -> Option<u32> {
    use lnrpc::failure::FailureCode as F;
    const BADONION: u32 = 0x8000;
    const PERM: u32 = 0x4000;
    const NODE: u32 = 0x2000;
    const UPDATE: u32 = 0x1000;
    Some(match c {
        F::IncorrectOrUnknownPaymentDetails => PERM | 15,
        F::IncorrectPaymentAmount => PERM | 16,
        F::FinalIncorrectCltvExpiry => 18,
        F::FinalIncorrectHtlcAmount => 19,
        F::FinalExpiryTooSoon => 17,
        F::InvalidRealm => PERM | 1,
        F::ExpiryTooSoon => UPDATE | 14,
        F::InvalidOnionVersion => BADONION | PERM | 4,
        F::InvalidOnionHmac => BADONION | PERM | 5,
        F::InvalidOnionKey => BADONION | PERM | 6,
        F::AmountBelowMinimum => UPDATE | 11,
        F::FeeInsufficient => UPDATE | 12,
        F::IncorrectCltvExpiry => UPDATE | 13,
        F::ChannelDisabled => UPDATE | 20,
        F::TemporaryChannelFailure => UPDATE | 7,
        F::RequiredNodeFeatureMissing => PERM | NODE | 3,
        F::RequiredChannelFeatureMissing => PERM | 9,
        F::UnknownNextPeer => PERM | 10,
        F::TemporaryNodeFailure => NODE | 2,
        F::PermanentNodeFailure => PERM | NODE | 2,
        F::PermanentChannelFailure => PERM | 8,
        F::ExpiryTooFar => 21,
        F::MppTimeout => 23,
        F::InvalidOnionPayload => PERM | 22,
        F::InvalidOnionBlinding => BADONION | PERM | 24,
        F::Reserved | F::InternalFailure | F::UnknownFailure | F::UnreadableFailure => return None,
    })
}

fn settled(method: &'static str, preimage: &[u8], hash: PaymentHash) -> NodeResult<PayOutcome> {
    let preimage = Preimage(
        preimage
            .try_into()
            .map_err(|_| malformed(method, "preimage is not 32 bytes"))?,
    );
    if preimage.payment_hash() != hash {
        return Err(malformed(method, format!("preimage does not match {hash}")));
    }
    Ok(PayOutcome::Success { preimage })
}

// ---- errors -------------------------------------------------------------------------------

/// The wait ended first: the payment may still succeed, so it is no failed route.
fn in_flight(timeout_secs: u32) -> PayOutcome {
    PayOutcome::InFlight {
        message: format!("payment still in flight after {timeout_secs}s"),
    }
}

fn malformed(method: &'static str, message: impl Into<String>) -> NodeError {
    NodeError::Malformed {
        method,
        message: message.into(),
    }
}

/// LND does not know the payment (it never left, or its record is gone): callers settle it
/// as not completed. Any other answer is as [`grpc_error`] sorts it.
fn unknown_payment(method: &'static str, s: Status) -> NodeError {
    if s.code() == Code::NotFound || s.message().contains("isn't initiated") {
        return NodeError::UnknownPayment {
            method,
            message: s.message().to_string(),
        };
    }
    grpc_error(method, s)
}

/// Connection trouble is `Transport`; anything LND itself answered is `Rejected`.
pub fn grpc_error(method: &'static str, s: Status) -> NodeError {
    match s.code() {
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded => NodeError::Transport {
            method,
            message: status_line(&s),
        },
        Code::Unknown if std::error::Error::source(&s).is_some() => NodeError::Transport {
            method,
            message: status_line(&s),
        },
        code => NodeError::Rejected {
            method,
            code: Some(code as i64),
            message: s.message().to_string(),
        },
    }
}

fn status_line(s: &Status) -> String {
    match std::error::Error::source(s) {
        Some(src) => format!("{}: {}", s.message(), error_chain(src)),
        None => s.message().to_string(),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(b: u8) -> NodeId {
        let mut k = [b; 33];
        k[0] = 2;
        NodeId(k)
    }

    /// Two hops paying 10,000 msat with a 20 msat fee, with these delays.
    fn two_hops(first: u32, last: u32) -> [RouteHop; 2] {
        [
            RouteHop {
                scid: Scid::new(100, 1, 0).unwrap(),
                node: id(1),
                amount: Msat(10_020),
                delay: first,
            },
            RouteHop {
                scid: Scid::new(200, 2, 1).unwrap(),
                node: id(2),
                amount: Msat(10_000),
                delay: last,
            },
        ]
    }

    #[test]
    fn route_expiries_are_absolute_with_lnds_final_minimum() {
        // As the route engine makes it: 40 for the peer's delta on top of a final 18.
        let route = two_hops(58, 18);
        let r = build_route("t", &route, None, 900_000, 27).unwrap();
        assert_eq!(r.total_time_lock, 900_067);
        assert_eq!((r.hops[0].expiry, r.hops[1].expiry), (900_027, 900_027));
        // A final CLTV already above the minimum is kept.
        let r = build_route("t", &route, None, 900_000, 10).unwrap();
        assert_eq!((r.total_time_lock, r.hops[1].expiry), (900_058, 900_018));
        assert!(build_route("t", &route, None, u32::MAX - 10, 27).is_err());
    }

    #[test]
    fn route_amounts_fees_and_expiries() {
        let route = two_hops(160, 120);
        let r = build_route("t", &route, Some([9; 32]), 0, 0).unwrap();
        assert_eq!(
            (r.total_amt_msat, r.total_fees_msat, r.total_time_lock),
            (10_020, 20, 160)
        );
        assert_eq!(r.hops[0].amt_to_forward_msat, 10_000);
        assert_eq!((r.hops[0].fee_msat, r.hops[0].expiry), (20, 120));
        assert_eq!((r.hops[1].amt_to_forward_msat, r.hops[1].fee_msat), (10_000, 0));
        assert_eq!(r.hops[1].expiry, 120);
        assert!(r.hops[0].mpp_record.is_none());
        let mpp = r.hops[1].mpp_record.as_ref().unwrap();
        assert_eq!(
            (mpp.payment_addr.as_slice(), mpp.total_amt_msat),
            (&[9u8; 32][..], 10_000)
        );
        assert_eq!(
            route_hops(&lnrpc::HtlcAttempt {
                route: Some(r),
                ..Default::default()
            }),
            route
        );
        assert!(build_route("t", &[], None, 0, 0).is_err());
    }

    #[test]
    fn failure_codes_are_bolt4() {
        use lnrpc::failure::FailureCode as F;
        assert_eq!(bolt4_code(F::TemporaryChannelFailure), Some(4103));
        assert_eq!(bolt4_code(F::IncorrectOrUnknownPaymentDetails), Some(16399));
        assert_eq!(bolt4_code(F::UnreadableFailure), None);
    }
}
