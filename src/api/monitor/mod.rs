//! Balance monitoring on Core Lightning and LND: snapshot rounds (on events, debounced,
//! and on a timer), alert delivery (`ballast_alert` notification, log line, optional
//! webhook) and the `monitor-*` methods. The Prometheus endpoint is [`crate::api::metrics`].
//!
//! Nothing here blocks the runtime that answers hooks: store work, report rendering and
//! file writes run on blocking threads, and the webhook on its own thread behind a bounded
//! queue.

mod alerts;
mod errors;
mod export;
mod history;
mod report;
mod rounds;
mod set;
mod settings;
mod stats;
mod status;
mod webhook;

pub use alerts::{alert_json, alerts, ALERTS};
pub use export::{export, EXPORT};
pub use history::{history, HISTORY};
pub use report::{report, REPORT};
pub use rounds::{poke, run_loop, Runtime, DEBOUNCE};
pub use set::{set, SET};
pub use settings::{parse_threshold, MonitorSettings};
pub use stats::{stats, STATS};
pub use status::{status, STATUS};
pub use webhook::{check_webhook_url, WebhookStats, WEBHOOK_ATTEMPTS, WEBHOOK_BACKOFF, WEBHOOK_QUEUE};

use super::params::RpcError;
use super::state::AppState;
use crate::service::files::confine;
use crate::service::monitor::MonitorError;
use errors::{file_error, internal, service_error};

const SCID_WANT: &str = "a short_channel_id (BLOCKxTXxOUT)";

/// Runs blocking service work off the runtime's workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, MonitorError> + Send + 'static,
) -> Result<T, RpcError> {
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r.map_err(service_error),
        Err(e) => Err(internal(format!("internal task failed: {e}"))),
    }
}

/// Checks a `path` parameter before any work is done for it.
fn file_param(s: &AppState, path: &str) -> Result<String, RpcError> {
    confine(path, &s.files.root().display().to_string()).map_err(file_error)?;
    Ok(path.to_string())
}
