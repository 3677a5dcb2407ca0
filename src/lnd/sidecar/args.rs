//! `ballast-lnd`'s command line and config file. LND connection flags follow lncli's names
//! and defaults; every `ballast-*` option of the plugin is accepted too, with the same
//! meaning, so one set of docs covers both.

use crate::api::options::{self, OptionSource};
use crate::lnd::config::LndConfig;
use cln_plugin::options::{
    DefaultBooleanConfigOption, DefaultIntegerConfigOption, DefaultStringConfigOption, StringConfigOption,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const USAGE: &str = "\
ballast-lnd: ballast's hold invoices, balance monitoring, rebalancing and fee policy for LND.

Usage:
  ballast-lnd [flags]                      run the sidecar beside lnd
  ballast-lnd call <method> [params-json]  call a method on the running sidecar
  ballast-lnd --help | --version

LND connection (lncli's flags and defaults):
  --lnddir=DIR          lnd's directory (default ~/.lnd)
  --network=NET         mainnet, testnet, testnet4, signet, regtest or simnet (default mainnet)
  --rpcserver=HOST:PORT lnd's gRPC address (default localhost:10009)
  --tlscertpath=FILE    lnd's TLS certificate (default <lnddir>/tls.cert); always verified
  --macaroonpath=FILE   macaroon (default <lnddir>/data/chain/bitcoin/<network>/admin.macaroon)
  --hold-expiry-delta=N lnd's invoices.holdexpirydelta (default 18, lnd's): lnd cancels an
                        accepted hold invoice N blocks before its HTLC expires; checked
                        against lnd's own configuration at start where lnd shows it

Sidecar:
  --datadir=DIR         ballast's data directory (default ~/.ballast-lnd); the store lives in
                        <datadir>/<network>/ballast unless --ballast-db-path says otherwise
  --rpc-socket=FILE     JSON-RPC unix socket (default <datadir>/ballast.sock, mode 0600)
  --config=FILE         config file (default <datadir>/ballast-lnd.conf if it exists):
                        one `name=value` per line, names as the flags without `--`
  --log-level=LEVEL     error, warn, info (default) or debug
  --ballast-*=VALUE     any option of the Core Lightning plugin (see the README), e.g.
                        --ballast-rebalance-daily-budget=20000000

Params for `call` are a JSON object or array, or name=value pairs:
  ballast-lnd call hodl-invoice '{\"amount_msat\": 100000}'
  ballast-lnd call monitor-status scid=800000x1x0";

/// Flags that are not `ballast-*` options.
const SIDECAR_FLAGS: [&str; 10] = [
    "lnddir",
    "network",
    "rpcserver",
    "tlscertpath",
    "macaroonpath",
    "hold-expiry-delta",
    "datadir",
    "rpc-socket",
    "config",
    "log-level",
];

/// What the command line asked for.
#[derive(Debug, PartialEq)]
pub enum Command {
    Run(Box<SidecarArgs>),
    Call {
        socket: PathBuf,
        method: String,
        params: serde_json::Value,
    },
    Help,
    Version,
}

/// The resolved settings of a sidecar run.
#[derive(Debug, Clone, PartialEq)]
pub struct SidecarArgs {
    pub lnd: LndConfig,
    pub network: String,
    pub datadir: PathBuf,
    pub rpc_socket: PathBuf,
    pub log_level: log::LevelFilter,
    /// lnd's `invoices.holdexpirydelta`, when given.
    pub hold_expiry_delta: Option<u32>,
    /// `ballast-*` options given, by full name.
    pub options: BTreeMap<String, String>,
}

impl SidecarArgs {
    /// Where the store lives: `ballast-db-path`, relative to `<datadir>/<network>`.
    pub(crate) fn db_path(&self) -> PathBuf {
        let opt = self
            .options
            .get(options::DB_PATH.name)
            .map(String::as_str)
            .unwrap_or(options::DB_PATH.default);
        options::resolve_db_path(&self.base_dir().to_string_lossy(), opt)
    }

    /// Relative paths in options (store, fee policy file) are taken from here.
    pub fn base_dir(&self) -> PathBuf {
        self.datadir.join(&self.network)
    }
}

fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// `~/x` → `$HOME/x`, as lncli does for its path flags.
pub(crate) fn expand(p: &str) -> PathBuf {
    match p.strip_prefix("~/") {
        Some(rest) => home().join(rest),
        None if p == "~" => home(),
        None => PathBuf::from(p),
    }
}

/// Splits `--name=value` / `--name value` flags into pairs, keeping their order.
fn flag_pairs(args: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        let Some(flag) = a.strip_prefix("--") else {
            return Err(format!(
                "unexpected argument '{a}' (flags start with --; see --help)"
            ));
        };
        let (name, value) = match flag.split_once('=') {
            Some((n, v)) => (n.to_string(), v.to_string()),
            None => {
                let v = args
                    .get(i + 1)
                    .filter(|v| !v.starts_with("--"))
                    .ok_or_else(|| format!("--{flag} needs a value"))?;
                i += 1;
                (flag.to_string(), v.clone())
            }
        };
        out.push((name, value));
        i += 1;
    }
    Ok(out)
}

/// Reads a config file: `name=value` lines, `#` comments, blank lines ignored.
pub(crate) fn read_config(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("cannot read config {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        // A comment may follow a value after whitespace: `name=value   # why`.
        let line = match line.find(" #").or_else(|| line.find("\t#")) {
            Some(i) => &line[..i],
            None => line,
        };
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .ok_or_else(|| format!("{}:{}: expected name=value, got '{line}'", path.display(), n + 1))?;
        out.push((
            k.trim().trim_start_matches("--").to_string(),
            v.trim().to_string(),
        ));
    }
    Ok(out)
}

fn check_name(name: &str) -> Result<(), String> {
    if SIDECAR_FLAGS.contains(&name) || options::all().iter().any(|(n, _, _)| *n == name) {
        Ok(())
    } else if name.starts_with("ballast-") {
        Err(format!(
            "unknown option '{name}' (the ballast-* options are listed in the README)"
        ))
    } else {
        Err(format!("unknown flag '--{name}' (see --help)"))
    }
}

/// Parses the whole command line (without the program name).
pub fn parse(args: &[String]) -> Result<Command, String> {
    match args.first().map(String::as_str) {
        Some("--help") | Some("-h") | Some("help") => return Ok(Command::Help),
        Some("--version") | Some("-V") => return Ok(Command::Version),
        _ => {}
    }
    // `call` may come after flags that locate the socket.
    let call_at = args.iter().position(|a| a == "call");
    let (flag_args, call_args) = match call_at {
        Some(i) => (&args[..i], Some(&args[i + 1..])),
        None => (args, None),
    };
    let flags = flag_pairs(flag_args)?;
    for (n, _) in &flags {
        check_name(n)?;
    }
    let get = |pairs: &[(String, String)], name: &str| {
        pairs
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let datadir = get(&flags, "datadir")
        .map(|d| expand(&d))
        .unwrap_or_else(|| home().join(".ballast-lnd"));
    // The config file sits under the flags: a flag given on the command line wins.
    let config_path = get(&flags, "config").map(|c| expand(&c));
    let mut pairs = match &config_path {
        Some(p) => read_config(p)?,
        None => {
            let p = datadir.join("ballast-lnd.conf");
            if p.exists() {
                read_config(&p)?
            } else {
                Vec::new()
            }
        }
    };
    for (n, _) in &pairs {
        if n == "config" || n == "datadir" {
            return Err(format!("'{n}' cannot be set in the config file"));
        }
        check_name(n)?;
    }
    pairs.extend(flags);
    let rpc_socket = get(&pairs, "rpc-socket")
        .map(|p| expand(&p))
        .unwrap_or_else(|| datadir.join("ballast.sock"));
    if let Some(rest) = call_args {
        let method = rest
            .first()
            .ok_or("call needs a method name: ballast-lnd call <method> [params]")?
            .clone();
        let params = call_params(&rest[1..])?;
        return Ok(Command::Call {
            socket: rpc_socket,
            method,
            params,
        });
    }
    let network = get(&pairs, "network").unwrap_or_else(|| "mainnet".into());
    let log_level = match get(&pairs, "log-level").as_deref() {
        None | Some("info") => log::LevelFilter::Info,
        Some("error") => log::LevelFilter::Error,
        Some("warn") => log::LevelFilter::Warn,
        Some("debug") => log::LevelFilter::Debug,
        Some(other) => {
            return Err(format!(
                "--log-level must be error, warn, info or debug, not '{other}'"
            ))
        }
    };
    let hold_expiry_delta =
        match get(&pairs, "hold-expiry-delta") {
            None => None,
            Some(v) => Some(v.parse::<u32>().ok().filter(|d| *d <= 2016).ok_or_else(|| {
                format!("--hold-expiry-delta must be a number of blocks (0..2016), not '{v}'")
            })?),
        };
    let lnd = LndConfig {
        lnddir: get(&pairs, "lnddir").map(|p| expand(&p)),
        network: Some(network.clone()),
        rpcserver: get(&pairs, "rpcserver"),
        tlscertpath: get(&pairs, "tlscertpath").map(|p| expand(&p)),
        macaroonpath: get(&pairs, "macaroonpath").map(|p| expand(&p)),
    };
    let options = pairs
        .into_iter()
        .filter(|(n, _)| n.starts_with("ballast-"))
        .collect::<BTreeMap<_, _>>();
    Ok(Command::Run(Box::new(SidecarArgs {
        lnd,
        network,
        datadir,
        rpc_socket,
        log_level,
        hold_expiry_delta,
        options,
    })))
}

/// `call` params: nothing, one JSON object/array, or `name=value` pairs (values that parse
/// as JSON are taken as JSON, others as strings), as lightning-cli's `-k` does.
fn call_params(rest: &[String]) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    match rest {
        [] => Ok(Value::Object(Default::default())),
        [one] if one.trim_start().starts_with(['{', '[']) => {
            serde_json::from_str(one).map_err(|e| format!("params are not valid JSON: {e}"))
        }
        pairs => {
            let mut m = serde_json::Map::new();
            for p in pairs {
                let (k, v) = p
                    .split_once('=')
                    .ok_or_else(|| format!("param '{p}' is not name=value (or give one JSON object)"))?;
                let v = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.to_string()));
                m.insert(k.to_string(), v);
            }
            Ok(Value::Object(m))
        }
    }
}

/// `ballast-*` option values from flags and the config file, with the plugin's defaults.
pub(crate) struct SidecarOptions<'a>(pub &'a BTreeMap<String, String>);

impl SidecarOptions<'_> {
    fn raw(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

impl OptionSource for SidecarOptions<'_> {
    fn int(&self, o: &DefaultIntegerConfigOption) -> Result<i64, String> {
        match self.raw(o.name) {
            None => Ok(o.default),
            Some(v) => v
                .parse()
                .map_err(|_| format!("{} must be an integer, not '{v}'", o.name)),
        }
    }
    fn text(&self, o: &DefaultStringConfigOption) -> Result<String, String> {
        Ok(self.raw(o.name).unwrap_or(o.default).to_string())
    }
    fn flag(&self, o: &DefaultBooleanConfigOption) -> Result<bool, String> {
        match self.raw(o.name) {
            None => Ok(o.default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(format!("{} must be true or false, not '{v}'", o.name)),
        }
    }
    fn maybe_text(&self, o: &StringConfigOption) -> Result<Option<String>, String> {
        Ok(self.raw(o.name).map(str::to_string))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn run(v: &[&str]) -> SidecarArgs {
        match parse(&args(v)).unwrap() {
            Command::Run(a) => *a,
            other => panic!("not a run: {other:?}"),
        }
    }

    #[test]
    fn hold_expiry_delta_is_a_block_count() {
        assert_eq!(run(&["--datadir=/d"]).hold_expiry_delta, None);
        assert_eq!(
            run(&["--datadir=/d", "--hold-expiry-delta=30"]).hold_expiry_delta,
            Some(30)
        );
        for bad in ["-1", "x", "5000"] {
            let e = parse(&args(&["--datadir=/d", &format!("--hold-expiry-delta={bad}")])).unwrap_err();
            assert!(e.contains("--hold-expiry-delta"), "{e}");
        }
    }

    #[test]
    fn lncli_flags_in_both_forms() {
        let a = run(&[
            "--datadir=/d",
            "--network",
            "regtest",
            "--rpcserver=127.0.0.1:10010",
            "--tlscertpath",
            "/c/tls.cert",
            "--ballast-rebalance-daily-budget=5000",
        ]);
        assert_eq!(a.network, "regtest");
        assert_eq!(a.lnd.rpcserver.as_deref(), Some("127.0.0.1:10010"));
        assert_eq!(a.lnd.tlscertpath, Some(PathBuf::from("/c/tls.cert")));
        assert_eq!(a.rpc_socket, PathBuf::from("/d/ballast.sock"));
        assert_eq!(a.db_path(), PathBuf::from("/d/regtest/ballast"));
        assert_eq!(a.options.get("ballast-rebalance-daily-budget").unwrap(), "5000");
        let o = SidecarOptions(&a.options);
        assert_eq!(o.int(&options::REBALANCE_DAILY_BUDGET).unwrap(), 5000);
        assert_eq!(o.int(&options::HODL_CLTV).unwrap(), options::HODL_CLTV.default);
    }

    #[test]
    fn unknown_and_malformed_flags_are_refused() {
        for bad in [
            &["--nope=1"][..],
            &["--ballast-nope=1"],
            &["--network"],
            &["stray"],
            &["--log-level=loud"],
        ] {
            assert!(parse(&args(bad)).is_err(), "{bad:?} accepted");
        }
        let a = run(&["--ballast-hodl-cltv=abc"]);
        assert!(SidecarOptions(&a.options).int(&options::HODL_CLTV).is_err());
    }

    #[test]
    fn config_file_under_flags() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("ballast-lnd.conf");
        std::fs::write(
            &conf,
            "# comment\nnetwork=signet   # why\nballast-fee-dry-run=true\nrpcserver=h:1\n",
        )
        .unwrap();
        let d = dir.path().to_str().unwrap();
        let a = run(&["--datadir", d, "--rpcserver=h:2"]);
        assert_eq!(a.network, "signet");
        assert_eq!(a.lnd.rpcserver.as_deref(), Some("h:2"));
        assert!(SidecarOptions(&a.options).flag(&options::FEE_DRY_RUN).unwrap());
        std::fs::write(&conf, "bogus line\n").unwrap();
        assert!(parse(&args(&["--datadir", d])).is_err());
    }

    #[test]
    fn call_takes_json_or_pairs() {
        let c = parse(&args(&[
            "--rpc-socket=/s",
            "call",
            "hodl-list",
            "state=OPEN",
            "limit=5",
        ]))
        .unwrap();
        assert_eq!(
            c,
            Command::Call {
                socket: PathBuf::from("/s"),
                method: "hodl-list".into(),
                params: serde_json::json!({"state": "OPEN", "limit": 5}),
            }
        );
        let c = parse(&args(&["call", "hodl-cancel", "[\"ab\"]"])).unwrap();
        assert!(matches!(c, Command::Call { params, .. } if params == serde_json::json!(["ab"])));
        assert!(parse(&args(&["call"])).is_err());
        assert!(parse(&args(&["call", "x", "{bad"])).is_err());
    }
}
