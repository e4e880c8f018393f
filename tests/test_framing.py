"""
Tests for L{tsyncp_tx.framing}: byte-exact with the wire vectors captured
from Rust tsyncp, and property tests of the incremental decoder.

No reactor is involved: the framing layer is sans-IO.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any, Dict, List

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from tsyncp_tx.codecs import JsonCodec
from tsyncp_tx.framing import (
    MAX_FRAME_LENGTH,
    FrameDecoder,
    FrameTooLarge,
    FramingError,
    encode_frame,
    encode_frames,
    encode_header,
)

from ._util import ROOT

#: The copy of the shared vectors that travels with the checkout.
VECTORS_COPY = os.path.join(ROOT, "tests", "vectors.json")
#: The shared original, present next to the checkout on the development
#: machine but not on a clean CI clone.
VECTORS_SHARED = os.path.join(ROOT, "..", "shared", "wire", "vectors.json")


def load_vectors() -> Dict[str, Any]:
    """
    Load the wire vectors shipped with the tests.

    @return: The parsed C{vectors.json}.
    """
    with open(VECTORS_COPY, "rb") as f:
        return json.load(f)  # type: ignore[no-any-return]


VECTORS = load_vectors()

# Modest example counts keep this module at a few seconds.
_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def feed_in_chunks(decoder: FrameDecoder, data: bytes, sizes: List[int]) -> List[bytes]:
    """
    Feed C{data} to C{decoder} in chunks of the given sizes (cycled), and
    collect every payload.

    @param decoder: The decoder.
    @param data: The stream.
    @param sizes: Positive chunk sizes, used in turn.
    @return: Every payload the decoder produced.
    """
    out: List[bytes] = []
    pos = 0
    i = 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        out.extend(decoder.feed(data[pos : pos + size]))
        pos += size
        i += 1
    return out


class VectorFileTests(SynchronousTestCase):
    """
    The copy of the vectors in C{tests/} is the shared one.
    """

    def test_copy_matches_shared(self) -> None:
        """
        When C{../shared/wire/vectors.json} exists, C{tests/vectors.json}
        holds the same content.
        """
        if not os.path.exists(VECTORS_SHARED):
            raise self.skipTest("../shared/wire/vectors.json is not present (clean clone)")
        with open(VECTORS_SHARED, "rb") as f:
            shared = json.load(f)
        self.assertEqual(load_vectors(), shared)

    def test_copy_is_complete(self) -> None:
        """
        The copy holds every section these tests rely on, so a truncated
        copy cannot make the vector tests pass vacuously.
        """
        for key in (
            "headers",
            "non_minimal_headers_accepted_by_decoder",
            "json_frames_from_rust_sender",
            "barrier_release",
            "max_frame_length_default",
        ):
            self.assertIn(key, VECTORS)
        self.assertGreaterEqual(len(VECTORS["headers"]), 13)
        self.assertEqual(len(VECTORS["non_minimal_headers_accepted_by_decoder"]), 3)
        self.assertEqual(len(VECTORS["json_frames_from_rust_sender"]["frames_hex"]), 4)


class HeaderVectorTests(SynchronousTestCase):
    """
    Headers, byte for byte, against every vector.
    """

    def test_default_max_frame_length(self) -> None:
        """
        C{MAX_FRAME_LENGTH} is the Rust default, 8 MiB.
        """
        self.assertEqual(MAX_FRAME_LENGTH, VECTORS["max_frame_length_default"])
        self.assertEqual(MAX_FRAME_LENGTH, 8388608)
        self.assertEqual(FrameDecoder().max_frame_length, MAX_FRAME_LENGTH)

    def test_encode_header_vectors(self) -> None:
        """
        C{encode_header} writes exactly the vector's header for each length
        (lengths beyond the default maximum are allowed explicitly).
        """
        for vector in VECTORS["headers"]:
            length = vector["payload_length"]
            expected = bytes.fromhex(vector["header_hex"])
            limit = max(MAX_FRAME_LENGTH, length)
            self.assertEqual(
                encode_header(length, limit), expected, f"payload_length={length}"
            )

    def test_decode_header_vectors(self) -> None:
        """
        The decoder reads each vector's header followed by a payload of
        the announced length as exactly one frame of that length.
        """
        for vector in VECTORS["headers"]:
            length = vector["payload_length"]
            if length > 8 * 1024 * 1024:
                continue  # 512 MiB payloads are not built; see the next test
            header = bytes.fromhex(vector["header_hex"])
            payload = bytes([length % 251]) * length
            decoder = FrameDecoder(max(MAX_FRAME_LENGTH, length))
            frames = decoder.feed(header + payload)
            self.assertEqual(len(frames), 1, f"payload_length={length}")
            self.assertEqual(len(frames[0]), length)
            self.assertEqual(frames[0], payload)
            self.assertEqual(decoder.buffered, 0)

    def test_decode_largest_header(self) -> None:
        """
        The largest header (C{ff ff ff ff}, 536870911 bytes) is parsed to that
        length: a decoder with a large enough limit waits for the payload; the
        default one refuses it naming that length.
        """
        [vector] = [v for v in VECTORS["headers"] if v["header_hex"] == "ffffffff"]
        header = bytes.fromhex(vector["header_hex"])
        waiting = FrameDecoder(vector["payload_length"])
        self.assertEqual(waiting.feed(header + b"abc"), [])
        self.assertEqual(waiting.buffered, 7)
        refusing = FrameDecoder()
        e = self.assertRaises(FrameTooLarge, refusing.feed, header)
        self.assertEqual(e.length, vector["payload_length"])
        self.assertEqual(e.limit, MAX_FRAME_LENGTH)

    def test_encode_frame_vectors(self) -> None:
        """
        C{encode_frame} is header followed by payload for every vector
        length up to the default maximum.
        """
        for vector in VECTORS["headers"]:
            length = vector["payload_length"]
            if length > MAX_FRAME_LENGTH:
                continue
            payload = b"\x5a" * length
            frame = encode_frame(payload)
            header = bytes.fromhex(vector["header_hex"])
            self.assertEqual(frame[: len(header)], header, f"payload_length={length}")
            self.assertEqual(len(frame), len(header) + length)
            self.assertEqual(frame[len(header) :], payload)

    def test_shortest_header_boundaries(self) -> None:
        """
        The header grows by one byte exactly at 128, 16384 and 2097152.
        """
        for length, size in [
            (0, 1), (127, 1), (128, 2), (16383, 2), (16384, 3),
            (2097151, 3), (2097152, 4), (MAX_FRAME_LENGTH, 4),
        ]:
            self.assertEqual(len(encode_header(length)), size, f"length={length}")

    def test_negative_length(self) -> None:
        """
        A negative length is a programming error: C{ValueError}.
        """
        self.assertRaises(ValueError, encode_header, -1)

    def test_non_minimal_headers(self) -> None:
        """
        Longer-than-needed headers from the vectors decode to their payload,
        fed at once and byte by byte.
        """
        for vector in VECTORS["non_minimal_headers_accepted_by_decoder"]:
            frame = bytes.fromhex(vector["frame_hex"])
            payload = bytes.fromhex(vector["payload_hex"])
            self.assertEqual(FrameDecoder().feed(frame), [payload], vector["frame_hex"])
            self.assertEqual(
                feed_in_chunks(FrameDecoder(), frame, [1]), [payload], vector["frame_hex"]
            )
            # The encoder itself always writes the minimal form.
            self.assertNotEqual(encode_frame(payload), frame)
            self.assertEqual(encode_frame(payload), bytes([len(payload)]) + payload)

    def test_non_minimal_headers_concatenated(self) -> None:
        """
        All non-minimal frames in one stream decode in order.
        """
        vectors = VECTORS["non_minimal_headers_accepted_by_decoder"]
        stream = b"".join(bytes.fromhex(v["frame_hex"]) for v in vectors)
        expected = [bytes.fromhex(v["payload_hex"]) for v in vectors]
        self.assertEqual(FrameDecoder().feed(stream), expected)


class CapturedFrameTests(SynchronousTestCase):
    """
    Frames captured from a Rust tsyncp sender with the JSON codec.
    """

    def setUp(self) -> None:
        capture = VECTORS["json_frames_from_rust_sender"]
        self.frames = [bytes.fromhex(h) for h in capture["frames_hex"]]
        self.items = [json.loads(line) for line in capture["items_json_lines"]]
        self.stream = b"".join(self.frames)

    def test_decode_stream(self) -> None:
        """
        The captured stream splits into the captured frames' payloads, and
        C{JsonCodec} decodes each to the original item.
        """
        payloads = FrameDecoder().feed(self.stream)
        self.assertEqual(payloads, [f[1:] for f in self.frames])
        codec = JsonCodec()
        self.assertEqual([codec.decode(p) for p in payloads], self.items)

    def test_decode_stream_byte_by_byte(self) -> None:
        """
        The same, one byte at a time.
        """
        decoder = FrameDecoder()
        payloads = feed_in_chunks(decoder, self.stream, [1])
        self.assertEqual([JsonCodec().decode(p) for p in payloads], self.items)
        decoder.check_end()

    def test_reencode_frames(self) -> None:
        """
        Re-encoding each item (keys sorted, as serde_json's C{Value} does)
        with C{JsonCodec} and framing it gives the captured frames exactly.
        """
        codec = JsonCodec()

        def sort(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: sort(value[k]) for k in sorted(value)}
            if isinstance(value, list):
                return [sort(v) for v in value]
            return value

        payloads = [codec.encode(sort(item)) for item in self.items]
        self.assertEqual([encode_frame(p) for p in payloads], self.frames)
        self.assertEqual(encode_frames(payloads), self.stream)

    def test_barrier_release(self) -> None:
        """
        The barrier release frame is C{01 00}: payload C{b"\\x00"}.
        """
        frame = bytes.fromhex(VECTORS["barrier_release"]["frame_hex"])
        self.assertEqual(encode_frame(b"\x00"), frame)
        self.assertEqual(FrameDecoder().feed(frame), [b"\x00"])


class ErrorHierarchyTests(SynchronousTestCase):
    """
    The framing errors are tsyncp_tx errors like the others.
    """

    def test_framing_errors_are_tsyncp_errors(self) -> None:
        """
        C{except TsyncpError} catches C{FrameTooLarge} (an oversized
        C{send()}) and C{FramingError}, as the guide says of every error
        the library raises on its own account.
        """
        from tsyncp_tx.errors import FrameTooLarge, FramingError, TsyncpError

        self.assertTrue(issubclass(FramingError, TsyncpError))
        self.assertTrue(issubclass(FrameTooLarge, FramingError))
        try:
            encode_frame(b"x" * 11, max_frame_length=10)
        except TsyncpError as e:
            self.assertIsInstance(e, FrameTooLarge)
        else:
            self.fail("no error")


class EncoderTests(SynchronousTestCase):
    """
    C{encode_frame} and C{encode_frames}.
    """

    def test_encode_frames_equals_concatenation(self) -> None:
        """
        C{encode_frames} is the concatenation of C{encode_frame} results.
        """
        payloads = [b"", b"a", b"x" * 127, b"y" * 128, b"z" * 16384, b"w" * 70000]
        self.assertEqual(encode_frames(payloads), b"".join(encode_frame(p) for p in payloads))
        self.assertEqual(encode_frames([]), b"")
        self.assertEqual(encode_frames(iter(payloads)), encode_frames(payloads))

    def test_max_length_allowed(self) -> None:
        """
        A payload of exactly 8388608 bytes is encoded and decoded.
        """
        payload = b"\x01" * MAX_FRAME_LENGTH
        frame = encode_frame(payload)
        self.assertEqual(frame[:4], bytes.fromhex("e0800000"))
        self.assertEqual(len(frame), MAX_FRAME_LENGTH + 4)
        [decoded] = FrameDecoder().feed(frame)
        self.assertEqual(len(decoded), MAX_FRAME_LENGTH)
        self.assertEqual(len(encode_frames([payload])), MAX_FRAME_LENGTH + 4)

    def test_one_over_max_refused_by_encoder(self) -> None:
        """
        8388609 bytes are refused by every encoder function with
        C{FrameTooLarge} carrying the length and the limit.
        """
        payload = b"\x01" * (MAX_FRAME_LENGTH + 1)
        for call in (
            lambda: encode_header(len(payload)),
            lambda: encode_frame(payload),
            lambda: encode_frames([payload]),
        ):
            e = self.assertRaises(FrameTooLarge, call)
            self.assertIsInstance(e, FramingError)
            self.assertEqual(e.length, MAX_FRAME_LENGTH + 1)
            self.assertEqual(e.limit, MAX_FRAME_LENGTH)
            self.assertIn(str(MAX_FRAME_LENGTH + 1), str(e))
            self.assertIn(str(MAX_FRAME_LENGTH), str(e))

    def test_encode_frames_nothing_produced(self) -> None:
        """
        When one payload of a batch is too large, C{encode_frames} raises
        and produces nothing, even for the payloads before it (the caller
        never sees a partial stream).
        """
        result: List[bytes] = []

        def attempt() -> None:
            result.append(encode_frames([b"ok", b"x" * 11, b"later"], max_frame_length=10))

        e = self.assertRaises(FrameTooLarge, attempt)
        self.assertEqual((e.length, e.limit), (11, 10))
        self.assertEqual(result, [])

    def test_custom_limit(self) -> None:
        """
        A smaller C{max_frame_length} moves the boundary, also inside the
        range of cached small headers.
        """
        self.assertEqual(encode_frame(b"x" * 10, max_frame_length=10), b"\x0a" + b"x" * 10)
        e = self.assertRaises(FrameTooLarge, encode_frame, b"x" * 11, 10)
        self.assertEqual((e.length, e.limit), (11, 10))
        e = self.assertRaises(FrameTooLarge, encode_header, 200, 199)
        self.assertEqual((e.length, e.limit), (200, 199))

    def test_beyond_header_capacity(self) -> None:
        """
        No header expresses more than 29 bits: even with a higher limit the
        encoder refuses.
        """
        e = self.assertRaises(FrameTooLarge, encode_header, 1 << 29, 1 << 30)
        self.assertEqual(e.length, 1 << 29)


class DecoderTests(SynchronousTestCase):
    """
    C{FrameDecoder} behaviour beyond the vectors.
    """

    def test_one_over_max_refused_by_decoder(self) -> None:
        """
        A header announcing 8388609 bytes raises C{FrameTooLarge} with the
        length and the limit, before any payload byte arrives.
        """
        header = (0xE0000000 | (MAX_FRAME_LENGTH + 1)).to_bytes(4, "big")
        decoder = FrameDecoder()
        e = self.assertRaises(FrameTooLarge, decoder.feed, header)
        self.assertEqual(e.length, MAX_FRAME_LENGTH + 1)
        self.assertEqual(e.limit, MAX_FRAME_LENGTH)
        self.assertEqual(decoder.buffered, 0)

    def test_refusal_after_good_frames(self) -> None:
        """
        Good frames ahead of a bad header in the same chunk are returned
        (as Rust tsyncp delivers them before its error); the decoder is then
        failed, says why in C{failed}, and raises that error on every later
        call.
        """
        decoder = FrameDecoder(max_frame_length=4)
        self.assertIsNone(decoder.failed)
        self.assertEqual(decoder.feed(b"\x01a\x05hello"), [b"a"])
        e = decoder.failed
        assert isinstance(e, FrameTooLarge)
        self.assertEqual((e.length, e.limit), (5, 4))
        self.assertEqual(decoder.buffered, 0)
        again = self.assertRaises(FrameTooLarge, decoder.feed, b"\x01a")
        self.assertIs(again, e)

    def test_100_mib_announcement(self) -> None:
        """
        A 100 MiB announcement in any header form is refused at once.
        """
        length = 100 * 1024 * 1024
        header = (0xE0000000 | length).to_bytes(4, "big")
        e = self.assertRaises(FrameTooLarge, FrameDecoder().feed, header)
        self.assertEqual(e.length, length)

    def test_remainder_kept(self) -> None:
        """
        Bytes of an incomplete frame are kept for the next call.
        """
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(b"\x03ab"), [])
        self.assertEqual(decoder.buffered, 3)
        self.assertEqual(decoder.feed(b"c\x02"), [b"abc"])
        self.assertEqual(decoder.buffered, 1)
        self.assertEqual(decoder.feed(b"de\x00"), [b"de", b""])
        self.assertEqual(decoder.buffered, 0)

    def test_frame_across_reads_is_bytes(self) -> None:
        """
        A frame spread over several reads, ending inside a later read that
        also holds the next frames, comes out as C{bytes} (the decoder
        joins views of the reads), exactly its payload, and the frames
        after it follow; C{buffered} and C{needed} count the incomplete
        frame's header and payload throughout.
        """
        payload = bytes(range(256)) * 40  # 10,240 bytes: a 2-byte header
        stream = encode_frame(payload) + encode_frame(b"next") + encode_frame(b"x" * 300)[:5]
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(stream[:100]), [])
        self.assertEqual((decoder.buffered, decoder.needed), (100, 10242 - 100))
        self.assertEqual(decoder.feed(stream[100:5000]), [])
        self.assertEqual((decoder.buffered, decoder.needed), (5000, 10242 - 5000))
        frames = decoder.feed(stream[5000:])
        self.assertEqual(frames, [payload, b"next"])
        self.assertEqual([type(f) for f in frames], [bytes, bytes])
        self.assertEqual((decoder.buffered, decoder.needed), (5, 302 - 5))
        [last] = decoder.feed(b"x" * 297)
        self.assertIs(type(last), bytes)
        self.assertEqual(last, b"x" * 300)

    def test_reused_buffer(self) -> None:
        """
        A caller may feed a C{bytearray} and reuse it at once (clear it,
        overwrite it): the decoder keeps nothing that points into it, and
        every payload is C{bytes}.
        """
        payloads = [b"a" * 300, b"", b"b" * 5, bytes(range(256)) * 20]
        stream = b"".join(encode_frame(p) for p in payloads)
        decoder = FrameDecoder()
        buffer = bytearray()
        received = []
        for start in range(0, len(stream), 7):
            buffer[:] = stream[start : start + 7]
            received.extend(decoder.feed(buffer))
            buffer.clear()  # raises BufferError if the decoder holds a view
            buffer.extend(b"\xff" * 7)
        self.assertEqual(received, payloads)
        self.assertEqual({type(p) for p in received}, {bytes})

    def test_held_reads_bounded(self) -> None:
        """
        An incomplete frame whose start is a small part of its read keeps a
        copy of that start, not the read; one whose start is most of the
        read keeps the read itself (no copy), so the decoder never holds
        more than twice the incomplete frame's bytes.
        """
        read = encode_frame(b"a" * 60000) + encode_frame(b"b" * 100)[:50]
        before = sys.getrefcount(read)
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(read), [b"a" * 60000])
        self.assertEqual(sys.getrefcount(read), before)
        self.assertEqual(decoder.feed(b"b" * 52), [b"b" * 100])

        frame = encode_frame(b"c" * 100000)
        read = frame[:60000]
        before = sys.getrefcount(read)
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(read), [])
        self.assertEqual(sys.getrefcount(read), before + 1)
        self.assertEqual(decoder.feed(frame[60000:]), [b"c" * 100000])
        self.assertEqual(sys.getrefcount(read), before)

    def test_partial_multibyte_header(self) -> None:
        """
        A multi-byte header split across calls is reassembled.
        """
        frame = encode_frame(b"q" * 70000)
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(frame[:1]), [])
        self.assertEqual(decoder.feed(frame[1:2]), [])
        self.assertEqual(decoder.feed(frame[2:3]), [])
        self.assertEqual(decoder.feed(frame[3:]), [b"q" * 70000])

    def test_empty_feed(self) -> None:
        """
        Feeding nothing yields nothing and changes nothing.
        """
        decoder = FrameDecoder()
        self.assertEqual(decoder.feed(b""), [])
        decoder.feed(b"\x02a")
        self.assertEqual(decoder.feed(b""), [])
        self.assertEqual(decoder.buffered, 2)

    def test_truncated_frame_check_end(self) -> None:
        """
        A stream ending inside a frame is an error at C{check_end}; on a
        frame boundary it is fine.
        """
        capture = VECTORS["json_frames_from_rust_sender"]
        stream = b"".join(bytes.fromhex(h) for h in capture["frames_hex"])
        decoder = FrameDecoder()
        decoder.feed(stream)
        decoder.check_end()
        truncated = FrameDecoder()
        payloads = truncated.feed(stream[:-1])
        self.assertEqual(len(payloads), 3)
        e = self.assertRaises(FramingError, truncated.check_end)
        self.assertIn("2 bytes", str(e))
        header_only = FrameDecoder()
        header_only.feed(b"\xc0")
        self.assertRaises(FramingError, header_only.check_end)

    def test_negative_limit(self) -> None:
        """
        A negative C{max_frame_length} is refused.
        """
        self.assertRaises(ValueError, FrameDecoder, -1)

    def test_zero_limit(self) -> None:
        """
        With C{max_frame_length=0} only empty frames pass.
        """
        decoder = FrameDecoder(0)
        self.assertEqual(decoder.feed(b"\x00\x00"), [b"", b""])
        self.assertRaises(FrameTooLarge, decoder.feed, b"\x01x")

    def test_payloads_are_bytes(self) -> None:
        """
        Payloads come out as C{bytes}, whatever chunk boundaries were.
        """
        decoder = FrameDecoder()
        frames = feed_in_chunks(decoder, encode_frames([b"ab", b"cd" * 100]), [3, 7])
        self.assertEqual(frames, [b"ab", b"cd" * 100])
        for frame in frames:
            self.assertIs(type(frame), bytes)


payloads_strategy = st.lists(
    st.one_of(
        st.binary(max_size=140),
        # Lengths around the 1/2-byte header boundary and beyond.
        st.integers(min_value=120, max_value=20000).map(lambda n: b"\xab" * n),
    ),
    max_size=25,
)


class PropertyTests(SynchronousTestCase):
    """
    Hypothesis properties of the encoder/decoder pair.
    """

    @_SETTINGS
    @given(
        payloads=payloads_strategy,
        sizes=st.lists(st.integers(min_value=1, max_value=5000), min_size=1, max_size=20),
    )
    def test_roundtrip_any_chunking(self, payloads: List[bytes], sizes: List[int]) -> None:
        """
        Any list of payloads, encoded and fed back in arbitrary chunkings,
        yields exactly the same payloads and leaves nothing buffered.
        """
        stream = encode_frames(payloads)
        decoder = FrameDecoder()
        self.assertEqual(feed_in_chunks(decoder, stream, sizes), payloads)
        self.assertEqual(decoder.buffered, 0)
        decoder.check_end()

    @_SETTINGS
    @given(payloads=payloads_strategy)
    def test_roundtrip_byte_by_byte(self, payloads: List[bytes]) -> None:
        """
        Feeding one byte at a time also yields exactly the same payloads;
        per-frame C{encode_frame} and batch C{encode_frames} agree.
        """
        stream = b"".join(encode_frame(p) for p in payloads)
        self.assertEqual(stream, encode_frames(payloads))
        # Cap the byte-by-byte walk so one example stays cheap.
        stream = stream[:30000]
        expected = FrameDecoder().feed(stream)
        self.assertEqual(feed_in_chunks(FrameDecoder(), stream, [1]), expected)
        self.assertEqual(expected, payloads[: len(expected)])

    @_SETTINGS
    @given(
        garbage=st.binary(max_size=3000),
        limit=st.integers(min_value=0, max_value=300),
        sizes=st.lists(st.integers(min_value=1, max_value=400), min_size=1, max_size=10),
    )
    def test_garbage(self, garbage: bytes, limit: int, sizes: List[int]) -> None:
        """
        Random bytes never make the decoder raise anything but
        C{FramingError}, and it never buffers more than C{max_frame_length}
        + 4 bytes.
        """
        decoder = FrameDecoder(max_frame_length=limit)
        pos = 0
        i = 0
        while pos < len(garbage):
            chunk = garbage[pos : pos + sizes[i % len(sizes)]]
            pos += len(chunk)
            i += 1
            try:
                frames = decoder.feed(chunk)
            except FramingError:
                break
            for frame in frames:
                self.assertLessEqual(len(frame), limit)
            self.assertLessEqual(decoder.buffered, limit + 4)
        try:
            decoder.check_end()
        except FramingError:
            pass

    @_SETTINGS
    @given(length=st.integers(min_value=0, max_value=(1 << 29) - 1))
    def test_header_roundtrip(self, length: int) -> None:
        """
        Every expressible length encodes to the shortest header, and the
        decoder reads the length back.
        """
        header = encode_header(length, (1 << 29) - 1)
        expected_size = 1 if length < 1 << 7 else 2 if length < 1 << 14 else 3 if length < 1 << 21 else 4
        self.assertEqual(len(header), expected_size)
        decoder = FrameDecoder((1 << 29) - 1)
        self.assertEqual(decoder.feed(header), [] if length else [b""])
        self.assertEqual(decoder.buffered, len(header) if length else 0)
        small = FrameDecoder(max(0, length - 1))
        if length:
            e = self.assertRaises(FrameTooLarge, small.feed, header)
            self.assertEqual(e.length, length)
