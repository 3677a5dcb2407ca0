"""Hold invoices on real lightningd + bitcoind (regtest): l1 pays l2's hodl invoice.

Written to run against real daemons; skipped with one line where they are absent
(conftest.py). Nothing from pyln is imported at module level for that reason.
"""

import hashlib
import os

import pytest
from helpers import pay_in_thread


def hodl_pair(node_factory, plugin_path):
    l1, l2 = node_factory.line_graph(
        2, opts=[{}, {"plugin": plugin_path}], wait_for_announce=True
    )
    return l1, l2


def test_settle_completes_the_payment(node_factory, plugin_path, pyln):
    l1, l2 = hodl_pair(node_factory, plugin_path)
    preimage = os.urandom(32)
    phash = hashlib.sha256(preimage).hexdigest()
    inv = l2.rpc.call(
        "hodl-invoice",
        {"amount_msat": 50_000_000, "payment_hash": phash, "description": "pyln hodl"},
    )
    assert inv["state"] == "OPEN"
    assert l2.rpc.decode(inv["bolt11"])["payment_hash"] == phash

    done = pay_in_thread(l1, inv["bolt11"])
    held = l2.rpc.call(
        "hodl-lookup",
        {"payment_hash": phash, "wait_for_state": "ACCEPTED", "timeout": 60},
    )
    assert held["state"] == "ACCEPTED"
    assert held["received_msat"] >= 50_000_000
    assert len(held["htlcs"]) >= 1 and held["htlcs"][0]["blocks_left"] > 10

    settled = l2.rpc.call("hodl-settle", {"preimage": preimage.hex()})
    assert settled["state"] == "SETTLED"
    res = done()
    assert "ok" in res, res
    assert res["ok"]["payment_preimage"] == preimage.hex()
    assert res["ok"]["status"] == "complete"


def test_cancel_fails_the_payment(node_factory, plugin_path, pyln):
    l1, l2 = hodl_pair(node_factory, plugin_path)
    inv = l2.rpc.call("hodl-invoice", {"amount_msat": 10_000_000, "description": "to cancel"})
    phash = inv["payment_hash"]
    done = pay_in_thread(l1, inv["bolt11"])
    l2.rpc.call("hodl-lookup", {"payment_hash": phash, "wait_for_state": "ACCEPTED", "timeout": 60})

    canceled = l2.rpc.call("hodl-cancel", {"payment_hash": phash})
    assert canceled["state"] == "CANCELED"
    res = done()
    assert "err" in res, res
    assert isinstance(res["err"], pyln.RpcError)
    # The payer saw a final failure for an unknown/incorrect payment.
    assert "incorrect_or_unknown_payment_details" in str(res["err"]) or "WIRE_INCORRECT_OR_UNKNOWN" in str(
        res["err"]
    )


def test_restart_while_held_then_settle(node_factory, plugin_path, pyln):
    l1, l2 = node_factory.line_graph(
        2,
        opts=[{"may_reconnect": True}, {"plugin": plugin_path, "may_reconnect": True}],
        wait_for_announce=True,
    )
    inv = l2.rpc.call("hodl-invoice", {"amount_msat": 20_000_000, "description": "restart"})
    phash = inv["payment_hash"]
    done = pay_in_thread(l1, inv["bolt11"])
    l2.rpc.call("hodl-lookup", {"payment_hash": phash, "wait_for_state": "ACCEPTED", "timeout": 60})

    # lightningd replays the undecided HTLC to ballast at start-up; it must still be held.
    l2.restart()
    pyln.wait_for(lambda: l2.rpc.call("hodl-lookup", [phash])["state"] == "ACCEPTED")
    pyln.wait_for(lambda: len(l2.rpc.call("hodl-lookup", [phash])["htlcs"]) >= 1)
    l1.rpc.connect(l2.info["id"], "localhost", l2.port)

    # Settle by hash alone: ballast made this invoice's preimage.
    settled = l2.rpc.call("hodl-settle", {"payment_hash": phash})
    assert settled["state"] == "SETTLED"
    res = done(120)
    assert "ok" in res, res
    assert hashlib.sha256(bytes.fromhex(res["ok"]["payment_preimage"])).hexdigest() == phash


def test_bad_params_are_rejected(node_factory, plugin_path, pyln):
    l1 = node_factory.get_node(options={"plugin": plugin_path})
    # One real invoice, so the hash-taking methods fail on the parameter under test, not
    # on an unknown hash.
    inv = l1.rpc.call("hodl-invoice", {"amount_msat": 1000})
    phash = inv["payment_hash"]
    for method, params in [
        ("hodl-invoice", {"amount_msat": "abc"}),
        ("hodl-invoice", {"amount_msat": 0}),
        ("hodl-settle", {"preimage": "zz"}),
        ("hodl-cancel", {"payment_hash": phash[:-2]}),
        ("hodl-lookup", {"payment_hash": phash, "wait_for_state": "NOPE"}),
        ("hodl-lookup", {"payment_hash": phash, "timeout": -1}),
    ]:
        with pytest.raises(pyln.RpcError) as e:
            l1.rpc.call(method, params)
        assert e.value.error["code"] == -32602, (method, params, e.value.error)
    assert l1.rpc.call("hodl-list")["total"] == 1
    assert l1.rpc.call("hodl-lookup", {"payment_hash": phash})["state"] == "OPEN"
