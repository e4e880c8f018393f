#!/usr/bin/env python3
"""
A broadcast ticker: one sender publishes price ticks, every receiver gets
every tick (fan-out).

With no arguments (or C{demo}) it listens on 127.0.0.1 (a free port),
starts three receiver processes (this same file with the C{receiver}
sub-command), waits until they are all connected, publishes ten ticks,
closes, and prints what each receiver got; it exits 0 if every receiver got
every tick in order::

    python examples/ticker.py
    python examples/ticker.py demo --receivers 5 --ticks 20

The halves can also run separately::

    python examples/ticker.py sender --port 8900 --receivers 2
    python examples/ticker.py receiver --port 8900      # twice
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, List, Optional

from twisted.internet import protocol, task
from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

try:
    from tsyncp_tx import broadcast
except ImportError:  # pragma: no cover - a helpful message beats a traceback
    sys.exit("tsyncp_tx is not importable: run `pip install .` in the checkout first")

HOST = "127.0.0.1"
SCRIPT = os.path.abspath(__file__)
SYMBOLS = ("TSX", "RST", "TWX")


class Child(protocol.ProcessProtocol):
    """
    A receiver process: relays its output lines with a prefix; C{ended}
    fires when it ends and C{status} is then its exit status (negative for
    a signal).
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
    Run this file again as a child process (same environment, so the same
    tsyncp_tx) with C{args}.
    """
    child = Child(name)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    child.process = reactor.spawnProcess(
        child, sys.executable, [sys.executable, SCRIPT, *args], env=env
    )
    return child


def tick(seq: int) -> dict:
    """
    The C{seq}-th tick: a made-up but reproducible price.
    """
    symbol = SYMBOLS[seq % len(SYMBOLS)]
    return {"seq": seq, "symbol": symbol, "price": round(100 + ((seq * 37) % 23) * 0.25, 2)}


async def publish(reactor: Any, sender: broadcast.Sender, ticks: int, interval: float) -> None:
    """
    Send C{ticks} ticks to every connected receiver.
    """
    for seq in range(ticks):
        # One encode per tick, whatever the number of receivers.
        count = await sender.send(tick(seq))
        print(f"sent tick {seq} to {count} receivers")
        await task.deferLater(reactor, interval, lambda: None)


async def run_sender(
    reactor: Any, port: int, receivers: int, ticks: int, interval: float, spawn_receivers: bool,
    timeout: float,
) -> None:
    """
    Listen, (start and) wait for the receivers, publish, close; with
    C{spawn_receivers}, check each receiver's exit status.
    """
    sender = await broadcast.sender_on((HOST, port))
    children: List[Child] = []
    try:
        host, bound = sender.local_address
        print(f"ticker listening on {host}:{bound}, waiting for {receivers} receivers", flush=True)
        if spawn_receivers:
            for n in range(receivers):
                children.append(spawn(reactor, f"receiver {n}", "receiver", "--port", str(bound),
                                      "--ticks", str(ticks)))
        # Ticks are not replayed to late joiners: wait for everyone first.
        await sender.accept(receivers, timeout=timeout)
        await publish(reactor, sender, ticks, interval)
    finally:
        # Closing flushes every tick, then ends each receiver's `async for`.
        await sender.close()
        for child in children:
            call = reactor.callLater(timeout, child.process.signalProcess, "KILL")
            await child.ended
            if call.active():
                call.cancel()
    failed = [c.name for c in children if c.status != 0]
    if failed:
        print(f"FAILED: {', '.join(failed)}")
        raise SystemExit(1)
    if children:
        print(f"all {receivers} receivers got all {ticks} ticks in order")


async def run_receiver(reactor: Any, port: int, ticks: Optional[int]) -> None:
    """
    Print every tick until the sender closes; check their order (and count,
    if C{ticks} is given).
    """
    rx = await broadcast.receiver_to((HOST, port), retry=(0.2, 50))
    got: List[int] = []
    try:
        # `async for` ends when the sender closes the connection.
        async for item in rx:
            print(f"tick {item['seq']:3d}  {item['symbol']}  {item['price']:7.2f}", flush=True)
            got.append(item["seq"])
    finally:
        await rx.close()
    in_order = got == list(range(len(got)))
    complete = ticks is None or len(got) == ticks
    print(f"received {len(got)} ticks, {'in order' if in_order else 'OUT OF ORDER'}"
          f"{'' if complete else f', expected {ticks}'}", flush=True)
    if not (in_order and complete):
        raise SystemExit(1)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    demo = sub.add_parser("demo", help="sender plus receiver processes (the default)")
    snd = sub.add_parser("sender", help="only the sender, for receivers started by hand")
    snd.add_argument("--port", type=int, default=8900)
    for p in (demo, snd):
        p.add_argument("--receivers", type=int, default=3)
        p.add_argument("--ticks", type=int, default=10)
        p.add_argument("--interval", type=float, default=0.05, help="seconds between ticks")
        p.add_argument("--timeout", type=float, default=30.0)
    rcv = sub.add_parser("receiver", help="one receiver")
    rcv.add_argument("--port", type=int, default=8900)
    rcv.add_argument("--ticks", type=int, default=None, help="expect exactly this many ticks")
    args = parser.parse_args(argv)
    if args.command is None:
        args = parser.parse_args(["demo", *(argv or [])])

    def run(reactor: Any) -> Deferred[None]:
        if args.command == "receiver":
            return Deferred.fromCoroutine(run_receiver(reactor, args.port, args.ticks))
        spawn_receivers = args.command == "demo"
        port = 0 if spawn_receivers else args.port
        return Deferred.fromCoroutine(run_sender(
            reactor, port, args.receivers, args.ticks, args.interval, spawn_receivers, args.timeout,
        ))

    task.react(run)


if __name__ == "__main__":
    main()
