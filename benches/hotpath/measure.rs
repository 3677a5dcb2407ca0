//! Driver: measurements.

use super::*;

/// N sequential round trips, one in flight; returns nanoseconds each.
pub(super) fn measure_latency(p: &mut PluginProc, gen: &mut HtlcGen, n: usize) -> Result<Vec<u64>> {
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
pub(super) fn measure_throughput(p: &mut PluginProc, gen: &mut HtlcGen, n: usize) -> Result<Duration> {
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

pub(super) struct ConcStats {
    pub(super) calls: u64,
    pub(super) errors: u64,
    pub(super) first_error: Option<Value>,
    pub(super) total_call_time: Duration,
}

pub(super) struct ConcIo<'a> {
    pub(super) stdin: &'a mut ChildStdin,
    pub(super) stop: bool,
    pub(super) in_flight: bool,
}

/// Like [`measure_latency`], while a second thread keeps one call of
/// `method` in flight on the plugin's stdin at all times.
pub(super) fn measure_latency_concurrent(
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
