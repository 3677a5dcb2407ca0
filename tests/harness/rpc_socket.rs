//! The fake node alone behind a `lightning-rpc` socket, with no plugin process: for testing
//! ballast's client of lightningd's RPC (`ClnNode`) directly. Every request and every
//! checked answer goes through the same schema checks as under [`super::Lightningd`]; a
//! violation fails the test when the socket is dropped.

use super::fake_node::{FakeNode, RpcServer};
use serde_json::Value;
use std::path::{Path, PathBuf};

pub struct RpcSocket {
    node: FakeNode,
    server: Option<RpcServer>,
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl RpcSocket {
    /// Serves `node` on a fresh socket in a temporary directory.
    pub fn start(node: FakeNode) -> RpcSocket {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lightning-rpc");
        let server = RpcServer::start(node.clone(), &path).expect("fake lightning-rpc socket");
        RpcSocket {
            node,
            server: Some(server),
            path,
            _dir: dir,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn node(&self) -> &FakeNode {
        &self.node
    }

    /// (method, params as sent) of every request, in arrival order.
    pub fn requests(&self) -> Vec<(String, Value)> {
        self.node
            .calls()
            .into_iter()
            .map(|c| (c.method, c.params))
            .collect()
    }

    pub fn methods(&self) -> Vec<String> {
        self.node.calls().into_iter().map(|c| c.method).collect()
    }
}

impl Drop for RpcSocket {
    fn drop(&mut self) {
        self.server.take();
        let violations = self.node.take_violations();
        if !violations.is_empty() && !std::thread::panicking() {
            panic!("schema violations:\n{}", violations.join("\n"));
        }
    }
}
