//! `htlc_accepted` pass-through benchmark (`cargo bench --bench hotpath`).
//!
//! Every HTLC that reaches a Core Lightning node waits for the answer of each
//! plugin registered on the `htlc_accepted` hook, so the plugin's round trip
//! on that hook is on the payment hot path. This benchmark plays lightningd:
//! it spawns a plugin with `LIGHTNINGD_PLUGIN=1`, talks JSON-RPC 2.0 over the
//! plugin's stdin/stdout (every message followed by `\n\n`), performs the
//! `getmanifest`/`init` handshake, serves the `lightning-rpc` unix socket
//! (only `getinfo`), and then fires `htlc_accepted` hook calls with realistic
//! payloads, expecting `{"result":"continue"}` back.
//!
//! Three plugins are measured in the same run:
//!
//! * `floor`   - a hand-rolled blocking loop (this binary re-executed with
//!   `BALLAST_BENCH_ROLE=floor`): the transport floor;
//! * `noop`    - a no-op `cln-plugin` hook plugin on a multi-thread tokio
//!   runtime (this binary with `BALLAST_BENCH_ROLE=noop`): the reference;
//! * `ballast` - the real plugin binary (`BALLAST_BIN`, else the `ballast`
//!   binary cargo built next to this bench, i.e. `target/release/ballast`).
//!
//! Figures: latency = N sequential round trips (one in flight), p50/p99/p999;
//! throughput = N hooks with 64 in flight, hooks/s. The plugins stay alive for
//! the whole run and take turns batch by batch, so that a burst of other load
//! hits all of them alike. Results are printed as a table, with ratios to the
//! floor and a verdict against the targets (ballast p50 <= 1.5x floor, ballast
//! throughput >= 0.6x floor), and written to `target/hotpath.json`.
//!
//! Arguments: `--quick` (N = 10,000), `--dump-request` (print one sample hook
//! request and exit), `--hodl` (see below); anything else (`--bench`, filters)
//! is ignored.
//!
//! Hold invoices (`--hodl`, or `HOTPATH_HODL=1`): first, against one ballast
//! process, create 100 invoices with `hodl-invoice` (ballast makes the
//! preimages; the fake lightningd "signs" by returning the invoice unchanged),
//! send 1,000 `htlc_accepted` hooks (10 MPP parts of 1,000,000 msat per
//! invoice, interleaved across invoices), wait until all 100 are ACCEPTED
//! (`hodl-lookup wait_for_state`, then `ballast-status` shows 1,000 held), then
//! `hodl-settle` all 100 by payment hash, pipelined, and wait for the 1,000
//! `resolve` answers (each `payment_key` checked against its payment hash).
//! Prints the time of each phase, the wall time from the first HTLC to the last
//! resolve, and the plugin's RSS (VmRSS, peak VmHWM), against the goals
//! (< 1 s, < 50 MB), plus the cost of one fsync on the store's filesystem
//! (every hold-invoice state change is flushed before it is answered). Then
//! the pass-through figures are measured as usual (on that same ballast
//! process, now holding 100 settled invoices), with N = 20,000 and
//! `floor,ballast` unless `HOTPATH_N`/`--quick`/`HOTPATH_ONLY` say otherwise;
//! the report goes to `target/hotpath-hodl.json`.
//!
//! Environment:
//! * `HOTPATH_N`         - N for latency and throughput (default 100,000;
//!   20,000 with `--hodl`);
//! * `HOTPATH_HODL=1`    - same as `--hodl`;
//! * `HOTPATH_WARMUP`    - warm-up round trips before each figure (default 2,000);
//! * `HOTPATH_ONLY`      - comma list among `floor,noop,ballast` (default all);
//! * `HOTPATH_ENFORCE=1` - exit non-zero when the verdict is FAIL;
//! * `HOTPATH_CONCURRENT_METHOD` / `HOTPATH_CONCURRENT_PARAMS` - while
//!   measuring ballast's hook latency, keep calling this RPC method (params:
//!   this JSON, default `{}`) on ballast's stdin, one call in flight, in a loop;
//! * `HOTPATH_RPC_FIXTURES` - a directory of `<method>.json` files: the fake
//!   lightningd answers `<method>` on its RPC socket with that file as `result`
//!   (e.g. `listchannels`, `listpeerchannels` captured from a node, so that a
//!   concurrent `rebalance-plan` has a real graph to plan on); without a file,
//!   only `getinfo` and `signinvoice` (which returns the invoice unchanged) are
//!   answered, plus `listpeerchannels` (no channels) with `--hodl`; everything
//!   else gets error -32601;
//! * `BALLAST_BIN`       - path of the ballast binary;
//! * `HOTPATH_CPUS`      - CPUs to pin the run to (driver and plugins alike):
//!   unset = the last CPU; `all` = no pinning; else a list such as `0,2-3`.
//!   Pinned to one CPU, the concurrent section is the harsh case of a heavy
//!   method and the hooks sharing one core; `HOTPATH_CPUS=all` shows the
//!   2-core case (noisier, see below). Its floor reference is measured right
//!   before it.
//!
//! Pinning by default: unpinned, the same plugin code measures either ~8 µs or
//! ~40 µs p50 on a small VM depending on whether the scheduler wakes it on the
//! driver's CPU or on an idle one (a cross-CPU wake-up through the hypervisor),
//! which swamps the differences between plugins. Pinned, latency is the
//! plugin's own cost and throughput is hooks/s on one core. Other load on the
//! machine still moves the figures: run on an otherwise idle machine.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

const ROLE_ENV: &str = "BALLAST_BENCH_ROLE";
const DEFAULT_N: usize = 100_000;
const QUICK_N: usize = 10_000;
const DEFAULT_WARMUP: usize = 2_000;
/// Hooks in flight during the throughput figure.
const WINDOW: usize = 64;
/// Plugins take turns every this many round trips (latency) and hooks (throughput).
const LATENCY_BATCH: usize = 1_000;
const THROUGHPUT_BATCH: usize = 5_000;
/// Block height the fake lightningd reports.
const BLOCKHEIGHT: u64 = 200;
const LIGHTNINGD_VERSION: &str = "v26.06";
/// `log` notifications kept for error reports.
const RECENT_LOGS: usize = 8;
const HOOK_ID_PREFIX: &str = "cln:htlc_accepted#";
const CONC_ID_PREFIX: &str = "cli:bench-concurrent#";
/// Targets (ballast vs floor).
const TARGET_P50_RATIO: f64 = 1.5;
const TARGET_THROUGHPUT_RATIO: f64 = 0.6;
const TARGET_CONCURRENT_P99_RATIO: f64 = 5.0;
/// Handshake deadline, and deadline of each measured phase.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
const PHASE_TIMEOUT: Duration = Duration::from_secs(900);
/// Secp256k1 generator G and 2G: valid compressed public keys.
const NODE_ID: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
const PEER_ID: &str = "02c6047f9441ed7d6d3045406e95c07cd85c778e4b8cef3ca7abac09b95c709ee5";

fn main() {
    let code = match std::env::var(ROLE_ENV).as_deref() {
        Ok("floor") => floor_main(),
        Ok("noop") => noop_main(),
        Ok(other) => {
            eprintln!("hotpath: unknown {ROLE_ENV}={other:?} (expected floor or noop)");
            2
        }
        Err(_) => match driver_main() {
            Ok(code) => code,
            Err(e) => {
                eprintln!("hotpath: error: {e:#}");
                1
            }
        },
    };
    std::process::exit(code);
}

// ---------------------------------------------------------------------------
// Framing shared by the floor plugin and the driver.
// ---------------------------------------------------------------------------

/// Reads one `\n\n`-terminated message into `buf` (without the terminator).
/// Returns `Ok(false)` on a clean end of stream.
fn read_frame<R: BufRead>(r: &mut R, buf: &mut Vec<u8>) -> io::Result<bool> {
    buf.clear();
    loop {
        let start = buf.len();
        let n = r.read_until(b'\n', buf)?;
        if n == 0 {
            if buf.iter().all(u8::is_ascii_whitespace) {
                return Ok(false);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "stream ended inside a message",
            ));
        }
        if n == 1 && buf[start] == b'\n' {
            if buf[..start].iter().all(u8::is_ascii_whitespace) {
                // Blank line before any content: skip it.
                buf.clear();
                continue;
            }
            buf.truncate(start);
            return Ok(true);
        }
    }
}

fn frame(v: &Value) -> Vec<u8> {
    let mut out = serde_json::to_vec(v).expect("serialising a Value cannot fail");
    out.extend_from_slice(b"\n\n");
    out
}

// ---------------------------------------------------------------------------
// Role: floor, a hand-rolled blocking plugin.
// ---------------------------------------------------------------------------

fn floor_main() -> i32 {
    let mut input = BufReader::with_capacity(1 << 16, io::stdin().lock());
    let mut output = io::stdout().lock();
    let mut msg = Vec::with_capacity(8192);
    loop {
        match read_frame(&mut input, &mut msg) {
            Ok(true) => {}
            Ok(false) => return 0,
            Err(e) => {
                eprintln!("floor: read error: {e}");
                return 1;
            }
        }
        let v: Value = match serde_json::from_slice(&msg) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("floor: bad JSON: {e}");
                return 1;
            }
        };
        let Some(id) = v.get("id") else {
            continue; // A notification: nothing to answer.
        };
        let reply = match v.get("method").and_then(Value::as_str) {
            Some("getmanifest") => json!({"jsonrpc": "2.0", "id": id, "result": {
                "options": [],
                "rpcmethods": [],
                "subscriptions": [],
                "hooks": [{"name": "htlc_accepted"}],
                "featurebits": {},
                "notifications": [],
                "dynamic": true,
                "nonnumericids": true,
            }}),
            Some("init") => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
            Some("htlc_accepted") => {
                json!({"jsonrpc": "2.0", "id": id, "result": {"result": "continue"}})
            }
            _ => json!({"jsonrpc": "2.0", "id": id,
                        "error": {"code": -32601, "message": "Method not found"}}),
        };
        if let Err(e) = output.write_all(&frame(&reply)).and_then(|_| output.flush()) {
            eprintln!("floor: write error: {e}");
            return 1;
        }
    }
}

// ---------------------------------------------------------------------------
// Role: noop, the reference cln-plugin hook plugin.
// ---------------------------------------------------------------------------

fn noop_main() -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("noop: cannot build the tokio runtime: {e}");
            return 1;
        }
    };
    let res: Result<()> = rt.block_on(async {
        let plugin = cln_plugin::Builder::new(tokio::io::stdin(), tokio::io::stdout())
            .hook("htlc_accepted", |_p, _v| async {
                Ok(json!({"result": "continue"}))
            })
            .start(())
            .await?;
        if let Some(plugin) = plugin {
            plugin.join().await?;
        }
        Ok(())
    });
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("noop: {e:#}");
            1
        }
    }
}

// ---------------------------------------------------------------------------
// Driver: configuration.
// ---------------------------------------------------------------------------

struct Config {
    n: usize,
    warmup: usize,
    plugins: Vec<String>,
    enforce: bool,
    /// CPUs the whole run (driver and plugins) is pinned to; `None`: not pinned.
    pin: Option<Vec<usize>>,
    concurrent: Option<(String, Value)>,
    /// `--hodl`: run the hold-invoice figures first.
    hodl: bool,
    ballast_bin: PathBuf,
    fixtures: Fixtures,
    target_dir: PathBuf,
}

fn env_usize(name: &str) -> Result<Option<usize>> {
    match std::env::var(name) {
        Ok(s) => {
            let s = s.trim().replace('_', "");
            Ok(Some(s.parse().with_context(|| {
                format!("{name} must be a positive integer, got {s:?}")
            })?))
        }
        Err(_) => Ok(None),
    }
}

/// `target/<profile>/deps/`, where cargo puts bench binaries, if we run from there.
fn deps_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    (dir.file_name()? == "deps").then(|| dir.to_path_buf())
}

/// `target/release/ballast`: benches run from `target/release/deps/`.
fn default_ballast_bin() -> PathBuf {
    if let Some(deps) = deps_dir() {
        let p = deps.join("..").join("ballast");
        if p.exists() {
            return p;
        }
    }
    match option_env!("CARGO_BIN_EXE_ballast") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from("target/release/ballast"),
    }
}

/// `target/`: two levels above `target/release/deps/`; else `$CARGO_TARGET_DIR`, else
/// `./target`.
fn default_target_dir() -> PathBuf {
    if let Some(target) = deps_dir().and_then(|d| d.parent()?.parent().map(Path::to_path_buf)) {
        return target;
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from("target"),
    }
}

/// `HOTPATH_CPUS`: unset = the last CPU; `all` = no pinning; else a list like `0,2-3`.
fn parse_pin(spec: Option<&str>) -> Result<Option<Vec<usize>>> {
    let ncpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let spec = spec.map(str::trim).unwrap_or("");
    if spec.is_empty() {
        return Ok(Some(vec![ncpus - 1]));
    }
    if spec == "all" {
        return Ok(None);
    }
    let mut cpus = Vec::new();
    for part in spec.split(',') {
        let part = part.trim();
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (
            a.trim()
                .parse()
                .with_context(|| format!("HOTPATH_CPUS: bad CPU {a:?}"))?,
            b.trim()
                .parse()
                .with_context(|| format!("HOTPATH_CPUS: bad CPU {b:?}"))?,
        );
        if a > b || b >= libc::CPU_SETSIZE as usize {
            bail!("HOTPATH_CPUS: bad range {part:?}");
        }
        cpus.extend(a..=b);
    }
    Ok(Some(cpus))
}

/// Pins thread `tid` (0: the calling thread); threads and processes it starts
/// afterwards inherit the pinning.
fn pin_thread(tid: libc::pid_t, cpus: &[usize]) -> Result<()> {
    // SAFETY: cpu_set_t is plain data; CPU_SET stays within CPU_SETSIZE (checked when
    // parsing); sched_setaffinity acts on that one thread only.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            bail!(
                "sched_setaffinity({tid}, {cpus:?}): {}",
                io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

fn pin_to(cpus: &[usize]) -> Result<()> {
    pin_thread(0, cpus)
}

fn parse_config() -> Result<Option<Config>> {
    let mut quick = false;
    let mut hodl = std::env::var("HOTPATH_HODL").is_ok_and(|v| v == "1");
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            "--hodl" => hodl = true,
            "--dump-request" => {
                let mut gen = HtlcGen::new(1);
                let mut req = Vec::new();
                gen.next(&mut req);
                io::stdout().write_all(&req)?;
                return Ok(None);
            }
            // `--bench`, bench-name filters and other cargo/libtest flags.
            _ => {}
        }
    }
    let n = match env_usize("HOTPATH_N")? {
        Some(n) => n,
        None if quick => QUICK_N,
        None if hodl => HODL_DEFAULT_N,
        None => DEFAULT_N,
    };
    if n == 0 {
        bail!("HOTPATH_N must be at least 1");
    }
    let warmup = env_usize("HOTPATH_WARMUP")?.unwrap_or(DEFAULT_WARMUP);
    let plugins: Vec<String> = match std::env::var("HOTPATH_ONLY") {
        Ok(s) => s
            .split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect(),
        Err(_) if hodl => ["floor", "ballast"].map(String::from).to_vec(),
        Err(_) => ["floor", "noop", "ballast"].map(String::from).to_vec(),
    };
    for p in &plugins {
        if !["floor", "noop", "ballast"].contains(&p.as_str()) {
            bail!("HOTPATH_ONLY: unknown plugin {p:?} (expected floor, noop, ballast)");
        }
    }
    let concurrent = match std::env::var("HOTPATH_CONCURRENT_METHOD") {
        Ok(m) if !m.trim().is_empty() => {
            let params = match std::env::var("HOTPATH_CONCURRENT_PARAMS") {
                Ok(p) if !p.trim().is_empty() => {
                    serde_json::from_str(&p).context("HOTPATH_CONCURRENT_PARAMS is not valid JSON")?
                }
                _ => json!({}),
            };
            Some((m.trim().to_string(), params))
        }
        _ => None,
    };
    let ballast_bin = match std::env::var_os("BALLAST_BIN") {
        Some(p) => PathBuf::from(p),
        None => default_ballast_bin(),
    };
    let mut fixtures = load_fixtures()?;
    if hodl {
        // ballast asks for its channels (route hints, monitoring): none here.
        Arc::make_mut(&mut fixtures)
            .entry("listpeerchannels".to_string())
            .or_insert_with(|| r#"{"channels":[]}"#.to_string());
    }
    Ok(Some(Config {
        n,
        warmup,
        plugins,
        enforce: std::env::var("HOTPATH_ENFORCE").is_ok_and(|v| v == "1"),
        pin: parse_pin(std::env::var("HOTPATH_CPUS").ok().as_deref())?,
        concurrent,
        hodl,
        ballast_bin,
        fixtures,
        target_dir: default_target_dir(),
    }))
}

// ---------------------------------------------------------------------------
// Driver: realistic htlc_accepted payloads.
// ---------------------------------------------------------------------------

/// xorshift64*: good enough for payment hashes in a benchmark.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let r = self.next().to_le_bytes();
            chunk.copy_from_slice(&r[..chunk.len()]);
        }
    }

    fn hex32(&mut self) -> [u8; 64] {
        let mut raw = [0u8; 32];
        self.fill(&mut raw);
        let mut out = [0u8; 64];
        hex::encode_to_slice(raw, &mut out).expect("64 = 2 * 32");
        out
    }
}

fn scid_u64(block: u64, tx: u64, out: u64) -> u64 {
    (block << 40) | (tx << 16) | out
}

/// Truncated big-endian integer (BOLT #1 `tu64`/`tu32`).
fn truncated(v: u64) -> Vec<u8> {
    let b = v.to_be_bytes();
    let skip = b.iter().take_while(|&&x| x == 0).count();
    b[skip..].to_vec()
}

/// Forwarding hop payload: length-prefixed TLV stream with `amt_to_forward`
/// (2), `outgoing_cltv_value` (4) and `short_channel_id` (6).
fn hop_payload(forward_msat: u64, outgoing_cltv: u64, next_scid: u64) -> Vec<u8> {
    let mut tlv = Vec::new();
    for (typ, value) in [
        (2u8, truncated(forward_msat)),
        (4u8, truncated(outgoing_cltv)),
        (6u8, next_scid.to_be_bytes().to_vec()),
    ] {
        tlv.push(typ);
        tlv.push(value.len() as u8);
        tlv.extend_from_slice(&value);
    }
    let mut out = vec![tlv.len() as u8]; // BigSize length, < 0xfd here.
    out.extend_from_slice(&tlv);
    out
}

/// Generates `htlc_accepted` hook requests as lightningd sends them for an
/// HTLC to forward: random payment hash and shared secret per HTLC, a
/// 1366-byte `next_onion` (version + pubkey + 1300 bytes of routing info +
/// HMAC, i.e. 2732 hex characters), valid pubkeys and channel ids.
struct HtlcGen {
    rng: XorShift,
    seq: u64,
    next_onion: String,
    forward_to: String,
}

impl HtlcGen {
    fn new(seed: u64) -> Self {
        let mut rng = XorShift(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
        let mut onion = vec![0u8; 1366];
        rng.fill(&mut onion);
        onion[0] = 0; // version
        onion[1] = 0x02; // ephemeral key prefix
        let mut chan = [0u8; 32];
        rng.fill(&mut chan);
        HtlcGen {
            rng,
            seq: 0,
            next_onion: hex::encode(onion),
            forward_to: hex::encode(chan),
        }
    }

    /// Writes the next request (with its `\n\n`) into `out`; returns its
    /// sequence number, the `N` of its id `cln:htlc_accepted#N`.
    fn next(&mut self, out: &mut Vec<u8>) -> u64 {
        self.seq += 1;
        let seq = self.seq;
        let payment_hash = self.rng.hex32();
        let shared_secret = self.rng.hex32();
        let amount_msat = 10_000 + self.rng.next() % 2_000_000_000;
        let fee_msat = 1_000 + amount_msat / 1_000_000;
        let forward_msat = amount_msat - fee_msat;
        let cltv_expiry_relative = 40 + self.rng.next() % 100;
        let cltv_expiry = BLOCKHEIGHT + cltv_expiry_relative;
        let outgoing_cltv = cltv_expiry - 34;
        let next_scid = (BLOCKHEIGHT - 95, 2, 1);
        let payload = hex::encode(hop_payload(
            forward_msat,
            outgoing_cltv,
            scid_u64(next_scid.0, next_scid.1, next_scid.2),
        ));
        out.clear();
        write!(
            out,
            concat!(
                r#"{{"jsonrpc":"2.0","id":"{prefix}{seq}","method":"htlc_accepted","params":{{"#,
                r#""peer_id":"{peer}","#,
                r#""onion":{{"payload":"{payload}","type":"tlv","short_channel_id":"{b}x{t}x{o}","#,
                r#""forward_msat":{fwd},"outgoing_cltv_value":{ocltv},"next_onion":"{onion}","#,
                r#""shared_secret":"{secret}"}},"#,
                r#""htlc":{{"short_channel_id":"103x1x0","id":{htlc_id},"amount_msat":{amt},"#,
                r#""cltv_expiry":{cltv},"cltv_expiry_relative":{rel},"payment_hash":"{hash}"}},"#,
                r#""forward_to":"{fwd_to}"}}}}"#,
                "\n\n"
            ),
            prefix = HOOK_ID_PREFIX,
            seq = seq,
            peer = PEER_ID,
            payload = payload,
            b = next_scid.0,
            t = next_scid.1,
            o = next_scid.2,
            fwd = forward_msat,
            ocltv = outgoing_cltv,
            onion = self.next_onion,
            secret = std::str::from_utf8(&shared_secret).expect("hex is ASCII"),
            htlc_id = seq - 1,
            amt = amount_msat,
            cltv = cltv_expiry,
            rel = cltv_expiry_relative,
            hash = std::str::from_utf8(&payment_hash).expect("hex is ASCII"),
            fwd_to = self.forward_to,
        )
        .expect("writing to a Vec cannot fail");
        seq
    }
}

// ---------------------------------------------------------------------------
// Driver: fake lightningd RPC socket.
// ---------------------------------------------------------------------------

/// Canned RPC results: `<method>.json` files of `HOTPATH_RPC_FIXTURES`, each the
/// `result` lightningd would return for that method (e.g. `lightning-cli listchannels`
/// output), so that methods doing real work have real data to work on.
type Fixtures = Arc<HashMap<String, String>>;

fn load_fixtures() -> Result<Fixtures> {
    let mut map = HashMap::new();
    let Some(dir) = std::env::var_os("HOTPATH_RPC_FIXTURES") else {
        return Ok(Arc::new(map));
    };
    let dir = PathBuf::from(dir);
    for entry in
        std::fs::read_dir(&dir).with_context(|| format!("HOTPATH_RPC_FIXTURES: reading {}", dir.display()))?
    {
        let path = entry?.path();
        let (Some(method), Some("json")) = (
            path.file_stem().and_then(|s| s.to_str()),
            path.extension().and_then(|s| s.to_str()),
        ) else {
            continue;
        };
        let text = std::fs::read_to_string(&path)?;
        let v: Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
        // Compact once, so that every reply is a single frame without blank lines.
        map.insert(method.to_string(), serde_json::to_string(&v)?);
    }
    Ok(Arc::new(map))
}

fn serve_rpc(dir: &Path, fixtures: Fixtures) -> Result<()> {
    let path = dir.join("lightning-rpc");
    let listener = UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    let dir = dir.to_string_lossy().into_owned();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let dir = dir.clone();
            let fixtures = fixtures.clone();
            std::thread::spawn(move || {
                let _ = rpc_conn(conn, &dir, &fixtures);
            });
        }
    });
    Ok(())
}

fn rpc_conn(conn: UnixStream, dir: &str, fixtures: &HashMap<String, String>) -> Result<()> {
    let mut writer = conn.try_clone()?;
    let requests = serde_json::Deserializer::from_reader(BufReader::new(conn)).into_iter::<Value>();
    for req in requests {
        let req = req?;
        let id = req.get("id").cloned().unwrap_or(Value::Null);
        let method = req.get("method").and_then(Value::as_str);
        if let Some(result) = method.and_then(|m| fixtures.get(m)) {
            let reply = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#);
            writer.write_all(reply.as_bytes())?;
            writer.write_all(b"\n\n")?;
            continue;
        }
        let reply = match method {
            Some("getinfo") => json!({"jsonrpc": "2.0", "id": id, "result": {
                "id": NODE_ID,
                "alias": "HOTPATH-BENCH",
                "color": "0279be",
                "num_peers": 0,
                "num_pending_channels": 0,
                "num_active_channels": 0,
                "num_inactive_channels": 0,
                "address": [],
                "binding": [],
                "version": LIGHTNINGD_VERSION,
                "blockheight": BLOCKHEIGHT,
                "network": "regtest",
                "fees_collected_msat": 0,
                "lightning-dir": dir,
            }}),
            // The node "signs" by returning the invoice as given: ballast only checks that
            // what comes back pays the same hash, secret and amount.
            Some("signinvoice") => {
                let params = req.get("params");
                let inv = params
                    .and_then(|p| p.get("invstring").or_else(|| p.get(0)))
                    .and_then(Value::as_str);
                match inv {
                    Some(inv) => json!({"jsonrpc": "2.0", "id": id, "result": {"bolt11": inv}}),
                    None => json!({"jsonrpc": "2.0", "id": id, "error": {
                        "code": -32602, "message": "signinvoice: missing invstring"}}),
                }
            }
            Some(m) => json!({"jsonrpc": "2.0", "id": id, "error": {
                "code": -32601, "message": format!("Unknown command '{m}'")}}),
            None => json!({"jsonrpc": "2.0", "id": id, "error": {
                "code": -32600, "message": "Invalid request: no method"}}),
        };
        writer.write_all(&frame(&reply))?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Driver: plugin process.
// ---------------------------------------------------------------------------

/// Kills a process if not disarmed (dropped) before its deadline, so that a
/// stuck plugin ends the benchmark with an error instead of hanging it.
struct Watchdog {
    cancel: Arc<AtomicBool>,
}

impl Watchdog {
    fn arm(pid: u32, after: Duration, what: String) -> Self {
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

struct MsgReader {
    inner: BufReader<ChildStdout>,
    buf: Vec<u8>,
    /// The last few `log` notifications, shown when something fails.
    recent_logs: VecDeque<String>,
}

impl MsgReader {
    /// Next message from the plugin, `None` at end of stream.
    fn next(&mut self) -> Result<Option<Value>> {
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
    fn next_reply(&mut self) -> Result<Value> {
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
fn hook_reply_seq(v: &Value) -> Result<u64> {
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

struct PluginProc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    reader: MsgReader,
    stderr_path: PathBuf,
    // Keeps the lightning-dir alive for the life of the plugin.
    _dir: tempfile::TempDir,
}

impl PluginProc {
    fn spawn(name: &str, mut cmd: Command, fixtures: Fixtures) -> Result<Self> {
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

    fn dir(&self) -> &Path {
        self._dir.path()
    }

    fn stdin(&mut self) -> &mut ChildStdin {
        self.stdin.as_mut().expect("stdin open while measuring")
    }

    fn send(&mut self, v: &Value) -> Result<()> {
        self.stdin().write_all(&frame(v))?;
        Ok(())
    }

    fn handshake(&mut self) -> Result<()> {
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

    fn stderr_tail(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = File::open(&self.stderr_path) {
            let _ = f.read_to_string(&mut s);
        }
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }

    /// Ends the plugin and adds its last words (stderr, `log`s) to `e`.
    fn with_stderr(&mut self, e: anyhow::Error) -> anyhow::Error {
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

    fn watchdog(&self, what: &str) -> Watchdog {
        Watchdog::arm(self.child.id(), PHASE_TIMEOUT, format!("{} {what}", self.name))
    }

    /// Closes stdin (as lightningd does at shutdown) and waits for the exit.
    fn shutdown(mut self) {
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

// ---------------------------------------------------------------------------
// Driver: measurements.
// ---------------------------------------------------------------------------

/// N sequential round trips, one in flight; returns nanoseconds each.
fn measure_latency(p: &mut PluginProc, gen: &mut HtlcGen, n: usize) -> Result<Vec<u64>> {
    let mut samples = Vec::with_capacity(n);
    let mut req = Vec::with_capacity(4096);
    for _ in 0..n {
        let seq = gen.next(&mut req);
        let t0 = Instant::now();
        p.stdin().write_all(&req)?;
        let reply = p.reader.next_reply()?;
        let elapsed = t0.elapsed();
        let got = hook_reply_seq(&reply)?;
        if got != seq {
            bail!("reply for #{got} while waiting for #{seq}");
        }
        samples.push(elapsed.as_nanos() as u64);
    }
    Ok(samples)
}

/// N hooks with WINDOW in flight: a writer thread keeps the window full, the
/// calling thread reads the answers (in any order). Returns the time taken.
fn measure_throughput(p: &mut PluginProc, gen: &mut HtlcGen, n: usize) -> Result<Duration> {
    let first = gen.seq + 1;
    let pid = p.child.id();
    let stdin = p.stdin.as_mut().expect("stdin open while measuring");
    let reader = &mut p.reader;
    let (credit_tx, credit_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let t0 = Instant::now();
        let writer = s.spawn(move || -> Result<()> {
            let mut credits = WINDOW;
            let mut req = Vec::with_capacity(4096);
            for _ in 0..n {
                while credits == 0 {
                    credit_rx.recv().map_err(|_| anyhow!("reader stopped"))?;
                    credits += 1;
                    while credit_rx.try_recv().is_ok() {
                        credits += 1;
                    }
                }
                credits -= 1;
                gen.next(&mut req);
                stdin.write_all(&req)?;
            }
            Ok(())
        });
        let mut read_all = || -> Result<Duration> {
            let mut seen = vec![false; n];
            for _ in 0..n {
                let seq = hook_reply_seq(&reader.next_reply()?)?;
                let idx = seq
                    .checked_sub(first)
                    .map(|i| i as usize)
                    .filter(|&i| i < n)
                    .ok_or_else(|| anyhow!("reply for unknown hook #{seq}"))?;
                if std::mem::replace(&mut seen[idx], true) {
                    bail!("duplicate reply for hook #{seq}");
                }
                // The writer may already be done: a closed channel is fine.
                let _ = credit_tx.send(());
            }
            Ok(t0.elapsed())
        };
        let read_res = read_all();
        if read_res.is_err() {
            // Unblock a writer stuck on a full pipe.
            // SAFETY: plain kill(2) on our own, not yet reaped, child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        drop(credit_tx);
        let write_res = writer.join().expect("writer thread panicked");
        let elapsed = read_res?;
        write_res?;
        Ok(elapsed)
    })
}

struct ConcStats {
    calls: u64,
    errors: u64,
    first_error: Option<Value>,
    total_call_time: Duration,
}

struct ConcIo<'a> {
    stdin: &'a mut ChildStdin,
    stop: bool,
    in_flight: bool,
}

/// Like [`measure_latency`], while a second thread keeps one call of
/// `method` in flight on the plugin's stdin at all times.
fn measure_latency_concurrent(
    p: &mut PluginProc,
    gen: &mut HtlcGen,
    warmup: usize,
    n: usize,
    method: &str,
    params: &Value,
) -> Result<(Vec<u64>, ConcStats)> {
    let io = Mutex::new(ConcIo {
        stdin: p.stdin.as_mut().expect("stdin open while measuring"),
        stop: false,
        in_flight: false,
    });
    let reader = &mut p.reader;
    let (done_tx, done_rx) = mpsc::channel::<Value>();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    std::thread::scope(|s| {
        let io = &io;
        let caller = s.spawn(move || -> Result<ConcStats> {
            let mut stats = ConcStats {
                calls: 0,
                errors: 0,
                first_error: None,
                total_call_time: Duration::ZERO,
            };
            let mut k = 0u64;
            loop {
                let t0;
                {
                    let mut g = io.lock().expect("io lock");
                    if g.stop {
                        break;
                    }
                    k += 1;
                    let call = json!({"jsonrpc": "2.0", "id": format!("{CONC_ID_PREFIX}{k}"),
                                      "method": method, "params": params});
                    g.in_flight = true;
                    t0 = Instant::now();
                    g.stdin.write_all(&frame(&call))?;
                }
                if k == 1 {
                    let _ = started_tx.send(());
                }
                let Ok(reply) = done_rx.recv() else { break };
                stats.total_call_time += t0.elapsed();
                stats.calls += 1;
                if reply.get("error").is_some() {
                    stats.errors += 1;
                    if stats.first_error.is_none() {
                        stats.first_error = Some(reply["error"].clone());
                    }
                }
            }
            Ok(stats)
        });

        let mut run = || -> Result<Vec<u64>> {
            started_rx
                .recv()
                .map_err(|_| anyhow!("concurrent caller did not start"))?;
            let mut samples = Vec::with_capacity(n);
            let mut req = Vec::with_capacity(4096);
            for i in 0..warmup + n {
                let seq = gen.next(&mut req);
                let t0 = Instant::now();
                io.lock().expect("io lock").stdin.write_all(&req)?;
                loop {
                    let reply = reader.next_reply()?;
                    let is_conc = reply
                        .get("id")
                        .and_then(Value::as_str)
                        .is_some_and(|id| id.starts_with(CONC_ID_PREFIX));
                    if is_conc {
                        io.lock().expect("io lock").in_flight = false;
                        let _ = done_tx.send(reply);
                        continue;
                    }
                    let elapsed = t0.elapsed();
                    let got = hook_reply_seq(&reply)?;
                    if got != seq {
                        bail!("reply for #{got} while waiting for #{seq}");
                    }
                    if i >= warmup {
                        samples.push(elapsed.as_nanos() as u64);
                    }
                    break;
                }
            }
            // Stop the caller, and drain its last call.
            let pending = {
                let mut g = io.lock().expect("io lock");
                g.stop = true;
                g.in_flight
            };
            if pending {
                loop {
                    let reply = reader.next_reply()?;
                    let is_conc = reply
                        .get("id")
                        .and_then(Value::as_str)
                        .is_some_and(|id| id.starts_with(CONC_ID_PREFIX));
                    if is_conc {
                        let _ = done_tx.send(reply);
                        break;
                    }
                }
            }
            Ok(samples)
        };
        let res = run();
        drop(done_tx);
        if res.is_err() {
            io.lock().expect("io lock").stop = true;
        }
        let stats = caller.join().expect("caller thread panicked");
        let samples = res?;
        Ok((samples, stats?))
    })
}

// ---------------------------------------------------------------------------
// Driver: hold invoices (`--hodl`).
// ---------------------------------------------------------------------------

const HODL_INVOICES: usize = 100;
const HODL_PARTS: usize = 10;
const HODL_HTLCS: usize = HODL_INVOICES * HODL_PARTS;
const HODL_PART_MSAT: u64 = 1_000_000;
const HODL_TOTAL_MSAT: u64 = HODL_PART_MSAT * HODL_PARTS as u64;
const HODL_CLTV_RELATIVE: u64 = 200;
/// N of the pass-through figures that follow the hold-invoice run.
const HODL_DEFAULT_N: usize = 20_000;
/// Goals: first HTLC to last resolve, and the plugin's peak RSS.
const HODL_GOAL_WALL: Duration = Duration::from_secs(1);
const HODL_GOAL_RSS_BYTES: u64 = 50_000_000;
/// Deadline of each hold-invoice phase.
const HODL_TIMEOUT: Duration = Duration::from_secs(120);
/// fsyncs timed on the store's filesystem, for reference.
const FSYNC_PROBES: usize = 50;
const INVOICE_ID_PREFIX: &str = "cli:hodl-invoice#";
const LOOKUP_ID_PREFIX: &str = "cli:hodl-lookup#";
const SETTLE_ID_PREFIX: &str = "cli:hodl-settle#";
const STATUS_ID_PREFIX: &str = "cli:ballast-status#";

/// One invoice as `hodl-invoice` returned it.
struct HodlInv {
    hash: [u8; 32],
    hash_hex: String,
    secret: [u8; 32],
    secret_hex: String,
}

/// Resident set of a process, in KiB, and its thread count (`/proc/<pid>/status`).
#[derive(Clone, Copy)]
struct Rss {
    rss_kib: u64,
    hwm_kib: u64,
    /// Heap, stacks and other private memory; the rest of `rss_kib` is file-backed (the
    /// binary's pages) or shared.
    anon_kib: u64,
    threads: u64,
}

fn proc_rss(pid: u32) -> Result<Rss> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        s.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
            .ok_or_else(|| anyhow!("no {name} in /proc/{pid}/status"))
    };
    Ok(Rss {
        rss_kib: field("VmRSS:")?,
        hwm_kib: field("VmHWM:")?,
        anon_kib: field("RssAnon:")?,
        threads: field("Threads:")?,
    })
}

/// KiB to MB (10^6 bytes).
fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

struct HodlFigures {
    pid: u32,
    store_path: String,
    fs_type: String,
    /// One 4 KiB write + fsync on the store's filesystem (µs).
    fsync: Lat,
    /// First `hodl-invoice` sent -> last answer.
    create: Duration,
    /// First HTLC sent -> all 1,000 written into the plugin's stdin.
    hooks_written: Duration,
    /// First HTLC sent -> all 100 invoices ACCEPTED.
    hold: Duration,
    /// First `hodl-settle` sent -> last `hodl-settle` answer.
    settle_answers: Duration,
    /// First `hodl-settle` sent -> last `resolve`.
    settle: Duration,
    /// First HTLC sent -> last `resolve`.
    total: Duration,
    rss_start: Rss,
    rss_invoices: Rss,
    rss_held: Rss,
    rss_end: Rss,
}

impl HodlFigures {
    fn pass_time(&self) -> bool {
        self.total < HODL_GOAL_WALL
    }

    fn pass_rss(&self) -> bool {
        self.rss_end.hwm_kib * 1024 < HODL_GOAL_RSS_BYTES
    }
}

fn cli_call(method: &str, n: usize, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": format!("cli:{method}#{n}"), "method": method, "params": params})
}

/// The `N` of a reply whose id is `<prefix>N`.
fn reply_num(v: &Value, prefix: &str) -> Option<usize> {
    v.get("id")?.as_str()?.strip_prefix(prefix)?.parse().ok()
}

fn rpc_result(v: &Value) -> Result<&Value> {
    v.get("result")
        .ok_or_else(|| anyhow!("call {} failed: {v}", v.get("id").unwrap_or(&Value::Null)))
}

fn hex32(v: &Value, field: &str) -> Result<([u8; 32], String)> {
    let s = v
        .get(field)
        .and_then(Value::as_str)
        .ok_or_else(|| anyhow!("no '{field}' in {v}"))?;
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).with_context(|| format!("'{field}' is not 32 bytes of hex: {s:?}"))?;
    Ok((out, s.to_string()))
}

/// Final-hop payload: `amt_to_forward` (2), `outgoing_cltv_value` (4) and `payment_data`
/// (8: payment secret and total amount).
fn final_hop_payload(amount_msat: u64, cltv: u64, secret: &[u8; 32], total_msat: u64) -> Vec<u8> {
    let mut payment_data = secret.to_vec();
    payment_data.extend_from_slice(&truncated(total_msat));
    let mut tlv = Vec::new();
    for (typ, value) in [
        (2u8, truncated(amount_msat)),
        (4u8, truncated(cltv)),
        (8u8, payment_data),
    ] {
        tlv.push(typ);
        tlv.push(value.len() as u8);
        tlv.extend_from_slice(&value);
    }
    let mut out = vec![tlv.len() as u8]; // BigSize length, < 0xfd here.
    out.extend_from_slice(&tlv);
    out
}

/// An `htlc_accepted` request for one part of a payment to `inv`, as lightningd sends it
/// when this node is the final hop: the onion carries `payment_secret` and `total_msat`.
fn hodl_hook(
    seq: u64,
    inv: &HodlInv,
    inv_idx: usize,
    part: usize,
    rng: &mut XorShift,
    onion: &str,
) -> Vec<u8> {
    let cltv_expiry = BLOCKHEIGHT + HODL_CLTV_RELATIVE;
    let payload = hex::encode(final_hop_payload(
        HODL_PART_MSAT,
        cltv_expiry,
        &inv.secret,
        HODL_TOTAL_MSAT,
    ));
    let shared_secret = rng.hex32();
    let mut out = Vec::with_capacity(4096);
    write!(
        out,
        concat!(
            r#"{{"jsonrpc":"2.0","id":"{prefix}{seq}","method":"htlc_accepted","params":{{"#,
            r#""peer_id":"{peer}","#,
            r#""onion":{{"payload":"{payload}","type":"tlv","#,
            r#""forward_msat":{amt},"outgoing_cltv_value":{cltv},"next_onion":"{onion}","#,
            r#""shared_secret":"{shared}","payment_secret":"{secret}","total_msat":{total}}},"#,
            r#""htlc":{{"short_channel_id":"{block}x{tx}x0","id":{seq},"amount_msat":{amt},"#,
            r#""cltv_expiry":{cltv},"cltv_expiry_relative":{rel},"payment_hash":"{hash}"}}}}}}"#,
            "\n\n"
        ),
        prefix = HOOK_ID_PREFIX,
        seq = seq,
        peer = PEER_ID,
        payload = payload,
        amt = HODL_PART_MSAT,
        cltv = cltv_expiry,
        onion = onion,
        shared = std::str::from_utf8(&shared_secret).expect("hex is ASCII"),
        secret = inv.secret_hex,
        total = HODL_TOTAL_MSAT,
        // A distinct incoming channel per part, a distinct id per HTLC.
        block = 110 + part,
        tx = 1 + inv_idx,
        rel = HODL_CLTV_RELATIVE,
        hash = inv.hash_hex,
    )
    .expect("writing to a Vec cannot fail");
    out
}

/// Filesystem type of `dir` (`stat -f`), for the report.
fn fs_type(dir: &Path) -> String {
    Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "?".to_string())
}

/// The cost of one small durable write on `dir`'s filesystem: 4 KiB appended, then fsync.
fn fsync_probe(dir: &Path) -> Result<Lat> {
    let path = dir.join("hotpath-fsync-probe");
    let mut f = File::create(&path).with_context(|| format!("creating {}", path.display()))?;
    let block = [0x5a_u8; 4096];
    let mut ns = Vec::with_capacity(FSYNC_PROBES);
    for _ in 0..FSYNC_PROBES {
        let t0 = Instant::now();
        f.write_all(&block)?;
        f.sync_all()?;
        ns.push(t0.elapsed().as_nanos() as u64);
    }
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(lat_stats(ns))
}

/// Runs the hold-invoice figures on a new ballast; returns them and the still running
/// ballast (all its HTLCs answered), for the pass-through figures.
fn run_hodl(cfg: &Config) -> Result<(HodlFigures, PluginProc)> {
    eprintln!("hotpath: hodl: starting ballast ...");
    let mut p = PluginProc::spawn("ballast", plugin_command("ballast", cfg)?, cfg.fixtures.clone())?;
    match hodl_phases(&mut p) {
        Ok(f) => Ok((f, p)),
        Err(e) => Err(p.with_stderr(e)),
    }
}

fn hodl_phases(p: &mut PluginProc) -> Result<HodlFigures> {
    let pid = p.child.id();
    let fs_type = fs_type(p.dir());
    let fsync = fsync_probe(p.dir())?;
    let rss_start = proc_rss(pid)?;

    // 1. 100 invoices, ballast making each preimage; all calls in flight at once.
    eprintln!("hotpath: hodl: {HODL_INVOICES} x hodl-invoice ...");
    let wd = Watchdog::arm(pid, HODL_TIMEOUT, "ballast hodl-invoice".into());
    let t0 = Instant::now();
    for i in 0..HODL_INVOICES {
        p.send(&cli_call(
            "hodl-invoice",
            i,
            json!({"amount_msat": HODL_TOTAL_MSAT}),
        ))?;
    }
    let mut slots: Vec<Option<HodlInv>> = (0..HODL_INVOICES).map(|_| None).collect();
    for _ in 0..HODL_INVOICES {
        let v = p.reader.next_reply()?;
        let i = reply_num(&v, INVOICE_ID_PREFIX)
            .filter(|&i| i < HODL_INVOICES)
            .ok_or_else(|| anyhow!("unexpected reply while creating invoices: {v}"))?;
        let r = rpc_result(&v)?;
        let (hash, hash_hex) = hex32(r, "payment_hash")?;
        let (secret, secret_hex) = hex32(r, "payment_secret")?;
        let (preimage, _) = hex32(r, "preimage")?;
        if <[u8; 32]>::from(Sha256::digest(preimage)) != hash {
            bail!("hodl-invoice #{i}: the preimage does not hash to the payment_hash: {r}");
        }
        if r.get("state").and_then(Value::as_str) != Some("OPEN") {
            bail!("hodl-invoice #{i}: not OPEN: {r}");
        }
        let inv = HodlInv {
            hash,
            hash_hex,
            secret,
            secret_hex,
        };
        if slots[i].replace(inv).is_some() {
            bail!("two answers to hodl-invoice #{i}");
        }
    }
    let create = t0.elapsed();
    drop(wd);
    let invs: Vec<HodlInv> = slots.into_iter().map(|s| s.expect("all 100 answered")).collect();
    let rss_invoices = proc_rss(pid)?;

    // 2. 1,000 HTLCs, parts interleaved across invoices so that all 100 sets are open at
    // once; a `hodl-lookup wait_for_state=ACCEPTED` per invoice tells when all are held.
    eprintln!("hotpath: hodl: {HODL_HTLCS} x htlc_accepted, held ...");
    let mut rng = XorShift(0x40d1_5eed_u64.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut onion = vec![0u8; 1366];
    rng.fill(&mut onion);
    onion[0] = 0;
    onion[1] = 0x02;
    let onion = hex::encode(onion);
    let mut hooks = Vec::with_capacity(HODL_HTLCS);
    let mut owner = Vec::with_capacity(HODL_HTLCS); // hook #n -> invoice owner[n - 1]
    for part in 0..HODL_PARTS {
        for (i, inv) in invs.iter().enumerate() {
            let seq = hooks.len() as u64 + 1;
            hooks.push(hodl_hook(seq, inv, i, part, &mut rng, &onion));
            owner.push(i);
        }
    }
    for (i, inv) in invs.iter().enumerate() {
        p.send(&cli_call(
            "hodl-lookup",
            i,
            json!({"payment_hash": inv.hash_hex, "wait_for_state": "ACCEPTED", "timeout": 60}),
        ))?;
    }
    let wd = Watchdog::arm(pid, HODL_TIMEOUT, "ballast holding HTLCs".into());
    let stdin = p.stdin.as_mut().expect("stdin open while measuring");
    let reader = &mut p.reader;
    let t_h0 = Instant::now();
    let (hooks_written, hold) = std::thread::scope(|s| -> Result<(Duration, Duration)> {
        // A writer thread, since 1,000 hooks (~3.5 KB each) overflow the pipe.
        let writer = s.spawn(move || -> Result<Duration> {
            for h in &hooks {
                stdin.write_all(h)?;
            }
            Ok(t_h0.elapsed())
        });
        let read = (|| -> Result<Duration> {
            let mut accepted = [false; HODL_INVOICES];
            for _ in 0..HODL_INVOICES {
                let v = reader.next_reply()?;
                let i = reply_num(&v, LOOKUP_ID_PREFIX)
                    .filter(|&i| i < HODL_INVOICES)
                    .ok_or_else(|| anyhow!("unexpected reply while holding (an HTLC answered?): {v}"))?;
                let state = rpc_result(&v)?.get("state").and_then(Value::as_str);
                if state != Some("ACCEPTED") {
                    bail!("hodl-lookup #{i}: expected ACCEPTED: {v}");
                }
                if std::mem::replace(&mut accepted[i], true) {
                    bail!("two answers to hodl-lookup #{i}");
                }
            }
            Ok(t_h0.elapsed())
        })();
        if read.is_err() {
            // Unblock a writer stuck on a full pipe.
            // SAFETY: plain kill(2) on our own, not yet reaped, child.
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
        }
        let written = writer.join().expect("writer thread panicked");
        let read = read?;
        Ok((written?, read))
    })?;
    drop(wd);

    // Cross-check: ballast itself counts 1,000 held HTLCs and 100 ACCEPTED invoices.
    p.send(&cli_call("ballast-status", 0, json!({})))?;
    let v = p.reader.next_reply()?;
    if reply_num(&v, STATUS_ID_PREFIX) != Some(0) {
        bail!("unexpected reply to ballast-status: {v}");
    }
    let status = rpc_result(&v)?;
    let held = status.pointer("/hodl/held_htlcs").and_then(Value::as_u64);
    let accepted = status.pointer("/hodl/invoices/ACCEPTED").and_then(Value::as_u64);
    if held != Some(HODL_HTLCS as u64) || accepted != Some(HODL_INVOICES as u64) {
        bail!(
            "ballast-status: expected {HODL_HTLCS} held HTLCs and {HODL_INVOICES} ACCEPTED invoices: {}",
            status["hodl"]
        );
    }
    let store_path = status
        .pointer("/store/path")
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string();
    let rss_held = proc_rss(pid)?;

    // 3. Settle all 100 by payment hash, all calls in flight at once; every hook must be
    // resolved with a preimage of its own payment hash.
    eprintln!("hotpath: hodl: settle-all ...");
    let wd = Watchdog::arm(pid, HODL_TIMEOUT, "ballast settle-all".into());
    let t_s0 = Instant::now();
    for (i, inv) in invs.iter().enumerate() {
        p.send(&cli_call("hodl-settle", i, json!({"payment_hash": inv.hash_hex})))?;
    }
    let mut settled = [false; HODL_INVOICES];
    let mut resolved = vec![false; HODL_HTLCS];
    let (mut n_settled, mut n_resolved) = (0, 0);
    let mut settle_answers = Duration::ZERO;
    while n_settled < HODL_INVOICES || n_resolved < HODL_HTLCS {
        let v = p.reader.next_reply()?;
        if let Some(i) = reply_num(&v, SETTLE_ID_PREFIX).filter(|&i| i < HODL_INVOICES) {
            let state = rpc_result(&v)?.get("state").and_then(Value::as_str);
            if state != Some("SETTLED") {
                bail!("hodl-settle #{i}: expected SETTLED: {v}");
            }
            if std::mem::replace(&mut settled[i], true) {
                bail!("two answers to hodl-settle #{i}");
            }
            n_settled += 1;
            if n_settled == HODL_INVOICES {
                settle_answers = t_s0.elapsed();
            }
        } else if let Some(n) = reply_num(&v, HOOK_ID_PREFIX).filter(|&n| (1..=HODL_HTLCS).contains(&n)) {
            let r = rpc_result(&v)?;
            if r.get("result").and_then(Value::as_str) != Some("resolve") {
                bail!("hook #{n}: expected resolve: {v}");
            }
            let (key, _) = hex32(r, "payment_key")?;
            let inv = &invs[owner[n - 1]];
            if <[u8; 32]>::from(Sha256::digest(key)) != inv.hash {
                bail!("hook #{n}: payment_key does not hash to {}: {v}", inv.hash_hex);
            }
            if std::mem::replace(&mut resolved[n - 1], true) {
                bail!("two answers to hook #{n}");
            }
            n_resolved += 1;
        } else {
            bail!("unexpected reply while settling: {v}");
        }
    }
    let t_end = Instant::now();
    drop(wd);
    let rss_end = proc_rss(pid)?;
    Ok(HodlFigures {
        pid,
        store_path,
        fs_type,
        fsync,
        create,
        hooks_written,
        hold,
        settle_answers,
        settle: t_end - t_s0,
        total: t_end - t_h0,
        rss_start,
        rss_invoices,
        rss_held,
        rss_end,
    })
}

fn print_hodl(f: &HodlFigures) {
    let w = 58;
    println!();
    println!(
        "hodl: {HODL_INVOICES} invoices x {HODL_PARTS} parts of {HODL_PART_MSAT} msat = {HODL_HTLCS} HTLCs \
         held at once, then settle-all (ballast pid {})",
        f.pid
    );
    println!(
        "hodl: store {} on {} (4 KiB write + fsync there: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms)",
        f.store_path,
        f.fs_type,
        f.fsync.p50 / 1000.0,
        f.fsync.p99 / 1000.0,
        f.fsync.max / 1000.0
    );
    let n = HODL_INVOICES as f64;
    println!(
        "hodl: {:<w$} {:>8.1} ms ({:.2} ms/invoice)",
        "create 100 invoices (all in flight)",
        ms(f.create),
        ms(f.create) / n
    );
    println!(
        "hodl: {:<w$} {:>8.1} ms",
        "hold: first HTLC sent -> all 1000 written to stdin",
        ms(f.hooks_written)
    );
    println!(
        "hodl: {:<w$} {:>8.1} ms ({:.2} ms/invoice)",
        "hold: first HTLC sent -> all 100 ACCEPTED",
        ms(f.hold),
        ms(f.hold) / n
    );
    println!(
        "hodl: {:<w$} {:>8.1} ms",
        "settle: first hodl-settle sent -> last hodl-settle answer",
        ms(f.settle_answers)
    );
    println!(
        "hodl: {:<w$} {:>8.1} ms ({:.2} ms/invoice)",
        "settle-all: first hodl-settle sent -> last resolve",
        ms(f.settle),
        ms(f.settle) / n
    );
    println!(
        "hodl: {:<w$} {:>8.1} ms   goal < {} ms: {}",
        "WALL TIME: first HTLC sent -> last resolve received",
        ms(f.total),
        HODL_GOAL_WALL.as_millis(),
        if f.pass_time() { "PASS" } else { "FAIL" }
    );
    println!("hodl: RSS MB (of which anonymous MB; threads):");
    for (what, r) in [
        ("at start", &f.rss_start),
        ("after 100 invoices", &f.rss_invoices),
        ("holding 1000 HTLCs", &f.rss_held),
        ("after settle-all", &f.rss_end),
    ] {
        println!(
            "hodl:   {what:<20} {:>6.1} ({:.1}; {})",
            mb(r.rss_kib),
            mb(r.anon_kib),
            r.threads
        );
    }
    println!(
        "hodl: {:<w$} {:>8.1} MB   goal < {} MB: {}",
        "PEAK RSS (VmHWM) of the plugin",
        mb(f.rss_end.hwm_kib),
        HODL_GOAL_RSS_BYTES / 1_000_000,
        if f.pass_rss() { "PASS" } else { "FAIL" }
    );
}

fn hodl_verdict_line(f: &HodlFigures) -> String {
    format!(
        "HODL VERDICT: {} (1000 HTLCs / 100 invoices held then settled in {:.1} ms, goal < {} ms; \
         peak RSS {:.1} MB, goal < {} MB)",
        if f.pass_time() && f.pass_rss() {
            "PASS"
        } else {
            "FAIL"
        },
        ms(f.total),
        HODL_GOAL_WALL.as_millis(),
        mb(f.rss_end.hwm_kib),
        HODL_GOAL_RSS_BYTES / 1_000_000
    )
}

fn hodl_report(f: &HodlFigures) -> Value {
    let rss = |r: &Rss| {
        json!({"rss_kib": r.rss_kib, "hwm_kib": r.hwm_kib, "anon_kib": r.anon_kib,
               "threads": r.threads})
    };
    json!({
        "invoices": HODL_INVOICES,
        "parts": HODL_PARTS,
        "htlcs": HODL_HTLCS,
        "store_path": f.store_path,
        "fs_type": f.fs_type,
        "fsync_4k_us": lat_json(&f.fsync),
        "create_ms": ms(f.create),
        "hooks_written_ms": ms(f.hooks_written),
        "hold_ms": ms(f.hold),
        "settle_answers_ms": ms(f.settle_answers),
        "settle_ms": ms(f.settle),
        "total_ms": ms(f.total),
        "rss": {"start": rss(&f.rss_start), "invoices": rss(&f.rss_invoices),
                "held": rss(&f.rss_held), "end": rss(&f.rss_end)},
        "peak_rss_mb": mb(f.rss_end.hwm_kib),
        "goal_total_ms": HODL_GOAL_WALL.as_millis() as u64,
        "goal_rss_mb": HODL_GOAL_RSS_BYTES / 1_000_000,
        "pass_time": f.pass_time(),
        "pass_rss": f.pass_rss(),
    })
}

// ---------------------------------------------------------------------------
// Driver: figures and report.
// ---------------------------------------------------------------------------

#[derive(Clone, Copy)]
struct Lat {
    p50: f64,
    p99: f64,
    p999: f64,
    mean: f64,
    max: f64,
}

/// Nearest-rank percentiles, in microseconds.
fn lat_stats(mut ns: Vec<u64>) -> Lat {
    ns.sort_unstable();
    let pct = |q: f64| -> f64 {
        let rank = ((q * ns.len() as f64).ceil() as usize).clamp(1, ns.len());
        ns[rank - 1] as f64 / 1000.0
    };
    Lat {
        p50: pct(0.50),
        p99: pct(0.99),
        p999: pct(0.999),
        mean: ns.iter().sum::<u64>() as f64 / ns.len() as f64 / 1000.0,
        max: *ns.last().unwrap_or(&0) as f64 / 1000.0,
    }
}

struct Figures {
    lat: Lat,
    hooks_per_s: f64,
}

struct Concurrent {
    method: String,
    lat: Lat,
    stats: ConcStats,
    /// Floor latency on the same CPUs, measured right before.
    floor_ref: Option<Lat>,
}

fn plugin_command(name: &str, cfg: &Config) -> Result<Command> {
    match name {
        "ballast" => {
            if !cfg.ballast_bin.is_file() {
                bail!(
                    "ballast binary not found at {}: run `cargo build --release` first \
                     (or set BALLAST_BIN)",
                    cfg.ballast_bin.display()
                );
            }
            Ok(Command::new(&cfg.ballast_bin))
        }
        role => {
            let mut cmd = Command::new(std::env::current_exe()?);
            cmd.env(ROLE_ENV, role);
            Ok(cmd)
        }
    }
}

/// One plugin under test, alive for the whole run.
struct Slot {
    name: String,
    proc: Option<PluginProc>,
    gen: HtlcGen,
    lat_ns: Vec<u64>,
    tput_n: usize,
    tput_time: Duration,
    error: Option<anyhow::Error>,
}

impl Slot {
    /// Runs `f` on the plugin if it is still alive; on error, ends it and keeps the
    /// error (with the plugin's last words).
    fn run(&mut self, what: &str, f: impl FnOnce(&mut PluginProc, &mut HtlcGen) -> Result<()>) {
        let Some(p) = self.proc.as_mut() else { return };
        let res = {
            let _wd = p.watchdog(what);
            f(p, &mut self.gen)
        };
        if let Err(e) = res {
            let e = p.with_stderr(e.context(format!("during {what}")));
            eprintln!("hotpath: {} FAILED: {e:#}", self.name);
            self.error = Some(e);
            self.proc = None;
        }
    }
}

/// Measures every plugin in the same rounds: all plugins stay alive and take turns
/// batch by batch (in a rotating order), so a burst of other load on the machine
/// lands on all of them rather than on whichever was being measured.
/// The concurrent section (same CPUs as the rest of the run), with a floor latency
/// reference taken right before it.
fn run_concurrent(cfg: &Config, slots: &mut [Slot], method: &str, params: &Value) -> Result<Concurrent> {
    let mut floor_ref = None;
    if let Some(floor) = slots.iter_mut().find(|s| s.name == "floor") {
        eprintln!("hotpath: floor reference ...");
        let mut out = Vec::new();
        floor.run("floor reference latency", |p, g| {
            measure_latency(p, g, cfg.warmup)?;
            out = measure_latency(p, g, cfg.n)?;
            Ok(())
        });
        if !out.is_empty() {
            floor_ref = Some(lat_stats(out));
        }
    }
    eprintln!("hotpath: concurrent {method} ...");
    let slot = slots
        .iter_mut()
        .find(|s| s.name == "ballast")
        .expect("checked by the caller");
    let p = slot.proc.as_mut().expect("checked by the caller");
    let res = {
        let _wd = p.watchdog("concurrent latency");
        measure_latency_concurrent(p, &mut slot.gen, cfg.warmup, cfg.n, method, params)
    };
    match res {
        Ok((samples, stats)) => Ok(Concurrent {
            method: method.to_string(),
            lat: lat_stats(samples),
            stats,
            floor_ref,
        }),
        Err(e) => {
            let e = p.with_stderr(e);
            slot.proc = None;
            Err(e)
        }
    }
}

/// Per-plugin figures (in `HOTPATH_ONLY` order), and the concurrent section if run.
type RunResults = (Vec<(String, Result<Figures>)>, Option<Result<Concurrent>>);

/// `ballast`: an already running ballast to measure (the one of the hold-invoice run),
/// whose hook ids are numbered from `ballast_seq` on; else one is started.
fn run_all(cfg: &Config, mut ballast: Option<(PluginProc, u64)>) -> RunResults {
    let mut slots: Vec<Slot> = cfg
        .plugins
        .iter()
        .map(|name| {
            let mut gen = HtlcGen::new(0x5eed ^ name.len() as u64);
            let reused = if name == "ballast" { ballast.take() } else { None };
            let (proc, error) = match reused {
                Some((p, seq)) => {
                    eprintln!("hotpath: {name}: the process of the hold-invoice run");
                    gen.seq = seq;
                    (Some(p), None)
                }
                None => {
                    eprintln!("hotpath: starting {name} ...");
                    match plugin_command(name, cfg)
                        .and_then(|cmd| PluginProc::spawn(name, cmd, cfg.fixtures.clone()))
                    {
                        Ok(p) => (Some(p), None),
                        Err(e) => {
                            eprintln!("hotpath: {name} FAILED: {e:#}");
                            (None, Some(e))
                        }
                    }
                }
            };
            Slot {
                name: name.clone(),
                proc,
                gen,
                lat_ns: Vec::with_capacity(cfg.n),
                tput_n: 0,
                tput_time: Duration::ZERO,
                error,
            }
        })
        .collect();
    if let Some((p, _)) = ballast {
        p.shutdown();
    }

    eprintln!("hotpath: latency ...");
    for slot in slots.iter_mut() {
        slot.run("latency warm-up", |p, g| {
            measure_latency(p, g, cfg.warmup).map(drop)
        });
    }
    let batch = LATENCY_BATCH.min(cfg.n);
    let mut done = 0;
    let mut round = 0;
    while done < cfg.n {
        let k = batch.min(cfg.n - done);
        let len = slots.len();
        for i in 0..len {
            let slot = &mut slots[(i + round) % len];
            let mut out = Vec::new();
            slot.run("latency", |p, g| {
                out = measure_latency(p, g, k)?;
                Ok(())
            });
            slot.lat_ns.extend(out);
        }
        done += k;
        round += 1;
    }

    eprintln!("hotpath: throughput ...");
    for slot in slots.iter_mut() {
        if cfg.warmup > 0 {
            slot.run("throughput warm-up", |p, g| {
                measure_throughput(p, g, cfg.warmup).map(drop)
            });
        }
    }
    let batch = THROUGHPUT_BATCH.min(cfg.n);
    let mut done = 0;
    let mut round = 0;
    while done < cfg.n {
        let k = batch.min(cfg.n - done);
        let len = slots.len();
        for i in 0..len {
            let slot = &mut slots[(i + round) % len];
            let mut took = Duration::ZERO;
            slot.run("throughput", |p, g| {
                took = measure_throughput(p, g, k)?;
                Ok(())
            });
            slot.tput_n += k;
            slot.tput_time += took;
        }
        done += k;
        round += 1;
    }

    let mut concurrent = None;
    if let Some((method, params)) = &cfg.concurrent {
        if slots.iter().any(|s| s.name == "ballast" && s.proc.is_some()) {
            concurrent = Some(run_concurrent(cfg, &mut slots, method, params));
        }
    }

    let results = slots
        .into_iter()
        .map(|mut slot| {
            if let Some(p) = slot.proc.take() {
                p.shutdown();
            }
            let res = match slot.error {
                Some(e) => Err(e),
                None => Ok(Figures {
                    lat: lat_stats(slot.lat_ns),
                    hooks_per_s: slot.tput_n as f64 / slot.tput_time.as_secs_f64(),
                }),
            };
            (slot.name, res)
        })
        .collect();
    (results, concurrent)
}

fn lat_json(l: &Lat) -> Value {
    json!({"p50_us": l.p50, "p99_us": l.p99, "p999_us": l.p999,
           "mean_us": l.mean, "max_us": l.max})
}

fn driver_main() -> Result<i32> {
    let Some(cfg) = parse_config()? else {
        return Ok(0);
    };
    let mut exit_code = 0;
    println!(
        "hotpath: htlc_accepted round trip over stdio pipes; latency: N={} sequential, \
         throughput: N={} with {WINDOW} in flight; warm-up {} each",
        cfg.n, cfg.n, cfg.warmup
    );
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let loadavg = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    println!("hotpath: {cpus} CPUs, load average {loadavg} (other load skews these figures)");
    match &cfg.pin {
        Some(set) => {
            pin_to(set)?;
            println!(
                "hotpath: driver and plugins pinned to CPU {set:?}, so that figures measure the \
                 plugins rather than cross-CPU wake-ups (HOTPATH_CPUS=all: no pinning)"
            );
        }
        None => println!("hotpath: not pinned (HOTPATH_CPUS=all): the scheduler places the processes"),
    }
    if cfg.plugins.iter().any(|p| p == "ballast") {
        println!("hotpath: ballast = {}", cfg.ballast_bin.display());
        if !cfg.ballast_bin.is_file() {
            println!(
                "hotpath: WARNING: {} does not exist: run `cargo build --release` first \
                 (or set BALLAST_BIN); measuring the others, then exiting non-zero",
                cfg.ballast_bin.display()
            );
        }
    }

    let mut hodl_json = Value::Null;
    let mut hodl_verdict = None;
    let mut reuse = None;
    if cfg.hodl {
        match run_hodl(&cfg) {
            Ok((f, p)) => {
                print_hodl(&f);
                let pass = f.pass_time() && f.pass_rss();
                if !pass && cfg.enforce {
                    exit_code = 1;
                }
                hodl_json = hodl_report(&f);
                hodl_verdict = Some(hodl_verdict_line(&f));
                reuse = Some((p, HODL_HTLCS as u64));
            }
            Err(e) => {
                println!("\nhodl: FAILED: {e:#}");
                hodl_verdict = Some("HODL VERDICT: FAIL (the run did not complete)".to_string());
                hodl_json = json!({"error": format!("{e:#}")});
                exit_code = 1;
            }
        }
        println!();
        println!(
            "hotpath: pass-through again: floor vs ballast (N={}), with ballast's hold-invoice \
             state loaded",
            cfg.n
        );
    }

    let (results, concurrent) = run_all(&cfg, reuse);
    if results.iter().any(|(_, r)| r.is_err()) {
        exit_code = 1;
    }
    let get = |n: &str| -> Option<&Figures> {
        results
            .iter()
            .find(|(name, _)| name == n)
            .and_then(|(_, r)| r.as_ref().ok())
    };

    println!();
    println!(
        "{:<8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "plugin", "p50 µs", "p99 µs", "p999 µs", "mean µs", "max µs", "hooks/s"
    );
    for (name, r) in &results {
        match r {
            Ok(f) => println!(
                "{:<8} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>10.1} {:>12.0}",
                name, f.lat.p50, f.lat.p99, f.lat.p999, f.lat.mean, f.lat.max, f.hooks_per_s
            ),
            Err(e) => println!(
                "{name:<8} FAILED: {}",
                format!("{e:#}").lines().next().unwrap_or("")
            ),
        }
    }

    let mut ratios = serde_json::Map::new();
    let floor = get("floor");
    if let Some(floor) = floor.filter(|_| get("ballast").is_some() || get("noop").is_some()) {
        println!();
        println!("{:<14} {:>10} {:>10} {:>12}", "ratio", "p50", "p99", "throughput");
        for name in ["ballast", "noop"] {
            if let Some(f) = get(name) {
                let r = (
                    f.lat.p50 / floor.lat.p50,
                    f.lat.p99 / floor.lat.p99,
                    f.hooks_per_s / floor.hooks_per_s,
                );
                println!(
                    "{:<14} {:>9.2}x {:>9.2}x {:>11.2}x",
                    format!("{name}/floor"),
                    r.0,
                    r.1,
                    r.2
                );
                ratios.insert(
                    format!("{name}/floor"),
                    json!({"p50": r.0, "p99": r.1, "throughput": r.2}),
                );
            }
        }
    }

    println!();
    let verdict = match (floor, get("ballast")) {
        (Some(floor), Some(b)) => {
            let p50 = b.lat.p50 / floor.lat.p50;
            let tput = b.hooks_per_s / floor.hooks_per_s;
            let pass = p50 <= TARGET_P50_RATIO && tput >= TARGET_THROUGHPUT_RATIO;
            println!(
                "VERDICT: {} (ballast p50 {p50:.2}x floor, target <= {TARGET_P50_RATIO}x; \
                 ballast throughput {tput:.2}x floor, target >= {TARGET_THROUGHPUT_RATIO}x)",
                if pass { "PASS" } else { "FAIL" }
            );
            if !pass && cfg.enforce {
                exit_code = 1;
            }
            json!({"pass": pass, "p50_ratio": p50, "throughput_ratio": tput,
                   "target_p50_ratio": TARGET_P50_RATIO,
                   "target_throughput_ratio": TARGET_THROUGHPUT_RATIO})
        }
        _ => {
            println!("VERDICT: UNKNOWN (needs both floor and ballast figures)");
            Value::Null
        }
    };

    let conc_json = match (&cfg.concurrent, concurrent) {
        (None, _) => {
            println!("concurrent: skipped (HOTPATH_CONCURRENT_METHOD unset)");
            Value::Null
        }
        (Some(_), None) => {
            println!("concurrent: skipped (no ballast figures)");
            Value::Null
        }
        (Some((method, _)), Some(Err(e))) => {
            println!("concurrent ({method}): FAILED: {e:#}");
            exit_code = 1;
            json!({"method": method, "error": format!("{e:#}")})
        }
        (Some(_), Some(Ok(c))) => {
            let mean_call_ms = if c.stats.calls > 0 {
                c.stats.total_call_time.as_secs_f64() * 1000.0 / c.stats.calls as f64
            } else {
                0.0
            };
            println!(
                "concurrent ({}): ballast hook p50 {:.2} µs, p99 {:.2} µs, p999 {:.2} µs \
                 while {} calls completed ({} errors, mean {:.3} ms/call)",
                c.method, c.lat.p50, c.lat.p99, c.lat.p999, c.stats.calls, c.stats.errors, mean_call_ms
            );
            if let Some(err) = &c.stats.first_error {
                println!("concurrent: first error from {}: {err}", c.method);
                if c.stats.errors == c.stats.calls {
                    println!(
                        "concurrent: WARNING every call failed, so this measured error replies, \
                         not the real work (method not implemented? RPC data it needs missing: \
                         see HOTPATH_RPC_FIXTURES)"
                    );
                }
            }
            let floor_p99 = c.floor_ref.map(|f| f.p99).or(floor.map(|f| f.lat.p99));
            if let Some(f) = &c.floor_ref {
                println!(
                    "concurrent: floor measured just before: p50 {:.2} µs, p99 {:.2} µs",
                    f.p50, f.p99
                );
            }
            let ratio = floor_p99.map(|f| c.lat.p99 / f);
            if let Some(r) = ratio {
                println!(
                    "CONCURRENT VERDICT: {} (ballast p99 under load {r:.2}x floor p99, \
                     target < {TARGET_CONCURRENT_P99_RATIO}x)",
                    if r < TARGET_CONCURRENT_P99_RATIO {
                        "PASS"
                    } else {
                        "FAIL"
                    }
                );
                if r >= TARGET_CONCURRENT_P99_RATIO && cfg.enforce {
                    exit_code = 1;
                }
            }
            json!({"method": c.method, "latency": lat_json(&c.lat),
                   "calls": c.stats.calls, "errors": c.stats.errors,
                   "first_error": c.stats.first_error, "mean_call_ms": mean_call_ms,
                   "floor_reference": c.floor_ref.as_ref().map(lat_json),
                   "p99_ratio_vs_floor": ratio,
                   "target_p99_ratio": TARGET_CONCURRENT_P99_RATIO})
        }
    };

    let mut plugins = serde_json::Map::new();
    for (name, r) in &results {
        plugins.insert(
            name.clone(),
            match r {
                Ok(f) => json!({"latency": lat_json(&f.lat), "throughput_hooks_per_s": f.hooks_per_s}),
                Err(e) => json!({"error": format!("{e:#}")}),
            },
        );
    }
    let report = json!({
        "bench": "hotpath",
        "unix_time": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "n_latency": cfg.n,
        "n_throughput": cfg.n,
        "warmup": cfg.warmup,
        "window": WINDOW,
        "cpus": cpus,
        "pinned_cpus": cfg.pin,
        "loadavg_at_start": loadavg,
        "ballast_bin": cfg.ballast_bin.to_string_lossy(),
        "plugins": plugins,
        "ratios": ratios,
        "verdict": verdict,
        "concurrent": conc_json,
        "hodl": hodl_json,
    });
    if let Some(line) = hodl_verdict {
        println!("{line}");
    }
    let out = cfg.target_dir.join(if cfg.hodl {
        "hotpath-hodl.json"
    } else {
        "hotpath.json"
    });
    let mut bytes = serde_json::to_vec_pretty(&report)?;
    bytes.push(b'\n');
    match std::fs::write(&out, bytes) {
        Ok(()) => println!("wrote {}", out.display()),
        Err(e) => eprintln!("hotpath: cannot write {}: {e}", out.display()),
    }
    Ok(exit_code)
}
