//! A scriptable in-memory Lightning node, served on a fake `lightning-rpc`
//! unix socket.
//!
//! The plugin talks to it with the `cln-rpc` client exactly as it would talk
//! to lightningd. Every request is checked against CLN's request schema and
//! every answer the fake produces against the response schema, so neither
//! side can drift from v26.06 unnoticed. Problems are recorded as
//! *violations* (the server runs on its own threads, where a panic would
//! not fail the test); [`super::Lightningd`] turns them into test failures.

mod channels;
mod hooks;
mod invoices;
mod payments;
mod rpc;
mod server;
#[cfg(test)]
mod tests;

pub use channels::*;
pub use hooks::*;
pub use invoices::*;
pub use payments::*;
pub use server::*;

use super::lightningd::Lightningd;
use super::protocol::{check_rpc_request_envelope, JsonRpcError, INVALID_PARAMS, METHOD_NOT_FOUND};
use super::schema::schemas;
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::io::{BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub type RpcResult = Result<Value, JsonRpcError>;

/// How the fake answers one request: checked against the response schema, or not.
enum Answer {
    Checked(RpcResult),
    Unchecked(Value),
    Wire(Wire),
}

/// A test-provided implementation of one RPC method; receives the params
/// already converted to an object (positional params are mapped by name
/// for the methods the fake knows).
pub type Handler = Arc<dyn Fn(&Value) -> RpcResult + Send + Sync>;

/// Valid secp256k1 public keys (k·G for k = 1..24, compressed). The
/// `cln-rpc` client parses node ids as curve points, so arbitrary
/// 33-byte hex strings would not do.
const PUBKEYS: [&str; 24] = [
    "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798",
    "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5",
    "02f9308a019258c31049344f85f89d5229b531c845836f99b08601f113bce036f9",
    "02e493dbf1c10d80f3581e4904930b1404cc6c13900ee0758474fa94abe8c4cd13",
    "022f8bde4d1a07209355b4a7250a5c5128e88b84bddc619ab7cba8d569b240efe4",
    "03fff97bd5755eeea420453a14355235d382f6472f8568a18b2f057a1460297556",
    "025cbdf0646e5db4eaa398f365f2ea7a0e3d419b7e0330e39ce92bddedcac4f9bc",
    "022f01e5e15cca351daff3843fb70f3c2f0a1bdd05e5af888a67784ef3e10a2a01",
    "03acd484e2f0c7f65309ad178a9f559abde09796974c57e714c35f110dfc27ccbe",
    "03a0434d9e47f3c86235477c7b1ae6ae5d3442d49b1943c2b752a68e2a47e247c7",
    "03774ae7f858a9411e5ef4246b70c65aac5649980be5c17891bbec17895da008cb",
    "03d01115d548e7561b15c38f004d734633687cf4419620095bc5b0f47070afe85a",
    "03f28773c2d975288bc7d1d205c3748651b075fbc6610e58cddeeddf8f19405aa8",
    "03499fdf9e895e719cfd64e67f07d38e3226aa7b63678949e6e49b241a60e823e4",
    "02d7924d4f7d43ea965a465ae3095ff41131e5946f3c85f79e44adbcf8e27e080e",
    "03e60fce93b59e9ec53011aabc21c23e97b2a31369b87a5ae9c44ee89e2a6dec0a",
    "03defdea4cdb677750a420fee807eacf21eb9898ae79b9768766e4faa04a2d4a34",
    "025601570cb47f238d2b0286db4a990fa0f3ba28d1a319f5e7cf55c2a2444da7cc",
    "022b4ea0a797a443d293ef5cff444f4979f06acfebd7e86d277475656138385b6c",
    "024ce119c96e2fa357200b559b2f7dd5a5f02d5290aff74b03f3e471b273211c97",
    "02352bbf4a4cdd12564f93fa332ce333301d9ad40271f8107181340aef25be59d5",
    "03421f5fc9a21065445c96fdb91c0c1e2f2431741c72713b4b99ddcb316f31e9fc",
    "032fa2104d6b38d11b0230010559879124e42ab8dfeff5ff29dc9cdadd4ecacc3f",
    "03fe72c435413d33d48ac09c9161ba8b09683215439d62b7940502bda8b202e6ce",
];

/// A valid node id; index 0 is the fake node itself, 1.. are peers.
pub fn pubkey(i: usize) -> String {
    PUBKEYS[i % PUBKEYS.len()].to_string()
}

/// Deterministic 32-byte hex derived from a seed (hashes, txids, ...).
pub fn hash_hex(seed: &str) -> String {
    hex::encode(Sha256::digest(seed.as_bytes()))
}

/// Payment hash of a preimage, as lightningd computes it.
pub fn payment_hash_of(preimage_hex: &str) -> String {
    let bytes = hex::decode(preimage_hex).expect("preimage must be hex");
    hex::encode(Sha256::digest(bytes))
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// One JSON-RPC call the plugin made.
#[derive(Clone, Debug)]
pub struct RpcCall {
    pub method: String,
    /// Params exactly as sent (object, array, or null when absent).
    pub params: Value,
    pub id: Value,
    /// Which socket connection carried it (0-based, in accept order).
    pub connection: usize,
    pub at: Instant,
}

/// A canned answer.
#[derive(Clone, Debug)]
pub enum Scripted {
    /// A `result`, which must satisfy the method's response schema.
    Result(Value),
    Error(JsonRpcError),
    /// A `result` that deliberately breaks the response schema (a malformed answer).
    Unchecked(Value),
    /// A whole JSON-RPC envelope, written as is.
    Envelope(Value),
    /// Raw bytes instead of JSON.
    Bytes(String),
    /// Close the connection without answering.
    Hangup,
}

/// What goes back on the socket for one request.
#[derive(Clone, Debug)]
pub enum Wire {
    Json(Value),
    Bytes(Vec<u8>),
    Hangup,
}

/// Everything the fake node knows. Mutate it through [`FakeNode::with`].
pub struct NodeState {
    pub id: String,
    pub alias: String,
    pub color: String,
    pub version: String,
    pub network: String,
    pub blockheight: u32,
    pub lightning_dir: String,
    pub channels: Vec<Channel>,
    pub gossip_channels: Vec<GossipChannel>,
    pub gossip_nodes: Vec<GossipNode>,
    pub forwards: Vec<Forward>,
    pub invoices: Vec<Invoice>,
    pub feerate_perkw: u32,
    /// lightningd's `cltv-delta` option, as `listconfigs` reports it (34 by default).
    pub cltv_delta: u32,
    /// Extra `listconfigs` entries (plugin options, set by the driver).
    pub extra_configs: Map<String, Value>,
    /// Incoming HTLCs handed to the plugin's `htlc_accepted` hook and not yet answered,
    /// by the hook request's id (see [`FakeNode::htlc_to_hook`]).
    hook_htlcs: HashMap<String, (String, u64)>,
    /// Hook HTLCs whose answer lightningd never applied: it went down first, or the plugin
    /// died. Undecided in its database until the next start decides (see
    /// [`FakeNode::plugin_started`]).
    unapplied: Vec<(String, u64)>,
    /// Every `sendpay` attempt, oldest first (see [`Payment`]).
    pub payments: Vec<Payment>,
    /// Where HTLCs that reach our node go (see [`FakeNode::set_htlc_hook`]).
    htlc_hook: Option<HtlcHook>,
    next_htlc_id: u64,
    /// Most payments in flight at once so far.
    peak_in_flight: usize,
    calls: Vec<RpcCall>,
    violations: Vec<String>,
    once: HashMap<String, VecDeque<Scripted>>,
    always: HashMap<String, Scripted>,
    handlers: HashMap<String, Handler>,
}

/// Shared handle on the fake node; clones see the same node. Keep one
/// across plugin restarts to give the plugin a persistent world.
#[derive(Clone)]
pub struct FakeNode {
    inner: Arc<(Mutex<NodeState>, Condvar)>,
}

impl Default for FakeNode {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeNode {
    pub fn new() -> Self {
        let state = NodeState {
            id: pubkey(0),
            alias: "BALLASTFAKE".into(),
            color: "0266e4".into(),
            version: "v26.06".into(),
            network: "regtest".into(),
            blockheight: 110,
            lightning_dir: String::new(),
            channels: Vec::new(),
            gossip_channels: Vec::new(),
            gossip_nodes: Vec::new(),
            forwards: Vec::new(),
            invoices: Vec::new(),
            feerate_perkw: 253,
            cltv_delta: 34,
            extra_configs: Map::new(),
            hook_htlcs: HashMap::new(),
            unapplied: Vec::new(),
            payments: Vec::new(),
            htlc_hook: None,
            next_htlc_id: 1000,
            peak_in_flight: 0,
            calls: Vec::new(),
            violations: Vec::new(),
            once: HashMap::new(),
            always: HashMap::new(),
            handlers: HashMap::new(),
        };
        FakeNode {
            inner: Arc::new((Mutex::new(state), Condvar::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, NodeState> {
        // A panicking test thread must not hide the state from Drop-time
        // diagnostics.
        self.inner.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn changed(&self) {
        self.inner.1.notify_all();
    }

    /// Runs `f` with exclusive access to the node's state.
    pub fn with<R>(&self, f: impl FnOnce(&mut NodeState) -> R) -> R {
        let r = f(&mut self.lock());
        self.changed();
        r
    }

    pub fn id(&self) -> String {
        self.lock().id.clone()
    }

    pub fn blockheight(&self) -> u32 {
        self.lock().blockheight
    }

    pub fn set_blockheight(&self, h: u32) {
        self.with(|s| s.blockheight = h);
    }

    /// The next call to `method` gets this answer (queued, FIFO).
    pub fn script_once(&self, method: &str, answer: Scripted) {
        self.with(|s| s.once.entry(method.into()).or_default().push_back(answer));
    }

    /// Every call to `method` gets this answer until cleared.
    pub fn script_always(&self, method: &str, answer: Scripted) {
        self.with(|s| s.always.insert(method.into(), answer));
    }

    pub fn clear_script(&self, method: &str) {
        self.with(|s| {
            s.once.remove(method);
            s.always.remove(method);
        });
    }

    /// Implements (or overrides) a method with test code.
    pub fn set_handler(&self, method: &str, f: impl Fn(&Value) -> RpcResult + Send + Sync + 'static) {
        self.with(|s| s.handlers.insert(method.into(), Arc::new(f)));
    }

    /// Every call so far, in arrival order.
    pub fn calls(&self) -> Vec<RpcCall> {
        self.lock().calls.clone()
    }

    /// Params of every call to `method`.
    pub fn calls_to(&self, method: &str) -> Vec<Value> {
        self.lock()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .map(|c| c.params.clone())
            .collect()
    }

    pub fn clear_calls(&self) {
        self.with(|s| s.calls.clear());
    }

    /// Blocks until the plugin has called `method` at least `count` times.
    pub fn wait_for_calls(&self, method: &str, count: usize, timeout: Duration) -> Vec<RpcCall> {
        let deadline = Instant::now() + timeout;
        let mut guard = self.lock();
        loop {
            let matching: Vec<RpcCall> = guard
                .calls
                .iter()
                .filter(|c| c.method == method)
                .cloned()
                .collect();
            if matching.len() >= count {
                return matching;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "plugin called `{method}` {} times, expected {count} within {timeout:?}; calls: {:?}",
                    matching.len(),
                    guard.calls.iter().map(|c| &c.method).collect::<Vec<_>>()
                );
            }
            guard = self
                .inner
                .1
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Schema or protocol problems seen so far, without clearing them.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Schema or protocol problems seen so far; clears the list.
    pub fn take_violations(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().violations)
    }

    fn violation(&self, msg: String) {
        self.with(|s| s.violations.push(format!("fake lightningd RPC: {msg}")));
    }
}
