//! What every method, hook and subscription handler shares.

use super::Notifier;
use crate::counters::Counters;
use crate::engine::claims::ClaimSet;
use crate::node::AnyNode;
use crate::service::fees::FeeService;
use crate::service::hodl::HodlService;
use crate::service::income::Income;
use crate::service::monitor::MonitorService;
use crate::service::rebalance::RebalanceService;
use crate::store::Store;
use crate::types::NodeId;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub store: Store,
    /// The node this instance drives, whichever adapter made it (see `node::AnyNode` for
    /// why the state holds it type-erased rather than being generic over it).
    pub node: AnyNode,
    /// How `hodl-settle` settles where the node holds hold-invoice HTLCs itself (LND);
    /// `None` where ballast holds them through the node's hook (Core Lightning).
    pub node_settler: Option<Arc<dyn super::hodl::NodeSettler>>,
    /// Where `ballast_hodl_state` and `ballast_alert` go.
    pub notifier: Notifier,
    pub counters: Arc<Counters>,
    pub claims: Arc<ClaimSet>,
    pub hodl: Arc<HodlService>,
    pub income: Arc<Income>,
    pub fees: Arc<FeeService>,
    pub monitor: Arc<MonitorService>,
    /// Snapshot triggers, webhook queue and delivery figures of the balance monitor.
    pub monitor_rt: Arc<super::monitor::Runtime>,
    pub rebalance: Arc<RebalanceService>,
    pub rebalance_settings: super::rebalance::RebalanceSettings,
    /// One execution at a time: budgets are checked against what has been spent so far.
    pub rebalance_lock: tokio::sync::Mutex<()>,
    /// Forwards a pending fee decision waits to see settled in `listpeerchannels`.
    pub awaited: super::fees::AwaitedForwards,
    pub network: String,
    /// lightningd's network directory for the plugin, `<datadir>/<network>` for the
    /// sidecar: relative option paths are taken from here.
    pub base_dir: std::path::PathBuf,
    /// The only directory methods write files into (`ballast-files-dir`).
    pub files: Arc<crate::service::files::FilesDir>,
    pub node_id: Option<NodeId>,
    pub started: Instant,
    /// Defaults for new hold invoices, from options.
    pub hodl_defaults: HodlDefaults,
    pub blockheight: AtomicU32,
    /// Fired by the `shutdown` notification. A `Notify` keeps the signal even when it
    /// arrives before the main task starts waiting (lightningd may stop us right after init).
    pub stop: tokio::sync::Notify,
}

#[derive(Debug, Clone, Copy)]
pub struct HodlDefaults {
    pub expiry_secs: u64,
    pub cltv: u32,
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }

    pub fn blockheight(&self) -> u32 {
        self.0.blockheight.load(Ordering::Acquire)
    }

    /// Raises the height to `h` and returns the height now in force. cln-plugin runs each
    /// notification on its own task, so blocks can be handled out of order; the chain tip
    /// only moves forward (a reorg replaces blocks at heights we have already seen).
    pub fn set_blockheight(&self, h: u32) -> u32 {
        self.0.blockheight.fetch_max(h, Ordering::AcqRel).max(h)
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
