//! Driver: hold invoices (`--hodl`).

use super::*;

pub(super) const HODL_INVOICES: usize = 100;
pub(super) const HODL_PARTS: usize = 10;
pub(super) const HODL_HTLCS: usize = HODL_INVOICES * HODL_PARTS;
pub(super) const HODL_PART_MSAT: u64 = 1_000_000;
pub(super) const HODL_TOTAL_MSAT: u64 = HODL_PART_MSAT * HODL_PARTS as u64;
pub(super) const HODL_CLTV_RELATIVE: u64 = 200;
/// N of the pass-through figures that follow the hold-invoice run.
pub(super) const HODL_DEFAULT_N: usize = 20_000;
/// Goals: first HTLC to last resolve, and the plugin's peak RSS.
pub(super) const HODL_GOAL_WALL: Duration = Duration::from_secs(1);
pub(super) const HODL_GOAL_RSS_BYTES: u64 = 50_000_000;
/// Deadline of each hold-invoice phase.
pub(super) const HODL_TIMEOUT: Duration = Duration::from_secs(120);
/// fsyncs timed on the store's filesystem, for reference.
pub(super) const FSYNC_PROBES: usize = 50;
pub(super) const INVOICE_ID_PREFIX: &str = "cli:hodl-invoice#";
pub(super) const LOOKUP_ID_PREFIX: &str = "cli:hodl-lookup#";
pub(super) const SETTLE_ID_PREFIX: &str = "cli:hodl-settle#";
pub(super) const STATUS_ID_PREFIX: &str = "cli:ballast-status#";

/// One invoice as `hodl-invoice` returned it.
pub(super) struct HodlInv {
    pub(super) hash: [u8; 32],
    pub(super) hash_hex: String,
    pub(super) secret: [u8; 32],
    pub(super) secret_hex: String,
}

/// Resident set of a process, in KiB, and its thread count (`/proc/<pid>/status`).
#[derive(Clone, Copy)]
pub(super) struct Rss {
    pub(super) rss_kib: u64,
    pub(super) hwm_kib: u64,
    /// Heap, stacks and other private memory; the rest of `rss_kib` is file-backed (the
    /// binary's pages) or shared.
    pub(super) anon_kib: u64,
    pub(super) threads: u64,
}

pub(super) fn proc_rss(pid: u32) -> Result<Rss> {
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
pub(super) fn mb(kib: u64) -> f64 {
    kib as f64 * 1024.0 / 1e6
}

pub(super) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

pub(super) struct HodlFigures {
    pub(super) pid: u32,
    pub(super) store_path: String,
    pub(super) fs_type: String,
    /// One 4 KiB write + fsync on the store's filesystem (µs).
    pub(super) fsync: Lat,
    /// First `hodl-invoice` sent -> last answer.
    pub(super) create: Duration,
    /// First HTLC sent -> all 1,000 written into the plugin's stdin.
    pub(super) hooks_written: Duration,
    /// First HTLC sent -> all 100 invoices ACCEPTED.
    pub(super) hold: Duration,
    /// First `hodl-settle` sent -> last `hodl-settle` answer.
    pub(super) settle_answers: Duration,
    /// First `hodl-settle` sent -> last `resolve`.
    pub(super) settle: Duration,
    /// First HTLC sent -> last `resolve`.
    pub(super) total: Duration,
    pub(super) rss_start: Rss,
    pub(super) rss_invoices: Rss,
    pub(super) rss_held: Rss,
    pub(super) rss_end: Rss,
}

impl HodlFigures {
    pub(super) fn pass_time(&self) -> bool {
        self.total < HODL_GOAL_WALL
    }

    pub(super) fn pass_rss(&self) -> bool {
        self.rss_end.hwm_kib * 1024 < HODL_GOAL_RSS_BYTES
    }
}

pub(super) fn cli_call(method: &str, n: usize, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "id": format!("cli:{method}#{n}"), "method": method, "params": params})
}

/// The `N` of a reply whose id is `<prefix>N`.
pub(super) fn reply_num(v: &Value, prefix: &str) -> Option<usize> {
    v.get("id")?.as_str()?.strip_prefix(prefix)?.parse().ok()
}

pub(super) fn rpc_result(v: &Value) -> Result<&Value> {
    v.get("result")
        .ok_or_else(|| anyhow!("call {} failed: {v}", v.get("id").unwrap_or(&Value::Null)))
}

pub(super) fn hex32(v: &Value, field: &str) -> Result<([u8; 32], String)> {
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
pub(super) fn final_hop_payload(amount_msat: u64, cltv: u64, secret: &[u8; 32], total_msat: u64) -> Vec<u8> {
    let mut payment_data = secret.to_vec();
    payment_data.extend_from_slice(&truncated(total_msat));
    tlv_payload([
        (2u8, truncated(amount_msat)),
        (4u8, truncated(cltv)),
        (8u8, payment_data),
    ])
}

/// An `htlc_accepted` request for one part of a payment to `inv`, as lightningd sends it
/// when this node is the final hop: the onion carries `payment_secret` and `total_msat`.
pub(super) fn hodl_hook(
    seq: u64,
    inv: &HodlInv,
    inv_idx: usize,
    part: usize,
    rng: &mut Rng,
    onion: &str,
) -> Vec<u8> {
    let cltv_expiry = BLOCKHEIGHT + HODL_CLTV_RELATIVE;
    let payload = hex::encode(final_hop_payload(
        HODL_PART_MSAT,
        cltv_expiry,
        &inv.secret,
        HODL_TOTAL_MSAT,
    ));
    let shared_secret = random_hex32(rng);
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
pub(super) fn fs_type(dir: &Path) -> String {
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
pub(super) fn fsync_probe(dir: &Path) -> Result<Lat> {
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
pub(super) fn run_hodl(cfg: &Config) -> Result<(HodlFigures, PluginProc)> {
    eprintln!("hotpath: hodl: starting ballast ...");
    let mut p = PluginProc::spawn("ballast", plugin_command("ballast", cfg)?, cfg.fixtures.clone())?;
    match hodl_phases(&mut p) {
        Ok(f) => Ok((f, p)),
        Err(e) => Err(p.with_stderr(e)),
    }
}

pub(super) fn hodl_phases(p: &mut PluginProc) -> Result<HodlFigures> {
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
    let mut rng = Rng::new(0x40d1_5eed_u64.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
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

pub(super) fn print_hodl(f: &HodlFigures) {
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

pub(super) fn hodl_verdict_line(f: &HodlFigures) -> String {
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

pub(super) fn hodl_report(f: &HodlFigures) -> Value {
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
