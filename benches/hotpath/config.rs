//! Driver: configuration from the arguments and the environment.

use super::*;

pub(super) struct Config {
    pub(super) n: usize,
    pub(super) warmup: usize,
    pub(super) plugins: Vec<String>,
    pub(super) enforce: bool,
    /// CPUs the whole run (driver and plugins) is pinned to; `None`: not pinned.
    pub(super) pin: Option<Vec<usize>>,
    pub(super) concurrent: Option<(String, Value)>,
    /// `--hodl`: run the hold-invoice figures first.
    pub(super) hodl: bool,
    pub(super) ballast_bin: PathBuf,
    pub(super) fixtures: Fixtures,
    pub(super) target_dir: PathBuf,
}

pub(super) fn env_usize(name: &str) -> Result<Option<usize>> {
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
pub(super) fn deps_dir() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    (dir.file_name()? == "deps").then(|| dir.to_path_buf())
}

/// `target/release/ballast`: benches run from `target/release/deps/`.
pub(super) fn default_ballast_bin() -> PathBuf {
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
pub(super) fn default_target_dir() -> PathBuf {
    if let Some(target) = deps_dir().and_then(|d| d.parent()?.parent().map(Path::to_path_buf)) {
        return target;
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from("target"),
    }
}

/// `HOTPATH_CPUS`: unset = the last CPU; `all` = no pinning; else a list like `0,2-3`.
pub(super) fn parse_pin(spec: Option<&str>) -> Result<Option<Vec<usize>>> {
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
pub(super) fn pin_thread(tid: libc::pid_t, cpus: &[usize]) -> Result<()> {
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

pub(super) fn pin_to(cpus: &[usize]) -> Result<()> {
    pin_thread(0, cpus)
}

pub(super) fn parse_config() -> Result<Option<Config>> {
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
