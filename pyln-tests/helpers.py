"""Helpers shared by the real-daemon tests: paying in the background, and killing or
restarting ballast under a running lightningd. Imports nothing from pyln, so test modules
import without it (conftest.py skips them then)."""

import os
import signal
import threading


def pay_in_thread(node, bolt11):
    """Starts `pay` in a thread (it blocks while the invoice is held); returns a getter."""
    result = {}

    def run():
        try:
            result["ok"] = node.rpc.pay(bolt11)
        except Exception as e:  # noqa: BLE001 - the test inspects whatever pay raised
            result["err"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()

    def get(timeout=90):
        t.join(timeout)
        assert not t.is_alive(), "pay did not finish"
        return result

    return get


def children_of(pid):
    """Process ids whose parent is `pid`, from /proc."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/{}/stat".format(entry)) as f:
                stat = f.read()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces: the parent id follows it.
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if ppid == pid:
            out.append(int(entry))
    return out


def ballast_pid(node, plugin_path):
    want = os.path.realpath(plugin_path)
    for pid in children_of(node.daemon.proc.pid):
        try:
            exe = os.path.realpath("/proc/{}/exe".format(pid))
        except OSError:
            continue
        if exe == want:
            return pid
    raise AssertionError("ballast is not running under {}".format(node.daemon.proc.pid))


def sigkill_ballast(node, plugin_path, pyln):
    pid = ballast_pid(node, plugin_path)
    os.kill(pid, signal.SIGKILL)
    pyln.wait_for(lambda: not os.path.exists("/proc/{}/exe".format(pid)) or _zombie(pid))


def start_plugin_again(node, plugin_path, pyln):
    """`plugin start` once lightningd has noticed the old process is gone."""

    def started():
        try:
            node.rpc.plugin_start(plugin_path)
            return True
        except Exception as e:  # noqa: BLE001
            if "already registered" in str(e):
                return False
            raise

    pyln.wait_for(started)


def _zombie(pid):
    try:
        with open("/proc/{}/stat".format(pid)) as f:
            return f.read().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True
