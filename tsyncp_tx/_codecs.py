"""
Codecs: items to payload bytes and back.
"""

from __future__ import annotations

import io
import json
from typing import Any, Callable, Optional, Type

from zope.interface import Attribute, Interface, implementer

from ._errors import DecodeError, EncodeError

_orjson: Any = None
try:  # orjson writes the same bytes as the stdlib path below, faster.
    import orjson as _orjson_module

    _orjson = _orjson_module
except ImportError:  # pragma: no cover - depends on the environment
    pass


class ICodec(Interface):
    """
    Turns items into payload bytes and payload bytes into items.

    A codec must be stateless across items: each payload is decoded on its
    own, and one instance may serve many channels at once.
    """

    name = Attribute("A short name for error messages and logs, e.g. C{'json'}.")

    def encode(obj: Any) -> bytes:
        """
        Encode one item.

        @param obj: The item.
        @return: The payload bytes.
        @raise EncodeError: If the item cannot be encoded.
        """

    def decode(payload: bytes) -> Any:
        """
        Decode one payload.

        @param payload: The payload bytes of one frame.
        @return: The item.
        @raise DecodeError: If the payload is not a valid encoding.
        """


_stdlib_encoder = json.JSONEncoder(
    ensure_ascii=False, separators=(",", ":"), allow_nan=False
).encode
_stdlib_decoder = json.JSONDecoder()

# orjson turns integers beyond 64 bits into floats when decoding; payloads
# whose item holds a float and that have a run of 19 digits take the exact
# stdlib path.  (Mapping every digit to "9" and searching for nineteen of
# them is several times cheaper than a regular expression.)
_DIGITS_TO_NINES = bytes.maketrans(b"0123456789", b"9999999999")
_LONG_DIGIT_RUN = b"9" * 19


def _orjson_safe(obj: Any) -> bool:
    """
    Whether orjson writes exactly the bytes the stdlib encoder writes for
    C{obj}: plain JSON types only (orjson also serialises dataclasses,
    datetimes, UUIDs... which the stdlib refuses) and finite floats spelled
    the same way (orjson writes 1e-05 as 0.00001).  Integers beyond 64 bits
    are not looked for: orjson refuses them with a C{TypeError}, and the
    encoder then takes the stdlib path.
    """
    kind = type(obj)
    if kind is dict:
        # Keys are not checked: orjson refuses any key that is not exactly
        # a str (TypeError), and the encoder then takes the stdlib path.
        values: Any = obj.values()
    elif kind is list or kind is tuple:
        values = obj
    elif kind is str or kind is int or kind is bool or obj is None:
        return True
    elif kind is float:
        return obj == 0.0 or 1e-4 <= abs(obj) < _INF  # type: ignore[no-any-return]
    else:
        return False
    for value in values:
        # Strings and integers, the commonest values, without a call.
        kind = type(value)
        if kind is str or kind is int:
            continue
        if not _orjson_safe(value):
            return False
    return True


def _has_float(obj: Any) -> bool:
    """
    Whether a decoded item holds a float anywhere: orjson decodes integers
    beyond 64 bits as floats, so only then can its result differ from the
    stdlib's.
    """
    kind = type(obj)
    if kind is dict:
        values: Any = obj.values()
    elif kind is list:
        values = obj
    else:
        return kind is float
    for value in values:
        kind = type(value)
        if kind is str or kind is int:
            continue
        if kind is float or _has_float(value):
            return True
    return False


_INF = float("inf")

# orjson output from this size up is copied to an allocation of its own size.
_COPY_FROM = 16 * 1024


@implementer(ICodec)
class JsonCodec:
    """
    Compact UTF-8 JSON, as Rust's C{serde_json} writes it: no spaces after
    separators, non-ASCII characters unescaped.

    Objects keep their key order (Rust peers decoding into a
    C{serde_json::Value} sort keys; decoding into a struct keeps its field
    order).  When U{orjson<https://pypi.org/project/orjson/>} is installed it
    does the work for every item it encodes byte for byte like the standard
    library (plain JSON types); anything else takes the standard library's
    path, so the bytes, and what can be sent at all, never depend on whether
    orjson is installed.

    NaN and infinities are refused, as JSON has no spelling for them.
    """

    name = "json"

    def __init__(self, use_orjson: Optional[bool] = None) -> None:
        """
        @param use_orjson: Force (C{True}) or forbid (C{False}) orjson; by
            default it is used when installed.
        @raise ImportError: If C{use_orjson} is true and orjson is missing.
        """
        if use_orjson and _orjson is None:
            raise ImportError("use_orjson=True but orjson is not installed")
        self._orjson = _orjson if use_orjson is not False else None

    def encode(self, obj: Any) -> bytes:
        """
        Encode one item as compact JSON.

        @param obj: A JSON-serialisable item.
        @return: Its UTF-8 JSON bytes.
        @raise EncodeError: If it is not serialisable (or holds NaN).
        """
        if self._orjson is not None and _orjson_safe(obj):
            try:
                payload: bytes = self._orjson.dumps(obj)
            except TypeError:
                pass  # a key that is not exactly a str: the stdlib decides
            else:
                # orjson returns its output in the buffer it grew while
                # writing, up to about 13 times larger (measured, orjson
                # 3.13); a large item waiting in a queue or transport
                # buffer would hold all of that.  Small ones are copied
                # when framed anyway.
                return payload if len(payload) < _COPY_FROM else bytes(memoryview(payload))
        try:
            return _stdlib_encoder(obj).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as e:
            raise EncodeError(self.name, str(e), obj) from e

    def decode(self, payload: bytes) -> Any:
        """
        Decode one JSON payload.

        @param payload: UTF-8 JSON bytes.
        @return: The item.
        @raise DecodeError: If the payload is not valid UTF-8 JSON.
        """
        if self._orjson is not None:
            try:
                item = self._orjson.loads(payload)
            except self._orjson.JSONDecodeError:
                pass  # let the stdlib produce its more precise message
            else:
                if not _has_float(item) or _LONG_DIGIT_RUN not in payload.translate(
                    _DIGITS_TO_NINES
                ):
                    return item
        try:
            return _stdlib_decoder.decode(bytes(payload).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise DecodeError(self.name, str(e), bytes(payload)) from e

    def __repr__(self) -> str:
        return "JsonCodec()"


@implementer(ICodec)
class CborCodec:
    """
    CBOR (RFC 8949) through U{cbor2<https://pypi.org/project/cbor2/>}: a
    payload is exactly one CBOR data item (Rust peers can use any CBOR
    serde codec, e.g. C{ciborium}, in a custom tsyncp codec).
    """

    name = "cbor"

    def __init__(self) -> None:
        import cbor2

        self._dumps = cbor2.dumps
        self._decoder = cbor2.CBORDecoder
        self._error = cbor2.CBORError

    def encode(self, obj: Any) -> bytes:
        """
        Encode one item as CBOR.

        @param obj: A CBOR-serialisable item.
        @return: Its CBOR bytes.
        @raise EncodeError: If it is not serialisable.
        """
        try:
            return self._dumps(obj)  # type: ignore[no-any-return]
        except (self._error, TypeError, ValueError, RecursionError) as e:
            raise EncodeError(self.name, str(e), obj) from e

    def decode(self, payload: bytes) -> Any:
        """
        Decode one CBOR payload.

        @param payload: CBOR bytes holding exactly one item.
        @return: The item.
        @raise DecodeError: If the payload is not one valid CBOR item.
        """
        stream = io.BytesIO(payload)
        try:
            item = self._decoder(stream).decode()
        except (self._error, TypeError, ValueError, RecursionError, EOFError) as e:
            raise DecodeError(self.name, str(e) or type(e).__name__, bytes(payload)) from e
        if stream.tell() != len(payload):
            raise DecodeError(
                self.name,
                f"{len(payload) - stream.tell()} bytes after the first item",
                bytes(payload),
            )
        return item

    def __repr__(self) -> str:
        return "CborCodec()"


@implementer(ICodec)
class ProtobufCodec:
    """
    Protocol Buffers: a payload is the serialized bytes of one message, as
    Rust tsyncp's C{prost} codec writes it.
    """

    name = "protobuf"

    def __init__(self, message_class: Type[Any]) -> None:
        """
        @param message_class: The generated message class that payloads
            decode into; C{encode} accepts only its instances.
        """
        self.message_class = message_class
        self.name = f"protobuf({message_class.__name__})"

    def encode(self, obj: Any) -> bytes:
        """
        Serialize one message.

        @param obj: An instance of the codec's message class.
        @return: The serialized message.
        @raise EncodeError: If C{obj} is not such a message or lacks
            required fields.
        """
        if not isinstance(obj, self.message_class):
            raise EncodeError(
                self.name,
                f"expected a {self.message_class.__name__} message, "
                f"got {type(obj).__name__}",
                obj,
            )
        try:
            return obj.SerializeToString()  # type: ignore[no-any-return]
        except Exception as e:  # protobuf's EncodeError is not exported stably
            raise EncodeError(self.name, str(e), obj) from e

    def decode(self, payload: bytes) -> Any:
        """
        Parse one message.

        @param payload: A serialized message.
        @return: A new instance of the codec's message class.
        @raise DecodeError: If the payload does not parse.
        """
        try:
            return self.message_class.FromString(bytes(payload))
        except Exception as e:  # google.protobuf.message.DecodeError and kin
            raise DecodeError(self.name, str(e) or type(e).__name__, bytes(payload)) from e

    def __repr__(self) -> str:
        return f"ProtobufCodec({self.message_class.__name__})"


@implementer(ICodec)
class RawCodec:
    """
    Bytes in, bytes out: the payload is the item.  C{bytes} are passed
    through without a copy; other buffers (C{bytearray}, C{memoryview}) are
    copied once into C{bytes}.
    """

    name = "raw"

    def encode(self, obj: Any) -> bytes:
        """
        Use a bytes-like item as the payload.

        @param obj: C{bytes} or another bytes-like object.
        @return: The payload.
        @raise EncodeError: If C{obj} is not bytes-like.
        """
        if type(obj) is bytes:
            return obj
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return bytes(obj)
        raise EncodeError(
            self.name, f"expected bytes, got {type(obj).__name__}", obj
        )

    def decode(self, payload: bytes) -> bytes:
        """
        Return the payload itself.

        @param payload: The payload.
        @return: The same bytes.
        """
        return payload

    def __repr__(self) -> str:
        return "RawCodec()"


_RELEASE = b"\x00"


@implementer(ICodec)
class BarrierCodec:
    """
    The barrier's empty codec: every item is the single byte C{0x00}, as Rust
    tsyncp's C{EmptyCodec} writes it; any other payload is refused.
    """

    name = "barrier"

    def encode(self, obj: Any = None) -> bytes:
        """
        Encode a release (or a waiter's announcement).

        @param obj: Ignored.
        @return: C{b"\\x00"}.
        """
        return _RELEASE

    def decode(self, payload: bytes) -> None:
        """
        Check a release payload.

        @param payload: The payload.
        @return: C{None}.
        @raise DecodeError: If the payload is not C{b"\\x00"}.
        """
        if payload != _RELEASE:
            raise DecodeError(self.name, "expected the single byte 0x00", bytes(payload))
        return None

    def __repr__(self) -> str:
        return "BarrierCodec()"


#: Codec names understood by the command line and the twistd plugin.
CODECS_BY_NAME: "dict[str, Callable[[], Any]]" = {
    "json": JsonCodec,
    "cbor": CborCodec,
    "raw": RawCodec,
}
