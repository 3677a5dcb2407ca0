//! Drives the real plugin binary the way lightningd v26.06 does: same
//! environment, working directory, framing, handshake and id styles, with
//! every message in both directions checked against CLN's schemas and the
//! plugin protocol rules.
//!
//! Problems seen on background threads (plugin output, fake RPC socket) are
//! recorded as violations; the strict methods (`call_hook`, `rpc`,
//! `notify`, ...) panic as soon as one is pending, and so does `Drop`, so a
//! test cannot pass while the plugin or the fake node misbehaved. Each
//! strict method has a `try_` twin returning a [`HarnessError`] instead,
//! for tests that prove a problem *is* noticed.

use super::fake_node::{now_secs, FakeNode, RpcServer};
use super::protocol::{
    check_init_result, check_manifest, init_options, parse_log, parse_plugin_message, FromPlugin,
    InitOutcome, JsonRpcError, LogEntry, Manifest, OptionType, METHOD_NOT_FOUND,
};
use super::schema::{schemas, CUSTOM_NOTIFICATION_PREFIX};
use serde_json::{json, Map, Value};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The lightningd version the harness impersonates.
pub const LIGHTNINGD_VERSION: &str = "v26.06";

/// Path of the plugin under test, built by cargo for this test binary.
pub fn plugin_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ballast"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The harness refused to send a message that breaks the schema.
    InvalidOutgoing,
    /// The plugin sent something that breaks the schema or the protocol.
    InvalidIncoming,
    /// The plugin did not register the hook / subscription in its manifest.
    NotRegistered,
    Timeout,
    /// The plugin exited or closed its stdout.
    PluginGone,
    /// Harness-level failure (spawn, I/O, misuse).
    Harness,
}

#[derive(Clone, Debug)]
pub struct HarnessError {
    pub kind: ErrorKind,
    pub message: String,
}

impl HarnessError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        HarnessError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for HarnessError {}

/// How request ids are generated. lightningd uses descriptive string ids
/// (`"cln:init#12"`, `"cli:ballast-status#3/cln:ballast-status#4"`) for
/// plugins whose manifest sets `nonnumericids`, plain numbers otherwise.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdStyle {
    /// What lightningd would do given the manifest.
    Auto,
    Numeric,
    Cln,
}

pub struct LightningdBuilder {
    base_dir: Option<PathBuf>,
    network: String,
    options: Vec<(String, Value)>,
    node: Option<FakeNode>,
    env: Vec<(String, String)>,
    timeout: Duration,
    startup_timeout: Duration,
    id_style: IdStyle,
    startup: bool,
}

impl Default for LightningdBuilder {
    fn default() -> Self {
        LightningdBuilder {
            base_dir: None,
            network: "regtest".into(),
            options: Vec::new(),
            node: None,
            env: Vec::new(),
            timeout: Duration::from_secs(15),
            startup_timeout: Duration::from_secs(30),
            id_style: IdStyle::Auto,
            startup: true,
        }
    }
}

impl LightningdBuilder {
    /// The node's base directory (`--lightning-dir` of lightningd); the
    /// plugin's lightning-dir is `<base>/<network>`. Reuse it to restart a
    /// plugin on the same data. Default: a fresh temporary directory.
    pub fn base_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.base_dir = Some(dir.as_ref().to_path_buf());
        self
    }

    pub fn network(mut self, network: &str) -> Self {
        self.network = network.into();
        self
    }

    /// Sets a plugin option as `--name=value` would. Repeat for multi
    /// options. Values are coerced to the declared type like lightningd
    /// parses command-line text.
    pub fn option(mut self, name: &str, value: impl Into<Value>) -> Self {
        self.options.push((name.into(), value.into()));
        self
    }

    /// Shares a fake node (e.g. across a restart).
    pub fn node(mut self, node: FakeNode) -> Self {
        self.node = Some(node);
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// How long to wait for each answer after startup.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    pub fn id_style(mut self, style: IdStyle) -> Self {
        self.id_style = style;
        self
    }

    /// `configuration.startup` sent with `init`: true (the default) when
    /// lightningd starts the plugin as it starts itself, false for a
    /// plugin started later by `plugin start` while lightningd runs.
    pub fn startup(mut self, startup: bool) -> Self {
        self.startup = startup;
        self
    }

    /// Starts the plugin and requires it to stay active after `init`.
    pub fn start(self) -> Lightningd {
        let ld = self
            .try_start()
            .unwrap_or_else(|e| panic!("plugin failed to start: {e}"));
        if let InitOutcome::Disabled(reason) = &ld.init_outcome {
            panic!(
                "plugin disabled itself at init: {reason}\n--- plugin stderr ---\n{}",
                ld.stderr()
            );
        }
        ld
    }

    /// Starts the plugin and requires it to disable itself at `init`;
    /// returns the handle (to check its exit) and the reason given.
    pub fn start_expect_disabled(self) -> (Lightningd, String) {
        let ld = self
            .try_start()
            .unwrap_or_else(|e| panic!("plugin failed to start: {e}"));
        match ld.init_outcome.clone() {
            InitOutcome::Disabled(reason) => (ld, reason),
            InitOutcome::Active => panic!("plugin stayed active but was expected to disable itself"),
        }
    }

    /// Runs the handshake (`getmanifest`, `init`) and returns the running
    /// plugin whatever `init` answered; see [`Lightningd::init_outcome`].
    pub fn try_start(self) -> Result<Lightningd, HarnessError> {
        let harness_err = |m: String| HarnessError::new(ErrorKind::Harness, m);
        let (tempdir, base_dir) = match &self.base_dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("ballast-ld-")
                    .tempdir()
                    .map_err(|e| harness_err(format!("tempdir: {e}")))?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let lightning_dir = base_dir.join(&self.network);
        std::fs::create_dir_all(&lightning_dir)
            .map_err(|e| harness_err(format!("create {}: {e}", lightning_dir.display())))?;
        let lightning_dir = lightning_dir
            .canonicalize()
            .map_err(|e| harness_err(format!("canonicalize: {e}")))?;

        let node = self.node.clone().unwrap_or_default();
        // What lightningd did with the HTLCs the previous plugin process held.
        node.plugin_started(self.startup);
        node.with(|s| {
            s.lightning_dir = lightning_dir.to_string_lossy().into_owned();
            s.network = self.network.clone();
        });
        // lightningd listens on its RPC socket before it initializes
        // plugins, which may call it from within `init`.
        let server = RpcServer::start(node.clone(), &lightning_dir.join("lightning-rpc"))
            .map_err(|e| harness_err(format!("fake RPC socket: {e}")))?;

        let mut cmd = Command::new(plugin_binary());
        cmd.current_dir(&lightning_dir)
            .env("LIGHTNINGD_PLUGIN", "1")
            .env("LIGHTNINGD_VERSION", LIGHTNINGD_VERSION)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| harness_err(format!("spawn {}: {e}", plugin_binary().display())))?;
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let stdin = child.stdin.take().expect("piped stdin");

        let io = Arc::new(Io::default());
        io.lock().node = Some(node.clone());
        let reader = {
            let io = io.clone();
            std::thread::Builder::new()
                .name("plugin-stdout".into())
                .spawn(move || read_stdout(stdout, &io))
                .map_err(|e| harness_err(format!("thread: {e}")))?
        };
        let stderr_reader = {
            let io = io.clone();
            std::thread::Builder::new()
                .name("plugin-stderr".into())
                .spawn(move || read_stderr(stderr, &io))
                .map_err(|e| harness_err(format!("thread: {e}")))?
        };

        let mut ld = Lightningd {
            child,
            stdin: Mutex::new(Some(stdin)),
            io,
            manifest: Manifest::default(),
            init_outcome: InitOutcome::Active,
            init_options: Map::new(),
            node,
            server: Some(server),
            base_dir,
            lightning_dir,
            network: self.network.clone(),
            next_id: AtomicU64::new(1),
            timeout: self.timeout,
            id_style: self.id_style,
            exit_status: None,
            reader: Some(reader),
            stderr_reader: Some(stderr_reader),
            check_on_drop: true,
            _tempdir: tempdir,
        };

        match ld.handshake(&self) {
            Ok(()) => Ok(ld),
            Err(mut e) => {
                // Report plugin-side violations with the error, and leave
                // the fake node's for the caller (the node outlives us).
                let plugin_side = std::mem::take(&mut ld.io.lock().violations);
                if !plugin_side.is_empty() {
                    e.message
                        .push_str(&format!("\nviolations:\n  - {}", plugin_side.join("\n  - ")));
                }
                e.message.push_str(&format!("\n{}", ld.diagnostics()));
                ld.check_on_drop = false;
                Err(e)
            }
        }
    }
}

/// State shared with the reader threads.
#[derive(Default)]
struct Io {
    state: Mutex<IoState>,
    cond: Condvar,
}

#[derive(Default)]
struct IoState {
    /// Ids (canonical JSON) of requests awaiting an answer, with whether
    /// they are RPC commands (which may carry `message`/`progress`).
    waiting: HashMap<String, bool>,
    answers: HashMap<String, Result<Value, JsonRpcError>>,
    logs: Vec<LogEntry>,
    notifications: Vec<(String, Value)>,
    violations: Vec<String>,
    declared_notifications: Vec<String>,
    eof: bool,
    /// The world the hook answers act on (incoming HTLCs held for the plugin).
    node: Option<FakeNode>,
    /// `shutdown` was sent: lightningd is going down (or stopping the plugin) and, if it is
    /// going down, ignores hook answers from here on (see [`FakeNode::hook_answered`]).
    shutting_down: bool,
    stderr: Vec<u8>,
    traffic: VecDeque<String>,
    messages_seen: u64,
}

impl Io {
    fn lock(&self) -> MutexGuard<'_, IoState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

const TRAFFIC_KEPT: usize = 60;

fn remember(state: &mut IoState, line: String) {
    if state.traffic.len() == TRAFFIC_KEPT {
        state.traffic.pop_front();
    }
    state.traffic.push_back(shorten(&line, 600));
}

fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Splits the plugin's stdout into JSON messages. cln-plugin (like every
/// conforming plugin) ends each message with `\n\n`; anything else is
/// flagged.
fn read_stdout(mut stdout: impl Read, io: &Io) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match stdout.read(&mut chunk) {
            Ok(0) | Err(_) => 0,
            Ok(n) => n,
        };
        if n == 0 {
            let mut st = io.lock();
            if buf.iter().any(|b| !b.is_ascii_whitespace()) {
                st.violations.push(format!(
                    "plugin stdout ended with an incomplete message: {}",
                    shorten(&String::from_utf8_lossy(&buf), 300)
                ));
            }
            st.eof = true;
            drop(st);
            io.cond.notify_all();
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let mut stream = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
            match stream.next() {
                None => {
                    if !buf.is_empty() {
                        // Lone blank lines between messages.
                        io.lock()
                            .violations
                            .push("plugin wrote stray whitespace between messages".into());
                        buf.clear();
                    }
                    break;
                }
                Some(Ok(msg)) => {
                    let end = stream.byte_offset();
                    let rest = &buf[end..];
                    let framed = rest.starts_with(b"\n\n");
                    if !framed && rest.len() < 2 && rest.iter().all(|b| *b == b'\n') {
                        break; // separator not fully read yet
                    }
                    if framed {
                        buf.drain(..end + 2);
                    } else {
                        io.lock().violations.push(format!(
                            "plugin message not followed by \"\\n\\n\": {}",
                            shorten(&msg.to_string(), 200)
                        ));
                        buf.drain(..end);
                    }
                    dispatch(io, msg);
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    let text = String::from_utf8_lossy(&buf).into_owned();
                    io.lock().violations.push(format!(
                        "plugin wrote invalid JSON on stdout ({e}): {}",
                        shorten(&text, 300)
                    ));
                    // lightningd would kill the plugin; resynchronize on
                    // the next separator so later traffic is still seen.
                    match buf.windows(2).position(|w| w == b"\n\n") {
                        Some(p) => {
                            buf.drain(..p + 2);
                        }
                        None => buf.clear(),
                    }
                }
            }
        }
    }
}

fn dispatch(io: &Io, msg: Value) {
    // Applied to the fake node after the io lock is released: the node may be calling
    // into the plugin (and waiting on io) while holding its own lock.
    let mut answered: Option<(FakeNode, String, bool)> = None;
    dispatch_locked(io, msg, &mut answered);
    if let Some((node, key, shutting_down)) = answered {
        node.hook_answered(&key, shutting_down);
    }
}

fn dispatch_locked(io: &Io, msg: Value, answered: &mut Option<(FakeNode, String, bool)>) {
    let mut st = io.lock();
    st.messages_seen += 1;
    remember(&mut st, format!("plugin → lightningd: {msg}"));
    match parse_plugin_message(&msg) {
        Err(e) => st.violations.push(e),
        Ok(FromPlugin::Response { id, outcome }) => {
            let key = id.to_string();
            if st.waiting.remove(&key).is_some() {
                if let Some(node) = st.node.clone() {
                    *answered = Some((node, key.clone(), st.shutting_down));
                }
                st.answers.insert(key, outcome);
            } else {
                st.violations.push(format!(
                    "plugin answered id {id}, which lightningd never sent or was already answered: {msg}"
                ));
            }
        }
        Ok(FromPlugin::Notification { method, params }) => match method.as_str() {
            "log" => match parse_log(&params) {
                Ok(entry) => st.logs.push(entry),
                Err(e) => st.violations.push(e),
            },
            // Progress reports must name a command in flight.
            "message" | "progress" => {
                let in_flight = params
                    .get("id")
                    .is_some_and(|id| st.waiting.get(&id.to_string()) == Some(&true));
                if !in_flight {
                    st.violations.push(format!(
                        "`{method}` notification for no command in flight: {params}"
                    ));
                }
                st.notifications.push((method, params));
            }
            _ => {
                if !st.declared_notifications.contains(&method) {
                    st.violations.push(format!(
                        "plugin sent notification `{method}` without declaring it in its manifest"
                    ));
                }
                if !method.starts_with(CUSTOM_NOTIFICATION_PREFIX) {
                    st.violations.push(format!(
                        "custom notification `{method}` should be named `{CUSTOM_NOTIFICATION_PREFIX}*`"
                    ));
                }
                if let Err(e) = schemas().check_notification(&method, &params) {
                    if method.starts_with(CUSTOM_NOTIFICATION_PREFIX) {
                        st.violations.push(e);
                    }
                }
                st.notifications.push((method, params));
            }
        },
    }
    drop(st);
    io.cond.notify_all();
}

fn read_stderr(mut stderr: impl Read, io: &Io) {
    let mut chunk = [0u8; 8192];
    loop {
        match stderr.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => io.lock().stderr.extend_from_slice(&chunk[..n]),
        }
    }
}

/// A hook call sent with [`Lightningd::send_hook`] whose answer has not
/// been collected yet.
#[derive(Clone, Debug)]
pub struct PendingHook {
    pub hook: String,
    pub id: Value,
}

/// lightningd treats an error answer to a hook as fatal; a result must
/// match the hook's response schema.
fn check_hook_answer(hook: &str, outcome: Result<Value, JsonRpcError>) -> Result<Value, HarnessError> {
    match outcome {
        Err(e) => Err(HarnessError::new(
            ErrorKind::InvalidIncoming,
            format!("plugin answered hook `{hook}` with an error: {e}"),
        )),
        Ok(result) => {
            schemas()
                .check_hook_response(hook, &result)
                .map_err(|e| HarnessError::new(ErrorKind::InvalidIncoming, e))?;
            Ok(result)
        }
    }
}

/// A running plugin, attached to a fake lightningd.
pub struct Lightningd {
    child: Child,
    stdin: Mutex<Option<ChildStdin>>,
    io: Arc<Io>,
    manifest: Manifest,
    init_outcome: InitOutcome,
    init_options: Map<String, Value>,
    node: FakeNode,
    server: Option<RpcServer>,
    base_dir: PathBuf,
    lightning_dir: PathBuf,
    network: String,
    next_id: AtomicU64,
    timeout: Duration,
    id_style: IdStyle,
    exit_status: Option<ExitStatus>,
    reader: Option<JoinHandle<()>>,
    stderr_reader: Option<JoinHandle<()>>,
    /// False when startup failed: the error already carries the findings.
    check_on_drop: bool,
    // Last: removed only after the plugin is gone.
    _tempdir: Option<tempfile::TempDir>,
}

impl Lightningd {
    pub fn builder() -> LightningdBuilder {
        LightningdBuilder::default()
    }

    /// A plugin with default options in a fresh directory.
    pub fn start() -> Lightningd {
        Self::builder().start()
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn init_outcome(&self) -> &InitOutcome {
        &self.init_outcome
    }

    pub fn disabled_reason(&self) -> Option<&str> {
        match &self.init_outcome {
            InitOutcome::Disabled(r) => Some(r),
            InitOutcome::Active => None,
        }
    }

    /// The `options` object sent with `init`.
    pub fn init_options(&self) -> &Map<String, Value> {
        &self.init_options
    }

    pub fn node(&self) -> &FakeNode {
        &self.node
    }

    pub fn base_dir(&self) -> &Path {
        &self.base_dir
    }

    /// `<base>/<network>`: the plugin's working directory.
    pub fn lightning_dir(&self) -> &Path {
        &self.lightning_dir
    }

    pub fn network(&self) -> &str {
        &self.network
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn new_id(&self, method: &str, forwarded_cli: bool) -> Value {
        let n = self.next_id.fetch_add(2, Ordering::SeqCst);
        let style = match self.id_style {
            IdStyle::Auto if self.manifest.nonnumericids => IdStyle::Cln,
            IdStyle::Auto => IdStyle::Numeric,
            s => s,
        };
        match (style, forwarded_cli) {
            (IdStyle::Cln, true) => json!(format!("cli:{method}#{n}/cln:{method}#{}", n + 1)),
            (IdStyle::Cln, false) => json!(format!("cln:{method}#{n}")),
            _ => json!(n),
        }
    }

    /// Writes one message, framed as lightningd does.
    fn send(&self, msg: &Value) -> Result<(), HarnessError> {
        let mut bytes = serde_json::to_vec(msg).expect("serializable");
        bytes.extend_from_slice(b"\n\n");
        let mut guard = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        let stdin = guard
            .as_mut()
            .ok_or_else(|| HarnessError::new(ErrorKind::PluginGone, "stdin already closed"))?;
        stdin
            .write_all(&bytes)
            .and_then(|_| stdin.flush())
            .map_err(|e| HarnessError::new(ErrorKind::PluginGone, format!("writing to plugin: {e}")))?;
        remember(&mut self.io.lock(), format!("lightningd → plugin: {msg}"));
        Ok(())
    }

    /// Sends a request and waits for the answer with exactly that id.
    fn exchange(
        &self,
        method: &str,
        params: Value,
        id: Value,
        timeout: Duration,
    ) -> Result<Result<Value, JsonRpcError>, HarnessError> {
        self.begin_exchange(method, params, &id)?;
        self.finish_exchange(method, &id, timeout)
    }

    /// First half of [`Self::exchange`]: registers `id` as awaiting an
    /// answer and sends the request.
    fn begin_exchange(&self, method: &str, params: Value, id: &Value) -> Result<(), HarnessError> {
        let key = id.to_string();
        {
            let mut st = self.io.lock();
            if st.waiting.contains_key(&key) {
                return Err(HarnessError::new(
                    ErrorKind::Harness,
                    format!("id {id} already in flight"),
                ));
            }
            let is_command = !schemas().has_hook(method) && !matches!(method, "getmanifest" | "init");
            st.waiting.insert(key.clone(), is_command);
        }
        if method == "htlc_accepted" {
            self.node.htlc_to_hook(&params, &key);
        }
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        if let Err(e) = self.send(&msg) {
            self.io.lock().waiting.remove(&key);
            return Err(e);
        }
        Ok(())
    }

    /// Second half of [`Self::exchange`]: waits for the answer to `id`.
    fn finish_exchange(
        &self,
        method: &str,
        id: &Value,
        timeout: Duration,
    ) -> Result<Result<Value, JsonRpcError>, HarnessError> {
        let key = id.to_string();
        let deadline = Instant::now() + timeout;
        let mut st = self.io.lock();
        loop {
            if let Some(answer) = st.answers.remove(&key) {
                return Ok(answer);
            }
            if st.eof {
                st.waiting.remove(&key);
                drop(st);
                return Err(HarnessError::new(
                    ErrorKind::PluginGone,
                    format!(
                        "plugin closed stdout before answering `{method}` (id {id}); stderr:\n{}",
                        self.stderr()
                    ),
                ));
            }
            let now = Instant::now();
            if now >= deadline {
                st.waiting.remove(&key);
                let violations = st.violations.clone();
                drop(st);
                return Err(HarnessError::new(
                    ErrorKind::Timeout,
                    format!("no answer to `{method}` (id {id}) within {timeout:?}; violations so far: {violations:?}"),
                ));
            }
            st = self
                .io
                .cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// `getmanifest` then `init`, checking both answers.
    fn handshake(&mut self, cfg: &LightningdBuilder) -> Result<(), HarnessError> {
        // getmanifest: the plugin has not told us about `nonnumericids`
        // yet, so lightningd uses a numeric id here.
        let id = json!(self.next_id.fetch_add(1, Ordering::SeqCst));
        let answer = self.exchange(
            "getmanifest",
            json!({"allow-deprecated-apis": false}),
            id,
            cfg.startup_timeout,
        )?;
        let result = answer.map_err(|e| {
            HarnessError::new(
                ErrorKind::InvalidIncoming,
                format!("getmanifest answered with an error: {e}"),
            )
        })?;
        self.manifest =
            check_manifest(&result).map_err(|e| HarnessError::new(ErrorKind::InvalidIncoming, e))?;
        self.io.lock().declared_notifications = self.manifest.notifications.clone();

        let options = init_options(&self.manifest, &cfg.options)
            .map_err(|m: String| HarnessError::new(ErrorKind::Harness, m))?;
        self.publish_configs(&options, &cfg.options);
        self.init_options = options.clone();
        let params = json!({
            "options": options,
            "configuration": {
                "lightning-dir": self.lightning_dir.to_string_lossy(),
                "rpc-file": "lightning-rpc",
                "startup": cfg.startup,
                "network": cfg.network,
                "feature_set": {
                    "init": "08a0000a8a5961",
                    "node": "88a0000a8a5961",
                    "channel": "",
                    "invoice": "02000002024100"
                },
                "always_use_proxy": false
            }
        });
        let id = self.new_id("init", false);
        let answer = self.exchange("init", params, id, cfg.startup_timeout)?;
        let result = answer.map_err(|e| {
            HarnessError::new(
                ErrorKind::InvalidIncoming,
                format!("init answered with an error: {e}"),
            )
        })?;
        self.init_outcome =
            check_init_result(&result).map_err(|e| HarnessError::new(ErrorKind::InvalidIncoming, e))?;
        if matches!(self.init_outcome, InitOutcome::Disabled(_)) {
            // lightningd forgets a plugin that disabled itself and closes
            // its end of the pipes; the plugin is expected to exit.
            self.close_stdin();
        }
        Ok(())
    }

    /// Calls a hook like lightningd; checks the payload before sending and
    /// the answer after. Panics on any problem.
    pub fn call_hook(&self, hook: &str, payload: Value) -> Value {
        let r = self
            .try_call_hook(hook, payload)
            .unwrap_or_else(|e| self.fail(&format!("hook `{hook}`: {e}")));
        self.assert_clean();
        r
    }

    pub fn try_call_hook(&self, hook: &str, payload: Value) -> Result<Value, HarnessError> {
        let id = self.new_id(hook, false);
        self.try_call_hook_with_id(hook, payload, id)
    }

    /// What lightningd guarantees before it calls a hook: the plugin registered it, and the
    /// payload matches the hook's schema.
    fn check_outgoing_hook(&self, hook: &str, payload: &Value) -> Result<(), HarnessError> {
        if !self.manifest.has_hook(hook) {
            return Err(HarnessError::new(
                ErrorKind::NotRegistered,
                format!("plugin did not register hook `{hook}`; lightningd would never call it"),
            ));
        }
        schemas()
            .check_hook_request(hook, payload)
            .map_err(|e| HarnessError::new(ErrorKind::InvalidOutgoing, e))
    }

    /// Like [`Self::try_call_hook`] with a caller-chosen id.
    pub fn try_call_hook_with_id(
        &self,
        hook: &str,
        payload: Value,
        id: Value,
    ) -> Result<Value, HarnessError> {
        self.check_outgoing_hook(hook, &payload)?;
        let outcome = self.exchange(hook, payload, id, self.timeout)?;
        check_hook_answer(hook, outcome)
    }

    /// Sends a hook call like lightningd without waiting for the answer,
    /// as lightningd does for an HTLC a plugin holds: other traffic
    /// (RPC calls, notifications, more hooks) can go on meanwhile. The
    /// payload is checked before sending; collect the answer with
    /// [`Self::wait_hook`]. Panics on any problem.
    pub fn send_hook(&self, hook: &str, payload: Value) -> PendingHook {
        let p = self
            .try_send_hook(hook, payload)
            .unwrap_or_else(|e| self.fail(&format!("hook `{hook}`: {e}")));
        self.assert_clean();
        p
    }

    pub fn try_send_hook(&self, hook: &str, payload: Value) -> Result<PendingHook, HarnessError> {
        self.check_outgoing_hook(hook, &payload)?;
        let id = self.new_id(hook, false);
        self.begin_exchange(hook, payload, &id)?;
        Ok(PendingHook {
            hook: hook.to_string(),
            id,
        })
    }

    /// True once the plugin has answered `pending` (without consuming the
    /// answer; [`Self::wait_hook`] still returns it).
    pub fn hook_answered(&self, pending: &PendingHook) -> bool {
        self.io.lock().answers.contains_key(&pending.id.to_string())
    }

    /// Waits up to `timeout` for the answer to a hook sent with
    /// [`Self::send_hook`] and checks it like [`Self::call_hook`]. Panics
    /// on any problem, including no answer in time.
    pub fn wait_hook(&self, pending: &PendingHook, timeout: Duration) -> Value {
        let r = self
            .try_wait_hook(pending, timeout)
            .unwrap_or_else(|e| self.fail(&format!("hook `{}` (id {}): {e}", pending.hook, pending.id)));
        self.assert_clean();
        r
    }

    /// [`Self::wait_hook`] returning the problem instead. After a
    /// `Timeout` the call is no longer awaited: a late answer to it is
    /// then recorded as a violation.
    pub fn try_wait_hook(&self, pending: &PendingHook, timeout: Duration) -> Result<Value, HarnessError> {
        let outcome = self.finish_exchange(&pending.hook, &pending.id, timeout)?;
        check_hook_answer(&pending.hook, outcome)
    }

    /// Sends a notification like lightningd: only for subscribed topics,
    /// payload checked against the schema and nested under the topic name
    /// (`shutdown` has an empty `params`).
    pub fn notify(&self, topic: &str, payload: Value) {
        self.try_notify(topic, payload)
            .unwrap_or_else(|e| self.fail(&format!("notification `{topic}`: {e}")));
        self.assert_clean();
    }

    pub fn try_notify(&self, topic: &str, payload: Value) -> Result<(), HarnessError> {
        if !self.manifest.subscribes(topic) {
            return Err(HarnessError::new(
                ErrorKind::NotRegistered,
                format!("plugin is not subscribed to `{topic}`; lightningd would not send it"),
            ));
        }
        schemas()
            .check_notification(topic, &payload)
            .map_err(|e| HarnessError::new(ErrorKind::InvalidOutgoing, e))?;
        let params = if topic == "shutdown" {
            self.io.lock().shutting_down = true;
            payload
        } else {
            json!({ topic: payload })
        };
        self.send(&json!({"jsonrpc": "2.0", "method": topic, "params": params}))
    }

    /// Calls one of the plugin's RPC methods as `lightning-cli` would
    /// through lightningd, which forwards params unchanged (object or
    /// array). JSON-RPC errors are returned; protocol problems panic.
    pub fn rpc(&self, method: &str, params: Value) -> Result<Value, JsonRpcError> {
        let r = self
            .try_rpc(method, params)
            .unwrap_or_else(|e| self.fail(&format!("rpc `{method}`: {e}")));
        self.assert_clean();
        r
    }

    /// [`Self::rpc`] that also panics on a JSON-RPC error.
    pub fn rpc_ok(&self, method: &str, params: Value) -> Value {
        self.rpc(method, params.clone())
            .unwrap_or_else(|e| self.fail(&format!("rpc `{method}` {params} failed: {e}")))
    }

    pub fn try_rpc(&self, method: &str, params: Value) -> Result<Result<Value, JsonRpcError>, HarnessError> {
        let id = self.new_id(method, true);
        self.try_rpc_with_id(method, params, id)
    }

    /// Like [`Self::try_rpc`] with a caller-chosen id (e.g. to check that
    /// ids are echoed verbatim).
    pub fn try_rpc_with_id(
        &self,
        method: &str,
        params: Value,
        id: Value,
    ) -> Result<Result<Value, JsonRpcError>, HarnessError> {
        if !self.manifest.has_rpcmethod(method) {
            // lightningd answers unknown commands itself.
            return Ok(Err(JsonRpcError::new(
                METHOD_NOT_FOUND,
                format!("Unknown command '{method}'"),
            )));
        }
        if !(params.is_object() || params.is_array()) {
            return Err(HarnessError::new(
                ErrorKind::InvalidOutgoing,
                format!("params must be an object or an array, got {params}"),
            ));
        }
        self.exchange(method, params, id, self.timeout)
    }

    pub fn rpc_with_id(&self, method: &str, params: Value, id: Value) -> Result<Value, JsonRpcError> {
        let r = self
            .try_rpc_with_id(method, params, id)
            .unwrap_or_else(|e| self.fail(&format!("rpc `{method}`: {e}")));
        self.assert_clean();
        r
    }

    /// Writes raw bytes to the plugin's stdin (for malformed-input tests).
    pub fn send_raw(&self, bytes: &[u8]) -> Result<(), HarnessError> {
        let mut guard = self.stdin.lock().unwrap_or_else(|p| p.into_inner());
        let stdin = guard
            .as_mut()
            .ok_or_else(|| HarnessError::new(ErrorKind::PluginGone, "stdin already closed"))?;
        stdin
            .write_all(bytes)
            .and_then(|_| stdin.flush())
            .map_err(|e| HarnessError::new(ErrorKind::PluginGone, e.to_string()))
    }

    /// Every `log` notification so far.
    pub fn logs(&self) -> Vec<LogEntry> {
        self.io.lock().logs.clone()
    }

    /// Waits for a log line containing `needle` (searching from the start).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> LogEntry {
        let deadline = Instant::now() + timeout;
        let mut st = self.io.lock();
        loop {
            if let Some(e) = st.logs.iter().find(|l| l.message.contains(needle)) {
                return e.clone();
            }
            let now = Instant::now();
            if now >= deadline || st.eof {
                let logs: Vec<String> = st.logs.iter().map(ToString::to_string).collect();
                drop(st);
                self.fail(&format!(
                    "no log line containing {needle:?}; logs:\n{}",
                    logs.join("\n")
                ));
            }
            st = self
                .io
                .cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Notifications the plugin emitted (other than `log`).
    pub fn notifications(&self) -> Vec<(String, Value)> {
        self.io.lock().notifications.clone()
    }

    pub fn wait_for_notification(&self, method: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let mut st = self.io.lock();
        loop {
            if let Some((_, p)) = st.notifications.iter().find(|(m, _)| m == method) {
                return p.clone();
            }
            let now = Instant::now();
            if now >= deadline || st.eof {
                drop(st);
                self.fail(&format!("no `{method}` notification within {timeout:?}"));
            }
            st = self
                .io
                .cond
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Polls `f` until it returns `Some`, panicking after `timeout`.
    pub fn wait_until<T>(&self, what: &str, timeout: Duration, mut f: impl FnMut(&Self) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("timed out after {timeout:?} waiting for {what}"));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Everything the plugin wrote on stderr so far.
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.io.lock().stderr).into_owned()
    }

    /// Problems seen so far (plugin traffic and fake RPC), without
    /// clearing them.
    pub fn violations(&self) -> Vec<String> {
        let mut v = self.io.lock().violations.clone();
        v.extend(self.node.violations());
        v
    }

    /// Problems seen so far; clears them, so a test that provoked one on
    /// purpose can acknowledge it.
    pub fn take_violations(&self) -> Vec<String> {
        let mut v = std::mem::take(&mut self.io.lock().violations);
        v.extend(self.node.take_violations());
        v
    }

    /// Panics if any violation is pending.
    pub fn assert_clean(&self) {
        let v = self.take_violations();
        if !v.is_empty() {
            self.fail(&format!("protocol/schema violations:\n  - {}", v.join("\n  - ")));
        }
    }

    /// Panics with diagnostics: the message, the plugin's stderr and the
    /// last messages exchanged.
    pub fn fail(&self, msg: &str) -> ! {
        panic!("{msg}\n{}", self.diagnostics());
    }

    fn diagnostics(&self) -> String {
        let st = self.io.lock();
        let traffic: Vec<&String> = st.traffic.iter().collect();
        format!(
            "--- plugin stderr ---\n{}\n--- last {} messages ---\n{}",
            shorten(&String::from_utf8_lossy(&st.stderr), 4000),
            traffic.len(),
            traffic.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n")
        )
    }

    /// Closes the plugin's stdin, as when lightningd goes away.
    pub fn close_stdin(&self) {
        self.stdin.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// SIGKILL, as a crash or `kill -9` would; waits for the process.
    pub fn kill9(&mut self) {
        if self.exit_status.is_none() {
            let _ = self.child.kill();
            self.exit_status = self.child.wait().ok();
        }
        self.node.plugin_gone();
        self.close_stdin();
    }

    /// Waits for the plugin to exit by itself.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.exit_status.is_some() {
            return self.exit_status;
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                self.exit_status = Some(status);
                // Let the reader drain what the plugin wrote last.
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                if let Some(r) = self.stderr_reader.take() {
                    let _ = r.join();
                }
                return self.exit_status;
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Shuts down like lightningd: a `shutdown` notification if
    /// subscribed, then waiting up to `timeout` before killing. Returns the
    /// exit status if the plugin exited by itself.
    pub fn stop(&mut self, timeout: Duration) -> Option<ExitStatus> {
        if self.manifest.subscribes("shutdown") && self.exit_status.is_none() {
            let _ = self.try_notify("shutdown", json!({}));
        }
        let status = self.wait_exit(timeout);
        if status.is_none() {
            self.kill9();
        }
        status
    }

    /// lightningd lists plugin options in `listconfigs`; mirror that in the
    /// fake node so the plugin sees a consistent world.
    fn publish_configs(&self, options: &Map<String, Value>, set: &[(String, Value)]) {
        let plugin = plugin_binary().to_string_lossy().into_owned();
        let mut entries = Map::new();
        for (name, value) in options {
            let Some(opt) = self.manifest.option(name) else {
                continue;
            };
            let source = if set.iter().any(|(n, _)| n == name) {
                "cmdline"
            } else {
                "default"
            };
            let entry = match (opt.kind, value) {
                (_, Value::Array(items)) => {
                    let key = if opt.kind == OptionType::Int {
                        "values_int"
                    } else {
                        "values_str"
                    };
                    json!({ key: items, "sources": vec![source; items.len()], "plugin": plugin })
                }
                (OptionType::String, v) => json!({"value_str": v, "source": source, "plugin": plugin}),
                (OptionType::Int, v) => json!({"value_int": v, "source": source, "plugin": plugin}),
                (OptionType::Bool, v) => json!({"value_bool": v, "source": source, "plugin": plugin}),
                (OptionType::Flag, v) => json!({"set": v, "source": source, "plugin": plugin}),
            };
            entries.insert(name.clone(), entry);
        }
        self.node.with(|s| s.extra_configs = entries);
    }
}

impl Drop for Lightningd {
    fn drop(&mut self) {
        if self.exit_status.is_none() {
            if let Ok(None) = self.child.try_wait() {
                let _ = self.child.kill();
            }
            self.exit_status = self.child.wait().ok();
        }
        self.close_stdin();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        if let Some(r) = self.stderr_reader.take() {
            let _ = r.join();
        }
        self.server.take();
        if std::thread::panicking() {
            eprintln!("{}", self.diagnostics());
        } else if self.check_on_drop {
            let v = self.take_violations();
            if !v.is_empty() {
                panic!(
                    "unacknowledged protocol/schema violations:\n  - {}\n{}",
                    v.join("\n  - "),
                    self.diagnostics()
                );
            }
        }
    }
}

/// Builders for the payloads lightningd sends, valid per the v26.06
/// schemas, so tests only spell out what matters to them.
pub mod payloads {
    use super::super::fake_node::{hash_hex, pubkey};
    use super::*;

    /// `htlc_accepted` for an HTLC addressed to us (final hop).
    pub fn htlc_accepted(payment_hash: &str, amount_msat: u64, cltv_expiry: u32, blockheight: u32) -> Value {
        json!({
            "peer_id": pubkey(1),
            "onion": {
                "payload": "",
                "type": "tlv",
                "forward_msat": amount_msat,
                "outgoing_cltv_value": cltv_expiry,
                "total_msat": amount_msat,
                "payment_secret": hash_hex(&format!("secret:{payment_hash}")),
                "next_onion": "00".repeat(1366),
                "shared_secret": hash_hex(&format!("shared:{payment_hash}"))
            },
            "htlc": {
                "short_channel_id": "103x1x0",
                "id": 0,
                "amount_msat": amount_msat,
                "cltv_expiry": cltv_expiry,
                "cltv_expiry_relative": cltv_expiry.saturating_sub(blockheight),
                "payment_hash": payment_hash
            }
        })
    }

    /// `htlc_accepted` for an HTLC we are asked to forward.
    pub fn htlc_forward(
        payment_hash: &str,
        in_scid: &str,
        out_scid: &str,
        in_msat: u64,
        out_msat: u64,
    ) -> Value {
        json!({
            "peer_id": pubkey(1),
            "onion": {
                "payload": "",
                "type": "tlv",
                "short_channel_id": out_scid,
                "forward_msat": out_msat,
                "outgoing_cltv_value": 150,
                "next_onion": "00".repeat(1366),
                "shared_secret": hash_hex(&format!("shared:{payment_hash}"))
            },
            "htlc": {
                "short_channel_id": in_scid,
                "id": 1,
                "amount_msat": in_msat,
                "cltv_expiry": 190,
                "cltv_expiry_relative": 80,
                "payment_hash": payment_hash
            }
        })
    }

    pub fn invoice_payment(label: &str, preimage: &str, msat: u64) -> Value {
        json!({"payment": {"label": label, "preimage": preimage, "msat": msat}})
    }

    pub fn block_added(height: u32) -> Value {
        json!({"hash": hash_hex(&format!("block:{height}")), "height": height})
    }

    pub fn connect(peer: &str) -> Value {
        json!({"id": peer, "direction": "out", "address": {"type": "ipv4", "address": "127.0.0.1", "port": 9735}})
    }

    pub fn disconnect(peer: &str) -> Value {
        json!({"id": peer})
    }

    pub fn channel_state_changed(peer: &str, scid: &str, old: &str, new: &str) -> Value {
        json!({
            "peer_id": peer,
            "channel_id": hash_hex(&format!("channel_id:{scid}")),
            "short_channel_id": scid,
            "timestamp": "2026-06-01T00:00:00.000Z",
            "old_state": old,
            "new_state": new,
            "cause": "user",
            "message": "state change"
        })
    }

    /// Seconds since the epoch as lightningd's float timestamps.
    pub fn now() -> f64 {
        now_secs() as f64
    }
}
