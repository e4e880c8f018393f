"""
Sans-IO implementation of the tsyncp frame format.

A frame is a 1-4 byte big-endian header followed by the payload.  The leading
bits of the first header byte give the header's length::

    0xxxxxxx                              7-bit length
    10xxxxxx xxxxxxxx                     14-bit length
    110xxxxx xxxxxxxx xxxxxxxx            21-bit length
    111xxxxx xxxxxxxx xxxxxxxx xxxxxxxx   29-bit length

The encoder always writes the shortest header; the decoder accepts any valid
header, minimal or not.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Optional

MAX_FRAME_LENGTH = 8 * 1024 * 1024

#: The largest payload length any header can express (29 bits).
MAX_HEADER_LENGTH = (1 << 29) - 1


class TsyncpError(Exception):
    """
    Base class of the errors tsyncp_tx raises on its own account.

    (Defined here, in the module that imports nothing else of the
    package, because the frame errors below are among them.)
    """


class FramingError(TsyncpError):
    """
    The byte stream does not follow the frame format.

    A framing error is fatal for the connection it happened on: the stream
    cannot be resynchronised, so the connection is closed.
    """


class FrameTooLarge(FramingError):
    """
    A frame is longer than the configured maximum.

    @ivar length: The payload length that was announced (decoding) or asked
        for (encoding).
    @ivar limit: The maximum payload length in force.
    """

    def __init__(self, length: int, limit: int) -> None:
        """
        @param length: The offending payload length.
        @param limit: The maximum payload length in force.
        """
        super().__init__(length, limit)
        self.length = length
        self.limit = limit

    def __str__(self) -> str:
        return (
            f"frame of {self.length} bytes exceeds the maximum frame length "
            f"of {self.limit} bytes"
        )


def _build_header(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    if length < 0x4000:
        return (0x8000 | length).to_bytes(2, "big")
    if length < 0x200000:
        return (0xC00000 | length).to_bytes(3, "big")
    return (0xE0000000 | length).to_bytes(4, "big")


# Headers of small payloads are looked up, not built: most messages are small.
_HEADER_CACHE: List[bytes] = [_build_header(n) for n in range(0x4000)]
_CACHED = len(_HEADER_CACHE)


def encode_header(length: int, max_frame_length: int = MAX_FRAME_LENGTH) -> bytes:
    """
    Encode the shortest header announcing a payload of C{length} bytes.

    @param length: The payload length.
    @param max_frame_length: The largest payload length allowed.
    @return: The 1 to 4 header bytes.
    @raise FrameTooLarge: If C{length} exceeds C{max_frame_length} (or what a
        header can express).
    @raise ValueError: If C{length} is negative.
    """
    if length < _CACHED and length <= max_frame_length:
        if length < 0:
            raise ValueError(f"negative frame length: {length}")
        return _HEADER_CACHE[length]
    if length > max_frame_length or length > MAX_HEADER_LENGTH:
        raise FrameTooLarge(length, min(max_frame_length, MAX_HEADER_LENGTH))
    return _build_header(length)


def encode_frame(payload: bytes, max_frame_length: int = MAX_FRAME_LENGTH) -> bytes:
    """
    Encode one complete frame (header and payload) as one C{bytes} object.

    Writing a large payload to a transport is cheaper with
    C{transport.writeSequence([encode_header(len(payload)), payload])}, which
    does not copy the payload.

    @param payload: The payload bytes.
    @param max_frame_length: The largest payload length allowed.
    @return: The frame.
    @raise FrameTooLarge: If the payload is longer than C{max_frame_length};
        nothing is encoded.
    """
    return encode_header(len(payload), max_frame_length) + payload


def encode_frames(
    payloads: Iterable[bytes], max_frame_length: int = MAX_FRAME_LENGTH
) -> bytes:
    """
    Encode many frames into one C{bytes} object, ready for one C{write}.

    @param payloads: The payloads, in order.
    @param max_frame_length: The largest payload length allowed.
    @return: The concatenated frames.
    @raise FrameTooLarge: If any payload is longer than C{max_frame_length};
        nothing is encoded.
    """
    return b"".join(frame_parts(payloads, max_frame_length))


def frame_parts(
    payloads: Iterable[bytes], max_frame_length: int = MAX_FRAME_LENGTH
) -> List[bytes]:
    """
    Interleave headers with payloads, for C{writeSequence} (large payloads
    are not copied) or a join.

    @param payloads: The payloads, in order.
    @param max_frame_length: The largest payload length allowed.
    @return: C{[header, payload, header, payload, ...]}.
    @raise FrameTooLarge: If any payload is longer than C{max_frame_length}.
    """
    cache = _HEADER_CACHE
    cached = min(_CACHED, max_frame_length + 1)
    parts: List[bytes] = []
    append = parts.append
    for payload in payloads:
        length = len(payload)
        append(cache[length] if length < cached else encode_header(length, max_frame_length))
        append(payload)
    return parts


class FrameDecoder:
    """
    Incremental frame decoder: feed it bytes as they arrive, get payloads.

    Between calls it keeps at most one incomplete frame: the bytes of a
    header still incomplete, or the payload bytes received so far, as the
    reads they arrived in (the first one viewed in place when the frame's
    start is most of its read, copied otherwise).  So it holds at most
    C{max_frame_length} + 4 bytes of frames, and never more than twice the
    incomplete frame's bytes.  A frame spread over several reads is joined
    once, from those pieces: it costs one copy of its payload, not one per
    read.

    @ivar max_frame_length: The largest payload length accepted.
    @ivar buffered: The number of bytes held for an incomplete frame,
        header included (read-only).
    @ivar failed: The error that made this decoder unusable, or C{None}
        (read-only).
    """

    # buffered and failed are plain attributes, not properties: the
    # protocol reads both after every read.
    __slots__ = ("max_frame_length", "_parts", "buffered", "_need", "_in_body", "failed")

    def __init__(self, max_frame_length: int = MAX_FRAME_LENGTH) -> None:
        """
        @param max_frame_length: The largest payload length accepted; a
            header announcing more raises L{FrameTooLarge}.
        """
        if max_frame_length < 0:
            raise ValueError(f"negative max_frame_length: {max_frame_length}")
        self.max_frame_length = max_frame_length
        # The incomplete frame: its payload so far when _in_body (its header
        # was complete), else the start of its header.
        self._parts: List[Any] = []
        self._in_body = False
        self.buffered = 0  # bytes of the incomplete frame so far, header included
        self._need = 0  # the incomplete frame's size (or its header's)
        self.failed: Optional[FramingError] = None

    @property
    def needed(self) -> int:
        """
        How many more bytes the incomplete frame needs before it can be
        decoded (0 when nothing is held).  Readers use it to size reads.
        """
        return self._need - self.buffered if self.buffered else 0

    def feed(self, data: bytes) -> List[bytes]:
        """
        Add bytes to the stream and return every payload now complete.

        @param data: The next bytes of the stream (a C{bytearray} or other
            buffer is copied once: the decoder keeps views of what it is
            fed, so the caller may reuse its buffer).
        @return: The complete payloads, in stream order (possibly none),
            each a C{bytes}.
        @raise FramingError: If the stream holds a header this decoder
            refuses; the decoder is then unusable and raises the same error
            on every later call.  Complete frames ahead of the bad header
            are returned first: that call returns them, sets L{failed} and
            the next call raises.
        """
        if self.failed is not None:
            raise self.failed
        if type(data) is not bytes:
            data = bytes(data)
        frames: List[bytes] = []
        pos = 0
        if self.buffered:
            missing = self._need - self.buffered
            parts = self._parts
            if len(data) < missing:
                parts.append(data)
                self.buffered += len(data)
                return frames
            if self._in_body:
                # The frame's last piece, viewed in place: the join below is
                # the payload's only copy.
                parts.append(memoryview(data)[:missing] if len(data) > missing else data)
                frames.append(b"".join(parts))
                pos = missing
            else:
                # A header split between reads (at most 3 bytes held).
                parts.append(data)
                data = b"".join(parts)
            self._parts = []
            self.buffered = 0
            self._in_body = False
        append = frames.append
        end = len(data)
        limit = self.max_frame_length
        # One pass over one buffer; the common 1-byte header is tested first.
        while pos < end:
            first = data[pos]
            if first < 0x80:
                start = pos + 1
                length = first
            elif first < 0xC0:
                start = pos + 2
                if start > end:
                    break
                length = ((first & 0x3F) << 8) | data[pos + 1]
            elif first < 0xE0:
                start = pos + 3
                if start > end:
                    break
                length = ((first & 0x1F) << 16) | (data[pos + 1] << 8) | data[pos + 2]
            else:
                start = pos + 4
                if start > end:
                    break
                length = int.from_bytes(data[pos:start], "big") & 0x1FFFFFFF
            if length > limit:
                self.failed = FrameTooLarge(length, limit)
                if frames:
                    # Deliver the good frames ahead of the bad header; the
                    # error is raised by the next call (see failed).
                    return frames
                raise self.failed
            stop = start + length
            if stop > end:
                # The payload so far: viewed in place (see the join above)
                # when it is most of the read, else copied, so that a
                # frame's small start does not keep a large read alive.
                self._parts = [memoryview(data)[start:] if 2 * start <= end else data[start:]]
                self._in_body = True
                self.buffered = end - pos
                self._need = stop - pos
                return frames
            append(data[start:stop])
            pos = stop
        if pos < end:
            # An incomplete header: keep its bytes until the rest arrives.
            self._parts = [data[pos:]]
            self.buffered = end - pos
            self._need = start - pos
        return frames

    def check_end(self) -> None:
        """
        Check that the stream ended on a frame boundary.

        @raise FramingError: If an incomplete frame is buffered.
        """
        if self.buffered:
            raise FramingError(
                f"stream ended inside a frame ({self.buffered} bytes "
                f"of an incomplete frame)"
            )
