"""
One test per primitive whose peer is a separate child Python process (run
with the checkout on C{PYTHONPATH} by L{tests._util.python_child}).

Each child script is an inline string sharing L{PRELUDE}; it gets its
arguments in C{sys.argv}, reports on stdout and exits 0 on success.  A
child never outlives a broken test: it exits by itself after 20 seconds,
and the test kills it on cleanup.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

from twisted.internet.defer import gatherResults
from twisted.trial.unittest import TestCase

from tsyncp_tx import barrier, broadcast, channel, mpsc, multi_channel, spsc
from tsyncp_tx.errors import ConnectionClosed

from ._util import LOOPBACK, ChildProcess, as_deferred, eventually, python_child
from .test_channel import port_of

PRELUDE = """
import json, os, sys
from twisted.internet.defer import Deferred
from twisted.internet.task import react

def run(main):
    def start(reactor):
        reactor.callLater(20, os._exit, 3)  # never outlive a broken test
        return Deferred.fromCoroutine(main(reactor))
    react(start)

def say(obj):
    print(json.dumps(obj), flush=True)
"""

CHANNEL_ECHO = PRELUDE + """
from tsyncp_tx import channel

async def main(reactor):
    ch = await channel.channel_to(("127.0.0.1", int(sys.argv[1])))
    while True:
        item = await ch.recv()
        if item == "stop":
            break
        await ch.send({"echo": item, "pid": os.getpid()})
    await ch.close()

run(main)
"""

MULTI_CLIENT = PRELUDE + """
from tsyncp_tx import channel

async def main(reactor):
    name = sys.argv[2]
    ch = await channel.channel_to(int(sys.argv[1]))
    await ch.send({"hello": name})
    got = []
    while True:
        item = await ch.recv()
        if item == "bye":
            break
        got.append(item)
    say({"name": name, "got": got})
    await ch.close()

run(main)
"""

MPSC_SENDER = PRELUDE + """
from tsyncp_tx import mpsc

async def main(reactor):
    name, count = sys.argv[2], int(sys.argv[3])
    tx = await mpsc.sender_to(f"127.0.0.1:{sys.argv[1]}")
    for i in range(count):
        tx.send([name, i])
    await tx.close()

run(main)
"""

BROADCAST_RECEIVER = PRELUDE + """
from tsyncp_tx import broadcast

async def main(reactor):
    rx = await broadcast.receiver_to(("127.0.0.1", int(sys.argv[1])))
    say("connected")
    got = [item async for item in rx]
    say({"count": len(got), "in_order": got == list(range(len(got)))})

run(main)
"""

SPSC_LISTENING_SENDER = PRELUDE + """
from tsyncp_tx import spsc

async def main(reactor):
    count = int(sys.argv[1])
    tx = await spsc.sender_on("tcp:0:interface=127.0.0.1", accept=0)
    say({"port": tx.local_address[1]})
    await tx.accept()
    for i in range(count):
        await tx.send({"i": i})
    await tx.close()

run(main)
"""

BARRIER_WAITER = PRELUDE + """
from tsyncp_tx import barrier

async def main(reactor):
    w = await barrier.waiter_to(int(sys.argv[1]))
    for generation in range(int(sys.argv[2])):
        await w.wait()
        say({"released": generation})
    await w.close()

run(main)
"""


class ChildPeerTests(TestCase):
    """
    Every primitive against a peer in another process.
    """

    timeout = 60

    def child(self, code: str, *args: Any) -> ChildProcess:
        """
        Start a child running C{code}; kill it on cleanup if still running.

        @param code: The script.
        @param args: Its arguments (turned into strings).
        @return: The child.
        """
        process = python_child(code, *map(str, args))

        async def stop() -> None:
            process.signal("KILL")
            await process.done

        self.addCleanup(lambda: as_deferred(stop)())
        return process

    async def succeeded(self, process: ChildProcess) -> List[Any]:
        """
        Wait for a child to exit 0.

        @return: Its stdout as a list of JSON values, one a line.
        """
        status, out, err = await process.finish(timeout=30)
        self.assertEqual(status, 0, err.decode("utf-8", "replace"))
        return [json.loads(line) for line in out.decode("utf-8").splitlines() if line.strip()]

    @as_deferred
    async def test_channel(self) -> None:
        """
        A child echoes every item back over one channel, in order.
        """
        ch = await channel.channel_on(LOOPBACK, accept=0)
        self.addCleanup(ch.close)
        child = self.child(CHANNEL_ECHO, port_of(ch))
        await ch.accept(timeout=20)
        for i in range(50):
            ch.send({"n": i})
        echoes = [await ch.recv() for _ in range(50)]
        self.assertEqual([e["echo"]["n"] for e in echoes], list(range(50)))
        self.assertEqual({e["pid"] for e in echoes}, {child.pid})
        await ch.send("stop")
        await self.assertFailure(ch.recv(), ConnectionClosed)
        await self.succeeded(child)

    @as_deferred
    async def test_multi_channel(self) -> None:
        """
        Two child clients of a multi-channel: their hellos carry their
        addresses; a broadcast reaches both, C{to=} only one.
        """
        mc = await multi_channel.channel_on(LOOPBACK)
        self.addCleanup(mc.close)
        port = port_of(mc)
        children = {name: self.child(MULTI_CLIENT, port, name) for name in ("a", "b")}
        await mc.accept(2, timeout=20)
        addresses: Dict[str, Any] = {}
        for _ in range(2):
            item, address = await mc.recv(with_addr=True)
            addresses[item["hello"]] = address
        self.assertEqual(sorted(addresses.values()), sorted(mc.addresses))
        self.assertEqual(await mc.send("everyone"), 2)
        self.assertEqual(await mc.send("just a", to=[addresses["a"]]), 1)
        self.assertEqual(await mc.send("bye"), 2)
        reports = {}
        for name, process in children.items():
            (report,) = await self.succeeded(process)
            reports[report["name"]] = report["got"]
        self.assertEqual(reports, {"a": ["everyone", "just a"], "b": ["everyone"]})

    @as_deferred
    async def test_mpsc(self) -> None:
        """
        Two child senders: every item arrives, each child's in order.
        """
        rx = await mpsc.receiver_on(LOOPBACK)
        self.addCleanup(rx.close)
        n = 300
        children = [self.child(MPSC_SENDER, port_of(rx), name, n) for name in ("x", "y")]
        got: Dict[str, List[int]] = {"x": [], "y": []}
        for _ in range(2 * n):
            name, i = await rx.recv(timeout=20)
            got[name].append(i)
        self.assertEqual(got, {"x": list(range(n)), "y": list(range(n))})
        await gatherResults([as_deferred(self.succeeded)(c) for c in children])

    @as_deferred
    async def test_broadcast(self) -> None:
        """
        Two child receivers each get every item, in order, and see the end
        of the stream when the sender closes.
        """
        tx = await broadcast.sender_on(LOOPBACK)
        self.addCleanup(tx.close)
        children = [self.child(BROADCAST_RECEIVER, port_of(tx)) for _ in range(2)]
        await tx.accept(2, timeout=20)
        await eventually(lambda: all(b"connected" in c.output() for c in children))
        for i in range(200):
            self.assertEqual(await tx.send(i), 2)
        await tx.close()
        for process in children:
            lines = await self.succeeded(process)
            self.assertEqual(lines[-1], {"count": 200, "in_order": True})

    @as_deferred
    async def test_spsc_child_listens(self) -> None:
        """
        The child listens as the spsc sender (port 0, reported on stdout);
        this process connects as the receiver.
        """
        child = self.child(SPSC_LISTENING_SENDER, 100)
        await eventually(lambda: b"\n" in child.output(), timeout=20)
        port = json.loads(child.output().splitlines()[0])["port"]
        rx = await spsc.receiver_to(("127.0.0.1", port))
        self.addCleanup(rx.close)
        got = [item["i"] async for item in rx]
        self.assertEqual(got, list(range(100)))
        error = await self.assertFailure(rx.recv(), ConnectionClosed)
        self.assertEqual(error.address, ("127.0.0.1", port))
        await self.succeeded(child)

    @as_deferred
    async def test_barrier(self) -> None:
        """
        Two child waiters on a C{parties=2} barrier go through three
        generations together.
        """
        b = await barrier.barrier_on(LOOPBACK, parties=2)
        self.addCleanup(b.close)
        children = [self.child(BARRIER_WAITER, port_of(b), 3) for _ in range(2)]
        for process in children:
            lines = await self.succeeded(process)
            self.assertEqual(lines, [{"released": g} for g in range(3)])
        self.assertEqual(b.generation, 3)
