//! Reads of LND's channels, graph, forwards and invoices, paging where LND pages.

use super::convert::{forward, graph_edge, invoice, node_id, open_channel, peer_policy, pending_channel};
use super::errors::{grpc_error, malformed};
use super::{ForwardEvent, LndNode};
use crate::lnd::proto::lnrpc;
use crate::node::{Channel, ChannelState, Forward, GraphEdge, Invoice, NodeResult};
use std::collections::HashMap;

const FORWARDS_PAGE: u32 = 10_000;
const INVOICES_PAGE: u64 = 1_000;

impl LndNode {
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
    pub(super) async fn forwarding_events(&self, since: u64) -> NodeResult<Vec<lnrpc::ForwardingEvent>> {
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

    pub(super) async fn all_channels(&self) -> NodeResult<Vec<Channel>> {
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

    pub(super) async fn graph_edges(&self) -> NodeResult<Vec<GraphEdge>> {
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

    pub(super) async fn all_invoices(&self) -> NodeResult<Vec<Invoice>> {
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
}
