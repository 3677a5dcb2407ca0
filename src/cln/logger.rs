//! ballast's log on Core Lightning: every record becomes a `log` notification written
//! straight to the plugin's stdout, under the same lock as every other frame.
//!
//! cln-plugin's own logger hands records to a tokio task through a channel and unwraps the
//! send; once the runtime is going down that task is gone, and the next log line (a
//! shutdown message, a blocking thread finishing) panics inside the logger and prints a
//! backtrace on lightningd's stderr. Writing synchronously has no task to outlive: a line
//! that cannot be written (lightningd closed our stdout) is dropped, never a panic.

use super::stdio::SharedStdout;
use log::{Level, LevelFilter, Log, Metadata, Record};
use serde_json::json;
use std::sync::Arc;

struct PluginLogger {
    out: Arc<SharedStdout>,
}

/// lightningd's name for a level. `error` is what lightningd prints as `**BROKEN**`:
/// ballast uses it for its own faults only. lightningd knows no `trace`.
fn level_name(l: Level) -> &'static str {
    match l {
        Level::Error => "error",
        Level::Warn => "warn",
        Level::Info => "info",
        Level::Debug | Level::Trace => "debug",
    }
}

/// The notification frame for one record, blank-line terminated like every frame.
fn frame(level: Level, message: &str) -> Vec<u8> {
    let v = json!({
        "jsonrpc": "2.0",
        "method": "log",
        "params": {"level": level_name(level), "message": message},
    });
    let mut bytes = serde_json::to_vec(&v).unwrap_or_default();
    bytes.extend_from_slice(b"\n\n");
    bytes
}

impl Log for PluginLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        // A failed write means lightningd is gone; there is nobody left to tell.
        let _ = self.out.write_frames(&frame(r.level(), &r.args().to_string()));
    }

    fn flush(&self) {}
}

/// The level sent to lightningd: `CLN_PLUGIN_LOG` (as cln-plugin reads it: `debug`,
/// `info`, …) or info. lightningd filters again by its own `log-level`.
fn level_from_env() -> LevelFilter {
    std::env::var("CLN_PLUGIN_LOG")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(LevelFilter::Info)
}

/// Installs the logger for the life of the process. Call before cln-plugin starts (with its
/// own logging switched off).
pub fn init(out: Arc<SharedStdout>) {
    // Only fails if a logger is already set; that one stays.
    if log::set_boxed_logger(Box::new(PluginLogger { out })).is_ok() {
        log::set_max_level(level_from_env());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_log_notifications_with_lightningd_level_names() {
        let f = frame(Level::Trace, "a \"quoted\"\nline");
        assert!(f.ends_with(b"}\n\n"));
        let v: serde_json::Value = serde_json::from_slice(&f[..f.len() - 2]).unwrap();
        assert_eq!(v["method"], "log");
        assert_eq!(v["params"]["level"], "debug");
        assert_eq!(v["params"]["message"], "a \"quoted\"\nline");
        assert_eq!(level_name(Level::Warn), "warn");
        assert_eq!(level_name(Level::Error), "error");
    }
}
