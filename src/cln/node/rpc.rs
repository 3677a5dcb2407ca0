//! The connection to lightningd's socket: one [`Conn`] per operation, the requests we send
//! (with the two that carry amounts written here), paging by `created_index`, and how
//! cln-rpc's errors are sorted into [`NodeError`]s.

use crate::node::{NodeError, NodeResult, RouteHop};
use crate::types::{Msat, NodeId, PaymentHash, Scid};
use cln_rpc::model::requests::{
    FeeratesRequest, GetinfoRequest, ListchannelsRequest, ListconfigsRequest, ListforwardsIndex,
    ListforwardsRequest, ListinvoicesIndex, ListinvoicesRequest, ListpeerchannelsRequest, SigninvoiceRequest,
    WaitsendpayRequest,
};
use cln_rpc::model::responses::{
    ListforwardsForwards, ListinvoicesInvoices, SendpayResponse, SetchannelResponse,
};
use cln_rpc::primitives::RpcError;
use cln_rpc::{ClnRpc, TypedRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Debug;

// cln-rpc 0.7 reports its own failures as an `RpcError` with no code, told apart only by
// message (`ClnRpc::call_raw_request`): these are the socket failing...
const CLIENT_TRANSPORT_ERRORS: [&str; 3] = [
    "Error passing request to lightningd",
    "no response from lightningd",
    "reading response from socket",
];
// ...and this is a JSON answer that is no JSON-RPC response.
const CLIENT_ENVELOPE_ERROR: &str = "Invalid response from lightningd";

/// One connection to lightningd.
pub(super) struct Conn(pub(super) ClnRpc);

impl Conn {
    /// Sends `request` and decodes the answer. The outer error is ours to report
    /// (`Transport` or `Malformed`); the inner one is lightningd's own error, left for the
    /// caller to interpret, since for payments some of them are outcomes rather than errors.
    ///
    /// This takes the answer as a plain JSON value and decodes it here rather than using
    /// `call_typed`: that would report a mismatched answer as an `RpcError` without a code,
    /// just like a dead socket, and `Malformed` could not be told from `Transport`.
    pub(super) async fn try_call<R: Rpc>(
        &mut self,
        request: &R,
    ) -> NodeResult<Result<R::Response, RpcError>> {
        debug_assert_eq!(request.method(), R::METHOD);
        match self.0.call_raw::<Value, R>(R::METHOD, request).await {
            Ok(result) => serde_json::from_value(result)
                .map(Ok)
                .map_err(|e| malformed(R::METHOD, e.to_string())),
            Err(e) => lightningd_error(R::METHOD, e).map(Err),
        }
    }

    pub(super) async fn call<R: Rpc>(&mut self, request: &R) -> NodeResult<R::Response> {
        self.try_call(request).await?.map_err(|e| rejected(R::METHOD, e))
    }

    /// Every entry of a listing in creation order, a page at a time, passed through `keep`
    /// as it arrives so only what the caller wants is held.
    pub(super) async fn list_all<R: Paged, T>(
        &mut self,
        page_size: u32,
        mut keep: impl FnMut(R::Entry) -> Option<T> + Send,
    ) -> NodeResult<Vec<T>> {
        let mut kept = Vec::new();
        let mut start = 0;
        loop {
            let page = R::entries(self.call(&R::page(start, page_size)).await?);
            let full = page.len() >= page_size as usize;
            let last = page.last().map(R::created_index);
            kept.extend(page.into_iter().filter_map(&mut keep));
            match last {
                Some(last) if full => {
                    // A page must move forward, or a confused server would loop us forever.
                    start = last.checked_add(1).filter(|next| *next > start).ok_or_else(|| {
                        malformed(
                            R::METHOD,
                            format!("page from {start} ended at created_index {last}"),
                        )
                    })?;
                }
                _ => return Ok(kept),
            }
        }
    }
}

/// A request we send, with its method name as the `&'static str` that [`NodeError`] wants
/// (`TypedRequest::method` only lends it out for the request's lifetime).
pub(super) trait Rpc: TypedRequest<Response: DeserializeOwned> + Serialize + Debug + Sync {
    const METHOD: &'static str;
}

macro_rules! rpc_methods {
    ($($request:ty => $method:literal),* $(,)?) => {
        $(impl Rpc for $request {
            const METHOD: &'static str = $method;
        })*
    };
}

rpc_methods! {
    GetinfoRequest => "getinfo",
    ListpeerchannelsRequest => "listpeerchannels",
    ListconfigsRequest => "listconfigs",
    ListchannelsRequest => "listchannels",
    ListforwardsRequest => "listforwards",
    ListinvoicesRequest => "listinvoices",
    SetchannelParams => "setchannel",
    SendpayParams => "sendpay",
    WaitsendpayRequest => "waitsendpay",
    SigninvoiceRequest => "signinvoice",
    FeeratesRequest => "feerates",
}

/// A listing lightningd can page through by `created_index`.
pub(super) trait Paged: Rpc {
    type Entry;
    fn page(start: u64, limit: u32) -> Self;
    fn entries(response: Self::Response) -> Vec<Self::Entry>;
    fn created_index(entry: &Self::Entry) -> u64;
}

impl Paged for ListforwardsRequest {
    type Entry = ListforwardsForwards;
    fn page(start: u64, limit: u32) -> Self {
        ListforwardsRequest {
            index: Some(ListforwardsIndex::CREATED),
            start: Some(start),
            limit: Some(limit),
            in_channel: None,
            out_channel: None,
            status: None,
        }
    }
    fn entries(response: Self::Response) -> Vec<Self::Entry> {
        response.forwards
    }
    fn created_index(entry: &Self::Entry) -> u64 {
        entry.created_index
    }
}

impl Paged for ListinvoicesRequest {
    type Entry = ListinvoicesInvoices;
    fn page(start: u64, limit: u32) -> Self {
        ListinvoicesRequest {
            index: Some(ListinvoicesIndex::CREATED),
            start: Some(start),
            limit: Some(limit),
            invstring: None,
            label: None,
            offer_id: None,
            payment_hash: None,
        }
    }
    fn entries(response: Self::Response) -> Vec<Self::Entry> {
        response.invoices
    }
    fn created_index(entry: &Self::Entry) -> u64 {
        entry.created_index
    }
}

// cln-rpc 0.7's `Amount` serializes as a string such as "4000msat". lightningd accepts that,
// but v26.06's schemas (which the test harness holds every message to) give request amounts
// as integers, so the two requests that carry amounts are our own: same method, same field
// names as cln-rpc's `SendpayRequest`/`SetchannelRequest`, amounts as integer msat, and
// cln-rpc's typed responses.

/// `sendpay` along an explicit route.
#[derive(Debug, Serialize)]
pub(super) struct SendpayParams {
    route: Vec<SendpayHop>,
    payment_hash: PaymentHash,
    /// Required by lightningd when paying ourselves (a circular rebalance); otherwise it
    /// must equal what the last hop delivers, which it is.
    amount_msat: Msat,
}

/// One hop, under the field names every lightningd version knows (v26.06 added synonyms).
#[derive(Debug, Serialize)]
struct SendpayHop {
    id: NodeId,
    channel: Scid,
    amount_msat: Msat,
    delay: u32,
}

impl SendpayParams {
    pub(super) fn new(route: &[RouteHop], payment_hash: PaymentHash) -> NodeResult<Self> {
        let Some(last) = route.last() else {
            return Err(NodeError::Rejected {
                method: Self::METHOD,
                code: None,
                message: "cannot pay along an empty route".into(),
            });
        };
        let route = route
            .iter()
            .map(|hop| SendpayHop {
                id: hop.node,
                channel: hop.scid,
                amount_msat: hop.amount,
                delay: hop.delay,
            })
            .collect();
        Ok(SendpayParams {
            route,
            payment_hash,
            amount_msat: last.amount,
        })
    }
}

impl TypedRequest for SendpayParams {
    type Response = SendpayResponse;
    fn method(&self) -> &str {
        Self::METHOD
    }
}

/// `setchannel` for our fee policy only; htlc limits stay as they are.
#[derive(Debug, Serialize)]
pub(super) struct SetchannelParams {
    pub(super) id: Scid,
    pub(super) feebase: Msat,
    pub(super) feeppm: u32,
}

impl TypedRequest for SetchannelParams {
    type Response = SetchannelResponse;
    fn method(&self) -> &str {
        Self::METHOD
    }
}

/// Sorts an error from cln-rpc: its own (code-less) failures become `Transport` or
/// `Malformed`; anything lightningd itself answered is handed back.
fn lightningd_error(method: &'static str, e: RpcError) -> NodeResult<RpcError> {
    if e.code.is_none() {
        if CLIENT_TRANSPORT_ERRORS.iter().any(|p| e.message.starts_with(p)) {
            return Err(NodeError::Transport {
                method,
                message: e.message,
            });
        }
        if e.message.starts_with(CLIENT_ENVELOPE_ERROR) {
            return Err(malformed(method, e.message));
        }
    }
    Ok(e)
}

pub(super) fn rejected(method: &'static str, e: RpcError) -> NodeError {
    NodeError::Rejected {
        method,
        code: e.code.map(i64::from),
        message: e.message,
    }
}

pub(super) fn malformed(method: &'static str, message: impl Into<String>) -> NodeError {
    NodeError::Malformed {
        method,
        message: message.into(),
    }
}
