#!/usr/bin/env python3
"""
A barrier starting several worker processes at once.

With no arguments (or C{demo}) it listens on 127.0.0.1 (a free port) with a
barrier of C{parties=3}, then starts three worker processes (this same file
with the C{worker} sub-command) that come up at deliberately different times.
Each worker connects with C{waiter_to} and C{wait()}s; when the third one
arrives the barrier releases them all, and each prints the time it started
work.  The demo prints how far apart the workers connected and how close
together they started, and exits 0 if they started within the window::

    python examples/barrier_start.py
    python examples/barrier_start.py demo --workers 5 --stagger 0.2

The halves can also run separately::

    python examples/barrier_start.py barrier --port 8600 --parties 2
    python examples/barrier_start.py worker --port 8600 --id 0     # twice
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from typing import Any, Dict, List, Optional

from twisted.internet import protocol, task
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

try:
    from tsyncp_tx import barrier
except ImportError:  # pragma: no cover - a helpful message beats a traceback
    sys.exit("tsyncp_tx is not importable: run `pip install .` in the checkout first")

HOST = "127.0.0.1"
SCRIPT = os.path.abspath(__file__)
_REPORT = re.compile(r"worker (\d+) (connected|started) at ([0-9.]+)")


class Child(protocol.ProcessProtocol):
    """
    A worker process: relays its output lines with a prefix and keeps them;
    C{ended} fires when it ends and C{status} is then its exit status
    (negative for a signal).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.lines: List[str] = []
        self.status: Optional[int] = None
        self.ended: Deferred[int] = Deferred()
        self._partial = b""
        self.process: Any = None  # the IProcessTransport, set by spawn()

    def outReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            text = line.decode(errors="replace")
            self.lines.append(text)
            print(f"  [{self.name}] {text}", flush=True)

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        if self._partial:
            self.outReceived(b"\n")
        code = getattr(reason.value, "exitCode", None)
        self.status = code if code is not None else -(getattr(reason.value, "signal", 0) or 1)
        self.ended.callback(self.status)


def spawn(reactor: Any, name: str, *args: str) -> Child:
    """
    Run this file again as a child process (same environment, so the same
    tsyncp_tx) with C{args}.
    """
    child = Child(name)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child.process = reactor.spawnProcess(
        child, sys.executable, [sys.executable, SCRIPT, *args], env=env
    )
    return child


async def run_worker(reactor: Any, port: int, wid: int, delay: float, timeout: float) -> None:
    """
    Come up after C{delay} seconds, wait at the barrier, then "work".
    """
    await task.deferLater(reactor, delay, lambda: None)  # an uneven start-up
    waiter = await barrier.waiter_to((HOST, port), retry=(0.2, 50))
    try:
        print(f"worker {wid} connected at {time.time():.6f}", flush=True)
        await waiter.wait(timeout=timeout)
        # Everything from here on runs at the same moment in every worker.
        print(f"worker {wid} started at {time.time():.6f}", flush=True)
    finally:
        await waiter.close()


async def run_barrier(reactor: Any, port: int, parties: int) -> barrier.Barrier:
    """
    Listen with a self-releasing barrier of C{parties}.
    """
    def released(generation: int, addresses: List[Any]) -> None:
        print(f"barrier: generation {generation} released {len(addresses)} waiters", flush=True)

    b = await barrier.barrier_on(
        (HOST, port), parties=parties, on_release=released,
        on_accept=lambda address: print(f"barrier: waiter from {address[0]}:{address[1]} "
                                        f"connected", flush=True),
    )
    host, bound = b.local_address
    print(f"barrier of {parties} parties listening on {host}:{bound}", flush=True)
    return b


async def run_demo(reactor: Any, workers: int, stagger: float, window: float, timeout: float) -> None:
    """
    A barrier and C{workers} worker processes started C{stagger} seconds
    apart; check that they started within C{window} seconds.
    """
    b = await run_barrier(reactor, 0, workers)
    children: List[Child] = []
    try:
        port = str(b.local_address[1])
        for wid in range(workers):
            children.append(spawn(reactor, f"worker {wid}", "worker", "--port", port, "--id",
                                  str(wid), "--delay", str(wid * stagger), "--timeout", str(timeout)))
        for child in children:
            call = reactor.callLater(timeout + workers * stagger + 10, child.process.signalProcess,
                                     "KILL")
            await child.ended
            if call.active():
                call.cancel()
        generation = b.generation
    finally:
        await b.close()

    times: Dict[str, Dict[int, float]] = {"connected": {}, "started": {}}
    for child in children:
        for line in child.lines:
            match = _REPORT.search(line)
            if match:
                times[match.group(2)][int(match.group(1))] = float(match.group(3))
    statuses = [child.status for child in children]
    if statuses != [0] * workers or len(times["started"]) != workers:
        print(f"FAILED: exit statuses {statuses}, {len(times['started'])} workers started")
        raise SystemExit(1)

    first = min(times["connected"].values())
    print()
    for wid in range(workers):
        print(f"worker {wid}: connected at +{times['connected'][wid] - first:.3f} s, "
              f"started at +{times['started'][wid] - first:.3f} s")
    arrived = max(times["connected"].values()) - first
    spread = max(times["started"].values()) - min(times["started"].values())
    print(f"workers connected over {arrived:.3f} s and started within {spread * 1000:.1f} ms "
          f"of each other (window {window * 1000:.0f} ms, {generation} release)")
    if spread > window:
        print("FAILED: the workers did not start together")
        raise SystemExit(1)
    print("all workers started together")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="barrier plus worker processes (the default)")
    demo.add_argument("--workers", type=int, default=3)
    demo.add_argument("--stagger", type=float, default=0.4, help="seconds between worker start-ups")
    demo.add_argument("--window", type=float, default=0.5,
                      help="the most seconds between the first and the last start")
    bar = sub.add_parser("barrier", help="only the barrier, for workers started by hand")
    bar.add_argument("--port", type=int, default=8600)
    bar.add_argument("--parties", type=int, default=3)
    wrk = sub.add_parser("worker", help="one worker")
    wrk.add_argument("--port", type=int, default=8600)
    wrk.add_argument("--id", type=int, default=0)
    wrk.add_argument("--delay", type=float, default=0.0, help="seconds to wait before connecting")
    for p in (demo, wrk):
        p.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["demo"])

    def run(reactor: Any) -> Deferred[Any]:
        if args.command == "worker":
            return Deferred.fromCoroutine(run_worker(reactor, args.port, args.id, args.delay,
                                                     args.timeout))
        if args.command == "barrier":
            async def serve() -> None:
                b = await run_barrier(reactor, args.port, args.parties)
                reactor.addSystemEventTrigger("before", "shutdown", b.close)  # Ctrl-C
                await Deferred()  # until interrupted

            return Deferred.fromCoroutine(serve())
        return Deferred.fromCoroutine(run_demo(reactor, args.workers, args.stagger, args.window,
                                               args.timeout))

    task.react(run)


if __name__ == "__main__":
    main()
