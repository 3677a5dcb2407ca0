"""ballast on a real lightningd (v26.x) with bitcoind in regtest, through pyln-testing.

Fixtures (conftest.py / pyln.testing.fixtures): `node_factory` starts lightningd nodes,
`bitcoind` is the regtest bitcoind they share, `plugin_path` is the ballast binary,
`pyln` holds pyln helpers (wait_for, sync_blockheight, RpcError, ...).

This module imports nothing from pyln at the top, so that it still imports (and is
skipped with one line) where pyln-testing is not installed.
"""

import os

import pytest


def status(node):
    return node.rpc.call("ballast-status")


def ballast_entry(node, plugin_path):
    """ballast's entry in `plugin list`, or None."""
    want = os.path.realpath(plugin_path)
    for p in node.rpc.plugin_list()["plugins"]:
        if os.path.realpath(p["name"]) == want:
            return p
    return None


def test_status_matches_getinfo(node_factory, plugin_path, cargo_version):
    l1 = node_factory.get_node(options={"plugin": plugin_path})
    info = l1.rpc.getinfo()
    st = status(l1)

    assert st["version"] == cargo_version
    assert st["network"] == "regtest"
    assert st["blockheight"] == info["blockheight"]
    assert st["node_id"] == info["id"]
    assert st["store"]["starts"] == 1
    assert st["store"]["created_at"] > 0
    assert st["counters"]["htlc_accepted"] == 0


def test_listconfigs_shows_db_path(node_factory, plugin_path):
    l1 = node_factory.get_node(options={"plugin": plugin_path})

    opt = l1.rpc.listconfigs()["configs"]["ballast-db-path"]
    assert opt["value_str"] == "ballast"
    assert opt["source"] == "default"
    assert os.path.realpath(opt["plugin"]) == os.path.realpath(plugin_path)

    # A relative path lives under <lightning-dir>/<network>.
    netdir = l1.rpc.getinfo()["lightning-dir"]
    assert os.path.realpath(status(l1)["store"]["path"]) == os.path.realpath(
        os.path.join(netdir, "ballast")
    )


def test_db_path_option_is_used(node_factory, plugin_path, directory):
    os.makedirs(os.path.join(directory, "elsewhere"), exist_ok=True)
    store = os.path.join(directory, "elsewhere", "ballast-store")
    l1 = node_factory.get_node(options={"plugin": plugin_path, "ballast-db-path": store})

    opt = l1.rpc.listconfigs()["configs"]["ballast-db-path"]
    assert opt["value_str"] == store
    assert opt["source"] == "cmdline"
    assert os.path.realpath(status(l1)["store"]["path"]) == os.path.realpath(store)
    assert os.path.exists(store)


def test_blockheight_follows_the_chain(node_factory, bitcoind, plugin_path, pyln):
    l1 = node_factory.get_node(options={"plugin": plugin_path})
    before = status(l1)
    blocks_before = before["counters"]["blocks"]

    bitcoind.generate_block(3)
    pyln.sync_blockheight(bitcoind, [l1])
    height = l1.rpc.getinfo()["blockheight"]
    assert height == before["blockheight"] + 3

    pyln.wait_for(lambda: status(l1)["blockheight"] == height)
    pyln.wait_for(lambda: status(l1)["counters"]["blocks"] >= blocks_before + 3)


def test_restart_keeps_the_store(node_factory, plugin_path):
    l1 = node_factory.get_node(options={"plugin": plugin_path})
    first = status(l1)["store"]

    l1.restart()
    second = status(l1)["store"]

    assert second["starts"] == first["starts"] + 1
    assert second["created_at"] == first["created_at"]
    assert second["path"] == first["path"]

    l1.restart()
    assert status(l1)["store"]["starts"] == first["starts"] + 2


def test_second_node_on_the_same_store_disables_ballast(node_factory, plugin_path, pyln):
    l1 = node_factory.get_node(options={"plugin": plugin_path})
    st1 = status(l1)
    db_path = os.path.realpath(st1["store"]["path"])

    # ballast answers `init` with {"disable": reason}: lightningd logs the reason and
    # carries on without the plugin, so the node starts normally. ballast's own line
    # about it may be logged at any level on this node: don't fail the teardown on it.
    l2 = node_factory.get_node(
        options={"plugin": plugin_path, "ballast-db-path": db_path},
        broken_log=r"ballast",
        allow_warning=True,
    )
    # ballast writes its reason before it answers `init`, so the line comes before
    # "Server started", where wait_for_log would begin: search the whole log.
    pyln.wait_for(lambda: l2.daemon.is_in_log(r"ballast.*disabl"))

    assert l2.rpc.getinfo()["id"]
    with pytest.raises(pyln.RpcError):
        status(l2)
    entry = ballast_entry(l2, plugin_path)
    assert entry is None or not entry.get("active", False)

    # The first node's ballast is untouched, and so is its store.
    after = status(l1)
    assert after["store"]["starts"] == st1["store"]["starts"]
    assert after["store"]["created_at"] == st1["store"]["created_at"]


def test_plugin_stop_start_matches_manifest(node_factory, plugin_path, pyln):
    """`plugin stop`/`start` at runtime works if ballast says it is dynamic, and is
    refused if it says it is not."""
    l1 = node_factory.get_node(options={"plugin": plugin_path})
    entry = ballast_entry(l1, plugin_path)
    assert entry is not None and entry["active"]
    starts = status(l1)["store"]["starts"]

    if not entry["dynamic"]:
        with pytest.raises(pyln.RpcError):
            l1.rpc.plugin_stop(plugin_path)
        assert status(l1)["store"]["starts"] == starts
        return

    l1.rpc.plugin_stop(plugin_path)
    with pytest.raises(pyln.RpcError):
        status(l1)
    l1.rpc.plugin_start(plugin_path)
    st = status(l1)
    assert st["store"]["starts"] == starts + 1
    assert st["blockheight"] == l1.rpc.getinfo()["blockheight"]


def test_payment_passes_through_htlc_accepted(node_factory, plugin_path, pyln):
    l1, l2 = node_factory.line_graph(2, opts=[{}, {"plugin": plugin_path}])
    inv = l2.rpc.invoice(
        amount_msat=123_000,
        label="ballast-pass-through",
        description="ballast htlc_accepted pass-through",
    )

    res = l1.rpc.pay(inv["bolt11"])
    assert res["status"] == "complete"
    pyln.wait_for(
        lambda: pyln.only_one(l2.rpc.listinvoices("ballast-pass-through")["invoices"])["status"]
        == "paid"
    )

    counters = status(l2)["counters"]
    assert counters["htlc_accepted"] >= 1
    assert counters["htlcs_passed_through"] >= 1
    assert counters["invoice_payment"] >= 1
