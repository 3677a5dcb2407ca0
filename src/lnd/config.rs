//! Where LND is and how to authenticate to it, with `lncli`'s defaults.

use std::path::{Path, PathBuf};

/// The networks LND can run on, as named in its data directory and in `GetInfo`.
pub(crate) const NETWORKS: [&str; 6] = ["mainnet", "testnet", "testnet4", "signet", "regtest", "simnet"];

/// The default gRPC port of LND.
pub(crate) const DEFAULT_RPC_PORT: u16 = 10009;

/// Connection settings as given by the user; unset fields take `lncli`'s defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LndConfig {
    /// LND's base directory; default `~/.lnd`.
    pub lnddir: Option<PathBuf>,
    /// mainnet, testnet, testnet4, signet, regtest or simnet; default mainnet.
    pub network: Option<String>,
    /// host:port of LND's gRPC server; default `localhost:10009`.
    pub rpcserver: Option<String>,
    /// Default `<lnddir>/tls.cert`.
    pub tlscertpath: Option<PathBuf>,
    /// Default `<lnddir>/data/chain/bitcoin/<network>/admin.macaroon`.
    pub macaroonpath: Option<PathBuf>,
}

/// Settings with every default applied and every file checked to exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub network: String,
    /// host:port, always with a port.
    pub rpcserver: String,
    /// The host part of `rpcserver`, without IPv6 brackets.
    pub host: String,
    pub port: u16,
    pub tlscertpath: PathBuf,
    pub macaroonpath: PathBuf,
}

impl LndConfig {
    /// Applies the defaults and checks the network name and that the certificate and
    /// macaroon files exist. Errors are one line, naming the setting and the path.
    pub fn resolve(&self) -> Result<Resolved, String> {
        let network = self.network.clone().unwrap_or_else(|| "mainnet".to_string());
        if !NETWORKS.contains(&network.as_str()) {
            return Err(format!(
                "unknown LND network '{network}': expected one of {}",
                NETWORKS.join(", ")
            ));
        }
        let lnddir = match &self.lnddir {
            Some(d) => expand_tilde(d)?,
            None => home_dir()?.join(".lnd"),
        };
        let rpcserver = self.rpcserver.as_deref().unwrap_or("localhost:10009");
        let (host, port) = split_host_port(rpcserver)?;
        let tlscertpath = match &self.tlscertpath {
            Some(p) => expand_tilde(p)?,
            None => lnddir.join("tls.cert"),
        };
        let macaroonpath = match &self.macaroonpath {
            Some(p) => expand_tilde(p)?,
            None => lnddir
                .join("data")
                .join("chain")
                .join("bitcoin")
                .join(&network)
                .join("admin.macaroon"),
        };
        check_file("TLS certificate", "tlscertpath", &tlscertpath)?;
        check_file("macaroon", "macaroonpath", &macaroonpath)?;
        let rpcserver = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Ok(Resolved {
            network,
            rpcserver,
            host,
            port,
            tlscertpath,
            macaroonpath,
        })
    }
}

fn check_file(what: &str, option: &str, path: &Path) -> Result<(), String> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => Ok(()),
        Ok(_) => Err(format!(
            "LND {what} {} is not a file (set {option})",
            path.display()
        )),
        Err(e) => Err(format!(
            "LND {what} not found at {}: {e} (set {option})",
            path.display()
        )),
    }
}

fn home_dir() -> Result<PathBuf, String> {
    match std::env::var_os("HOME") {
        Some(h) if !h.is_empty() => Ok(PathBuf::from(h)),
        _ => Err("cannot find LND's directory: HOME is not set (set lnddir)".to_string()),
    }
}

fn expand_tilde(p: &Path) -> Result<PathBuf, String> {
    match p.strip_prefix("~") {
        Ok(rest) => Ok(home_dir()?.join(rest)),
        Err(_) => Ok(p.to_path_buf()),
    }
}

/// Splits `host[:port]` (IPv6 in brackets), defaulting the port like lncli does.
fn split_host_port(s: &str) -> Result<(String, u16), String> {
    let bad = || format!("invalid LND rpcserver '{s}': expected host:port");
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        match after.strip_prefix(':') {
            Some(p) => (host, Some(p)),
            None if after.is_empty() => (host, None),
            None => return Err(bad()),
        }
    } else {
        match s.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h, Some(p)),
            Some(_) => return Err(bad()),
            None => (s, None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = match port {
        Some(p) => p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(bad)?,
        None => DEFAULT_RPC_PORT,
    };
    Ok((host.to_string(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_port_forms() {
        assert_eq!(split_host_port("localhost").unwrap(), ("localhost".into(), 10009));
        assert_eq!(split_host_port("127.0.0.1:1").unwrap(), ("127.0.0.1".into(), 1));
        assert_eq!(split_host_port("[::1]:10010").unwrap(), ("::1".into(), 10010));
        assert_eq!(split_host_port("[::1]").unwrap(), ("::1".into(), 10009));
        for bad in ["", ":1", "h:0", "h:x", "::1:5", "[::1]x", "h:70000"] {
            assert!(split_host_port(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn defaults_follow_lncli() {
        let dir = std::env::temp_dir().join(format!("ballast-lndcfg-{}", std::process::id()));
        let mac = dir.join("data/chain/bitcoin/regtest");
        std::fs::create_dir_all(&mac).unwrap();
        std::fs::write(dir.join("tls.cert"), "x").unwrap();
        let cfg = LndConfig {
            lnddir: Some(dir.clone()),
            network: Some("regtest".into()),
            ..Default::default()
        };
        let err = cfg.resolve().unwrap_err();
        assert!(
            err.contains("macaroon not found") && err.contains("admin.macaroon"),
            "{err}"
        );
        std::fs::write(mac.join("admin.macaroon"), "m").unwrap();
        let r = cfg.resolve().unwrap();
        assert_eq!(r.rpcserver, "localhost:10009");
        assert_eq!(r.tlscertpath, dir.join("tls.cert"));
        assert_eq!(r.macaroonpath, mac.join("admin.macaroon"));
        let bad = LndConfig {
            network: Some("testnet3".into()),
            ..cfg.clone()
        };
        assert!(bad
            .resolve()
            .unwrap_err()
            .contains("unknown LND network 'testnet3'"));
        std::fs::remove_file(dir.join("tls.cert")).unwrap();
        assert!(cfg.resolve().unwrap_err().contains("TLS certificate not found"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
