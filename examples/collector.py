#!/usr/bin/env python3
"""
An mpsc work collector: several worker processes send their results to one
receiver (fan-in).

With no arguments it runs the whole job on this machine: it listens on
127.0.0.1 (a free port), starts three worker processes (this same file with
the C{worker} sub-command), prints every result as it arrives and a summary,
and exits 0 once every worker has finished::

    python examples/collector.py
    python examples/collector.py --workers 5 --jobs 4

The halves can also run separately, e.g. in two terminals::

    python examples/collector.py receiver --port 8800 --workers 2
    python examples/collector.py worker --port 8800 --id 0 --workers 2
    python examples/collector.py worker --port 8800 --id 1 --workers 2

Worker C{i} of C{W} computes the squares of the job numbers C{i, i+W,
i+2W, ...} and sends one C{{"worker", "job", "result"}} item per job, then
C{{"worker", "done"}}.  Items from one sender arrive in the order sent, which
the summary checks.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Dict, List, Optional, Set

from twisted.internet import defer, protocol, task
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

try:
    from tsyncp_tx import mpsc
    from tsyncp_tx.errors import TsyncpError
except ImportError:  # pragma: no cover - a helpful message beats a traceback
    sys.exit("tsyncp_tx is not importable: run `pip install .` in the checkout first")

HOST = "127.0.0.1"
SCRIPT = os.path.abspath(__file__)


# Worker processes ----------------------------------------------------------


class Child(protocol.ProcessProtocol):
    """
    A worker process: relays its output lines with a prefix; C{ended} fires
    when it ends and C{status} is then its exit status (negative for a
    signal).
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.status: Optional[int] = None
        self.ended: Deferred[int] = Deferred()
        self._partial = b""
        self.process: Any = None  # the IProcessTransport, set by spawn()

    def outReceived(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            print(f"  [{self.name}] {line.decode(errors='replace')}", flush=True)

    errReceived = outReceived

    def processEnded(self, reason: Failure) -> None:
        if self._partial:
            self.outReceived(b"\n")
        code = getattr(reason.value, "exitCode", None)
        self.status = code if code is not None else -(getattr(reason.value, "signal", 0) or 1)
        self.ended.callback(self.status)


def spawn(reactor: Any, name: str, *args: str) -> Child:
    """
    Run this file again as a child process with C{args}.

    The child inherits the environment, so it imports the same tsyncp_tx as
    this process (installed, or found through C{PYTHONPATH}).
    """
    child = Child(name)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child.process = reactor.spawnProcess(
        child, sys.executable, [sys.executable, SCRIPT, *args], env=env
    )
    return child


async def worker(reactor: Any, port: int, wid: int, workers: int, jobs: int) -> None:
    """
    Send the results of this worker's jobs, then a "done" item.
    """
    # retry=: the receiver may still be starting; try for up to 10 seconds.
    tx = await mpsc.sender_to((HOST, port), retry=(0.2, 50))
    try:
        for k in range(jobs):
            n = wid + k * workers
            await tx.send({"worker": wid, "job": n, "result": n * n})
            await task.deferLater(reactor, 0.02, lambda: None)  # "work"
        await tx.send({"worker": wid, "done": True, "sent": jobs})
    finally:
        # close() fires once every byte is flushed: nothing is lost on exit.
        await tx.close()
    print(f"worker {wid}: sent {jobs} results")


# The receiver ----------------------------------------------------------------


async def collect(
    rx: mpsc.Receiver, workers: int, timeout: float, failures: List[str], pending: List[Deferred[Any]]
) -> Dict[int, List[int]]:
    """
    Receive until every worker said it is done; return the job numbers per
    worker in arrival order.  Raises if a worker died (its exit status is
    added to C{failures} and the pending C{recv()} in C{pending} cancelled)
    or if nothing arrives for C{timeout} seconds.
    """
    jobs: Dict[int, List[int]] = {w: [] for w in range(workers)}
    done: Set[int] = set()
    while len(done) < workers:
        d = rx.recv(with_addr=True, timeout=timeout)
        pending.append(d)
        try:
            item, (host, port) = await d
        except defer.CancelledError:
            raise RuntimeError(failures[0]) from None
        finally:
            pending.remove(d)
        wid = item["worker"]
        if item.get("done"):
            done.add(wid)
            print(f"worker {wid} is done ({item['sent']} results), from {host}:{port}")
        else:
            jobs[wid].append(item["job"])
            print(f"result: job {item['job']:3d} -> {item['result']:6d}  (worker {wid})")
    return jobs


async def run_receiver(
    reactor: Any, port: int, workers: int, jobs: int, spawn_workers: bool, timeout: float
) -> None:
    """
    Listen, optionally start the workers, collect, print a summary.
    """
    started = time.monotonic()
    rx = await mpsc.receiver_on((HOST, port))
    try:
        host, bound = rx.local_address
        print(f"collector listening on {host}:{bound}, waiting for {workers} workers", flush=True)
        children: List[Child] = []
        failures: List[str] = []
        pending: List[Deferred[Any]] = []
        if spawn_workers:
            for wid in range(workers):
                child = spawn(
                    reactor, f"worker {wid}", "worker", "--port", str(bound),
                    "--id", str(wid), "--workers", str(workers), "--jobs", str(jobs),
                )
                children.append(child)

                def check(status: int, wid: int = wid) -> int:
                    # A dead worker will never say "done": stop waiting.
                    if status != 0:
                        failures.append(f"worker {wid} exited with status {status}")
                        for d in list(pending):
                            d.cancel()  # cancelling a recv() loses no item
                    return status

                child.ended.addCallback(check)
        try:
            received = await collect(rx, workers, timeout, failures, pending)
        finally:
            # Every worker process ends; one that hangs is killed.
            for child in children:
                if not child.ended.called:
                    call = reactor.callLater(timeout, child.process.signalProcess, "KILL")
                    await child.ended
                    if call.active():
                        call.cancel()
        statuses = [child.status for child in children]
    finally:
        await rx.close()

    total = sum(len(v) for v in received.values())
    elapsed = time.monotonic() - started
    print(f"\nsummary: collected {total} results from {workers} workers in {elapsed:.2f} s")
    ok = all(status == 0 for status in statuses)
    for wid, got in sorted(received.items()):
        expected = [wid + k * workers for k in range(jobs)]
        in_order = got == expected
        ok = ok and in_order
        print(f"  worker {wid}: {len(got)} results, jobs {got}, "
              f"{'in order' if in_order else 'EXPECTED ' + str(expected)}")
    squares = sum(n * n for n in range(workers * jobs))
    got_sum = sum(n * n for got in received.values() for n in got)
    print(f"  sum of results: {got_sum} (expected {squares})")
    ok = ok and got_sum == squares
    print("all results collected" if ok else "SOME RESULTS ARE MISSING OR OUT OF ORDER")
    if not ok:
        raise SystemExit(1)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=3, help="number of workers (default 3)")
    parser.add_argument("--jobs", type=int, default=5, help="jobs per worker (default 5)")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for progress")
    sub = parser.add_subparsers(dest="command")
    rec = sub.add_parser("receiver", help="only receive, from workers started by hand")
    rec.add_argument("--port", type=int, required=True)
    wrk = sub.add_parser("worker", help="one worker")
    wrk.add_argument("--port", type=int, required=True)
    wrk.add_argument("--id", type=int, required=True)
    for p in (rec, wrk):
        p.add_argument("--workers", type=int, default=argparse.SUPPRESS)
        p.add_argument("--jobs", type=int, default=argparse.SUPPRESS)
        p.add_argument("--timeout", type=float, default=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    def run(reactor: Any) -> Deferred[None]:
        if args.command == "worker":
            coro = worker(reactor, args.port, args.id, args.workers, args.jobs)
        else:
            spawn_workers = args.command is None
            port = 0 if spawn_workers else args.port
            coro = run_receiver(reactor, port, args.workers, args.jobs, spawn_workers, args.timeout)
        return Deferred.fromCoroutine(coro).addErrback(report)

    def report(failure: Failure) -> None:
        # Expected failures get one line, not a traceback.
        failure.trap(RuntimeError, TsyncpError)
        print(f"collector: {failure.getErrorMessage()}", file=sys.stderr)
        raise SystemExit(1)

    task.react(run)


if __name__ == "__main__":
    main()
