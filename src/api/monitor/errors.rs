//! The error codes and conversions of the `monitor-*` methods, in one place.

use super::RpcError;
use crate::service::files::FileError;
use crate::service::monitor::MonitorError;
use crate::types::Scid;

const ERR_NODE: i64 = 2005;
const ERR_UNKNOWN_CHANNEL: i64 = 2101;
const ERR_ALERT: i64 = 2102;
const ERR_FILE: i64 = 2103;
const ERR_INTERNAL: i64 = -1;

pub(super) fn node_error(what: &str, e: impl std::fmt::Display) -> RpcError {
    RpcError {
        code: ERR_NODE,
        message: format!("{what}: {e}"),
    }
}

pub(super) fn internal(e: impl std::fmt::Display) -> RpcError {
    RpcError {
        code: ERR_INTERNAL,
        message: e.to_string(),
    }
}

pub(super) fn service_error(e: MonitorError) -> RpcError {
    match e {
        MonitorError::Ack(a) => RpcError {
            code: ERR_ALERT,
            message: a.to_string(),
        },
        MonitorError::Config(c) => RpcError::invalid(c.to_string()),
        other => internal(format!("monitor: {other}")),
    }
}

pub(super) fn unknown_channel(method: &str, scid: Scid) -> RpcError {
    RpcError {
        code: ERR_UNKNOWN_CHANNEL,
        message: format!("{method}: {scid} is not one of our channels"),
    }
}

/// A files-directory error as the caller sees it: a path that is not allowed is a bad
/// parameter; a file that exists or cannot be written is 2103.
pub(super) fn file_error(e: FileError) -> RpcError {
    let code = match e {
        FileError::Empty | FileError::Absolute(..) | FileError::Escapes(..) => -32602,
        FileError::Store(_) => -1,
        FileError::Exists(_) | FileError::NotOurs(_) | FileError::Io(..) => ERR_FILE,
    };
    RpcError {
        code,
        message: e.to_string(),
    }
}
