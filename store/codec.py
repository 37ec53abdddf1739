"""Codecs turn stored bytes into values and back.

Values in the store are bytes. A codec is attached to paths by a :class:`store.merge.Schema` so that merge
functions can work on decoded values.
"""

from __future__ import annotations

import json
from typing import Any, Protocol


class Codec(Protocol):
    """Encodes values to bytes and back. ``encode(decode(b)) == b`` holds for canonical input."""

    name: str

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes) -> Any: ...


class BytesCodec:
    """The identity codec: values are bytes."""

    name = "bytes"

    def encode(self, value: Any) -> bytes:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"bytes codec: expected bytes, got {type(value).__name__}")
        return bytes(value)

    def decode(self, data: bytes) -> Any:
        return data


class JsonCodec:
    """Canonical JSON: sorted keys, two-space indent, stable separators, UTF-8, trailing newline.

    The same value always encodes to the same bytes, so that identical writes from two branches merge and
    `git diff` shows one field per line.
    """

    name = "json"

    def encode(self, value: Any) -> bytes:
        return (
            json.dumps(value, sort_keys=True, indent=2, separators=(",", ": "), ensure_ascii=False) + "\n"
        ).encode("utf-8")

    def decode(self, data: bytes) -> Any:
        try:
            return json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ValueError(f"not valid JSON: {err}") from err


BYTES = BytesCodec()
JSON = JsonCodec()
