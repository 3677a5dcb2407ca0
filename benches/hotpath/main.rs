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

#[path = "../common/mod.rs"]
mod common;
mod config;
mod framing;
mod hodl;
mod measure;
mod payloads;
mod plugin;
mod report;
mod roles;
mod rpc;

use common::rng::Rng;
use config::*;
use framing::*;
use hodl::*;
use measure::*;
use payloads::*;
use plugin::*;
use report::*;
use roles::*;
use rpc::*;

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
