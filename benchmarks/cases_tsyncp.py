"""
The tsyncp_tx side of the benchmarks: one program per case, each with a
C{listen} and a C{connect} role, run by the harness as separate processes:

    python -m benchmarks.cases_tsyncp PROGRAM ROLE JSON_PARAMS

They use Twisted's default reactor through C{task.react} and
C{Deferred.fromCoroutine}, and the per-item API users write
(C{await tx.send(item)} in a loop, C{async for item in rx}); the batch
variants (C{send_many}, C{recv_many}) exist only for the extra rows.
"""

from __future__ import annotations

import sys
from time import perf_counter
from typing import Any, Callable, Coroutine, Dict, List, Optional, Tuple

from twisted.internet import task
from twisted.internet.defer import Deferred

from benchmarks._harness import DICT_PAD, Control, child_args, cpu_seconds, emit, percentile, run_child

LOOPBACK = "127.0.0.1:0"


def make_codec(name: str) -> Any:
    """
    The codec for a variant.

    @param name: C{raw}, C{json} (orjson when installed), C{json-stdlib}
        or C{cbor}.
    @return: The codec.
    """
    from tsyncp_tx.codecs import CborCodec, JsonCodec, RawCodec

    if name == "raw":
        return RawCodec()
    if name == "json":
        return JsonCodec()
    if name == "json-stdlib":
        return JsonCodec(use_orjson=False)
    if name == "cbor":
        return CborCodec()
    raise ValueError(f"unknown codec {name!r}")


def go_deferred(control: Control, reactor: Any) -> Deferred[None]:
    """
    A Deferred firing (in the reactor thread) once the harness says C{go}.
    """
    d: Deferred[None] = Deferred()
    control.on_go(lambda: reactor.callFromThread(d.callback, None))
    return d


def _codec_name(p: Dict[str, Any]) -> str:
    return "raw" if p["kind"] == "raw" else p["codec"]


async def _receive(rx: Any, count: int, p: Dict[str, Any]) -> Dict[str, Any]:
    """
    Receive C{count} items, timing from the first to the last.

    @return: The result fields: C{received}, C{intervals}, C{seconds}.
    """
    last: Any = None
    if p.get("recv") == "many":
        items: List[Any] = await rx.recv_many()
        t0 = perf_counter()
        first = received = len(items)
        while received < count:
            items = await rx.recv_many()
            received += len(items)
        t1 = perf_counter()
        last = items[-1]
    else:
        it = rx.__aiter__()
        try:
            last = await it.__anext__()
        except StopAsyncIteration:
            return {"received": 0, "intervals": 0, "seconds": 0.0}
        t0 = perf_counter()
        first = received = 1
        if count > 1:
            async for last in it:
                received += 1
                if received == count:
                    break
        t1 = perf_counter()
    _check_last(last, p)
    return {"received": received, "intervals": received - first, "seconds": t1 - t0}


def _check_last(last: Any, p: Dict[str, Any]) -> None:
    # A cheap sanity check that the items are what was sent.
    if p["kind"] == "raw":
        if len(last) != p["size"]:
            raise AssertionError(f"received a {len(last)}-byte item, expected {p['size']}")
    elif not (isinstance(last, dict) and last.get("p") == DICT_PAD):
        raise AssertionError(f"received {last!r:.80}, expected a dict item")


async def _send(tx: Any, count: int, p: Dict[str, Any]) -> None:
    """
    Send C{count} items with the per-item API (or C{send_many} batches).
    """
    batch: Optional[int] = p.get("batch")
    if p["kind"] == "raw":
        payload = b"x" * p["size"]
        if batch:
            chunk = [payload] * batch
            for start in range(0, count, batch):
                await tx.send_many(chunk[: min(batch, count - start)])
        else:
            for _ in range(count):
                await tx.send(payload)
    else:
        pad = DICT_PAD
        if batch:
            for start in range(0, count, batch):
                await tx.send_many([{"i": i, "p": pad} for i in range(start, min(count, start + batch))])
        else:
            for i in range(count):
                await tx.send({"i": i, "p": pad})


# mpsc: the listener receives (and measures), the connectors send.


async def mpsc_listen(reactor: Any, control: Control, p: Dict[str, Any]) -> None:
    from tsyncp_tx import mpsc

    rx = await mpsc.receiver_on(LOOPBACK, codec=make_codec(_codec_name(p)), **p.get("options", {}))
    emit(ready={"port": rx.local_address[1]})
    senders = p["connectors"]
    count = (p["count"] // senders) * senders
    result = await _receive(rx, count, p)
    result["expected"] = count
    result["cpu"] = cpu_seconds()
    emit(result=result)
    await rx.close()


async def mpsc_connect(reactor: Any, control: Control, p: Dict[str, Any]) -> None:
    from tsyncp_tx import mpsc

    tx = await mpsc.sender_to(
        f"127.0.0.1:{p['port']}", codec=make_codec(_codec_name(p)), **p.get("options", {})
    )
    emit(ready={})
    await go_deferred(control, reactor)
    await _send(tx, p["count"] // p["connectors"], p)
    await tx.close()


# broadcast: the listener sends to every receiver; each receiver measures.


async def broadcast_listen(reactor: Any, control: Control, p: Dict[str, Any]) -> None:
    from tsyncp_tx import broadcast

    tx = await broadcast.sender_on(LOOPBACK, codec=make_codec(_codec_name(p)), **p.get("options", {}))
    emit(ready={"port": tx.local_address[1]})
    await tx.accept(p["connectors"])
    await go_deferred(control, reactor)
    await _send(tx, p["count"], p)
    await tx.close()


async def broadcast_connect(reactor: Any, control: Control, p: Dict[str, Any]) -> None:
    from tsyncp_tx import broadcast

    rx = await broadcast.receiver_to(
        f"127.0.0.1:{p['port']}", codec=make_codec(_codec_name(p)), **p.get("options", {})
    )
    emit(ready={})
    result = await _receive(rx, p["count"], p)
    result["expected"] = p["count"]
    result["cpu"] = cpu_seconds()
    emit(result=result)
    await rx.close()


# barrier: the listener is the barrier; each waiter loops wait() and
# records when it called wait() and when it was released.


async def barrier_listen(reactor: Any, control: Control, p: Dict[str, Any]) -> None:
    from tsyncp_tx import barrier

    parties = p["parties"]
    gone: Deferred[None] = Deferred()
    left = [0]

    def on_disconnect(address: Any, reason: Any) -> None:
        left[0] += 1
        if left[0] == parties and not gone.called:
            gone.callback(None)

    b = await barrier.barrier_on(LOOPBACK, parties=parties, on_disconnect=on_disconnect)
    emit(ready={"port": b.local_address[1]})
    await gone
    await b.close()


async def barrier_connect(reactor: Any, control: Control, p: Dict[str, Any]) -> None:
    from tsyncp_tx import barrier

    # Connecting counts as waiting, so the first release comes once every
    # waiter has connected; timing starts with the second generation.
    w = await barrier.waiter_to(f"127.0.0.1:{p['port']}")
    emit(ready={})
    calls: List[float] = []
    releases: List[float] = []
    for _ in range(p["count"]):
        calls.append(perf_counter())
        await w.wait()
        releases.append(perf_counter())
    # perf_counter is CLOCK_MONOTONIC on Linux: comparable across processes.
    emit(result={"calls": calls, "releases": releases, "cpu": cpu_seconds()})
    await w.close()


# pingpong: the listener echoes; the connector times each round trip.


async def pingpong_listen(reactor: Any, control: Control, p: Dict[str, Any]) -> None:
    from tsyncp_tx import channel
    from tsyncp_tx.codecs import RawCodec

    ch = await channel.channel_on(LOOPBACK, accept=0, codec=RawCodec())
    emit(ready={"port": ch.local_address[1]})
    async for item in ch:
        await ch.send(item)
    await ch.close()


async def pingpong_connect(reactor: Any, control: Control, p: Dict[str, Any]) -> None:
    from tsyncp_tx import channel
    from tsyncp_tx.codecs import RawCodec

    ch = await channel.channel_to(f"127.0.0.1:{p['port']}", codec=RawCodec())
    emit(ready={})
    await go_deferred(control, reactor)
    payload = b"x" * p["size"]
    for _ in range(min(1000, p["count"] // 10)):  # warm-up, not timed
        await ch.send(payload)
        await ch.recv()
    samples: List[float] = []
    started = perf_counter()
    for _ in range(p["count"]):
        t0 = perf_counter()
        await ch.send(payload)
        await ch.recv()
        samples.append(perf_counter() - t0)
    elapsed = perf_counter() - started
    emit(result={
        "n": len(samples), "seconds": elapsed,
        "p50_us": percentile(samples, 50) * 1e6, "p99_us": percentile(samples, 99) * 1e6,
        "cpu": cpu_seconds(),
    })
    await ch.close()


Program = Callable[[Any, Control, Dict[str, Any]], Coroutine[Any, Any, None]]

PROGRAMS: Dict[Tuple[str, str], Program] = {
    ("mpsc", "listen"): mpsc_listen,
    ("mpsc", "connect"): mpsc_connect,
    ("broadcast", "listen"): broadcast_listen,
    ("broadcast", "connect"): broadcast_connect,
    ("barrier", "listen"): barrier_listen,
    ("barrier", "connect"): barrier_connect,
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
    run = PROGRAMS[(program, role)]
    run_child(
        f"tsyncp-{program}-{role}",
        params,
        lambda: task.react(lambda reactor: Deferred.fromCoroutine(run(reactor, control, params))),
    )


if __name__ == "__main__":
    main(sys.argv[1:])
