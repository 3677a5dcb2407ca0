//! Driver: the plugin process.

use super::*;

/// Kills a process if not disarmed (dropped) before its deadline, so that a
/// stuck plugin ends the benchmark with an error instead of hanging it.
pub(super) struct Watchdog {
    pub(super) cancel: Arc<AtomicBool>,
}

impl Watchdog {
    pub(super) fn arm(pid: u32, after: Duration, what: String) -> Self {
        let cancel = Arc::new(AtomicBool::new(false));
        let flag = cancel.clone();
        std::thread::spawn(move || {
            let deadline = Instant::now() + after;
            while Instant::now() < deadline {
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            if !flag.load(Ordering::Relaxed) {
                eprintln!("hotpath: {what} did not finish within {after:?}: killing pid {pid}");
                // SAFETY: plain kill(2) on our own, not yet reaped, child.
                unsafe {
                    libc::kill(pid as libc::pid_t, libc::SIGKILL);
                }
            }
        });
        Watchdog { cancel }
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
    }
}

pub(super) struct MsgReader {
    pub(super) inner: BufReader<ChildStdout>,
    pub(super) buf: Vec<u8>,
    /// The last few `log` notifications, shown when something fails.
    pub(super) recent_logs: VecDeque<String>,
}

impl MsgReader {
    /// Next message from the plugin, `None` at end of stream.
    pub(super) fn next(&mut self) -> Result<Option<Value>> {
        if !read_frame(&mut self.inner, &mut self.buf)? {
            return Ok(None);
        }
        let v = serde_json::from_slice(&self.buf).with_context(|| {
            format!(
                "plugin sent invalid JSON: {}",
                String::from_utf8_lossy(&self.buf[..self.buf.len().min(200)])
            )
        })?;
        Ok(Some(v))
    }

    /// Next reply (message with an `id` and no `method`), skipping
    /// notifications such as `log`.
    pub(super) fn next_reply(&mut self) -> Result<Value> {
        loop {
            let v = self
                .next()?
                .ok_or_else(|| anyhow!("plugin closed its stdout (did it exit?)"))?;
            if let Some(method) = v.get("method") {
                if v.get("id").is_some() {
                    bail!("plugin sent a request on stdout, which the bench does not serve: {v}");
                }
                if method == "log" {
                    if self.recent_logs.len() == RECENT_LOGS {
                        self.recent_logs.pop_front();
                    }
                    let params = &v["params"];
                    // First line only: anyhow errors logged with {:?} carry backtraces.
                    let message = params["message"].as_str().unwrap_or("");
                    self.recent_logs.push_back(format!(
                        "{}: {}",
                        params["level"].as_str().unwrap_or("?"),
                        message.lines().next().unwrap_or("")
                    ));
                }
                continue;
            }
            return Ok(v);
        }
    }
}

/// Checks a hook reply; returns the sequence number of its id.
pub(super) fn hook_reply_seq(v: &Value) -> Result<u64> {
    let seq = v
        .get("id")
        .and_then(Value::as_str)
        .and_then(|id| id.strip_prefix(HOOK_ID_PREFIX))
        .and_then(|n| n.parse::<u64>().ok())
        .ok_or_else(|| anyhow!("unexpected reply id: {v}"))?;
    match v.get("result").and_then(|r| r.get("result")) {
        Some(Value::String(s)) if s == "continue" => Ok(seq),
        _ => bail!("htlc_accepted answer is not {{\"result\":\"continue\"}}: {v}"),
    }
}

pub(super) struct PluginProc {
    pub(super) name: String,
    pub(super) child: Child,
    pub(super) stdin: Option<ChildStdin>,
    pub(super) reader: MsgReader,
    pub(super) stderr_path: PathBuf,
    // Keeps the lightning-dir alive for the life of the plugin.
    pub(super) _dir: tempfile::TempDir,
}

impl PluginProc {
    pub(super) fn spawn(name: &str, mut cmd: Command, fixtures: Fixtures) -> Result<Self> {
        let dir = tempfile::Builder::new().prefix("hotpath-lightningd-").tempdir()?;
        serve_rpc(dir.path(), fixtures)?;
        let stderr_path = dir.path().join("plugin-stderr.log");
        let stderr = File::create(&stderr_path)?;
        cmd.current_dir(dir.path())
            .env("LIGHTNINGD_PLUGIN", "1")
            .env("LIGHTNINGD_VERSION", LIGHTNINGD_VERSION)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(stderr));
        let mut child = cmd
            .spawn()
            .with_context(|| format!("spawning {name} plugin ({cmd:?})"))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut p = PluginProc {
            name: name.to_string(),
            child,
            stdin: Some(stdin),
            reader: MsgReader {
                inner: BufReader::with_capacity(1 << 16, stdout),
                buf: Vec::with_capacity(8192),
                recent_logs: VecDeque::new(),
            },
            stderr_path,
            _dir: dir,
        };
        let _wd = Watchdog::arm(p.child.id(), HANDSHAKE_TIMEOUT, format!("{name} handshake"));
        p.handshake().map_err(|e| p.with_stderr(e))?;
        Ok(p)
    }

    pub(super) fn dir(&self) -> &Path {
        self._dir.path()
    }

    pub(super) fn stdin(&mut self) -> &mut ChildStdin {
        self.stdin.as_mut().expect("stdin open while measuring")
    }

    pub(super) fn send(&mut self, v: &Value) -> Result<()> {
        self.stdin().write_all(&frame(v))?;
        Ok(())
    }

    pub(super) fn handshake(&mut self) -> Result<()> {
        self.send(
            &json!({"jsonrpc": "2.0", "id": "cln:getmanifest#1", "method": "getmanifest",
                          "params": {"allow-deprecated-apis": false}}),
        )?;
        let manifest = self
            .reader
            .next_reply()
            .context("waiting for getmanifest reply")?;
        let result = manifest
            .get("result")
            .ok_or_else(|| anyhow!("getmanifest failed: {manifest}"))?;
        let has_hook = result
            .get("hooks")
            .and_then(Value::as_array)
            .is_some_and(|hooks| {
                hooks.iter().any(|h| {
                    h.as_str() == Some("htlc_accepted")
                        || h.get("name").and_then(Value::as_str) == Some("htlc_accepted")
                })
            });
        if !has_hook {
            bail!("{} does not register the htlc_accepted hook: {result}", self.name);
        }
        let dir = self.dir().to_string_lossy().into_owned();
        self.send(
            &json!({"jsonrpc": "2.0", "id": "cln:init#2", "method": "init", "params": {
                "options": {},
                "configuration": {
                    "lightning-dir": dir,
                    "rpc-file": "lightning-rpc",
                    "startup": true,
                    "network": "regtest",
                    "feature_set": {"init": "", "node": "", "channel": "", "invoice": ""},
                }
            }}),
        )?;
        let init = self.reader.next_reply().context("waiting for init reply")?;
        match init.get("result") {
            Some(r) if r.get("disable").is_some() => {
                bail!("{} disabled itself at init: {}", self.name, r["disable"])
            }
            Some(_) => Ok(()),
            None => bail!("init failed: {init}"),
        }
    }

    pub(super) fn stderr_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.stderr_path) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Ends the plugin and adds its last words (stderr, `log`s) to `e`.
    pub(super) fn with_stderr(&mut self, e: anyhow::Error) -> anyhow::Error {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mut msg = format!("{e:#}");
        let tail = self.stderr_tail();
        if !tail.is_empty() {
            msg += &format!("\n{} stderr (last lines):\n{tail}", self.name);
        }
        if !self.reader.recent_logs.is_empty() {
            let logs: Vec<&str> = self.reader.recent_logs.iter().map(String::as_str).collect();
            msg += &format!("\n{} last log notifications:\n{}", self.name, logs.join("\n"));
        }
        anyhow!(msg)
    }

    pub(super) fn watchdog(&self, what: &str) -> Watchdog {
        Watchdog::arm(self.child.id(), PHASE_TIMEOUT, format!("{} {what}", self.name))
    }

    /// Closes stdin (as lightningd does at shutdown) and waits for the exit.
    pub(super) fn shutdown(mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "hotpath: {} did not exit within 3s of stdin closing; killed",
            self.name
        );
    }
}

impl Drop for PluginProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
        }
        let _ = self.child.wait();
    }
}
