//! How LND's gRPC failures become [`NodeError`]s: connection trouble, refusals, unknown
//! payments and malformed answers.

use crate::node::NodeError;
use tonic::{Code, Status};

pub(super) fn malformed(method: &'static str, message: impl Into<String>) -> NodeError {
    NodeError::Malformed {
        method,
        message: message.into(),
    }
}

/// LND does not know the payment (it never left, or its record is gone): callers settle it
/// as not completed. Any other answer is as [`grpc_error`] sorts it.
pub(super) fn unknown_payment(method: &'static str, s: Status) -> NodeError {
    if s.code() == Code::NotFound || s.message().contains("isn't initiated") {
        return NodeError::UnknownPayment {
            method,
            message: s.message().to_string(),
        };
    }
    grpc_error(method, s)
}

/// Connection trouble is `Transport`; anything LND itself answered is `Rejected`.
pub(crate) fn grpc_error(method: &'static str, s: Status) -> NodeError {
    match s.code() {
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded => NodeError::Transport {
            method,
            message: status_line(&s),
        },
        Code::Unknown if std::error::Error::source(&s).is_some() => NodeError::Transport {
            method,
            message: status_line(&s),
        },
        code => NodeError::Rejected {
            method,
            code: Some(code as i64),
            message: s.message().to_string(),
        },
    }
}

pub(super) fn status_line(s: &Status) -> String {
    match std::error::Error::source(s) {
        Some(src) => format!("{}: {}", s.message(), error_chain(src)),
        None => s.message().to_string(),
    }
}

pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}
