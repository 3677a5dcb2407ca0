//! `ballast-lnd call`: one request to a running sidecar, its answer printed as JSON.

use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

/// Sends `method` with `params` and returns the JSON-RPC response object.
pub fn call(socket: &Path, method: &str, params: &Value, timeout: Duration) -> Result<Value, String> {
    let mut conn = UnixStream::connect(socket).map_err(|e| {
        format!(
            "cannot connect to {} ({e}); is ballast-lnd running (and is --rpc-socket/--datadir the same)?",
            socket.display()
        )
    })?;
    conn.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    conn.write_all(req.to_string().as_bytes())
        .and_then(|_| conn.write_all(b"\n"))
        .map_err(|e| format!("sending the request failed: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = conn
            .read(&mut chunk)
            .map_err(|e| format!("reading the answer failed: {e}"))?;
        if n == 0 {
            return Err("the sidecar closed the connection without answering".into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let mut stream = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
        match stream.next() {
            Some(Ok(v)) => return Ok(v),
            Some(Err(e)) if e.is_eof() => continue,
            Some(Err(e)) => return Err(format!("the answer is not JSON: {e}")),
            None => continue,
        }
    }
}

/// The `call` subcommand: prints `result` (or the error object on stderr, exit code 1).
pub fn main(socket: &Path, method: &str, params: &Value) -> ExitCode {
    // hodl-lookup may wait up to a day; the caller can always interrupt.
    match call(socket, method, params, Duration::from_secs(25 * 3600)) {
        Ok(resp) => {
            if let Some(r) = resp.get("result") {
                super::print_out(&serde_json::to_string_pretty(r).unwrap_or_default())
            } else {
                let e = resp.get("error").cloned().unwrap_or(resp);
                eprintln!("{}", serde_json::to_string_pretty(&e).unwrap_or_default());
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("ballast-lnd: {e}");
            ExitCode::FAILURE
        }
    }
}
