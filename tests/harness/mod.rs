//! Integration-test harness that plays lightningd v26.06 for the `ballast`
//! plugin.
//!
//! * [`schema`]: CLN's JSON schemas converted to standard JSON Schema and
//!   compiled once; `schemas().check_*` validate every message.
//! * [`protocol`]: envelope, manifest, `init` and `log` rules that the
//!   schema folder does not cover.
//! * [`fake_node`]: a scriptable in-memory node behind a fake
//!   `lightning-rpc` socket.
//! * [`lightningd`]: starts the plugin binary like lightningd and talks to
//!   it over stdin/stdout.
//! * [`rpc_socket`]: the fake node alone on a socket, for testing ballast's
//!   RPC client without the plugin process.
//! * [`json`]: field accessors for answers that fail with the whole document.
//!
//! Each test binary uses only part of this API.
#![allow(dead_code)]

pub mod fake_node;
pub mod json;
pub mod lightningd;
pub mod protocol;
pub mod rpc_socket;
pub mod schema;

#[allow(unused_imports)]
pub use fake_node::{
    hash_hex, payment_hash_of, pubkey, Channel, FakeNode, Forward, ForwardStatus, Htlc, Invoice,
    InvoiceStatus, RpcCall, RpcServer, Scripted, Wire,
};
#[allow(unused_imports)]
pub use lightningd::{
    payloads, ErrorKind, HarnessError, IdStyle, Lightningd, LightningdBuilder, PendingHook,
};
#[allow(unused_imports)]
pub use protocol::{InitOutcome, JsonRpcError, LogEntry, Manifest, INVALID_PARAMS, METHOD_NOT_FOUND};
#[allow(unused_imports)]
pub use rpc_socket::RpcSocket;
#[allow(unused_imports)]
pub use schema::schemas;
