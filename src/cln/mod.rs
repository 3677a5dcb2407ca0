//! Core Lightning adapter: the plugin wiring (options, methods, hooks, subscriptions) and
//! the `Node` implementation over lightningd's RPC socket.

mod events;
mod fees;
mod hodl;
mod hooks;
pub mod node;
pub mod options;
pub mod params;
mod state;
mod status;
pub mod stdio;

pub use node::ClnNode;

use crate::counters::Counters;
use crate::engine::claims::ClaimSet;
use crate::engine::hodl::HodlParams;
use crate::node::Node;
use crate::engine::fees::FeeConfig;
use crate::service::fees::FeeService;
use crate::service::hodl::HodlService;
use crate::service::income::Income;
use crate::store::Store;
use anyhow::Context;
use cln_plugin::messages::NotificationTopic;
use cln_plugin::{Builder, HookBuilder, RpcMethodBuilder};
use state::{HodlDefaults, PluginState, Shared};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub const USAGE: &str = "\
ballast is a Core Lightning plugin: it holds invoices until you settle them, watches channel \
balances, plans and runs rebalances and keeps channel fees in line. It is not meant to be run \
from a shell; lightningd starts it. Add `plugin=/path/to/ballast` to your lightningd config \
(or start lightningd with `--plugin=/path/to/ballast`, or run `lightning-cli plugin start \
/path/to/ballast`), then call `lightning-cli ballast-status`. Options (all `ballast-*`) are \
listed in the README and by `lightning-cli listconfigs`.";

/// True when lightningd started us: it sets this variable for every plugin.
pub fn launched_by_lightningd() -> bool {
    std::env::var_os("LIGHTNINGD_PLUGIN").is_some_and(|v| v == "1")
        // SAFETY: isatty only inspects the descriptor.
        && unsafe { libc::isatty(0) } == 0
}

pub(crate) fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Runs the plugin until lightningd closes stdin or asks it to shut down.
pub async fn run_plugin() -> anyhow::Result<()> {
    let counters = Arc::new(Counters::default());
    let claims = Arc::new(ClaimSet::new());
    let stdout = stdio::SharedStdout::new();
    let input = stdio::spawn_stdin_reader(
        stdio::FastPath {
            claims: claims.clone(),
            counters: counters.clone(),
        },
        stdout.clone(),
    )
    .context("starting the stdin reader")?;

    let builder = Builder::new(input, stdio::StdoutSink(stdout))
        .dynamic()
        .option(options::DB_PATH)
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
        .notification(NotificationTopic::new("ballast_hodl_state"))
        .notification(NotificationTopic::new("ballast_alert"))
        .hook_from_builder(HookBuilder::new("htlc_accepted", hooks::htlc_accepted))
        .hook_from_builder(HookBuilder::new("invoice_payment", hooks::invoice_payment))
        .subscribe("forward_event", events::forward_event)
        .subscribe("channel_state_changed", events::channel_state_changed)
        .subscribe("block_added", events::block_added)
        .subscribe("connect", events::connect)
        .subscribe("disconnect", events::disconnect)
        .subscribe("shutdown", events::shutdown)
        .rpcmethod_from_builder(
            RpcMethodBuilder::new(status::NAME, status::status)
                .description(status::DESCRIPTION)
                .usage(""),
        )
        .rpcmethod_from_builder(
            RpcMethodBuilder::new(hodl::INVOICE, hodl::invoice)
                .description("Create a hold invoice: its HTLCs are held until hodl-settle or hodl-cancel")
                .usage("amount_msat [payment_hash] [description] [expiry] [cltv] [description_hash] [label] [exposeprivatechannels]"),
        )
        .rpcmethod_from_builder(
            RpcMethodBuilder::new(hodl::SETTLE, hodl::settle)
                .description("Settle an accepted hold invoice with its preimage (or by hash if ballast made the preimage)")
                .usage("[preimage] [payment_hash]"),
        )
        .rpcmethod_from_builder(
            RpcMethodBuilder::new(hodl::CANCEL, hodl::cancel)
                .description("Cancel a hold invoice, failing back any held HTLCs")
                .usage("payment_hash"),
        )
        .rpcmethod_from_builder(
            RpcMethodBuilder::new(hodl::LOOKUP, hodl::lookup)
                .description("Show a hold invoice; with wait_for_state, wait until it reaches that state")
                .usage("payment_hash [wait_for_state] [timeout]"),
        )
        .rpcmethod_from_builder(
            RpcMethodBuilder::new(hodl::LIST, hodl::list)
                .description("List hold invoices, newest first")
                .usage("[state] [limit] [offset]"),
        )
        .rpcmethod_from_builder(
            RpcMethodBuilder::new(fees::PREVIEW, fees::preview)
                .description("Dry run of the fee policy: per channel the current and target fee, the rule, inputs and when it would apply")
                .usage("[scid]"),
        )
        .rpcmethod_from_builder(
            RpcMethodBuilder::new(fees::APPLY, fees::apply)
                .description("Apply the fee policy now (force skips min-delta, start-up hold and rate limit)")
                .usage("[scid] [force]"),
        )
        .rpcmethod_from_builder(
            RpcMethodBuilder::new(fees::HISTORY, fees::history)
                .description("Fee changes ballast made, newest first, with trigger, rule and explanation")
                .usage("[scid] [limit]"),
        )
        .rpcmethod_from_builder(
            RpcMethodBuilder::new(fees::POLICY, fees::policy)
                .description("Show the fee policy, or replace it with a JSON policy, TOML text or a TOML file")
                .usage("[policy] [toml] [file]"),
        );

    // `None` means lightningd only wanted the manifest (`lightningd --help`).
    let Some(configured) = builder.configure().await? else {
        return Ok(());
    };
    let conf = configured.configuration();
    let settings = (|| {
        let int = |o: &cln_plugin::options::DefaultIntegerConfigOption, min, max| -> Result<i64, String> {
            let v = configured.option(o).map_err(|e| e.to_string())?;
            options::bounded(o.name(), v, min, max)
        };
        let params = HodlParams {
            cancel_blocks: int(&options::HODL_CANCEL_BLOCKS, 3, 1000)? as u32,
            warn_blocks: int(&options::HODL_WARN_BLOCKS, 0, 1000)? as u32,
            mpp_timeout_secs: int(&options::HODL_MPP_TIMEOUT, 1, 86_400)? as u64,
        };
        let defaults = HodlDefaults {
            expiry_secs: int(&options::HODL_EXPIRY, 1, 31_536_000)? as u64,
            cltv: int(&options::HODL_CLTV, 9, 2016)? as u32,
        };
        if defaults.cltv < params.cancel_blocks + 6 {
            return Err(format!(
                "ballast-hodl-cltv ({}) must exceed ballast-hodl-cancel-blocks ({}) by at least 6",
                defaults.cltv, params.cancel_blocks
            ));
        }
        let fee_cfg = FeeConfig {
            min_delta_ppm: int(&options::FEE_MIN_DELTA, 0, 1_000_000)? as u32,
            min_delta_ratio: int(&options::FEE_MIN_DELTA_PERCENT, 0, 100)? as f64 / 100.0,
            // CLN itself refuses channel updates closer than 5 minutes apart.
            min_interval_secs: int(&options::FEE_MIN_INTERVAL, 300, 30 * 86_400)? as u64,
            coalesce_secs: int(&options::FEE_COALESCE, 0, 86_400)? as u64,
            dry_run: configured.option(&options::FEE_DRY_RUN).map_err(|e| e.to_string())?,
        };
        let fee_interval = int(&options::FEE_INTERVAL, 60, 30 * 86_400)? as u64;
        let flow_window = int(&options::FEE_FLOW_WINDOW, 300, 90 * 86_400)? as u64;
        let policy_file = configured
            .option(&options::FEE_POLICY_FILE)
            .map_err(|e| e.to_string())?
            .filter(|p| !p.is_empty());
        Ok((params, defaults, (fee_cfg, fee_interval, flow_window, policy_file)))
    })();
    let (hodl_params, hodl_defaults, (fee_cfg, fee_interval, flow_window, policy_file)) = match settings {
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

    // A start by `plugin start` while lightningd runs: no HTLCs will be replayed.
    let plugin_only_restart = !conf.startup;
    let opened = {
        let path = db_path.clone();
        let claims = claims.clone();
        let lightning_dir = conf.lightning_dir.clone();
        tokio::task::spawn_blocking(move || {
            let store = Store::open(&path, now_unix())?;
            store.record_start()?;
            let (hodl, events) =
                HodlService::load(store.clone(), claims, hodl_params, plugin_only_restart, now_unix())?;
            let income = Income::open(&store)?;
            let policy_path = policy_file.map(|p| options::resolve_db_path(&lightning_dir, &p));
            let (fees, fee_warnings) =
                FeeService::load(store.clone(), fee_cfg, flow_window, policy_path.as_deref(), now_unix())?;
            Ok::<_, anyhow::Error>((store, hodl, events, income, fees, fee_warnings))
        })
        .await?
    };
    let (store, hodl, startup_events, income, fees, fee_warnings) = match opened {
        Ok(s) => s,
        Err(e) => {
            // lightningd logs the disable reason and keeps running without us.
            let reason = format!("ballast disabled: {e:#}");
            log::warn!("{reason}");
            configured.disable(&reason).await?;
            return Ok(());
        }
    };

    let node = ClnNode::new(Path::new(&conf.lightning_dir).join(&conf.rpc_file));
    // Learn the chain tip now so deadlines are right before the first block_added.
    let (node_id, height) = match tokio::time::timeout(Duration::from_secs(10), node.info()).await {
        Ok(Ok(info)) => {
            if let Err(e) = store.set_tip(info.blockheight) {
                log::warn!("could not record the chain tip: {e}");
            }
            (Some(info.id), info.blockheight)
        }
        Ok(Err(e)) => {
            log::warn!("getinfo failed at start-up ({e}); using the stored tip until block_added");
            (None, store.tip().ok().flatten().unwrap_or(0))
        }
        Err(_) => {
            log::warn!("getinfo timed out at start-up; using the stored tip until block_added");
            (None, store.tip().ok().flatten().unwrap_or(0))
        }
    };

    let state = PluginState::new(Shared {
        store: store.clone(),
        node,
        counters,
        claims,
        hodl: Arc::new(hodl),
        income: Arc::new(income),
        fees: Arc::new(fees),
        awaited: Default::default(),
        network: conf.network.clone(),
        node_id,
        started: std::time::Instant::now(),
        hodl_defaults,
        blockheight: height.into(),
        stop: tokio::sync::Notify::new(),
    });
    let plugin = configured.start(state.clone()).await?;
    tokio::spawn(hodl::run_notifier(plugin.clone()));
    tokio::spawn(hodl::run_ticker(state.clone()));
    tokio::spawn(fees::run_loop(state.clone(), Duration::from_secs(fee_interval)));
    for w in fee_warnings {
        log::warn!("fee policy: {w}");
    }
    for e in startup_events {
        hodl::publish(&plugin, e).await;
    }
    // Blocks may have passed while we were down: apply HTLC deadlines before the next one.
    if height > 0 {
        let svc = state.hodl.clone();
        match tokio::task::spawn_blocking(move || svc.on_block(height, now_unix())).await {
            Ok(Err(e)) => log::error!("hold invoice deadlines at start-up: {e}"),
            Err(e) => log::error!("hold invoice deadline task failed: {e}"),
            Ok(Ok(_)) => {}
        }
    }
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
    tokio::task::spawn_blocking(move || store.flush()).await??;
    Ok(())
}
