//! Driver: the fake lightningd's RPC socket.

use super::*;

/// Canned RPC results: `<method>.json` files of `HOTPATH_RPC_FIXTURES`, each the
/// `result` lightningd would return for that method (e.g. `lightning-cli listchannels`
/// output), so that methods doing real work have real data to work on.
pub(super) type Fixtures = Arc<HashMap<String, String>>;

pub(super) fn load_fixtures() -> Result<Fixtures> {
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

pub(super) fn serve_rpc(dir: &Path, fixtures: Fixtures) -> Result<()> {
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

pub(super) fn rpc_conn(conn: UnixStream, dir: &str, fixtures: &HashMap<String, String>) -> Result<()> {
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
