"""
Framing benchmark: the sans-IO frame decoder and encoders against Twisted's
C{Int32StringReceiver}.

Decodes a stream of 1,000,000 frames of 100-byte payloads fed in 64 KiB
chunks, feeds C{Int32StringReceiver} the equivalent 4-byte-prefixed stream
in the same chunk size, and encodes the same frames (per frame with
C{encode_header} + payload, per frame with C{encode_frame}, and in one batch
with C{encode_frames}).  Each measurement is repeated and the median is
reported.

Run from the checkout::

    python benchmarks/framing.py            # 1,000,000 frames, 5 runs
    python benchmarks/framing.py --quick    # 100,000 frames, 3 runs

Targets: decode at least 3x C{Int32StringReceiver}; encode at least
2,000,000 frames/s.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import struct
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.protocols.basic import Int32StringReceiver  # noqa: E402

from tsyncp_tx.framing import FrameDecoder, encode_frame, encode_frames, encode_header  # noqa: E402

#: Decode throughput must be at least this multiple of Int32StringReceiver's.
DECODE_RATIO_TARGET = 3.0
#: Encode throughput target, frames per second.
ENCODE_TARGET = 2_000_000


def chunked(data: bytes, size: int) -> List[bytes]:
    """
    Cut a stream into chunks as a socket read would deliver them.

    @param data: The stream.
    @param size: The chunk size.
    @return: The chunks, in order.
    """
    return [data[i : i + size] for i in range(0, len(data), size)]


def timed(f: Callable[[], int]) -> float:
    """
    Time one call with the garbage collector off (as C{timeit} does), and
    check it handled the expected number of frames.

    @param f: Returns the number of frames it handled.
    @return: Elapsed seconds.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        f()
        return time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()


def decode_frames(chunks: Sequence[bytes]) -> int:
    """
    Feed every chunk to a new C{FrameDecoder}.

    @param chunks: The stream in chunks.
    @return: The number of frames decoded.
    """
    decoder = FrameDecoder()
    feed = decoder.feed
    count = 0
    for chunk in chunks:
        count += len(feed(chunk))
    decoder.check_end()
    return count


class _Counter(Int32StringReceiver):
    """
    An C{Int32StringReceiver} that collects strings, emptied per read like
    the decoder's result list.
    """

    def __init__(self) -> None:
        self.strings: List[bytes] = []
        # A bound builtin: the cheapest possible stringReceived.
        self.stringReceived = self.strings.append  # type: ignore[method-assign,assignment]


def decode_int32(chunks: Sequence[bytes]) -> int:
    """
    Feed every chunk to a new C{Int32StringReceiver}.

    @param chunks: The 4-byte-prefixed stream in chunks.
    @return: The number of strings received.
    """
    receiver = _Counter()
    strings = receiver.strings
    data_received = receiver.dataReceived
    count = 0
    for chunk in chunks:
        data_received(chunk)
        count += len(strings)
        strings.clear()
    return count


def encode_header_plus_payload(payloads: Sequence[bytes]) -> int:
    """
    Encode each frame as C{encode_header(len(payload)) + payload}.

    @param payloads: The payloads.
    @return: The number of frames encoded.
    """
    # Each frame is dropped after it is built, as after a transport write:
    # keeping a million of them would measure the allocator instead.
    count = 0
    for p in payloads:
        encode_header(len(p)) + p
        count += 1
    return count


def encode_each(payloads: Sequence[bytes]) -> int:
    """
    Encode each frame with C{encode_frame}.

    @param payloads: The payloads.
    @return: The number of frames encoded.
    """
    count = 0
    for p in payloads:
        encode_frame(p)
        count += 1
    return count


def encode_batch(payloads: Sequence[bytes], batch: int) -> int:
    """
    Encode the frames with one C{encode_frames} call per C{batch} payloads.

    One call for a million frames would mostly measure the kernel handing
    over 100 MB of fresh pages; a batch the size of a few socket writes is
    what a sender does.

    @param payloads: The payloads.
    @param batch: Payloads per call.
    @return: The number of frames encoded.
    """
    count = 0
    for i in range(0, len(payloads), batch):
        part = payloads[i : i + batch]
        encode_frames(part)
        count += len(part)
    return count


def run(
    frames: int = 1_000_000,
    runs: int = 5,
    payload_size: int = 100,
    chunk_size: int = 64 * 1024,
    batch: int = 1000,
    report: Optional[Callable[[str], None]] = None,
) -> Dict[str, float]:
    """
    Run the benchmark.

    @param frames: Frames per run.
    @param runs: Repetitions; the median is reported.
    @param payload_size: Bytes per payload.
    @param chunk_size: Bytes per fed chunk.
    @param batch: Payloads per C{encode_frames} call.
    @param report: Called with a progress line per run, if given.
    @return: Median frames per second for C{"decode"},
        C{"decode_int32"}, C{"encode_header_payload"}, C{"encode_frame"} and
        C{"encode_frames"}, and C{"decode_ratio"}: the median over the runs
        of decode speed / C{Int32StringReceiver} speed.
    @raise AssertionError: If a decoder returns the wrong number of frames
        or the wrong bytes.
    """
    payload = bytes(i % 256 for i in range(payload_size))
    payloads = [payload] * frames
    stream = encode_frames(payloads)
    head = encode_frames(payloads[:batch])
    assert stream[: len(head)] == head, "batched encoding differs"
    chunks = chunked(stream, chunk_size)
    prefixed = (struct.pack(">I", payload_size) + payload) * frames
    prefixed_chunks = chunked(prefixed, chunk_size)
    del stream, prefixed

    # Correctness first: both decoders must see every frame intact.
    check = FrameDecoder()
    first = check.feed(chunks[0])
    assert first[0] == payload, "decoded payload differs"
    assert decode_frames(chunks) == frames, "FrameDecoder lost frames"
    assert decode_int32(prefixed_chunks) == frames, "Int32StringReceiver lost frames"

    cases: Dict[str, Callable[[], int]] = {
        "decode": lambda: decode_frames(chunks),
        "decode_int32": lambda: decode_int32(prefixed_chunks),
        "encode_header_payload": lambda: encode_header_plus_payload(payloads),
        "encode_frame": lambda: encode_each(payloads),
        "encode_frames": lambda: encode_batch(payloads, batch),
    }
    times: Dict[str, List[float]] = {name: [] for name in cases}
    for i in range(runs):
        # Interleave the cases so a noisy neighbour affects them alike.
        for name, case in cases.items():
            times[name].append(timed(case))
        if report is not None:
            report(
                f"  run {i + 1}/{runs}: "
                + ", ".join(f"{name} {frames / times[name][-1]:,.0f}/s" for name in cases)
            )
    result = {name: frames / statistics.median(t) for name, t in times.items()}
    # Each run times both decoders back to back; the median of the per-run
    # ratios cancels most of the drift of a shared machine.
    result["decode_ratio"] = statistics.median(
        ref / ours for ours, ref in zip(times["decode"], times["decode_int32"])
    )
    return result


def describe_machine() -> str:
    """
    @return: CPU count, Python and Twisted versions.
    """
    import twisted

    return (
        f"{os.cpu_count()} CPUs, {platform.python_implementation()} "
        f"{platform.python_version()}, Twisted {twisted.__version__}, {platform.machine()}"
    )


def main(argv: Optional[Sequence[str]] = None) -> int:
    """
    Command line entry point.

    @param argv: Arguments (default: C{sys.argv[1:]}).
    @return: The exit status: 0, or 1 with C{--check} when a target is
        missed.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip() if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100,000 frames, 3 runs")
    parser.add_argument("--frames", type=int, help="frames per run (default 1,000,000)")
    parser.add_argument("--runs", type=int, help="runs; the median is reported (default 5)")
    parser.add_argument("--payload-size", type=int, default=100)
    parser.add_argument("--chunk-size", type=int, default=64 * 1024)
    parser.add_argument("--batch", type=int, default=1000, help="payloads per encode_frames call")
    parser.add_argument("--verbose", action="store_true", help="print every run")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    args = parser.parse_args(argv)
    frames = args.frames or (100_000 if args.quick else 1_000_000)
    runs = args.runs or (3 if args.quick else 5)

    print(
        f"framing: {frames:,} frames of {args.payload_size}-byte payloads, "
        f"{args.chunk_size // 1024} KiB chunks, median of {runs} runs"
    )
    print(f"machine: {describe_machine()}")
    r = run(
        frames, runs, args.payload_size, args.chunk_size, args.batch,
        print if args.verbose else None,
    )
    rows = [
        ("decode   FrameDecoder.feed", r["decode"]),
        ("decode   Int32StringReceiver (reference)", r["decode_int32"]),
        ("encode   encode_header + payload", r["encode_header_payload"]),
        ("encode   encode_frame", r["encode_frame"]),
        (f"encode   encode_frames (batches of {args.batch:,})", r["encode_frames"]),
    ]
    for label, value in rows:
        print(f"  {label:<42} {value:>13,.0f} frames/s")
    ratio_ok = r["decode_ratio"] >= DECODE_RATIO_TARGET
    encode_ok = min(r["encode_header_payload"], r["encode_frame"], r["encode_frames"]) >= ENCODE_TARGET
    print(
        f"  decode ratio FrameDecoder / Int32StringReceiver (median of per-run ratios): "
        f"{r['decode_ratio']:.2f}x "
        f"(target >= {DECODE_RATIO_TARGET:g}x: {'met' if ratio_ok else 'MISSED'})"
    )
    print(
        f"  encode target >= {ENCODE_TARGET:,} frames/s: {'met' if encode_ok else 'MISSED'}"
    )
    if args.check and not (ratio_ok and encode_ok):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
