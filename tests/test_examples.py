"""
The examples run as documented: each test runs an example's command in a
child process (killed after a timeout) and checks its exit status and its
output.

When trial itself runs under the asyncio reactor, the examples run under it
too (the child installs it before running the example's file).
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any, Dict, List, Sequence, Tuple

from twisted.trial.unittest import SkipTest, TestCase

from tests._util import ROOT, ChildProcess, _Collector, as_deferred, eventually

EXAMPLES = os.path.join(ROOT, "examples")

#: Seconds an example may run before it is killed (and the test fails).
TIMEOUT = 60.0

# Run a script as __main__ after installing the asyncio reactor:
# python -c ASYNCIO_RUNNER path args...
ASYNCIO_RUNNER = """\
import runpy, sys
from twisted.internet import asyncioreactor
asyncioreactor.install()
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def under_asyncio() -> bool:
    """
    Whether this test run uses Twisted's asyncio reactor.
    """
    from twisted.internet import reactor

    return type(reactor).__name__ == "AsyncioSelectorReactor"


def script_args(path: str, *args: str) -> List[str]:
    """
    The interpreter arguments that run the script at C{path} with C{args},
    under the same kind of reactor as this test run.
    """
    if under_asyncio():
        return ["-c", ASYNCIO_RUNNER, path, *args]
    return [path, *args]


def example(name: str) -> str:
    return os.path.join(EXAMPLES, name)


def lines_of(data: bytes) -> List[str]:
    return data.decode("utf-8", "replace").splitlines()


class ExampleTestCase(TestCase):
    """
    Helpers: start child processes that are killed when the test ends.
    """

    def start(self, name: str, *args: str) -> ChildProcess:
        """
        Start the example C{name} with C{args}; kill it at cleanup if it
        still runs.
        """
        child = ChildProcess(script_args(example(name), *args))
        self.addCleanup(self._reap, child)
        return child

    async def _reap(self, child: ChildProcess) -> None:
        if not child.done.called:
            child.signal("KILL")
            await child.done

    async def run_example(self, name: str, *args: str) -> Tuple[int, str, str]:
        """
        Run an example to its end; return its status, stdout and stderr.
        """
        status, out, err = await self.start(name, *args).finish(TIMEOUT)
        return status, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")

    def assertSucceeded(self, status: int, out: str, err: str) -> None:
        self.assertEqual(status, 0, f"exit status {status}\n--- stdout\n{out}\n--- stderr\n{err}")


class CollectorTests(ExampleTestCase):
    """
    C{examples/collector.py}, the README's main job.
    """

    def check_collected(self, out: str, workers: int, jobs: int) -> None:
        results = re.findall(r"^result: job +(\d+) -> +(\d+)  \(worker (\d+)\)$", out, re.M)
        self.assertEqual(len(results), workers * jobs, out)
        per_worker: Dict[int, List[int]] = {}
        for job, result, worker in results:
            self.assertEqual(int(result), int(job) ** 2)
            self.assertEqual(int(job) % workers, int(worker))
            per_worker.setdefault(int(worker), []).append(int(job))
        # Every job once; each worker's results in the order it sent them.
        self.assertEqual(sorted(j for js in per_worker.values() for j in js), list(range(workers * jobs)))
        for worker, got in per_worker.items():
            self.assertEqual(got, sorted(got))
        self.assertIn(f"summary: collected {workers * jobs} results from {workers} workers", out)
        self.assertEqual(len(re.findall(r"^\s+worker \d+: \d+ results, .*, in order$", out, re.M)), workers)
        self.assertEqual(out.splitlines()[-1], "all results collected")

    @as_deferred
    async def test_default(self) -> None:
        """
        With no arguments: a receiver, 3 worker processes, every result
        printed, a summary, exit 0.
        """
        status, out, err = await self.run_example("collector.py")
        self.assertSucceeded(status, out, err)
        self.check_collected(out, workers=3, jobs=5)
        for wid in range(3):
            self.assertIn(f"[worker {wid}] worker {wid}: sent 5 results", out)

    @as_deferred
    async def test_receiver_times_out(self) -> None:
        """
        A receiver nobody sends to fails after its timeout with one line on
        stderr and exit status 1 (the example's status is meaningful).
        """
        status, out, err = await self.run_example(
            "collector.py", "receiver", "--port", "0", "--workers", "1", "--timeout", "0.5"
        )
        self.assertEqual(status, 1, out + err)
        self.assertIn("collector: recv() timed out after 0.5 seconds", err)
        self.assertNotIn("Traceback", err)

    @as_deferred
    async def test_installed_from_any_directory(self) -> None:
        """
        After C{pip install .}, C{python /path/to/examples/collector.py} works
        from any directory, without the checkout on C{PYTHONPATH}.
        """
        from twisted.internet import reactor

        elsewhere = os.path.abspath(self.mktemp())
        os.makedirs(elsewhere)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

        async def run(args: Sequence[str]) -> Tuple[int, bytes, bytes]:
            collector = _Collector()
            transport = reactor.spawnProcess(  # type: ignore[attr-defined]
                collector, sys.executable, [sys.executable, *args], env=env, path=elsewhere
            )
            call = reactor.callLater(TIMEOUT, transport.signalProcess, "KILL")  # type: ignore[attr-defined]
            try:
                return await collector.done
            finally:
                if call.active():
                    call.cancel()

        status, _, _ = await run(["-c", "import tsyncp_tx"])
        if status != 0:
            raise SkipTest("tsyncp_tx is not installed in this interpreter (`pip install .`)")
        status, out, err = await run(script_args(example("collector.py")))
        text = out.decode("utf-8", "replace")
        self.assertSucceeded(status, text, err.decode("utf-8", "replace"))
        self.check_collected(text, workers=3, jobs=5)


class ChatTests(ExampleTestCase):
    """
    C{examples/chat.py}.
    """

    @as_deferred
    async def test_demo(self) -> None:
        """
        The demo: three clients join, talk and leave; each message reaches
        everyone but its author.
        """
        status, out, err = await self.run_example("chat.py", "demo")
        self.assertSucceeded(status, out, err)
        self.assertEqual(out.splitlines()[-1],
                         "conversation complete: every message reached everyone but its author")
        said = re.findall(r"^\s*(\w+) > (.*)$", out, re.M)
        self.assertEqual(len(said), 5)
        seen = re.findall(r"^\s*(\w+) \| <(\w+)> (.*)$", out, re.M)
        for reader, author, text in seen:
            self.assertNotEqual(reader, author, f"{author} got its own message {text!r}")
        for author, text in said:
            readers = {r for r, a, t in seen if a == author and t == text}
            self.assertTrue(readers, f"nobody got {author}'s {text!r}")
        for line in ("alice | * carol left", "bob | * carol left", "bob | * alice left",
                     "server | bob left"):
            self.assertIn(line, out)

    @as_deferred
    async def test_default_is_demo(self) -> None:
        """
        Without a sub-command the demo runs.
        """
        status, out, err = await self.run_example("chat.py")
        self.assertSucceeded(status, out, err)
        self.assertIn("conversation complete", out)

    @as_deferred
    async def test_server_and_stdin_clients(self) -> None:
        """
        The interactive commands: a server on a free port, two clients
        reading lines from stdin; a client leaves when its stdin ends; the
        server stops cleanly on SIGTERM.
        """
        server = self.start("chat.py", "server", "--port", "0")
        await eventually(lambda: b"listening on" in server.output(), timeout=TIMEOUT)
        port = re.search(rb"listening on 127\.0\.0\.1:(\d+)", server.output()).group(1).decode()  # type: ignore[union-attr]

        ann = self.start("chat.py", "client", "--port", port, "--name", "ann")
        await eventually(lambda: b"* welcome!" in ann.output(), timeout=TIMEOUT)
        ben = self.start("chat.py", "client", "--port", port, "--name", "ben")
        await eventually(lambda: b"* welcome! in the room: ann" in ben.output(), timeout=TIMEOUT)
        await eventually(lambda: b"* ben joined" in ann.output(), timeout=TIMEOUT)

        ben.transport.write(b"hello ann\nhow are you?\n")
        await eventually(lambda: b"<ben> how are you?" in ann.output(), timeout=TIMEOUT)
        ann.transport.write(b"fine\n")
        await eventually(lambda: b"<ann> fine" in ben.output(), timeout=TIMEOUT)
        # Last words and the end of stdin at once: the words go first.
        ben.transport.write(b"bye ann\n")
        ben.transport.closeStdin()
        status, out, err = await ben.finish(TIMEOUT)
        self.assertSucceeded(status, out.decode(), err.decode())
        self.assertEqual(lines_of(out), ["* welcome! in the room: ann", "<ann> fine"])

        await eventually(lambda: b"* ben left" in ann.output(), timeout=TIMEOUT)
        ann.transport.closeStdin()
        status, out, err = await ann.finish(TIMEOUT)
        self.assertSucceeded(status, out.decode(), err.decode())
        self.assertEqual(
            lines_of(out),
            ["* welcome! in the room: nobody else yet", "* ben joined", "<ben> hello ann",
             "<ben> how are you?", "<ben> bye ann", "* ben left"],
        )

        await eventually(lambda: b"ann left" in server.output(), timeout=TIMEOUT)
        server.signal("TERM")
        status, out, err = await server.finish(TIMEOUT)
        self.assertSucceeded(status, out.decode(), err.decode())
        self.assertIn("relayed ben's message to 1 other(s)", out.decode())
        self.assertLess(out.decode().index("ben left"), out.decode().index("ann left"))


def load_example(name: str) -> Any:
    """
    Import an example's file as a module (for in-process tests).
    """
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"example_{name[:-3]}", example(name))
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class ChatServerTests(TestCase):
    """
    The chat server's ordering, in process.
    """

    @as_deferred
    async def test_departure_after_last_words(self) -> None:
        """
        A client that says something and leaves at once is announced as
        gone only after its words were relayed, even when the server is
        still busy with earlier messages when the disconnection is reported.
        """
        from tests._util import sleep
        from tsyncp_tx import channel

        chat = load_example("chat.py")

        class SlowServer(chat.ChatServer):  # type: ignore[misc,name-defined]
            async def _handle(self, item: Any, address: Any) -> None:
                await sleep(0.05)  # busy: the disconnection overtakes the queue
                await super()._handle(item, address)

        server = SlowServer(log=lambda line: None)
        _, port = await server.start(0)
        self.addCleanup(server.close)
        serving = as_deferred(server.serve)()
        listener = chat.ChatClient("ann", show=lambda line: None)
        await listener.join(port)
        self.addCleanup(listener.leave)
        listening = as_deferred(listener.listen)()
        leaver = await channel.channel_to(("127.0.0.1", port))
        self.addCleanup(leaver.close)
        await leaver.send({"join": "ben"})
        for n in range(3):
            await leaver.send({"say": f"word {n}"})
        await leaver.close()
        await eventually(lambda: "* ben left" in listener.seen, timeout=10)
        self.assertEqual(
            listener.seen[1:],
            ["* ben joined", "<ben> word 0", "<ben> word 1", "<ben> word 2", "* ben left"],
        )
        await listener.leave()
        await listening
        await server.close()
        await serving


class TickerTests(ExampleTestCase):
    """
    C{examples/ticker.py}.
    """

    @as_deferred
    async def test_demo(self) -> None:
        """
        Every receiver process gets every tick, in order.
        """
        status, out, err = await self.run_example("ticker.py")
        self.assertSucceeded(status, out, err)
        for n in range(3):
            ticks = [int(t) for t in re.findall(rf"^\s*\[receiver {n}\] tick +(\d+) ", out, re.M)]
            self.assertEqual(ticks, list(range(10)))
            self.assertIn(f"[receiver {n}] received 10 ticks, in order", out)
        self.assertEqual(len(re.findall(r"^sent tick \d+ to 3 receivers$", out, re.M)), 10)
        self.assertEqual(out.splitlines()[-1], "all 3 receivers got all 10 ticks in order")


class BarrierStartTests(ExampleTestCase):
    """
    C{examples/barrier_start.py}.
    """

    @as_deferred
    async def test_demo(self) -> None:
        """
        Workers that connect 0.4 s apart all start within the window, after
        the one release.
        """
        status, out, err = await self.run_example("barrier_start.py")
        self.assertSucceeded(status, out, err)
        times: Dict[str, Dict[int, float]] = {"connected": {}, "started": {}}
        for wid, what, when in re.findall(r"\] worker (\d+) (connected|started) at ([0-9.]+)", out):
            times[what][int(wid)] = float(when)
        self.assertEqual(sorted(times["started"]), [0, 1, 2])
        connected = times["connected"].values()
        started = times["started"].values()
        # The workers came up about 0.8 s apart (their --delay, plus however
        # fast each child process starts), yet started together, and none
        # started before the last one connected.
        self.assertGreater(max(connected) - min(connected), 0.5)
        self.assertLess(max(started) - min(started), 0.25)
        self.assertGreaterEqual(min(started), max(connected) - 0.1)
        self.assertIn("barrier: generation 1 released 3 waiters", out)
        self.assertEqual(out.splitlines()[-1], "all workers started together")


class RunnerTests(TestCase):
    """
    The examples and guide snippets run under the reactor of this test run.
    """

    @as_deferred
    async def test_same_reactor(self) -> None:
        from twisted.internet import reactor

        path = os.path.abspath(self.mktemp()) + ".py"
        with open(path, "w") as f:
            f.write("from twisted.internet import reactor\nprint(type(reactor).__name__)\n")
        status, out, err = await ChildProcess(script_args(path, "x")).finish(TIMEOUT)
        self.assertEqual((status, err), (0, b""))
        self.assertEqual(out.decode().strip(), type(reactor).__name__)


class ReadmeTests(TestCase):
    """
    C{examples/README.md} lists every example with its command.
    """

    def test_every_example_listed(self) -> None:
        with open(os.path.join(EXAMPLES, "README.md"), encoding="utf-8") as f:
            readme = f.read()
        listed = set(re.findall(r"`python examples/(\w+\.py)", readme))
        present = {n for n in os.listdir(EXAMPLES) if n.endswith(".py") and not n.startswith("_")}
        self.assertEqual(listed, present)
        self.assertEqual(present, {"chat.py", "collector.py", "ticker.py", "barrier_start.py"})
