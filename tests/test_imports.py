"""
Importing tsyncp_tx never installs or imports the global reactor: the
reactor is a parameter, looked up at call time.
"""

from __future__ import annotations

import subprocess
import sys

from twisted.trial.unittest import SynchronousTestCase

from ._util import ROOT

_PROBE = """
import sys
import tsyncp_tx, tsyncp_tx.framing, tsyncp_tx.codecs, tsyncp_tx.pool, tsyncp_tx.errors
import tsyncp_tx.mpsc, tsyncp_tx.broadcast, tsyncp_tx.spsc, tsyncp_tx.barrier
import tsyncp_tx.channel, tsyncp_tx.multi_channel, tsyncp_tx.tap, tsyncp_tx._cli
print("twisted.internet.reactor" in sys.modules)
"""


class ImportTests(SynchronousTestCase):
    """
    A fresh interpreter imports every module without the reactor.
    """

    def test_no_reactor_at_import(self) -> None:
        """
        After importing every public module (and the plugin's and command's
        modules), C{twisted.internet.reactor} is not in C{sys.modules}.
        """
        result = subprocess.run(
            [sys.executable, "-c", _PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(result.stdout.strip(), "False")
