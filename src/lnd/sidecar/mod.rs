//! The LND sidecar: `ballast-lnd`. The same engine, services and methods as the plugin,
//! driven by LND's gRPC streams instead of lightningd's hooks, and served on a unix socket.

pub mod args;
pub mod client;
mod events;
mod hodl;
mod logger;
pub mod rpc_server;

use crate::api::monitor::MonitorSettings;
use crate::api::options;
use crate::api::settings::Settings;
use crate::api::{hodl as hodl_api, start, Backend, Notifier};
use crate::counters::Counters;
use crate::engine::claims::ClaimSet;
use crate::lnd::node::LndNode;
use crate::node::Node;
use anyhow::Context;
use args::{Command, SidecarArgs, SidecarOptions};
use std::process::ExitCode;
use std::sync::Arc;

/// The whole program: parse, then run the sidecar or one `call`.
pub fn main(argv: &[String]) -> ExitCode {
    let cmd = match args::parse(argv) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("ballast-lnd: {e}");
            return ExitCode::from(2);
        }
    };
    match cmd {
        Command::Help => print_out(args::USAGE),
        Command::Version => print_out(&format!("ballast-lnd {}", env!("CARGO_PKG_VERSION"))),
        Command::Call {
            socket,
            method,
            params,
        } => client::main(&socket, &method, &params),
        Command::Run(a) => {
            logger::init(a.log_level);
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .max_blocking_threads(32)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("ballast-lnd: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(*a)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // One line: systemd shows it, and operators read it first.
                    eprintln!("ballast-lnd: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Prints to stdout without panicking when the reader has gone (`ballast-lnd --help | head`).
pub(crate) fn print_out(text: &str) -> ExitCode {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|_| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}

/// LND cancels an accepted hold invoice itself once its earliest HTLC is this many blocks
/// from expiry (lnd's hold-invoice guard, `DefaultIncomingBroadcastDelta + 2`).
const LND_HOLD_GUARD_BLOCKS: u32 = 12;

/// ballast must cancel before LND does: otherwise LND fails the HTLCs first, and a
/// `hodl-settle` in between would be recorded for money that never arrives. The default
/// moves above LND's guard; a value set at or below it is refused.
fn lnd_hold_deadline(settings: &mut Settings, set_by_user: bool) -> anyhow::Result<()> {
    let min = LND_HOLD_GUARD_BLOCKS + 2;
    let blocks = settings.hodl.cancel_blocks;
    if blocks < min {
        if set_by_user {
            anyhow::bail!(
                "ballast-hodl-cancel-blocks ({blocks}) must be at least {min} with LND, which cancels accepted hold invoices {LND_HOLD_GUARD_BLOCKS} blocks before expiry"
            );
        }
        settings.hodl.cancel_blocks = min;
    }
    let cltv = settings.hodl_defaults.cltv;
    if cltv < settings.hodl.cancel_blocks + 6 {
        anyhow::bail!(
            "ballast-hodl-cltv ({cltv}) must exceed ballast-hodl-cancel-blocks ({}) by at least 6",
            settings.hodl.cancel_blocks
        );
    }
    Ok(())
}

/// Runs the sidecar until SIGINT or SIGTERM.
pub async fn run(a: SidecarArgs) -> anyhow::Result<()> {
    let opts = SidecarOptions(&a.options);
    let mut settings = Settings::read(&opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    lnd_hold_deadline(
        &mut settings,
        a.options.contains_key(options::HODL_CANCEL_BLOCKS.name),
    )?;
    let monitor_settings = MonitorSettings::read(&opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    let resolved = a.lnd.resolve().map_err(|e| anyhow::anyhow!("{e}"))?;
    let lnd = LndNode::connect(&resolved).await?;
    let info = lnd.info().await.context("LND getinfo")?;
    let db_path = a.db_path();
    let fee_interval = settings.fee_interval;
    let flow_window = settings.flow_window;
    let params = start::StartParams {
        settings,
        monitor: monitor_settings.clone(),
        db_path: db_path.clone(),
        base_dir: a.base_dir(),
        // LND keeps holding accepted HTLCs while ballast is down, and shows them again.
        held_htlcs_lost: false,
        counters: Arc::new(Counters::default()),
        claims: Arc::new(ClaimSet::new()),
        network: a.network.clone(),
    };
    let (notifier, mut notifications) = Notifier::new();
    let started = start::start(
        params,
        Backend::Lnd(Box::new(lnd.clone())),
        notifier,
        Some(info.id),
        info.blockheight,
    )
    .await?;
    let state = started.state;
    // The socket last: a caller that can connect finds everything running.
    let listener = rpc_server::bind(&a.rpc_socket)
        .with_context(|| format!("cannot serve the RPC socket {}", a.rpc_socket.display()))?;
    // Custom notifications have no subscribers here; they go to the log, where the
    // plugin's also end up.
    tokio::spawn(async move {
        while let Some((topic, body)) = notifications.recv().await {
            log::info!("{topic}: {body}");
        }
    });
    start::spawn_loops(&state, fee_interval, &monitor_settings).await;
    for w in started.warnings {
        log::warn!("{w}");
    }
    for e in started.startup_events {
        hodl_api::publish(&state, e);
    }
    tokio::spawn(events::run(state.clone(), lnd.clone(), flow_window));
    tokio::spawn(hodl::run(state.clone(), lnd.clone()));
    tokio::spawn(rpc_server::serve(state.clone(), listener));
    log::info!(
        "ballast-lnd {} started: LND {} ({}) on {}, height {}, store {}, socket {}",
        env!("CARGO_PKG_VERSION"),
        info.alias,
        info.id.to_hex(),
        a.network,
        info.blockheight,
        db_path.display(),
        a.rpc_socket.display()
    );
    wait_for_signal().await?;
    log::info!("stopping: flushing the store (LND keeps holding accepted hold invoices)");
    let _ = std::fs::remove_file(&a.rpc_socket);
    start::flush(&state).await
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
