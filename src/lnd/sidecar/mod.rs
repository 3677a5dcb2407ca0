//! The LND sidecar: `ballast-lnd`. The same engine, services and methods as the plugin,
//! driven by LND's gRPC streams instead of lightningd's hooks, and served on a unix socket.

pub mod args;
pub mod client;
mod events;
pub(crate) mod hodl;
mod logger;
pub mod rpc_server;

use crate::api::monitor::MonitorSettings;
use crate::api::options;
use crate::api::settings::Settings;
use crate::api::{hodl as hodl_api, start, Notifier};
use crate::counters::Counters;
use crate::engine::claims::ClaimSet;
use crate::lnd::node::{LndNode, DEFAULT_HOLD_EXPIRY_DELTA, MIN_CLTV_DELTA};
use crate::node::{AnyNode, Node};
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

/// Lines ballast's hold-invoice deadline up with LND's hold guard: LND cancels an accepted
/// hold invoice itself once its earliest HTLC is `guard` blocks from expiry
/// (`invoices.holdexpirydelta`), so ballast cannot hold one longer. Left unset, ballast's
/// deadline is LND's guard (or the plugin's default, when that is earlier); set below the
/// guard, it is refused. The default CLTV of new hold invoices must leave room above it
/// and meet LND's minimum.
/// Returns ballast's deadline (`ballast-hodl-cancel-blocks`) to use.
fn lnd_hold_deadline(settings: &Settings, set_by_user: bool, guard: u32) -> anyhow::Result<u32> {
    let mut blocks = settings.hodl.cancel_blocks;
    if blocks < guard {
        if set_by_user {
            anyhow::bail!(
                "ballast-hodl-cancel-blocks ({blocks}) must be at least {guard} with LND, which cancels accepted hold invoices {guard} blocks before expiry (its invoices.holdexpirydelta; see --hold-expiry-delta)"
            );
        }
        blocks = guard;
    }
    let cltv = settings.hodl_defaults.cltv;
    if cltv < blocks + 6 {
        anyhow::bail!(
            "ballast-hodl-cltv ({cltv}) must exceed ballast-hodl-cancel-blocks ({blocks}) by at least 6"
        );
    }
    if cltv < MIN_CLTV_DELTA {
        anyhow::bail!(
            "ballast-hodl-cltv ({cltv}) must be at least {MIN_CLTV_DELTA}, LND's minimum final CLTV delta"
        );
    }
    Ok(blocks)
}

/// LND's hold guard: `--hold-expiry-delta`, checked against the value in LND's own
/// configuration where LND shows it. Unset, LND's value (or, where hidden, LND's default)
/// is used; set and different from LND's, the start is refused, as ballast would
/// otherwise accept `hodl-settle` for invoices LND is about to cancel, or give up early.
async fn hold_guard(lnd: &LndNode, configured: Option<u32>) -> anyhow::Result<u32> {
    match (lnd.hold_expiry_delta().await, configured) {
        (Ok(Some(actual)), Some(set)) if actual != set => anyhow::bail!(
            "--hold-expiry-delta is {set}, but LND's invoices.holdexpirydelta is {actual}: set it to {actual} (or leave it out)"
        ),
        (Ok(Some(actual)), _) => {
            log::info!("LND cancels accepted hold invoices {actual} blocks before expiry (invoices.holdexpirydelta)");
            Ok(actual)
        }
        (shown, set) => {
            let why = match shown {
                Ok(_) => "its configuration does not show invoices.holdexpirydelta".to_string(),
                Err(e) => format!("GetDebugInfo: {e}"),
            };
            let guard = set.unwrap_or(DEFAULT_HOLD_EXPIRY_DELTA);
            log::warn!(
                "cannot read LND's hold guard ({why}); assuming {guard} blocks{}",
                if set.is_some() { " (--hold-expiry-delta)" } else { ", LND's default" }
            );
            Ok(guard)
        }
    }
}

/// Runs the sidecar until SIGINT or SIGTERM.
pub async fn run(a: SidecarArgs) -> anyhow::Result<()> {
    let opts = SidecarOptions(&a.options);
    let mut settings = Settings::read(&opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    let cancel_set = a.options.contains_key(options::HODL_CANCEL_BLOCKS.name);
    // Checked before LND is reached, against the guard as configured, and again once LND
    // has said what its guard is.
    lnd_hold_deadline(
        &settings,
        cancel_set,
        a.hold_expiry_delta.unwrap_or(DEFAULT_HOLD_EXPIRY_DELTA),
    )?;
    let monitor_settings = MonitorSettings::read(&opts).map_err(|e| anyhow::anyhow!("{e}"))?;
    let resolved = a.lnd.resolve().map_err(|e| anyhow::anyhow!("{e}"))?;
    let lnd = LndNode::connect(&resolved).await?;
    let guard = hold_guard(&lnd, a.hold_expiry_delta).await?;
    settings.hodl.cancel_blocks = lnd_hold_deadline(&settings, cancel_set, guard)?;
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
        node_settler: Some(Arc::new(hodl::LndSettler(lnd.clone()))),
    };
    let (notifier, mut notifications) = Notifier::new();
    let started = start::start(
        params,
        AnyNode::new(lnd.clone()),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn settings(opts: &[(&str, &str)]) -> Settings {
        let map: BTreeMap<String, String> =
            opts.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Settings::read(&SidecarOptions(&map)).unwrap()
    }

    #[test]
    fn ballasts_deadline_is_never_later_than_lnds_guard() {
        // Unset: LND's guard (above the plugin's default of 10).
        assert_eq!(lnd_hold_deadline(&settings(&[]), false, 18).unwrap(), 18);
        assert_eq!(lnd_hold_deadline(&settings(&[]), false, 30).unwrap(), 30);
        // A guard below the plugin's default keeps the earlier cancel.
        assert_eq!(lnd_hold_deadline(&settings(&[]), false, 5).unwrap(), 10);
        // Set: earlier is fine, later than LND's guard is refused.
        let s = settings(&[("ballast-hodl-cancel-blocks", "25")]);
        assert_eq!(lnd_hold_deadline(&s, true, 18).unwrap(), 25);
        let s = settings(&[("ballast-hodl-cancel-blocks", "12")]);
        let e = lnd_hold_deadline(&s, true, 18).unwrap_err().to_string();
        assert!(e.contains("must be at least 18"), "{e}");
        // The default CLTV must clear the deadline and LND's minimum.
        let s = settings(&[("ballast-hodl-cltv", "30")]);
        assert!(lnd_hold_deadline(&s, false, 30).is_err());
        let s = settings(&[("ballast-hodl-cltv", "20"), ("ballast-hodl-cancel-blocks", "10")]);
        let e = lnd_hold_deadline(&s, true, 10).unwrap_err().to_string();
        assert!(e.contains("at least 24"), "{e}");
    }
}
