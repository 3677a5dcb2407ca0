//! Core Lightning adapter: the plugin wiring (options, methods, hooks, subscriptions) and
//! the `Node` implementation over lightningd's RPC socket.

mod events;
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
use crate::node::Node;
use crate::store::Store;
use anyhow::Context;
use cln_plugin::{Builder, HookBuilder, RpcMethodBuilder};
use state::PluginState;
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

fn now_unix() -> u64 {
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
        );

    // `None` means lightningd only wanted the manifest (`lightningd --help`).
    let Some(configured) = builder.configure().await? else {
        return Ok(());
    };
    let conf = configured.configuration();
    let db_option = configured.option(&options::DB_PATH)?;
    let db_path = options::resolve_db_path(&conf.lightning_dir, &db_option);

    let opened = {
        let path = db_path.clone();
        tokio::task::spawn_blocking(move || {
            let store = Store::open(&path, now_unix())?;
            store.record_start()?;
            Ok::<_, crate::store::StoreError>(store)
        })
        .await?
    };
    let store = match opened {
        Ok(s) => s,
        Err(e) => {
            // lightningd logs the disable reason and keeps running without us.
            let reason = format!("ballast disabled: {e}");
            log::warn!("{reason}");
            configured.disable(&reason).await?;
            return Ok(());
        }
    };

    let node = ClnNode::new(Path::new(&conf.lightning_dir).join(&conf.rpc_file));
    // Learn the chain tip now so deadlines are right before the first block_added.
    let (node_id, height) = match tokio::time::timeout(Duration::from_secs(10), node.info()).await {
        Ok(Ok(info)) => (Some(info.id), info.blockheight),
        Ok(Err(e)) => {
            log::warn!("getinfo failed at start-up ({e}); using the stored tip until block_added");
            (None, store.tip().ok().flatten().unwrap_or(0))
        }
        Err(_) => {
            log::warn!("getinfo timed out at start-up; using the stored tip until block_added");
            (None, store.tip().ok().flatten().unwrap_or(0))
        }
    };

    let state = PluginState::new(
        store.clone(),
        counters,
        claims,
        conf.network.clone(),
        node_id,
        height,
    );
    let plugin = configured.start(state).await?;
    log::info!(
        "ballast {} started: network {}, height {height}, store {}",
        env!("CARGO_PKG_VERSION"),
        conf.network,
        db_path.display()
    );
    plugin.join().await?;
    tokio::task::spawn_blocking(move || store.flush()).await??;
    Ok(())
}
