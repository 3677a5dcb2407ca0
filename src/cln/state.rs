//! What every method, hook and subscription handler shares.

use crate::counters::Counters;
use crate::engine::claims::ClaimSet;
use crate::store::Store;
use crate::types::NodeId;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone)]
pub struct PluginState(Arc<Shared>);

pub struct Shared {
    pub store: Store,
    pub counters: Arc<Counters>,
    pub claims: Arc<ClaimSet>,
    pub network: String,
    pub node_id: Option<NodeId>,
    pub started: Instant,
    blockheight: AtomicU32,
}

impl PluginState {
    pub fn new(
        store: Store,
        counters: Arc<Counters>,
        claims: Arc<ClaimSet>,
        network: String,
        node_id: Option<NodeId>,
        blockheight: u32,
    ) -> Self {
        PluginState(Arc::new(Shared {
            store,
            counters,
            claims,
            network,
            node_id,
            started: Instant::now(),
            blockheight: AtomicU32::new(blockheight),
        }))
    }

    pub fn blockheight(&self) -> u32 {
        self.0.blockheight.load(Ordering::Acquire)
    }

    pub fn set_blockheight(&self, h: u32) {
        self.0.blockheight.store(h, Ordering::Release);
    }
}

impl std::ops::Deref for PluginState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}
