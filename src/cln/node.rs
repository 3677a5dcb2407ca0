//! [`Node`] for Core Lightning, over lightningd's JSON-RPC unix socket.
//!
//! Responses are decoded into cln-rpc's typed models (`cln_rpc::model::responses`), so field
//! names and types come from the same schemas lightningd's own output is checked against;
//! this file only translates them into ballast's types and sorts every failure into one of
//! [`NodeError`]'s three kinds. Requests are cln-rpc's typed requests too, except the two that
//! carry amounts (see `SendpayParams`).

use crate::engine::bolt11::{self, InvoiceSpec};
use crate::node::{
    Channel, ChannelState, FeeUpdate, Forward, ForwardStatus, GraphEdge, HeldIncoming, HoldInvoiceError,
    HtlcDirection, Invoice, Node, NodeError, NodeInfo, NodeResult, PayOutcome, PeerPolicy, PendingHtlc,
    RouteHop,
};
use crate::types::{Msat, NodeId, PaymentHash, Preimage, Scid};
use cln_rpc::model::requests::{
    FeeratesRequest, FeeratesStyle, GetinfoRequest, ListchannelsRequest, ListconfigsRequest,
    ListforwardsIndex, ListforwardsRequest, ListinvoicesIndex, ListinvoicesRequest, ListpeerchannelsRequest,
    SigninvoiceRequest, WaitsendpayRequest,
};
use cln_rpc::model::responses::{
    ListchannelsChannels, ListforwardsForwards, ListforwardsForwardsStatus, ListinvoicesInvoices,
    ListinvoicesInvoicesStatus, ListpeerchannelsChannels, ListpeerchannelsChannelsHtlcs,
    ListpeerchannelsChannelsHtlcsDirection, SendpayResponse, SendpayStatus, SetchannelResponse,
};
use cln_rpc::primitives::{
    Amount, ChannelState as ClnState, HtlcState, PublicKey, RpcError, Secret, Sha256, ShortChannelId,
};
use cln_rpc::{ClnRpc, TypedRequest};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Forwards and invoices are fetched this many at a time, so a node with years of history
/// never has to build (nor we parse) one enormous answer.
const PAGE_SIZE: u32 = 5_000;

/// How long past waitsendpay's own `timeout` we wait for its answer before giving up on
/// the socket: lightningd answers at `timeout` itself, so this only trips if it is wedged.
const WAITSENDPAY_GRACE: Duration = Duration::from_secs(30);

// Payment error codes (lightningd's common/jsonrpc_errors.h). Only these mean "this attempt
// is over and failed"; everything else lightningd says about a payment is a refusal.
/// waitsendpay's `timeout` passed: the HTLC is still in flight and may yet succeed.
const PAY_IN_PROGRESS: i32 = 200;
const PAY_UNPARSEABLE_ONION: i32 = 202;
const PAY_DESTINATION_PERM_FAIL: i32 = 203;
const PAY_TRY_OTHER_ROUTE: i32 = 204;
/// waitsendpay knows no payment with this hash: it never left, or its record is gone.
const PAY_NO_SUCH_PAYMENT: i32 = 208;
/// The payment failed long ago and the reason was not kept.
const PAY_UNSPECIFIED_ERROR: i32 = 209;

// cln-rpc 0.7 reports its own failures as an `RpcError` with no code, told apart only by
// message (`ClnRpc::call_raw_request`): these are the socket failing...
const CLIENT_TRANSPORT_ERRORS: [&str; 3] = [
    "Error passing request to lightningd",
    "no response from lightningd",
    "reading response from socket",
];
// ...and this is a JSON answer that is no JSON-RPC response.
const CLIENT_ENVELOPE_ERROR: &str = "Invalid response from lightningd";

/// [`Node`] for Core Lightning, talking to lightningd's `lightning-rpc` socket.
///
/// Each operation opens its own connection and drops it when done, rather than sharing a
/// reconnecting one. Connecting to a local unix socket costs microseconds, and a connection
/// per operation avoids three problems a shared one has:
/// - cln-rpc runs one request at a time per connection, and `waitsendpay` can block for
///   minutes: on a shared connection every other call would queue behind a payment.
/// - cln-rpc pairs answers with requests by order alone, never by `id`. A call whose future
///   is dropped half-way (a caller's timeout) leaves its answer in the stream, and the next
///   call on that connection would take it for its own. A fresh connection has no backlog.
/// - there is no reconnect state to get wrong: a lightningd restart costs the calls in
///   flight one `Transport` error each, and the next call simply connects again.
#[derive(Debug, Clone)]
pub struct ClnNode {
    rpc_path: PathBuf,
    page_size: u32,
}

impl ClnNode {
    /// `rpc_path` is lightningd's socket, `<lightning-dir>/<rpc-file>`. Nothing is opened
    /// until the first call.
    pub fn new(rpc_path: impl Into<PathBuf>) -> Self {
        ClnNode {
            rpc_path: rpc_path.into(),
            page_size: PAGE_SIZE,
        }
    }

    /// Fetches forwards and invoices `n` at a time instead of the default (a small page
    /// shows the paging at work without thousands of entries).
    pub fn with_page_size(mut self, n: u32) -> Self {
        self.page_size = n.max(1);
        self
    }

    pub fn rpc_path(&self) -> &Path {
        &self.rpc_path
    }

    async fn connect(&self, method: &'static str) -> NodeResult<Conn> {
        ClnRpc::new(&self.rpc_path)
            .await
            .map(Conn)
            .map_err(|e| NodeError::Transport {
                method,
                message: format!("cannot connect to {}: {e:#}", self.rpc_path.display()),
            })
    }

    /// One request on a connection of its own; any error lightningd returns is `Rejected`.
    async fn call<R: Rpc>(&self, request: &R) -> NodeResult<R::Response> {
        self.connect(R::METHOD).await?.call(request).await
    }
}

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

/// One connection to lightningd.
struct Conn(ClnRpc);

impl Conn {
    /// `waitsendpay` for `payment_hash`, with our own limit in case lightningd is wedged.
    async fn wait_payment(&mut self, payment_hash: PaymentHash, timeout_secs: u32) -> NodeResult<PayOutcome> {
        let wait = WaitsendpayRequest {
            payment_hash: sha256(&payment_hash),
            timeout: Some(timeout_secs),
            partid: None,
            groupid: None,
        };
        let limit = Duration::from_secs(u64::from(timeout_secs)) + WAITSENDPAY_GRACE;
        let answer = tokio::time::timeout(limit, self.try_call(&wait))
            .await
            .map_err(|_| NodeError::Transport {
                method: WaitsendpayRequest::METHOD,
                message: format!("no answer within {}s", limit.as_secs()),
            })??;
        match answer {
            Ok(done) => settled(WaitsendpayRequest::METHOD, done.payment_preimage, payment_hash),
            Err(e) => payment_error(WaitsendpayRequest::METHOD, e),
        }
    }

    /// Sends `request` and decodes the answer. The outer error is ours to report
    /// (`Transport` or `Malformed`); the inner one is lightningd's own error, left for the
    /// caller to interpret, since for payments some of them are outcomes rather than errors.
    ///
    /// This takes the answer as a plain JSON value and decodes it here rather than using
    /// `call_typed`: that would report a mismatched answer as an `RpcError` without a code,
    /// just like a dead socket, and `Malformed` could not be told from `Transport`.
    async fn try_call<R: Rpc>(&mut self, request: &R) -> NodeResult<Result<R::Response, RpcError>> {
        debug_assert_eq!(request.method(), R::METHOD);
        match self.0.call_raw::<Value, R>(R::METHOD, request).await {
            Ok(result) => serde_json::from_value(result)
                .map(Ok)
                .map_err(|e| malformed(R::METHOD, e.to_string())),
            Err(e) => lightningd_error(R::METHOD, e).map(Err),
        }
    }

    async fn call<R: Rpc>(&mut self, request: &R) -> NodeResult<R::Response> {
        self.try_call(request).await?.map_err(|e| rejected(R::METHOD, e))
    }

    /// Every entry of a listing in creation order, a page at a time, passed through `keep`
    /// as it arrives so only what the caller wants is held.
    async fn list_all<R: Paged, T>(
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
trait Rpc: TypedRequest<Response: DeserializeOwned> + Serialize + Debug + Sync {
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
trait Paged: Rpc {
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
struct SendpayParams {
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
    fn new(route: &[RouteHop], payment_hash: PaymentHash) -> NodeResult<Self> {
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
struct SetchannelParams {
    id: Scid,
    feebase: Msat,
    feeppm: u32,
}

impl TypedRequest for SetchannelParams {
    type Response = SetchannelResponse;
    fn method(&self) -> &str {
        Self::METHOD
    }
}

// ---- errors -------------------------------------------------------------------------------

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

fn rejected(method: &'static str, e: RpcError) -> NodeError {
    NodeError::Rejected {
        method,
        code: e.code.map(i64::from),
        message: e.message,
    }
}

fn malformed(method: &'static str, message: impl Into<String>) -> NodeError {
    NodeError::Malformed {
        method,
        message: message.into(),
    }
}

// ---- payments -----------------------------------------------------------------------------

/// A finished payment: its preimage must be there and must match, or we would report a
/// success we cannot prove.
fn settled(method: &'static str, preimage: Option<Secret>, hash: PaymentHash) -> NodeResult<PayOutcome> {
    let preimage = preimage
        .map(|s| Preimage(s.into()))
        .ok_or_else(|| malformed(method, "payment complete without payment_preimage"))?;
    if preimage.payment_hash() != hash {
        return Err(malformed(
            method,
            format!("payment_preimage does not hash to {hash}"),
        ));
    }
    Ok(PayOutcome::Success { preimage })
}

/// lightningd's error for a payment: a failed attempt or one still in flight is an
/// outcome, a payment it does not know is [`NodeError::UnknownPayment`], anything else (a
/// duplicate payment, bad parameters) is a refusal.
fn payment_error(method: &'static str, e: RpcError) -> NodeResult<PayOutcome> {
    match e.code {
        Some(
            PAY_UNPARSEABLE_ONION | PAY_DESTINATION_PERM_FAIL | PAY_TRY_OTHER_ROUTE | PAY_UNSPECIFIED_ERROR,
        ) => Ok(route_failure(e)),
        // A waitsendpay timeout: the HTLC is still in flight and may yet succeed.
        Some(PAY_IN_PROGRESS) => Ok(PayOutcome::InFlight { message: e.message }),
        Some(PAY_NO_SUCH_PAYMENT) => Err(NodeError::UnknownPayment {
            method,
            message: e.message,
        }),
        _ => Err(rejected(method, e)),
    }
}

/// Reads the routing failure object lightningd attaches as `data`. Every part of it is
/// optional here: the attempt has failed either way, and a missing or odd field only means
/// we know less about where.
fn route_failure(e: RpcError) -> PayOutcome {
    let field = |key: &str| e.data.as_ref().and_then(|d| d.get(key));
    let text = |key: &str| field(key).and_then(Value::as_str);
    PayOutcome::Failed {
        // `0x0x0` (once `0:0:0`, which does not parse) means "the destination itself".
        failing_channel: text("erring_channel")
            .and_then(|s| s.parse::<Scid>().ok())
            .filter(|s| s.as_u64() != 0),
        failing_node: text("erring_node").and_then(|s| s.parse().ok()),
        code: field("failcode")
            .and_then(Value::as_u64)
            .and_then(|c| u32::try_from(c).ok()),
        message: e.message,
    }
}

// ---- conversions --------------------------------------------------------------------------

fn msat(amount: Amount) -> Msat {
    Msat(amount.msat())
}

fn scid(s: ShortChannelId) -> Scid {
    Scid::from_u64(s.to_u64())
}

fn node_id(key: &PublicKey) -> NodeId {
    NodeId(key.serialize())
}

fn payment_hash(hash: &Sha256) -> PaymentHash {
    let bytes: &[u8; 32] = hash.as_ref();
    PaymentHash(*bytes)
}

fn sha256(hash: &PaymentHash) -> Sha256 {
    *Sha256::from_bytes_ref(&hash.0)
}

/// Where a channel is in its life.
///
/// `CHANNELD_AWAITING_SPLICE` is `Normal`: lightningd keeps adding HTLCs while a splice
/// confirms. `FUNDING_SPEND_SEEN` and `ONCHAIN` follow a cooperative close as well as a
/// unilateral one, so `mutual_close` tells the two apart.
fn channel_state(state: ClnState, mutual_close: bool) -> ChannelState {
    use ClnState::*;
    // No wildcard: a state added in a future cln-rpc must be placed here by hand.
    match state {
        OPENINGD
        | CHANNELD_AWAITING_LOCKIN
        | DUALOPEND_OPEN_INIT
        | DUALOPEND_OPEN_COMMITTED
        | DUALOPEND_OPEN_COMMIT_READY
        | DUALOPEND_AWAITING_LOCKIN => ChannelState::Opening,
        CHANNELD_NORMAL | CHANNELD_AWAITING_SPLICE => ChannelState::Normal,
        CHANNELD_SHUTTING_DOWN | CLOSINGD_SIGEXCHANGE | CLOSINGD_COMPLETE => ChannelState::Closing,
        FUNDING_SPEND_SEEN | ONCHAIN if mutual_close => ChannelState::Closing,
        AWAITING_UNILATERAL | FUNDING_SPEND_SEEN | ONCHAIN => ChannelState::ForceClosing,
        CLOSED => ChannelState::Closed,
    }
}

/// A channel whose funding was spent right after both sides agreed on the closing
/// transaction was closed cooperatively.
fn closed_mutually(c: &ListpeerchannelsChannels) -> bool {
    c.state_changes.iter().flatten().any(|change| {
        change.old_state == ClnState::CLOSINGD_COMPLETE && change.new_state == ClnState::FUNDING_SPEND_SEEN
    })
}

fn channel(c: ListpeerchannelsChannels) -> NodeResult<Channel> {
    let state = channel_state(c.state, closed_mutually(&c));
    let raw_state = c.state.to_string();
    // Until its funding is committed (a dual-funded open still negotiating, or an open we only
    // accept), lightningd has no balances, fee policy or announcement flag for a channel and
    // leaves them out: they read as zero. In every other state they must be there.
    let opening = state == ChannelState::Opening;
    let need = |value: Option<u64>, field: &str| {
        value.or(opening.then_some(0)).ok_or_else(|| {
            let scid = c
                .short_channel_id
                .map_or_else(|| "without scid".into(), |s| s.to_string());
            let peer = node_id(&c.peer_id);
            malformed(
                "listpeerchannels",
                format!("channel {scid} with {peer} in state {raw_state} has no {field}"),
            )
        })
    };
    let amount = |value: Option<Amount>, field| need(value.map(|a| a.msat()), field).map(Msat);

    let capacity = amount(c.total_msat, "total_msat")?;
    let local = amount(c.to_us_msat, "to_us_msat")?;
    // Our policy: the top-level fields are the older, always-present ones; `updates.local`
    // (v24.02+) carries the same values.
    let ours = c.updates.as_ref().map(|u| &u.local);
    let fee_base = c.fee_base_msat.or(ours.map(|l| l.fee_base_msat));
    let fee_ppm = c
        .fee_proportional_millionths
        .or(ours.map(|l| l.fee_proportional_millionths));
    Ok(Channel {
        scid: c.short_channel_id.map(scid),
        peer: node_id(&c.peer_id),
        peer_connected: c.peer_connected,
        state,
        capacity,
        local,
        remote: capacity.saturating_sub(local),
        spendable: amount(c.spendable_msat, "spendable_msat")?,
        receivable: amount(c.receivable_msat, "receivable_msat")?,
        htlcs: c.htlcs.iter().flatten().map(pending_htlc).collect(),
        fee_base: amount(fee_base, "fee_base_msat")?,
        // Went in as a u32, so it comes back as one.
        fee_ppm: need(fee_ppm.map(u64::from), "fee_proportional_millionths")? as u32,
        remote_policy: c
            .updates
            .as_ref()
            .and_then(|u| u.remote.as_ref())
            .map(|r| PeerPolicy {
                fee_base: msat(r.fee_base_msat),
                fee_ppm: r.fee_proportional_millionths,
                cltv_delta: r.cltv_expiry_delta,
            }),
        private: need(c.private.map(u64::from), "private")? != 0,
        raw_state,
    })
}

fn pending_htlc(h: &ListpeerchannelsChannelsHtlcs) -> PendingHtlc {
    PendingHtlc {
        direction: match h.direction {
            ListpeerchannelsChannelsHtlcsDirection::IN => HtlcDirection::In,
            ListpeerchannelsChannelsHtlcsDirection::OUT => HtlcDirection::Out,
        },
        id: h.id,
        amount: msat(h.amount_msat),
        expiry: h.expiry,
        payment_hash: payment_hash(&h.payment_hash),
    }
}

/// An incoming HTLC in one of these states has been added and not yet answered: no fail or
/// fulfil has started (`SENT_REMOVE_*` and later mean lightningd is removing it).
fn incoming_undecided(state: HtlcState) -> bool {
    matches!(
        state,
        HtlcState::RCVD_ADD_HTLC
            | HtlcState::RCVD_ADD_COMMIT
            | HtlcState::SENT_ADD_REVOCATION
            | HtlcState::SENT_ADD_ACK_COMMIT
            | HtlcState::RCVD_ADD_ACK_REVOCATION
    )
}

fn graph_edge(c: ListchannelsChannels) -> GraphEdge {
    let capacity = msat(c.amount_msat);
    GraphEdge {
        scid: scid(c.short_channel_id),
        source: node_id(&c.source),
        destination: node_id(&c.destination),
        capacity,
        fee_base: Msat(u64::from(c.base_fee_millisatoshi)),
        fee_ppm: c.fee_per_millionth,
        cltv_delta: c.delay,
        htlc_min: msat(c.htlc_minimum_msat),
        // Absent only in channel_updates from before the field was mandatory; the channel's
        // capacity is then the limit.
        htlc_max: c.htlc_maximum_msat.map_or(capacity, msat),
        active: c.active,
        last_update: c.last_update,
    }
}

fn forward(f: ListforwardsForwards) -> Forward {
    Forward {
        in_channel: scid(f.in_channel),
        out_channel: f.out_channel.map(scid),
        in_msat: msat(f.in_msat),
        out_msat: f.out_msat.map(msat),
        fee: f.fee_msat.map(msat),
        status: match f.status {
            ListforwardsForwardsStatus::OFFERED => ForwardStatus::Offered,
            ListforwardsForwardsStatus::SETTLED => ForwardStatus::Settled,
            ListforwardsForwardsStatus::LOCAL_FAILED => ForwardStatus::LocalFailed,
            ListforwardsForwardsStatus::FAILED => ForwardStatus::Failed,
        },
        received_time: f.received_time,
        resolved_time: f.resolved_time,
    }
}

fn invoice(i: ListinvoicesInvoices) -> Invoice {
    Invoice {
        payment_hash: payment_hash(&i.payment_hash),
        amount: i.amount_msat.map(msat),
        received: i.amount_received_msat.map(msat),
        paid_at: i.paid_at,
        // lightningd's own words for it.
        status: match i.status {
            ListinvoicesInvoicesStatus::UNPAID => "unpaid",
            ListinvoicesInvoicesStatus::PAID => "paid",
            ListinvoicesInvoicesStatus::EXPIRED => "expired",
        }
        .to_string(),
        label: i.label,
    }
}
