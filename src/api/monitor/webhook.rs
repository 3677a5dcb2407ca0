//! Alert webhook: the start-up check of its URL and the thread that posts alerts to it,
//! behind a bounded queue so a slow endpoint never holds up a snapshot round.

use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

/// Alerts waiting for the webhook; more are dropped (and counted), never waited for.
pub const WEBHOOK_QUEUE: usize = 64;
/// Attempts per alert (the first plus retries), with exponential backoff between them.
pub const WEBHOOK_ATTEMPTS: u32 = 4;
pub const WEBHOOK_BACKOFF: Duration = Duration::from_secs(1);
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
const WEBHOOK_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Webhook delivery figures, for `monitor-stats` and the metrics endpoint.
#[derive(Default)]
pub struct WebhookStats {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
    pub attempts: AtomicU64,
}

/// Checks a webhook URL at start-up: plain `http://` with a host. TLS is not built in.
pub fn check_webhook_url(url: &str) -> Result<(), String> {
    let uri: ureq::http::Uri = url
        .parse()
        .map_err(|e| format!("ballast-alert-webhook '{url}' is not a URL: {e}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "ballast-alert-webhook '{url}': https is not supported; point it at an http:// endpoint (e.g. a local relay)"
            ))
        }
        _ => return Err(format!("ballast-alert-webhook '{url}' must start with http://")),
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("ballast-alert-webhook '{url}' has no host"));
    }
    Ok(())
}

/// Posts each queued alert, retrying transient failures with exponential backoff; gives up
/// on an alert after [`WEBHOOK_ATTEMPTS`]. Ends when the sender is dropped.
pub(super) fn webhook_worker(
    url: String,
    rx: mpsc::Receiver<Value>,
    stats: Arc<WebhookStats>,
    backoff: Duration,
) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(WEBHOOK_TIMEOUT))
        .timeout_connect(Some(WEBHOOK_CONNECT_TIMEOUT))
        .max_redirects(0)
        .http_status_as_error(false)
        .build()
        .into();
    while let Ok(body) = rx.recv() {
        let text = body.to_string();
        let id = body.get("id").cloned().unwrap_or(Value::Null);
        let mut delay = backoff;
        for attempt in 1..=WEBHOOK_ATTEMPTS {
            stats.attempts.fetch_add(1, Ordering::Relaxed);
            let outcome = agent
                .post(&url)
                .header("Content-Type", "application/json")
                .header("User-Agent", concat!("ballast/", env!("CARGO_PKG_VERSION")))
                .send(text.as_str());
            let (retry, why) = match outcome {
                Ok(resp) => {
                    let code = resp.status().as_u16();
                    if (200..300).contains(&code) {
                        stats.delivered.fetch_add(1, Ordering::Relaxed);
                        log::debug!("webhook: alert {id} delivered");
                        break;
                    }
                    // Server trouble and rate limits may pass; any other refusal will not.
                    (code >= 500 || code == 429 || code == 408, format!("HTTP {code}"))
                }
                Err(e) => (true, e.to_string()),
            };
            if !retry || attempt == WEBHOOK_ATTEMPTS {
                stats.failed.fetch_add(1, Ordering::Relaxed);
                log::warn!("webhook: giving up on alert {id} after {attempt} attempt(s): {why}");
                break;
            }
            log::debug!("webhook: alert {id} attempt {attempt} failed ({why}); retrying in {delay:?}");
            std::thread::sleep(delay);
            delay = delay.saturating_mul(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::{Read, Write};
    use std::net::TcpListener;

    #[test]
    fn webhook_urls_must_be_plain_http_with_a_host() {
        assert!(check_webhook_url("http://127.0.0.1:8080/hook").is_ok());
        assert!(check_webhook_url("https://example.invalid/x")
            .unwrap_err()
            .contains("https"));
        assert!(check_webhook_url("ftp://x/").is_err());
        assert!(check_webhook_url("not a url").is_err());
    }

    /// A server that answers every request with `status` and counts them.
    fn server(status: u16) -> (String, Arc<AtomicU64>, Arc<std::sync::Mutex<Vec<String>>>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", l.local_addr().unwrap());
        let hits = Arc::new(AtomicU64::new(0));
        let bodies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (h, b) = (hits.clone(), bodies.clone());
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut c) = conn else { return };
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                // Read head and the Content-Length body.
                loop {
                    let n = c.read(&mut chunk).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    let text = String::from_utf8_lossy(&buf).to_string();
                    if let Some((head, body)) = text.split_once("\r\n\r\n") {
                        let len = head
                            .lines()
                            .find_map(|l| {
                                l.to_ascii_lowercase()
                                    .strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                            })
                            .unwrap_or(0);
                        if body.len() >= len {
                            b.lock().unwrap().push(body.to_string());
                            break;
                        }
                    }
                }
                h.fetch_add(1, Ordering::SeqCst);
                let _ = write!(
                    c,
                    "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                );
            }
        });
        (url, hits, bodies)
    }

    fn run_worker(url: String, bodies: usize) -> Arc<WebhookStats> {
        let stats = Arc::new(WebhookStats::default());
        let (tx, rx) = mpsc::sync_channel(WEBHOOK_QUEUE);
        let st = stats.clone();
        let t = std::thread::spawn(move || webhook_worker(url, rx, st, Duration::from_millis(10)));
        for i in 0..bodies {
            tx.send(json!({"id": i})).unwrap();
        }
        drop(tx);
        t.join().unwrap();
        stats
    }

    #[test]
    fn webhook_delivers_and_gives_up_after_bounded_retries() {
        let (url, hits, bodies) = server(200);
        let st = run_worker(url, 3);
        assert_eq!(hits.load(Ordering::SeqCst), 3);
        assert_eq!(st.delivered.load(Ordering::SeqCst), 3);
        assert_eq!(bodies.lock().unwrap()[0], r#"{"id":0}"#);

        let (url, hits, _) = server(503);
        let st = run_worker(url, 2);
        assert_eq!(hits.load(Ordering::SeqCst), 2 * u64::from(WEBHOOK_ATTEMPTS));
        assert_eq!(st.failed.load(Ordering::SeqCst), 2);

        // A permanent refusal is not retried.
        let (url, hits, _) = server(404);
        let st = run_worker(url, 1);
        assert_eq!(
            (hits.load(Ordering::SeqCst), st.failed.load(Ordering::SeqCst)),
            (1, 1)
        );

        // Nobody listening: bounded attempts, then the next alert.
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let st = run_worker(format!("http://127.0.0.1:{port}/"), 2);
        assert_eq!(
            st.attempts.load(Ordering::SeqCst),
            2 * u64::from(WEBHOOK_ATTEMPTS)
        );
        assert_eq!(st.failed.load(Ordering::SeqCst), 2);
    }
}
