"""
Floors: what this machine allows for the two latency-bound cases, measured
side by side with tsyncp_tx.

Each case runs with the same process layout three ways, interleaved:

  - C{sockets}: plain Python, blocking sockets (the waiters) and C{epoll}
    (the barrier), one byte per message: the cost of the processes and
    the kernel alone;
  - C{twisted}: plain Twisted protocols that answer inside C{dataReceived}
    and write straight to the socket, no Deferreds or coroutines: the
    reactor's own cost;
  - C{tsyncp_tx}: the library, written as users write it (C{await
    w.wait()}, C{await ch.send(...)}; C{await ch.recv()}).

Cases: a barrier with 4 waiter processes (generations per second and CPU
seconds per generation, summed over the 5 processes) and a 100-byte
request/response ping-pong (p50 and p99 round trip, CPU per round trip).
Linux only (C{fork}).

Run from the checkout::

    python benchmarks/floors.py            # 3 runs, 10,000 generations / round trips
    python benchmarks/floors.py --quick    # 1 run, 2,000
"""

from __future__ import annotations

import argparse
import ast
import os
import select
import socket
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Tuple

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PARTIES = 4
PAYLOAD = b"x" * 100
LOOPBACK = "127.0.0.1"


def cpu() -> float:
    """
    @return: CPU seconds (user + system) used by this process so far.
    """
    t = os.times()
    return t.user + t.system


def report(pipe: int, **values: float) -> None:
    """
    Send one process's figures to the parent and leave.
    """
    os.write(pipe, (repr(values) + "\n").encode())
    os._exit(0)


def spawn(target: Callable[..., None], *args: Any) -> Tuple[int, int]:
    """
    Run C{target(pipe, *args)} in a child process.

    @return: The child's pid and the read end of its report pipe.
    """
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            target(w, *args)
        finally:
            os._exit(1)
    os.close(w)
    return pid, r


def collect(children: List[Tuple[int, int]], timeout: float) -> List[Dict[str, float]]:
    """
    Wait for every child's report.

    @raise RuntimeError: If a child fails or C{timeout} passes.
    """
    deadline = time.monotonic() + timeout
    reports = []
    for pid, r in children:
        data = b""
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                for p, _ in children:
                    try:
                        os.kill(p, 9)
                    except ProcessLookupError:
                        pass
                raise RuntimeError("a benchmark process timed out")
            chunk = os.read(r, 4096)
            if not chunk:
                raise RuntimeError("a benchmark process died without a report")
            data += chunk
        os.close(r)
        reports.append(ast.literal_eval(data.decode()))
    for pid, _ in children:
        os.waitpid(pid, 0)
    return reports


def start_listener(target: Callable[[int, Callable[[int], None]], None]) -> Tuple[Tuple[int, int], int]:
    """
    Run C{target(pipe, announce)} in a child process; it calls
    C{announce(port)} once it listens.

    @return: The child (as L{spawn} returns it) and the port.
    """
    ready_r, ready_w = os.pipe()

    def announce(port: int) -> None:
        os.write(ready_w, f"{port}\n".encode())

    child = spawn(target, announce)
    os.close(ready_w)
    port = int(os.read(ready_r, 100).decode())
    os.close(ready_r)
    return child, port


def listening_socket() -> socket.socket:
    s = socket.socket()
    s.bind((LOOPBACK, 0))
    s.listen(16)
    return s


def nodelay(s: socket.socket) -> socket.socket:
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


# Barrier. The barrier process reports the time from the first release to
# the last; every process reports its CPU over its loop.


def barrier_sockets(n: int, timeout: float) -> Dict[str, float]:
    listener = listening_socket()
    port = listener.getsockname()[1]

    def waiter(pipe: int) -> None:
        s = nodelay(socket.create_connection((LOOPBACK, port)))
        s.recv(1)  # the first release: everyone connected
        c0 = cpu()
        for _ in range(n):
            s.send(b"\x01")
            s.recv(1)
        report(pipe, cpu=cpu() - c0)

    def barrier(pipe: int) -> None:
        conns = [nodelay(listener.accept()[0]) for _ in range(PARTIES)]
        by_fd = {c.fileno(): c for c in conns}
        poller = select.epoll()
        for c in conns:
            poller.register(c.fileno(), select.EPOLLIN)
        for c in conns:
            c.send(b"\x00")
        t0, c0 = time.perf_counter(), cpu()
        arrived = generations = 0
        while generations < n:
            for fd, _ in poller.poll():
                arrived += len(by_fd[fd].recv(64))
            if arrived >= PARTIES:
                arrived -= PARTIES
                generations += 1
                for c in conns:
                    c.send(b"\x00")
        report(pipe, seconds=time.perf_counter() - t0, cpu=cpu() - c0)

    children = [spawn(barrier)] + [spawn(waiter) for _ in range(PARTIES)]
    listener.close()
    return summarize_barrier(collect(children, timeout), n)


def barrier_twisted(n: int, timeout: float) -> Dict[str, float]:
    def barrier(pipe: int, announce: Callable[[int], None]) -> None:
        from twisted.internet import protocol, reactor

        state: Dict[str, Any] = {"conns": [], "arrived": 0, "generations": 0}

        def release() -> None:
            for c in state["conns"]:
                c.sock.send(b"\x00")

        class Barrier(protocol.Protocol):
            def connectionMade(self) -> None:
                self.transport.setTcpNoDelay(True)  # type: ignore[attr-defined]
                self.sock = self.transport.socket  # type: ignore[attr-defined]
                state["conns"].append(self)
                if len(state["conns"]) == PARTIES:
                    state["t0"], state["c0"] = time.perf_counter(), cpu()
                    release()

            def dataReceived(self, data: bytes) -> None:
                state["arrived"] += len(data)
                if state["arrived"] >= PARTIES:
                    state["arrived"] -= PARTIES
                    state["generations"] += 1
                    release()
                    if state["generations"] == n:
                        report(
                            pipe,
                            seconds=time.perf_counter() - state["t0"],
                            cpu=cpu() - state["c0"],
                        )

        port = reactor.listenTCP(0, protocol.Factory.forProtocol(Barrier), interface=LOOPBACK)
        announce(port.getHost().port)
        reactor.run()

    def waiter(pipe: int, port: int) -> None:
        from twisted.internet import protocol, reactor

        class Waiter(protocol.Protocol):
            releases = 0
            c0 = 0.0

            def connectionMade(self) -> None:
                self.transport.setTcpNoDelay(True)  # type: ignore[attr-defined]
                self.sock = self.transport.socket  # type: ignore[attr-defined]

            def dataReceived(self, data: bytes) -> None:
                for _ in data:
                    if not self.releases:  # the first release
                        self.c0 = cpu()
                    elif self.releases == n:
                        report(pipe, cpu=cpu() - self.c0)
                    self.releases += 1
                    self.sock.send(b"\x01")

        reactor.connectTCP(LOOPBACK, port, protocol.ClientFactory.forProtocol(Waiter))
        reactor.run()

    child, port = start_listener(barrier)
    children = [child]
    children += [spawn(waiter, port) for _ in range(PARTIES)]
    return summarize_barrier(collect(children, timeout), n)


def barrier_tsyncp(n: int, timeout: float) -> Dict[str, float]:
    def barrier(pipe: int, announce: Callable[[int], None]) -> None:
        from twisted.internet import reactor

        from tsyncp_tx import barrier as tb

        state: Dict[str, float] = {}

        def on_release(generation: int, addresses: Any) -> None:
            # Connecting counts as the first wait: generation 1 is the
            # first release, as in the other variants.
            if generation == 1:
                state["t0"], state["c0"] = time.perf_counter(), cpu()
            elif generation == n + 1:
                # After the release is written (at the end of this delivery).
                figures = dict(seconds=time.perf_counter() - state["t0"], cpu=cpu() - state["c0"])
                reactor.callLater(0, lambda: report(pipe, **figures))

        def listening(b: Any) -> None:
            announce(b.local_address[1])

        tb.barrier_on(f"{LOOPBACK}:0", parties=PARTIES, on_release=on_release).addCallback(listening)
        reactor.run()

    def waiter(pipe: int, port: int) -> None:
        from twisted.internet import reactor
        from twisted.internet.defer import Deferred

        from tsyncp_tx import barrier as tb

        async def run() -> None:
            w = await tb.waiter_to(f"{LOOPBACK}:{port}")
            await w.wait()  # the first release
            c0 = cpu()
            for _ in range(n):
                await w.wait()
            report(pipe, cpu=cpu() - c0)

        reactor.callWhenRunning(lambda: Deferred.fromCoroutine(run()))
        reactor.run()

    child, port = start_listener(barrier)
    children = [child]
    children += [spawn(waiter, port) for _ in range(PARTIES)]
    return summarize_barrier(collect(children, timeout), n)


def summarize_barrier(reports: List[Dict[str, float]], n: int) -> Dict[str, float]:
    seconds = reports[0]["seconds"]
    return {
        "gen_per_s": n / seconds,
        "cpu_us_per_gen": sum(r["cpu"] for r in reports) / n * 1e6,
    }


# Ping-pong: the connector times each round trip of a 100-byte message.


def pingpong_sockets(n: int, timeout: float) -> Dict[str, float]:
    listener = listening_socket()
    port = listener.getsockname()[1]

    def echo(pipe: int) -> None:
        s = nodelay(listener.accept()[0])
        c0 = cpu()
        while True:
            data = s.recv(65536)
            if not data:
                report(pipe, cpu=cpu() - c0)
            s.sendall(data)

    def client(pipe: int) -> None:
        s = nodelay(socket.create_connection((LOOPBACK, port)))
        samples = []
        c0 = cpu()
        for _ in range(n):
            t = time.perf_counter()
            s.sendall(PAYLOAD)
            got = 0
            while got < len(PAYLOAD):
                got += len(s.recv(65536))
            samples.append(time.perf_counter() - t)
        c1 = cpu()
        s.close()
        report(pipe, cpu=c1 - c0, **latencies(samples))

    children = [spawn(echo), spawn(client)]
    listener.close()
    return summarize_pingpong(collect(children, timeout), n)


def pingpong_twisted(n: int, timeout: float) -> Dict[str, float]:
    def echo(pipe: int, announce: Callable[[int], None]) -> None:
        from twisted.internet import protocol, reactor
        from twisted.protocols.basic import Int32StringReceiver

        class Echo(Int32StringReceiver):
            def connectionMade(self) -> None:
                self.transport.setTcpNoDelay(True)  # type: ignore[attr-defined]
                self.sock = self.transport.socket  # type: ignore[attr-defined]
                self.c0 = cpu()

            def stringReceived(self, string: bytes) -> None:
                self.sock.send(len(string).to_bytes(4, "big") + string)

            def connectionLost(self, reason: Any = None) -> None:
                report(pipe, cpu=cpu() - self.c0)

        port = reactor.listenTCP(0, protocol.Factory.forProtocol(Echo), interface=LOOPBACK)
        announce(port.getHost().port)
        reactor.run()

    def client(pipe: int, port: int) -> None:
        from twisted.internet import protocol, reactor
        from twisted.protocols.basic import Int32StringReceiver

        samples: List[float] = []

        class Client(Int32StringReceiver):
            def connectionMade(self) -> None:
                self.transport.setTcpNoDelay(True)  # type: ignore[attr-defined]
                self.sock = self.transport.socket  # type: ignore[attr-defined]
                self.c0 = cpu()
                self.ask()

            def ask(self) -> None:
                self.t = time.perf_counter()
                self.sock.send(len(PAYLOAD).to_bytes(4, "big") + PAYLOAD)

            def stringReceived(self, string: bytes) -> None:
                samples.append(time.perf_counter() - self.t)
                if len(samples) == n:
                    c1 = cpu()
                    self.transport.loseConnection()
                    reactor.callLater(0.1, report, pipe, cpu=c1 - self.c0, **latencies(samples))
                    return
                self.ask()

        reactor.connectTCP(LOOPBACK, port, protocol.ClientFactory.forProtocol(Client))
        reactor.run()

    child, port = start_listener(echo)
    children = [child]
    children.append(spawn(client, port))
    return summarize_pingpong(collect(children, timeout), n)


def pingpong_tsyncp(n: int, timeout: float) -> Dict[str, float]:
    def echo(pipe: int, announce: Callable[[int], None]) -> None:
        from twisted.internet import reactor
        from twisted.internet.defer import Deferred

        from tsyncp_tx import channel
        from tsyncp_tx.codecs import RawCodec

        async def run() -> None:
            ch = await channel.channel_on(f"{LOOPBACK}:0", accept=0, codec=RawCodec())
            announce(ch.local_address[1])
            await ch.accept()
            c0 = cpu()
            async for item in ch:
                await ch.send(item)
            report(pipe, cpu=cpu() - c0)

        reactor.callWhenRunning(lambda: Deferred.fromCoroutine(run()))
        reactor.run()

    def client(pipe: int, port: int) -> None:
        from twisted.internet import reactor
        from twisted.internet.defer import Deferred

        from tsyncp_tx import channel
        from tsyncp_tx.codecs import RawCodec

        async def run() -> None:
            ch = await channel.channel_to(f"{LOOPBACK}:{port}", codec=RawCodec())
            samples = []
            c0 = cpu()
            for _ in range(n):
                t = time.perf_counter()
                await ch.send(PAYLOAD)
                await ch.recv()
                samples.append(time.perf_counter() - t)
            c1 = cpu()
            await ch.close()
            report(pipe, cpu=c1 - c0, **latencies(samples))

        reactor.callWhenRunning(lambda: Deferred.fromCoroutine(run()))
        reactor.run()

    child, port = start_listener(echo)
    children = [child]
    children.append(spawn(client, port))
    return summarize_pingpong(collect(children, timeout), n)


def latencies(samples: List[float]) -> Dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_us": ordered[len(ordered) // 2] * 1e6,
        "p99_us": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1e6,
    }


def summarize_pingpong(reports: List[Dict[str, float]], n: int) -> Dict[str, float]:
    echo, client = reports
    return {
        "p50_us": client["p50_us"],
        "p99_us": client["p99_us"],
        "cpu_us_per_round_trip": (echo["cpu"] + client["cpu"]) / n * 1e6,
    }


CASES: Dict[str, List[Tuple[str, Callable[[int, float], Dict[str, float]]]]] = {
    "barrier": [
        ("sockets", barrier_sockets),
        ("twisted", barrier_twisted),
        ("tsyncp_tx", barrier_tsyncp),
    ],
    "pingpong": [
        ("sockets", pingpong_sockets),
        ("twisted", pingpong_twisted),
        ("tsyncp_tx", pingpong_tsyncp),
    ],
}


def run(count: int, runs: int, timeout: float, verbose: bool = False) -> Dict[str, Dict[str, Dict[str, float]]]:
    """
    Run every case's variants interleaved, C{runs} times.

    @return: C{{case: {variant: {figure: median}}}}.
    """
    medians: Dict[str, Dict[str, Dict[str, float]]] = {}
    for case, variants in CASES.items():
        results: Dict[str, List[Dict[str, float]]] = {name: [] for name, _ in variants}
        for i in range(runs):
            for name, f in variants:
                result = f(count, timeout)
                results[name].append(result)
                if verbose:
                    print(f"  {case} run {i + 1} {name}: {format_figures(result)}", flush=True)
        medians[case] = {
            name: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for name, rs in results.items()
        }
    return medians


def format_figures(figures: Dict[str, float]) -> str:
    names = {
        "gen_per_s": "{:,.0f} gen/s",
        "cpu_us_per_gen": "CPU {:,.0f} µs/gen",
        "p50_us": "p50 {:,.1f} µs",
        "p99_us": "p99 {:,.1f} µs",
        "cpu_us_per_round_trip": "CPU {:,.0f} µs/round trip",
    }
    return ", ".join(names[k].format(v) for k, v in figures.items())


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip())
    parser.add_argument("--quick", action="store_true", help="1 run of 2,000")
    parser.add_argument("--count", type=int, default=None, help="generations / round trips per run")
    parser.add_argument("--runs", type=int, default=None, help="runs per variant (default 3)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds per run")
    parser.add_argument("-v", "--verbose", action="store_true", help="print every run")
    args = parser.parse_args(argv)
    if not hasattr(os, "fork"):
        print("floors.py needs os.fork (Linux, macOS)", file=sys.stderr)
        return 2
    count = args.count or (2_000 if args.quick else 10_000)
    runs = args.runs or (1 if args.quick else 3)
    print(f"# floors: {count:,} per run, {runs} run(s), medians; {os.cpu_count()} CPUs")
    medians = run(count, runs, args.timeout, args.verbose)
    for case, variants in medians.items():
        print(f"\n## {case}")
        for name, figures in variants.items():
            print(f"   {name:10} {format_figures(figures)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
