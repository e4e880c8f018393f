"""
The two heavy proofs, with real child processes over loopback TCP.

Flood: a child sends 256 MiB in 1 MiB items as fast as C{send()} allows to
a receiver that does not call C{recv()} for 5 seconds.  Neither side's
memory may grow by 64 MiB; afterwards every item arrives intact and in
order.

Load: 8 child senders x 50,000 items into one mpsc receiver: all 400,000
arrive, none twice, each sender's items in order.
"""

from __future__ import annotations

import gc
import hashlib
import time
from typing import Any, Dict, List

import psutil
from twisted.trial.unittest import TestCase

from tsyncp_tx import mpsc
from tsyncp_tx.codecs import RawCodec

from ._util import LOOPBACK, ChildProcess, as_deferred, python_child, sleep

MiB = 1024 * 1024


def flood_item(i: int) -> bytes:
    """
    Item C{i} of the flood: 1 MiB repeating C{i} and a hash of it, so that
    any corruption, loss or reordering changes what is compared.
    """
    seed = i.to_bytes(4, "big") + hashlib.sha256(i.to_bytes(4, "big")).digest()[:28]
    return seed * (MiB // 32)


# The flood sender.  It reports its RSS after connecting (the baseline) and
# its peak RSS at the end (sampled after every send; the kernel's high-water
# mark is reported for information only).
FLOOD_SENDER = r"""
import hashlib, resource, sys
import psutil
from twisted.internet import defer, task
from tsyncp_tx import mpsc
from tsyncp_tx.codecs import RawCodec

MiB = 1024 * 1024

def item(i):
    seed = i.to_bytes(4, "big") + hashlib.sha256(i.to_bytes(4, "big")).digest()[:28]
    return seed * (MiB // 32)

async def main(reactor):
    me = psutil.Process()
    tx = await mpsc.sender_to(("127.0.0.1", int(sys.argv[1])), codec=RawCodec())
    base = me.memory_info().rss
    peak = base
    print("start", base, flush=True)
    for i in range(int(sys.argv[2])):
        await tx.send(item(i))
        peak = max(peak, me.memory_info().rss)
    await tx.close()
    peak = max(peak, me.memory_info().rss)
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print("done", base, peak, maxrss, flush=True)

task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))
"""

# A load sender: n small JSON items [sender, seq].
LOAD_SENDER = r"""
import sys
from twisted.internet import defer, task
from tsyncp_tx import mpsc

async def main(reactor):
    port, me, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    tx = await mpsc.sender_to(("127.0.0.1", port), retry=(0.1, 100))
    for i in range(n):
        d = tx.send([me, i])
        if not d.called:
            await d
    await tx.close()
    print("done", me, flush=True)

task.react(lambda reactor: defer.Deferred.fromCoroutine(main(reactor)))
"""


def rss() -> int:
    """
    This process's resident set size in bytes.
    """
    return psutil.Process().memory_info().rss  # type: ignore[no-any-return]


class FloodTests(TestCase):
    """
    A fast sender cannot make a receiver that does not read, or itself,
    buffer without limit.
    """

    timeout = 120

    @as_deferred
    async def test_flood_bounded_memory_then_everything_in_order(self) -> None:
        """
        256 MiB in 1 MiB items against a receiver idle for 5 seconds: the
        receiver grows by less than 64 MiB, the sender (a child) too, and
        all 256 items then arrive intact and in order.
        """
        count = 256
        rx = await mpsc.receiver_on(LOOPBACK, codec=RawCodec())
        self.addCleanup(rx.close)
        gc.collect()
        base = rss()
        peak = base
        child = python_child(FLOOD_SENDER, str(rx.local_address[1]), str(count))
        self.addCleanup(child.signal, "KILL")
        # Five seconds without recv(), watching memory.
        idle_until = time.monotonic() + 5.0
        while time.monotonic() < idle_until:
            peak = max(peak, rss())
            await sleep(0.05)
        queued = rx.queued
        self.assertLess(queued, count, "the idle receiver queued everything: no backpressure")
        self.assertNotIn(b"done", child.output(), "the sender finished while nobody read")
        # Drain, checking every item.
        started = time.monotonic()
        i = 0
        while i < count:
            for item in await rx.recv_many():
                if item != flood_item(i):
                    self.fail(f"item {i} corrupted or out of order ({len(item)} bytes)")
                i += 1
            peak = max(peak, rss())
            self.assertLess(time.monotonic() - started, 60, f"only {i} items after 60 s")
        status, out, err = await child.finish(60)
        self.assertEqual(status, 0, err.decode(errors="replace")[-2000:])
        await sleep(0.2)
        self.assertEqual(rx.queued, 0, "more items than were sent")
        fields = [line.split() for line in out.splitlines() if line.startswith(b"done")]
        self.assertEqual(len(fields), 1, out)
        child_base, child_peak, child_maxrss = (int(x) for x in fields[0][1:])
        receiver_growth = peak - base
        # The child samples its RSS after every send.  Its ru_maxrss is no
        # use here: Linux carries the high-water mark of the forked copy of
        # this (large) trial process across exec into the child.
        sender_growth = child_peak - child_base
        self.assertLess(
            receiver_growth, 64 * MiB, f"receiver RSS grew by {receiver_growth / MiB:.1f} MiB"
        )
        self.assertLess(
            sender_growth,
            64 * MiB,
            f"sender RSS grew by {sender_growth / MiB:.1f} MiB (ru_maxrss {child_maxrss / MiB:.1f} MiB)",
        )


class LoadTests(TestCase):
    """
    Many senders into one receiver.
    """

    timeout = 120

    @as_deferred
    async def test_eight_senders_fifty_thousand_each(self) -> None:
        """
        8 child processes x 50,000 items into one mpsc receiver: every item
        arrives exactly once, and each sender's items in the order sent.
        """
        senders, per_sender = 8, 50_000
        rx = await mpsc.receiver_on(LOOPBACK)
        self.addCleanup(rx.close)
        port = str(rx.local_address[1])
        children: List[ChildProcess] = []
        for n in range(senders):
            child = python_child(LOAD_SENDER, port, str(n), str(per_sender))
            self.addCleanup(child.signal, "KILL")
            children.append(child)
        expected: Dict[int, int] = {n: 0 for n in range(senders)}
        total = senders * per_sender
        received = 0
        started = time.monotonic()
        while received < total:
            items: List[Any] = await rx.recv_many()
            for sender, seq in items:
                if seq != expected[sender]:
                    self.fail(
                        f"sender {sender}: got item {seq}, expected {expected[sender]} "
                        f"({'duplicate' if seq < expected[sender] else 'gap or reorder'})"
                    )
                expected[sender] = seq + 1
            received += len(items)
            self.assertLess(time.monotonic() - started, 90, f"only {received} items after 90 s")
        for child in children:
            status, out, err = await child.finish(30)
            self.assertEqual(status, 0, err.decode(errors="replace")[-2000:])
        await sleep(0.2)
        self.assertEqual(rx.queued, 0, "more items than were sent")
        self.assertEqual(expected, {n: per_sender for n in range(senders)})
