//! How the `monitor-*` methods' failures map onto the codes in [`crate::api::error`].

use super::RpcError;
use crate::api::error::{ERR_ALERT_NOT_ACTIVE, ERR_FILE, ERR_NOT_MONITORED, INVALID_PARAMS};
use crate::service::files::FileError;
use crate::service::monitor::MonitorError;
use crate::types::Scid;

pub(super) use crate::api::error::{internal, node_error};

pub(super) fn service_error(e: MonitorError) -> RpcError {
    match e {
        MonitorError::Ack(a) => RpcError::new(ERR_ALERT_NOT_ACTIVE, a.to_string()),
        MonitorError::Config(c) => RpcError::invalid(c.to_string()),
        other => internal(format!("monitor: {other}")),
    }
}

pub(super) fn unknown_channel(method: &str, scid: Scid) -> RpcError {
    RpcError::new(
        ERR_NOT_MONITORED,
        format!("{method}: {scid} is not one of our channels"),
    )
}

/// A files-directory error as the caller sees it: a path that is not allowed is a bad
/// parameter; a file that exists or cannot be written is 2103.
pub(super) fn file_error(e: FileError) -> RpcError {
    let code = match e {
        FileError::Empty | FileError::Absolute(..) | FileError::Escapes(..) => INVALID_PARAMS,
        FileError::Store(_) => return internal(e),
        FileError::Exists(_) | FileError::NotOurs(_) | FileError::Io(..) => ERR_FILE,
    };
    RpcError::new(code, e.to_string())
}
