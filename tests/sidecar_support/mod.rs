//! Runs the real `ballast-lnd` binary against the fake LND and talks to it over its unix
//! socket, as `ballast-lnd call` and payment apps do. Include with `mod sidecar_support;`
//! (after `mod lnd_fake;`).
#![allow(dead_code)]

use crate::lnd_fake::{pubkey, FakeChannel, FakeLnd};
use ballast::lnd::proto::lnrpc;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const WAIT: Duration = Duration::from_secs(30);

/// Our channels on the fake: to A (mostly ours), B (mostly theirs), C and D (balanced).
pub const CHAN_A: u64 = (700_010u64 << 40) | (1 << 16);
pub const CHAN_B: u64 = (700_020u64 << 40) | (1 << 16);
pub const CHAN_C: u64 = (700_030u64 << 40) | (1 << 16);
pub const CHAN_D: u64 = (700_040u64 << 40) | (1 << 16);
/// Peers of the fake node (ours is `pubkey(0xaa)`), and the ring node E between A and B.
pub const A: u8 = 1;
pub const B: u8 = 2;
pub const C: u8 = 3;
pub const D: u8 = 4;
pub const E: u8 = 5;
pub const CAPACITY_SAT: i64 = 1_000_000;

pub fn scid(chan: u64) -> String {
    format!("{}x{}x{}", chan >> 40, (chan >> 16) & 0xff_ffff, chan & 0xffff)
}

pub fn chan_point(chan: u64) -> String {
    format!("{}:{}", hex::encode(chan.to_be_bytes().repeat(4)), chan & 0xffff)
}

fn policy(base: i64, ppm: i64) -> lnrpc::RoutingPolicy {
    lnrpc::RoutingPolicy {
        time_lock_delta: 40,
        min_htlc: 1_000,
        fee_base_msat: base,
        fee_rate_milli_msat: ppm,
        disabled: false,
        max_htlc_msat: (CAPACITY_SAT as u64) * 1000,
        last_update: 1_700_000_000,
    }
}

fn our_channel(chan: u64, peer: u8, local_sat: i64) -> FakeChannel {
    FakeChannel {
        channel: lnrpc::Channel {
            active: true,
            remote_pubkey: pubkey(peer),
            channel_point: chan_point(chan),
            chan_id: chan,
            capacity: CAPACITY_SAT,
            local_balance: local_sat,
            remote_balance: CAPACITY_SAT - local_sat,
            local_constraints: Some(lnrpc::ChannelConstraints {
                chan_reserve_sat: 10_000,
                ..Default::default()
            }),
            remote_constraints: Some(lnrpc::ChannelConstraints {
                chan_reserve_sat: 10_000,
                ..Default::default()
            }),
            ..Default::default()
        },
        base_fee_msat: 1_000,
        fee_ppm: 250,
        time_lock_delta: 80,
        peer_policy: Some(policy(1_000, 10)),
        no_edge: false,
    }
}

fn edge(
    chan: u64,
    n1: &str,
    n2: &str,
    p1: lnrpc::RoutingPolicy,
    p2: lnrpc::RoutingPolicy,
) -> lnrpc::ChannelEdge {
    lnrpc::ChannelEdge {
        channel_id: chan,
        chan_point: chan_point(chan),
        node1_pub: n1.to_string(),
        node2_pub: n2.to_string(),
        capacity: 2 * CAPACITY_SAT,
        node1_policy: Some(p1),
        node2_policy: Some(p2),
    }
}

/// The fake's network: our four channels, and A - E - B, so a circle out over A and back
/// in over B exists. A is 90 % ours and B 10 %: the plan should move from A to B.
pub fn script_network(fake: &FakeLnd) {
    let me = fake.with_state(|s| s.id.clone());
    fake.with_state(|s| {
        s.block_height = 800_000;
        s.channels = vec![
            our_channel(CHAN_A, A, 900_000),
            our_channel(CHAN_B, B, 100_000),
            our_channel(CHAN_C, C, 500_000),
            our_channel(CHAN_D, D, 500_000),
        ];
        let ours = |chan, peer: u8| edge(chan, &me, &pubkey(peer), policy(1_000, 250), policy(1_000, 10));
        s.edges = vec![
            ours(CHAN_A, A),
            ours(CHAN_B, B),
            ours(CHAN_C, C),
            ours(CHAN_D, D),
            edge(
                (700_100u64 << 40) | (1 << 16),
                &pubkey(A),
                &pubkey(E),
                policy(1_000, 10),
                policy(1_000, 10),
            ),
            edge(
                (700_110u64 << 40) | (1 << 16),
                &pubkey(E),
                &pubkey(B),
                policy(1_000, 10),
                policy(1_000, 10),
            ),
        ];
    });
}

/// A running `ballast-lnd`. Killed when dropped.
pub struct Sidecar {
    child: Option<Child>,
    pub datadir: PathBuf,
    pub socket: PathBuf,
    stderr_path: PathBuf,
    _tmp: Option<tempfile::TempDir>,
}

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ballast-lnd"))
}

/// The flags that point a sidecar at `fake`, with the data directory `datadir`.
pub fn flags(fake: &FakeLnd, datadir: &Path) -> Vec<String> {
    vec![
        format!("--lnddir={}", fake.lnddir().display()),
        format!("--network={}", fake.network),
        format!("--rpcserver={}", fake.addr().expect("fake not started")),
        format!("--datadir={}", datadir.display()),
        "--log-level=debug".into(),
    ]
}

impl Sidecar {
    /// Starts one against `fake` with extra flags, and waits until it answers.
    pub fn start(fake: &FakeLnd, extra: &[&str]) -> Sidecar {
        let tmp = tempfile::tempdir().unwrap();
        let datadir = tmp.path().join("data");
        let mut s = Sidecar::start_in(fake, &datadir, extra);
        s._tmp = Some(tmp);
        s
    }

    /// Starts one with its data in `datadir` (kept by the caller, for restarts).
    pub fn start_in(fake: &FakeLnd, datadir: &Path, extra: &[&str]) -> Sidecar {
        std::fs::create_dir_all(datadir).unwrap();
        let stderr_path = datadir.join(format!("stderr-{}.log", std::process::id()));
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let mut args = flags(fake, datadir);
        args.extend(extra.iter().map(|s| s.to_string()));
        let child = Command::new(binary())
            .args(&args)
            .env("BALLAST_DEVELOPER", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let mut s = Sidecar {
            child: Some(child),
            datadir: datadir.to_path_buf(),
            socket: datadir.join("ballast.sock"),
            stderr_path,
            _tmp: None,
        };
        s.wait_ready();
        s
    }

    fn wait_ready(&mut self) {
        let end = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("ballast-lnd exited ({st}) before it answered:\n{}", self.stderr());
            }
            if self.socket.exists() && self.call("ballast-status", json!({})).is_ok() {
                return;
            }
            assert!(
                Instant::now() < end,
                "ballast-lnd not ready in time:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// One JSON-RPC call; `Err` carries the error object.
    pub fn call(&self, method: &str, params: Value) -> Result<Value, Value> {
        let mut conn = UnixStream::connect(&self.socket).map_err(|e| json!({"connect": e.to_string()}))?;
        conn.set_read_timeout(Some(WAIT)).unwrap();
        let req = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
        conn.write_all(format!("{req}\n").as_bytes()).unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            let n = conn
                .read(&mut chunk)
                .map_err(|e| json!({"read": e.to_string()}))?;
            assert!(n > 0, "connection closed without an answer to {method}");
            buf.extend_from_slice(&chunk[..n]);
            if let Some(Ok(v)) = serde_json::Deserializer::from_slice(&buf)
                .into_iter::<Value>()
                .next()
            {
                assert_eq!(v["jsonrpc"], "2.0", "{v}");
                assert_eq!(v["id"], 7, "{v}");
                return match (v.get("result"), v.get("error")) {
                    (Some(r), None) => Ok(r.clone()),
                    (None, Some(e)) => {
                        assert!(e["code"].is_i64() && e["message"].is_string(), "{v}");
                        Err(e.clone())
                    }
                    _ => panic!("not a JSON-RPC answer: {v}"),
                };
            }
        }
    }

    pub fn ok(&self, method: &str, params: Value) -> Value {
        self.call(method, params.clone())
            .unwrap_or_else(|e| panic!("{method} {params} failed: {e}\n{}", self.stderr()))
    }

    /// Polls `f` until it gives a value.
    pub fn wait_until<T>(&self, what: &str, mut f: impl FnMut(&Sidecar) -> Option<T>) -> T {
        let end = Instant::now() + WAIT;
        loop {
            if let Some(v) = f(self) {
                return v;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, then waits for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("already stopped");
        // SAFETY: kill on our own child's pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let end = Instant::now() + WAIT;
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < end, "ballast-lnd did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs `ballast-lnd` with `args` to its end; returns exit status and stderr.
pub fn run_to_exit(args: &[String]) -> (ExitStatus, String) {
    let out = Command::new(binary())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status, String::from_utf8_lossy(&out.stderr).into_owned())
}
