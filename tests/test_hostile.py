"""
Hostile bytes, hypothesis-driven, over real loopback TCP.

A listening C{multi_channel} (small C{max_frame_length}) serves one
well-formed peer in both directions while hypothesis opens connection after
connection feeding it random bytes and mutated frame streams, in random
chunks, closed with FIN or RST.  After every example: the well-formed peer
is still served both ways, every connection's buffered partial frame is
within C{max_frame_length + 4}, every C{DecodeError} names a hostile peer,
and the hostile connection is gone from the pool once closed.  Over the
run the process's memory stays bounded, and any unhandled error logged by
the library fails the test (trial's log observer).

Hypothesis runs in a thread (its test function is synchronous); each
example drives the reactor with C{blockingCallFromThread}.
"""

from __future__ import annotations

import socket
import struct
from typing import Any, Callable, Coroutine, List, Tuple

import psutil
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet import reactor as _global_reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.trial.unittest import TestCase

from tsyncp_tx import channel, multi_channel
from tsyncp_tx.errors import ChannelClosed, DecodeError
from tsyncp_tx.framing import encode_frame, encode_header

from ._util import LOOPBACK, as_deferred, eventually, sleep

reactor: Any = _global_reactor

MAX = 1024  # the receiver's max_frame_length
MiB = 1024 * 1024

_JSON = [b"1", b'"x"', b"[1,2]", b'{"a":1}', b"null", b'"\xc3\xa9"', b"[]"]


@st.composite
def hostile_streams(draw: Callable[..., Any]) -> Tuple[List[bytes], bool]:
    """
    A byte stream split into chunks, and whether to end it with RST.

    The stream is random bytes, or frames (valid JSON, random payloads,
    non-minimal headers) mutated by bit flips, truncation, inserted
    garbage, an oversized header or a header announcing up to 512 MiB.
    """
    kind = draw(st.sampled_from(["random", "frames", "frames", "frames"]))
    if kind == "random":
        data = draw(st.binary(min_size=1, max_size=3000))
    else:
        payloads = draw(
            st.lists(
                st.one_of(st.sampled_from(_JSON), st.binary(max_size=MAX + 8)),
                min_size=1,
                max_size=8,
            )
        )
        parts = []
        for payload in payloads:
            if draw(st.booleans()) or len(payload) > MAX:
                # Sometimes a longer-than-needed header (valid), sometimes
                # too large for this receiver (invalid).
                size = len(payload)
                width = draw(st.sampled_from([2, 3, 4]))
                if width == 2 and size < 1 << 14:
                    header = struct.pack(">H", 0x8000 | size)
                elif width == 3 and size < 1 << 21:
                    header = bytes(((0xC0 | (size >> 16)), (size >> 8) & 0xFF, size & 0xFF))
                else:
                    header = struct.pack(">I", 0xE0000000 | size)
                parts.append(header + payload)
            else:
                parts.append(encode_frame(payload))
        data = bytearray(b"".join(parts))
        mutation = draw(
            st.sampled_from(["none", "flip", "truncate", "insert", "oversize", "huge"])
        )
        if mutation == "flip" and data:
            for _ in range(draw(st.integers(1, 8))):
                at = draw(st.integers(0, len(data) - 1))
                data[at] ^= 1 << draw(st.integers(0, 7))
        elif mutation == "truncate" and len(data) > 1:
            data = data[: draw(st.integers(1, len(data) - 1))]
        elif mutation == "insert":
            at = draw(st.integers(0, len(data)))
            data[at:at] = draw(st.binary(min_size=1, max_size=64))
        elif mutation == "oversize":
            at = draw(st.integers(0, len(data)))
            data[at:at] = encode_header(draw(st.integers(MAX + 1, 1 << 21)), 1 << 29)
        elif mutation == "huge":
            data[0:0] = b"\xff\xff\xff\xff"
        data = bytes(data) or b"\x00"
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=5))))
    chunks = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)]) if data[a:b]]
    return chunks, draw(st.booleans())


class HostileBytesTests(TestCase):
    """
    Random and mutated frames from many connections never crash the
    receiver, never starve the well-formed peer, never grow memory.
    """

    timeout = 180

    @as_deferred
    async def test_hostile_bytes_contained(self) -> None:
        """
        See the module docstring.
        """
        lost: List[Any] = []
        mc = await multi_channel.channel_on(
            LOOPBACK, max_frame_length=MAX, on_disconnect=lambda a, r: lost.append(a)
        )
        self.addCleanup(mc.close)
        good = await channel.channel_to(mc.local_address, max_frame_length=MAX)
        self.addCleanup(good.close)
        await eventually(lambda: len(mc.addresses) == 1)
        good_address = good.local_address
        port = mc.local_address[1]

        from_good: List[Any] = []
        bad_sources: List[Any] = []
        stray: List[str] = []

        async def drain() -> None:
            while True:
                try:
                    item, address = await mc.recv(with_addr=True)
                except DecodeError as e:
                    bad_sources.append(e.address)
                    continue
                except ChannelClosed:
                    return
                if address == good_address:
                    from_good.append(item)
                elif not isinstance(address, tuple):
                    stray.append(repr(address))

        draining = Deferred.fromCoroutine(drain())


        async def stop_draining() -> None:
            await mc.close()
            await draining

        self.addCleanup(lambda: Deferred.fromCoroutine(stop_draining()))
        counter = {"n": 0}
        base_rss = psutil.Process().memory_info().rss
        peak = {"rss": base_rss}

        async def still_served() -> None:
            # The good peer is served both ways; buffers stay bounded.
            n = counter["n"]
            counter["n"] += 1
            await good.send(n)
            await eventually(lambda: bool(from_good) and from_good[-1] == n, timeout=10)
            self.assertEqual(await mc.send(["pong", n], to=[good_address]), 1)
            self.assertEqual(await good.recv(timeout=10), ["pong", n])
            # A broadcast to everyone, hostile peers included.
            self.assertGreaterEqual(await mc.send(["all", n], timeout=10), 1)
            self.assertEqual(await good.recv(timeout=10), ["all", n])
            for connection in mc._core.pool.connections:
                self.assertLessEqual(connection.decoder.buffered, MAX + 4)
            self.assertNotIn(good_address, bad_sources, "a DecodeError blamed the good peer")
            self.assertIn(good_address, mc.addresses, "the good peer was dropped")
            peak["rss"] = max(peak["rss"], psutil.Process().memory_info().rss)

        async def hostile_gone(address: Tuple[str, int]) -> None:
            await eventually(lambda: address not in mc.addresses, timeout=10)

        def on_reactor(f: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> Any:
            return blockingCallFromThread(
                reactor, lambda: Deferred.fromCoroutine(f(*args))
            )

        @settings(
            max_examples=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
        )
        @given(hostile_streams())
        def feed(stream: Tuple[List[bytes], bool]) -> None:
            chunks, reset = stream
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            try:
                address = sock.getsockname()[:2]
                for chunk in chunks:
                    try:
                        sock.sendall(chunk)
                    except OSError:
                        break  # the receiver already closed this connection
                on_reactor(still_served)
            finally:
                if reset:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            on_reactor(hostile_gone, address)
            on_reactor(still_served)

        await deferToThread(feed)
        self.assertEqual(from_good, list(range(counter["n"])))
        self.assertEqual(stray, [])
        self.assertEqual(mc.addresses, [good_address])
        self.assertNotIn(good_address, lost)
        growth = peak["rss"] - base_rss
        self.assertLess(growth, 32 * MiB, f"RSS grew by {growth / MiB:.1f} MiB")
        await sleep(0)
