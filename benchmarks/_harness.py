"""
The benchmark harness: process orchestration, timing, medians, reporting.

Every case runs its programs as separate processes (C{sys.executable -m
benchmarks.cases_tsyncp ...} or C{... cases_zmq ...}) talking over
127.0.0.1.  The protocol between the harness and a program is line based:

  - the program gets C{<program> <role> <json params>} as arguments, where
    the role is C{listen} (started first) or C{connect} (started once the
    listener is ready, with the listener's C{ready} fields merged into its
    params);
  - it prints JSON lines on stdout: C{{"ready": {...}}} once set up (the
    listener's includes its port), then C{{"result": {...}}} if it measures;
  - it starts its timed work only after reading C{go} on stdin, which the
    harness writes to every process once all of them are ready, so
    connection setup and interpreter start-up are never timed;
  - it exits when its stdin reaches end-of-file (the harness died) or its
    own deadline passes, so no child outlives a crashed or killed harness.

Receivers time from the first to the last item received and report
C{intervals} (items received after the first timestamp) and C{seconds}.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import platform
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable, Dict, IO, List, Optional, Sequence, Tuple

#: The checkout's root (children get it on C{PYTHONPATH}).
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

TSYNCP = "benchmarks.cases_tsyncp"
ZMQ = "benchmarks.cases_zmq"

# The JSON/CBOR item of the issue: {"i": n, "p": "x" * 100}.
DICT_PAD = "x" * 100

MiB = 1024 * 1024


# ---------------------------------------------------------------------------
# Child side


def emit(**fields: Any) -> None:
    """
    Print one JSON line for the harness (flushed at once).

    @param fields: The message, e.g. C{ready={...}} or C{result={...}}.
    """
    sys.stdout.write(json.dumps(fields) + "\n")
    sys.stdout.flush()


def cpu_seconds() -> float:
    """
    CPU time (user + system) this process used so far.

    @return: Seconds.
    """
    t = os.times()
    return t.user + t.system


class Control:
    """
    A child's link to the harness: the C{go} line on stdin, end-of-file
    (the harness is gone: exit at once) and a hard deadline.
    """

    def __init__(self, deadline: float) -> None:
        """
        @param deadline: Seconds after which the process exits on its own.
        """
        self._on_go: Optional[Callable[[], None]] = None
        self._go = threading.Event()
        self._lock = threading.Lock()
        timer = threading.Timer(deadline, self._expire)
        timer.daemon = True
        timer.start()
        thread = threading.Thread(target=self._read, daemon=True)
        thread.start()

    @staticmethod
    def _expire() -> None:
        sys.stderr.write("benchmark child: deadline passed, exiting\n")
        sys.stderr.flush()
        os._exit(71)

    def _read(self) -> None:
        # os.read on the descriptor, not sys.stdin: a daemon thread blocked
        # inside a buffered reader aborts the interpreter's shutdown.
        pending = b""
        while True:
            try:
                data = os.read(0, 4096)
            except InterruptedError:
                continue
            except OSError:
                data = b""
            if not data:
                # The harness closed our stdin: it is finished or dead.
                os._exit(70)
            pending += data
            if b"go\n" in pending:
                pending = b""
                with self._lock:
                    self._go.set()
                    on_go = self._on_go
                if on_go is not None:
                    on_go()

    def wait_go(self, timeout: Optional[float] = None) -> bool:
        """
        Block until the harness says C{go} (for synchronous programs).

        @param timeout: Seconds to wait at most.
        @return: Whether C{go} arrived.
        """
        return self._go.wait(timeout)

    def on_go(self, callback: Callable[[], None]) -> None:
        """
        Call C{callback} (from the reader thread) once C{go} arrives, or
        now if it already has.

        @param callback: A thread-safe callable, e.g. one that uses
            C{reactor.callFromThread}.
        """
        with self._lock:
            if not self._go.is_set():
                self._on_go = callback
                return
        callback()


def run_child(name: str, params: Dict[str, Any], body: Callable[[], None]) -> None:
    """
    Run a child's C{body}, under cProfile when the harness asked for it
    (C{--profile DIR}: the stats go to C{DIR/<name>-<pid>.prof}).

    @param name: The program's name, for the stats file.
    @param params: The child's params (C{profile}: the directory).
    @param body: The program.
    """
    directory = params.get("profile")
    if not directory:
        body()
        return
    import cProfile

    profiler = cProfile.Profile()
    try:
        profiler.runcall(body)
    finally:
        index = params.get("index")
        suffix = f"-{index}" if index is not None else ""
        profiler.dump_stats(os.path.join(directory, f"{name}{suffix}-{os.getpid()}.prof"))


def child_args(argv: Sequence[str]) -> Tuple[str, str, Dict[str, Any]]:
    """
    Parse a child's command line.

    @param argv: C{sys.argv[1:]}: program, role, JSON params.
    @return: C{(program, role, params)}.
    """
    if len(argv) != 3:
        raise SystemExit("usage: python -m benchmarks.cases_X PROGRAM ROLE JSON_PARAMS")
    return argv[0], argv[1], json.loads(argv[2])


def percentile(values: Sequence[float], p: float) -> float:
    """
    The C{p}-th percentile (nearest rank) of C{values}.

    @param values: The samples (need not be sorted).
    @param p: 0-100.
    @return: The percentile.
    """
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, int(round(p / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


# ---------------------------------------------------------------------------
# Parent side: processes


class BenchmarkError(Exception):
    """
    A run failed: a program crashed, timed out or reported nonsense.
    """


class Child:
    """
    One benchmark program running as a child process.
    """

    def __init__(self, module: str, program: str, role: str, params: Dict[str, Any]) -> None:
        """
        @param module: C{benchmarks.cases_tsyncp} or C{benchmarks.cases_zmq}.
        @param program: The program's name in that module.
        @param role: C{listen} or C{connect}.
        @param params: Its parameters (JSON-serialisable).
        """
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        )
        self.name = f"{module.rsplit('.', 1)[-1]}:{program}:{role}"
        if "index" in params:
            self.name += f"#{params['index']}"
        self._stderr: IO[bytes] = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, program, role, json.dumps(params)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            cwd=ROOT,
            env=env,
        )
        self.messages: "queue.Queue[Optional[Dict[str, Any]]]" = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                message = json.loads(line)
            except ValueError:
                message = {"noise": line.decode("utf-8", "replace").rstrip()}
            self.messages.put(message)
        self.messages.put(None)

    def next_message(self, deadline: float) -> Optional[Dict[str, Any]]:
        """
        The next JSON line the program printed.

        @param deadline: A C{time.monotonic()} value.
        @return: The message, or C{None} once its stdout is closed.
        @raise BenchmarkError: At the deadline.
        """
        remaining = deadline - time.monotonic()
        try:
            return self.messages.get(timeout=max(0.0, remaining))
        except queue.Empty:
            raise BenchmarkError(f"{self.name}: timed out") from None

    def expect(self, key: str, deadline: float) -> Dict[str, Any]:
        """
        Wait for a message holding C{key}.

        @param key: C{"ready"} or C{"result"}.
        @param deadline: A C{time.monotonic()} value.
        @return: The message's C{key} field.
        @raise BenchmarkError: If the program ends or times out first.
        """
        while True:
            message = self.next_message(deadline)
            if message is None:
                raise BenchmarkError(f"{self.name}: exited before {key!r}{self.describe_exit()}")
            if key in message:
                return message[key]

    def go(self) -> None:
        """
        Tell the program to start its timed work.
        """
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(b"go\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # it died; the results show it

    def describe_exit(self) -> str:
        """
        The exit status and the end of stderr, for error messages.
        """
        try:
            self.proc.wait(2)
        except subprocess.TimeoutExpired:
            return ""
        self._stderr.seek(0)
        tail = self._stderr.read().decode("utf-8", "replace").strip().splitlines()[-12:]
        return f" (exit status {self.proc.returncode})" + ("\n    " + "\n    ".join(tail) if tail else "")

    def finish(self, deadline: float) -> List[Dict[str, Any]]:
        """
        Collect the program's remaining messages and wait for it to exit.

        @param deadline: A C{time.monotonic()} value.
        @return: Its C{result} fields.
        @raise BenchmarkError: If it fails or times out.
        """
        results = []
        while True:
            message = self.next_message(deadline)
            if message is None:
                break
            if "result" in message:
                results.append(message["result"])
        try:
            status = self.proc.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise BenchmarkError(f"{self.name}: did not exit") from None
        if status != 0:
            raise BenchmarkError(f"{self.name}: failed{self.describe_exit()}")
        return results

    def kill(self) -> None:
        """
        Kill the process if it still runs, and reap it.
        """
        if self.proc.poll() is None:
            try:
                self.proc.kill()
            except OSError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass
        self._stderr.close()


def run_programs(
    module: str,
    program: str,
    params: Dict[str, Any],
    connectors: int,
    timeout: float,
) -> List[Dict[str, Any]]:
    """
    One run: start the listener, then C{connectors} connecting programs,
    let them go, and gather every result.  Every child is killed on the
    way out, whatever happens.

    @param module: The programs' module.
    @param program: The program name.
    @param params: Shared parameters; the listener's C{ready} fields and an
        C{index} are added for each connecting program.
    @param connectors: How many connecting programs.
    @param timeout: Seconds for the whole run.
    @return: Every C{result} reported, each with C{role} and C{index}
        added.
    @raise BenchmarkError: If anything fails or times out.
    """
    deadline = time.monotonic() + timeout
    child_params = dict(params, deadline=timeout + 10)
    children: List[Child] = []
    try:
        listener = Child(module, program, "listen", child_params)
        children.append(listener)
        ready = listener.expect("ready", deadline)
        for index in range(connectors):
            children.append(
                Child(module, program, "connect", dict(child_params, index=index, **ready))
            )
        for child in children[1:]:
            child.expect("ready", deadline)
        for child in children:
            child.go()
        results = []
        for index, child in enumerate(children):
            for result in child.finish(deadline):
                result["role"] = "listen" if index == 0 else "connect"
                result["index"] = index - 1
                results.append(result)
        return results
    finally:
        for child in children:
            child.kill()


# ---------------------------------------------------------------------------
# Cases


@dataclasses.dataclass
class Variant:
    """
    One side of a comparison: the programs to run and how to label them.

    @ivar label: C{"tsyncp_tx"}, C{"pyzmq"} or an extra row's label.
    @ivar role: C{"headline"}, C{"peer"} (the ZeroMQ side) or C{"extra"}.
    """

    label: str
    role: str
    module: str
    program: str
    params: Dict[str, Any]


@dataclasses.dataclass
class Target:
    """
    The issue's target for a case.

    @ivar ratio: Minimum tsyncp/zmq rate ratio (rates), or maximum
        tsyncp/zmq p50 ratio (latency).
    @ivar minimum: Minimum absolute value (msgs/s, or generations/s).
    @ivar minimum_needs: A module that must be importable for C{minimum}
        to apply (e.g. C{"orjson"}).
    @ivar min_mbps: Minimum MB/s.
    """

    text: str
    ratio: Optional[float] = None
    minimum: Optional[float] = None
    minimum_needs: Optional[str] = None
    min_mbps: Optional[float] = None


@dataclasses.dataclass
class Case:
    """
    One benchmark case: a headline variant, its ZeroMQ peer, extra rows.

    @ivar metric: C{"rate"} (msgs/s from receivers), C{"latency"}
        (round-trip p50/p99) or C{"barrier"} (generations/s and release
        latency).
    @ivar count: Items (or round trips, or generations) per run, full mode.
    @ivar quick_count: The same in C{--quick} mode.
    @ivar item_bytes: Payload bytes per item, for MB/s.
    @ivar connectors: How many connecting processes.
    """

    name: str
    description: str
    metric: str
    count: int
    quick_count: int
    item_bytes: int
    connectors: int
    variants: List[Variant]
    target: Target
    note: str = ""


def _available(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def dict_item_bytes(serializer: str) -> int:
    """
    The payload size of a typical C{{"i": n, "p": "x" * 100}} item.

    @param serializer: C{"json"} or C{"cbor"}.
    @return: Bytes.
    """
    item = {"i": 500000, "p": DICT_PAD}
    if serializer == "cbor":
        import cbor2

        return len(cbor2.dumps(item))
    return len(json.dumps(item, separators=(",", ":")).encode())


def build_cases(have_zmq: bool, have_orjson: bool) -> List[Case]:
    """
    Every case of the suite, in running order.

    @param have_zmq: Whether pyzmq is available (else no ZeroMQ peers).
    @param have_orjson: Whether orjson is installed.
    @return: The cases.
    """
    cases: List[Case] = []

    def add(case: Case) -> None:
        if not have_zmq:
            case.variants = [v for v in case.variants if v.module != ZMQ]
        cases.append(case)

    def pair(program: str, tsyncp: Dict[str, Any], zmq: Dict[str, Any]) -> List[Variant]:
        return [
            Variant("tsyncp_tx", "headline", TSYNCP, program, tsyncp),
            Variant("pyzmq", "peer", ZMQ, program, zmq),
        ]

    raw100 = {"kind": "raw", "size": 100}
    add(Case(
        "mpsc-raw-100", "mpsc, 1 sender, 100-byte raw items (RawCodec) vs PUSH/PULL",
        "rate", 1_000_000, 50_000, 100, 1,
        pair("mpsc", dict(raw100), dict(raw100)) + [
            Variant("tsyncp_tx batch (send_many/recv_many)", "extra", TSYNCP, "mpsc",
                    dict(raw100, batch=256, recv="many")),
        ],
        Target(">= 1.3x pyzmq", ratio=1.3),
    ))
    json_lib = "orjson" if have_orjson else "json"
    add(Case(
        "mpsc-json", f"mpsc, 1 sender, dict item, JsonCodec ({json_lib}) vs PUSH/PULL + {json_lib}",
        "rate", 500_000, 20_000, dict_item_bytes("json"), 1,
        pair("mpsc", {"kind": "dict", "codec": "json"},
             {"kind": "dict", "codec": json_lib}),
        Target(">= 1.0x pyzmq and >= 350k msgs/s (orjson)", ratio=1.0,
               minimum=350_000, minimum_needs="orjson"),
        note="" if have_orjson else "orjson not installed: both sides use stdlib json",
    ))
    add(Case(
        "mpsc-json-stdlib", "mpsc, 1 sender, dict item, JsonCodec(use_orjson=False) vs PUSH/PULL + json",
        "rate", 200_000, 10_000, dict_item_bytes("json"), 1,
        pair("mpsc", {"kind": "dict", "codec": "json-stdlib"},
             {"kind": "dict", "codec": "json"}),
        Target(">= 1.0x pyzmq", ratio=1.0),
    ))
    add(Case(
        "mpsc-cbor", "mpsc, 1 sender, dict item, CborCodec vs PUSH/PULL + cbor2",
        "rate", 500_000, 20_000, dict_item_bytes("cbor"), 1,
        pair("mpsc", {"kind": "dict", "codec": "cbor"}, {"kind": "dict", "codec": "cbor"}),
        Target("none stated"),
    ))
    add(Case(
        "mpsc-4x-raw-100", "mpsc, 4 senders -> 1 receiver, 100-byte raw vs 4 PUSH -> 1 PULL",
        "rate", 1_000_000, 50_000, 100, 4,
        pair("mpsc", dict(raw100), dict(raw100)),
        Target("none stated"),
    ))
    raw1m = {"kind": "raw", "size": 1_000_000}
    add(Case(
        "mpsc-raw-1mb", "mpsc, 1 sender, 1 MB raw items vs PUSH/PULL (zero-copy)",
        "rate", 2_000, 200, 1_000_000, 1,
        pair("mpsc", dict(raw1m), dict(raw1m, copy=False)) + [
            Variant("tsyncp_tx read_size=1MiB send_limit=4MiB", "extra", TSYNCP, "mpsc",
                    dict(raw1m, options={"read_size": MiB, "send_limit": 4 * MiB})),
        ],
        Target(">= 0.6x pyzmq and >= 2 GB/s", ratio=0.6, min_mbps=2000),
    ))
    add(Case(
        "broadcast-raw-100", "broadcast 1 -> 3 receivers, 100-byte raw, per receiver vs PUB/SUB",
        "rate", 500_000, 20_000, 100, 3,
        pair("broadcast", dict(raw100), dict(raw100)),
        Target(">= 1.0x pyzmq PUB/SUB", ratio=1.0),
    ))
    add(Case(
        "barrier-4", "barrier_on(parties=4), 4 waiter processes looping wait()",
        "barrier", 10_000, 1_000, 0, 4,
        [Variant("tsyncp_tx", "headline", TSYNCP, "barrier", {"parties": 4})],
        Target(">= 5,000 generations/s", minimum=5000),
    ))
    add(Case(
        "pingpong-100", "request/response on channel, 100 bytes vs REQ/REP",
        "latency", 20_000, 2_000, 100, 1,
        pair("pingpong", {"size": 100}, {"size": 100}),
        Target("p50 <= pyzmq REQ/REP p50", ratio=1.0),
    ))
    return cases


# ---------------------------------------------------------------------------
# Measuring


@dataclasses.dataclass
class Measurement:
    """
    What one run of one variant measured.

    @ivar value: The headline figure: msgs/s (rate), generations/s
        (barrier) or p50 microseconds (latency).
    """

    value: float
    p50: Optional[float] = None
    p99: Optional[float] = None
    detail: str = ""
    delivered: float = 1.0


def measure(case: Case, variant: Variant, count: int, timeout: float, profile: Optional[str] = None) -> Measurement:
    """
    Run one variant once.

    @param case: The case.
    @param variant: Which side.
    @param count: Items, round trips or generations.
    @param timeout: Seconds for the run.
    @param profile: A directory for the children's cProfile stats.
    @return: What it measured.
    @raise BenchmarkError: If it failed.
    """
    params = dict(variant.params, count=count, connectors=case.connectors)
    if profile:
        params["profile"] = profile
    results = run_programs(variant.module, variant.program, params, case.connectors, timeout)
    if case.metric == "rate":
        return _rate(case, results, count)
    if case.metric == "latency":
        if len(results) != 1:
            raise BenchmarkError(f"expected one latency result, got {len(results)}")
        r = results[0]
        return Measurement(r["p50_us"], r["p50_us"], r["p99_us"],
                           f"{r['n']} round trips, {r['n'] / r['seconds']:,.0f}/s")
    return _barrier(results, count)


def _rate(case: Case, results: List[Dict[str, Any]], count: int) -> Measurement:
    if not results:
        raise BenchmarkError("no receiver reported")
    rates = []
    notes = []
    for r in results:
        if r["seconds"] <= 0 or r["intervals"] <= 0:
            raise BenchmarkError(f"receiver reported no timed items: {r}")
        rates.append(r["intervals"] / r["seconds"])
        expected = r.get("expected", count)
        if r["received"] < expected:
            notes.append(f"receiver {r['index']} got {r['received']:,} of {expected:,} (dropped)")
    # Several receivers (broadcast): the per-receiver rate is their mean.
    value = statistics.mean(rates)
    delivered = sum(r["received"] for r in results) / sum(r.get("expected", count) for r in results)
    detail = "; ".join(notes)
    if len(rates) > 1:
        detail = (detail + "; " if detail else "") + "per receiver " + ", ".join(f"{x:,.0f}" for x in rates)
    return Measurement(value, detail=detail, delivered=delivered)


def _barrier(results: List[Dict[str, Any]], generations: int) -> Measurement:
    if not results:
        raise BenchmarkError("no waiter reported")
    waiters = [r for r in results if "calls" in r]
    n = min(len(w["calls"]) for w in waiters)
    if n < 3:
        raise BenchmarkError("too few generations")
    rates = []
    for w in waiters:
        rel = w["releases"]
        rates.append((n - 1) / (rel[n - 1] - rel[0]))
    # The first generation is the one joined by connecting: skip it.
    latencies = []
    for g in range(1, n):
        last_call = max(w["calls"][g] for w in waiters)
        for w in waiters:
            latencies.append((w["releases"][g] - last_call) * 1e6)
    value = statistics.median(rates)
    return Measurement(value, percentile(latencies, 50), percentile(latencies, 99),
                       f"{len(waiters)} waiters, {n} generations")


# ---------------------------------------------------------------------------
# Reporting


@dataclasses.dataclass
class Row:
    """
    The medians of one variant over the runs of a case.
    """

    case: Case
    variant: Variant
    values: List[Measurement]
    ratios: List[float]
    error: Optional[str] = None

    @property
    def median(self) -> Optional[float]:
        return statistics.median(m.value for m in self.values) if self.values else None

    @property
    def ratio(self) -> Optional[float]:
        return statistics.median(self.ratios) if self.ratios else None

    def median_of(self, field: str) -> Optional[float]:
        xs = [getattr(m, field) for m in self.values if getattr(m, field) is not None]
        return statistics.median(xs) if xs else None


def fmt_rate(value: Optional[float], item_bytes: int) -> str:
    """
    C{"812,345 msgs/s (81.2 MB/s)"}.
    """
    if value is None:
        return "—"
    if item_bytes >= 100_000:
        return f"{value:,.0f} msgs/s ({value * item_bytes / 1e6:,.0f} MB/s)"
    return f"{value:,.0f} msgs/s ({value * item_bytes / 1e6:,.1f} MB/s)"


def fmt_value(row: Row) -> str:
    """
    A row's median in its case's unit.
    """
    if row.error is not None and not row.values:
        return "ERROR"
    case = row.case
    if case.metric == "rate":
        text = fmt_rate(row.median, case.item_bytes)
        delivered = statistics.median(m.delivered for m in row.values) if row.values else 1.0
        if delivered < 1.0:
            # PUB/SUB drops at its high-water mark: the rate counts what arrived.
            text += f", {delivered:.0%} delivered"
        return text
    if case.metric == "latency":
        return f"p50 {row.median_of('p50'):.1f} µs, p99 {row.median_of('p99'):.1f} µs"
    return (f"{row.median:,.0f} gen/s, release p50 {row.median_of('p50'):.1f} µs, "
            f"p99 {row.median_of('p99'):.1f} µs")


def verdict(case: Case, row: Row) -> str:
    """
    C{PASS}, C{MISS} or C{n/a} for the headline row against the target.
    """
    target = case.target
    if row.median is None:
        return "n/a (error)"
    checks: List[bool] = []
    if target.ratio is not None:
        if row.ratio is None:
            return "n/a (no pyzmq)" if target.minimum is None and target.min_mbps is None else _partial(case, row)
        if case.metric == "latency":
            checks.append(row.ratio <= target.ratio)
        else:
            checks.append(row.ratio >= target.ratio)
    if target.minimum is not None and (target.minimum_needs is None or _available(target.minimum_needs)):
        checks.append(row.median >= target.minimum)
    if target.min_mbps is not None:
        checks.append(row.median * case.item_bytes / 1e6 >= target.min_mbps)
    if not checks:
        return "—"
    return "PASS" if all(checks) else "MISS"


def _partial(case: Case, row: Row) -> str:
    target = case.target
    assert row.median is not None
    ok = True
    if target.minimum is not None and (target.minimum_needs is None or _available(target.minimum_needs)):
        ok = ok and row.median >= target.minimum
    if target.min_mbps is not None:
        ok = ok and row.median * case.item_bytes / 1e6 >= target.min_mbps
    return ("PASS" if ok else "MISS") + " (absolute part only; no pyzmq)"


def fmt_ratio(case: Case, ratio: Optional[float]) -> str:
    """
    C{"1.25x"}; for latency the ratio is tsyncp p50 / pyzmq p50.
    """
    if ratio is None:
        return "n/a"
    return f"{ratio:.2f}x"


def environment() -> str:
    """
    A one-paragraph description of the machine and the software versions.
    """
    import twisted

    parts = [
        f"Python {platform.python_version()} ({platform.python_implementation()})",
        f"Twisted {twisted.__version__}",
        f"{platform.system()} {platform.release()} {platform.machine()}",
        f"{os.cpu_count()} CPUs",
    ]
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    parts.append(line.split(":", 1)[1].strip())
                    break
    except OSError:
        pass
    if _available("zmq"):
        import zmq

        parts.append(f"pyzmq {zmq.__version__} (libzmq {zmq.zmq_version()})")
    else:
        parts.append("pyzmq not installed")
    if _available("orjson"):
        import orjson

        parts.append(f"orjson {orjson.__version__}")
    else:
        parts.append("orjson not installed")
    return ", ".join(parts)


def run_case(case: Case, runs: int, count: int, timeout: float, verbose: bool,
             profile: Optional[str] = None) -> List[Row]:
    """
    Run a case's variants interleaved (t, z, extra, t, z, extra, ...),
    printing each run, then its medians and ratios.

    @return: One row per variant.
    """
    print(f"\n## {case.name}: {case.description}", flush=True)
    if case.note:
        print(f"   note: {case.note}")
    rows = [Row(case, v, [], []) for v in case.variants]
    peer = next((r for r in rows if r.variant.role == "peer"), None)
    if peer is None and case.metric != "barrier":
        print("   pyzmq not installed: comparison skipped")
    for run in range(1, runs + 1):
        measured: Dict[int, Measurement] = {}
        for i, row in enumerate(rows):
            try:
                m = measure(case, row.variant, count, timeout, profile)
            except BenchmarkError as e:
                row.error = str(e)
                print(f"   run {run} {row.variant.label}: ERROR {e}", flush=True)
                continue
            measured[i] = m
            row.values.append(m)
            text = fmt_value(Row(case, row.variant, [m], []))
            # Losses are always shown: they qualify the rate.
            show = m.detail and (verbose or "dropped" in m.detail)
            print(f"   run {run} {row.variant.label}: {text}"
                  + (f"  [{m.detail}]" if show else ""), flush=True)
        if peer is not None:
            pi = rows.index(peer)
            if pi in measured:
                for i, m in measured.items():
                    if rows[i] is not peer:
                        rows[i].ratios.append(m.value / measured[pi].value)
    for row in rows:
        line = f"   median {row.variant.label}: {fmt_value(row)}"
        if row.variant.role != "peer" and peer is not None:
            what = "p50 ratio to pyzmq (lower is better)" if case.metric == "latency" else "ratio to pyzmq"
            line += f"  | {what} {fmt_ratio(case, row.ratio)}"
        print(line, flush=True)
    return rows


def summary(all_rows: List[List[Row]], quick: bool) -> str:
    """
    The final markdown table.
    """
    lines = [
        "| case | tsyncp_tx (median) | pyzmq (median) | ratio | target | result |",
        "|---|---|---|---|---|---|",
    ]
    for rows in all_rows:
        case = rows[0].case
        peer = next((r for r in rows if r.variant.role == "peer"), None)
        peer_text = fmt_value(peer) if peer is not None else "—"
        for row in rows:
            if row.variant.role == "peer":
                continue
            if row.variant.role == "headline":
                name = case.name
                target = case.target.text
                result = verdict(case, row)
            else:
                name = f"{case.name} [extra: {row.variant.label[len('tsyncp_tx '):]}]"
                target = "(extra row, not judged)"
                result = "—"
            if row.error is not None and not row.values:
                result = "ERROR"
            ratio = fmt_ratio(case, row.ratio) if peer is not None else "n/a"
            if case.metric == "latency" and row.ratio is not None:
                ratio += " (p50 t/z)"
            lines.append(f"| {name} | {fmt_value(row)} | {peer_text} | {ratio} | {target} | {result} |")
    if quick:
        lines.append("")
        lines.append("(--quick: counts too small for the verdicts to mean much)")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """
    The command line: C{python -m benchmarks [options]}.

    @param argv: Arguments (default: C{sys.argv[1:]}).
    @return: The exit status: 0, or 1 if a run failed.
    """
    have_zmq_installed = _available("zmq")
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="tsyncp_tx benchmarks against pyzmq: separate processes on 127.0.0.1, "
        "interleaved runs, medians and per-run ratios.",
    )
    parser.add_argument("--quick", action="store_true", help="small counts, 1 run (CI; < 60 s)")
    parser.add_argument("--only", default="", help="comma-separated case names (see --list)")
    parser.add_argument("--runs", type=int, default=None, help="runs per variant (default 3; 1 with --quick)")
    parser.add_argument("--count", type=int, default=None,
                        help="items (round trips, generations) per run, overriding every case's default")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per run before it is killed")
    parser.add_argument("--no-zmq", action="store_true", help="skip the pyzmq comparisons")
    parser.add_argument("--no-extra", action="store_true", help="skip the extra (batch, tuned) rows")
    parser.add_argument("--list", action="store_true", help="list the cases and exit")
    parser.add_argument("--json", metavar="PATH", help="also write the raw results as JSON here")
    parser.add_argument("--profile", metavar="DIR",
                        help="run every child under cProfile, writing DIR/<module>-<program>-<role>[-i]-<pid>.prof "
                        "(slows everything down: for finding hotspots, not for figures)")
    parser.add_argument("-v", "--verbose", action="store_true", help="show per-run details")
    args = parser.parse_args(argv)

    have_zmq = have_zmq_installed and not args.no_zmq
    cases = build_cases(have_zmq, _available("orjson"))
    if args.list:
        for case in cases:
            print(f"{case.name:20} {case.description}")
        return 0
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        known = {c.name for c in cases}
        unknown = [n for n in wanted if n not in known]
        if unknown:
            parser.error(f"unknown case(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        cases = [c for c in cases if c.name in wanted]
    if args.no_extra:
        for case in cases:
            case.variants = [v for v in case.variants if v.role != "extra"]
    runs = args.runs if args.runs is not None else (1 if args.quick else 3)
    if args.profile:
        args.profile = os.path.abspath(args.profile)
        os.makedirs(args.profile, exist_ok=True)
    if runs < 1:
        parser.error("--runs must be at least 1")
    timeout = args.timeout if args.timeout is not None else (40.0 if args.quick else 180.0)

    print("# tsyncp_tx benchmarks")
    print(environment())
    print(f"mode: {'quick' if args.quick else 'full'}, {runs} run(s) per variant, interleaved; "
          "sender and receiver in separate processes on 127.0.0.1; "
          "rates time first to last item received; ratios are per run, then the median")
    if not have_zmq_installed:
        print("pyzmq is not installed (pip install '.[bench]'): ZeroMQ comparisons skipped")
    elif args.no_zmq:
        print("--no-zmq: ZeroMQ comparisons skipped")

    started = time.monotonic()
    all_rows: List[List[Row]] = []
    failed = False
    for case in cases:
        count = args.count if args.count is not None else (case.quick_count if args.quick else case.count)
        if count < 2:
            parser.error("--count must be at least 2")
        rows = run_case(case, runs, count, timeout, args.verbose, args.profile)
        failed = failed or any(r.error is not None for r in rows)
        all_rows.append(rows)

    print(f"\n# Summary ({time.monotonic() - started:.0f} s)\n")
    print(summary(all_rows, args.quick))
    if args.json:
        dump = []
        for rows in all_rows:
            for row in rows:
                dump.append({
                    "case": row.case.name, "variant": row.variant.label, "role": row.variant.role,
                    "metric": row.case.metric, "item_bytes": row.case.item_bytes,
                    "values": [dataclasses.asdict(m) for m in row.values],
                    "median": row.median, "ratios": row.ratios, "ratio": row.ratio,
                    "error": row.error,
                })
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump({"environment": environment(), "runs": runs, "quick": args.quick,
                       "rows": dump}, f, indent=1)
    return 1 if failed else 0


def install_signal_handlers() -> None:
    """
    Turn SIGTERM into C{SystemExit} so the C{finally} blocks that kill
    children run (children also exit when their stdin closes).
    """
    def terminate(signum: int, frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, terminate)
