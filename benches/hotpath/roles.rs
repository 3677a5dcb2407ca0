//! The two reference plugins this binary plays when re-executed: `floor`, a hand-rolled blocking plugin, and `noop`, a no-op cln-plugin hook plugin.

use super::*;

pub(super) fn floor_main() -> i32 {
    let mut input = BufReader::with_capacity(1 << 16, io::stdin().lock());
    let mut output = io::stdout().lock();
    let mut msg = Vec::with_capacity(8192);
    loop {
        match read_frame(&mut input, &mut msg) {
            Ok(true) => {}
            Ok(false) => return 0,
            Err(e) => {
                eprintln!("floor: read error: {e}");
                return 1;
            }
        }
        let v: Value = match serde_json::from_slice(&msg) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("floor: bad JSON: {e}");
                return 1;
            }
        };
        let Some(id) = v.get("id") else {
            continue; // A notification: nothing to answer.
        };
        let reply = match v.get("method").and_then(Value::as_str) {
            Some("getmanifest") => json!({"jsonrpc": "2.0", "id": id, "result": {
                "options": [],
                "rpcmethods": [],
                "subscriptions": [],
                "hooks": [{"name": "htlc_accepted"}],
                "featurebits": {},
                "notifications": [],
                "dynamic": true,
                "nonnumericids": true,
            }}),
            Some("init") => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
            Some("htlc_accepted") => {
                json!({"jsonrpc": "2.0", "id": id, "result": {"result": "continue"}})
            }
            _ => json!({"jsonrpc": "2.0", "id": id,
                        "error": {"code": -32601, "message": "Method not found"}}),
        };
        if let Err(e) = output.write_all(&frame(&reply)).and_then(|_| output.flush()) {
            eprintln!("floor: write error: {e}");
            return 1;
        }
    }
}

pub(super) fn noop_main() -> i32 {
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("noop: cannot build the tokio runtime: {e}");
            return 1;
        }
    };
    let res: Result<()> = rt.block_on(async {
        let plugin = cln_plugin::Builder::new(tokio::io::stdin(), tokio::io::stdout())
            .hook("htlc_accepted", |_p, _v| async {
                Ok(json!({"result": "continue"}))
            })
            .start(())
            .await?;
        if let Some(plugin) = plugin {
            plugin.join().await?;
        }
        Ok(())
    });
    match res {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("noop: {e:#}");
            1
        }
    }
}
