"""
The tsyncp frame format: length-prefixed frames with a 1-4 byte header.

This module is sans-IO: it turns payloads into bytes and bytes into payloads,
with no reactor and no transport.  See C{docs/wire-format.md} for the format.
"""

from ._framing import (
    MAX_FRAME_LENGTH,
    FrameDecoder,
    FrameTooLarge,
    FramingError,
    encode_frame,
    encode_frames,
    encode_header,
)

__all__ = [
    "MAX_FRAME_LENGTH",
    "FrameDecoder",
    "FrameTooLarge",
    "FramingError",
    "encode_frame",
    "encode_frames",
    "encode_header",
]
