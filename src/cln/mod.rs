//! Core Lightning adapter: the plugin wiring (options, methods, hooks, subscriptions) and
//! the `Node` implementation over lightningd's RPC socket.

mod events;
mod hodl_hook;
mod hooks;
mod logger;
pub mod node;
pub mod stdio;

pub use node::ClnNode;

use crate::api::options::{self, OptionSource};
use crate::api::{hodl, monitor, settings, start, AppState, Notifier};
use crate::counters::Counters;
use crate::engine::claims::ClaimSet;
use crate::node::{AnyNode, Node};
use anyhow::Context;
use cln_plugin::messages::NotificationTopic;
use cln_plugin::options::{
    DefaultBooleanConfigOption, DefaultIntegerConfigOption, DefaultStringConfigOption, StringConfigOption,
};
use cln_plugin::Plugin;
use cln_plugin::{Builder, HookBuilder, RpcMethodBuilder};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

pub const USAGE: &str = "\
ballast is a Core Lightning plugin: it holds invoices until you settle them, watches channel \
balances, plans and runs rebalances and keeps channel fees in line. It is not meant to be run \
from a shell; lightningd starts it. Add `plugin=/path/to/ballast` to your lightningd config \
(or start lightningd with `--plugin=/path/to/ballast`, or run `lightning-cli plugin start \
/path/to/ballast`), then call `lightning-cli ballast-status`. Options (all `ballast-*`) are \
listed in the README and by `lightning-cli listconfigs`.";

/// Run at the start of every runtime thread (workers and the blocking pool): lowers its
/// scheduling priority, so that route planning, reports or store flushes competing for a
/// core yield it to the stdin thread answering `htlc_accepted`, which keeps the default
/// priority. Raising that thread instead would need privileges ballast does not have.
pub fn yield_to_hooks() {
    // SAFETY: setpriority on our own thread id only changes this thread's nice value.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        // Failure only means the priority stays as it was.
        let _ = libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}

/// True when lightningd started us: it sets this variable for every plugin.
pub fn launched_by_lightningd() -> bool {
    std::env::var_os("LIGHTNINGD_PLUGIN").is_some_and(|v| v == "1")
        // SAFETY: isatty only inspects the descriptor.
        && unsafe { libc::isatty(0) } == 0
}

/// lightningd's default `cltv-delta` on mainnet (lightningd/options.c).
const DEFAULT_CLTV_DELTA: u32 = 34;

/// The longest path a unix socket address can carry (`sun_path` is 108 bytes, with its NUL).
const SUN_PATH_MAX: usize = 107;

/// How to reach lightningd's RPC socket. lightningd starts plugins in its network
/// directory, so the relative `rpc-file` name works wherever the absolute path would be too
/// long for a socket address; the absolute path is used when it fits, and when the working
/// directory is somewhere else.
fn rpc_socket_path(lightning_dir: &str, rpc_file: &str) -> std::path::PathBuf {
    let absolute = Path::new(lightning_dir).join(rpc_file);
    if absolute.as_os_str().len() <= SUN_PATH_MAX {
        return absolute;
    }
    let here = std::env::current_dir().and_then(|d| d.canonicalize());
    let dir = Path::new(lightning_dir).canonicalize();
    match (here, dir) {
        (Ok(h), Ok(d)) if h == d && Path::new(rpc_file).is_relative() => rpc_file.into(),
        _ => {
            log::warn!(
                "lightningd's RPC socket path is {} bytes, longer than a socket address allows, and the working directory is not {lightning_dir}: RPC calls will fail",
                absolute.as_os_str().len()
            );
            absolute
        }
    }
}

type Configured = cln_plugin::ConfiguredPlugin<AppState, stdio::ForwardedInput, stdio::StdoutSink>;

/// Option values as lightningd passed them in `init`.
struct InitOptions<'a>(&'a Configured);

impl OptionSource for InitOptions<'_> {
    fn int(&self, o: &DefaultIntegerConfigOption) -> Result<i64, String> {
        self.0.option(o).map_err(|e| e.to_string())
    }
    fn text(&self, o: &DefaultStringConfigOption) -> Result<String, String> {
        self.0.option(o).map_err(|e| e.to_string())
    }
    fn flag(&self, o: &DefaultBooleanConfigOption) -> Result<bool, String> {
        self.0.option(o).map_err(|e| e.to_string())
    }
    fn maybe_text(&self, o: &StringConfigOption) -> Result<Option<String>, String> {
        self.0.option(o).map_err(|e| e.to_string())
    }
}

/// Runs the plugin until lightningd closes stdin or asks it to shut down.
pub async fn run_plugin() -> anyhow::Result<()> {
    let counters = Arc::new(Counters::default());
    let claims = Arc::new(ClaimSet::new());
    let stdout = stdio::SharedStdout::new();
    logger::init(stdout.clone());
    let input = stdio::spawn_stdin_reader(
        stdio::FastPath {
            claims: claims.clone(),
            counters: counters.clone(),
        },
        stdout.clone(),
    )
    .context("starting the stdin reader")?;

    let builder = Builder::new(input, stdio::StdoutSink(stdout))
        // Our logger writes each line itself (see logger.rs): cln-plugin's panics at
        // shutdown once its log task is gone.
        .with_logging(false)
        .dynamic()
        .option(options::DB_PATH)
        .option(options::FILES_DIR)
        .option(options::HODL_CANCEL_BLOCKS)
        .option(options::HODL_WARN_BLOCKS)
        .option(options::HODL_MPP_TIMEOUT)
        .option(options::HODL_EXPIRY)
        .option(options::HODL_CLTV)
        .option(options::FEE_POLICY_FILE)
        .option(options::FEE_DRY_RUN)
        .option(options::FEE_MIN_DELTA)
        .option(options::FEE_MIN_DELTA_PERCENT)
        .option(options::FEE_MIN_INTERVAL)
        .option(options::FEE_COALESCE)
        .option(options::FEE_INTERVAL)
        .option(options::FEE_FLOW_WINDOW)
        .option(options::MONITOR_INTERVAL)
        .option(options::MONITOR_LOW_LOCAL)
        .option(options::MONITOR_LOW_REMOTE)
        .option(options::MONITOR_MAX_PENDING_HTLCS)
        .option(options::MONITOR_HTLC_EXPIRY_BLOCKS)
        .option(options::MONITOR_PENDING_OPEN_BLOCKS)
        .option(options::MONITOR_DISCONNECT_SECS)
        .option(options::MONITOR_BALANCE_CHANGE)
        .option(options::ALERT_WEBHOOK)
        .option(options::METRICS_BIND)
        .option(options::GRAPH_REFRESH)
        .option(options::LIQUIDITY_HALFLIFE)
        .option(options::REBALANCE_HIGH)
        .option(options::REBALANCE_LOW)
        .option(options::REBALANCE_TARGET)
        .option(options::REBALANCE_MAX_AMOUNT)
        .option(options::REBALANCE_MAX_PPM)
        .option(options::REBALANCE_FEE_SHARE)
        .option(options::REBALANCE_DAILY_BUDGET)
        .option(options::REBALANCE_MAX_HTLCS)
        .option(options::REBALANCE_AUTO)
        .option(options::REBALANCE_INTERVAL)
        .notification(NotificationTopic::new("ballast_hodl_state"))
        .notification(NotificationTopic::new("ballast_alert"))
        .hook_from_builder(HookBuilder::new("htlc_accepted", hooks::htlc_accepted))
        .hook_from_builder(HookBuilder::new("invoice_payment", hooks::invoice_payment))
        .subscribe("forward_event", events::forward_event)
        .subscribe("channel_state_changed", events::channel_state_changed)
        .subscribe("block_added", events::block_added)
        .subscribe("connect", events::connect)
        .subscribe("disconnect", events::disconnect)
        .subscribe("shutdown", events::shutdown);
    let mut builder = builder;
    for m in crate::api::METHODS {
        builder = builder.rpcmethod_from_builder(
            RpcMethodBuilder::new(m.name, move |p: Plugin<AppState>, v| {
                let s = p.state().clone();
                async move { crate::api::call(s, m, v).await.map_err(anyhow::Error::from) }
            })
            .description(m.description)
            .usage(m.usage),
        );
    }

    // `None` means lightningd only wanted the manifest (`lightningd --help`).
    let Some(configured) = builder.configure().await? else {
        return Ok(());
    };
    let conf = configured.configuration();
    let mut settings = match settings::Settings::read(&InitOptions(&configured)) {
        Ok(v) => v,
        Err(reason) => {
            let reason = format!("ballast disabled: {reason}");
            log::warn!("{reason}");
            configured.disable(&reason).await?;
            return Ok(());
        }
    };
    let monitor_settings = match monitor::MonitorSettings::read(&InitOptions(&configured)) {
        Ok(v) => v,
        Err(reason) => {
            let reason = format!("ballast disabled: {reason}");
            log::warn!("{reason}");
            configured.disable(&reason).await?;
            return Ok(());
        }
    };
    let db_option = configured.option(&options::DB_PATH)?;
    let db_path = options::resolve_db_path(&conf.lightning_dir, &db_option);

    let node = ClnNode::new(rpc_socket_path(&conf.lightning_dir, &conf.rpc_file));
    // lightningd's fulfilment deadline follows its cltv-delta: the hold-invoice cancel
    // window must not be smaller. Unknown, assume the mainnet default (34).
    let cltv_delta = match tokio::time::timeout(Duration::from_secs(10), node.cltv_delta()).await {
        Ok(Ok(Some(d))) => d,
        other => {
            log::warn!("cannot read lightningd's cltv-delta ({other:?}); assuming {DEFAULT_CLTV_DELTA}");
            DEFAULT_CLTV_DELTA
        }
    };
    for line in settings.fit_to_node_deadline(cltv_delta) {
        log::info!("{line}");
    }
    // Learn the chain tip now so deadlines are right before the first block_added.
    let (node_id, height) = match tokio::time::timeout(Duration::from_secs(10), node.info()).await {
        Ok(Ok(info)) => (Some(info.id), info.blockheight),
        Ok(Err(e)) => {
            log::warn!("getinfo failed at start-up ({e}); using the stored tip until block_added");
            (None, 0)
        }
        Err(_) => {
            log::warn!("getinfo timed out at start-up; using the stored tip until block_added");
            (None, 0)
        }
    };
    let fee_interval = settings.fee_interval;
    let params = start::StartParams {
        settings,
        monitor: monitor_settings.clone(),
        db_path: db_path.clone(),
        base_dir: conf.lightning_dir.clone().into(),
        // A start by `plugin start` while lightningd runs: no HTLCs will be replayed.
        held_htlcs_lost: !conf.startup,
        counters,
        claims,
        network: conf.network.clone(),
        // lightningd hands hold-invoice HTLCs to ballast's hook: ballast settles them.
        node_settler: None,
    };
    let (notifier, notifications) = Notifier::new();
    let started = match start::start(params, AnyNode::new(node), notifier, node_id, height).await {
        Ok(s) => s,
        Err(e) => {
            // lightningd logs the disable reason and keeps running without us.
            let reason = format!("ballast disabled: {e:#}");
            log::warn!("{reason}");
            configured.disable(&reason).await?;
            return Ok(());
        }
    };
    let state = started.state;
    let plugin = configured.start(state.clone()).await?;
    tokio::spawn(send_notifications(plugin.clone(), notifications));
    start::spawn_loops(&state, fee_interval, &monitor_settings).await;
    for w in started.warnings {
        log::warn!("{w}");
    }
    for e in started.startup_events {
        hodl::publish(&state, e);
    }
    let height = state.blockheight();
    log::info!(
        "ballast {} started: network {}, height {height}, store {}",
        env!("CARGO_PKG_VERSION"),
        conf.network,
        db_path.display()
    );
    tokio::select! {
        r = plugin.join() => r?,
        _ = state.stop.notified() => {}
    }
    start::flush(&state).await
}

/// Passes `ballast_hodl_state` and `ballast_alert` on to lightningd, in the order raised.
async fn send_notifications(p: Plugin<AppState>, mut queue: crate::api::NotificationQueue) {
    while let Some((topic, body)) = queue.recv().await {
        if let Err(e) = p.send_custom_notification(topic.to_string(), body).await {
            log::warn!("could not send {topic}: {e}");
        }
    }
}
