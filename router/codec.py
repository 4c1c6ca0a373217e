"""The two wire codecs, JSON and msgpack, in one module so a document means the same in both.

Every decoded tree is checked the same way whichever codec carried it (string map keys, 64-bit
integers, finite floats, valid Unicode, bounded nesting, no binary or extension values), so the
code above never asks which one it was. Each codec names its Content-Type and the agent
WebSocket subprotocol that selects it. Malformed input raises `DecodeError`, an unknown content
type `UnsupportedMediaType` (both in `router/errors.py`).

Imports only `msgpack` and `router.errors`; no aiohttp: the HTTP and socket modules call in with
bytes and choose the codec (`codec_for`, or the socket's subprotocol).
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Final

import msgpack

from router.errors import DecodeError, UnsupportedMediaType

MAX_DEPTH: Final = 32  # nesting of maps and arrays in any decoded document
MAX_INT_DIGITS: Final = 20  # JSON integers are parsed only this long (2**64 has 20 digits)
INT_MIN: Final = -(2**63)
INT_MAX: Final = 2**64 - 1  # msgpack's range; JSON is held to the same one


class Codec(ABC):
    """Encodes and decodes one wire format; `decode` returns a checked tree (see module doc)."""

    name: str
    content_type: str
    subprotocol: str  # the agent WebSocket subprotocol that selects it
    binary: bool  # frames go out as binary (bytes) rather than text (str)

    @abstractmethod
    def encode(self, value: Any) -> bytes:
        """Serialise plain data (dicts, lists, tuples, mappings, scalars)."""

    @abstractmethod
    def _load(self, data: bytes) -> Any:
        """Parse bytes; raise DecodeError (or ValueError) when they are not a document."""

    def decode(self, data: bytes) -> Any:
        """Parse and check one document; raise `DecodeError` on anything malformed."""
        try:
            value = self._load(data)
        except DecodeError:
            raise
        except RecursionError as exc:
            raise DecodeError(f"{self.name} document nested too deeply") from exc
        except (ValueError, TypeError, OverflowError) as exc:
            raise DecodeError(f"body is not a valid {self.name} document") from exc
        check_tree(value)
        return value

    def decode_map(self, data: bytes) -> dict[str, Any]:
        """`decode`, refusing any top-level value but a map."""
        value = self.decode(data)
        if not isinstance(value, dict):
            raise DecodeError(f"the {self.name} document must be an object (a map)")
        return value


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, tuple | frozenset | set):
        return list(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise DecodeError("integer too large")
    return int(text)


def _json_constant(text: str) -> Any:
    raise DecodeError(f"{text} is not JSON")


class JsonCodec(Codec):
    """UTF-8 JSON (RFC 8259): no NaN/Infinity, integers of at most 20 digits."""

    name = "json"
    content_type = "application/json"
    subprotocol = "omniroute.v1.json"
    binary = False

    def encode(self, value: Any) -> bytes:
        return self.dumps(value).encode()

    # built once: json.dumps/loads with options build a new encoder/decoder on every call,
    # which showed in the node's profile (one per frame sent and per body read)
    _encoder = json.JSONEncoder(
        separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_plain
    )
    _decoder = json.JSONDecoder(parse_int=_json_int, parse_constant=_json_constant)

    def dumps(self, value: Any) -> str:
        """The document as text (for WebSocket text frames)."""
        return self._encoder.encode(value)

    def _load(self, data: bytes) -> Any:
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DecodeError("body is not UTF-8") from exc
        return self._decoder.decode(text)


def _no_ext(code: int, data: bytes) -> Any:
    raise DecodeError("msgpack extension types are not accepted")


class MsgpackCodec(Codec):
    """msgpack with str/bin distinguished (`raw=False`); extension types are refused."""

    name = "msgpack"
    content_type = "application/msgpack"
    subprotocol = "omniroute.v1.msgpack"
    binary = True

    def encode(self, value: Any) -> bytes:
        packed: bytes = msgpack.packb(value, use_bin_type=True, default=_plain)
        return packed

    def _load(self, data: bytes) -> Any:
        return msgpack.unpackb(data, raw=False, strict_map_key=True, ext_hook=_no_ext)


JSON: Final[Codec] = JsonCodec()
MSGPACK: Final[Codec] = MsgpackCodec()
_BY_TYPE: Final = {
    "application/json": JSON,
    "application/msgpack": MSGPACK,
    "application/x-msgpack": MSGPACK,  # the older name many msgpack clients still send
}
CODECS: Final = (JSON, MSGPACK)


def codec_for(content_type: str | None) -> Codec:
    """The codec of a Content-Type header (parameters allowed; JSON only as UTF-8)."""
    media, _, params = (content_type or "").partition(";")
    codec = _BY_TYPE.get(media.strip().lower())
    if codec is None:
        raise UnsupportedMediaType("content type must be application/json or application/msgpack")
    for param in params.split(";"):
        key, _, value = param.partition("=")
        charset = value.strip().strip('"').lower()
        if key.strip().lower() == "charset" and codec is JSON and charset not in ("utf-8", "utf8"):
            raise UnsupportedMediaType("JSON bodies must be UTF-8")
    return codec


def encode_frame(codec: Codec, frame: Mapping[str, Any]) -> str | bytes:
    """A WebSocket frame: text (str) for JSON, binary (bytes) for msgpack."""
    if isinstance(codec, JsonCodec):
        return codec.dumps(frame)
    return codec.encode(frame)


def decode_frame(codec: Codec, data: str | bytes) -> dict[str, Any]:
    """A client frame: one checked map (raises `DecodeError`)."""
    return codec.decode_map(data.encode() if isinstance(data, str) else data)


def check_tree(value: Any, max_depth: int = MAX_DEPTH) -> None:
    """Refuse what one codec could carry and the other could not, and unbounded nesting."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, str):
            if not node.isascii() and not _utf8(node):
                raise DecodeError("strings must be valid Unicode (no lone surrogates)")
        elif isinstance(node, bool) or node is None:
            continue
        elif isinstance(node, int):
            if not INT_MIN <= node <= INT_MAX:
                raise DecodeError("integer out of the 64-bit range")
        elif isinstance(node, float):
            if not math.isfinite(node):
                raise DecodeError("numbers must be finite")
        elif isinstance(node, dict | list):
            if depth > max_depth:
                raise DecodeError(f"document nested deeper than {max_depth} levels")
            if isinstance(node, dict):
                for key in node:
                    if not isinstance(key, str):
                        raise DecodeError("map keys must be strings")
                    stack.append((key, depth + 1))
                stack.extend((item, depth + 1) for item in node.values())
            else:
                stack.extend((item, depth + 1) for item in node)
        else:
            raise DecodeError("binary and extension values are not accepted")


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
