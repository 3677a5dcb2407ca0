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
