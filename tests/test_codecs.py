"""
Tests for L{tsyncp_tx.codecs}: the payload formats, their interop with the
Rust crate's codecs, their errors, and a user-defined codec used end to end.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import math
import struct
import uuid
from typing import Any, List, Tuple

from google.protobuf import struct_pb2, wrappers_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from tsyncp_tx.channel import channel_on, channel_to
from tsyncp_tx.codecs import (
    BarrierCodec,
    CborCodec,
    DecodeError,
    EmptyCodec,
    EncodeError,
    ICodec,
    JsonCodec,
    ProtobufCodec,
    RawCodec,
)
from tsyncp_tx.framing import FrameDecoder

from ._util import LOOPBACK, as_deferred
from .test_framing import VECTORS

_SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: Floats whose spelling differs between JSON writers (exponent forms,
#: the fixed/scientific switch points, the extremes).
TRICKY_FLOATS = [
    1e16, 1e-5, 0.1, 1e15, 1e-4, 1e-7, 1.5e-7, 1e22, 1.2345e20, 123456.789,
    -0.0, 0.0, 5e-324, 2.2250738585072014e-308, 1.7976931348623157e308,
    9007199254740993.0, 1 / 3, -2.5,
]

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),  # unbounded: ints beyond 64 bits included
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(TRICKY_FLOATS),
    st.text(),  # all of Unicode but lone surrogates: control chars, U+2028, emoji
)

#: Any JSON document (as Python data).
json_data = st.recursive(
    _scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.text(max_size=8), children, max_size=6),
    ),
    max_leaves=25,
)

#: JSON data every JSON implementation round-trips exactly: integers within
#: 64 bits (what serde_json and orjson carry as integers).
json_data_64 = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**63), max_value=2**64 - 1),
        st.floats(allow_nan=False, allow_infinity=False),
        st.sampled_from(TRICKY_FLOATS),
        st.text(),
    ),
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.text(max_size=8), children, max_size=6),
    ),
    max_leaves=25,
)

#: JSON data without floats: its compact spelling is not in doubt.
json_data_no_floats = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**64 - 1), st.text()),
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.text(max_size=8), children, max_size=6),
    ),
    max_leaves=25,
)


def sort_keys(value: Any) -> Any:
    """
    Sort object keys recursively, as serde_json's C{Value} does.

    @param value: JSON data.
    @return: The same data with every object's keys in sorted order.
    """
    if isinstance(value, dict):
        return {k: sort_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [sort_keys(v) for v in value]
    return value


class InterfaceTests(SynchronousTestCase):
    """
    Every bundled codec provides L{ICodec}.
    """

    def test_verify(self) -> None:
        """
        C{verifyObject} passes for each codec and each has a string name.
        """
        for codec in [
            JsonCodec(),
            JsonCodec(use_orjson=False),
            JsonCodec(use_orjson=True),
            CborCodec(),
            ProtobufCodec(wrappers_pb2.Int64Value),
            RawCodec(),
            BarrierCodec(),
        ]:
            self.assertTrue(verifyObject(ICodec, codec), codec)
            self.assertIsInstance(codec.name, str)
            self.assertTrue(codec.name)

    def test_empty_codec_alias(self) -> None:
        """
        C{EmptyCodec} (the Rust crate's name) is C{BarrierCodec}.
        """
        self.assertIs(EmptyCodec, BarrierCodec)


class JsonCodecTests(SynchronousTestCase):
    """
    C{JsonCodec}: compact UTF-8 JSON as serde_json writes it.
    """

    def setUp(self) -> None:
        self.codecs = [JsonCodec(use_orjson=True), JsonCodec(use_orjson=False)]

    def test_compact(self) -> None:
        """
        No spaces after separators; non-ASCII characters are not escaped;
        quotes and backslashes are; control characters use lowercase
        C{\\u00XX} (or the short escapes).
        """
        item = {"a": [1, 2, {"b": None}], "s": "h\u00e9\"llo\\ \u2603 \U0001f600", "c": "\x01\n\t\x1f"}
        expected = (
            '{"a":[1,2,{"b":null}],"s":"h\u00e9\\"llo\\\\ \u2603 \U0001f600",'
            '"c":"\\u0001\\n\\t\\u001f"}'
        ).encode("utf-8")
        for codec in self.codecs:
            self.assertEqual(codec.encode(item), expected, codec)

    def test_captured_rust_frames(self) -> None:
        """
        Every captured Rust frame decodes to its original item; encoding the
        item (keys sorted, as serde_json's C{Value} holds them) gives the
        captured payload byte for byte.
        """
        capture = VECTORS["json_frames_from_rust_sender"]
        stream = b"".join(bytes.fromhex(h) for h in capture["frames_hex"])
        payloads = FrameDecoder().feed(stream)
        items = [json.loads(line) for line in capture["items_json_lines"]]
        self.assertEqual(len(payloads), len(items))
        for codec in self.codecs:
            self.assertEqual([codec.decode(p) for p in payloads], items, codec)
            self.assertEqual([codec.encode(sort_keys(i)) for i in items], payloads, codec)

    def test_nan_and_infinity_refused(self) -> None:
        """
        NaN and the infinities, anywhere in the item, raise C{EncodeError}
        (JSON has no spelling for them; orjson would write C{null}).
        """
        for bad in [math.nan, math.inf, -math.inf, [1, math.nan], {"a": {"b": math.inf}}, (math.nan,)]:
            for codec in self.codecs:
                e = self.assertRaises(EncodeError, codec.encode, bad)
                self.assertEqual(e.codec, "json")

    def test_not_serialisable(self) -> None:
        """
        An object JSON cannot express raises C{EncodeError} naming the
        codec, the reason and an excerpt of the item.
        """
        for codec in self.codecs:
            e = self.assertRaises(EncodeError, codec.encode, {"x": object()})
            text = str(e)
            self.assertIn("json", text)
            self.assertIn("not JSON serializable", text)
            self.assertIn("{'x': <object object", text)

    def test_non_json_types_do_not_depend_on_orjson(self) -> None:
        """
        Types outside JSON's data model (datetime, UUID, Enum, dataclass) are
        treated the same whether orjson is used or not: a program must not
        encode an item on a machine with orjson installed and fail with
        C{EncodeError} on one without it.
        """

        class Colour(enum.Enum):
            RED = "red"

        @dataclasses.dataclass
        class Point:
            x: int

        self.assert_same_outcomes(
            [datetime.datetime(2020, 1, 1), uuid.UUID(int=1), Colour.RED, Point(1)]
        )

    def assert_same_outcomes(self, items: List[Any]) -> None:
        """
        Each item encodes to the same bytes, or fails with L{EncodeError},
        with and without orjson.
        """
        for item in items:
            outcomes: List[Any] = []
            for codec in self.codecs:
                try:
                    outcomes.append(codec.encode(item))
                except EncodeError:
                    outcomes.append(EncodeError)
            self.assertEqual(outcomes[0], outcomes[1], f"{item!r}: orjson vs stdlib")

    def test_keys_not_str_do_not_depend_on_orjson(self) -> None:
        """
        Object keys that are not exactly C{str} (integers, which the stdlib
        writes as strings; a C{str} subclass; a tuple, which it refuses)
        give the same bytes or the same refusal with and without orjson.
        """

        class Name(str):
            pass

        self.assert_same_outcomes([{1: "a"}, {Name("k"): 1}, {"a": {2.5: True}}, {(1, 2): 3}])
        self.assertEqual(self.codecs[0].encode({1: "a"}), b'{"1":"a"}')

    def test_big_int_roundtrip(self) -> None:
        """
        Integers beyond 64 bits, which the encoder writes exactly, decode
        back to the same integer (not to a rounded float) with and without
        orjson.
        """
        values: List[Any] = [
            2**64, -(2**63) - 1, 10**30, {"a": [1, 2**64]}, [1.5, {"b": 10**20}],
        ]
        for value in values:
            for codec in self.codecs:
                payload = codec.encode(value)
                if type(value) is int:
                    self.assertEqual(payload, str(value).encode("ascii"))
                decoded = codec.decode(payload)
                label = "orjson" if codec is self.codecs[0] else "stdlib"
                # repr tells 10**20 from 1e+20.
                self.assertEqual(repr(decoded), repr(value), f"{label}: {value} decoded as {decoded!r}")

    def test_float_spelling_matches_serde_json(self) -> None:
        """
        In the range where Python and serde_json spell floats alike
        (1e-4 <= |x| < 1e16, and exponent notation from 1e16 up), both
        paths write serde_json's bytes.
        """
        cases = {
            0.1: ["0.1"],
            2.5: ["2.5"],
            1.0: ["1.0"],
            -0.0: ["-0.0"],
            123456.789: ["123456.789"],
            1e15: ["1000000000000000.0"],
            1e-4: ["0.0001"],
            1e16: ["1e16", "1e+16"],
            1.2345e20: ["1.2345e20", "1.2345e+20"],
        }
        wrong = []
        for value, spellings in cases.items():
            for label, codec in zip(("orjson", "stdlib"), self.codecs):
                written = codec.encode(value).decode("ascii")
                if written not in spellings:
                    wrong.append(f"{label}: {value!r} -> {written} (serde_json: {spellings[0]})")
        self.assertFalse(wrong, "\n".join(wrong))

    def test_small_floats_same_bytes_on_both_paths(self) -> None:
        """
        Below 1e-4 Python writes C{1e-05} where serde_json writes
        C{0.00001}: the values are equal and each side parses the other's
        spelling.  Both of our paths write the standard library's bytes, so
        installing orjson never changes what goes on the wire.
        """
        for value in (1e-5, 1.5e-5, 1e-7, 1.5e-7, 5e-324, -3e-9):
            written = [codec.encode(value) for codec in self.codecs]
            self.assertEqual(written[0], written[1], value)
            self.assertEqual(written[0], json.dumps(value).encode("ascii"))
            serde = {1e-5: b"0.00001", 1.5e-5: b"0.000015"}.get(value)
            for codec in self.codecs:
                self.assertEqual(codec.decode(written[0]), value)
                if serde is not None:
                    self.assertEqual(codec.decode(serde), value)

    def test_decode_errors(self) -> None:
        """
        Invalid JSON and invalid UTF-8 raise C{DecodeError} naming the codec,
        the reason and the start of the payload.
        """
        for payload in [b'{"a": ', b"\xff\xfe", b"", b"[1,]", b'"abc']:
            for codec in self.codecs:
                e = self.assertRaises(DecodeError, codec.decode, payload)
                self.assertEqual(e.codec, "json")
                self.assertEqual(e.payload, payload)
                self.assertIn("json", str(e))
                self.assertIn(repr(payload), str(e))
                self.assertIn(e.reason, str(e))
                self.assertTrue(e.reason)

    def test_long_payload_excerpt(self) -> None:
        """
        The excerpt of a long payload is short: the whole payload is not
        copied into the message.
        """
        payload = b"[" + b"1," * 10000
        e = self.assertRaises(DecodeError, JsonCodec().decode, payload)
        self.assertLess(len(str(e)), 400)
        self.assertIn(repr(payload[:16])[:-1], str(e))
        self.assertIn(str(len(payload)), str(e))

    def test_decode_error_with_address(self) -> None:
        """
        A C{DecodeError} carrying an address names it.
        """
        e = DecodeError("json", "bad", b"xyz", ("127.0.0.1", 4242))
        self.assertIn("127.0.0.1:4242", str(e))
        self.assertEqual(e.address, ("127.0.0.1", 4242))

    @_SETTINGS
    @given(data=json_data)
    def test_same_bytes_with_and_without_orjson(self, data: Any) -> None:
        """
        For any JSON data the orjson and the stdlib paths write the same
        bytes, and those bytes parse back to the data.
        """
        with_orjson, without = (codec.encode(data) for codec in self.codecs)
        self.assertEqual(with_orjson, without)
        self.assertEqual(json.loads(without), data)

    @_SETTINGS
    @given(data=json_data_64)
    def test_roundtrip(self, data: Any) -> None:
        """
        Any JSON data within 64-bit integers decodes back to itself on both
        paths, and each path reads what the other wrote.
        """
        a, b = self.codecs
        self.assertEqual(a.decode(b.encode(data)), data)
        self.assertEqual(b.decode(a.encode(data)), data)

    @_SETTINGS
    @given(data=json_data_no_floats)
    def test_compact_property(self, data: Any) -> None:
        """
        Without floats, the bytes are exactly Python's compact,
        non-ASCII-preserving spelling (which is serde_json's).
        """
        expected = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        for codec in self.codecs:
            self.assertEqual(codec.encode(data), expected)


class CborCodecTests(SynchronousTestCase):
    """
    C{CborCodec}: RFC 8949 bytes through cbor2.
    """

    def test_rfc_8949_examples(self) -> None:
        """
        Items encode to the bytes of RFC 8949 appendix A.
        """
        codec = CborCodec()
        for item, hex_ in [
            (0, "00"), (10, "0a"), (100, "1864"), (1000000, "1a000f4240"), (-1, "20"),
            (True, "f5"), (None, "f6"), ("a", "6161"), ("\u00fc", "62c3bc"),
            (b"\x01\x02", "420102"), ([1, [2, 3]], "8201820203"),
            ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
        ]:
            self.assertEqual(codec.encode(item).hex(), hex_, repr(item))
            self.assertEqual(codec.decode(bytes.fromhex(hex_)), item)

    @_SETTINGS
    @given(data=json_data)
    def test_roundtrip(self, data: Any) -> None:
        """
        JSON-like data (big integers included) round-trips.
        """
        codec = CborCodec()
        self.assertEqual(codec.decode(codec.encode(data)), data)

    def test_encode_error(self) -> None:
        """
        An object cbor2 cannot encode raises C{EncodeError} naming C{cbor}.
        """
        e = self.assertRaises(EncodeError, CborCodec().encode, [object()])
        self.assertEqual(e.codec, "cbor")
        self.assertIn("cbor", str(e))
        self.assertIn("[<object object", str(e))

    def test_decode_errors(self) -> None:
        """
        Truncated or malformed payloads raise C{DecodeError}.
        """
        for payload in [b"", b"\x82\x01", b"\xff", b"\x1c"]:
            e = self.assertRaises(DecodeError, CborCodec().decode, payload)
            self.assertEqual(e.codec, "cbor")
            self.assertIn(repr(payload), str(e))
            self.assertTrue(e.reason)

    def test_trailing_bytes_refused(self) -> None:
        """
        A payload holding more than one item is refused, as its docstring
        says and as Rust's C{serde_cbor::from_slice} does (TrailingData),
        rather than silently dropping the rest.
        """
        e = self.assertRaises(DecodeError, CborCodec().decode, b"\x01\x02")
        self.assertEqual(e.codec, "cbor")


class ProtobufCodecTests(SynchronousTestCase):
    """
    C{ProtobufCodec}: a message's serialized bytes.
    """

    def test_known_bytes(self) -> None:
        """
        C{Int64Value(value=150)} is C{08 96 01}, the wire bytes prost writes
        for the same message.
        """
        codec = ProtobufCodec(wrappers_pb2.Int64Value)
        self.assertEqual(codec.encode(wrappers_pb2.Int64Value(value=150)), b"\x08\x96\x01")
        decoded = codec.decode(b"\x08\x96\x01")
        self.assertIsInstance(decoded, wrappers_pb2.Int64Value)
        self.assertEqual(decoded.value, 150)
        # The default message is the empty payload.
        self.assertEqual(codec.encode(wrappers_pb2.Int64Value()), b"")
        self.assertEqual(codec.decode(b"").value, 0)

    def test_struct_roundtrip(self) -> None:
        """
        A C{google.protobuf.Struct} round-trips.
        """
        codec = ProtobufCodec(struct_pb2.Struct)
        message = struct_pb2.Struct()
        message.update({"a": 1.5, "b": "x", "c": [True, None], "d": {"e": "\u00e9"}})
        decoded = codec.decode(codec.encode(message))
        self.assertEqual(decoded, message)
        self.assertEqual(decoded["d"]["e"], "\u00e9")

    def test_wrong_type(self) -> None:
        """
        Encoding anything but an instance of the message class raises
        C{EncodeError} naming the expected and the given type.
        """
        codec = ProtobufCodec(struct_pb2.Struct)
        for bad in [{"a": 1}, wrappers_pb2.Int64Value(value=1), b"\x08\x01"]:
            e = self.assertRaises(EncodeError, codec.encode, bad)
            self.assertIn("protobuf", e.codec)
            self.assertIn("Struct", str(e))
            self.assertIn(type(bad).__name__, str(e))

    def test_bad_payload(self) -> None:
        """
        A payload that does not parse raises C{DecodeError} naming the codec
        and the message class.
        """
        codec = ProtobufCodec(wrappers_pb2.Int64Value)
        for payload in [b"\xff\xff", b"\x08", b"\x0a\x05ab"]:
            e = self.assertRaises(DecodeError, codec.decode, payload)
            self.assertIn("Int64Value", str(e))
            self.assertIn("protobuf", str(e))
            self.assertIn(repr(payload), str(e))


class RawCodecTests(SynchronousTestCase):
    """
    C{RawCodec}: bytes in, bytes out.
    """

    def test_no_copy(self) -> None:
        """
        C{bytes} pass through both ways as the very same object.
        """
        codec = RawCodec()
        data = b"x" * 100000
        self.assertIs(codec.encode(data), data)
        self.assertIs(codec.decode(data), data)
        empty = b""
        self.assertIs(codec.encode(empty), empty)

    def test_other_buffers(self) -> None:
        """
        C{bytearray} and C{memoryview} are accepted and become C{bytes}.
        """
        codec = RawCodec()
        for buffer in [bytearray(b"abc"), memoryview(b"abc")]:
            out = codec.encode(buffer)
            self.assertIs(type(out), bytes)
            self.assertEqual(out, b"abc")

    def test_not_bytes(self) -> None:
        """
        A C{str} (or anything not bytes-like) raises C{EncodeError}.
        """
        for bad in ["abc", 1, None, [1]]:
            e = self.assertRaises(EncodeError, RawCodec().encode, bad)
            self.assertEqual(e.codec, "raw")
            self.assertIn(type(bad).__name__, str(e))


class BarrierCodecTests(SynchronousTestCase):
    """
    C{BarrierCodec}: the single byte 0x00.
    """

    def test_encode(self) -> None:
        """
        Every item encodes to C{b"\\x00"}, framed as the captured release
        frame C{01 00}.
        """
        from tsyncp_tx.framing import encode_frame

        codec = BarrierCodec()
        for item in [None, 1, "anything"]:
            self.assertEqual(codec.encode(item), b"\x00")
        self.assertEqual(codec.encode(), b"\x00")
        self.assertEqual(
            encode_frame(codec.encode()), bytes.fromhex(VECTORS["barrier_release"]["frame_hex"])
        )

    def test_decode(self) -> None:
        """
        C{b"\\x00"} decodes to C{None}; anything else raises C{DecodeError}.
        """
        codec = BarrierCodec()
        self.assertIsNone(codec.decode(b"\x00"))  # type: ignore[func-returns-value]
        for bad in [b"", b"\x01", b"\x00\x00"]:
            e = self.assertRaises(DecodeError, codec.decode, bad)
            self.assertEqual(e.codec, "barrier")
            self.assertIn("0x00", str(e))
            self.assertIn(repr(bad), str(e))


class ErrorMessageTests(SynchronousTestCase):
    """
    C{EncodeError}/C{DecodeError} messages.
    """

    def test_encode_error_parts(self) -> None:
        """
        C{str()} names the codec, the reason and an excerpt of the item.
        """
        e = EncodeError("mycodec", "too round", {"shape": "circle"})
        text = str(e)
        self.assertIn("mycodec", text)
        self.assertIn("too round", text)
        self.assertIn("{'shape': 'circle'}", text)

    def test_encode_error_long_item(self) -> None:
        """
        A huge item is shown as a short excerpt.
        """
        e = EncodeError("c", "r", list(range(100000)))
        self.assertLess(len(str(e)), 200)
        self.assertIn("[0, 1, 2", str(e))

    def test_decode_error_parts(self) -> None:
        """
        C{str()} names the codec, the reason and the payload's start and
        length.
        """
        payload = b"\x01\x02" + b"z" * 100
        e = DecodeError("mycodec", "no good", payload)
        text = str(e)
        self.assertIn("mycodec", text)
        self.assertIn("no good", text)
        self.assertIn("b'\\x01\\x02zz", text)
        self.assertIn("102 bytes", text)


@implementer(ICodec)
class PointCodec:
    """
    A user-defined codec providing only L{ICodec} (no base class): a point
    C{(x, y)} is two big-endian doubles.
    """

    name = "point"

    def encode(self, obj: Any) -> bytes:
        """
        @param obj: A pair of numbers.
        @return: 16 bytes.
        """
        x, y = obj
        return struct.pack(">dd", x, y)

    def decode(self, payload: bytes) -> Tuple[float, float]:
        """
        @param payload: 16 bytes.
        @return: The point.
        @raise DecodeError: If the payload is not 16 bytes long.
        """
        if len(payload) != 16:
            raise DecodeError(self.name, f"expected 16 bytes, got {len(payload)}", payload)
        x, y = struct.unpack(">dd", payload)
        return (x, y)


class CustomCodecTests(TestCase):
    """
    A codec written by a user works end to end over a real connection.
    """

    def test_verify(self) -> None:
        """
        The custom codec provides L{ICodec}.
        """
        self.assertTrue(verifyObject(ICodec, PointCodec()))

    @as_deferred
    async def test_end_to_end(self) -> None:
        """
        Points cross a loopback channel both ways encoded by the custom
        codec; the wire carries exactly its bytes; its own encode failure
        becomes C{EncodeError} naming it; a payload it refuses fails that
        C{recv()} with C{DecodeError} carrying the peer's address, and the
        next item still arrives.
        """
        codec = PointCodec()
        server = await channel_on(LOOPBACK, accept=0, codec=codec)
        self.addCleanup(server.close)
        client = await channel_to(server.local_address, codec=codec)
        self.addCleanup(client.close)
        await server.accept(1, timeout=10)

        await client.send((1.5, -2.0))
        self.assertEqual(await server.recv(timeout=10), (1.5, -2.0))
        await server.send((3.0, 4.25))
        self.assertEqual(await client.recv(timeout=10), (3.0, 4.25))

        await client.send((0.5, 0.25))
        self.assertEqual(await server.recv(raw=True, timeout=10), struct.pack(">dd", 0.5, 0.25))

        failure = await _failure_of(client.send("not a point"))
        self.assertIsInstance(failure, EncodeError)
        self.assertEqual(failure.codec, "point")

        await client.send(b"short", raw=True)
        await client.send((7.0, 8.0))
        error = await _failure_of(server.recv(timeout=10))
        self.assertIsInstance(error, DecodeError)
        self.assertEqual(error.codec, "point")
        self.assertEqual(error.payload, b"short")
        self.assertEqual(error.address, client.local_address)
        self.assertIn("expected 16 bytes", str(error))
        self.assertEqual(await server.recv(timeout=10), (7.0, 8.0))


async def _failure_of(d: Any) -> Any:
    """
    Await C{d} and return the exception it failed with.

    @param d: A Deferred expected to fail.
    @return: The exception.
    @raise AssertionError: If it succeeded.
    """
    try:
        result = await d
    except Exception as e:
        return e
    raise AssertionError(f"expected a failure, got {result!r}")


class OrjsonMemoryTests(SynchronousTestCase):
    """
    orjson returns its output in the buffer it grew while writing, many
    times larger than the output; what the codec returns must not carry
    that slack into queues and transport buffers.
    """

    def test_large_output_has_its_own_size(self) -> None:
        """
        A large item encoded with orjson takes about its own size in
        memory, not orjson's buffer (about 13 times as much).
        """
        import tracemalloc

        codec = JsonCodec(use_orjson=True)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            payload = codec.encode({"p": "x" * 100_000})
            held = tracemalloc.get_traced_memory()[0] - before
        finally:
            tracemalloc.stop()
        self.assertEqual(json.loads(payload), {"p": "x" * 100_000})
        self.assertLess(held, 2 * len(payload))

