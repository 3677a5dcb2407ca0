//! HTLCs handed to the plugin's `htlc_accepted` hook: what lightningd does with the answers
//! (and with none, when the plugin or lightningd goes away), and the bridge that delivers
//! payments reaching our node to the plugin while a test runs.

use super::*;

impl NodeState {
    pub(super) fn set_hook_status(&mut self, (scid, id): &(String, u64), status: Option<String>) {
        for c in self
            .channels
            .iter_mut()
            .filter(|c| c.short_channel_id.as_deref() == Some(scid))
        {
            for h in c
                .htlcs
                .iter_mut()
                .filter(|h| h.direction == Direction::In && h.id == *id)
            {
                h.status = status.clone();
            }
        }
    }

    pub(super) fn remove_incoming(&mut self, (scid, id): &(String, u64)) {
        for c in self
            .channels
            .iter_mut()
            .filter(|c| c.short_channel_id.as_deref() == Some(scid))
        {
            c.htlcs.retain(|h| !(h.direction == Direction::In && h.id == *id));
        }
    }
}

/// Receives the `htlc_accepted` payload of an HTLC that reached our node and returns the
/// hook's answer (the JSON-RPC `result`), or why there is none.
pub type HtlcHook = Arc<dyn Fn(&Value) -> Result<Value, String> + Send + Sync>;

/// How long the bridge waits for the plugin to answer one `htlc_accepted`.
pub(super) const HOOK_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `body` while HTLCs that reach our node are handed to the plugin's
/// `htlc_accepted` hook through `ld` (checked like [`Lightningd::call_hook`]) and settled
/// by its answer. Wrap every call that makes the plugin pay (e.g. `rebalance-execute`).
/// Problems (no answer, an error answer) become violations.
pub fn deliver_htlcs<R>(ld: &Lightningd, body: impl FnOnce() -> R) -> R {
    type Request = (Value, mpsc::Sender<Result<Value, String>>);
    let node = ld.node().clone();
    let (tx, rx) = mpsc::channel::<Request>();
    let tx = Mutex::new(tx);
    node.set_htlc_hook(move |payload| {
        let (reply_tx, reply_rx) = mpsc::channel();
        tx.lock()
            .unwrap_or_else(|p| p.into_inner())
            .send((payload.clone(), reply_tx))
            .map_err(|_| "the htlc_accepted bridge is gone".to_string())?;
        reply_rx
            .recv()
            .map_err(|_| "the htlc_accepted bridge stopped before the plugin answered".to_string())?
    });
    struct Stop<'a>(&'a AtomicBool, &'a FakeNode);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            self.1.clear_htlc_hook();
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let stop = &stop;
        scope.spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match rx.recv_timeout(Duration::from_millis(20)) {
                    Ok((payload, reply)) => {
                        // One thread per HTLC: the plugin may hold several at once.
                        scope.spawn(move || {
                            let answer = ld
                                .try_send_hook("htlc_accepted", payload)
                                .and_then(|p| ld.try_wait_hook(&p, HOOK_ANSWER_TIMEOUT))
                                .map_err(|e| e.to_string());
                            let _ = reply.send(answer);
                        });
                    }
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            }
        });
        let _stop = Stop(stop, &node);
        body()
    })
}

impl FakeNode {
    /// lightningd hands an incoming HTLC to the plugin's `htlc_accepted` hook (request id
    /// `key`): it is in the channel (created if the test has none by that name), undecided,
    /// with the status lightningd shows while it waits. A replay of an HTLC already there
    /// waits on the new request.
    pub fn htlc_to_hook(&self, payload: &Value, key: &str) {
        let htlc = &payload["htlc"];
        let (Some(scid), Some(id)) = (htlc["short_channel_id"].as_str(), htlc["id"].as_u64()) else {
            return;
        };
        let mut s = self.lock();
        let status = "Waiting for the htlc_accepted hook of plugin ballast".to_string();
        let c = match s
            .channels
            .iter()
            .position(|c| c.short_channel_id.as_deref() == Some(scid))
        {
            Some(c) => c,
            None => {
                let peer = pubkey(200 + s.channels.len());
                s.channels
                    .push(Channel::new(&peer, scid, 10_000_000_000, 5_000_000_000));
                s.channels.len() - 1
            }
        };
        let ch = &mut s.channels[c];
        match ch
            .htlcs
            .iter_mut()
            .find(|h| h.direction == Direction::In && h.id == id)
        {
            Some(h) => h.status = Some(status),
            None => {
                let mut h = Htlc::incoming(
                    id,
                    htlc["amount_msat"].as_u64().unwrap_or(0),
                    htlc["cltv_expiry"].as_u64().unwrap_or(0) as u32,
                    htlc["payment_hash"].as_str().unwrap_or_default(),
                );
                h.status = Some(status);
                ch.htlcs.push(h);
            }
        }
        s.unapplied.retain(|u| u != &(scid.to_string(), id));
        s.hook_htlcs.insert(key.to_string(), (scid.to_string(), id));
    }

    /// The plugin answered hook request `key`. lightningd applies the answer (the HTLC is
    /// resolved or failed: gone from the channel), unless it was shutting down: then it
    /// ignored the answer and the HTLC stays undecided in its database.
    pub fn hook_answered(&self, key: &str, lightningd_shutting_down: bool) {
        let mut s = self.lock();
        let Some(htlc) = s.hook_htlcs.remove(key) else {
            return;
        };
        if lightningd_shutting_down {
            s.set_hook_status(&htlc, None);
            s.unapplied.push(htlc);
        } else {
            s.remove_incoming(&htlc);
        }
    }

    /// The plugin process died with hook calls open: lightningd no longer waits on them.
    pub fn plugin_gone(&self) {
        let mut s = self.lock();
        let open: Vec<(String, u64)> = s.hook_htlcs.drain().map(|(_, h)| h).collect();
        for h in open {
            s.set_hook_status(&h, None);
            s.unapplied.push(h);
        }
    }

    /// The plugin starts again. After a node restart (`startup`) lightningd still holds
    /// the HTLCs it never saw answered and will replay them; after a plugin-only start it
    /// had failed them already (a dead plugin's hook call continues, and no invoice of its
    /// own matches), and answers given at `plugin stop` were applied.
    pub fn plugin_started(&self, startup: bool) {
        let mut s = self.lock();
        let unapplied = std::mem::take(&mut s.unapplied);
        if !startup {
            for h in unapplied {
                s.remove_incoming(&h);
            }
        }
    }

    /// Where HTLCs that reach our node go: `hook` gets the `htlc_accepted` payload and
    /// returns the plugin's answer. It runs on its own thread per HTLC, so it may block.
    /// [`deliver_htlcs`] sets one that calls the plugin through [`Lightningd`].
    pub fn set_htlc_hook(&self, hook: impl Fn(&Value) -> Result<Value, String> + Send + Sync + 'static) {
        self.with(|s| s.htlc_hook = Some(Arc::new(hook)));
    }

    pub fn clear_htlc_hook(&self) {
        self.with(|s| s.htlc_hook = None);
    }

    /// The hook in place, e.g. to wrap it (hold an HTLC, then pass it on).
    pub fn htlc_hook(&self) -> Option<HtlcHook> {
        self.lock().htlc_hook.clone()
    }
}
