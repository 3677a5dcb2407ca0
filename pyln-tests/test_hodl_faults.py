"""Hold invoices under faults, on real lightningd + bitcoind (regtest).

What these pin down: ACCEPTED means lightningd holds the HTLCs for ballast right now, and
SETTLED means the money arrived. ballast is killed (SIGKILL) while holding, stopped with
`plugin stop`, restarted with its node, run with mainnet's cltv-delta, and run from a
lightning-dir whose RPC socket path is too long for a socket address.

Skipped with one line where the daemons are absent (conftest.py).
"""

import hashlib
import os
import time

import pytest
from helpers import pay_in_thread, sigkill_ballast, start_plugin_again

# ballast's error codes (README, "RPC methods").
ERR_STATE = 2002
ERR_NOT_HELD = 2010
INVALID_PARAMS = -32602


def our_balance(node):
    return sum(c["to_us_msat"] for c in node.rpc.listpeerchannels()["channels"])


def hodl_error(node, method, params):
    with pytest.raises(Exception) as e:
        node.rpc.call(method, params)
    return e.value.error


def wait_accepted(node, phash):
    return node.rpc.call(
        "hodl-lookup", {"payment_hash": phash, "wait_for_state": "ACCEPTED", "timeout": 60}
    )


@pytest.mark.parametrize("restart", ["node", "plugin"])
def test_sigkill_while_accepted_is_never_settled(node_factory, plugin_path, pyln, restart):
    """ballast dies holding a paid invoice: lightningd fails the HTLC (no invoice of its own
    for the hash), so after the restart the invoice is CANCELED (htlcs_lost) and a settle is
    refused: the app never sees SETTLED for money that went back to the payer."""
    l1, l2 = node_factory.line_graph(
        2,
        opts=[{"may_reconnect": True}, {"plugin": plugin_path, "may_reconnect": True}],
        wait_for_announce=True,
    )
    inv = l2.rpc.call("hodl-invoice", {"amount_msat": 30_000_000, "description": "killed"})
    phash = inv["payment_hash"]
    before = our_balance(l2)
    done = pay_in_thread(l1, inv["bolt11"])
    wait_accepted(l2, phash)

    sigkill_ballast(l2, plugin_path, pyln)
    res = done()
    assert "err" in res, res

    if restart == "node":
        l2.restart()
        l1.rpc.connect(l2.info["id"], "localhost", l2.port)
    else:
        start_plugin_again(l2, plugin_path, pyln)

    inv = l2.rpc.call("hodl-lookup", {"payment_hash": phash})
    assert inv["state"] == "CANCELED", inv
    assert inv["cancel_reason"] == "htlcs_lost", inv
    assert inv["received_msat"] == 0, inv
    # Logged once, possibly while lightningd is still starting (before the "Server started"
    # line wait_for_log would search after): search the whole log.
    line = r"hold invoice {}: ACCEPTED -> CANCELED \(\"htlcs_lost\"\)".format(phash)
    pyln.wait_for(lambda: l2.daemon.is_in_log(line))

    err = hodl_error(l2, "hodl-settle", {"payment_hash": phash})
    assert err["code"] == ERR_NOT_HELD, err
    assert l2.rpc.call("hodl-lookup", {"payment_hash": phash})["state"] == "CANCELED"
    assert our_balance(l2) == before


def route_part(payer, payee, amount_msat, cltv):
    """A one-hop route over the payer's channel to the payee (`getroute` is deprecated).
    `delay` counts from the payer's next block height, as lightningd's sendpay takes it."""
    scid = payer.get_channel_scid(payee)
    return [{"id": payee.info["id"], "channel": scid, "amount_msat": amount_msat, "delay": cltv}]


def send_part(payer, payee, inv, amount_msat, partid):
    route = route_part(payer, payee, amount_msat, 150)
    payer.rpc.call(
        "sendpay",
        {
            "route": route,
            "payment_hash": inv["payment_hash"],
            "payment_secret": inv["payment_secret"],
            "amount_msat": inv["amount_msat"],
            "partid": partid,
            "groupid": 1,
            "bolt11": inv["bolt11"],
        },
    )


def wait_part(payer, inv, partid, timeout=90):
    return payer.rpc.call(
        "waitsendpay",
        {"payment_hash": inv["payment_hash"], "partid": partid, "groupid": 1, "timeout": timeout},
    )


def test_sigkill_with_half_an_mpp_set_held(node_factory, plugin_path, pyln):
    """Half of a two-part payment is held when ballast dies: lightningd fails that part, and
    after the restart it is not counted. The invoice stays OPEN and a whole payment then
    goes through and settles."""
    l1, l2 = node_factory.line_graph(
        2,
        opts=[{"may_reconnect": True}, {"plugin": plugin_path, "may_reconnect": True}],
        wait_for_announce=True,
    )
    inv = l2.rpc.call(
        "hodl-invoice", {"amount_msat": 40_000_000, "description": "half", "cltv": 144}
    )
    send_part(l1, l2, inv, 20_000_000, 1)
    pyln.wait_for(
        lambda: l2.rpc.call("hodl-lookup", [inv["payment_hash"]])["received_msat"] == 20_000_000
    )
    assert l2.rpc.call("hodl-lookup", [inv["payment_hash"]])["state"] == "OPEN"

    sigkill_ballast(l2, plugin_path, pyln)
    with pytest.raises(Exception):
        wait_part(l1, inv, 1)

    l2.restart()
    l1.rpc.connect(l2.info["id"], "localhost", l2.port)
    after = l2.rpc.call("hodl-lookup", [inv["payment_hash"]])
    assert (after["state"], after["received_msat"], after["htlcs"]) == ("OPEN", 0, []), after

    # The payer tries again with both parts: held, then settled.
    send_part(l1, l2, inv, 20_000_000, 2)
    send_part(l1, l2, inv, 20_000_000, 3)
    wait_accepted(l2, inv["payment_hash"])
    settled = l2.rpc.call("hodl-settle", {"preimage": inv["preimage"]})
    assert settled["state"] == "SETTLED"
    for partid in (2, 3):
        assert wait_part(l1, inv, partid)["status"] == "complete"


def test_half_an_mpp_set_rejoins_after_a_node_restart(node_factory, plugin_path, pyln):
    """A clean node restart with half a set held: lightningd replays the held part, it
    rejoins its set, and the second part completes it."""
    l1, l2 = node_factory.line_graph(
        2,
        opts=[{"may_reconnect": True}, {"plugin": plugin_path, "may_reconnect": True}],
        wait_for_announce=True,
    )
    inv = l2.rpc.call(
        "hodl-invoice",
        {"amount_msat": 40_000_000, "description": "rejoin", "cltv": 144},
    )
    phash = inv["payment_hash"]
    send_part(l1, l2, inv, 20_000_000, 1)
    pyln.wait_for(lambda: l2.rpc.call("hodl-lookup", [phash])["received_msat"] == 20_000_000)

    l2.restart()
    l1.rpc.connect(l2.info["id"], "localhost", l2.port)
    assert l2.rpc.call("hodl-lookup", [phash])["received_msat"] == 20_000_000

    send_part(l1, l2, inv, 20_000_000, 2)
    held = wait_accepted(l2, phash)
    assert held["received_msat"] == 40_000_000
    assert l2.rpc.call("hodl-settle", {"payment_hash": phash})["state"] == "SETTLED"
    for partid in (1, 2):
        assert wait_part(l1, inv, partid)["status"] == "complete"


def test_plugin_stop_while_accepted_cancels(node_factory, plugin_path, pyln):
    """`plugin stop` while holding: lightningd treats a stopped plugin's hook call as
    `continue` (plugin_hook.c) and fails the HTLC as an unknown invoice, so the payment
    cannot be kept. After `plugin start` the invoice is CANCELED and a settle is refused;
    no SETTLED, no money claimed."""
    l1, l2 = node_factory.line_graph(2, opts=[{}, {"plugin": plugin_path}], wait_for_announce=True)
    inv = l2.rpc.call("hodl-invoice", {"amount_msat": 25_000_000, "description": "stop"})
    phash = inv["payment_hash"]
    before = our_balance(l2)
    done = pay_in_thread(l1, inv["bolt11"])
    wait_accepted(l2, phash)

    l2.rpc.plugin_stop(plugin_path)
    res = done()
    assert "err" in res, res
    l2.rpc.plugin_start(plugin_path)

    inv = l2.rpc.call("hodl-lookup", [phash])
    assert inv["state"] == "CANCELED" and inv["cancel_reason"] == "shutdown", inv
    err = hodl_error(l2, "hodl-settle", {"payment_hash": phash})
    assert err["code"] == ERR_STATE, err
    assert our_balance(l2) == before


def test_node_restart_after_settle_before_the_payer_saw_it(node_factory, plugin_path, pyln):
    """The payer is offline when the app settles; then the node restarts. The stored
    preimage still reaches the payer: the payment completes with it."""
    l1, l2 = node_factory.line_graph(
        2,
        opts=[{"may_reconnect": True}, {"plugin": plugin_path, "may_reconnect": True}],
        wait_for_announce=True,
    )
    inv = l2.rpc.call("hodl-invoice", {"amount_msat": 15_000_000, "description": "late"})
    phash = inv["payment_hash"]
    done = pay_in_thread(l1, inv["bolt11"])
    wait_accepted(l2, phash)

    l1.rpc.disconnect(l2.info["id"], force=True)
    settled = l2.rpc.call("hodl-settle", {"payment_hash": phash})
    assert settled["state"] == "SETTLED"
    l2.restart()
    assert l2.rpc.call("hodl-lookup", [phash])["state"] == "SETTLED"
    l1.rpc.connect(l2.info["id"], "localhost", l2.port)
    res = done(120)
    assert "ok" in res, res
    assert hashlib.sha256(bytes.fromhex(res["ok"]["payment_preimage"])).hexdigest() == phash


def blocks_left(node, phash):
    return min(h["blocks_left"] for h in node.rpc.call("hodl-lookup", [phash])["htlcs"])


def mine_until(bitcoind, nodes, node, phash, left, pyln):
    n = blocks_left(node, phash) - left
    assert n >= 0, (n, left)
    if n:
        bitcoind.generate_block(n)
        pyln.sync_blockheight(bitcoind, nodes)
    pyln.wait_for(lambda: node.rpc.call("ballast-status")["blockheight"] == bitcoind.rpc.getblockcount())


def test_mainnet_cltv_delta_window(node_factory, bitcoind, plugin_path, pyln):
    """cltv-delta 34: lightningd force-closes a channel whose fulfilled HTLC is still
    unacknowledged 17 blocks before expiry, so ballast settles only with more than 19 blocks
    left and cancels at 19. A settle just outside the window completes; an invoice left
    to the window is canceled and the payer refunded; no channel is force-closed."""
    l1, l2 = node_factory.line_graph(
        2,
        opts=[{}, {"plugin": plugin_path, "cltv-delta": 34}],
        wait_for_announce=True,
    )
    assert l2.daemon.is_in_log(r"ballast-hodl-cancel-blocks raised from 10 to 19")
    err = hodl_error(l2, "hodl-invoice", {"amount_msat": 1000, "cltv": 24})
    assert err["code"] == INVALID_PARAMS, err

    inv = l2.rpc.call("hodl-invoice", {"amount_msat": 10_000_000, "description": "edge", "cltv": 30})
    done = pay_in_thread(l1, inv["bolt11"])
    wait_accepted(l2, inv["payment_hash"])
    mine_until(bitcoind, [l1, l2], l2, inv["payment_hash"], 20, pyln)
    assert l2.rpc.call("hodl-settle", {"payment_hash": inv["payment_hash"]})["state"] == "SETTLED"
    assert "ok" in done(), "settled payment did not complete"

    inv = l2.rpc.call("hodl-invoice", {"amount_msat": 10_000_000, "description": "late", "cltv": 30})
    done = pay_in_thread(l1, inv["bolt11"])
    wait_accepted(l2, inv["payment_hash"])
    mine_until(bitcoind, [l1, l2], l2, inv["payment_hash"], 19, pyln)
    pyln.wait_for(lambda: l2.rpc.call("hodl-lookup", [inv["payment_hash"]])["state"] == "CANCELED")
    assert l2.rpc.call("hodl-lookup", [inv["payment_hash"]])["cancel_reason"] == "deadline"
    err = hodl_error(l2, "hodl-settle", {"payment_hash": inv["payment_hash"]})
    assert err["code"] == ERR_STATE, err
    assert "err" in done()

    bitcoind.generate_block(20)
    pyln.sync_blockheight(bitcoind, [l1, l2])
    for c in l2.rpc.listpeerchannels()["channels"]:
        assert c["state"] == "CHANNELD_NORMAL", c["state"]


def test_long_lightning_dir(node_factory, plugin_path, directory):
    """A lightning-dir whose RPC socket path exceeds a socket address (108 bytes): ballast
    reaches lightningd through the relative `rpc-file` name and works as usual."""
    deep = os.path.join(directory, "d" * 60, "e" * 60)
    os.makedirs(deep)
    node_factory.directory = deep
    l1 = node_factory.get_node(options={"plugin": plugin_path})
    sock = os.path.join(l1.daemon.lightning_dir, "regtest", "lightning-rpc")
    assert len(sock) > 108, sock
    status = l1.rpc.call("ballast-status")
    assert status["node_id"] == l1.info["id"], status
    inv = l1.rpc.call("hodl-invoice", {"amount_msat": 5_000, "description": "long path"})
    assert l1.rpc.decode(inv["bolt11"])["payment_hash"] == inv["payment_hash"]
    time.sleep(1)
    assert not l1.daemon.is_in_log("path must be shorter than SUN_LEN")
