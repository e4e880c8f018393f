"""
The pyzmq side of the benchmarks: the ZeroMQ peer of every tsyncp_tx case,
with the same roles and parameters (see L{benchmarks.cases_tsyncp}):

    python -m benchmarks.cases_zmq PROGRAM ROLE JSON_PARAMS

Plain blocking pyzmq, written the way its users write it: one C{send()} per
item, one C{recv()} per item, the same serializer as the tsyncp_tx codec
(C{json.dumps}/C{orjson.dumps}/C{cbor2.dumps}, then bytes).
"""

from __future__ import annotations

import json
import sys
from time import perf_counter
from typing import Any, Callable, Dict, List, Tuple

import zmq

from benchmarks._harness import DICT_PAD, Control, child_args, cpu_seconds, emit, percentile, run_child

LINGER_MS = 30_000


def serializer(name: str) -> Tuple[Callable[[Any], bytes], Callable[[bytes], Any]]:
    """
    C{(dumps, loads)} for a variant.

    @param name: C{json} (stdlib), C{orjson} or C{cbor}.
    @return: The two functions.
    """
    if name == "json":
        return (lambda obj: json.dumps(obj, separators=(",", ":")).encode()), json.loads
    if name == "orjson":
        import orjson

        return orjson.dumps, orjson.loads
    if name == "cbor":
        import cbor2

        return cbor2.dumps, cbor2.loads
    raise ValueError(f"unknown serializer {name!r}")


def _bind(sock: zmq.Socket) -> int:
    sock.bind("tcp://127.0.0.1:*")
    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    return int(endpoint.rsplit(":", 1)[1])


def _check_last(last: Any, p: Dict[str, Any]) -> None:
    if p["kind"] == "raw":
        if len(last) != p["size"]:
            raise AssertionError(f"received a {len(last)}-byte item, expected {p['size']}")
    elif not (isinstance(last, dict) and last.get("p") == DICT_PAD):
        raise AssertionError(f"received {last!r:.80}, expected a dict item")


# mpsc: PULL binds and measures; PUSH connects and sends.


def mpsc_listen(ctx: zmq.Context, control: Control, p: Dict[str, Any]) -> None:
    sock = ctx.socket(zmq.PULL)
    emit(ready={"port": _bind(sock)})
    senders = p["connectors"]
    count = (p["count"] // senders) * senders
    copy = p.get("copy", True)
    if p["kind"] == "raw":
        last = sock.recv(copy=copy)
        t0 = perf_counter()
        for _ in range(count - 1):
            last = sock.recv(copy=copy)
    else:
        _, loads = serializer(p["codec"])
        last = loads(sock.recv())
        t0 = perf_counter()
        for _ in range(count - 1):
            last = loads(sock.recv())
    t1 = perf_counter()
    _check_last(last, p)
    emit(result={"received": count, "intervals": count - 1, "seconds": t1 - t0,
                 "expected": count, "cpu": cpu_seconds()})
    sock.close(linger=0)


def mpsc_connect(ctx: zmq.Context, control: Control, p: Dict[str, Any]) -> None:
    sock = ctx.socket(zmq.PUSH)
    sock.connect(f"tcp://127.0.0.1:{p['port']}")
    emit(ready={})
    control.wait_go()
    count = p["count"] // p["connectors"]
    if p["kind"] == "raw":
        payload = b"x" * p["size"]
        copy = p.get("copy", True)
        for _ in range(count):
            sock.send(payload, copy=copy)
    else:
        dumps, _ = serializer(p["codec"])
        pad = DICT_PAD
        for i in range(count):
            sock.send(dumps({"i": i, "p": pad}))
    sock.close(linger=LINGER_MS)


# broadcast: PUB binds and publishes; each SUB measures.  PUB/SUB has no
# connection handshake and drops at its high-water mark, so: the publisher
# sends 1-byte "W" probes until every subscriber said (on a PUSH/PULL side
# socket) that it receives, then the items, then "E" until every
# subscriber said it is done.  Receivers report what they got.


def broadcast_listen(ctx: zmq.Context, control: Control, p: Dict[str, Any]) -> None:
    pub = ctx.socket(zmq.PUB)
    sync = ctx.socket(zmq.PULL)
    emit(ready={"port": _bind(pub), "sync": _bind(sync)})
    control.wait_go()
    subscribers = p["connectors"]
    ready = 0
    while ready < subscribers:
        pub.send(b"W")
        while sync.poll(1):
            sync.recv()
            ready += 1
    payload = b"x" * p["size"]
    for _ in range(p["count"]):
        pub.send(payload)
    done = 0
    while done < subscribers:
        pub.send(b"E")
        while sync.poll(10):
            sync.recv()
            done += 1
    pub.close(linger=0)
    sync.close(linger=0)


def broadcast_connect(ctx: zmq.Context, control: Control, p: Dict[str, Any]) -> None:
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.connect(f"tcp://127.0.0.1:{p['port']}")
    sync = ctx.socket(zmq.PUSH)
    sync.connect(f"tcp://127.0.0.1:{p['sync']}")
    emit(ready={})
    size = p["size"]
    count = p["count"]
    m = sub.recv()
    sync.send(b"ready")
    while len(m) != size:  # probes still in the pipe
        m = sub.recv()
    t0 = perf_counter()
    received = 1
    while received < count:
        m = sub.recv()
        if len(m) != size:  # "E": some items were dropped
            break
        received += 1
    t1 = perf_counter()
    sync.send(b"done")
    emit(result={"received": received, "intervals": received - 1, "seconds": t1 - t0,
                 "expected": count, "cpu": cpu_seconds()})
    sub.close(linger=0)
    sync.close(linger=LINGER_MS)


# pingpong: REP echoes; REQ times each round trip.


def pingpong_listen(ctx: zmq.Context, control: Control, p: Dict[str, Any]) -> None:
    sock = ctx.socket(zmq.REP)
    emit(ready={"port": _bind(sock)})
    while True:
        m = sock.recv()
        sock.send(m)
        if not m:
            break
    sock.close(linger=LINGER_MS)


def pingpong_connect(ctx: zmq.Context, control: Control, p: Dict[str, Any]) -> None:
    sock = ctx.socket(zmq.REQ)
    sock.connect(f"tcp://127.0.0.1:{p['port']}")
    emit(ready={})
    control.wait_go()
    payload = b"x" * p["size"]
    for _ in range(min(1000, p["count"] // 10)):  # warm-up, not timed
        sock.send(payload)
        sock.recv()
    samples: List[float] = []
    started = perf_counter()
    for _ in range(p["count"]):
        t0 = perf_counter()
        sock.send(payload)
        sock.recv()
        samples.append(perf_counter() - t0)
    elapsed = perf_counter() - started
    sock.send(b"")  # tells the echo server to stop
    sock.recv()
    emit(result={
        "n": len(samples), "seconds": elapsed,
        "p50_us": percentile(samples, 50) * 1e6, "p99_us": percentile(samples, 99) * 1e6,
        "cpu": cpu_seconds(),
    })
    sock.close(linger=0)


Program = Callable[[Any, Control, Dict[str, Any]], None]

PROGRAMS: Dict[Tuple[str, str], Program] = {
    ("mpsc", "listen"): mpsc_listen,
    ("mpsc", "connect"): mpsc_connect,
    ("broadcast", "listen"): broadcast_listen,
    ("broadcast", "connect"): broadcast_connect,
    ("pingpong", "listen"): pingpong_listen,
    ("pingpong", "connect"): pingpong_connect,
}


def main(argv: List[str]) -> None:
    """
    Run one program: C{PROGRAM ROLE JSON_PARAMS}.

    @param argv: C{sys.argv[1:]}.
    """
    program, role, params = child_args(argv)
    control = Control(params.get("deadline", 300))
    ctx = zmq.Context()
    try:
        run_child(f"zmq-{program}-{role}", params, lambda: PROGRAMS[(program, role)](ctx, control, params))
    except BaseException:
        ctx.destroy(linger=0)
        raise
    ctx.term()


if __name__ == "__main__":
    main(sys.argv[1:])
