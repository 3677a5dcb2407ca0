//! The metrics endpoint: `GET /metrics` over plain HTTP/1.x on `ballast-metrics-bind`,
//! a few connections at a time, the exposition built on a blocking thread.

use super::encode::metrics_text;
use crate::api::state::AppState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Concurrent metrics scrapes served; more wait for the listener.
const METRICS_MAX_CONNECTIONS: usize = 8;
const METRICS_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Parses a `host:port` bind address for the metrics endpoint.
pub fn parse_bind(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|e| format!("ballast-metrics-bind '{v}' must be an ip:port such as 127.0.0.1:9750: {e}"))
}

/// Serves `GET /metrics` until the process ends. One small HTTP/1.x exchange per
/// connection; anything else gets a 404/405.
pub async fn serve(s: AppState, listener: tokio::net::TcpListener) {
    let slots = Arc::new(tokio::sync::Semaphore::new(METRICS_MAX_CONNECTIONS));
    loop {
        let permit = match slots.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return,
        };
        let (conn, _) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                log::warn!("metrics: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let s = s.clone();
        tokio::spawn(async move {
            if let Err(e) = answer_scrape(&s, conn).await {
                log::debug!("metrics: connection ended: {e}");
            }
            drop(permit);
        });
    }
}

async fn answer_scrape(s: &AppState, mut conn: tokio::net::TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let head = tokio::time::timeout(METRICS_READ_TIMEOUT, async {
        loop {
            let n = conn.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
                return Ok(true);
            }
            if buf.len() > 8 * 1024 {
                return Ok(true);
            }
        }
    })
    .await;
    let complete = matches!(head, Ok(Ok(true)));
    let line = String::from_utf8_lossy(buf.split(|b| *b == b'\n').next().unwrap_or(&[])).into_owned();
    let mut parts = line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, ctype, body) = if !complete {
        ("400 Bad Request", "text/plain", "bad request\n".to_string())
    } else if path != "/metrics" {
        ("404 Not Found", "text/plain", "try /metrics\n".to_string())
    } else if method != "GET" && method != "HEAD" {
        ("405 Method Not Allowed", "text/plain", "GET only\n".to_string())
    } else {
        let st = s.clone();
        match tokio::task::spawn_blocking(move || metrics_text(&st)).await {
            Ok(Ok(text)) => (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            ),
            _ => (
                "500 Internal Server Error",
                "text/plain",
                "encoding failed\n".to_string(),
            ),
        }
    };
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        resp.extend_from_slice(body.as_bytes());
    }
    conn.write_all(&resp).await?;
    conn.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_addresses_are_ip_and_port() {
        assert!(parse_bind("127.0.0.1:9750").is_ok());
        assert!(parse_bind("localhost").is_err());
    }
}
