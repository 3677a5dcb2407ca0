//! Balance monitoring end to end: the real plugin binary, driven by the harness playing
//! lightningd v26.06, with every message schema-checked. Channels are scripted in the fake
//! node; snapshot rounds are triggered the way lightningd triggers them, by notifications
//! (`forward_event`, `channel_state_changed`, `block_added`, `connect`, `disconnect`), which
//! ballast debounces into one round per ~2 s burst.
//!
//! History retention over months is shown by the service's unit tests
//! (`service::monitor::tests::history_is_downsampled_and_kept_within_retention`), which can
//! move the clock; here the plugin runs on the real clock.

mod harness;

use ballast::engine::monitor::export::{import_history, import_snapshots};
use ballast::engine::monitor::ExportFormat;
use harness::{hash_hex, payloads, pubkey, Channel, FakeNode, Forward, Htlc, Lightningd, LightningdBuilder};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Generous: the machine running this is shared and slow.
const WAIT: Duration = Duration::from_secs(30);
const INVALID_PARAMS: i64 = harness::INVALID_PARAMS;
const ERR_UNKNOWN_CHANNEL: i64 = 2101;
const ERR_ALERT: i64 = 2102;
const ERR_FILE: i64 = 2103;

const CAP: u64 = 1_000_000_000;
const HALF: u64 = CAP / 2;

fn builder(node: &FakeNode) -> LightningdBuilder {
    Lightningd::builder()
        .node(node.clone())
        .timeout(Duration::from_secs(30))
        // Rounds come from notifications (and the one at start), not the timer.
        .option("ballast-monitor-interval", 3_600)
}

fn scid(n: usize) -> String {
    format!("{}x1x0", 200 + n)
}

fn channel(n: usize, to_us: u64) -> Channel {
    Channel::new(&pubkey(n), &scid(n), CAP, to_us)
}

/// Changes channel `scid` in the fake node.
fn edit(node: &FakeNode, scid: &str, f: impl FnOnce(&mut Channel)) {
    node.with(|s| {
        let c = s
            .channels
            .iter_mut()
            .find(|c| {
                c.short_channel_id.as_deref() == Some(scid)
                    || c.channel_id == hash_hex(&format!("channel_id:{scid}"))
            })
            .unwrap_or_else(|| panic!("no channel {scid}"));
        f(c)
    });
}

fn forward_event(ld: &Lightningd, a: &str, b: &str) {
    ld.notify(
        "forward_event",
        Forward::settled(a, b, 1_001_000, 1_000_000).to_notification(),
    );
}

fn active(ld: &Lightningd) -> Vec<Value> {
    ld.rpc_ok("monitor-alerts", json!({}))["alerts"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn find<'a>(alerts: &'a [Value], kind: &str, channel: &str) -> Option<&'a Value> {
    alerts
        .iter()
        .find(|a| a["type"] == kind && a["channel"] == channel)
}

/// Waits for an active alert of `kind` on `channel`, nudging with `poke` (a notification)
/// every few seconds in case the round ran before the change it waits for.
fn wait_alert(ld: &Lightningd, kind: &str, channel: &str, poke: &dyn Fn(&Lightningd)) -> Value {
    let mut last = Instant::now();
    ld.wait_until(&format!("{kind} alert on {channel}"), WAIT, |ld| {
        if last.elapsed() > Duration::from_secs(4) {
            poke(ld);
            last = Instant::now();
        }
        find(&active(ld), kind, channel).cloned()
    })
}

fn wait_cleared(ld: &Lightningd, kind: &str, channel: &str, poke: &dyn Fn(&Lightningd)) {
    let mut last = Instant::now();
    ld.wait_until(&format!("{kind} alert on {channel} to clear"), WAIT, |ld| {
        if last.elapsed() > Duration::from_secs(4) {
            poke(ld);
            last = Instant::now();
        }
        find(&active(ld), kind, channel).is_none().then_some(())
    })
}

fn alert_notifications(ld: &Lightningd) -> Vec<Value> {
    ld.notifications()
        .into_iter()
        .filter(|(m, _)| m == "ballast_alert")
        // cln-plugin sends custom notifications as the payload itself.
        .map(|(_, p)| p)
        .filter(|p| p.get("id").is_some())
        .collect()
}

fn set(ld: &Lightningd, params: Value) -> Value {
    ld.rpc_ok("monitor-set", params)
}

#[test]
fn manifest_declares_monitor_options_and_methods() {
    let node = FakeNode::new();
    let ld = builder(&node).start();
    let m = ld.manifest();
    for method in [
        "monitor-status",
        "monitor-stats",
        "monitor-alerts",
        "monitor-history",
        "monitor-export",
        "monitor-set",
        "monitor-report",
    ] {
        assert!(m.has_rpcmethod(method), "missing {method}: {:?}", m.rpcmethods);
    }
    let interval = m
        .option("ballast-monitor-interval")
        .expect("ballast-monitor-interval");
    assert_eq!(interval.default, Some(json!(60)));
    assert!(m.option("ballast-alert-webhook").is_some());
    assert!(m.option("ballast-metrics-bind").is_some());
    assert!(m.notifications.iter().any(|n| n == "ballast_alert"));
}

/// Every rule fires on its condition, with a notification and a log line at the matching
/// level, and clears when the condition ends.
#[test]
fn every_rule_fires_and_clears() {
    let node = FakeNode::new();
    // 1 low_local, 2 low_remote, 3 pending_htlcs, 4 htlc_near_expiry, 5 pending_open,
    // 6 closing, 7 force_closed, 8 peer_disconnected, 9 balance_change.
    for n in 1..=9 {
        node.add_channel(channel(n, HALF));
    }
    edit(&node, &scid(5), |c| {
        c.short_channel_id = None;
        c.state = "CHANNELD_AWAITING_LOCKIN".into();
    });
    let ld = builder(&node).start();
    let before = set(
        &ld,
        json!({"scope": "default", "rules": {
            "pending_htlcs": {"limit": 2},
            "pending_open": {"limit": 1},
            "peer_disconnected": {"limit": 1}
        }}),
    );
    assert_eq!(before["changed"], true);
    assert_eq!(before["effective"]["pending_htlcs"]["limit"], 2);
    // Let the round that monitor-set asked for see the healthy state.
    ld.wait_until("a snapshot after monitor-set", WAIT, |ld| {
        let st = ld.rpc_ok("monitor-stats", json!({}));
        (st["snapshots_taken"].as_u64().unwrap_or(0) >= 2).then_some(())
    });
    assert!(
        active(&ld).is_empty(),
        "healthy channels raise nothing: {:?}",
        active(&ld)
    );

    let h = node.blockheight();
    let hash = hash_hex("htlc");
    edit(&node, &scid(1), |c| c.to_us_msat = CAP / 100);
    edit(&node, &scid(2), |c| c.to_us_msat = CAP - CAP / 100);
    edit(&node, &scid(3), |c| {
        c.htlcs = (0..3).map(|i| Htlc::incoming(i, 1_000, h + 500, &hash)).collect();
    });
    edit(&node, &scid(4), |c| {
        c.htlcs = vec![Htlc::outgoing(9, 5_000, h + 10, &hash)]
    });
    edit(&node, &scid(6), |c| c.state = "CHANNELD_SHUTTING_DOWN".into());
    edit(&node, &scid(7), |c| c.state = "AWAITING_UNILATERAL".into());
    edit(&node, &scid(8), |c| c.peer_connected = false);
    edit(&node, &scid(9), |c| c.to_us_msat = CAP / 10 * 8);
    node.set_blockheight(h + 2);
    ld.notify("block_added", payloads::block_added(h + 2));
    ld.notify(
        "channel_state_changed",
        payloads::channel_state_changed(&pubkey(6), &scid(6), "CHANNELD_NORMAL", "CHANNELD_SHUTTING_DOWN"),
    );
    ld.notify("disconnect", payloads::disconnect(&pubkey(8)));
    forward_event(&ld, &scid(9), &scid(2));

    let poke = |ld: &Lightningd| forward_event(ld, &scid(1), &scid(9));
    let pending = format!("pending:{}", pubkey(5));
    let expect = [
        ("low_local", scid(1), "warning"),
        ("low_remote", scid(2), "warning"),
        ("pending_htlcs", scid(3), "warning"),
        ("htlc_near_expiry", scid(4), "critical"),
        ("pending_open", pending.clone(), "warning"),
        ("closing", scid(6), "info"),
        ("force_closed", scid(7), "critical"),
        ("peer_disconnected", scid(8), "warning"),
        ("balance_change", scid(9), "info"),
    ];
    for (kind, ch, severity) in &expect {
        let a = if *kind == "balance_change" {
            // A swing is between two snapshots: the next round, without a swing, clears it,
            // so it may be gone already; its notification is what must be there.
            ld.wait_until("balance_change notification", WAIT, |ld| {
                alert_notifications(ld)
                    .into_iter()
                    .find(|n| n["type"] == "balance_change" && n["channel"] == *ch)
            })
        } else {
            wait_alert(&ld, kind, ch, &poke)
        };
        assert_eq!(a["severity"], *severity, "{a:#}");
        assert_eq!(a["state"], "active");
        assert!(
            a["message"].as_str().unwrap().len() > 40,
            "a message says what to do: {a:#}"
        );
        assert_eq!(a["count"].as_u64().map(|c| c >= 1), Some(true));
    }
    // Announced: one notification each, with the payload's fields, and a log line whose
    // level matches the severity. Notifications go out through a queue, so the last may
    // trail the alert that `monitor-alerts` already shows.
    let sent = ld.wait_until("every alert announced", WAIT, |ld| {
        let sent = alert_notifications(ld);
        expect
            .iter()
            .all(|(kind, ch, _)| {
                sent.iter()
                    .any(|n| n["type"] == *kind && n["channel"] == *ch && n["state"] == "active")
            })
            .then_some(sent)
    });
    for (kind, ch, severity) in &expect {
        let n = sent
            .iter()
            .find(|n| n["type"] == *kind && n["channel"] == *ch && n["state"] == "active")
            .unwrap_or_else(|| panic!("no ballast_alert for {kind} on {ch}: {sent:#?}"));
        for field in [
            "id",
            "type",
            "severity",
            "channel",
            "peer",
            "message",
            "first_seen",
            "last_seen",
            "count",
            "state",
        ] {
            assert!(n.get(field).is_some(), "{field} missing in {n:#}");
        }
        let level = match *severity {
            // Never `error`: lightningd shows it as **BROKEN**, kept for ballast's faults.
            "critical" | "warning" => "warn",
            _ => "info",
        };
        let needle = format!("{kind} raised on {ch}");
        let line = ld.wait_for_log(&needle, WAIT);
        assert_eq!(line.level, level, "{line}");
    }

    // Conditions end.
    edit(&node, &scid(1), |c| c.to_us_msat = HALF);
    edit(&node, &scid(2), |c| c.to_us_msat = HALF);
    edit(&node, &scid(3), |c| c.htlcs.clear());
    edit(&node, &scid(4), |c| c.htlcs.clear());
    node.with(|s| {
        let c = s.channels.iter_mut().find(|c| c.peer_id == pubkey(5)).unwrap();
        c.short_channel_id = Some(scid(5));
        c.state = "CHANNELD_NORMAL".into();
        // Closed and forgotten by the node.
        s.channels
            .retain(|c| c.peer_id != pubkey(6) && c.peer_id != pubkey(7));
    });
    edit(&node, &scid(8), |c| c.peer_connected = true);
    ld.notify("connect", payloads::connect(&pubkey(8)));
    for (kind, ch, _) in &expect {
        wait_cleared(&ld, kind, ch, &poke);
    }
    // The refills were big swings themselves; once balances hold still, nothing is left.
    wait_cleared(&ld, "balance_change", &scid(1), &poke);
    wait_cleared(&ld, "balance_change", &scid(2), &poke);
    ld.wait_until("no active alerts", WAIT, |ld| {
        poke(ld);
        std::thread::sleep(Duration::from_secs(3));
        active(ld).is_empty().then_some(())
    });
    let all = ld.rpc_ok("monitor-alerts", json!({"which": "all", "limit": 1000}))["alerts"]
        .as_array()
        .cloned()
        .unwrap();
    for (kind, ch, _) in &expect {
        let a = find(&all, kind, ch).unwrap_or_else(|| panic!("{kind} on {ch} not stored"));
        assert_eq!(a["state"], "cleared");
        assert!(a["cleared_at"].as_u64() >= a["first_seen"].as_u64());
    }
    let sent = alert_notifications(&ld);
    for (kind, ch, _) in &expect {
        assert!(
            sent.iter()
                .any(|n| n["type"] == *kind && n["channel"] == *ch && n["state"] == "cleared"),
            "no cleared notification for {kind} on {ch}"
        );
    }
}

/// A standing condition is one alert, updated on every round, announced once; a burst of
/// events makes few rounds.
#[test]
fn standing_condition_is_one_alert_across_many_polls() {
    let node = FakeNode::new();
    node.add_channel(channel(1, CAP / 100));
    node.add_channel(channel(2, HALF));
    let ld = Lightningd::builder()
        .node(node.clone())
        .timeout(Duration::from_secs(30))
        .option("ballast-monitor-interval", 1)
        .start();
    let first = ld.wait_until("low_local raised", WAIT, |ld| {
        find(&active(ld), "low_local", &scid(1)).cloned()
    });
    let id = first["id"].clone();
    let a = ld.wait_until("ten polls", WAIT, |ld| {
        find(&active(ld), "low_local", &scid(1))
            .filter(|a| a["count"].as_u64() >= Some(10))
            .cloned()
    });
    assert_eq!(a["id"], id, "same alert, not a new one per poll");
    assert!(a["last_seen"].as_u64() > a["first_seen"].as_u64());
    let announced = alert_notifications(&ld)
        .into_iter()
        .filter(|n| n["type"] == "low_local")
        .count();
    assert_eq!(announced, 1, "announced once");
    let all = ld.rpc_ok("monitor-alerts", json!(["all"]))["alerts"]
        .as_array()
        .cloned()
        .unwrap();
    assert_eq!(all.iter().filter(|a| a["type"] == "low_local").count(), 1);

    // Acknowledged: still active (the channel is still drained), marked as seen.
    let acked = ld.rpc_ok("monitor-alerts", json!({"ack": id}));
    assert!(acked["acknowledged"]["acknowledged_at"].is_u64(), "{acked:#}");
    let again = find(&active(&ld), "low_local", &scid(1)).cloned().unwrap();
    assert_eq!(
        (again["id"].clone(), again["acknowledged_at"].is_u64()),
        (id, true)
    );
}

#[test]
fn a_burst_of_events_makes_one_round() {
    let node = FakeNode::new();
    node.add_channel(channel(1, HALF));
    node.add_channel(channel(2, HALF));
    let ld = builder(&node).start();
    // The round at start.
    node.wait_for_calls("listpeerchannels", 1, WAIT);
    std::thread::sleep(Duration::from_millis(500));
    let before = node.calls_to("listpeerchannels").len();
    for _ in 0..30 {
        forward_event(&ld, &scid(1), &scid(2));
    }
    ld.notify("block_added", payloads::block_added(node.blockheight() + 1));
    std::thread::sleep(Duration::from_secs(6));
    let rounds = node.calls_to("listpeerchannels").len() - before;
    // 31 events within a fraction of a second: one debounced round (two at worst, if the
    // burst straddled the end of the debounce window).
    assert!((1..=2).contains(&rounds), "{rounds} rounds for one burst");
}

/// A channel's own setting wins over its peer's, which wins over the default.
#[test]
fn per_channel_override_beats_the_default() {
    let node = FakeNode::new();
    node.add_channel(channel(1, CAP * 3 / 10));
    node.add_channel(channel(2, CAP * 3 / 10));
    node.add_channel(channel(3, CAP * 3 / 10));
    let ld = builder(&node).start();
    let poke = |ld: &Lightningd| forward_event(ld, &scid(1), &scid(2));
    // Default: alert under 40% — all three fire.
    set(
        &ld,
        json!(["default", r#"{"low_local":{"limit":{"ratio":0.4}}}"#]),
    );
    for n in 1..=3 {
        wait_alert(&ld, "low_local", &scid(n), &poke);
    }
    // Peer of channel 2: rule off. Channel 3: its own limit of 10% of capacity in msat.
    set(
        &ld,
        json!({"scope": pubkey(2), "rules": {"low_local": {"enabled": false}}}),
    );
    let ch = set(
        &ld,
        json!({"scope": scid(3), "rules": {"low_local": {"limit": {"msat": CAP / 10}}}}),
    );
    assert_eq!(ch["effective"]["low_local"]["limit"]["msat"], CAP / 10, "{ch:#}");
    assert_eq!(ch["rules"]["low_local"]["limit"]["msat"], CAP / 10);
    wait_cleared(&ld, "low_local", &scid(2), &poke);
    wait_cleared(&ld, "low_local", &scid(3), &poke);
    assert!(
        find(&active(&ld), "low_local", &scid(1)).is_some(),
        "default still applies to 1"
    );
    // The channel override beats its peer's: re-enable on channel 2 only.
    set(
        &ld,
        json!({"scope": scid(2), "rules": {"low_local": {"enabled": true}}}),
    );
    wait_alert(&ld, "low_local", &scid(2), &poke);
    // The whole configuration is shown without a scope; resetting drops an override.
    let cfg = set(&ld, json!({}));
    assert_eq!(cfg["config"]["defaults"]["low_local"]["limit"]["ratio"], 0.4);
    assert!(cfg["config"]["channels"][scid(3)].is_object(), "{cfg:#}");
    assert!(cfg["config"]["peers"][pubkey(2)].is_object(), "{cfg:#}");
    let r = set(&ld, json!({"scope": scid(3), "reset": true}));
    assert_eq!(r["changed"], true);
    wait_alert(&ld, "low_local", &scid(3), &poke);
}

/// The `ballast-monitor-*` options set the base defaults; `monitor-set default` lays its
/// changes over them, and resetting the default scope goes back to the option values.
#[test]
fn option_defaults_fire_are_overridden_and_reset_to() {
    let node = FakeNode::new();
    // Local 25%, 35% and 50% of capacity; channel 3 has three pending HTLCs.
    node.add_channel(channel(1, CAP / 4));
    node.add_channel(channel(2, CAP * 35 / 100));
    let mut busy = channel(3, HALF);
    let hash = hash_hex("opt");
    busy.htlcs = (0..3)
        .map(|i| Htlc::incoming(i, 1_000, node.blockheight() + 500, &hash))
        .collect();
    node.add_channel(busy);
    let ld = builder(&node)
        .option("ballast-monitor-low-local", "300000000msat")
        .option("ballast-monitor-max-pending-htlcs", 2)
        .start();
    let poke = |ld: &Lightningd| forward_event(ld, &scid(1), &scid(2));
    // The built-in 5% and 30 HTLCs would raise nothing; the options' 300000000msat and 2 do.
    wait_alert(&ld, "low_local", &scid(1), &poke);
    wait_alert(&ld, "pending_htlcs", &scid(3), &poke);
    assert!(
        find(&active(&ld), "low_local", &scid(2)).is_none(),
        "35% is above 300000000msat"
    );
    let shown = set(&ld, json!({"scope": "default"}));
    assert_eq!(
        shown["effective"]["low_local"]["limit"]["msat"], 300_000_000u64,
        "{shown:#}"
    );
    assert_eq!(
        shown["option_defaults"]["low_local"]["limit"]["msat"],
        300_000_000u64
    );
    assert_eq!(shown["effective"]["pending_htlcs"]["limit"], 2);
    assert_eq!(shown["rules"], json!({}), "no overrides yet: {shown:#}");

    // monitor-set default beats the option: 40% of capacity now catches channel 2 as well.
    let over = set(
        &ld,
        json!({"scope": "default", "rules": {"low_local": {"limit": {"ratio": 0.4}}}}),
    );
    assert_eq!(over["effective"]["low_local"]["limit"]["ratio"], 0.4, "{over:#}");
    assert_eq!(over["rules"]["low_local"]["limit"]["ratio"], 0.4);
    // Only the overridden rule changed: the option's HTLC limit still holds.
    assert_eq!(over["effective"]["pending_htlcs"]["limit"], 2);
    wait_alert(&ld, "low_local", &scid(2), &poke);

    // Reset goes back to the option value, not the built-in one.
    let r = set(&ld, json!({"scope": "default", "reset": true}));
    assert_eq!(r["changed"], true);
    assert_eq!(
        r["effective"]["low_local"]["limit"]["msat"], 300_000_000u64,
        "{r:#}"
    );
    assert_eq!(r["rules"], json!({}));
    wait_cleared(&ld, "low_local", &scid(2), &poke);
    let still = active(&ld);
    assert!(find(&still, "low_local", &scid(1)).is_some(), "{still:?}");
    assert!(find(&still, "pending_htlcs", &scid(3)).is_some(), "{still:?}");
    drop(ld);

    // A bad value disables the plugin with a reason naming the option.
    for (option, value) in [
        ("ballast-monitor-low-local", json!("1.5")),
        ("ballast-monitor-low-remote", json!("lots")),
        ("ballast-monitor-balance-change", json!("5sat")),
        ("ballast-monitor-max-pending-htlcs", json!(0)),
        ("ballast-monitor-htlc-expiry-blocks", json!(-1)),
        ("ballast-monitor-pending-open-blocks", json!(0)),
        ("ballast-monitor-disconnect-secs", json!(0)),
    ] {
        let (_ld, reason) = builder(&FakeNode::new())
            .option(option, value.clone())
            .start_expect_disabled();
        assert!(reason.contains(option), "{option}={value}: {reason}");
    }
}

/// A test HTTP server on loopback: answers every request with `status`, keeps the bodies.
struct Hook {
    url: String,
    hits: Arc<AtomicU64>,
    bodies: Arc<Mutex<Vec<Value>>>,
}

fn hook_server(status: u16) -> Hook {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alerts", l.local_addr().unwrap());
    let hits = Arc::new(AtomicU64::new(0));
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let (h, b) = (hits.clone(), bodies.clone());
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let body = loop {
                let n = c.read(&mut chunk).unwrap_or(0);
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&buf).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .and_then(|v| v.trim().parse::<usize>().ok())
                        })
                        .unwrap_or(0);
                    if body.len() >= len {
                        assert!(head.starts_with("POST /alerts "), "{head}");
                        break Some(body.to_string());
                    }
                }
            };
            h.fetch_add(1, Ordering::SeqCst);
            if let Some(v) = body.and_then(|t| serde_json::from_str(&t).ok()) {
                b.lock().unwrap().push(v);
            }
            let _ = write!(
                c,
                "HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    Hook { url, hits, bodies }
}

#[test]
fn webhook_receives_raised_and_cleared_alerts() {
    let hook = hook_server(200);
    let node = FakeNode::new();
    node.add_channel(channel(1, CAP / 100));
    node.add_channel(channel(2, HALF));
    let ld = builder(&node)
        .option("ballast-alert-webhook", hook.url.as_str())
        .start();
    let raised = ld.wait_until("webhook post", WAIT, |_| {
        hook.bodies
            .lock()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "low_local")
            .cloned()
    });
    assert_eq!(raised["channel"], scid(1));
    assert_eq!(raised["state"], "active");
    assert_eq!(raised["severity"], "warning");
    assert_eq!(raised["peer"], pubkey(1));
    edit(&node, &scid(1), |c| c.to_us_msat = HALF);
    forward_event(&ld, &scid(2), &scid(1));
    let cleared = ld.wait_until("cleared post", WAIT, |_| {
        hook.bodies
            .lock()
            .unwrap()
            .iter()
            .find(|b| b["type"] == "low_local" && b["state"] == "cleared")
            .cloned()
    });
    assert_eq!(cleared["id"], raised["id"]);
    let stats = ld.rpc_ok("monitor-stats", json!({}));
    assert!(stats["webhook"]["delivered"].as_u64() >= Some(2), "{stats:#}");
}

/// A server answering 503 gets exactly the bounded number of attempts per alert; one that is
/// not there at all costs nothing but log lines: rounds go on and methods answer at once.
#[test]
fn webhook_failures_are_retried_a_bounded_number_of_times_and_block_nothing() {
    let failing = hook_server(503);
    let node = FakeNode::new();
    node.add_channel(channel(1, CAP / 100));
    node.add_channel(channel(2, HALF));
    let ld = builder(&node)
        .option("ballast-alert-webhook", failing.url.as_str())
        .start();
    // 4 attempts with 1 s + 2 s + 4 s between them.
    ld.wait_until("four attempts", WAIT, |_| {
        (failing.hits.load(Ordering::SeqCst) >= 4).then_some(())
    });
    ld.wait_for_log("webhook: giving up on alert", WAIT);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        failing.hits.load(Ordering::SeqCst),
        4,
        "bounded: no attempt after giving up"
    );
    let stats = ld.rpc_ok("monitor-stats", json!({}));
    assert_eq!(stats["webhook"]["failed"], 1, "{stats:#}");
    assert_eq!(stats["webhook"]["attempts"], 4);

    // Nobody listening on the port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let node = FakeNode::new();
    node.add_channel(channel(1, CAP / 100));
    node.add_channel(channel(2, CAP - CAP / 100));
    let ld = builder(&node)
        .option("ballast-alert-webhook", format!("http://127.0.0.1:{port}/x"))
        .start();
    // Refilling channel 1 below would raise a balance_change too; keep the count exact.
    set(
        &ld,
        json!({"scope": "default", "rules": {"balance_change": {"enabled": false}}}),
    );
    ld.wait_until("both alerts", WAIT, |ld| (active(ld).len() >= 2).then_some(()));
    // While the webhook thread backs off, the engine keeps judging and methods answer.
    edit(&node, &scid(1), |c| c.to_us_msat = HALF);
    forward_event(&ld, &scid(1), &scid(2));
    wait_cleared(&ld, "low_local", &scid(1), &|ld| {
        forward_event(ld, &scid(1), &scid(2))
    });
    // The clear came while the webhook was still retrying: delivery does not hold rounds up.
    let s = ld.rpc_ok("monitor-stats", json!({}));
    assert!(
        s["webhook"]["failed"].as_u64() < Some(3),
        "every delivery had already given up before the round cleared the alert: {s:#}"
    );
    // Three alerts (two raised, one cleared), 4 attempts each, then done.
    ld.wait_until("all given up", Duration::from_secs(60), |ld| {
        let s = ld.rpc_ok("monitor-stats", json!({}));
        (s["webhook"]["failed"].as_u64() >= Some(3)).then_some(s)
    });
    let s = ld.rpc_ok("monitor-stats", json!({}));
    assert_eq!(
        s["webhook"]["attempts"].as_u64().unwrap(),
        4 * s["webhook"]["failed"].as_u64().unwrap()
    );
    assert_eq!(s["webhook"]["delivered"], 0);
}

#[test]
fn status_history_stats_and_export_round_trip() {
    let node = FakeNode::new();
    node.add_channel(channel(1, CAP / 4));
    let mut busy = channel(2, HALF);
    busy.htlcs = vec![Htlc::incoming(1, 7_000, node.blockheight() + 100, &hash_hex("x"))];
    node.add_channel(busy);
    node.add_forward(Forward::settled(&scid(1), &scid(2), 1_005_000, 1_000_000));
    let ld = builder(&node).start();

    let st = ld.rpc_ok("monitor-status", json!({}));
    let chans = st["channels"].as_array().unwrap();
    assert_eq!(chans.len(), 2);
    let one = ld.rpc_ok("monitor-status", json!([scid(2)]));
    let c = &one["channels"][0];
    assert_eq!(c["local_msat"], HALF);
    assert_eq!(c["remote_msat"], CAP - HALF);
    assert_eq!(c["capacity_msat"], CAP);
    assert_eq!(c["local_ratio"], 0.5);
    assert_eq!(c["htlcs"]["in"], 1);
    assert_eq!(c["htlcs"]["in_msat"], 7_000);

    // Income from an ordinary paid invoice.
    ld.call_hook(
        "invoice_payment",
        payloads::invoice_payment("inv-1", &hash_hex("pre"), 42_000),
    );
    let stats = ld.wait_until("income recorded", WAIT, |ld| {
        let s = ld.rpc_ok("monitor-stats", json!({}));
        (s["income"][0]["invoices"] == 1).then_some(s)
    });
    assert_eq!(stats["channels"], 2);
    assert_eq!(stats["totals"]["capacity_msat"], 2 * CAP);
    assert_eq!(stats["totals"]["local_msat"], CAP / 4 + HALF);
    assert_eq!(stats["averages"]["local_msat"], (CAP / 4 + HALF) / 2);
    assert_eq!(stats["fees"][0]["window"], "24h");
    assert_eq!(stats["fees"][0]["fees_msat"], 5_000);
    assert_eq!(stats["fees"][2]["forwards"], 1);
    assert_eq!(stats["income"][0]["received_msat"], 42_000);

    // A few rounds of history.
    for i in 0..3 {
        edit(&node, &scid(1), |c| c.to_us_msat = CAP / 4 + i * 1_000);
        forward_event(&ld, &scid(1), &scid(2));
        std::thread::sleep(Duration::from_millis(2_500));
    }
    let hist = ld.rpc_ok("monitor-history", json!({"scid": scid(1)}));
    let points = hist["points"].as_array().unwrap();
    assert!(!points.is_empty(), "{hist:#}");
    assert_eq!(hist["bucket_secs"], 300);
    let samples: u64 = points.iter().map(|p| p["samples"].as_u64().unwrap()).sum();
    assert!(samples >= 2, "{hist:#}");
    assert!(points[0]["local_avg_msat"].as_u64() >= Some(CAP / 4));

    // Export: every stored point, both formats, read back with ballast's own parsers. Paths
    // are relative to ballast-files-dir (default <lightning-dir>/<network>/ballast-files).
    let files = ld.lightning_dir().join("ballast-files");
    let csv = files.join("history.csv");
    let json_path = files.join("history.json");
    let r = ld.rpc_ok("monitor-export", json!({"path": "history.csv", "format": "csv"}));
    assert_eq!(r["format"], "csv");
    assert_eq!(r["path"], csv.to_str().unwrap(), "{r:#}");
    ld.rpc_ok("monitor-export", json!(["sub/../history.json"]));
    let from_csv = import_history(&std::fs::read_to_string(&csv).unwrap(), ExportFormat::Csv).unwrap();
    let from_json =
        import_history(&std::fs::read_to_string(&json_path).unwrap(), ExportFormat::Json).unwrap();
    assert_eq!(from_csv, from_json);
    assert_eq!(r["records"].as_u64(), Some(from_csv.len() as u64));
    // Subdirectories are made inside it.
    let rel = ld.rpc_ok("monitor-export", json!({"path": "daily/relative-history.json"}));
    let expected = files.join("daily").join("relative-history.json");
    assert!(expected.is_file(), "{rel:#}");
    assert_eq!(rel["path"], expected.to_str().unwrap(), "{rel:#}");
    // Both tiers of both channels; the 5-minute points are what monitor-history showed.
    let fine: Vec<_> = from_csv
        .iter()
        .filter(|p| p.scid.to_string() == scid(1) && p.bucket_secs == 300)
        .collect();
    assert_eq!(fine.len(), points.len());
    for (p, q) in fine.iter().zip(points) {
        assert_eq!(p.start, q["start"].as_u64().unwrap());
        assert_eq!(p.local_avg.0, q["local_avg_msat"].as_u64().unwrap());
        assert_eq!(p.samples as u64, q["samples"].as_u64().unwrap());
    }
    assert!(from_csv.iter().any(|p| p.bucket_secs == 3_600));
    assert!(from_csv.iter().any(|p| p.scid.to_string() == scid(2)));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&csv).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // Snapshots, one channel.
    let snap_path = files.join("snap.csv");
    ld.rpc_ok(
        "monitor-export",
        json!({"path": "snap.csv", "format": "csv", "data": "snapshots", "scid": scid(2)}),
    );
    let snaps = import_snapshots(&std::fs::read_to_string(&snap_path).unwrap(), ExportFormat::Csv).unwrap();
    assert_eq!(snaps.len(), 1);
    assert_eq!(
        (snaps[0].local.0, snaps[0].htlcs_in, snaps[0].htlc_in_msat.0),
        (HALF, 1, 7_000)
    );

    // An existing file is refused unless overwrite=true.
    let e = ld
        .rpc("monitor-export", json!({"path": "history.csv"}))
        .unwrap_err();
    assert_eq!(e.code, ERR_FILE, "{e}");
    assert!(e.message.contains("overwrite"), "{e}");
    assert_eq!(
        import_history(&std::fs::read_to_string(&csv).unwrap(), ExportFormat::Csv).unwrap(),
        from_csv
    );
    ld.rpc_ok(
        "monitor-export",
        json!({"path": "history.csv", "format": "json", "overwrite": true}),
    );
    assert!(std::fs::read_to_string(&csv).unwrap().starts_with('['));

    // Nothing outside the directory, and no file ballast did not write, even when asked to
    // overwrite: a rune granting monitor-* must not be a way to destroy the node.
    let secret = ld.lightning_dir().join("hsm_secret");
    std::fs::write(&secret, "do not touch").unwrap();
    let theirs = files.join("theirs.csv");
    std::fs::write(&theirs, "mine").unwrap();
    for (path, code) in [
        (secret.to_str().unwrap().to_string(), INVALID_PARAMS),
        ("../hsm_secret".to_string(), INVALID_PARAMS),
        ("daily/../../hsm_secret".to_string(), INVALID_PARAMS),
        ("theirs.csv".to_string(), ERR_FILE),
    ] {
        for method in ["monitor-export", "monitor-report"] {
            let e = ld
                .rpc(method, json!({"path": path, "overwrite": true}))
                .expect_err(&format!("{method} {path} should be refused"));
            assert_eq!(e.code, code, "{method} {path}: {e}");
        }
    }
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "do not touch");
    assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "mine");
}

/// Counts element openings `<name ` / `<name>` and closings `</name>`.
fn balanced(html: &str, name: &str) -> bool {
    let opens = html
        .match_indices(&format!("<{name}"))
        .filter(|(i, _)| matches!(html[i + name.len() + 1..].chars().next(), Some(' ' | '>' | '\n')))
        .count();
    opens > 0 && opens == html.matches(&format!("</{name}>")).count()
}

#[test]
fn report_is_a_self_contained_html_file() {
    let node = FakeNode::new();
    node.add_channel(channel(1, CAP / 100));
    node.add_channel(channel(2, CAP / 10 * 7));
    node.add_forward(Forward::settled(&scid(1), &scid(2), 1_002_000, 1_000_000));
    let ld = builder(&node).start();
    ld.wait_until("an alert", WAIT, |ld| (!active(ld).is_empty()).then_some(()));
    forward_event(&ld, &scid(2), &scid(1));
    std::thread::sleep(Duration::from_millis(2_500));
    let path = ld.lightning_dir().join("ballast-files").join("report.html");
    let r = ld.rpc_ok("monitor-report", json!(["report.html"]));
    assert_eq!(r["channels_charted"], 2, "{r:#}");
    let html = std::fs::read_to_string(&path).unwrap();
    assert_eq!(r["bytes"].as_u64(), Some(html.len() as u64));
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<svg"));
    for tag in ["html", "head", "body", "svg", "table"] {
        assert!(balanced(&html, tag), "unbalanced <{tag}>");
    }
    for banned in ["<script", "<link", "<img", "src=", "href=", "@import"] {
        assert!(
            !html.contains(banned),
            "report loads something from elsewhere: {banned}"
        );
    }
    assert!(html.contains("Fees earned") && html.contains("Balance history") && html.contains("low_local"));
    assert!(html.contains(&scid(1)));
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let e = ld.rpc("monitor-report", json!(["report.html"])).unwrap_err();
    assert_eq!(e.code, ERR_FILE);
}

fn http_get(addr: &str, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: */*\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    (head.to_string(), body.to_string())
}

#[test]
fn metrics_are_scraped_over_loopback() {
    let addr = free_addr();
    let node = FakeNode::new();
    node.add_channel(channel(1, CAP / 100));
    let mut busy = channel(2, HALF);
    busy.htlcs = vec![Htlc::outgoing(1, 9_000, node.blockheight() + 100, &hash_hex("y"))];
    node.add_channel(busy);
    let ld = builder(&node)
        .option("ballast-metrics-bind", addr.as_str())
        .start();
    ld.wait_for_log("metrics: serving", WAIT);
    ld.wait_until("an alert", WAIT, |ld| (!active(ld).is_empty()).then_some(()));
    ld.rpc_ok("hodl-invoice", json!({"amount_msat": 1000, "description": "m"}));
    let (head, body) = http_get(&addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    for line in [
        format!(
            "ballast_channel_local_msat{{channel=\"{}\"}} {}",
            scid(1),
            CAP / 100
        ),
        format!(
            "ballast_channel_remote_msat{{channel=\"{}\"}} {}",
            scid(2),
            CAP - HALF
        ),
        format!(
            "ballast_channel_htlcs{{channel=\"{}\",direction=\"out\"}} 1",
            scid(2)
        ),
        "ballast_alerts_active{type=\"low_local\"} 1".to_string(),
        "ballast_alerts_active{type=\"force_closed\"} 0".to_string(),
        "ballast_hodl_invoices{state=\"OPEN\"} 1".to_string(),
        "ballast_fee_changes_total 0".to_string(),
        "ballast_rebalances_total 0".to_string(),
        "ballast_rebalance_fees_msat_total 0".to_string(),
        "ballast_rebalance_fees_24h_msat 0".to_string(),
    ] {
        assert!(body.lines().any(|l| l == line), "missing `{line}` in:\n{body}");
    }
    assert!(body.ends_with("# EOF\n"));
    let (head, _) = http_get(&addr, "/other");
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
}

/// A loopback address nothing listens on (for `ballast-metrics-bind`).
fn free_addr() -> String {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("127.0.0.1:{port}")
}

/// Our channels to A (full) and B (empty), each charging 1000 ppm, and A - E - B: a circle
/// a rebalance from A to B can take.
fn circle_node() -> FakeNode {
    let node = FakeNode::new();
    let (a, b, e) = (pubkey(1), pubkey(2), pubkey(5));
    for (peer, sc, local) in [(&a, "100x1x0", CAP * 9 / 10), (&b, "101x1x0", CAP / 10)] {
        let mut c = Channel::new(peer, sc, CAP, local);
        c.fee_proportional_millionths = 1000;
        node.add_public_channel(c);
    }
    node.add_network_channel(&a, &e, "200x1x0", 2 * CAP, CAP);
    node.add_network_channel(&e, &b, "201x1x0", 2 * CAP, CAP);
    node
}

/// `rebalance-execute` of 100k sat from A to B round [`circle_node`]'s circle; the fake
/// node hands the circle's last HTLC to the plugin's hook while it runs.
fn move_a_to_b(ld: &Lightningd) -> Value {
    harness::fake_node::deliver_htlcs(ld, || {
        ld.rpc_ok(
            "rebalance-execute",
            json!({"source": "100x1x0", "sink": "101x1x0", "amount_msat": 100_000_000u64, "max_fee_msat": 1_000_000}),
        )
    })
}

/// A successful rebalance shows up in the metrics: its fee in the 24 h and all-time spend,
/// and one more success.
#[test]
fn metrics_show_rebalance_spend() {
    let addr = free_addr();
    let node = circle_node();
    let ld = builder(&node)
        .option("ballast-metrics-bind", addr.as_str())
        .start();
    ld.wait_for_log("metrics: serving", WAIT);
    let r = move_a_to_b(&ld);
    let fee = r["fee_msat"].as_u64().unwrap_or(0);
    assert!(fee > 0, "a move through E pays fees: {r:#}");
    let (head, body) = http_get(&addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let successes = ld.rpc_ok("rebalance-status", json!({}))["attempts"]
        .as_array()
        .map_or(0, |a| a.iter().filter(|x| x["outcome"] == "success").count());
    assert!(successes >= 1, "{r:#}");
    for line in [
        format!("ballast_rebalance_fees_msat_total {fee}"),
        format!("ballast_rebalance_fees_24h_msat {fee}"),
        format!("ballast_rebalances_total {successes}"),
    ] {
        assert!(body.lines().any(|l| l == line), "missing `{line}` in:\n{body}");
    }
}

/// The metrics cover every job, not only monitoring: hold invoices and the HTLCs held for
/// them, fee changes, and rebalance attempts by outcome with what they cost and moved. The
/// all-time rebalance figures come from the stored attempts, so they survive a restart.
#[test]
fn metrics_cover_hodl_fees_and_rebalancing() {
    let addr = free_addr();
    let base = tempfile::tempdir().unwrap();
    let node = circle_node();
    let start = || {
        builder(&node)
            .base_dir(base.path())
            .option("ballast-metrics-bind", addr.as_str())
            .start()
    };
    let has = |body: &str, line: &str| {
        assert!(body.lines().any(|l| l == line), "missing `{line}` in:\n{body}");
    };
    let mut ld = start();
    ld.wait_for_log("metrics: serving", WAIT);

    // Rebalancing: one execution, whose attempts rebalance-status lists.
    let r = move_a_to_b(&ld);
    let attempts = ld.rpc_ok("rebalance-status", json!({}))["attempts"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let of = |outcome: &'static str| attempts.iter().filter(move |x| x["outcome"] == outcome);
    let (succeeded, failed) = (of("success").count(), of("failed").count());
    let moved: u64 = of("success").map(|x| x["amount_msat"].as_u64().unwrap()).sum();
    let paid: u64 = of("success").map(|x| x["fee_msat"].as_u64().unwrap()).sum();
    assert!(succeeded >= 1 && moved > 0 && paid > 0, "{r:#}");
    assert_eq!(of("pending").count(), 0, "{attempts:#?}");

    // Fee policy: one change, forced on one channel.
    ld.rpc_ok(
        "fee-policy",
        json!({"toml": "[defaults]\nmin_ppm = 0\nmax_ppm = 2000\n\n[[rule]]\nname = \"flat\"\nmatch.scid = [\"101x1x0\"]\nstrategy = { type = \"static\", ppm = 500 }\n"}),
    );
    let applied = ld.rpc_ok("fee-apply", json!({"scid": "101x1x0", "force": true}));
    assert_eq!(
        ld.rpc_ok("fee-history", json!({}))["changes"]
            .as_array()
            .map(Vec::len),
        Some(1),
        "{applied:#}"
    );

    // Hold invoices: one paid and held, one canceled, one left open.
    let held = ld.rpc_ok(
        "hodl-invoice",
        json!({"amount_msat": 70_000, "description": "held"}),
    );
    let gone = ld.rpc_ok(
        "hodl-invoice",
        json!({"amount_msat": 1_000, "description": "gone"}),
    );
    ld.rpc_ok(
        "hodl-invoice",
        json!({"amount_msat": 2_000, "description": "open"}),
    );
    ld.rpc_ok("hodl-cancel", json!({"payment_hash": gone["payment_hash"]}));
    let height = node.blockheight();
    let hash = held["payment_hash"].as_str().unwrap();
    let mut htlc = payloads::htlc_accepted(hash, 70_000, height + 100, height);
    htlc["onion"]["payment_secret"] = held["payment_secret"].clone();
    htlc["htlc"]["short_channel_id"] = json!("101x1x0");
    let pending = ld.send_hook("htlc_accepted", htlc);
    ld.wait_until("the invoice to be ACCEPTED", WAIT, |ld| {
        (ld.rpc_ok("hodl-lookup", json!({"payment_hash": hash}))["state"] == "ACCEPTED").then_some(())
    });
    assert!(!ld.hook_answered(&pending), "the HTLC is held");

    let (head, body) = http_get(&addr, "/metrics");
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    for line in [
        "ballast_hodl_invoices{state=\"OPEN\"} 1".to_string(),
        "ballast_hodl_invoices{state=\"ACCEPTED\"} 1".to_string(),
        "ballast_hodl_invoices{state=\"CANCELED\"} 1".to_string(),
        "ballast_hodl_invoices{state=\"SETTLED\"} 0".to_string(),
        "ballast_hodl_held_htlcs 1".to_string(),
        "ballast_hodl_held_msat 70000".to_string(),
        "ballast_fee_changes_total 1".to_string(),
        "ballast_fee_decisions_pending 0".to_string(),
        format!("ballast_rebalances_total {succeeded}"),
        format!("ballast_rebalance_attempts_total{{outcome=\"success\"}} {succeeded}"),
        format!("ballast_rebalance_attempts_total{{outcome=\"failed\"}} {failed}"),
        "ballast_rebalance_pending_attempts 0".to_string(),
        "ballast_rebalance_pending_fees_msat 0".to_string(),
        format!("ballast_rebalance_fees_msat_total {paid}"),
        format!("ballast_rebalance_fees_24h_msat {paid}"),
        format!("ballast_rebalance_moved_msat_total {moved}"),
    ] {
        has(&body, &line);
    }
    assert!(
        body.lines()
            .any(|l| l.starts_with("ballast_forward_events_total ")),
        "{body}"
    );

    // Canceling answers the held HTLC; after a restart the all-time figures are read back
    // from the store while the since-start counters begin again.
    ld.rpc_ok("hodl-cancel", json!({"payment_hash": hash}));
    ld.wait_hook(&pending, WAIT);
    ld.stop(WAIT);
    drop(ld);
    let ld = start();
    ld.wait_for_log("metrics: serving", WAIT);
    let (_, body) = http_get(&addr, "/metrics");
    for line in [
        "ballast_hodl_invoices{state=\"CANCELED\"} 2".to_string(),
        "ballast_hodl_held_htlcs 0".to_string(),
        "ballast_hodl_held_msat 0".to_string(),
        "ballast_fee_changes_total 0".to_string(),
        "ballast_rebalances_total 0".to_string(),
        format!("ballast_rebalance_attempts_total{{outcome=\"success\"}} {succeeded}"),
        format!("ballast_rebalance_attempts_total{{outcome=\"failed\"}} {failed}"),
        format!("ballast_rebalance_fees_msat_total {paid}"),
        format!("ballast_rebalance_moved_msat_total {moved}"),
    ] {
        has(&body, &line);
    }
}

#[test]
fn bad_params_and_options_give_errors() {
    let node = FakeNode::new();
    node.add_channel(channel(1, HALF));
    let ld = builder(&node).start();
    let file = ld.lightning_dir().join("ballast-files").join("f");
    let cases: Vec<(&str, Value, i64)> = vec![
        ("monitor-status", json!(["nope"]), INVALID_PARAMS),
        ("monitor-status", json!({"scid": "9x9x9"}), ERR_UNKNOWN_CHANNEL),
        ("monitor-status", json!({"bogus": 1}), INVALID_PARAMS),
        ("monitor-stats", json!([1]), INVALID_PARAMS),
        ("monitor-alerts", json!({"which": "some"}), INVALID_PARAMS),
        ("monitor-alerts", json!({"ack": 999}), ERR_ALERT),
        ("monitor-alerts", json!({"ack": "x"}), INVALID_PARAMS),
        ("monitor-history", json!({}), INVALID_PARAMS),
        ("monitor-history", json!([scid(1), 200, 100]), INVALID_PARAMS),
        ("monitor-history", json!(["9x9x9"]), ERR_UNKNOWN_CHANNEL),
        ("monitor-export", json!({}), INVALID_PARAMS),
        (
            "monitor-export",
            json!({"path": "f", "format": "xml"}),
            INVALID_PARAMS,
        ),
        (
            "monitor-export",
            json!({"path": "f", "data": "everything"}),
            INVALID_PARAMS,
        ),
        (
            "monitor-export",
            json!({"path": "/nonexistent-dir/x/y.csv"}),
            INVALID_PARAMS,
        ),
        (
            "monitor-export",
            json!({"path": "f", "scid": "9x9x9"}),
            ERR_UNKNOWN_CHANNEL,
        ),
        ("monitor-set", json!({"scope": "nobody"}), INVALID_PARAMS),
        (
            "monitor-set",
            json!({"scope": "default", "rules": r#"{"low_locl":{}}"#}),
            INVALID_PARAMS,
        ),
        (
            "monitor-set",
            json!({"scope": "default", "rules": "{not json"}),
            INVALID_PARAMS,
        ),
        (
            "monitor-set",
            json!({"scope": "default", "rules": {"low_local": {"limit": {"ratio": 2}}}}),
            INVALID_PARAMS,
        ),
        (
            "monitor-set",
            json!({"scope": "default", "rules": {}}),
            INVALID_PARAMS,
        ),
        (
            "monitor-set",
            json!({"scope": "default", "rules": {"closing": {"enabled": false}}, "reset": true}),
            INVALID_PARAMS,
        ),
        ("monitor-set", json!({"reset": true}), INVALID_PARAMS),
        ("monitor-report", json!({}), INVALID_PARAMS),
        ("monitor-report", json!({"path": "f", "days": 0}), INVALID_PARAMS),
    ];
    for (method, params, code) in cases {
        let e = ld
            .rpc(method, params.clone())
            .expect_err(&format!("{method} {params} should fail"));
        assert_eq!(e.code, code, "{method} {params}: {e}");
    }
    // Nothing was changed by the refused calls.
    let cfg = set(&ld, json!({}));
    assert_eq!(cfg["config"]["defaults"]["closing"]["enabled"], true);
    assert!(!file.exists());
    drop(ld);

    for (option, value, needle) in [
        (
            "ballast-alert-webhook",
            "https://example.invalid/hook",
            "https is not supported",
        ),
        ("ballast-alert-webhook", "localhost:9", "must start with http://"),
        ("ballast-metrics-bind", "everywhere", "ballast-metrics-bind"),
    ] {
        let (_ld, reason) = builder(&FakeNode::new())
            .option(option, value)
            .start_expect_disabled();
        assert!(reason.contains(needle), "{option}={value}: {reason}");
    }
    let (_ld, reason) = Lightningd::builder()
        .option("ballast-monitor-interval", 0)
        .start_expect_disabled();
    assert!(reason.contains("ballast-monitor-interval"), "{reason}");
}
