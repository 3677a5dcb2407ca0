//! LND's streams (invoice updates, HTLC events, block epochs) read in tasks and passed on
//! as channels of ballast's types.

use super::convert::invoice_update;
use super::errors::grpc_error;
use super::{ForwardEvent, InvoiceUpdate, LndNode};
use crate::lnd::proto::chainrpc::BlockEpoch;
use crate::lnd::proto::invoicesrpc::SubscribeSingleInvoiceRequest;
use crate::lnd::proto::routerrpc;
use crate::node::{NodeError, NodeResult};
use crate::types::{Msat, PaymentHash, Scid};
use tokio::sync::mpsc;

/// Buffer of each subscription channel.
const SUBSCRIPTION_BUFFER: usize = 256;

impl LndNode {
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
}

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
