//! [`Node`](crate::node::Node) for Core Lightning, over lightningd's JSON-RPC unix socket.
//!
//! Responses are decoded into cln-rpc's typed models (`cln_rpc::model::responses`), so field
//! names and types come from the same schemas lightningd's own output is checked against;
//! these modules only translate them into ballast's types and sorts every failure into one of
//! [`NodeError`]'s three kinds. Requests are cln-rpc's typed requests too, except the two that
//! carry amounts (see `SendpayParams`).
//!
//! `rpc` holds the socket, the requests and the paging, `convert` the translations of
//! lightningd's JSON into ballast's types, `payments` sendpay/waitsendpay and their error
//! codes, and `node_impl` the `Node` implementation itself.

use crate::node::{NodeError, NodeResult};
use cln_rpc::ClnRpc;
use rpc::{Conn, Rpc};
use std::path::PathBuf;

mod convert;
mod node_impl;
mod payments;
mod rpc;

/// Forwards and invoices are fetched this many at a time, so a node with years of history
/// never has to build (nor we parse) one enormous answer.
const PAGE_SIZE: u32 = 5_000;

/// [`Node`](crate::node::Node) for Core Lightning, talking to lightningd's `lightning-rpc` socket.
///
/// Each operation opens its own connection and drops it when done, rather than sharing a
/// reconnecting one. Connecting to a local unix socket costs microseconds, and a connection
/// per operation avoids three problems a shared one has:
/// - cln-rpc runs one request at a time per connection, and `waitsendpay` can block for
///   minutes: on a shared connection every other call would queue behind a payment.
/// - cln-rpc pairs answers with requests by order alone, never by `id`. A call whose future
///   is dropped half-way (a caller's timeout) leaves its answer in the stream, and the next
///   call on that connection would take it for its own. A fresh connection has no backlog.
/// - there is no reconnect state to get wrong: a lightningd restart costs the calls in
///   flight one `Transport` error each, and the next call simply connects again.
#[derive(Debug, Clone)]
pub struct ClnNode {
    rpc_path: PathBuf,
    page_size: u32,
}

impl ClnNode {
    /// `rpc_path` is lightningd's socket, `<lightning-dir>/<rpc-file>`. Nothing is opened
    /// until the first call.
    pub fn new(rpc_path: impl Into<PathBuf>) -> Self {
        ClnNode {
            rpc_path: rpc_path.into(),
            page_size: PAGE_SIZE,
        }
    }

    /// Fetches forwards and invoices `n` at a time instead of the default (a small page
    /// shows the paging at work without thousands of entries).
    pub fn with_page_size(mut self, n: u32) -> Self {
        self.page_size = n.max(1);
        self
    }

    async fn connect(&self, method: &'static str) -> NodeResult<Conn> {
        ClnRpc::new(&self.rpc_path)
            .await
            .map(Conn)
            .map_err(|e| NodeError::Transport {
                method,
                message: format!("cannot connect to {}: {e:#}", self.rpc_path.display()),
            })
    }

    /// One request on a connection of its own; any error lightningd returns is `Rejected`.
    async fn call<R: Rpc>(&self, request: &R) -> NodeResult<R::Response> {
        self.connect(R::METHOD).await?.call(request).await
    }
}
