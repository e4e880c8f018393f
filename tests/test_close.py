"""
Closing a channel whose peer stopped reading.
"""

from __future__ import annotations

import time

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tsyncp_tx import broadcast
from tsyncp_tx.codecs import RawCodec

from ._util import LOOPBACK, as_deferred, eventually
from .test_backpressure import connect_raw, fill_until_stalled, swallow


class CloseTimeoutTests(TestCase):
    """
    C{close(timeout=)} bounds the wait for a peer that does not read.
    """

    @as_deferred
    async def test_close_timeout_aborts_a_stuck_peer(self) -> None:
        """
        With frames queued for a peer that stopped reading, C{close()}
        alone keeps waiting; C{close(timeout=)} aborts that connection
        after the timeout, failing the queued sends, and fires.
        """
        tx = await broadcast.sender_on(LOOPBACK, codec=RawCodec(), send_high_water=1 << 30)
        stuck = await connect_raw(self, tx.local_address)
        stuck.pause()
        await eventually(lambda: len(tx) == 1)
        _, stalled = await fill_until_stalled(lambda i: tx.send(b"x" * 65536), settle=0.3)
        outcomes: list = []
        swallow(stalled, outcomes)
        first = tx.close()
        started = time.monotonic()
        second = tx.close(timeout=0.5)  # already closing: waits for the same end
        self.assertFalse(first.called)
        await Deferred.fromCoroutine(_wait(tx.close(timeout=0.3)))
        self.assertLess(time.monotonic() - started, 5.0)
        self.assertTrue(first.called and second.called)
        stuck.resume()  # a paused reader would never notice the reset
        await stuck.lost
        self.assertEqual(outcomes, [0])  # the waiting broadcast counted no peer
        self.assertTrue(tx.closed)


async def _wait(d: Deferred[None]) -> None:
    await d
