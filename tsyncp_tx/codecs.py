"""
Codecs turn items into frame payloads and back.

Any object providing L{ICodec} can be passed as C{codec=} to a channel
constructor; see C{docs/codecs.md}.
"""

from ._codecs import (
    BarrierCodec,
    CborCodec,
    ICodec,
    JsonCodec,
    ProtobufCodec,
    RawCodec,
)
from ._errors import DecodeError, EncodeError

#: The Rust crate's name for the barrier's codec.
EmptyCodec = BarrierCodec

__all__ = [
    "BarrierCodec",
    "CborCodec",
    "DecodeError",
    "EmptyCodec",
    "EncodeError",
    "ICodec",
    "JsonCodec",
    "ProtobufCodec",
    "RawCodec",
]
