"""Reading a generator's answer with bounded memory: at most MAX_ANSWER_BYTES after decoding.

We ask for `Accept-Encoding: identity`, but a peer may compress anyway; a gzip bomb inflates a thousandfold, so
inflating is bounded too (zlib's max_length), and so are the wire bytes read to get there (MAX_WIRE_BYTES: a
deflate stream of empty blocks inflates to nothing forever). An endless answer costs MAX_ANSWER_BYTES and the
caller's time-out.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable

import httpx

MAX_ANSWER_BYTES = 64 * 1024
MAX_WIRE_BYTES = 4 * MAX_ANSWER_BYTES

Inflate = Callable[[bytes, int], bytes]


async def read_answer(response: httpx.Response, limit: int = MAX_ANSWER_BYTES) -> bytes:
    """The first `limit` decoded bytes of a streamed response (less when it cannot be decoded further)."""
    inflate = _inflater(response.headers.get("content-encoding", ""))
    if inflate is _nothing:
        return b""
    out = bytearray()
    wire = 0
    async for chunk in response.aiter_raw():
        wire += len(chunk)
        try:
            out += inflate(chunk, limit - len(out))
        except zlib.error:
            break  # what was decoded so far is all the text there is
        if len(out) >= limit or wire >= MAX_WIRE_BYTES:
            break
    return bytes(out[:limit])


def _inflater(content_encoding: str) -> Inflate:
    codings = [c.strip().lower() for c in content_encoding.split(",") if c.strip()]
    if not codings or codings == ["identity"]:
        return _identity
    if codings in (["gzip"], ["x-gzip"], ["deflate"]):
        # 47: gzip or zlib header, detected; raw deflate ("deflate" as some servers send it) falls back below
        return _Bounded(zlib.decompressobj(47))
    return _nothing  # br, zstd, stacked codings: nothing we can read safely; the status still decides


def _identity(chunk: bytes, room: int) -> bytes:
    return chunk[:room]


def _nothing(_chunk: bytes, _room: int) -> bytes:
    return b""


class _Bounded:
    """zlib inflate that never produces more than `room` bytes per call (unconsumed input is dropped: we
    stop reading once the room is used up)."""

    def __init__(self, inflater: zlib._Decompress) -> None:
        self._inflater = inflater
        self._raw_tried = False

    def __call__(self, chunk: bytes, room: int) -> bytes:
        if room <= 0:
            return b""  # max_length 0 would mean "unbounded"
        try:
            return self._inflater.decompress(chunk, room)
        except zlib.error:
            if self._raw_tried:
                raise
            self._raw_tried = True
            self._inflater = zlib.decompressobj(-15)
            return self._inflater.decompress(chunk, room)
