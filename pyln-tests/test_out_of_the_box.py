"""ballast as a new operator meets it: only `plugin=` (issue 14), on real lightningd + bitcoind.

Each test names what it changes beyond `plugin=`; the fee test shortens the start-up hold
(BALLAST_DEVELOPER lets it go below CLN's 300 s gossip floor) so it ends within the test.
"""

import json
import os
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NOT_MSAT = set(json.loads((HERE.parent / "tests" / "msat_names.json").read_text())["not_msat"])


def _ppm(node, scid):
    return next(
        c["fee_proportional_millionths"]
        for c in node.rpc.listpeerchannels()["channels"]
        if c.get("short_channel_id") == scid
    )


def test_forwards_move_a_fee_with_no_policy_file(
    node_factory, plugin_path, pyln, monkeypatch, forwards_move_fee
):
    monkeypatch.setenv("BALLAST_DEVELOPER", "1")
    l1, l2, l3 = node_factory.line_graph(
        3,
        opts=[
            {},
            {"plugin": plugin_path, "ballast-fee-min-interval": 5, "ballast-fee-coalesce": 1},
            {},
        ],
        wait_for_announce=True,
    )
    scid23 = l2.get_channel_scid(l3)
    policy = l2.rpc.call("fee-policy")
    assert policy["source"] == "default", policy
    assert policy["policy"]["rules"][0]["name"] == "builtin-balance", policy
    assert l2.rpc.call("ballast-status")["fees"]["policy_source"] == "default"
    # Right after start, the preview shows what the built-in policy would do, and that it
    # waits for the start-up hold.
    preview = l2.rpc.call("fee-preview")["channels"]
    assert {c["short_channel_id"] for c in preview} >= {scid23}, preview
    assert all(c["rule"]["name"] == "builtin-balance" for c in preview), preview
    start_ppm = _ppm(l2, scid23)
    # No policy file, no fee-apply: the forwards alone move the drained channel's fee.
    change = forwards_move_fee(l1, l2, l3, scid23)
    assert change["rule"]["name"] == "builtin-balance", change
    new_ppm = change["new"]["ppm"]
    assert new_ppm > start_ppm, change
    assert 10 <= new_ppm <= 1000, change
    pyln.wait_for(lambda: _ppm(l2, scid23) == new_ppm)


def test_rebalance_between_channels_opened_seconds_ago(node_factory, plugin_path, pyln):
    # l1 -> l2 -> l3 -> l4 -> l1. ballast on l1 loaded its graph at start, before any of
    # these channels existed; ballast-graph-refresh stays at its 600 s default.
    l1, l2, l3, l4 = node_factory.line_graph(
        4, opts=[{"plugin": plugin_path}, {}, {}, {}], wait_for_announce=True
    )
    node_factory.join_nodes([l4, l1], wait_for_announce=True)
    pyln.wait_for(lambda: len(l1.rpc.listchannels()["channels"]) >= 8)
    source = l1.get_channel_scid(l2)  # funded by l1: all ours
    sink = l4.get_channel_scid(l1)  # funded by l4: nothing ours
    before = {c["short_channel_id"]: c["to_us_msat"] for c in l1.rpc.listpeerchannels()["channels"]}
    res = l1.rpc.call(
        "rebalance-execute", {"source": source, "sink": sink, "amount_msat": 100_000_000}
    )
    move = res["moves"][0]
    assert move["status"] == "done", res
    assert move["moved_msat"] == 100_000_000, res
    assert res["fee_msat"] > 0, res

    def balances():
        return {c["short_channel_id"]: c["to_us_msat"] for c in l1.rpc.listpeerchannels()["channels"]}

    # The HTLCs leave the commitments a moment after the payment completes.
    expected = {
        source: before[source] - 100_000_000 - res["fee_msat"],
        sink: before[sink] + 100_000_000,
    }
    pyln.wait_for(lambda: {k: balances()[k] for k in expected} == expected)
    graph = l1.rpc.call("rebalance-status")["graph"]
    assert graph["channels"] >= 4, graph


def test_critical_alerts_are_no_broken_lines(node_factory, plugin_path, pyln):
    # A full run: start, traffic, a force close (a critical alert), stop. pyln-testing's
    # teardown fails the test on any **BROKEN** line; the errlog must show no panic.
    l1, l2 = node_factory.line_graph(
        2, opts=[{"plugin": plugin_path, "may_reconnect": True}, {"may_reconnect": True}]
    )
    inv = l2.rpc.invoice(10_000_000, "a", "a")
    l1.rpc.pay(inv["bolt11"])
    l2.stop()
    l1.rpc.close(l2.info["id"], 1)

    def critical():
        alerts = l1.rpc.call("monitor-alerts", {"which": "all"})["alerts"]
        return [a for a in alerts if a["severity"] == "critical"]

    pyln.wait_for(lambda: critical(), timeout=90)
    alert = critical()[0]
    line = l1.daemon.wait_for_log(r"alert {} {} raised".format(alert["id"], alert["type"]))
    assert "UNUSUAL" in line, line
    l1.rpc.plugin_stop(os.path.basename(plugin_path))
    l1.stop()
    errlog = Path(l1.daemon.lightning_dir) / "errlog"
    text = errlog.read_text() if errlog.exists() else ""
    assert "panicked" not in text and "SendError" not in text, text


def test_exports_stay_in_their_directory(node_factory, plugin_path, pyln):
    l1, l2 = node_factory.line_graph(2, opts=[{"plugin": plugin_path}, {}])
    net_dir = Path(l1.daemon.lightning_dir) / pyln.TEST_NETWORK
    files = net_dir / "ballast-files"
    secret = net_dir / "hsm_secret"
    secret_bytes = secret.read_bytes()

    ok = l1.rpc.call("monitor-export", {"path": "history.json"})
    assert ok["path"] == str(files / "history.json"), ok
    assert (files / "history.json").is_file()
    # Written by ballast: it may replace it when asked.
    l1.rpc.call("monitor-export", {"path": "history.json", "overwrite": True})

    for path in [str(secret), "../hsm_secret", "a/../../hsm_secret", "../lightningd.sqlite3"]:
        for method in ["monitor-export", "monitor-report"]:
            try:
                l1.rpc.call(method, {"path": path, "overwrite": True})
            except pyln.RpcError as e:
                assert e.error["code"] == -32602, e.error
            else:
                raise AssertionError("{} {} was not refused".format(method, path))
    assert secret.read_bytes() == secret_bytes

    theirs = files / "theirs.json"
    theirs.write_text("not ballast's")
    for method in ["monitor-export", "monitor-report"]:
        try:
            l1.rpc.call(method, {"path": "theirs.json", "overwrite": True})
        except pyln.RpcError as e:
            assert e.error["code"] == 2103, e.error
            assert "not written by ballast" in e.error["message"], e.error
        else:
            raise AssertionError("{} replaced a file ballast did not write".format(method))
    assert theirs.read_text() == "not ballast's"

    # fee-policy file= reads only from there (or the configured policy file).
    try:
        l1.rpc.call("fee-policy", {"file": str(secret)})
    except pyln.RpcError as e:
        assert e.error["code"] == -32602, e.error
        assert "ballast-files" in e.error["message"], e.error
    else:
        raise AssertionError("fee-policy read a file outside its directory")
    assert l1.rpc.call("fee-policy")["source"] == "default"


def _unnamed_integers(at, field, v, out):
    if isinstance(v, dict):
        for k, x in v.items():
            _unnamed_integers("{}/{}".format(at, k), k, x, out)
    elif isinstance(v, list):
        for i, x in enumerate(v):
            _unnamed_integers("{}/{}".format(at, i), field, x, out)
    elif isinstance(v, int) and not isinstance(v, bool):
        if field != "msat" and not field.endswith("_msat") and field not in NOT_MSAT:
            out.append("{} = {}".format(at, v))


def test_every_answer_names_its_msat_amounts(node_factory, plugin_path, pyln):
    l1, l2, l3 = node_factory.line_graph(
        3, opts=[{}, {"plugin": plugin_path}, {}], wait_for_announce=True
    )
    node_factory.join_nodes([l3, l1], wait_for_announce=True)
    pyln.wait_for(lambda: len(l2.rpc.listchannels()["channels"]) >= 6)
    for _ in range(2):
        inv = l3.rpc.invoice(100_000_000, "w{}".format(time.time()), "walk")
        l1.rpc.pay(inv["bolt11"])
    scid12 = l1.get_channel_scid(l2)
    scid23 = l2.get_channel_scid(l3)
    inv = l2.rpc.call("hodl-invoice", {"amount_msat": 50_000, "description": "walk"})
    inv2 = l2.rpc.call("hodl-invoice", {"amount_msat": 60_000, "description": "walk 2"})
    plan = l2.rpc.call("rebalance-plan", {"max_ppm": 1000})
    calls = [
        ("ballast-status", {}),
        ("hodl-invoice", {"amount_msat": 70_000, "description": "walk 3"}),
        ("hodl-lookup", {"payment_hash": inv["payment_hash"]}),
        ("hodl-list", {}),
        ("hodl-cancel", {"payment_hash": inv2["payment_hash"]}),
        ("hodl-settle", {"payment_hash": inv["payment_hash"]}),
        ("fee-preview", {}),
        ("fee-apply", {"force": True}),
        ("fee-history", {}),
        ("fee-policy", {}),
        ("route-estimate", {"destination": l1.info["id"], "amount_msat": 1_000_000}),
        ("rebalance-plan", {}),
        ("rebalance-execute", {"source": scid23, "sink": scid12, "amount_msat": 10_000_000}),
        ("rebalance-execute", {"plan_id": plan["plan_id"]}),
        ("rebalance-set", {"scid": scid23, "target": 0.4}),
        ("rebalance-status", {}),
        ("monitor-status", {}),
        ("monitor-stats", {}),
        ("monitor-alerts", {"which": "all"}),
        ("monitor-history", {"scid": scid23}),
        ("monitor-export", {"path": "walk.json"}),
        ("monitor-set", {}),
        ("monitor-report", {"path": "walk.html"}),
    ]
    bad, walked = [], set()
    for method, params in calls:
        try:
            answer = l2.rpc.call(method, params)
        except pyln.RpcError as e:
            # An unpaid hold invoice cannot be settled (2002): its error is walked too.
            assert method == "hodl-settle", (method, e.error)
            answer = e.error
        _unnamed_integers(method, "", answer, bad)
        walked.add(method)
    assert not bad, "integer msat fields not named *_msat:\n" + "\n".join(bad)

    # Every method of ballast that lightningd lists was walked. (lightningd v26's help shows
    # "name usage" only: it does not read a plugin method's description.)
    listed = {c["command"].split()[0] for c in l2.rpc.help()["help"]}
    ballast = {
        name for name in listed
        if name.split("-")[0] in ("ballast", "hodl", "fee", "monitor", "rebalance", "route")
    }
    assert len(ballast) == len(walked), sorted(ballast ^ walked)
    assert ballast == walked, sorted(ballast ^ walked)
