"""
The C{tsyncp} command: argument checking and the shared JSON-lines helpers
in process; C{send}, C{recv}, C{wait} and C{release} as real child
processes talking to the library.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
import tempfile
from typing import Any, List

from twisted.internet.defer import gatherResults
from twisted.internet.task import Clock
from twisted.trial import unittest

from tsyncp_tx import __version__, barrier, broadcast, mpsc
from tsyncp_tx._cli import main
from tsyncp_tx._standalone import InputError, LineFormat, LineReader, Progress
from tsyncp_tx.codecs import CborCodec, RawCodec

from ._util import LOOPBACK, as_deferred, eventually, sleep
from .test_plugin import Child, tsyncp_args


class UsageTests(unittest.SynchronousTestCase):
    """
    Bad command lines exit with status 2 and a message naming the problem,
    before any network activity.
    """

    def run_main(self, *argv: str) -> "tuple[int, str]":
        err = io.StringIO()
        out = io.StringIO()
        self.patch(sys, "stderr", err)
        self.patch(sys, "stdout", out)
        try:
            code = main(list(argv))
        except SystemExit as e:  # main must not raise
            self.fail(f"main raised SystemExit({e.code!r})")
        return code, err.getvalue() + out.getvalue()

    def assertUsage(self, argv: List[str], *fragments: str) -> None:
        code, text = self.run_main(*argv)
        self.assertEqual(code, 2, text)
        for fragment in fragments:
            self.assertIn(fragment, text)
        self.assertNotIn("Traceback", text)

    def test_command_required(self) -> None:
        """
        No command: usage error.
        """
        self.assertUsage([], "COMMAND")

    def test_unknown_command(self) -> None:
        """
        An unknown command: usage error.
        """
        self.assertUsage(["fly", "1"], "fly")

    def test_address_required(self) -> None:
        """
        Every command needs ADDR.
        """
        for command in ("send", "recv", "wait"):
            self.assertUsage([command], "ADDR")

    def test_items_must_be_json(self) -> None:
        """
        ITEM arguments are JSON; the bad one is named.
        """
        self.assertUsage(["send", "1", "1", "hello"], "item 2", "not valid JSON")

    def test_raw_items_must_be_base64(self) -> None:
        """
        With C{--codec raw}, items are JSON strings of base64.
        """
        self.assertUsage(["send", "--codec", "raw", "1", "5"], "item 1", "base64")
        self.assertUsage(["send", "--codec", "raw", "1", '"!!"'], "item 1", "base64")

    def test_numbers_checked(self) -> None:
        """
        Counts and durations are checked.
        """
        self.assertUsage(["recv", "1", "--count", "0"], "--count")
        self.assertUsage(["wait", "1", "--timeout", "-1"], "--timeout")
        self.assertUsage(["wait", "1", "--retry", "x"], "--retry")
        self.assertUsage(["release", "1"], "--waiters")
        self.assertUsage(["send", "1", "--codec", "xml"], "--codec")

    def test_bad_listen_address(self) -> None:
        """
        A listening address that cannot be used is a usage error naming it.
        """
        self.assertUsage(["recv", "--listen", "bogus:1:2"], "bogus")
        self.assertUsage(["release", "ssl:0:privateKey=/no/such.pem", "--waiters", "1"], "/no/such.pem")

    def test_version_and_help(self) -> None:
        """
        C{--version} and C{--help} exit 0.
        """
        code, text = self.run_main("--version")
        self.assertEqual(code, 0)
        self.assertIn(__version__, text)
        code, text = self.run_main("send", "--help")
        self.assertEqual(code, 0)
        self.assertIn("--retry", text)


class LineFormatTests(unittest.SynchronousTestCase):
    """
    The JSON-lines form of items.
    """

    def test_json(self) -> None:
        """
        Compact UTF-8 JSON, one line; any JSON value is an item.
        """
        fmt = LineFormat("json")
        self.assertEqual(fmt.dumps({"a": [1, "é"]}), '{"a":[1,"é"]}'.encode())
        self.assertEqual(fmt.dumps("multi\nline"), b'"multi\\nline"')
        self.assertEqual(fmt.loads(b'{"a": [1, 2]}'), {"a": [1, 2]})
        self.assertEqual(fmt.loads("null"), None)

    def test_nan_refused(self) -> None:
        """
        C{NaN} is not JSON.
        """
        with self.assertRaises(InputError):
            LineFormat("json").loads("NaN")

    def test_raw(self) -> None:
        """
        Raw items are JSON strings of base64.
        """
        fmt = LineFormat("raw")
        self.assertEqual(fmt.dumps(b"\x00\xff"), b'"AP8="')
        self.assertEqual(fmt.loads(b'"AP8="'), b"\x00\xff")
        with self.assertRaises(InputError):
            fmt.loads(b"[1]")

    def test_non_json_items(self) -> None:
        """
        Items some codec decoded that JSON cannot hold (CBOR bytes, sets,
        non-string keys) are still written, as their nearest JSON.
        """
        fmt = LineFormat("cbor")
        self.assertEqual(json.loads(fmt.dumps({1: b"\x01", "s": {3}})), {"1": "AQ==", "s": [3]})


class LineReaderTests(unittest.TestCase):
    """
    Reading JSON lines from a file without blocking the reactor.
    """

    def write(self, data: bytes) -> str:
        directory = tempfile.mkdtemp(prefix="tsx-cli-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "in.jsonl")
        with open(path, "wb") as f:
            f.write(data)
        return path

    @as_deferred
    async def test_lines(self) -> None:
        """
        Every non-blank line is an item, the last one even without its
        newline, CRLF endings included; then an empty list.
        """
        from twisted.internet import reactor

        big = json.dumps({"x": "y" * 100000})
        path = self.write(b'1\r\n\n  \n"two"\n' + big.encode() + b"\n[3]")
        reader = LineReader(reactor, path, LineFormat("json"))
        self.addCleanup(reader.close)
        items: List[Any] = []
        while True:
            batch = await reader.read()
            if not batch:
                break
            items.extend(batch)
        self.assertEqual(items, [1, "two", json.loads(big), [3]])
        self.assertEqual(await reader.read(), [])

    @as_deferred
    async def test_bad_line_after_good_ones(self) -> None:
        """
        The items before a bad line are returned first; the next read
        raises, naming the line.
        """
        from twisted.internet import reactor

        reader = LineReader(reactor, self.write(b"1\n2\n{oops\n4\n"), LineFormat("json"))
        self.addCleanup(reader.close)
        self.assertEqual(await reader.read(), [1, 2])
        with self.assertRaises(InputError) as caught:
            await reader.read()
        self.assertIn("line 3", str(caught.exception))


class ThreadedReadsTests(unittest.TestCase):
    """
    The daemon-thread reads under L{LineReader}.
    """

    @as_deferred
    async def test_cancelled_read_loses_nothing(self) -> None:
        """
        A read cancelled while the thread waits for input fails with
        C{CancelledError}; what the thread then reads goes to the next
        read, and reading goes on in order.
        """
        from twisted.internet import reactor
        from twisted.internet.defer import CancelledError

        from tsyncp_tx._standalone import _ThreadedReads

        read_end, write_end = os.pipe()
        self.addCleanup(os.close, read_end)
        self.addCleanup(os.close, write_end)
        reads = _ThreadedReads(reactor, read_end)
        self.addCleanup(reads.stop)
        first = reads.read()
        first.cancel()
        await self.assertFailure(first, CancelledError)
        os.write(write_end, b"one")
        await sleep(0.1)  # the thread has read it, for nobody
        self.assertEqual(await reads.read(), b"one")
        second = reads.read()
        os.write(write_end, b"two")
        self.assertEqual(await second, b"two")


class _TTY(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


class ProgressTests(unittest.SynchronousTestCase):
    """
    The progress line: only on a terminal, only for transfers over a
    second.
    """

    def test_terminal(self) -> None:
        """
        On a terminal, nothing for the first second, then a line updated
        every half second, ended with a newline by C{finish()}.
        """
        clock = Clock()
        stream = _TTY(True)
        progress = Progress(clock, stream, "sent")
        progress.add(10)
        clock.advance(0.9)
        self.assertEqual(stream.getvalue(), "")
        clock.advance(0.2)
        self.assertIn("\rsent 10 items", stream.getvalue())
        progress.add(5)
        clock.advance(0.5)
        self.assertIn("\rsent 15 items", stream.getvalue())
        progress.finish()
        self.assertTrue(stream.getvalue().endswith("\n"))
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_short_transfer(self) -> None:
        """
        A transfer over within a second shows nothing.
        """
        clock = Clock()
        stream = _TTY(True)
        progress = Progress(clock, stream, "sent")
        progress.add(3)
        clock.advance(0.5)
        progress.finish()
        self.assertEqual(stream.getvalue(), "")

    def test_not_a_terminal(self) -> None:
        """
        A pipe or file never gets a progress line.
        """
        clock = Clock()
        stream = _TTY(False)
        progress = Progress(clock, stream, "received")
        progress.add(1000)
        clock.advance(10)
        progress.finish()
        self.assertEqual(stream.getvalue(), "")
        self.assertEqual(clock.getDelayedCalls(), [])


def lines_of(data: bytes) -> List[Any]:
    return [json.loads(line) for line in data.splitlines()]


class CommandTests(unittest.TestCase):
    """
    The C{tsyncp} command as a child process (the installed console script
    when there is one, else C{python -m tsyncp_tx}).
    """

    def tsyncp(self, *args: str, stdin: Any = None) -> Child:
        return Child(self, tsyncp_args(*args), stdin=stdin)

    def assertFailed(self, result: "tuple[int, bytes, bytes]", *fragments: bytes) -> None:
        status, out, err = result
        self.assertEqual(status, 1, (out, err))
        self.assertTrue(err.startswith(b"tsyncp: error: "), err)
        self.assertEqual(err.count(b"\n"), 1, err)
        self.assertNotIn(b"Traceback", err)
        for fragment in fragments:
            self.assertIn(fragment, err)

    async def receiver(self, **kwargs: Any) -> Any:
        rx = await mpsc.receiver_on(LOOPBACK, **kwargs)
        self.addCleanup(rx.close)
        return rx

    @staticmethod
    def addr(channel: Any) -> str:
        host, port = channel.local_address
        return f"{host}:{port}"

    @as_deferred
    async def test_send_items(self) -> None:
        """
        C{tsyncp send ADDR ITEM...} sends each JSON argument, in order,
        exits 0 and writes nothing on standard error.
        """
        rx = await self.receiver()
        status, out, err = await self.tsyncp("send", self.addr(rx), '{"a": 1}', "[1, 2]", '"x"', "null").finish()
        self.assertEqual((status, err), (0, b""))
        self.assertEqual([await rx.recv(timeout=10) for _ in range(4)], [{"a": 1}, [1, 2], "x", None])

    @as_deferred
    async def test_send_stdin(self) -> None:
        """
        Without ITEM arguments, each JSON line of standard input is an item.
        """
        rx = await self.receiver()
        data = b"".join(b'{"n": %d}\n' % n for n in range(2000))
        status, out, err = await self.tsyncp("send", self.addr(rx), stdin=data).finish()
        self.assertEqual((status, err), (0, b""))
        got = [await rx.recv(timeout=10) for _ in range(2000)]
        self.assertEqual(got, [{"n": n} for n in range(2000)])

    @as_deferred
    async def test_send_stdin_bad_line(self) -> None:
        """
        A bad input line fails with its line number; the lines before it
        were sent.
        """
        rx = await self.receiver()
        result = await self.tsyncp("send", self.addr(rx), stdin=b"1\n2\nthree\n4\n").finish()
        self.assertFailed(result, b"stdin line 3")
        self.assertEqual([await rx.recv(timeout=10) for _ in range(2)], [1, 2])

    @as_deferred
    async def test_send_raw_and_cbor(self) -> None:
        """
        C{--codec raw} sends the bytes of base64 strings; C{--codec cbor}
        sends CBOR.
        """
        raw = await self.receiver(codec=RawCodec())
        status, _, err = await self.tsyncp("send", "--codec", "raw", self.addr(raw), '"AP8="', '""').finish()
        self.assertEqual((status, err), (0, b""))
        self.assertEqual([await raw.recv(timeout=10) for _ in range(2)], [b"\x00\xff", b""])
        cbor = await self.receiver(codec=CborCodec())
        status, _, err = await self.tsyncp("send", "--codec", "cbor", self.addr(cbor), '{"k": [1.5]}').finish()
        self.assertEqual((status, err), (0, b""))
        self.assertEqual(await cbor.recv(timeout=10), {"k": [1.5]})

    @as_deferred
    async def test_send_refused(self) -> None:
        """
        Nothing listening: status 1, one line, no traceback.
        """
        rx = await self.receiver()
        address = self.addr(rx)
        await rx.close()
        self.assertFailed(await self.tsyncp("send", address, "1").finish(), b"cannot connect")

    @as_deferred
    async def test_send_refused_bare_port(self) -> None:
        """
        A bare port means 127.0.0.1, and the message says so.
        """
        rx = await self.receiver()
        port = rx.local_address[1]
        await rx.close()
        self.assertFailed(
            await self.tsyncp("send", str(port), "1").finish(),
            f"cannot connect to 127.0.0.1:{port}".encode(),
        )

    @as_deferred
    async def test_listen_on_a_port_in_use(self) -> None:
        """
        C{recv --listen} and C{release} on a port already held: status 1
        and the plugin's wording, C{cannot listen on ADDR: ...}.
        """
        rx = await self.receiver()
        address = self.addr(rx)
        for args in (("recv", "--listen", address), ("release", address, "--waiters", "1")):
            self.assertFailed(
                await self.tsyncp(*args).finish(),
                f"cannot listen on {address}: ".encode(),
                b"in use",
            )

    @as_deferred
    async def test_send_retry(self) -> None:
        """
        With C{--retry}, C{send} keeps trying until the receiver listens.
        """
        directory = tempfile.mkdtemp(prefix="tsx-cli-")
        self.addCleanup(shutil.rmtree, directory, True)
        path = os.path.join(directory, "late.sock")
        child = self.tsyncp("send", "--retry", "100", "--retry-interval", "0.05", f"unix:{path}", "1", "2")
        await sleep(0.5)
        self.assertFalse(child.process.done.called)
        rx = await mpsc.receiver_on(f"unix:{path}")
        self.addCleanup(rx.close)
        status, _, err = await child.finish()
        self.assertEqual((status, err), (0, b""))
        self.assertEqual([await rx.recv(timeout=10) for _ in range(2)], [1, 2])

    @as_deferred
    async def test_recv_count(self) -> None:
        """
        C{tsyncp recv ADDR --count N} prints N items as JSON lines and exits
        0, even if more follow.
        """
        tx = await broadcast.sender_on(LOOPBACK)
        self.addCleanup(tx.close)
        child = self.tsyncp("recv", self.addr(tx), "--count", "3")
        await tx.accept(1, timeout=20)
        for item in [{"a": 1}, "é", [None], 4]:
            await tx.send(item)
        status, out, err = await child.finish()
        self.assertEqual((status, err), (0, b""))
        self.assertEqual(out, '{"a":1}\n"é"\n[null]\n'.encode())

    @as_deferred
    async def test_recv_until_end_of_stream(self) -> None:
        """
        Without C{--count}, C{recv} prints until the sender closes the
        stream, then exits 0; a transfer lasting over a second shows no
        progress line when standard error is not a terminal.
        """
        tx = await broadcast.sender_on(LOOPBACK)
        self.addCleanup(tx.close)
        child = self.tsyncp("recv", self.addr(tx))
        await tx.accept(1, timeout=20)
        for n in range(12):
            await tx.send(n)
            await sleep(0.1)
        await tx.close()
        status, out, err = await child.finish()
        self.assertEqual((status, err), (0, b""))
        self.assertEqual(lines_of(out), list(range(12)))

    @as_deferred
    async def test_recv_stream_ends_early(self) -> None:
        """
        If the stream ends before C{--count} items: status 1 saying so, the
        items received printed.
        """
        tx = await broadcast.sender_on(LOOPBACK)
        self.addCleanup(tx.close)
        child = self.tsyncp("recv", self.addr(tx), "--count", "5")
        await tx.accept(1, timeout=20)
        await tx.send(1)
        await tx.send(2)
        await tx.close()
        result = await child.finish()
        self.assertFailed(result, b"ended after 2 of 5")
        self.assertEqual(lines_of(result[1]), [1, 2])

    @as_deferred
    async def test_recv_listen(self) -> None:
        """
        C{recv --listen} is an mpsc receiver: it reports where it listens,
        takes items from several senders, and a SIGTERM ends it with status
        0 and every received item printed.
        """
        child = self.tsyncp("recv", "--listen", "127.0.0.1:0")
        match = await child.wait_for(rb"listening on 127\.0\.0\.1:(\d+)", stream="err")
        address = ("127.0.0.1", int(match.group(1)))
        senders = [await mpsc.sender_to(address) for _ in range(2)]
        for tx in senders:
            self.addCleanup(tx.close)
        for n in range(10):
            await senders[n % 2].send(n)
        await eventually(lambda: child.output().count(b"\n") == 10, timeout=20)
        status, out, err = await child.terminate()
        self.assertEqual(status, 0, err)
        self.assertEqual(sorted(lines_of(out)), list(range(10)))

    @as_deferred
    async def test_wait_released(self) -> None:
        """
        C{tsyncp wait} exits 0 once the barrier releases it.
        """
        b = await barrier.barrier_on(LOOPBACK)
        self.addCleanup(b.close)
        child = self.tsyncp("wait", self.addr(b))
        await eventually(lambda: b.waiting == 1, timeout=20)
        await sleep(0.2)
        self.assertFalse(child.process.done.called)
        await b.release()
        status, out, err = await child.finish()
        self.assertEqual((status, out, err), (0, b"", b""))

    @as_deferred
    async def test_wait_timeout(self) -> None:
        """
        C{--timeout}: status 1, "timed out".
        """
        b = await barrier.barrier_on(LOOPBACK)
        self.addCleanup(b.close)
        result = await self.tsyncp("wait", self.addr(b), "--timeout", "0.5").finish()
        self.assertFailed(result, b"timed out after 0.5 seconds")

    @as_deferred
    async def test_wait_barrier_gone(self) -> None:
        """
        A barrier that goes away without releasing: status 1.
        """
        b = await barrier.barrier_on(LOOPBACK)
        child = self.tsyncp("wait", self.addr(b))
        await eventually(lambda: b.waiting == 1, timeout=20)
        await b.close()
        self.assertFailed(await child.finish(), b"connection")

    @as_deferred
    async def test_release(self) -> None:
        """
        C{tsyncp release --waiters 2} waits for two waiters, releases them
        and exits 0.
        """
        child = self.tsyncp("release", "127.0.0.1:0", "--waiters", "2")
        match = await child.wait_for(rb"listening on 127\.0\.0\.1:(\d+)", stream="err")
        address = ("127.0.0.1", int(match.group(1)))
        w1 = await barrier.waiter_to(address)
        self.addCleanup(w1.close)
        first = w1.wait(timeout=20)
        await sleep(0.2)
        self.assertFalse(first.called)
        w2 = await barrier.waiter_to(address)
        self.addCleanup(w2.close)
        await gatherResults([first, w2.wait(timeout=20)])
        status, out, err = await child.finish()
        self.assertEqual(status, 0, err)

    @as_deferred
    async def test_python_m(self) -> None:
        """
        C{python -m tsyncp_tx} is the same command.
        """
        rx = await self.receiver()
        status, _, err = await Child(self, ["-m", "tsyncp_tx", "send", self.addr(rx), "7"]).finish()
        self.assertEqual((status, err), (0, b""))
        self.assertEqual(await rx.recv(timeout=10), 7)
        status, out, _ = await Child(self, ["-m", "tsyncp_tx", "--version"]).finish()
        self.assertEqual(status, 0)
        self.assertIn(__version__.encode(), out)
