//! A fake LND for tests: a tonic gRPC server built from ballast's own generated server
//! traits, served over TLS with a certificate shaped like LND's (self-signed, CA:true,
//! SANs localhost and 127.0.0.1) and checking the `macaroon` metadata on every call.
//!
//! Its state is shared and scriptable ([`FakeLnd::with_state`] plus helpers), and it
//! survives [`FakeLnd::stop`] / [`FakeLnd::start`], so a client can be tested across an
//! LND restart. Include with `mod lnd_fake;`.
#![allow(dead_code)]

use ballast::lnd::config::LndConfig;
use ballast::lnd::proto::chainrpc::chain_notifier_server::{ChainNotifier, ChainNotifierServer};
use ballast::lnd::proto::chainrpc::BlockEpoch;
use ballast::lnd::proto::invoicesrpc::invoices_server::{Invoices, InvoicesServer};
use ballast::lnd::proto::invoicesrpc::{
    AddHoldInvoiceRequest, AddHoldInvoiceResp, CancelInvoiceMsg, CancelInvoiceResp, SettleInvoiceMsg,
    SettleInvoiceResp, SubscribeSingleInvoiceRequest,
};
use ballast::lnd::proto::lnrpc::{self, lightning_server::Lightning, lightning_server::LightningServer};
use ballast::lnd::proto::routerrpc::router_server::{Router, RouterServer};
use ballast::lnd::proto::routerrpc::{self, HtlcEvent};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tonic::codegen::tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

type Sub<T> = mpsc::Sender<Result<T, Status>>;
type Answer<T> = Result<Response<T>, Status>;

/// An lnd-shaped certificate and its key, made now.
pub struct TestCert {
    pub pem: String,
    pub der: Vec<u8>,
    pub key_der: Vec<u8>,
}

pub fn make_cert() -> TestCert {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    TestCert {
        pem: cert.pem(),
        der: cert.der().to_vec(),
        key_der: key.serialize_der(),
    }
}

fn server_tls(cert: &TestCert) -> rustls::ServerConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der.clone().into()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(cert.key_der.clone().into()),
        )
        .unwrap();
    tls.alpn_protocols = vec![b"h2".to_vec()];
    tls
}

// ---- LND's rules, as lnd v0.21.2's code has them ----------------------------------------

/// `lncfg.DefaultHoldInvoiceExpiryDelta` (`DefaultIncomingBroadcastDelta` 16 + 2), the
/// default of lnd's `invoices.holdexpirydelta`: `InvoiceExpiryWatcher` cancels an accepted
/// hold invoice once `height + delta >= ` its earliest accepted HTLC's expiry
/// (invoices/invoice_expiry_watcher.go, `invoiceExpiryHeight.expired`).
pub const HOLD_EXPIRY_DELTA: u32 = 18;
/// `lncfg.DefaultOutgoingCltvRejectDelta` (`DefaultOutgoingBroadcastDelta` 0 + 3): a link
/// refuses to offer an HTLC with `timeout <= height + 3` (htlcswitch/link.go `canSendHtlc`,
/// EXPIRY_TOO_SOON).
pub const OUTGOING_CLTV_REJECT_DELTA: u32 = 3;
/// `htlcswitch.DefaultMaxOutgoingCltvExpiry`: `canSendHtlc` refuses `timeout > height + 2016`
/// (EXPIRY_TOO_FAR).
pub const MAX_OUTGOING_CLTV_EXPIRY: u32 = 2016;
/// `lncfg.DefaultFinalCltvRejectDelta` (16 + 3): the invoice registry fails an exit HTLC
/// with `expiry < height + 19` (invoices/update.go, `ResultExpiryTooSoon`).
pub const FINAL_CLTV_REJECT_DELTA: u32 = 19;
/// `routing.MinCLTVDelta`: the smallest `cltv_expiry` invoicesrpc.AddInvoice takes (and the
/// smallest time-lock delta `validateCltvDeltaBounds` lets UpdateChannelPolicy set).
pub const MIN_CLTV_DELTA: u32 = 24;
/// `invoices.MaxFinalCltvDelta`.
pub const MAX_FINAL_CLTV_DELTA: u32 = 65_535;
/// `chainreg.DefaultBitcoinTimeLockDelta`: an invoice's final CLTV delta when `cltv_expiry`
/// is 0 (`cfg.DefaultCLTVExpiry` in invoicesrpc.AddInvoice).
pub const DEFAULT_CLTV_EXPIRY: u32 = 80;

/// Amounts of the forwards `push_forward` reports.
pub const FORWARD_IN_MSAT: u64 = 1_001_000;
pub const FORWARD_OUT_MSAT: u64 = 1_000_000;

pub fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

pub fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::getrandom(&mut b).unwrap();
    b
}

/// A node id as LND prints it.
pub fn pubkey(n: u8) -> String {
    format!("02{}", hex::encode([n; 32]))
}

/// One of the fake node's channels, with our fee policy and the peer's.
#[derive(Debug, Clone, Default)]
pub struct FakeChannel {
    pub channel: lnrpc::Channel,
    pub base_fee_msat: i64,
    pub fee_ppm: i64,
    pub time_lock_delta: u32,
    pub peer_policy: Option<lnrpc::RoutingPolicy>,
    /// Not in LND's graph (yet): GetChanInfo answers as lnd does, "edge not found".
    pub no_edge: bool,
}

/// What the next SendToRouteV2 does.
#[derive(Debug, Clone)]
pub enum SendScript {
    /// Pay the invoice of that hash, if the fake holds one with a preimage.
    Succeed,
    Fail {
        code: lnrpc::failure::FailureCode,
        source_index: u32,
    },
    /// Never answer (the payment stays IN_FLIGHT).
    Hang,
}

pub struct State {
    pub id: String,
    pub alias: String,
    pub network: String,
    pub block_height: u32,
    pub channels: Vec<FakeChannel>,
    pub pending: lnrpc::PendingChannelsResponse,
    pub edges: Vec<lnrpc::ChannelEdge>,
    pub invoices: Vec<lnrpc::Invoice>,
    pub policy_updates: Vec<lnrpc::PolicyUpdateRequest>,
    pub forwards: Vec<lnrpc::ForwardingEvent>,
    /// Settled forwards not yet written to the forwarding log.
    pub unflushed_forwards: Vec<lnrpc::ForwardingEvent>,
    pub send_script: VecDeque<SendScript>,
    pub sent_routes: Vec<lnrpc::Route>,
    pub payments: HashMap<[u8; 32], lnrpc::Payment>,
    pub calls: Vec<String>,
    /// lnd's `invoices.holdexpirydelta`.
    pub hold_expiry_delta: u32,
    /// GetDebugInfo refused (a macaroon without info:read, or an lnd before 0.18).
    pub debug_info_denied: bool,
    /// Blocks mined (and LND's expiry watcher run) just as the next SettleInvoice arrives:
    /// a settle racing LND's own cancel.
    pub blocks_before_settle: u32,
    /// The next SettleInvoice is carried out, but its answer is lost on the way back (the
    /// connection drops).
    pub lose_settle_answer: bool,
    /// Invoices added with AddHoldInvoice (`HodlInvoice` in lnd).
    hold: HashSet<[u8; 32]>,
    next_add_index: u64,
    next_htlc_id: u64,
    invoice_subs: HashMap<[u8; 32], Vec<Sub<lnrpc::Invoice>>>,
    htlc_subs: Vec<Sub<HtlcEvent>>,
    block_subs: Vec<Sub<BlockEpoch>>,
    payment_subs: Vec<Sub<lnrpc::Payment>>,
}

impl State {
    fn new(network: &str) -> State {
        State {
            id: pubkey(0xaa),
            alias: "fake-lnd".into(),
            network: network.into(),
            block_height: 800_000,
            channels: Vec::new(),
            pending: Default::default(),
            edges: Vec::new(),
            invoices: Vec::new(),
            policy_updates: Vec::new(),
            forwards: Vec::new(),
            unflushed_forwards: Vec::new(),
            send_script: VecDeque::new(),
            sent_routes: Vec::new(),
            payments: HashMap::new(),
            calls: Vec::new(),
            hold_expiry_delta: HOLD_EXPIRY_DELTA,
            debug_info_denied: false,
            blocks_before_settle: 0,
            lose_settle_answer: false,
            hold: HashSet::new(),
            next_add_index: 1,
            next_htlc_id: 0,
            invoice_subs: HashMap::new(),
            htlc_subs: Vec::new(),
            block_subs: Vec::new(),
            payment_subs: Vec::new(),
        }
    }

    fn invoice_mut(&mut self, hash: &[u8]) -> Option<&mut lnrpc::Invoice> {
        self.invoices.iter_mut().find(|i| i.r_hash == hash)
    }

    fn notify_invoice(&mut self, hash: [u8; 32]) {
        let Some(inv) = self.invoices.iter().find(|i| i.r_hash == hash).cloned() else {
            return;
        };
        if let Some(subs) = self.invoice_subs.get_mut(&hash) {
            subs.retain(|s| s.try_send(Ok(inv.clone())).is_ok());
        }
    }

    /// Adds an invoice after invoicesrpc.AddInvoice's CLTV checks (lnrpc/invoicesrpc/addinvoice.go).
    fn add_invoice(&mut self, mut inv: lnrpc::Invoice) -> Result<lnrpc::Invoice, Status> {
        if inv.cltv_expiry > u64::from(MAX_FINAL_CLTV_DELTA) {
            return Err(unknown(&format!(
                "CLTV delta of {} is too large, max accepted is: {MAX_FINAL_CLTV_DELTA}",
                inv.cltv_expiry
            )));
        }
        if inv.cltv_expiry == 0 {
            inv.cltv_expiry = u64::from(DEFAULT_CLTV_EXPIRY);
        } else if inv.cltv_expiry < u64::from(MIN_CLTV_DELTA) {
            return Err(unknown(&format!(
                "CLTV delta of {} must be greater than minimum of {MIN_CLTV_DELTA}",
                inv.cltv_expiry
            )));
        }
        inv.add_index = self.next_add_index;
        self.next_add_index += 1;
        inv.payment_addr = random32().to_vec();
        inv.creation_date = 1_700_000_000;
        inv.payment_request = self.bolt11(&inv);
        inv.state = lnrpc::invoice::InvoiceState::Open as i32;
        self.invoices.push(inv.clone());
        Ok(inv)
    }

    /// One block: block subscribers hear of it, then LND's expiry watcher runs.
    fn mine_one(&mut self) {
        self.block_height += 1;
        let epoch = BlockEpoch {
            hash: random32().to_vec(),
            height: self.block_height,
        };
        self.block_subs.retain(|t| t.try_send(Ok(epoch.clone())).is_ok());
        self.expire_hold_invoices();
    }

    /// lnd's `InvoiceExpiryWatcher` for accepted hold invoices: canceled (forced, HTLCs
    /// failed back) once `height + holdexpirydelta >= ` the earliest accepted HTLC expiry.
    fn expire_hold_invoices(&mut self) {
        use lnrpc::invoice::InvoiceState as S;
        let height = self.block_height;
        let delta = self.hold_expiry_delta;
        let due: Vec<[u8; 32]> = self
            .invoices
            .iter()
            .filter(|i| i.state() == S::Accepted)
            .filter_map(|i| {
                let hash: [u8; 32] = i.r_hash.as_slice().try_into().ok()?;
                let min = i
                    .htlcs
                    .iter()
                    .filter(|h| h.state() == lnrpc::InvoiceHtlcState::Accepted)
                    .map(|h| h.expiry_height as u32)
                    .min()?;
                (self.hold.contains(&hash) && height + delta >= min).then_some(hash)
            })
            .collect();
        for hash in due {
            let _ = self.cancel(hash);
        }
    }

    /// `InvoiceRegistry.cancelInvoiceImpl` with cancelAccepted: idempotent on a canceled
    /// invoice; a settled one cannot be canceled.
    fn cancel(&mut self, hash: [u8; 32]) -> Result<(), Status> {
        use lnrpc::invoice::InvoiceState as S;
        let inv = self
            .invoice_mut(&hash)
            .ok_or_else(|| unknown("unable to locate invoice"))?;
        match inv.state() {
            S::Canceled => return Ok(()),
            S::Settled => return Err(unknown("invoice already settled")),
            S::Open | S::Accepted => {}
        }
        inv.state = S::Canceled as i32;
        for h in &mut inv.htlcs {
            h.state = lnrpc::InvoiceHtlcState::Canceled as i32;
        }
        self.notify_invoice(hash);
        Ok(())
    }

    /// The channel policy `node` applies to forwards over `chan_id`, from the graph.
    fn policy_of(&self, chan_id: u64, node: &str) -> Option<lnrpc::RoutingPolicy> {
        let edge = self
            .edges
            .iter()
            .find(|e| e.channel_id == chan_id)
            .cloned()
            .or_else(|| {
                self.channels
                    .iter()
                    .find(|c| c.channel.chan_id == chan_id)
                    .map(|c| edge_of(&self.id, c))
            })?;
        if edge.node1_pub == node {
            edge.node1_policy
        } else if edge.node2_pub == node {
            edge.node2_policy
        } else {
            None
        }
    }

    /// What lnd's links and invoice registry do with a SendToRouteV2 route paying one of
    /// our own invoices, hop by hop: `Err((failure, failure_source_index))` where one
    /// refuses it. Every node on the way is taken to run lnd with its defaults.
    fn check_route(
        &self,
        route: &lnrpc::Route,
        hash: &[u8; 32],
    ) -> Result<(), (lnrpc::failure::FailureCode, u32)> {
        use lnrpc::failure::FailureCode as F;
        let height = self.block_height;
        // htlcswitch/link.go canSendHtlc: the outgoing HTLC's absolute expiry.
        let outgoing = |timeout: u32| {
            if timeout <= height + OUTGOING_CLTV_REJECT_DELTA {
                Err(F::ExpiryTooSoon)
            } else if timeout > height + MAX_OUTGOING_CLTV_EXPIRY {
                Err(F::ExpiryTooFar)
            } else {
                Ok(())
            }
        };
        let n = route.hops.len();
        if n == 0 {
            return Err((F::UnknownFailure, 0));
        }
        // Our own link offers the first HTLC: total_amt_msat, expiring at total_time_lock.
        outgoing(route.total_time_lock).map_err(|c| (c, 0))?;
        let mut in_amt = route.total_amt_msat;
        let mut in_exp = route.total_time_lock;
        for k in 1..n {
            // Node k (at the end of hop k-1) forwards over hop k what its payload says.
            let payload = &route.hops[k - 1];
            let (out_amt, out_exp) = (payload.amt_to_forward_msat, payload.expiry);
            let idx = k as u32;
            if let Some(p) = self.policy_of(route.hops[k].chan_id, &payload.pub_key) {
                // link.go CheckHtlcForward: fee first (ExpectedFee), then canSendHtlc, then
                // the time-lock delta.
                let fee = p.fee_base_msat + out_amt * p.fee_rate_milli_msat / 1_000_000;
                if in_amt < out_amt || in_amt - out_amt < fee {
                    return Err((F::FeeInsufficient, idx));
                }
                outgoing(out_exp).map_err(|c| (c, idx))?;
                if in_exp < out_exp || in_exp - out_exp < p.time_lock_delta {
                    return Err((F::IncorrectCltvExpiry, idx));
                }
            }
            in_amt = out_amt;
            in_exp = out_exp;
        }
        let last = &route.hops[n - 1];
        let idx = n as u32;
        // hop.ValidateFinalHtlc (link.go processExitHop).
        if in_amt < last.amt_to_forward_msat {
            return Err((F::FinalIncorrectHtlcAmount, idx));
        }
        if in_exp < last.expiry {
            return Err((F::FinalIncorrectCltvExpiry, idx));
        }
        if in_exp.saturating_sub(height) > MAX_FINAL_CLTV_DELTA {
            return Err((F::IncorrectOrUnknownPaymentDetails, idx));
        }
        // The invoice registry (invoices/update.go): FinalCltvRejectDelta, then the
        // invoice's own final CLTV delta; both answered as incorrect payment details.
        let final_delta = self
            .invoices
            .iter()
            .find(|i| i.r_hash == hash)
            .map_or(DEFAULT_CLTV_EXPIRY, |i| i.cltv_expiry as u32);
        if in_exp < height + FINAL_CLTV_REJECT_DELTA || in_exp < height + final_delta {
            return Err((F::IncorrectOrUnknownPaymentDetails, idx));
        }
        Ok(())
    }

    /// A real BOLT11 string for the invoice (signed with a throwaway key, as callers only
    /// decode it), so clients can check hash, secret and amount like they would on lnd.
    fn bolt11(&self, inv: &lnrpc::Invoice) -> String {
        use ballast::engine::bolt11::{build_unsigned, Description, InvoiceSpec};
        let arr = |v: &[u8]| <[u8; 32]>::try_from(v).unwrap_or([0; 32]);
        let spec = InvoiceSpec {
            network: self.network.clone(),
            amount: ballast::types::Msat(inv.value_msat as u64),
            payment_hash: ballast::types::PaymentHash(arr(&inv.r_hash)),
            payment_secret: arr(&inv.payment_addr),
            description: if inv.description_hash.len() == 32 {
                Description::Hash(arr(&inv.description_hash))
            } else {
                Description::Text(inv.memo.clone())
            },
            created_at: inv.creation_date as u64,
            expiry_secs: if inv.expiry > 0 { inv.expiry as u64 } else { 86_400 },
            min_final_cltv: if inv.cltv_expiry > 0 {
                inv.cltv_expiry as u32
            } else {
                80
            },
            hints: Vec::new(),
        };
        build_unsigned(&spec).unwrap_or_else(|e| format!("unbuildable: {e}"))
    }

    /// Drops every subscriber, ending their streams.
    fn end_streams(&mut self) {
        self.invoice_subs.clear();
        self.htlc_subs.clear();
        self.block_subs.clear();
        self.payment_subs.clear();
    }
}

struct Running {
    addr: SocketAddr,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<()>,
    accept: JoinHandle<()>,
}

pub struct FakeLnd {
    pub dir: tempfile::TempDir,
    pub network: String,
    state: Arc<Mutex<State>>,
    tls: Mutex<Arc<rustls::ServerConfig>>,
    macaroon_hex: String,
    running: Mutex<Option<Running>>,
}

impl FakeLnd {
    /// A stopped fake with an lnddir laid out like LND's for `network`.
    pub fn new(network: &str) -> FakeLnd {
        let dir = tempfile::tempdir().unwrap();
        let cert = make_cert();
        std::fs::write(dir.path().join("tls.cert"), &cert.pem).unwrap();
        let macdir = dir.path().join("data/chain/bitcoin").join(network);
        std::fs::create_dir_all(&macdir).unwrap();
        let macaroon = random32();
        std::fs::write(macdir.join("admin.macaroon"), macaroon).unwrap();
        FakeLnd {
            dir,
            network: network.into(),
            state: Arc::new(Mutex::new(State::new(network))),
            tls: Mutex::new(Arc::new(server_tls(&cert))),
            macaroon_hex: hex::encode(macaroon),
            running: Mutex::new(None),
        }
    }

    /// A new certificate, as lnd makes when its own expires: written to `tls.cert` and
    /// served from the next `start`.
    pub fn rotate_cert(&self) {
        let cert = make_cert();
        std::fs::write(self.dir.path().join("tls.cert"), &cert.pem).unwrap();
        *self.tls.lock().unwrap() = Arc::new(server_tls(&cert));
    }

    pub fn lnddir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// Settings that reach this fake (once started) with lncli-style defaults for paths.
    pub fn config(&self) -> LndConfig {
        let addr = self.addr().expect("fake LND not started");
        LndConfig {
            lnddir: Some(self.lnddir()),
            network: Some(self.network.clone()),
            rpcserver: Some(addr.to_string()),
            tlscertpath: None,
            macaroonpath: None,
        }
    }

    pub fn addr(&self) -> Option<SocketAddr> {
        self.running.lock().unwrap().as_ref().map(|r| r.addr)
    }

    pub fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// Serves on 127.0.0.1 (`port`, or any free one); returns the address.
    pub async fn start(&self, port: Option<u16>) -> SocketAddr {
        assert!(self.addr().is_none(), "fake LND already running");
        let listener = TcpListener::bind(("127.0.0.1", port.unwrap_or(0))).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(self.tls.lock().unwrap().clone());
        let (conn_tx, conn_rx) = mpsc::channel(16);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let acceptor = acceptor.clone();
                let conn_tx = conn_tx.clone();
                tokio::spawn(async move {
                    // A client that refuses our certificate just fails its handshake.
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = conn_tx.send(Ok::<_, std::io::Error>(tls)).await;
                    }
                });
            }
        });
        let expected = self.macaroon_hex.clone();
        let check = move |req: Request<()>| -> Result<Request<()>, Status> {
            match req.metadata().get("macaroon").and_then(|v| v.to_str().ok()) {
                Some(m) if m == expected => Ok(req),
                Some(_) => Err(Status::unauthenticated("verification failed: signature mismatch")),
                None => Err(Status::unauthenticated("expected 1 macaroon, got 0")),
            }
        };
        let svc = Service(self.state.clone());
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(LightningServer::with_interceptor(svc.clone(), check.clone()))
                .add_service(InvoicesServer::with_interceptor(svc.clone(), check.clone()))
                .add_service(RouterServer::with_interceptor(svc.clone(), check.clone()))
                .add_service(ChainNotifierServer::with_interceptor(svc, check))
                .serve_with_incoming_shutdown(ReceiverStream::new(conn_rx), async {
                    let _ = shutdown_rx.await;
                })
                .await;
        });
        *self.running.lock().unwrap() = Some(Running {
            addr,
            shutdown,
            server,
            accept,
        });
        addr
    }

    /// Stops serving: every stream ends, the port is released, the state is kept.
    pub async fn stop(&self) {
        let Some(r) = self.running.lock().unwrap().take() else {
            return;
        };
        self.with_state(State::end_streams);
        r.accept.abort();
        let _ = r.shutdown.send(());
        let mut server = r.server;
        if tokio::time::timeout(Duration::from_secs(3), &mut server)
            .await
            .is_err()
        {
            server.abort();
        }
    }

    /// Pays a hold invoice with one HTLC: OPEN → ACCEPTED, and tells its subscribers.
    /// Panics where lnd would refuse the HTLC (see [`FakeLnd::try_accept_htlc`]).
    pub fn accept_htlc(&self, hash: [u8; 32], amount_msat: u64, expiry_height: u32) {
        if let Err(e) = self.try_accept_htlc(hash, amount_msat, expiry_height) {
            panic!("lnd would not accept this HTLC: {e}");
        }
    }

    /// An exit HTLC for a hold invoice, through lnd's invoice registry: refused (as
    /// `ResultExpiryTooSoon`) when it expires before `height + FinalCltvRejectDelta` or
    /// before `height + ` the invoice's final CLTV delta (invoices/update.go); accepted
    /// otherwise, after which lnd's expiry watcher looks at it at once.
    pub fn try_accept_htlc(
        &self,
        hash: [u8; 32],
        amount_msat: u64,
        expiry_height: u32,
    ) -> Result<(), String> {
        self.with_state(|s| {
            let id = s.next_htlc_id;
            let height = s.block_height;
            let inv = s.invoice_mut(&hash).expect("no such invoice");
            assert_eq!(
                inv.state(),
                lnrpc::invoice::InvoiceState::Open,
                "invoice not open"
            );
            if expiry_height < height + FINAL_CLTV_REJECT_DELTA
                || u64::from(expiry_height) < u64::from(height) + inv.cltv_expiry
            {
                return Err(format!(
                    "expiry {expiry_height} too soon at height {height} (final CLTV delta {})",
                    inv.cltv_expiry
                ));
            }
            inv.state = lnrpc::invoice::InvoiceState::Accepted as i32;
            inv.htlcs.push(lnrpc::InvoiceHtlc {
                chan_id: s_chan(),
                htlc_index: id,
                amt_msat: amount_msat,
                accept_height: height as i32,
                accept_time: 1_700_000_100,
                expiry_height: expiry_height as i32,
                state: lnrpc::InvoiceHtlcState::Accepted as i32,
                ..Default::default()
            });
            s.next_htlc_id += 1;
            s.notify_invoice(hash);
            s.expire_hold_invoices();
            Ok(())
        })
    }

    /// A forward through the fake node resolving: a FORWARD event with a settle or a
    /// forward failure. Returns the (incoming, outgoing) htlc ids used.
    pub fn push_forward(&self, in_chan: u64, out_chan: u64, settled: bool) -> (u64, u64) {
        self.with_state(|s| {
            let id = s.next_htlc_id;
            s.next_htlc_id += 1;
            // As lnd: the FORWARD event with the amounts first, then its outcome.
            let offered = HtlcEvent {
                incoming_channel_id: in_chan,
                outgoing_channel_id: out_chan,
                incoming_htlc_id: id,
                outgoing_htlc_id: id + 1000,
                timestamp_ns: 1_700_000_000_000_000_000,
                event_type: routerrpc::htlc_event::EventType::Forward as i32,
                event: Some(routerrpc::htlc_event::Event::ForwardEvent(
                    routerrpc::ForwardEvent {
                        info: Some(routerrpc::HtlcInfo {
                            incoming_timelock: 800_100,
                            outgoing_timelock: 800_060,
                            incoming_amt_msat: FORWARD_IN_MSAT,
                            outgoing_amt_msat: FORWARD_OUT_MSAT,
                        }),
                    },
                )),
            };
            s.htlc_subs.retain(|t| t.try_send(Ok(offered.clone())).is_ok());
            let event = HtlcEvent {
                incoming_channel_id: in_chan,
                outgoing_channel_id: out_chan,
                incoming_htlc_id: id,
                outgoing_htlc_id: id + 1000,
                timestamp_ns: 1_700_000_000_000_000_000,
                event_type: routerrpc::htlc_event::EventType::Forward as i32,
                event: Some(if settled {
                    routerrpc::htlc_event::Event::SettleEvent(routerrpc::SettleEvent {
                        preimage: vec![1; 32],
                    })
                } else {
                    routerrpc::htlc_event::Event::ForwardFailEvent(routerrpc::ForwardFailEvent {})
                }),
            };
            s.htlc_subs.retain(|t| t.try_send(Ok(event.clone())).is_ok());
            (id, id + 1000)
        })
    }

    /// The outcome of a forward offered before the client subscribed to HTLC events: lnd
    /// sends the settle alone, without the FORWARD event that carried the amounts. With
    /// `history`, the forward is in ForwardingHistory (with its HTLC ids, as v0.21 has
    /// them) once [`FakeLnd::flush_forwards`] runs, as lnd's switch writes its forwarding
    /// log in batches (`DefaultFwdEventInterval`, 15 s).
    pub fn push_settle_only(&self, in_chan: u64, out_chan: u64, in_msat: u64, out_msat: u64, history: bool) {
        self.with_state(|s| {
            let id = s.next_htlc_id;
            s.next_htlc_id += 1;
            let now_ns = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64;
            let event = HtlcEvent {
                incoming_channel_id: in_chan,
                outgoing_channel_id: out_chan,
                incoming_htlc_id: id,
                outgoing_htlc_id: id + 1000,
                timestamp_ns: now_ns,
                event_type: routerrpc::htlc_event::EventType::Forward as i32,
                event: Some(routerrpc::htlc_event::Event::SettleEvent(
                    routerrpc::SettleEvent {
                        preimage: vec![1; 32],
                    },
                )),
            };
            s.htlc_subs.retain(|t| t.try_send(Ok(event.clone())).is_ok());
            if history {
                s.unflushed_forwards.push(lnrpc::ForwardingEvent {
                    chan_id_in: in_chan,
                    chan_id_out: out_chan,
                    amt_in_msat: in_msat,
                    amt_out_msat: out_msat,
                    amt_in: in_msat / 1000,
                    amt_out: out_msat / 1000,
                    fee_msat: in_msat - out_msat,
                    fee: (in_msat - out_msat) / 1000,
                    timestamp: now_ns / 1_000_000_000,
                    timestamp_ns: now_ns,
                    incoming_htlc_id: Some(id),
                    outgoing_htlc_id: Some(id + 1000),
                });
            }
        })
    }

    /// The switch's forwarding-log flush: forwards settled so far appear in ForwardingHistory.
    pub fn flush_forwards(&self) {
        self.with_state(|s| {
            let pending = std::mem::take(&mut s.unflushed_forwards);
            s.forwards.extend(pending);
        })
    }

    /// Mines `n` blocks, telling block subscribers of each.
    pub fn mine(&self, n: u32) {
        self.with_state(|s| {
            for _ in 0..n {
                s.mine_one();
            }
        });
    }

    pub fn policy_updates(&self) -> Vec<lnrpc::PolicyUpdateRequest> {
        self.with_state(|s| s.policy_updates.clone())
    }

    pub fn invoice(&self, hash: [u8; 32]) -> Option<lnrpc::Invoice> {
        self.with_state(|s| s.invoices.iter().find(|i| i.r_hash == hash).cloned())
    }
}

/// The incoming channel of accepted HTLCs.
fn s_chan() -> u64 {
    (700_000u64 << 40) | (1 << 16)
}

fn unknown(msg: &str) -> Status {
    // lnd returns most of its own errors with code Unknown.
    Status::unknown(msg.to_string())
}

fn hash32(b: &[u8]) -> Result<[u8; 32], Status> {
    b.try_into().map_err(|_| {
        Status::invalid_argument(format!("payment hash must be exactly 32 bytes, is {}", b.len()))
    })
}

fn edge_of(me: &str, c: &FakeChannel) -> lnrpc::ChannelEdge {
    let ours = lnrpc::RoutingPolicy {
        time_lock_delta: c.time_lock_delta,
        min_htlc: 1000,
        fee_base_msat: c.base_fee_msat,
        fee_rate_milli_msat: c.fee_ppm,
        disabled: false,
        max_htlc_msat: (c.channel.capacity as u64) * 990,
        last_update: 1_700_000_000,
    };
    let peer = c.channel.remote_pubkey.clone();
    let (n1, p1, n2, p2) = if me < peer.as_str() {
        (me.to_string(), Some(ours), peer, c.peer_policy)
    } else {
        (peer, c.peer_policy, me.to_string(), Some(ours))
    };
    lnrpc::ChannelEdge {
        channel_id: c.channel.chan_id,
        chan_point: c.channel.channel_point.clone(),
        node1_pub: n1,
        node2_pub: n2,
        capacity: c.channel.capacity,
        node1_policy: p1,
        node2_policy: p2,
    }
}

#[derive(Clone)]
struct Service(Arc<Mutex<State>>);

impl Service {
    fn state(&self, call: &str) -> std::sync::MutexGuard<'_, State> {
        let mut s = self.0.lock().unwrap();
        s.calls.push(call.to_string());
        s
    }
}

fn stream<T: Send + 'static>(rx: mpsc::Receiver<Result<T, Status>>) -> ReceiverStream<Result<T, Status>> {
    ReceiverStream::new(rx)
}

#[tonic::async_trait]
impl Lightning for Service {
    async fn get_info(&self, _: Request<lnrpc::GetInfoRequest>) -> Answer<lnrpc::GetInfoResponse> {
        let s = self.state("GetInfo");
        Ok(Response::new(lnrpc::GetInfoResponse {
            version: "0.21.2-beta commit=v0.21.2-beta fake".into(),
            identity_pubkey: s.id.clone(),
            alias: s.alias.clone(),
            num_active_channels: s.channels.len() as u32,
            block_height: s.block_height,
            synced_to_chain: true,
            synced_to_graph: true,
            chains: vec![lnrpc::Chain {
                chain: "bitcoin".into(),
                network: s.network.clone(),
            }],
            ..Default::default()
        }))
    }

    /// rpcserver.go GetDebugInfo: the flattened config (configToFlatMap), here the keys
    /// ballast may read.
    async fn get_debug_info(
        &self,
        _: Request<lnrpc::GetDebugInfoRequest>,
    ) -> Answer<lnrpc::GetDebugInfoResponse> {
        let s = self.state("GetDebugInfo");
        if s.debug_info_denied {
            return Err(unknown("permission denied"));
        }
        let config = [
            ("invoices.holdexpirydelta", s.hold_expiry_delta.to_string()),
            ("bitcoin.timelockdelta", DEFAULT_CLTV_EXPIRY.to_string()),
            ("network", s.network.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Ok(Response::new(lnrpc::GetDebugInfoResponse {
            config,
            log: Vec::new(),
        }))
    }

    async fn list_channels(
        &self,
        _: Request<lnrpc::ListChannelsRequest>,
    ) -> Answer<lnrpc::ListChannelsResponse> {
        let s = self.state("ListChannels");
        Ok(Response::new(lnrpc::ListChannelsResponse {
            channels: s.channels.iter().map(|c| c.channel.clone()).collect(),
        }))
    }

    async fn pending_channels(
        &self,
        _: Request<lnrpc::PendingChannelsRequest>,
    ) -> Answer<lnrpc::PendingChannelsResponse> {
        Ok(Response::new(self.state("PendingChannels").pending.clone()))
    }

    async fn describe_graph(&self, _: Request<lnrpc::ChannelGraphRequest>) -> Answer<lnrpc::ChannelGraph> {
        let s = self.state("DescribeGraph");
        Ok(Response::new(lnrpc::ChannelGraph {
            nodes: Vec::new(),
            edges: s.edges.clone(),
        }))
    }

    async fn get_chan_info(&self, r: Request<lnrpc::ChanInfoRequest>) -> Answer<lnrpc::ChannelEdge> {
        let s = self.state("GetChanInfo");
        let id = r.into_inner().chan_id;
        if let Some(c) = s.channels.iter().find(|c| c.channel.chan_id == id && !c.no_edge) {
            return Ok(Response::new(edge_of(&s.id, c)));
        }
        match s.edges.iter().find(|e| e.channel_id == id) {
            Some(e) => Ok(Response::new(e.clone())),
            None => Err(unknown("edge not found")),
        }
    }

    async fn fee_report(&self, _: Request<lnrpc::FeeReportRequest>) -> Answer<lnrpc::FeeReportResponse> {
        let s = self.state("FeeReport");
        Ok(Response::new(lnrpc::FeeReportResponse {
            channel_fees: s
                .channels
                .iter()
                .map(|c| lnrpc::ChannelFeeReport {
                    chan_id: c.channel.chan_id,
                    channel_point: c.channel.channel_point.clone(),
                    base_fee_msat: c.base_fee_msat,
                    fee_per_mil: c.fee_ppm,
                    fee_rate: c.fee_ppm as f64 / 1e6,
                })
                .collect(),
            ..Default::default()
        }))
    }

    async fn update_channel_policy(
        &self,
        r: Request<lnrpc::PolicyUpdateRequest>,
    ) -> Answer<lnrpc::PolicyUpdateResponse> {
        let mut s = self.state("UpdateChannelPolicy");
        let r = r.into_inner();
        s.policy_updates.push(r.clone());
        // rpcserver.go UpdateChannelPolicy → validateChannelPolicyTimeLockDelta →
        // validateCltvDeltaBounds (config.go): below routing.MinCLTVDelta is refused.
        if r.time_lock_delta < MIN_CLTV_DELTA {
            return Err(unknown(&format!(
                "time lock delta of {} is too small, minimum supported is {MIN_CLTV_DELTA}",
                r.time_lock_delta
            )));
        }
        let Some(lnrpc::policy_update_request::Scope::ChanPoint(cp)) = r.scope else {
            return Err(unknown("only per-channel updates are faked"));
        };
        let txid = match cp.funding_txid {
            Some(lnrpc::channel_point::FundingTxid::FundingTxidStr(t)) => t,
            _ => return Err(unknown("fake expects funding_txid_str")),
        };
        let point = format!("{txid}:{}", cp.output_index);
        match s.channels.iter_mut().find(|c| c.channel.channel_point == point) {
            Some(c) => {
                c.base_fee_msat = r.base_fee_msat;
                c.fee_ppm = i64::from(r.fee_rate_ppm);
                c.time_lock_delta = r.time_lock_delta;
                Ok(Response::new(lnrpc::PolicyUpdateResponse::default()))
            }
            None => Ok(Response::new(lnrpc::PolicyUpdateResponse {
                failed_updates: vec![lnrpc::FailedUpdate {
                    outpoint: Some(lnrpc::OutPoint {
                        txid_bytes: Vec::new(),
                        txid_str: txid,
                        output_index: cp.output_index,
                    }),
                    reason: lnrpc::UpdateFailure::NotFound as i32,
                    update_error: "not found".into(),
                }],
            })),
        }
    }

    async fn forwarding_history(
        &self,
        r: Request<lnrpc::ForwardingHistoryRequest>,
    ) -> Answer<lnrpc::ForwardingHistoryResponse> {
        let s = self.state("ForwardingHistory");
        let r = r.into_inner();
        let max = if r.num_max_events == 0 {
            100
        } else {
            r.num_max_events
        } as usize;
        let matching: Vec<_> = s
            .forwards
            .iter()
            .filter(|f| f.timestamp_ns / 1_000_000_000 >= r.start_time)
            .cloned()
            .collect();
        let page: Vec<_> = matching
            .into_iter()
            .skip(r.index_offset as usize)
            .take(max)
            .collect();
        Ok(Response::new(lnrpc::ForwardingHistoryResponse {
            last_offset_index: r.index_offset + page.len() as u32,
            forwarding_events: page,
        }))
    }

    async fn add_invoice(&self, r: Request<lnrpc::Invoice>) -> Answer<lnrpc::AddInvoiceResponse> {
        let mut s = self.state("AddInvoice");
        let mut inv = r.into_inner();
        if inv.r_preimage.is_empty() {
            inv.r_preimage = random32().to_vec();
        }
        inv.r_hash = sha256(&inv.r_preimage).to_vec();
        if s.invoices.iter().any(|i| i.r_hash == inv.r_hash) {
            return Err(unknown("invoice with payment hash already exists"));
        }
        let inv = s.add_invoice(inv)?;
        Ok(Response::new(lnrpc::AddInvoiceResponse {
            r_hash: inv.r_hash,
            payment_request: inv.payment_request,
            add_index: inv.add_index,
            payment_addr: inv.payment_addr,
        }))
    }

    async fn list_invoices(
        &self,
        r: Request<lnrpc::ListInvoiceRequest>,
    ) -> Answer<lnrpc::ListInvoiceResponse> {
        let s = self.state("ListInvoices");
        let r = r.into_inner();
        let max = if r.num_max_invoices == 0 {
            100
        } else {
            r.num_max_invoices
        } as usize;
        let page: Vec<_> = s
            .invoices
            .iter()
            .filter(|i| i.add_index > r.index_offset)
            .take(max)
            .cloned()
            .collect();
        Ok(Response::new(lnrpc::ListInvoiceResponse {
            first_index_offset: page.first().map_or(0, |i| i.add_index),
            last_index_offset: page.last().map_or(0, |i| i.add_index),
            invoices: page,
        }))
    }

    async fn lookup_invoice(&self, r: Request<lnrpc::PaymentHash>) -> Answer<lnrpc::Invoice> {
        let s = self.state("LookupInvoice");
        let h = r.into_inner().r_hash;
        match s.invoices.iter().find(|i| i.r_hash == h) {
            Some(i) => Ok(Response::new(i.clone())),
            None => Err(Status::not_found("unable to locate invoice")),
        }
    }
}

#[tonic::async_trait]
impl Invoices for Service {
    type SubscribeSingleInvoiceStream = ReceiverStream<Result<lnrpc::Invoice, Status>>;

    async fn subscribe_single_invoice(
        &self,
        r: Request<SubscribeSingleInvoiceRequest>,
    ) -> Answer<Self::SubscribeSingleInvoiceStream> {
        let mut s = self.state("SubscribeSingleInvoice");
        let hash = hash32(&r.into_inner().r_hash)?;
        let Some(inv) = s.invoices.iter().find(|i| i.r_hash == hash).cloned() else {
            return Err(Status::not_found("unable to locate invoice"));
        };
        let (tx, rx) = mpsc::channel(64);
        tx.try_send(Ok(inv)).unwrap();
        s.invoice_subs.entry(hash).or_default().push(tx);
        Ok(Response::new(stream(rx)))
    }

    async fn cancel_invoice(&self, r: Request<CancelInvoiceMsg>) -> Answer<CancelInvoiceResp> {
        let mut s = self.state("CancelInvoice");
        let hash = hash32(&r.into_inner().payment_hash)?;
        s.cancel(hash)?;
        Ok(Response::new(CancelInvoiceResp {}))
    }

    async fn add_hold_invoice(&self, r: Request<AddHoldInvoiceRequest>) -> Answer<AddHoldInvoiceResp> {
        let mut s = self.state("AddHoldInvoice");
        let r = r.into_inner();
        hash32(&r.hash)?;
        if s.invoices.iter().any(|i| i.r_hash == r.hash) {
            return Err(unknown("invoice with payment hash already exists"));
        }
        let inv = s.add_invoice(lnrpc::Invoice {
            memo: r.memo,
            r_hash: r.hash,
            value_msat: r.value_msat,
            description_hash: r.description_hash,
            expiry: r.expiry,
            cltv_expiry: r.cltv_expiry,
            private: r.private,
            ..Default::default()
        })?;
        let hash = hash32(&inv.r_hash)?;
        s.hold.insert(hash);
        Ok(Response::new(AddHoldInvoiceResp {
            payment_request: inv.payment_request,
            add_index: inv.add_index,
            payment_addr: inv.payment_addr,
        }))
    }

    async fn settle_invoice(&self, r: Request<SettleInvoiceMsg>) -> Answer<SettleInvoiceResp> {
        use lnrpc::invoice::InvoiceState as S;
        let mut s = self.state("SettleInvoice");
        for _ in 0..std::mem::take(&mut s.blocks_before_settle) {
            s.mine_one();
        }
        let preimage = r.into_inner().preimage;
        let hash = sha256(&preimage);
        let inv = s
            .invoice_mut(&hash)
            .ok_or_else(|| unknown("unable to locate invoice"))?;
        // InvoiceRegistry.SettleHodlInvoice's errors (invoices/errors.go); the RPC server
        // (invoicesrpc SettleInvoice) answers ErrInvoiceAlreadySettled as success.
        match inv.state() {
            S::Settled => return Ok(Response::new(SettleInvoiceResp {})),
            S::Open => return Err(unknown("invoice still open")),
            S::Canceled => return Err(unknown("invoice already canceled")),
            S::Accepted => {}
        }
        inv.state = S::Settled as i32;
        inv.r_preimage = preimage;
        inv.settle_date = 1_700_000_200;
        let mut paid = 0u64;
        for h in &mut inv.htlcs {
            h.state = lnrpc::InvoiceHtlcState::Settled as i32;
            paid += h.amt_msat;
        }
        inv.amt_paid_msat = paid as i64;
        inv.amt_paid_sat = (paid / 1000) as i64;
        s.notify_invoice(hash);
        if std::mem::take(&mut s.lose_settle_answer) {
            return Err(Status::unavailable("connection reset"));
        }
        Ok(Response::new(SettleInvoiceResp {}))
    }
}

#[tonic::async_trait]
impl Router for Service {
    type TrackPaymentV2Stream = ReceiverStream<Result<lnrpc::Payment, Status>>;
    type SubscribeHtlcEventsStream = ReceiverStream<Result<HtlcEvent, Status>>;

    async fn track_payment_v2(
        &self,
        r: Request<routerrpc::TrackPaymentRequest>,
    ) -> Answer<Self::TrackPaymentV2Stream> {
        use lnrpc::payment::PaymentStatus as P;
        let mut s = self.state("TrackPaymentV2");
        let hash = hash32(&r.into_inner().payment_hash)?;
        let p = s
            .payments
            .get(&hash)
            .cloned()
            .ok_or_else(|| Status::not_found("payment isn't initiated"))?;
        let (tx, rx) = mpsc::channel(4);
        if p.status() == P::InFlight {
            // No in-flight updates asked for: say nothing until it resolves (never, here).
            s.payment_subs.push(tx);
        } else {
            tx.try_send(Ok(p)).unwrap();
        }
        Ok(Response::new(stream(rx)))
    }

    async fn send_to_route_v2(
        &self,
        r: Request<routerrpc::SendToRouteRequest>,
    ) -> Answer<lnrpc::HtlcAttempt> {
        use lnrpc::htlc_attempt::HtlcStatus;
        use lnrpc::payment::PaymentStatus as P;
        let r = r.into_inner();
        let hash = hash32(&r.payment_hash)?;
        let route = r.route.ok_or_else(|| Status::invalid_argument("route missing"))?;
        let (script, outcome) = {
            let mut s = self.state("SendToRouteV2");
            s.sent_routes.push(route.clone());
            let script = s.send_script.pop_front().unwrap_or(SendScript::Succeed);
            let n = route.hops.len() as u32;
            let fail = |code, idx| lnrpc::HtlcAttempt {
                status: HtlcStatus::Failed as i32,
                route: Some(route.clone()),
                failure: Some(lnrpc::Failure {
                    code: code as i32,
                    failure_source_index: idx,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let outcome = match &script {
                SendScript::Hang => None,
                SendScript::Fail { code, source_index } => Some(fail(*code, *source_index)),
                SendScript::Succeed => match s.check_route(&route, &hash) {
                    Err((code, idx)) => Some(fail(code, idx)),
                    Ok(()) => {
                        let addr = route
                            .hops
                            .last()
                            .and_then(|h| h.mpp_record.as_ref())
                            .map(|m| m.payment_addr.clone());
                        match s.invoice_mut(&hash) {
                            Some(inv)
                                if !inv.r_preimage.is_empty()
                                    && inv.state() == lnrpc::invoice::InvoiceState::Open
                                    && addr.as_deref() == Some(inv.payment_addr.as_slice()) =>
                            {
                                inv.state = lnrpc::invoice::InvoiceState::Settled as i32;
                                inv.amt_paid_msat = route.hops.last().map_or(0, |h| h.amt_to_forward_msat);
                                Some(lnrpc::HtlcAttempt {
                                    status: HtlcStatus::Succeeded as i32,
                                    route: Some(route.clone()),
                                    preimage: inv.r_preimage.clone(),
                                    ..Default::default()
                                })
                            }
                            _ => Some(fail(
                                lnrpc::failure::FailureCode::IncorrectOrUnknownPaymentDetails,
                                n,
                            )),
                        }
                    }
                },
            };
            let status = match &outcome {
                None => P::InFlight,
                Some(a) if a.status == HtlcStatus::Succeeded as i32 => P::Succeeded,
                Some(_) => P::Failed,
            };
            s.payments.insert(
                hash,
                lnrpc::Payment {
                    payment_hash: hex::encode(hash),
                    payment_preimage: outcome
                        .as_ref()
                        .map(|a| hex::encode(&a.preimage))
                        .unwrap_or_default(),
                    status: status as i32,
                    htlcs: outcome.iter().cloned().collect(),
                    ..Default::default()
                },
            );
            (script, outcome)
        };
        match outcome {
            Some(a) => Ok(Response::new(a)),
            None => {
                debug_assert!(matches!(script, SendScript::Hang));
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Err(Status::deadline_exceeded("fake hang"))
            }
        }
    }

    async fn subscribe_htlc_events(
        &self,
        _: Request<routerrpc::SubscribeHtlcEventsRequest>,
    ) -> Answer<Self::SubscribeHtlcEventsStream> {
        let mut s = self.state("SubscribeHtlcEvents");
        let (tx, rx) = mpsc::channel(64);
        tx.try_send(Ok(HtlcEvent {
            event: Some(routerrpc::htlc_event::Event::SubscribedEvent(
                routerrpc::SubscribedEvent {},
            )),
            ..Default::default()
        }))
        .unwrap();
        s.htlc_subs.push(tx);
        Ok(Response::new(stream(rx)))
    }
}

#[tonic::async_trait]
impl ChainNotifier for Service {
    type RegisterBlockEpochNtfnStream = ReceiverStream<Result<BlockEpoch, Status>>;

    async fn register_block_epoch_ntfn(
        &self,
        _: Request<BlockEpoch>,
    ) -> Answer<Self::RegisterBlockEpochNtfnStream> {
        let mut s = self.state("RegisterBlockEpochNtfn");
        let (tx, rx) = mpsc::channel(64);
        tx.try_send(Ok(BlockEpoch {
            hash: random32().to_vec(),
            height: s.block_height,
        }))
        .unwrap();
        s.block_subs.push(tx);
        Ok(Response::new(stream(rx)))
    }
}
