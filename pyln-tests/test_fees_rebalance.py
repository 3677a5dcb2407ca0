"""Fee policy and rebalancing on real lightningd + bitcoind (regtest).

Written to run against real daemons; skipped with one line where they are absent.
"""

import os
import threading

from helpers import sigkill_ballast, start_plugin_again


POLICY = """
[defaults]
min_ppm = 1
max_ppm = 5000
[[rule]]
name = "balance"
strategy = { type = "balance", curve = "linear", empty_ppm = 4000, full_ppm = 10 }
"""


def test_forwards_move_the_fee_of_the_drained_channel(
    node_factory, plugin_path, pyln, directory, monkeypatch, forwards_move_fee
):
    # Developer mode lets ballast-fee-min-interval go below CLN's 300 s gossip floor, so
    # the start-up hold ends within the test instead of after an hour.
    monkeypatch.setenv("BALLAST_DEVELOPER", "1")
    policy = directory + "/policy.toml"
    with open(policy, "w") as f:
        f.write(POLICY)
    l1, l2, l3 = node_factory.line_graph(
        3,
        opts=[
            {},
            {
                "plugin": plugin_path,
                "ballast-fee-policy-file": policy,
                "ballast-fee-min-interval": 5,
                "ballast-fee-coalesce": 1,
            },
            {},
        ],
        wait_for_announce=True,
    )
    scid23 = l2.get_channel_scid(l3)
    start_ppm = next(
        c["fee_proportional_millionths"] for c in l2.rpc.listpeerchannels()["channels"]
        if c.get("short_channel_id") == scid23
    )
    # No fee-apply: the forward events alone must move the drained channel's fee.
    change = forwards_move_fee(l1, l2, l3, scid23)
    new_ppm = change["new"]["ppm"]
    assert new_ppm != start_ppm, change
    pyln.wait_for(
        lambda: any(
            c["short_channel_id"] == scid23 and c["fee_proportional_millionths"] == new_ppm
            for c in l2.rpc.listpeerchannels()["channels"]
        )
    )
    # ...and the update reaches l1 through gossip.
    pyln.wait_for(
        lambda: any(
            c["source"] == l2.info["id"] and c["fee_per_millionth"] == new_ppm
            for c in l1.rpc.listchannels(scid23)["channels"]
        ),
        timeout=120,
    )
    hist = l2.rpc.call("fee-history", {"scid": scid23})["changes"]
    assert hist and hist[0]["rule"]["name"] == "balance"
    assert "local ratio" in hist[0]["explanation"]


def ring(node_factory, opts, pyln):
    """l1 -> l2 -> l3 -> l4 -> l1, announced, and seen whole by ballast on l1.

    line_graph funds each channel from one side: l1's channel to l2 is all ours, the one
    from l4 all theirs. ballast must see the whole ring before it can plan."""
    l1, l2, l3, l4 = node_factory.line_graph(4, opts=opts, wait_for_announce=True)
    node_factory.join_nodes([l4, l1], wait_for_announce=True)
    pyln.wait_for(lambda: len(l1.rpc.listchannels()["channels"]) >= 8)
    pyln.wait_for(
        lambda: ((l1.rpc.call("rebalance-status").get("graph") or {}).get("channels") or 0) >= 4,
        timeout=60,
    )
    return l1, l2, l3, l4


def test_plan_and_execute_on_a_ring(node_factory, plugin_path, pyln, bitcoind):
    # l1 -> l2 -> l3 -> l4 -> l1: a ring through which l1 can move liquidity to itself.
    # l1 charges 1000 ppm, so a move may pay up to 500 ppm (fee share 0.5): CLN's default
    # 10 ppm would cap every move below the ring's 1 sat + 10 ppm per hop. The graph is
    # refreshed every 10 s, as ballast loads it at start, before these channels exist.
    opts = [
        {
            "plugin": plugin_path,
            "ballast-rebalance-daily-budget": 100_000_000,
            "ballast-graph-refresh": 10,
            "fee-per-satoshi": 1000,
        },
        {},
        {},
        {},
    ]
    l1, l2, l3, l4 = ring(node_factory, opts, pyln)
    before = {c["short_channel_id"]: c["to_us_msat"] for c in l1.rpc.listpeerchannels()["channels"]}

    plan = l1.rpc.call("rebalance-plan", {})
    assert "plan_id" in plan
    planned = [m for m in plan["moves"] if m["status"] == "planned"]
    assert planned, "no move planned: {}".format(plan)
    res = l1.rpc.call("rebalance-execute", {"plan_id": plan["plan_id"]})
    moved = sum(m["moved_msat"] for m in res["moves"])
    assert moved > 0, res
    after = {c["short_channel_id"]: c["to_us_msat"] for c in l1.rpc.listpeerchannels()["channels"]}
    assert after != before
    st = l1.rpc.call("rebalance-status")
    assert st["spent_24h_msat"] <= 100_000_000
    assert any(a["outcome"] == "success" for a in st["attempts"])


def test_sigkill_while_a_rebalance_payment_is_in_flight(node_factory, plugin_path, pyln, directory):
    """ballast dies while its own circular payment is held at a hop; `plugin start` brings
    it back before the HTLC returns. The payment completes (ballast still has its preimage),
    the attempt is resolved from lightningd without a new execution, its fee counts once,
    and nothing is sent twice."""
    hold = os.path.join(os.path.dirname(__file__), "plugins", "hold_htlcs.py")
    opts = [
        {
            "plugin": plugin_path,
            "ballast-rebalance-daily-budget": 100_000_000,
            "ballast-graph-refresh": 10,
            "fee-per-satoshi": 1000,
        },
        {},
        {"plugin": hold, "hold-secs": 25},
        {},
    ]
    l1, l2, l3, l4 = ring(node_factory, opts, pyln)
    plan = l1.rpc.call("rebalance-plan", {})
    assert any(m["status"] == "planned" for m in plan["moves"]), plan

    def execute():
        try:
            l1.rpc.call("rebalance-execute", {"plan_id": plan["plan_id"]})
        except Exception:  # noqa: BLE001 - ballast is killed under this call
            pass

    threading.Thread(target=execute, daemon=True).start()
    l3.daemon.wait_for_log("holding htlc")
    pending = [a for a in l1.rpc.call("rebalance-status")["attempts"] if a["outcome"] == "pending"]
    assert len(pending) == 1, pending
    phash = pending[0]["payment_hash"]

    sigkill_ballast(l1, plugin_path, pyln)
    start_plugin_again(l1, plugin_path, pyln)

    # Resolved from lightningd once the HTLC comes back, with no new rebalance-execute.
    pyln.wait_for(
        lambda: [a["outcome"] for a in l1.rpc.call("rebalance-status")["attempts"] if a["payment_hash"] == phash]
        == ["success"],
        timeout=120,
    )
    status = l1.rpc.call("rebalance-status")
    attempt = next(a for a in status["attempts"] if a["payment_hash"] == phash)
    sendpays = l1.rpc.listsendpays(payment_hash=phash)["payments"]
    assert len(sendpays) == 1, sendpays
    assert sendpays[0]["status"] == "complete", sendpays
    spent = sum(a["fee_msat"] for a in status["attempts"] if a["outcome"] in ("success", "pending"))
    assert status["spent_24h_msat"] == spent, status
    assert attempt["fee_msat"] > 0


def test_automatic_round_rests_a_pair_that_keeps_failing(node_factory, plugin_path, pyln, monkeypatch):
    """l1 -> l2 -> l3 -> l4 -> l1, but l3 has nothing on its side towards l4: every circle
    from l1's full channel (to l2) into its empty one (from l4) fails at l3. The automatic
    round, every second, tries the pair until two attempts in a row have failed, then lets
    it rest: later rounds send nothing. The liquidity beliefs forget within a second here,
    so it is the rest, not what they learned, that keeps the rounds from trying again."""
    # Developer mode lets the round interval and the belief half-life go below 60 s.
    monkeypatch.setenv("BALLAST_DEVELOPER", "1")
    l1, l2, l3 = node_factory.line_graph(
        3,
        opts=[
            {
                "plugin": plugin_path,
                "ballast-rebalance-daily-budget": 100_000_000,
                "ballast-graph-refresh": 10,
                "ballast-rebalance-auto": True,
                "ballast-rebalance-interval": 1,
                "ballast-liquidity-halflife": 1,
                "fee-per-satoshi": 1000,
            },
            {},
            {},
        ],
        wait_for_announce=True,
    )
    l4 = node_factory.get_node()
    # l4 funds both of its channels: l3 has nothing to send it, and l1 nothing in from it.
    node_factory.join_nodes([l4, l3], wait_for_announce=True)
    node_factory.join_nodes([l4, l1], wait_for_announce=True)
    pyln.wait_for(lambda: len(l1.rpc.listchannels()["channels"]) >= 8)

    def attempts():
        return l1.rpc.call("rebalance-status")["attempts"]

    pyln.wait_for(lambda: len(attempts()) >= 2, timeout=120)
    first = attempts()
    assert [a["outcome"] for a in first] == ["failed", "failed"], first
    scid34 = l3.get_channel_scid(l4)
    assert all(a["failing_channel"] == scid34 for a in first), first

    def rounds():
        l1.daemon.logs_catchup()
        return sum(1 for line in l1.daemon.logs if "automatic rebalance:" in line)

    seen = rounds()
    pyln.wait_for(lambda: rounds() >= seen + 5, timeout=60)
    assert attempts() == first
    assert len(l1.rpc.listsendpays()["payments"]) == 2
    # The operator's own plan still offers the move.
    plan = l1.rpc.call("rebalance-plan", {})
    assert any(m["status"] == "planned" for m in plan["moves"]), plan
