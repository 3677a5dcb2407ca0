"""Balance monitoring on real lightningd + bitcoind (regtest).

Written to run against real daemons; skipped with one line where they are absent.
"""


def active_alerts(node, kind, scid):
    alerts = node.rpc.call("monitor-alerts", {"which": "active"})["alerts"]
    return [a for a in alerts if a["type"] == kind and a.get("short_channel_id") == scid]


def test_drained_channel_raises_low_local_then_clears(node_factory, plugin_path, pyln):
    l1, l2 = node_factory.line_graph(
        2,
        opts=[{"plugin": plugin_path, "ballast-monitor-interval": 1}, {}],
        wait_for_announce=True,
    )
    scid = l1.get_channel_scid(l2)
    # A low-local threshold that the payments below cross: 30% of capacity.
    l1.rpc.call("monitor-set", {"scope": scid, "rules": {"low_local": {"limit": {"ratio": 0.3}}}})
    cap = [c for c in l1.rpc.listpeerchannels()["channels"] if c["short_channel_id"] == scid][0][
        "total_msat"
    ]

    # Drain l1's side below 30% by paying l2.
    inv = l2.rpc.invoice(int(cap * 0.75), "drain", "drain")
    l1.rpc.pay(inv["bolt11"])
    pyln.wait_for(lambda: len(active_alerts(l1, "low_local", scid)) == 1, timeout=60)
    alert = active_alerts(l1, "low_local", scid)[0]
    assert alert["severity"] == "warning"
    l1.daemon.wait_for_log(r"low_local raised on {}".format(scid))

    # A payment back clears it.
    back = l1.rpc.invoice(int(cap * 0.5), "back", "back")
    l2.rpc.pay(back["bolt11"])
    pyln.wait_for(lambda: len(active_alerts(l1, "low_local", scid)) == 0, timeout=60)
    st = l1.rpc.call("monitor-status", {"scid": scid})
    assert st["channels"][0]["local_msat"] > cap * 0.3


def scrape(port):
    import urllib.request

    with urllib.request.urlopen("http://127.0.0.1:{}/metrics".format(port), timeout=10) as r:
        assert "openmetrics-text" in r.headers["Content-Type"]
        return r.read().decode().splitlines()


def test_metrics_cover_hold_invoices_and_fees(node_factory, plugin_path, pyln):
    """The metrics endpoint on real lightningd shows the channel, a held hold-invoice HTLC
    with its amount, and a fee change that lightningd applied."""
    import socket

    from helpers import pay_in_thread

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    l1, l2 = node_factory.line_graph(
        2,
        opts=[{}, {"plugin": plugin_path, "ballast-metrics-bind": "127.0.0.1:{}".format(port)}],
        wait_for_announce=True,
    )
    assert l2.daemon.is_in_log("metrics: serving")
    scid = l2.get_channel_scid(l1)

    inv = l2.rpc.call("hodl-invoice", {"amount_msat": 30_000_000, "description": "metrics"})
    phash = inv["payment_hash"]
    done = pay_in_thread(l1, inv["bolt11"])
    held = l2.rpc.call("hodl-lookup", {"payment_hash": phash, "wait_for_state": "ACCEPTED", "timeout": 60})
    amount = sum(h["amount_msat"] for h in held["htlcs"])

    l2.rpc.call(
        "fee-policy",
        {
            "toml": '[defaults]\nmin_ppm = 0\nmax_ppm = 5000\n\n[[rule]]\nname = "flat"\n'
            'strategy = { type = "static", ppm = 1234 }\n'
        },
    )
    l2.rpc.call("fee-apply", {"scid": scid, "force": True})
    ours = [c for c in l2.rpc.listpeerchannels()["channels"] if c["short_channel_id"] == scid][0]
    assert ours["updates"]["local"]["fee_proportional_millionths"] == 1234

    lines = scrape(port)
    for want in [
        'ballast_hodl_invoices{state="ACCEPTED"} 1',
        "ballast_hodl_held_htlcs {}".format(len(held["htlcs"])),
        "ballast_hodl_held_msat {}".format(amount),
        "ballast_fee_changes_total 1",
        "ballast_rebalance_attempts_total{outcome=\"success\"} 0",
        "ballast_rebalance_pending_attempts 0",
    ]:
        assert want in lines, "missing {!r} in {}".format(want, lines)
    assert any(line.startswith('ballast_channel_local_msat{channel="') for line in lines), lines

    l2.rpc.call("hodl-cancel", {"payment_hash": phash})
    assert "err" in done()
    lines = scrape(port)
    for want in [
        'ballast_hodl_invoices{state="CANCELED"} 1',
        "ballast_hodl_held_htlcs 0",
        "ballast_hodl_held_msat 0",
    ]:
        assert want in lines, "missing {!r} in {}".format(want, lines)
