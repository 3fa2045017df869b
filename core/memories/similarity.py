"""Placeholder: replaced by the similarity branch."""

from __future__ import annotations

import hashlib
import re
import unicodedata

_EDGE = re.compile(r"(?<!\S)[^\w\s]+|[^\w\s]+(?!\S)")


def normalize(text: str) -> str:
    folded = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(_EDGE.sub("", folded).split())


def content_hash(text: str) -> str:
    return hashlib.sha256(normalize(text).encode()).hexdigest()
