"""Tagged JSON: the cache's JSON encoding (``multilevel.encode``) with bytes, for namespaces.

A LangChain store's values are mostly ``bytes`` (embeddings, files), so a namespace's values
are JSON in which bytes travel as ``{"$b": "<base64>"}``. Data only: decoding runs no code
and builds only JSON types and bytes.

The form is unambiguous: a dict key of the caller's that starts with ``$`` is written with one
more ``$`` (``"$b"`` -> ``"$$b"``) and loses it again on the way back, so the only one-key
object ``{"$b": ...}`` in the text is a tag. ``json.loads``'s ``object_hook`` undoes both
bottom-up, one object at a time, which is why the escape is per key and not a wrapper.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from core.cache.multilevel import encode
from core.errors import ValidationError

BYTES_TAG = "$b"
_ESCAPE = "$"


def _tag(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {BYTES_TAG: base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        return {_escape(key): _tag(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_tag(item) for item in value]
    return value


def _escape(key: Any) -> Any:
    return _ESCAPE + key if isinstance(key, str) and key.startswith(_ESCAPE) else key


def _untag(obj: dict[str, Any]) -> Any:
    if len(obj) == 1 and BYTES_TAG in obj:
        try:
            return base64.b64decode(obj[BYTES_TAG], validate=True)
        except (TypeError, binascii.Error) as exc:
            raise ValueError(f"malformed bytes tag: {exc}") from None
    if any(key.startswith(_ESCAPE) for key in obj):
        return {(key[1:] if key.startswith(_ESCAPE) else key): item for key, item in obj.items()}
    return obj


def encode_tagged(value: Any) -> tuple[str, int]:
    """``value`` (JSON types, bytes at any depth) as tagged JSON text and its size in bytes;
    ``ValidationError`` naming ``value`` for anything else (a set, NaN, an object, text that is
    not Unicode)."""
    text = encode(_tag(value))
    return text, utf8_size("value", text)


def utf8_size(field: str, text: str) -> int:
    """The length of ``text`` in UTF-8; ``ValidationError`` naming ``field`` for a lone
    surrogate (Redis would get no valid UTF-8, and the reply could not be decoded)."""
    if text.isascii():  # base64'd bytes and most keys: no copy needed
        return len(text)
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ValidationError(field, f"must be valid Unicode text: {exc.reason}") from None


def decode_tagged(text: str | bytes) -> Any:
    """The value ``encode_tagged`` wrote (a tuple comes back as a list, as in any JSON)."""
    return json.loads(text, object_hook=_untag)
