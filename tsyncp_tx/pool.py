"""
The connection layer: framed connections and the pool of one channel.
"""

from ._pool import SLOW_RECEIVER_POLICIES, StreamPool
from ._protocol import DEFAULT_SEND_HIGH_WATER, FramedProtocol, IFrameSink

__all__ = [
    "DEFAULT_SEND_HIGH_WATER",
    "FramedProtocol",
    "IFrameSink",
    "SLOW_RECEIVER_POLICIES",
    "StreamPool",
]
