#!/usr/bin/env python3
"""Test helper plugin: holds every HTLC it is offered for `hold-secs` seconds, then lets
lightningd continue with it, so that a test can act while a payment is in flight."""

import time

from pyln.client import Plugin

plugin = Plugin()
plugin.add_option("hold-secs", "20", "Seconds to hold each HTLC before continuing", opt_type="int")


@plugin.hook("htlc_accepted")
def on_htlc_accepted(onion, htlc, plugin, **kwargs):
    plugin.log("holding htlc {}".format(htlc["payment_hash"]))
    time.sleep(plugin.get_option("hold-secs"))
    plugin.log("releasing htlc {}".format(htlc["payment_hash"]))
    return {"result": "continue"}


plugin.run()
