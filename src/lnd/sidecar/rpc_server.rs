//! The sidecar's control surface: JSON-RPC 2.0 over a unix socket (mode 0600), serving the
//! same method table as the plugin. Requests are JSON objects, one after another on the
//! stream (whitespace between them is fine); each answer is one JSON object and a newline.

use crate::api::{self, AppState, RpcError};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// JSON-RPC's own codes.
const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
/// A request larger than this is refused rather than buffered.
const MAX_REQUEST: usize = 4 << 20;

/// Binds the socket: refuses to replace anything but a stale socket, and makes it 0600
/// before anyone can connect (the umask covers the window between bind and chmod).
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if !meta.file_type().is_socket() {
            anyhow::bail!("{} exists and is not a socket; not replacing it", path.display());
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            anyhow::bail!("another ballast-lnd is already serving {}", path.display());
        }
        std::fs::remove_file(path)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // SAFETY: umask only changes this process's file-creation mask.
    let old = unsafe { libc::umask(0o177) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above, restoring the previous mask.
    unsafe { libc::umask(old) };
    let listener = bound?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

/// Serves connections until the listener fails.
pub async fn serve(state: AppState, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((conn, _)) => {
                tokio::spawn(connection(state.clone(), conn));
            }
            Err(e) => {
                log::error!("rpc socket: accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(state: AppState, mut conn: UnixStream) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // Answer every complete request in the buffer first.
        loop {
            let mut stream = serde_json::Deserializer::from_slice(&buf).into_iter::<Value>();
            match stream.next() {
                Some(Ok(req)) => {
                    let used = stream.byte_offset();
                    buf.drain(..used);
                    let answer = answer(&state, req).await;
                    let mut out = serde_json::to_vec(&answer).unwrap_or_default();
                    out.push(b'\n');
                    if conn.write_all(&out).await.is_err() {
                        return;
                    }
                }
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    let out = error(Value::Null, PARSE_ERROR, format!("not JSON: {e}"));
                    let _ = conn.write_all(format!("{out}\n").as_bytes()).await;
                    return;
                }
                None => {
                    buf.clear();
                    break;
                }
            }
        }
        if buf.len() > MAX_REQUEST {
            let out = error(Value::Null, INVALID_REQUEST, "request too large".into());
            let _ = conn.write_all(format!("{out}\n").as_bytes()).await;
            return;
        }
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn error(id: Value, code: i64, message: String) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// One request to one answer. `help` lists the methods, like lightningd's.
pub async fn answer(state: &AppState, req: Value) -> Value {
    let id = req.get("id").cloned().unwrap_or(Value::Null);
    let Some(method) = req.get("method").and_then(Value::as_str) else {
        return error(id, INVALID_REQUEST, "a request needs a 'method' string".into());
    };
    let params = req.get("params").cloned().unwrap_or(Value::Null);
    if method == "help" {
        let list: Vec<Value> = api::METHODS
            .iter()
            .map(|m| json!({"command": format!("{} {}", m.name, m.usage).trim_end(), "description": m.description}))
            .collect();
        return json!({"jsonrpc": "2.0", "id": id, "result": {"help": list}});
    }
    let Some(m) = api::find(method) else {
        return error(
            id,
            METHOD_NOT_FOUND,
            format!("unknown method '{method}' (try 'help')"),
        );
    };
    match api::call(state.clone(), m, params).await {
        Ok(result) => json!({"jsonrpc": "2.0", "id": id, "result": result}),
        Err(RpcError { code, message }) => error(id, code, message),
    }
}
