"""
Broadcast with one slow receiver out of three, over real loopback TCP.

Default policy (C{slow_receiver="wait"}): C{send()} waits for the slowest
receiver, so the sender and every receiver move in lockstep and nothing is
lost.  Opt-in C{slow_receiver="disconnect"}: the receiver that falls more
than C{slow_receiver_limit} bytes behind is dropped (reported through
C{on_disconnect} and the log) and the other two receive everything.
"""

from __future__ import annotations

import gc
import time
from typing import Any, Dict, List, Optional, Tuple

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tsyncp_tx import broadcast
from tsyncp_tx.codecs import RawCodec
from tsyncp_tx.errors import ConnectionClosed

from ._util import LOOPBACK, as_deferred, eventually, sleep
from .test_backpressure import LogCapture, pattern

SIZE = 16 * 1024


class _Reader:
    """
    Drains a receiver in the background, counting and checking items.
    """

    def __init__(self, rx: Any) -> None:
        self.rx = rx
        self.items: List[bytes] = []
        self.error: Optional[BaseException] = None
        self.running = False
        self.done: Optional[Deferred[None]] = None

    def start(self) -> None:
        self.running = True
        self.done = Deferred.fromCoroutine(self._run())

    async def _run(self) -> None:
        try:
            while self.running:
                self.items.extend(await self.rx.recv_many())
        except ConnectionClosed as e:
            self.error = e
        except Exception as e:  # ChannelClosed at cleanup
            self.error = e

    def check(self, testcase: TestCase, count: int) -> None:
        """
        The first C{count} items were received intact and in order.
        """
        testcase.assertGreaterEqual(len(self.items), count)
        for i in range(count):
            if self.items[i] != pattern(i, SIZE):
                testcase.fail(f"item {i} corrupted or out of order")


class SlowConsumerTests(TestCase):
    """
    One of three broadcast receivers reads slowly.
    """

    timeout = 60

    async def _setup(self, **options: Any) -> Tuple[Any, List[Any], List[Tuple[Any, Any]]]:
        lost: List[Tuple[Any, Any]] = []
        tx = await broadcast.sender_on(
            LOOPBACK, codec=RawCodec(), on_disconnect=lambda a, r: lost.append((a, r)), **options
        )
        self.addCleanup(tx.close)
        receivers = []
        for n in range(3):
            # The slow one (last) pauses reading after a few items.
            extra: Dict[str, Any] = {"recv_high_water": 4} if n == 2 else {}
            rx = await broadcast.receiver_to(tx.local_address, codec=RawCodec(), **extra)
            self.addCleanup(rx.close)
            receivers.append(rx)
        await eventually(lambda: len(tx) == 3)
        return tx, receivers, lost

    @as_deferred
    async def test_wait_policy_lockstep_without_loss(self) -> None:
        """
        While the slow receiver does not read, the sender stalls (it cannot
        run ahead by more than the buffers between them) and so do the
        fast receivers; once it reads, everyone gets every item in order.
        """
        tx, receivers, lost = await self._setup()
        fast = [_Reader(rx) for rx in receivers[:2]]
        slow = _Reader(receivers[2])
        for r in fast:
            r.start()
        total = 2000  # 32 MiB: more than every buffer in between holds
        progress = {"sent": 0}

        async def send_all() -> None:
            for i in range(total):
                counted = await tx.send(pattern(i, SIZE))
                if counted != 3:
                    raise AssertionError(f"item {i} handed to {counted} receivers, not 3")
                progress["sent"] = i + 1

        sending = Deferred.fromCoroutine(send_all())
        # Wait for the sender to stall: no progress for 0.8 seconds.
        last, still = -1, 0
        for _ in range(200):
            await sleep(0.1)
            if progress["sent"] == last:
                still += 1
                if still >= 8:
                    break
            else:
                last, still = progress["sent"], 0
        stalled_at = progress["sent"]
        self.assertLess(stalled_at, total, "the sender never waited for the slow receiver")
        # Lockstep: the fast receivers are held back too.
        self.assertLessEqual(max(len(r.items) for r in fast), stalled_at + 1)
        # Everything the sender got ahead of the slow receiver sits in
        # bounded buffers (queues and kernel socket buffers).
        # (Its queue: 4 items plus one read, 512 KiB once the connection
        # streams: docs/reliability.md.)
        self.assertLessEqual(receivers[2].queued, 4 + 512 * 1024 // SIZE + 1)
        await sleep(0.3)
        self.assertEqual(progress["sent"], stalled_at)
        slow.start()
        started = time.monotonic()
        await sending
        self.assertLess(time.monotonic() - started, 40)
        await eventually(lambda: all(len(r.items) == total for r in fast + [slow]), timeout=20)
        for r in fast + [slow]:
            r.check(self, total)
        self.assertEqual(lost, [])
        for r in fast + [slow]:
            r.running = False

    @as_deferred
    async def test_disconnect_policy_drops_only_the_slow_one(self) -> None:
        """
        With C{slow_receiver="disconnect"}, a sender sending as fast as
        C{send()} allows drops the receiver that stopped reading once it is
        C{slow_receiver_limit} bytes behind (reported to C{on_disconnect}
        and logged with its address); the two others receive every item in
        order, and the dropped one got an in-order prefix.
        """
        log = LogCapture(self)
        limit = 1024 * 1024
        tx, receivers, lost = await self._setup(
            slow_receiver="disconnect", slow_receiver_limit=limit
        )
        slow_address = receivers[2].local_address
        fast = [_Reader(rx) for rx in receivers[:2]]
        for r in fast:
            r.start()
        total = 2000  # 32 MiB
        counts = []
        for i in range(total):
            counts.append(await tx.send(pattern(i, SIZE)))
        # Give aborted connections time to be reported.
        await eventually(lambda: bool(lost), timeout=10)
        await sleep(0.2)
        dropped = [a for a, _ in lost]
        self.assertEqual(
            dropped, [slow_address],
            f"dropped {dropped}, expected only the slow receiver {slow_address}; "
            f"send() counts went {counts[0]} -> {counts[-1]}",
        )
        self.assertEqual(counts[-1], 2, "the fast receivers did not receive the last item")
        await eventually(lambda: all(len(r.items) >= total for r in fast), timeout=30)
        for r in fast:
            r.check(self, total)
            self.assertEqual(len(r.items), total)
        self.assertEqual(len(tx), 2)
        warned = log.matching("Disconnecting slow receiver", "127.0.0.1:%d" % slow_address[1])
        self.assertEqual(len(warned), 1, f"the drop was logged {len(warned)} times, not once")
        # The dropped receiver got an in-order prefix, then ConnectionClosed.
        slow = _Reader(receivers[2])
        slow.start()
        assert slow.done is not None
        await slow.done
        self.assertIsInstance(slow.error, ConnectionClosed)
        self.assertLess(len(slow.items), total)
        slow.check(self, len(slow.items))
        for r in fast:
            r.running = False

    @as_deferred
    async def test_disconnect_policy_with_yielding_sender(self) -> None:
        """
        The same, with a sender that lets the reactor run between sends
        (a C{sleep(0)} every few items): only the slow receiver is dropped.
        This isolates the policy itself from the question of whether
        C{send()} pushes back on the sender.
        """
        log = LogCapture(self)
        limit = 1024 * 1024
        tx, receivers, lost = await self._setup(
            slow_receiver="disconnect", slow_receiver_limit=limit
        )
        slow_address = receivers[2].local_address
        fast = [_Reader(rx) for rx in receivers[:2]]
        for r in fast:
            r.start()
        total = 2000
        for i in range(total):
            await tx.send(pattern(i, SIZE))
            if i % 4 == 3:
                await sleep(0)
        await eventually(lambda: all(len(r.items) >= total for r in fast), timeout=30)
        for r in fast:
            r.check(self, total)
        self.assertEqual([a for a, _ in lost], [slow_address])
        warnings = log.matching("Disconnecting slow receiver", "127.0.0.1:%d" % slow_address[1])
        self.assertEqual(len(warnings), 1, f"logged {len(warnings)} times: {warnings[:3]}")
        for r in fast:
            r.running = False


class DisconnectPolicyBoundsTests(TestCase):
    """
    C{slow_receiver_limit} larger than C{send_high_water}.
    """

    timeout = 30

    @as_deferred
    async def test_limit_above_send_high_water_loses_nothing_silently(self) -> None:
        """
        With C{slow_receiver_limit} above C{send_high_water}, a receiver that
        stopped reading fills its C{send_high_water} queue before reaching
        the drop limit.  The next frame for it must not vanish: either the
        receiver is dropped (and reported), or the C{send()} fails.  It must
        never be counted as handed over while it was refused.
        """
        from .test_backpressure import connect_raw, swallow

        # Collect garbage last, so that Deferreds failed by the bug under
        # test report their unhandled errors in this test, not a later one.
        self.addCleanup(gc.collect)
        lost: List[Any] = []
        tx = await broadcast.sender_on(
            LOOPBACK, codec=RawCodec(), slow_receiver="disconnect",
            slow_receiver_limit=8 * 1024 * 1024, send_high_water=256 * 1024,
            on_disconnect=lambda a, r: lost.append(a),
        )
        self.addCleanup(tx.close)
        stuck = await connect_raw(self, tx.local_address)
        stuck.pause()
        await eventually(lambda: len(tx) == 1)
        outcomes: List[Any] = []
        for i in range(300):  # 4.7 MiB: more than the queue and the kernel hold
            d = tx.send(pattern(i, SIZE))
            swallow(d, outcomes)
            if i % 8 == 7:
                await sleep(0.01)
        await sleep(0.5)
        stuck.resume()
        if lost:
            return  # dropped and reported: fine
        # Let it read everything it will ever get (until no progress).
        last = -1
        for _ in range(100):
            await sleep(0.2)
            if len(stuck.frames) == last:
                break
            last = len(stuck.frames)
        # Sends still waiting for the receiver settle once it reads again.
        await eventually(lambda: len(outcomes) == 300)
        handed = sum(1 for o in outcomes if o == 1)
        failed = [o for o in outcomes if not isinstance(o, int)]
        self.assertEqual(
            len(stuck.frames), handed,
            f"send() reported {handed} items handed to the receiver, it got "
            f"{len(stuck.frames)}; {len(failed)} send()s failed; none was dropped",
        )
