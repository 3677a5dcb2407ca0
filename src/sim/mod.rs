//! `ballast simulate`: the engine on a simulated network, no lightningd needed.
//!
//! A seeded network (or one loaded from a `listchannels` dump) with our node in it; simulated
//! minutes of payments routed hop by hop over real per-direction balances, some forwarded
//! by us; hold invoices paid, settled, cancelled or left to hit their deadline; and the
//! engine deciding on all of it: fee policy on forward events, monitoring rules and alerts
//! on every block, rebalance plans executed within the policy's budgets. The output is a
//! summary table, `report.html` (the monitor's report, with the simulation's charts) and
//! the raw events as JSON lines. Two policies on one seed see the same traffic.

pub mod baseline;
pub mod network;
pub mod node;
pub mod output;
pub mod rng;
pub mod run;
pub mod summary;

use crate::engine::fees::Policy;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

pub use network::Network;
pub use run::{run, Outcome, RunParams};
pub use summary::{Conservation, Summary};

pub const USAGE: &str = "\
usage: ballast simulate [--nodes N] [--channels M] [--hours H] [--seed S]
                        [--policy FILE] [--policy-b FILE] [--graph FILE] [--out DIR] [--quiet]
                        [--rebalancer baseline|ballast|both]

Runs ballast's engine (fee policy, monitoring and alerts, rebalancing within budgets, hold
invoices) on a simulated Lightning network. No lightningd needed.

  --nodes N        nodes in the generated network (default 200, at least 3)
  --channels M     channels of our node (default 16)
  --hours H        simulated hours (default 168, at most 8760)
  --seed S         random seed; the same seed gives the same run (default 1)
  --policy FILE    fee policy TOML (as for ballast-fee-policy-file), optionally with a
                   [rebalance] table: daily_budget_msat, max_ppm. Give it twice, or use
                   --policy-b, to compare two policies on the same traffic.
  --policy-b FILE  the second policy of a comparison
  --graph FILE     a `lightning-cli listchannels` JSON dump to use as the network
  --out DIR        where report.html and events.jsonl go (default ./ballast-sim)
  --rebalancer R   who executes the planned moves: ballast (sized parts, learning),
                   baseline (a plain rebalancer: cheapest route, fixed amount, retry
                   around the failing channel), or both on the same traffic, side by side
                   (default both; the baseline's files end in -baseline)
  --quiet          no progress bar";

/// The embedded default: follow the balance, pricier as our side empties.
pub const DEFAULT_POLICY: &str = r#"
[defaults]
min_ppm = 1
max_ppm = 2000
base_msat = 0

[[rule]]
name = "balance"
strategy = { type = "balance", curve = "exponential", empty_ppm = 1000, full_ppm = 10 }

[rebalance]
daily_budget_msat = 20000000
max_ppm = 500
"#;

/// Who executes the planned rebalance moves in a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Rebalancer {
    /// `service::execute`, as the plugin runs it.
    #[default]
    Ballast,
    /// The plain rebalancer of [`baseline`].
    Baseline,
}

impl Rebalancer {
    pub fn as_str(self) -> &'static str {
        match self {
            Rebalancer::Ballast => "ballast",
            Rebalancer::Baseline => "baseline",
        }
    }
}

/// `--rebalancer`: one of them, or both on the same seed and traffic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RebalancerChoice {
    Ballast,
    Baseline,
    #[default]
    Both,
}

impl RebalancerChoice {
    pub fn runs(self) -> &'static [Rebalancer] {
        match self {
            RebalancerChoice::Ballast => &[Rebalancer::Ballast],
            RebalancerChoice::Baseline => &[Rebalancer::Baseline],
            RebalancerChoice::Both => &[Rebalancer::Ballast, Rebalancer::Baseline],
        }
    }
}

/// A fee policy with the rebalance budgets the simulation enforces.
#[derive(Debug, Clone)]
pub struct SimPolicy {
    pub name: String,
    pub fees: Policy,
    pub daily_budget_msat: u64,
    pub max_ppm: u32,
}

impl SimPolicy {
    /// Parses a policy TOML; its optional `[rebalance]` table sets the budgets.
    pub fn parse(name: &str, text: &str) -> Result<SimPolicy, String> {
        let mut table: toml::Table = text.parse().map_err(|e| format!("{name}: {e}"))?;
        let (mut daily, mut max_ppm) = (20_000_000u64, 500u32);
        let fee_text = match table.remove("rebalance") {
            Some(toml::Value::Table(t)) => {
                for (k, v) in t {
                    let n = v
                        .as_integer()
                        .filter(|n| *n >= 0)
                        .ok_or_else(|| format!("{name}: [rebalance] {k} must be a non-negative integer"))?;
                    match k.as_str() {
                        "daily_budget_msat" => daily = n as u64,
                        "max_ppm" => {
                            max_ppm = u32::try_from(n).map_err(|_| format!("{name}: max_ppm too large"))?
                        }
                        other => return Err(format!("{name}: unknown [rebalance] key '{other}'")),
                    }
                }
                toml::to_string(&table).map_err(|e| format!("{name}: {e}"))?
            }
            Some(_) => return Err(format!("{name}: 'rebalance' must be a table")),
            None => text.to_string(),
        };
        let fees = Policy::from_toml(&fee_text).map_err(|e| format!("{name}: {e}"))?;
        Ok(SimPolicy {
            name: name.to_string(),
            fees,
            daily_budget_msat: daily,
            max_ppm,
        })
    }

    pub fn default_policy() -> SimPolicy {
        SimPolicy::parse("default", DEFAULT_POLICY).expect("the embedded policy is valid")
    }

    pub fn load(path: &Path) -> Result<SimPolicy, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        SimPolicy::parse(&name, &text)
    }
}

/// Parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub nodes: usize,
    pub channels: usize,
    pub hours: u64,
    pub seed: u64,
    pub policies: Vec<PathBuf>,
    pub graph: Option<PathBuf>,
    pub out: PathBuf,
    pub quiet: bool,
    pub help: bool,
    pub rebalancer: RebalancerChoice,
}

impl Default for Args {
    fn default() -> Self {
        Args {
            nodes: 200,
            channels: 16,
            hours: 168,
            seed: 1,
            policies: Vec::new(),
            graph: None,
            out: PathBuf::from("./ballast-sim"),
            quiet: false,
            help: false,
            rebalancer: RebalancerChoice::Both,
        }
    }
}

impl Args {
    /// Parses the arguments after `simulate`. Errors are one line, for the usage message.
    pub fn parse(args: &[String]) -> Result<Args, String> {
        let mut a = Args::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
                _ => (arg.as_str(), None),
            };
            let mut value = |name: &str| -> Result<String, String> {
                match inline.clone().or_else(|| it.next().cloned()) {
                    Some(v) if !v.is_empty() => Ok(v),
                    _ => Err(format!("{name} needs a value")),
                }
            };
            fn num<T>(name: &str, v: &str, lo: T, hi: T) -> Result<T, String>
            where
                T: std::str::FromStr + PartialOrd + std::fmt::Display,
            {
                let n: T = v.parse().map_err(|_| format!("{name}: '{v}' is not a number"))?;
                if n < lo || n > hi {
                    return Err(format!("{name} must be between {lo} and {hi}, got {v}"));
                }
                Ok(n)
            }
            match flag {
                "--nodes" => a.nodes = num("--nodes", &value("--nodes")?, 3, 1_000_000)?,
                "--channels" => a.channels = num("--channels", &value("--channels")?, 1, 10_000)?,
                "--hours" => a.hours = num("--hours", &value("--hours")?, 1, 8_760)?,
                "--seed" => a.seed = num("--seed", &value("--seed")?, 0, u64::MAX)?,
                "--policy" | "--policy-a" => {
                    if a.policies.len() >= 2 {
                        return Err("at most two policies can be compared".into());
                    }
                    a.policies.push(PathBuf::from(value(flag)?));
                }
                "--policy-b" => {
                    if a.policies.is_empty() {
                        // B without A: compare against the embedded default.
                        a.policies.push(PathBuf::new());
                    }
                    if a.policies.len() >= 2 {
                        return Err("at most two policies can be compared".into());
                    }
                    a.policies.push(PathBuf::from(value("--policy-b")?));
                }
                "--graph" => a.graph = Some(PathBuf::from(value("--graph")?)),
                "--out" => a.out = PathBuf::from(value("--out")?),
                "--rebalancer" => {
                    a.rebalancer = match value("--rebalancer")?.as_str() {
                        "ballast" => RebalancerChoice::Ballast,
                        "baseline" => RebalancerChoice::Baseline,
                        "both" => RebalancerChoice::Both,
                        other => {
                            return Err(format!(
                                "--rebalancer must be baseline, ballast or both, got '{other}'"
                            ))
                        }
                    }
                }
                "--quiet" | "-q" => a.quiet = true,
                "--help" | "-h" => a.help = true,
                other => return Err(format!("unknown argument '{other}'")),
            }
        }
        Ok(a)
    }
}

fn run_params(a: &Args, nodes: usize, rebalancer: Rebalancer) -> RunParams {
    RunParams {
        seed: a.seed,
        hours: a.hours,
        // About one payment per 40 nodes per minute: busy enough that our channels drift.
        payments_per_min: (nodes as f64 / 40.0).max(1.0),
        hodl_per_min: 1.0 / 20.0,
        rebalance_every_mins: 60,
        rebalancer,
    }
}

/// Builds the network the arguments describe.
pub(crate) fn build_network(a: &Args) -> Result<Network, String> {
    match &a.graph {
        Some(path) => {
            let bytes = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            let parsed = crate::engine::listchannels::parse_slice(&bytes)
                .map_err(|e| format!("{}: {e}", path.display()))?;
            Network::from_edges(a.seed, &parsed.edges, a.channels)
                .map_err(|e| format!("{}: {e}", path.display()))
        }
        None => Ok(Network::generate(a.seed, a.nodes, a.channels)),
    }
}

/// Runs one policy without output files: what the tests and the comparison use. The
/// rebalancer is the first `a.rebalancer` names (ballast for `both`).
pub fn simulate(a: &Args, policy: &SimPolicy) -> Result<Outcome, String> {
    simulate_with(a, policy, a.rebalancer.runs()[0])
}

/// Runs one policy with the given rebalancer, without output files.
pub fn simulate_with(a: &Args, policy: &SimPolicy, rebalancer: Rebalancer) -> Result<Outcome, String> {
    let net = build_network(a)?;
    let p = run_params(a, net.ids.len(), rebalancer);
    run(net, policy, &p, None, None).map_err(|e| e.to_string())
}

/// `ballast simulate ARGS`: exit 0 on success, 2 on a usage error, 1 on a failure.
pub fn main(args: &[String]) -> ExitCode {
    let a = match Args::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ballast simulate: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if a.help {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    match main_inner(&a) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ballast simulate: {e}");
            ExitCode::FAILURE
        }
    }
}

fn main_inner(a: &Args) -> Result<(), String> {
    let mut policies = Vec::new();
    if a.policies.is_empty() {
        policies.push(SimPolicy::default_policy());
    }
    for p in &a.policies {
        policies.push(if p.as_os_str().is_empty() {
            SimPolicy::default_policy()
        } else {
            SimPolicy::load(p)?
        });
    }
    if policies.len() == 2 && policies[0].name == policies[1].name {
        policies[0].name.push_str(" (A)");
        policies[1].name.push_str(" (B)");
    }
    let net = build_network(a)?;
    std::fs::create_dir_all(&a.out).map_err(|e| format!("cannot create {}: {e}", a.out.display()))?;
    println!(
        "ballast simulate: {} nodes, {} channels ({} ours), {} h, seed {}; output in {}",
        net.ids.len(),
        net.channels.len(),
        net.adj[net.ours as usize].len(),
        a.hours,
        a.seed,
        a.out.display()
    );
    // Every policy with every chosen rebalancer, all on the same network and traffic.
    let mut runs = Vec::new();
    for (i, policy) in policies.iter().enumerate() {
        for &rebalancer in a.rebalancer.runs() {
            let mut suffix = if i == 0 { String::new() } else { "-b".into() };
            if rebalancer == Rebalancer::Baseline {
                suffix.push_str("-baseline");
            }
            runs.push((policy, rebalancer, suffix));
        }
    }
    let mut results = Vec::new();
    for (policy, rebalancer, suffix) in &runs {
        let params = run_params(a, net.ids.len(), *rebalancer);
        let events_path = a.out.join(format!("events{suffix}.jsonl"));
        let file = std::fs::File::create(&events_path)
            .map_err(|e| format!("cannot write {}: {e}", events_path.display()))?;
        let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
        let pb = if a.quiet {
            indicatif::ProgressBar::hidden()
        } else {
            indicatif::ProgressBar::new(a.hours)
        };
        pb.set_style(
            indicatif::ProgressStyle::with_template(
                "{prefix:>20} [{bar:40}] {pos}/{len} h {elapsed_precise}",
            )
            .map_err(|e| e.to_string())?
            .progress_chars("=> "),
        );
        pb.set_prefix(format!("{} / {}", policy.name, rebalancer.as_str()));
        let started = Instant::now();
        let outcome = run(net.clone(), policy, &params, Some(&mut w), Some(&pb))
            .map_err(|e| format!("writing {}: {e}", events_path.display()))?;
        let secs = started.elapsed().as_secs_f64();
        pb.finish_and_clear();
        std::io::Write::flush(&mut w).map_err(|e| format!("writing {}: {e}", events_path.display()))?;
        let report_path = a.out.join(format!("report{suffix}.html"));
        results.push((outcome, secs, report_path, events_path));
    }
    let sums: Vec<&Summary> = results.iter().map(|r| &r.0.summary).collect();
    // Reports once every run is done: each shows the rebalancers side by side.
    for ((outcome, _, report_path, _), (policy, ..)) in results.iter().zip(&runs) {
        let html = output::report(outcome, policy, &sums).map_err(|e| e.to_string())?;
        std::fs::write(report_path, html)
            .map_err(|e| format!("cannot write {}: {e}", report_path.display()))?;
    }
    println!("\n{}", summary::table(&sums));
    for (o, secs, report, events) in &results {
        println!(
            "{} / {}: {} events in {:.2} s ({} simulated events/s); report {}, events {}",
            o.summary.policy,
            o.summary.rebalancer,
            summary::group(o.events),
            secs,
            summary::group((o.events as f64 / secs.max(1e-9)) as u64),
            report.display(),
            events.display()
        );
    }
    if let Some(line) = summary::rebalancer_comparison(&sums) {
        println!("{line}");
    }
    if policies.len() == 2 {
        let first = |name: &str| sums.iter().find(|s| s.policy == name).copied();
        if let (Some(a_), Some(b_)) = (first(&policies[0].name), first(&policies[1].name)) {
            println!(
                "comparison (same seed, same traffic): net {} vs {} sat, fees earned {} vs {} sat, rebalance spend {} vs {} sat",
                a_.net_msat() / 1_000,
                b_.net_msat() / 1_000,
                a_.fees_earned_msat / 1_000,
                b_.fees_earned_msat / 1_000,
                a_.rebalance_spend_msat / 1_000,
                b_.rebalance_spend_msat / 1_000
            );
        }
    }
    let json = serde_json::to_string_pretty(&sums).map_err(|e| e.to_string())?;
    std::fs::write(a.out.join("summary.json"), json)
        .map_err(|e| format!("cannot write summary.json: {e}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &[&str]) -> Result<Args, String> {
        Args::parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_parse_in_both_forms_and_bad_ones_are_refused() {
        let a = parse(&[
            "--nodes",
            "50",
            "--hours=3",
            "--seed",
            "9",
            "--policy",
            "a.toml",
            "--policy-b=b.toml",
        ])
        .unwrap();
        assert_eq!((a.nodes, a.hours, a.seed), (50, 3, 9));
        assert_eq!(a.policies, vec![PathBuf::from("a.toml"), PathBuf::from("b.toml")]);
        assert_eq!(parse(&[]).unwrap(), Args::default());
        assert_eq!(
            Args::default().rebalancer.runs(),
            [Rebalancer::Ballast, Rebalancer::Baseline]
        );
        for (v, want) in [
            ("ballast", RebalancerChoice::Ballast),
            ("baseline", RebalancerChoice::Baseline),
            ("both", RebalancerChoice::Both),
        ] {
            assert_eq!(parse(&["--rebalancer", v]).unwrap().rebalancer, want);
            assert_eq!(parse(&[&format!("--rebalancer={v}")]).unwrap().rebalancer, want);
        }
        assert_eq!(
            parse(&["--policy-b", "b.toml"]).unwrap().policies.len(),
            2,
            "B against the default"
        );
        for bad in [
            &["--nodes"][..],
            &["--nodes", "x"],
            &["--hours", "0"],
            &["--what"],
            &["simulate"],
            &["--seed", "-1"],
            &["--rebalancer", "plain"],
            &["--rebalancer"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_embedded_policy_and_its_budgets_parse() {
        let p = SimPolicy::default_policy();
        assert_eq!((p.daily_budget_msat, p.max_ppm), (20_000_000, 500));
        assert!(SimPolicy::parse("x", "[rebalance]\nmax_ppm = -1\n").is_err());
        assert!(SimPolicy::parse("x", "[rebalance]\nbudget = 1\n").is_err());
    }
}
