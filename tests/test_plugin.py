"""
The C{twistd tsyncp} plugin: discovery, option checking, the four services
in process, and real C{twistd -n tsyncp ...} child processes stopped with
SIGTERM.

This module also holds the helpers that locate and start the C{twistd}
and C{tsyncp} commands (used by C{test_cli} and C{test_tls}).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import signal
import sys
import tempfile
from typing import Any, List, Optional, Sequence, Tuple

from twisted.application.service import IServiceMaker
from twisted.internet.defer import Deferred, gatherResults
from twisted.plugin import getPlugins
from twisted.python import usage
from twisted.trial import unittest

from tsyncp_tx import barrier, broadcast, mpsc, tap
from tsyncp_tx._standalone import listen_endpoint
from tsyncp_tx.codecs import CborCodec, RawCodec
from tsyncp_tx.errors import ConnectionClosed, TimeoutError

from ._util import LOOPBACK, ChildProcess, as_deferred, eventually, sleep

# Locating the commands


def _script(name: str) -> Optional[str]:
    """
    The console script C{name} installed next to this Python (a venv's
    C{bin/}), if any.
    """
    path = os.path.join(os.path.dirname(sys.executable), name)
    return path if os.path.isfile(path) else None


def _asyncio_reactor() -> bool:
    from twisted.internet import reactor

    return "asyncio" in type(reactor).__module__


def twistd_args(*args: str, foreground: bool = True) -> List[str]:
    """
    Arguments (after the Python executable) running C{twistd -n} in the
    foreground, without a pid file, logging to standard output, on the
    reactor the tests run on; without C{-n} and C{--pidfile=} if not
    C{foreground} (the caller gives its own options).
    """
    script = _script("twistd")
    prefix = (
        [script]
        if script
        else ["-c", "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"]
    )
    reactor = ["--reactor=asyncio"] if _asyncio_reactor() else []
    return prefix + reactor + (["-n", "--pidfile="] if foreground else []) + list(args)


def tsyncp_args(*args: str) -> List[str]:
    """
    Arguments (after the Python executable) running the C{tsyncp} command:
    the installed console script, else C{python -m tsyncp_tx}.
    """
    script = _script("tsyncp")
    return ([script] if script else ["-m", "tsyncp_tx"]) + list(args)


class Child:
    """
    A command run as a child process, killed at cleanup if still running.
    """

    def __init__(self, case: unittest.TestCase, args: Sequence[str], stdin: Optional[bytes] = None) -> None:
        self.process = ChildProcess(args, stdin=stdin)
        self.result: Optional[Tuple[int, bytes, bytes]] = None
        case.addCleanup(self._cleanup)

    async def _cleanup(self) -> None:
        if self.result is None:
            self.process.signal("KILL")
            await self.finish(10)

    def output(self) -> bytes:
        return self.process.output()

    def errors(self) -> bytes:
        return self.process.errors()

    async def wait_for(self, pattern: bytes, timeout: float = 20.0, stream: str = "out") -> "re.Match[bytes]":
        """
        Wait until standard output (or error) matches C{pattern}.
        """
        found: List["re.Match[bytes]"] = []

        def check() -> bool:
            if self.process.done.called:
                return True
            text = self.output() if stream == "out" else self.errors()
            match = re.search(pattern, text)
            if match:
                found.append(match)
            return bool(match)

        await eventually(check, timeout=timeout)
        if not found:
            raise AssertionError(
                f"process ended without printing {pattern!r}:\n"
                f"{self.output().decode(errors='replace')}\n{self.errors().decode(errors='replace')}"
            )
        return found[0]

    async def finish(self, timeout: float = 30.0) -> Tuple[int, bytes, bytes]:
        if self.result is None:
            self.result = await self.process.finish(timeout)
        return self.result

    async def terminate(self, timeout: float = 30.0) -> Tuple[int, bytes, bytes]:
        """
        SIGTERM, then wait for the exit.
        """
        self.process.signal("TERM")
        return await self.finish(timeout)


def ended_gracefully(status: int) -> bool:
    """
    twistd stops on SIGTERM, then re-raises the signal so its exit status
    says how it ended.
    """
    return status in (0, -15, 143)


def read_lines(path: str) -> List[bytes]:
    with open(path, "rb") as f:
        return f.read().splitlines(keepends=True)


# Discovery and options


class DiscoveryTests(unittest.SynchronousTestCase):
    """
    The plugin is found by Twisted's plugin system.
    """

    def test_plugin_discovered(self) -> None:
        """
        C{getPlugins(IServiceMaker)} finds a service maker with tapname
        C{tsyncp} whose options are L{tap.Options}.
        """
        makers = [m for m in getPlugins(IServiceMaker) if m.tapname == "tsyncp"]
        self.assertEqual(len(makers), 1, [m.tapname for m in getPlugins(IServiceMaker)])
        self.assertIs(makers[0].options, tap.Options)
        self.assertIn("barrier", makers[0].description)

    def test_usage_lists_subcommands(self) -> None:
        """
        The help text lists the four subcommands.
        """
        text = tap.Options().getUsage()
        for name in ("barrier", "sink", "source", "relay"):
            self.assertIn(name, text)


class OptionTests(unittest.SynchronousTestCase):
    """
    Bad options raise a C{UsageError} naming the option.
    """

    def parse(self, *argv: str) -> tap.Options:
        options = tap.Options()
        options.parseOptions(list(argv))
        return options

    def assertUsage(self, argv: Sequence[str], *fragments: str) -> None:
        with self.assertRaises(usage.UsageError) as caught:
            self.parse(*argv)
        for fragment in fragments:
            self.assertIn(fragment, str(caught.exception))

    def test_subcommand_required(self) -> None:
        """
        Without a subcommand: a usage error listing them.
        """
        self.assertUsage([], "subcommand", "barrier", "relay")

    def test_barrier_options(self) -> None:
        """
        C{--parties} and C{--listen} are required and checked.
        """
        self.assertUsage(["barrier", "--listen", "0"], "--parties")
        self.assertUsage(["barrier", "--listen", "0", "--parties", "0"], "--parties")
        self.assertUsage(["barrier", "--listen", "0", "--parties", "two"], "--parties", "two")
        self.assertUsage(["barrier", "--parties", "2"], "--listen")
        self.assertUsage(["barrier", "--listen", "nosuchtype:1:2", "--parties", "2"], "--listen", "nosuchtype")
        self.assertUsage(["barrier", "--listen", "99999", "--parties", "2"], "--listen", "99999")
        options = self.parse("barrier", "--listen", "tcp:0", "--parties", "3")
        self.assertEqual(options.subOptions["parties"], 3)

    def test_sink_options(self) -> None:
        """
        C{--output} is required, C{--codec} checked, C{ssl:} key files must
        exist.
        """
        self.assertUsage(["sink", "--listen", "0"], "--output")
        self.assertUsage(["sink", "--listen", "0", "--output", "x", "--codec", "xml"], "--codec", "xml")
        self.assertUsage(["sink", "--listen", "ssl:0:privateKey=/no/such.pem", "--output", "x"], "--listen", "/no/such.pem")
        options = self.parse("sink", "--listen", "0", "--output", "-", "--codec", "raw", "--fsync")
        self.assertTrue(options.subOptions["fsync"])

    def test_source_options(self) -> None:
        """
        C{--input} is required, C{--receivers} checked.
        """
        self.assertUsage(["source", "--listen", "0"], "--input")
        self.assertUsage(["source", "--listen", "0", "--input", "-", "--receivers", "0"], "--receivers")
        self.assertEqual(self.parse("source", "--listen", "0", "--input", "-").subOptions["receivers"], 1)

    def test_relay_options(self) -> None:
        """
        Both listening addresses are required.
        """
        self.assertUsage(["relay", "--listen-in", "0"], "--listen-out")
        self.assertUsage(["relay", "--listen-out", "0"], "--listen-in")

    def test_make_service(self) -> None:
        """
        C{makeService} builds the chosen subcommand's service.
        """
        for argv, kind in [
            (["barrier", "--listen", "0", "--parties", "2"], tap.BarrierService),
            (["sink", "--listen", "0", "--output", "-"], tap.SinkService),
            (["source", "--listen", "0", "--input", "-"], tap.SourceService),
            (["relay", "--listen-in", "0", "--listen-out", "0"], tap.RelayService),
        ]:
            self.assertIsInstance(tap.makeService(self.parse(*argv)), kind)


class LoopbackDefaultTests(unittest.TestCase):
    """
    Listening addresses bind to 127.0.0.1 unless another interface is named.
    """

    @as_deferred
    async def test_loopback_by_default(self) -> None:
        """
        C{PORT}, C{localhost:PORT} and C{tcp:PORT} (no C{interface=}) listen
        on 127.0.0.1 only.
        """
        from twisted.internet import reactor

        for text in ("0", "localhost:0", "tcp:0", "tcp:port=0", LOOPBACK):
            rx = await mpsc.receiver_on(listen_endpoint(reactor, text))
            try:
                self.assertEqual(rx.local_address[0], "127.0.0.1", text)
            finally:
                await rx.close()

    @as_deferred
    async def test_tcp6_loopback_by_default(self) -> None:
        """
        C{tcp6:PORT} without C{interface=} listens on ::1 only.
        """
        from twisted.internet import reactor
        from twisted.internet.error import CannotListenError

        try:
            rx = await mpsc.receiver_on(listen_endpoint(reactor, "tcp6:0"))
        except CannotListenError:
            raise unittest.SkipTest("no IPv6 loopback here")
        try:
            self.assertEqual(rx.local_address[0], "::1")
        finally:
            await rx.close()

    def test_bad_addresses(self) -> None:
        """
        Unusable addresses raise C{ValueError} saying why.
        """
        from twisted.internet import reactor

        for text, fragment in [("", "empty"), ("70000", "range"), ("bogus:1:2", "bogus")]:
            with self.assertRaises(ValueError) as caught:
                listen_endpoint(reactor, text)
            self.assertIn(fragment, str(caught.exception))


# The services, in process


class ServiceTestsMixin:
    def tempdir(self: Any) -> str:
        path = tempfile.mkdtemp(prefix="tsx-plugin-")
        self.addCleanup(shutil.rmtree, path, True)
        return path

    def start(self: Any, service: Any) -> Any:
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        return service


class SinkServiceTests(ServiceTestsMixin, unittest.TestCase):
    """
    L{tap.SinkService}: an mpsc receiver writing JSON lines.
    """

    def sink(self, path: str, codec: str = "json", fsync: bool = False, **kwargs: Any) -> tap.SinkService:
        from twisted.internet import reactor

        return self.start(
            tap.SinkService(listen_endpoint(reactor, LOOPBACK), LOOPBACK, codec, path, fsync, **kwargs)
        )

    @as_deferred
    async def test_items_appended_as_json_lines(self) -> None:
        """
        Items from two senders become one compact JSON line each; the file
        is appended to, its earlier content kept; stopping closes it with
        every line complete.
        """
        path = os.path.join(self.tempdir(), "out.jsonl")
        with open(path, "wb") as f:
            f.write(b'{"earlier":true}\n')
        sink = self.sink(path)
        assert sink.receiver is not None
        address = sink.receiver.local_address
        tx1 = await mpsc.sender_to(address)
        tx2 = await mpsc.sender_to(address)
        self.addCleanup(tx1.close)
        self.addCleanup(tx2.close)
        for n in range(50):
            await (tx1 if n % 2 else tx2).send({"n": n, "text": "é"})
        await eventually(lambda: sink.writer is not None and sink.writer.written == 50)
        await sink.stopService()
        lines = read_lines(path)
        self.assertEqual(lines[0], b'{"earlier":true}\n')
        self.assertEqual(len(lines), 51)
        self.assertTrue(all(line.endswith(b"\n") for line in lines))
        self.assertEqual(sorted(json.loads(line)["n"] for line in lines[1:]), list(range(50)))
        self.assertIn('{"n":0,"text":"é"}\n'.encode(), lines)

    @as_deferred
    async def test_partial_line_repaired(self) -> None:
        """
        A file whose last line lacks its newline (a killed writer) gets one
        before new lines are appended.
        """
        path = os.path.join(self.tempdir(), "out.jsonl")
        with open(path, "wb") as f:
            f.write(b'{"complete":1}\n{"cut')
        sink = self.sink(path)
        assert sink.receiver is not None and sink.writer is not None
        self.assertTrue(sink.writer.repaired)
        tx = await mpsc.sender_to(sink.receiver.local_address)
        self.addCleanup(tx.close)
        await tx.send({"new": 1})
        await eventually(lambda: sink.writer is not None and sink.writer.written == 1)
        self.assertEqual(read_lines(path)[-2:], [b'{"cut\n', b'{"new":1}\n'])

    @as_deferred
    async def test_raw_codec_base64(self) -> None:
        """
        With the raw codec each payload is written as a JSON string holding
        its base64.
        """
        path = os.path.join(self.tempdir(), "raw.jsonl")
        sink = self.sink(path, codec="raw")
        assert sink.receiver is not None
        tx = await mpsc.sender_to(sink.receiver.local_address, codec=RawCodec())
        self.addCleanup(tx.close)
        payloads = [b"\x00\xff binary", b"", b"\n"]
        for payload in payloads:
            await tx.send(payload)
        await eventually(lambda: sink.writer is not None and sink.writer.written == 3)
        written = [base64.b64decode(json.loads(line)) for line in read_lines(path)]
        self.assertEqual(written, payloads)

    @as_deferred
    async def test_cbor_codec(self) -> None:
        """
        CBOR items are written as JSON; byte strings as base64.
        """
        path = os.path.join(self.tempdir(), "cbor.jsonl")
        sink = self.sink(path, codec="cbor")
        assert sink.receiver is not None
        tx = await mpsc.sender_to(sink.receiver.local_address, codec=CborCodec())
        self.addCleanup(tx.close)
        await tx.send({"a": [1, 2.5, None], "b": b"\x01\x02"})
        await eventually(lambda: sink.writer is not None and sink.writer.written == 1)
        self.assertEqual(json.loads(read_lines(path)[0]), {"a": [1, 2.5, None], "b": "AQI="})

    @as_deferred
    async def test_fsync_per_batch(self) -> None:
        """
        With C{fsync}, every written batch is C{fsync}ed.
        """
        calls: List[int] = []
        real_fsync = os.fsync
        self.patch(os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd))[1])
        path = os.path.join(self.tempdir(), "durable.jsonl")
        sink = self.sink(path, fsync=True)
        assert sink.receiver is not None
        tx = await mpsc.sender_to(sink.receiver.local_address)
        self.addCleanup(tx.close)
        await tx.send(1)
        await eventually(lambda: sink.writer is not None and sink.writer.written == 1)
        self.assertGreaterEqual(len(calls), 1)
        await tx.send(2)
        before = len(calls)
        await eventually(lambda: sink.writer is not None and sink.writer.written == 2)
        self.assertGreater(len(calls), before)

    @as_deferred
    async def test_bad_payload_skipped(self) -> None:
        """
        A payload the codec refuses is logged and skipped; the items after
        it are written.
        """
        path = os.path.join(self.tempdir(), "out.jsonl")
        sink = self.sink(path)
        assert sink.receiver is not None
        tx = await mpsc.sender_to(sink.receiver.local_address)
        self.addCleanup(tx.close)
        await tx.send(b"not json{", raw=True)
        await tx.send({"ok": True})
        await eventually(lambda: sink.writer is not None and sink.writer.written == 1)
        self.assertEqual(sink.bad_payloads, 1)
        self.assertEqual(read_lines(path), [b'{"ok":true}\n'])
        self.flushLoggedErrors()

    def test_port_in_use(self) -> None:
        """
        A port that cannot be bound ends the start with a one-line
        C{SystemExit} message naming the address.
        """
        from twisted.internet import reactor
        from twisted.internet.protocol import Factory

        port = reactor.listenTCP(0, Factory(), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        path = os.path.join(self.tempdir(), "out.jsonl")
        service = tap.SinkService(listen_endpoint(reactor, str(number)), str(number), "json", path)
        with self.assertRaises(SystemExit) as caught:
            service.privilegedStartService()
        self.assertIn(f"cannot listen on {number}", str(caught.exception.code))
        self.assertNotIn("\n", str(caught.exception.code))

    def test_output_cannot_be_opened(self) -> None:
        """
        An output in a missing directory ends the start with a message
        naming it.
        """
        from twisted.internet import reactor

        service = tap.SinkService(listen_endpoint(reactor, LOOPBACK), LOOPBACK, "json", "/no/such/dir/out")
        with self.assertRaises(SystemExit) as caught:
            service.privilegedStartService()
        self.assertIn("/no/such/dir/out", str(caught.exception.code))


class BarrierServiceTests(ServiceTestsMixin, unittest.TestCase):
    """
    L{tap.BarrierService}: a reusable barrier logging each generation.
    """

    @as_deferred
    async def test_generations(self) -> None:
        """
        Each time two waiters wait, both are released; every generation is
        recorded with the released addresses.
        """
        from twisted.internet import reactor

        service = self.start(tap.BarrierService(listen_endpoint(reactor, LOOPBACK), LOOPBACK, 2))
        assert service.barrier is not None
        address = service.barrier.local_address
        w1 = await barrier.waiter_to(address)
        w2 = await barrier.waiter_to(address)
        self.addCleanup(w1.close)
        self.addCleanup(w2.close)
        await gatherResults([w1.wait(timeout=5), w2.wait(timeout=5)])
        await gatherResults([w1.wait(timeout=5), w2.wait(timeout=5)])
        self.assertEqual(len(service.generations), 2)
        self.assertEqual(sorted(service.generations[0]), sorted([w1.local_address, w2.local_address]))


class SourceServiceTests(ServiceTestsMixin, unittest.TestCase):
    """
    L{tap.SourceService}: a broadcast sender of a JSON-lines file.
    """

    def source(self, text: bytes, receivers: int, codec: str = "json") -> Tuple[tap.SourceService, Deferred[None], List[None]]:
        from twisted.internet import reactor

        path = os.path.join(self.tempdir(), "in.jsonl")
        with open(path, "wb") as f:
            f.write(text)
        done: Deferred[None] = Deferred()
        fatal: List[None] = []
        service = self.start(
            tap.SourceService(
                listen_endpoint(reactor, LOOPBACK), LOOPBACK, codec, path, receivers,
                on_done=lambda: done.callback(None), on_fatal=lambda: fatal.append(None),
            )
        )
        return service, done, fatal

    @as_deferred
    async def test_waits_for_receivers_then_sends_every_line(self) -> None:
        """
        Nothing is sent before the second receiver connects; then both get
        every item, in order, and the stream ends cleanly.
        """
        lines = b"".join(json.dumps({"n": n}).encode() + b"\n" for n in range(200)) + b"\n  \n[1]"
        service, done, _ = self.source(lines, receivers=2)
        assert service.sender is not None
        address = service.sender.local_address
        rx1 = await broadcast.receiver_to(address)
        self.addCleanup(rx1.close)
        with self.assertRaises(TimeoutError):
            await rx1.recv(timeout=0.3)
        rx2 = await broadcast.receiver_to(address)
        self.addCleanup(rx2.close)
        await done
        expected = [{"n": n} for n in range(200)] + [[1]]
        for rx in (rx1, rx2):
            got = [item async for item in rx]
            self.assertEqual(got, expected)
        self.assertEqual(service.sent, 201)

    @as_deferred
    async def test_stop_with_stalled_receiver(self) -> None:
        """
        A receiver that stopped reading does not keep C{stopService} from
        finishing: after C{close_grace} seconds it stops anyway.
        """
        line = json.dumps("x" * 65536).encode() + b"\n"
        service, done, _ = self.source(line * 300, receivers=1)
        service.close_grace = 0.5
        assert service.sender is not None
        rx = await broadcast.receiver_to(
            service.sender.local_address, recv_high_water=1, recv_high_water_bytes=65536
        )
        self.addCleanup(rx.close)
        await sleep(0.5)
        self.assertFalse(done.called)  # the sender is blocked by the stalled receiver
        from twisted.internet import reactor

        started = reactor.seconds()
        await service.stopService()
        self.assertLess(reactor.seconds() - started, 5)

    @as_deferred
    async def test_bad_line_stops(self) -> None:
        """
        A line that is not JSON is reported (naming the line) and stops the
        source.
        """
        from twisted.logger import formatEvent, globalLogPublisher

        messages: List[str] = []

        def observe(event: Any) -> None:
            messages.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)
        service, done, fatal = self.source(b'{"ok":1}\nnot json\n', receivers=1)
        assert service.sender is not None
        rx = await broadcast.receiver_to(service.sender.local_address)
        self.addCleanup(rx.close)
        self.assertEqual(await rx.recv(timeout=5), {"ok": 1})
        await eventually(lambda: bool(fatal))
        self.assertFalse(done.called)
        self.assertTrue(
            any("line 2 is not valid JSON" in m for m in messages), messages
        )


class RelayServiceTests(ServiceTestsMixin, unittest.TestCase):
    """
    L{tap.RelayService}: mpsc in, broadcast out, bytes untouched.
    """

    def relay(self, receivers: int = 1) -> tap.RelayService:
        from twisted.internet import reactor

        return self.start(
            tap.RelayService(
                listen_endpoint(reactor, LOOPBACK), LOOPBACK,
                listen_endpoint(reactor, LOOPBACK), LOOPBACK, receivers,
            )
        )

    @as_deferred
    async def test_fan_in_fan_out_bytes_untouched(self) -> None:
        """
        Payloads from two senders (not valid in any codec) reach both
        receivers byte for byte, each sender's in order.
        """
        service = self.relay(receivers=2)
        assert service.sender is not None and service.receiver is not None
        rx1 = await broadcast.receiver_to(service.sender.local_address, codec=RawCodec())
        rx2 = await broadcast.receiver_to(service.sender.local_address, codec=RawCodec())
        tx1 = await mpsc.sender_to(service.receiver.local_address, codec=RawCodec())
        tx2 = await mpsc.sender_to(service.receiver.local_address, codec=RawCodec())
        for ch in (rx1, rx2, tx1, tx2):
            self.addCleanup(ch.close)
        for n in range(100):
            await tx1.send(b"\xff1-%d" % n)
            await tx2.send(b"\xfe2-%d" % n)
        for rx in (rx1, rx2):
            got = [await rx.recv(timeout=5) for _ in range(200)]
            self.assertEqual([p for p in got if p.startswith(b"\xff")], [b"\xff1-%d" % n for n in range(100)])
            self.assertEqual([p for p in got if p.startswith(b"\xfe")], [b"\xfe2-%d" % n for n in range(100)])

    @as_deferred
    async def test_holds_items_until_a_receiver_connects(self) -> None:
        """
        Items sent before any receiver connected are delivered to the first
        one, not dropped.
        """
        service = self.relay(receivers=1)
        assert service.sender is not None and service.receiver is not None
        tx = await mpsc.sender_to(service.receiver.local_address)
        self.addCleanup(tx.close)
        for n in range(10):
            await tx.send(n)
        await sleep(0.1)
        rx = await broadcast.receiver_to(service.sender.local_address)
        self.addCleanup(rx.close)
        self.assertEqual([await rx.recv(timeout=5) for _ in range(10)], list(range(10)))

    @as_deferred
    async def test_backpressure_end_to_end(self) -> None:
        """
        A receiver that stops reading makes the relay stop receiving, and
        the sender's C{send()} eventually waits: the bytes in flight stay
        bounded.  Once the receiver reads again, everything arrives, in
        order.
        """
        service = self.relay(receivers=1)
        assert service.sender is not None and service.receiver is not None
        rx = await broadcast.receiver_to(
            service.sender.local_address, codec=RawCodec(), recv_high_water=4, recv_high_water_bytes=1 << 20
        )
        tx = await mpsc.sender_to(service.receiver.local_address, codec=RawCodec())
        self.addCleanup(rx.close)
        self.addCleanup(tx.close)
        payload = b"x" * 65536
        sent = 0
        limit = 2000  # 128 MiB: far more than the buffers along the way hold
        waited = False
        while sent < limit:
            d = tx.send(b"%08d" % sent + payload)
            sent += 1
            if not d.called:
                timeout = sleep(0.5)
                done = await Deferred.fromCoroutine(_first(d, timeout))
                if not done:
                    waited = True
                    break
        self.assertTrue(waited, f"send() never waited after {sent} items of 64 KiB")
        self.assertLess(sent, limit)
        # Drain: every item arrives, in order, none lost.
        for n in range(sent):
            item = await rx.recv(timeout=10)
            self.assertEqual(item[:8], b"%08d" % n)


async def _first(d: Deferred[Any], timeout: Deferred[None]) -> bool:
    """
    Whether C{d} fires before C{timeout}.
    """
    from twisted.internet.defer import DeferredList

    result = await DeferredList([d, timeout], fireOnOneCallback=True, consumeErrors=True)
    if not timeout.called:
        timeout.cancel()
    return bool(d.called) and result[1] == 0


# Real twistd processes


class TwistdTests(ServiceTestsMixin, unittest.TestCase):
    """
    C{twistd -n tsyncp ...} child processes, from the installed package
    when there is one.
    """

    def twistd(self, *args: str) -> Child:
        return Child(self, twistd_args(*args))

    @as_deferred
    async def test_help_lists_subcommands(self) -> None:
        """
        C{twistd -n tsyncp --help} lists the subcommands and exits 0.
        """
        status, out, err = await self.twistd("tsyncp", "--help").finish()
        self.assertEqual(status, 0, err)
        for name in (b"barrier", b"sink", b"source", b"relay"):
            self.assertIn(name, out)

    @as_deferred
    async def test_bad_option_usage_error(self) -> None:
        """
        A bad option gives a message naming it, no traceback, a failing
        status.
        """
        status, out, err = await self.twistd("tsyncp", "barrier", "--listen", "0", "--parties", "none").finish()
        self.assertNotEqual(status, 0)
        self.assertIn(b"--parties", out + err)
        self.assertNotIn(b"Traceback", out + err)

    @as_deferred
    async def test_port_in_use(self) -> None:
        """
        A port already in use ends twistd with a failing status and a
        one-line message, no traceback.
        """
        rx = await mpsc.receiver_on(LOOPBACK)
        self.addCleanup(rx.close)
        port = str(rx.local_address[1])
        path = os.path.join(self.tempdir(), "out.jsonl")
        status, out, err = await self.twistd("tsyncp", "sink", "--listen", port, "--output", path).finish()
        self.assertNotEqual(status, 0)
        self.assertIn(f"cannot listen on {port}".encode(), out + err)
        self.assertNotIn(b"Traceback", out + err)

    @as_deferred
    async def test_sink_sigterm_and_restart(self) -> None:
        """
        A sink child writes every item sent to it; SIGTERM stops it
        gracefully with every line complete; restarted on the same file it
        appends.
        """
        path = os.path.join(self.tempdir(), "sink.jsonl")
        for run in range(2):
            child = self.twistd("tsyncp", "sink", "--listen", "tcp:0", "--output", path, "--fsync")
            match = await child.wait_for(rb"sink listening on 127\.0\.0\.1:(\d+)")
            tx = await mpsc.sender_to(("127.0.0.1", int(match.group(1))))
            for n in range(300):
                await tx.send({"run": run, "n": n, "pad": "p" * 100})
            await tx.close()
            await eventually(lambda: len(read_lines(path)) == 300 * (run + 1), timeout=20)
            status, out, err = await child.terminate()
            self.assertTrue(ended_gracefully(status), (status, out, err))
            self.assertIn(b"sink stopped: 300 item(s) written", out)
            self.assertNotIn(b"Traceback", out + err)
        lines = read_lines(path)
        self.assertEqual(len(lines), 600)
        items = [json.loads(line) for line in lines]
        self.assertEqual([(i["run"], i["n"]) for i in items], [(r, n) for r in range(2) for n in range(300)])

    @as_deferred
    async def test_barrier_child(self) -> None:
        """
        A barrier child releases two library waiters, twice, logging each
        generation.
        """
        child = self.twistd("tsyncp", "barrier", "--listen", "tcp:0", "--parties", "2")
        match = await child.wait_for(rb"barrier listening on 127\.0\.0\.1:(\d+)")
        address = ("127.0.0.1", int(match.group(1)))
        w1 = await barrier.waiter_to(address)
        w2 = await barrier.waiter_to(address)
        self.addCleanup(w1.close)
        self.addCleanup(w2.close)
        for _ in range(2):
            await gatherResults([w1.wait(timeout=10), w2.wait(timeout=10)])
        await child.wait_for(rb"generation 2: released 2 waiter")
        status, out, err = await child.terminate()
        self.assertTrue(ended_gracefully(status), (status, out, err))
        self.assertIn(b"generation 1: released 2 waiter", out)

    @as_deferred
    async def test_source_child(self) -> None:
        """
        A source child waits for two receivers, sends every line to both,
        then exits on its own.
        """
        path = os.path.join(self.tempdir(), "in.jsonl")
        with open(path, "w") as f:
            for n in range(100):
                f.write(json.dumps({"n": n}) + "\n")
        child = self.twistd("tsyncp", "source", "--listen", "tcp:0", "--input", path, "--receivers", "2")
        match = await child.wait_for(rb"source listening on 127\.0\.0\.1:(\d+)")
        address = ("127.0.0.1", int(match.group(1)))
        receivers = [await broadcast.receiver_to(address) for _ in range(2)]
        for rx in receivers:
            self.addCleanup(rx.close)
        for rx in receivers:
            self.assertEqual([item async for item in rx], [{"n": n} for n in range(100)])
        status, out, err = await child.finish()
        self.assertEqual(status, 0, (out, err))
        self.assertIn(b"source done: sent 100 item(s)", out)

    @as_deferred
    async def test_source_child_bad_line_fails(self) -> None:
        """
        A source whose input has a bad line logs why and exits with status
        1, so that scripts and supervisors see the failure.
        """
        path = os.path.join(self.tempdir(), "in.jsonl")
        with open(path, "w") as f:
            f.write('{"n": 1}\n{oops\n')
        child = self.twistd("tsyncp", "source", "--listen", "tcp:0", "--input", path)
        match = await child.wait_for(rb"source listening on 127\.0\.0\.1:(\d+)")
        rx = await broadcast.receiver_to(("127.0.0.1", int(match.group(1))))
        self.addCleanup(rx.close)
        status, out, err = await child.finish()
        self.assertEqual(status, 1, (out, err))
        self.assertIn(b"line 2", out + err)
        self.assertNotIn(b"Traceback", out + err)

    @as_deferred
    async def test_standard_streams_need_foreground(self) -> None:
        """
        C{--output -} and C{--input -} are refused when twistd would
        daemonize (its standard streams would be /dev/null), before it
        does.
        """
        directory = self.tempdir()
        pidfile = os.path.join(directory, "twistd.pid")

        def no_daemon_left() -> None:
            if os.path.exists(pidfile):  # it daemonized after all: stop it
                with open(pidfile) as f:
                    os.kill(int(f.read()), signal.SIGKILL)

        self.addCleanup(no_daemon_left)
        for sub in (["sink", "--output", "-"], ["source", "--input", "-"]):
            args = ["--pidfile", pidfile, "--logfile", os.path.join(directory, "log"),
                    "tsyncp", *sub, "--listen", "tcp:0"]
            status, out, err = await Child(self, twistd_args(*args, foreground=False)).finish()
            self.assertNotEqual(status, 0)
            self.assertIn(f"--{sub[1][2:]} - needs twistd -n".encode(), out + err)
            self.assertFalse(os.path.exists(pidfile))

    @as_deferred
    async def test_source_child_stdin(self) -> None:
        """
        C{source --input -} sends the lines of its standard input.
        """
        data = b"".join(b"[%d]\n" % n for n in range(500))
        child = Child(
            self,
            twistd_args("tsyncp", "source", "--listen", "tcp:0", "--input", "-", "--codec", "cbor"),
            stdin=data,
        )
        match = await child.wait_for(rb"source listening on 127\.0\.0\.1:(\d+)")
        rx = await broadcast.receiver_to(("127.0.0.1", int(match.group(1))), codec=CborCodec())
        self.addCleanup(rx.close)
        self.assertEqual([item async for item in rx], [[n] for n in range(500)])
        status, out, err = await child.finish()
        self.assertEqual(status, 0, (out, err))

    @as_deferred
    async def test_relay_child(self) -> None:
        """
        A relay child forwards raw payloads from a sender to two receivers.
        """
        child = self.twistd(
            "tsyncp", "relay", "--listen-in", "tcp:0", "--listen-out", "tcp:0", "--receivers", "2"
        )
        match = await child.wait_for(
            rb"senders connect to 127\.0\.0\.1:(\d+), receivers to 127\.0\.0\.1:(\d+)"
        )
        rx1 = await broadcast.receiver_to(("127.0.0.1", int(match.group(2))), codec=RawCodec())
        rx2 = await broadcast.receiver_to(("127.0.0.1", int(match.group(2))), codec=RawCodec())
        tx = await mpsc.sender_to(("127.0.0.1", int(match.group(1))), codec=RawCodec())
        for ch in (rx1, rx2, tx):
            self.addCleanup(ch.close)
        payloads = [bytes([n]) * n for n in range(1, 50)]
        for payload in payloads:
            await tx.send(payload)
        for rx in (rx1, rx2):
            self.assertEqual([await rx.recv(timeout=10) for _ in payloads], payloads)
        status, out, err = await child.terminate()
        self.assertTrue(ended_gracefully(status), (status, out, err))
        self.assertIn(b"relay stopped: forwarded 49 item(s)", out)
        # The receivers see the end of the stream.
        with self.assertRaises(ConnectionClosed):
            await rx1.recv(timeout=10)
