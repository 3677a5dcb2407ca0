//! Driver: figures and report.

use super::*;

#[derive(Clone, Copy)]
pub(super) struct Lat {
    pub(super) p50: f64,
    pub(super) p99: f64,
    pub(super) p999: f64,
    pub(super) mean: f64,
    pub(super) max: f64,
}

/// Nearest-rank percentiles, in microseconds.
pub(super) fn lat_stats(mut ns: Vec<u64>) -> Lat {
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

pub(super) struct Figures {
    pub(super) lat: Lat,
    pub(super) hooks_per_s: f64,
}

pub(super) struct Concurrent {
    pub(super) method: String,
    pub(super) lat: Lat,
    pub(super) stats: ConcStats,
    /// Floor latency on the same CPUs, measured right before.
    pub(super) floor_ref: Option<Lat>,
}

pub(super) fn plugin_command(name: &str, cfg: &Config) -> Result<Command> {
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
pub(super) struct Slot {
    pub(super) name: String,
    pub(super) proc: Option<PluginProc>,
    pub(super) gen: HtlcGen,
    pub(super) lat_ns: Vec<u64>,
    pub(super) tput_n: usize,
    pub(super) tput_time: Duration,
    pub(super) error: Option<anyhow::Error>,
}

impl Slot {
    /// Runs `f` on the plugin if it is still alive; on error, ends it and keeps the
    /// error (with the plugin's last words).
    pub(super) fn run(&mut self, what: &str, f: impl FnOnce(&mut PluginProc, &mut HtlcGen) -> Result<()>) {
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
pub(super) fn run_concurrent(
    cfg: &Config,
    slots: &mut [Slot],
    method: &str,
    params: &Value,
) -> Result<Concurrent> {
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
pub(super) type RunResults = (Vec<(String, Result<Figures>)>, Option<Result<Concurrent>>);

/// `ballast`: an already running ballast to measure (the one of the hold-invoice run),
/// whose hook ids are numbered from `ballast_seq` on; else one is started.
pub(super) fn run_all(cfg: &Config, mut ballast: Option<(PluginProc, u64)>) -> RunResults {
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

pub(super) fn lat_json(l: &Lat) -> Value {
    json!({"p50_us": l.p50, "p99_us": l.p99, "p999_us": l.p999,
           "mean_us": l.mean, "max_us": l.max})
}
