"""
Every exception tsyncp_tx raises, in one place.
"""

from ._errors import (
    ChannelClosed,
    ConnectError,
    ConnectionClosed,
    DecodeError,
    EncodeError,
    FrameTooLarge,
    FramingError,
    NotWithdrawn,
    SendQueueFull,
    TimeoutError,
    TsyncpError,
)

__all__ = [
    "ChannelClosed",
    "ConnectError",
    "ConnectionClosed",
    "DecodeError",
    "EncodeError",
    "FrameTooLarge",
    "FramingError",
    "NotWithdrawn",
    "SendQueueFull",
    "TimeoutError",
    "TsyncpError",
]
