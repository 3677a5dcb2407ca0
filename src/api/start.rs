//! Opening the store and services, and starting the background loops: the same for the
//! plugin and the sidecar once each has read its options and reached its node.

use super::monitor::{self, MonitorSettings};
use super::settings::Settings;
use super::state::HodlDefaults;
use super::{fees, hodl, now_unix, options, rebalance, AppState, Notifier, Shared};
use crate::counters::Counters;
use crate::engine::claims::ClaimSet;
use crate::node::{AnyNode, Node};
use crate::service::fees::FeeService;
use crate::service::files::FilesDir;
use crate::service::hodl::{HodlEvent, HodlService};
use crate::service::income::Income;
use crate::service::monitor::MonitorService;
use crate::service::rebalance::RebalanceService;
use crate::store::Store;
use anyhow::Context;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// What an adapter knows before the services exist.
pub struct StartParams {
    pub settings: Settings,
    pub monitor: MonitorSettings,
    pub db_path: PathBuf,
    /// Relative fee-policy paths are resolved against this directory.
    pub base_dir: PathBuf,
    /// True when the node kept running while ballast was stopped and will not replay held
    /// HTLCs (a CLN `plugin start`): held invoices are then cancelled at load.
    pub held_htlcs_lost: bool,
    pub counters: Arc<Counters>,
    pub claims: Arc<ClaimSet>,
    pub network: String,
    /// The adapter's `hodl-settle` step where its node holds the HTLCs (LND), else `None`.
    pub node_settler: Option<Arc<dyn hodl::NodeSettler>>,
}

/// A started ballast: its state, and what it must announce or warn about once running.
pub struct Started {
    pub state: AppState,
    pub startup_events: Vec<HodlEvent>,
    pub warnings: Vec<String>,
}

/// The services as opened from the store, before they are shared.
struct Opened {
    store: Store,
    hodl: HodlService,
    startup_events: Vec<HodlEvent>,
    income: Income,
    fees: FeeService,
    fee_warnings: Vec<String>,
    rebalance: RebalanceService,
    files: FilesDir,
}

/// Opens the store and every service (blocking work: run it off the async workers).
fn open_services(
    p: &StartParams,
    hodl_params: crate::engine::hodl::HodlParams,
    hook_held: bool,
) -> anyhow::Result<Opened> {
    let s = &p.settings;
    let store = Store::open(&p.db_path, now_unix())?;
    store.record_start()?;
    let (hodl, events) = HodlService::load(
        store.clone(),
        p.claims.clone(),
        hodl_params,
        p.held_htlcs_lost,
        now_unix(),
    )?;
    let hodl = if hook_held { hodl } else { hodl.held_by_node() };
    let income = Income::open(&store)?;
    let off = s.policy_file.as_deref().is_some_and(options::policy_off);
    let policy_path = s
        .policy_file
        .as_ref()
        .filter(|_| !off)
        .map(|f| options::resolve_db_path(&p.base_dir.to_string_lossy(), f));
    let (fees, fee_warnings) = FeeService::load(
        store.clone(),
        s.fees,
        s.flow_window,
        policy_path.as_deref(),
        now_unix(),
    )?;
    if off {
        fees.turn_off(format!("off ({}=off)", options::FEE_POLICY_FILE.name));
    }
    let rebalance = RebalanceService::load(store.clone(), p.claims.clone(), s.halflife)?;
    let files = FilesDir::open(
        &store,
        options::resolve_db_path(&p.base_dir.to_string_lossy(), &s.files_dir),
    )?;
    Ok(Opened {
        store,
        hodl,
        startup_events: events,
        income,
        fees,
        fee_warnings,
        rebalance,
        files,
    })
}

/// Opens everything and builds the shared state. The caller then runs [`spawn_loops`].
pub async fn start(
    p: StartParams,
    node: AnyNode,
    notifier: Notifier,
    node_id: Option<crate::types::NodeId>,
    height: u32,
) -> anyhow::Result<Started> {
    let hodl_params = p.settings.hodl;
    let hook_held = node.holds_htlcs_through_hook();
    let p = Arc::new(p);
    let opened = {
        let p = p.clone();
        tokio::task::spawn_blocking(move || open_services(&p, hodl_params, hook_held))
            .await
            .context("store task")??
    };
    let Opened {
        store,
        hodl,
        startup_events,
        income,
        fees,
        fee_warnings: mut warnings,
        rebalance,
        files,
    } = opened;
    warnings.iter_mut().for_each(|w| *w = format!("fee policy: {w}"));
    let (monitor, monitor_warnings) = {
        let store = store.clone();
        let rules = p.monitor.rules;
        tokio::task::spawn_blocking(move || MonitorService::load_with_defaults(store, now_unix(), rules))
            .await
            .context("store task")?
            .map_err(|e| anyhow::anyhow!("balance monitor: {e}"))?
    };
    warnings.extend(
        monitor_warnings
            .into_iter()
            .map(|w| format!("balance monitor: {w}")),
    );
    let monitor_rt =
        monitor::Runtime::new(p.monitor.webhook.clone()).context("cannot start the alert webhook thread")?;
    if height > 0 {
        if let Err(e) = store.set_tip(height) {
            warnings.push(format!("could not record the chain tip: {e}"));
        }
    }
    let height = if height > 0 {
        height
    } else {
        store.tip().ok().flatten().unwrap_or(0)
    };
    let s = &p.settings;
    let state = AppState::new(Shared {
        store,
        node,
        node_settler: p.node_settler.clone(),
        notifier,
        counters: p.counters.clone(),
        claims: p.claims.clone(),
        hodl: Arc::new(hodl),
        income: Arc::new(income),
        fees: Arc::new(fees),
        monitor: Arc::new(monitor),
        monitor_rt: Arc::new(monitor_rt),
        awaited: Default::default(),
        rebalance: Arc::new(rebalance),
        rebalance_settings: s.rebalance.clone(),
        rebalance_lock: tokio::sync::Mutex::new(()),
        network: p.network.clone(),
        base_dir: p.base_dir.clone(),
        files: Arc::new(files),
        node_id,
        started: std::time::Instant::now(),
        hodl_defaults: HodlDefaults {
            expiry_secs: s.hodl_defaults.expiry_secs,
            cltv: s.hodl_defaults.cltv,
        },
        blockheight: height.into(),
        stop: tokio::sync::Notify::new(),
    });
    Ok(Started {
        state,
        startup_events,
        warnings,
    })
}

/// Reconciles hold invoices with the HTLCs the node holds, then starts the timers and loops
/// every adapter runs: hold-invoice ticker and notifications, fee policy, balance monitor,
/// metrics endpoint, rebalance auto mode. Then applies HTLC deadlines for blocks that passed
/// while ballast was down.
pub(crate) async fn spawn_loops(state: &AppState, fee_interval: u64, monitor: &MonitorSettings) {
    // lightningd, not the store, says which held HTLCs survived while ballast was down.
    // Subscribed before the notifier exists, so each change is published here, once.
    let mut changes = state.hodl.subscribe();
    hodl::reconcile(state, state.blockheight()).await;
    while let Ok(e) = changes.try_recv() {
        hodl::publish(state, e);
    }
    drop(changes);
    tokio::spawn(hodl::run_notifier(state.clone()));
    tokio::spawn(hodl::run_ticker(state.clone()));
    tokio::spawn(fees::run_loop(state.clone(), Duration::from_secs(fee_interval)));
    tokio::spawn(monitor::run_loop(state.clone(), monitor.interval));
    if let Some(addr) = monitor.metrics_bind {
        // A taken port costs the metrics, not ballast: say so and carry on.
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => {
                log::info!(
                    "metrics: serving http://{}/metrics",
                    l.local_addr().unwrap_or(addr)
                );
                tokio::spawn(super::metrics::serve(state.clone(), l));
            }
            Err(e) => log::warn!("metrics: cannot listen on {addr}: {e}; metrics are off"),
        }
    }
    tokio::spawn(rebalance::run_loop(state.clone()));
    tokio::spawn(rebalance::resolve_pending_after_start(state.clone()));
    let height = state.blockheight();
    if height > 0 {
        let svc = state.hodl.clone();
        match tokio::task::spawn_blocking(move || svc.on_block(height, now_unix())).await {
            Ok(Err(e)) => log::error!("hold invoice deadlines at start-up: {e}"),
            Err(e) => log::error!("hold invoice deadline task failed: {e}"),
            Ok(Ok(_)) => {}
        }
    }
}

/// Flushes the store on the way out.
pub async fn flush(state: &AppState) -> anyhow::Result<()> {
    let store = state.store.clone();
    tokio::task::spawn_blocking(move || store.flush())
        .await
        .context("flush task")?
        .context("flushing the store")?;
    Ok(())
}
