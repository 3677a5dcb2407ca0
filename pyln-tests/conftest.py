"""pytest setup for ballast's real-daemon tests (lightningd + bitcoind regtest, pyln-testing).

These tests need `lightningd` (Core Lightning v26.x) and `bitcoind` on PATH and pyln-testing
installed (see README.md). When any of that is missing, every test of this directory is
skipped and ONE line says why; pytest then exits 0 ("N skipped").

The plugin under test is `$BALLAST_PLUGIN`, else `<repo>/target/release/ballast`, else
`<repo>/target/debug/ballast`.
"""

import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def _plugin_path() -> Path:
    env = os.environ.get("BALLAST_PLUGIN")
    if env:
        return Path(env).resolve()
    for profile in ("release", "debug"):
        candidate = REPO / "target" / profile / "ballast"
        if candidate.is_file():
            return candidate
    return REPO / "target" / "release" / "ballast"


def _skip_reason():
    reasons = []
    missing = [d for d in ("lightningd", "bitcoind") if shutil.which(d) is None]
    if missing:
        reasons.append(
            "{} not on PATH: pyln-tests need real daemons".format("/".join(missing))
        )
    try:
        import pyln.testing.fixtures  # noqa: F401
    except ImportError as e:
        reasons.append(
            "pyln-testing not installed ({}): pip install -r pyln-tests/requirements.txt".format(e)
        )
    if reasons:
        return "; ".join(reasons) + "; see pyln-tests/README.md"
    return None


PLUGIN = _plugin_path()
SKIP_REASON = _skip_reason()

if SKIP_REASON is None:
    # node_factory, bitcoind, directory, executor, ... and their teardown checks.
    from pyln.testing.fixtures import *  # noqa: F401,F403,E402


def _is_ours(item) -> bool:
    path = Path(str(item.fspath)).resolve()
    return HERE == path.parent or HERE in path.parents


def pytest_collection_modifyitems(config, items):
    if SKIP_REASON is None:
        return
    marker = pytest.mark.skip(reason=SKIP_REASON)
    for item in items:
        if _is_ours(item):
            item.add_marker(marker)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if SKIP_REASON is not None:
        terminalreporter.write_line("pyln-tests SKIPPED: " + SKIP_REASON)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    # pyln-testing's `directory` fixture reads item.rep_call to keep the
    # directories (logs, plugin I/O) of failed tests for inspection.
    outcome = yield
    report = outcome.get_result()
    setattr(item, "rep_" + report.when, report)


@pytest.fixture(scope="session")
def plugin_path() -> str:
    """Absolute path of the ballast binary under test."""
    if not (PLUGIN.is_file() and os.access(PLUGIN, os.X_OK)):
        pytest.fail(
            "ballast plugin not found at {}: run `cargo build --release` first "
            "(or set BALLAST_PLUGIN)".format(PLUGIN),
            pytrace=False,
        )
    return str(PLUGIN)


@pytest.fixture(scope="session")
def pyln():
    """pyln helpers, imported here so that test modules import without pyln installed."""
    from pyln.client import RpcError
    from pyln.testing.utils import TEST_NETWORK, only_one, sync_blockheight, wait_for

    return SimpleNamespace(
        RpcError=RpcError,
        TEST_NETWORK=TEST_NETWORK,
        only_one=only_one,
        sync_blockheight=sync_blockheight,
        wait_for=wait_for,
    )


@pytest.fixture(scope="session")
def cargo_version() -> str:
    """`version` of the [package] in Cargo.toml, which ballast-status reports."""
    in_package = False
    for line in (REPO / "Cargo.toml").read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            in_package = line == "[package]"
        elif in_package and line.startswith("version"):
            return line.split("=", 1)[1].strip().strip('"')
    raise AssertionError("no [package] version in Cargo.toml")


@pytest.fixture(scope="session")
def forwards_move_fee(pyln):
    """`f(l1, l2, l3, scid23)`: after the 5 s start-up hold, pays l3 from l1 three times
    through l2 (draining l2's channel to l3) and returns l2's first fee change on scid23,
    which must have been made by the forwards alone (no fee-apply)."""

    def run(l1, l2, l3, scid23):
        time.sleep(6)  # past the 5 s start-up hold
        for _ in range(3):
            inv = l3.rpc.invoice(200_000_000, "f{}".format(time.time()), "fwd")
            l1.rpc.pay(inv["bolt11"])
        pyln.wait_for(lambda: l2.rpc.call("fee-history", {"scid": scid23})["changes"])
        change = l2.rpc.call("fee-history", {"scid": scid23})["changes"][0]
        assert change["trigger"] == "forward", change
        return change

    return run
