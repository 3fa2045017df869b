"""The bytes of a backup object: a sequence of encrypted, compressed frames.

    object  = MAGIC frame*
    frame   = key_id_len:u16  rows:u32  sealed_len:u32  key_id  nonce(12)  sealed

``sealed`` is AES-256-GCM over ``zlib(payload)``; for rows the payload is their JSON lines.
The associated data names the object, the frame's position, its key and its row count, so a
frame moved to another place, another object or another backup fails to open, and so does a
frame whose cleartext header was edited. ``key_id`` is a data key's random id (never derived
from the subject) or ``backup:<id>`` for the backup's own key; the row count is the only other
thing readable without a key.
"""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from core.backups.target import BackupTargetError, ObjectWriter

MAGIC = b"MSBK1\n"
_HEADER = struct.Struct(">HII")
_NONCE_BYTES = 12
# A frame holds one batch of one subject's rows; anything this large is a corrupt header.
_MAX_SEALED_BYTES = 512 << 20


class FrameError(BackupTargetError):
    """A backup object is malformed or a frame does not open; the message names the object."""


@dataclass(frozen=True, slots=True)
class FrameKey:
    key_id: str
    key: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame as read (still sealed)."""

    position: int
    key_id: str
    rows: int
    nonce: bytes
    sealed: bytes


def _aad(object_name: str, position: int, key_id: str, rows: int) -> bytes:
    return f"{object_name}|{position}|{key_id}|{rows}".encode()


class FrameWriter:
    """Seals payloads into one object, streaming (nothing but the current frame in memory)."""

    def __init__(self, sink: ObjectWriter, object_name: str, *, level: int = 6) -> None:
        self._sink = sink
        self._name = object_name
        self._level = level
        self.frames = 0
        self.rows = 0
        sink.write(MAGIC)

    def add_rows(self, key: FrameKey, records: list[bytes]) -> None:
        """One frame of JSON rows (JSON never holds a raw newline, so lines split them)."""
        self.add(key, b"\n".join(records), rows=len(records))

    def add(self, key: FrameKey, payload: bytes, *, rows: int) -> None:
        nonce = os.urandom(_NONCE_BYTES)
        key_id = key.key_id.encode()
        aad = _aad(self._name, self.frames, key.key_id, rows)
        sealed = AESGCM(key.key).encrypt(nonce, zlib.compress(payload, self._level), aad)
        self._sink.write(_HEADER.pack(len(key_id), rows, len(sealed)) + key_id + nonce + sealed)
        self.frames += 1
        self.rows += rows


class _Reader:
    """Exact reads over a stream of chunks, hashing every byte that passes."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._buffer = bytearray()
        self.sha256 = hashlib.sha256()
        self.size = 0

    def _fill(self, n: int) -> None:
        while len(self._buffer) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                return
            self.sha256.update(chunk)
            self.size += len(chunk)
            self._buffer += chunk

    def read(self, n: int) -> bytes:
        self._fill(n)
        taken = bytes(self._buffer[:n])
        del self._buffer[:n]
        return taken

    def at_end(self) -> bool:
        self._fill(1)
        return not self._buffer


class FrameStream:
    """Iterates the frames of one object; ``sha256``/``size`` are final once exhausted."""

    def __init__(self, chunks: Iterable[bytes], object_name: str) -> None:
        self._reader = _Reader(chunks)
        self.name = object_name

    @property
    def sha256(self) -> str:
        return self._reader.sha256.hexdigest()

    @property
    def size(self) -> int:
        return self._reader.size

    def __iter__(self) -> Iterator[Frame]:
        if self._reader.read(len(MAGIC)) != MAGIC:
            raise FrameError(f"{self.name}: not a memscribe backup object (bad magic)")
        position = 0
        while not self._reader.at_end():
            header = self._reader.read(_HEADER.size)
            if len(header) != _HEADER.size:
                raise FrameError(f"{self.name}: frame {position} is cut short")
            key_len, rows, sealed_len = _HEADER.unpack(header)
            if sealed_len > _MAX_SEALED_BYTES:
                raise FrameError(f"{self.name}: frame {position} has a malformed header")
            body = self._reader.read(key_len + _NONCE_BYTES + sealed_len)
            if len(body) != key_len + _NONCE_BYTES + sealed_len:
                raise FrameError(f"{self.name}: frame {position} is cut short")
            try:
                key_id = body[:key_len].decode("ascii")
            except UnicodeDecodeError:
                raise FrameError(f"{self.name}: frame {position} has a malformed key id") from None
            nonce = body[key_len : key_len + _NONCE_BYTES]
            yield Frame(position, key_id, rows, nonce, body[key_len + _NONCE_BYTES :])
            position += 1


def open_frame(frame: Frame, key: bytes, object_name: str) -> bytes:
    """The frame's payload; ``FrameError`` if ``key`` is not its key or a byte changed."""
    aad = _aad(object_name, frame.position, frame.key_id, frame.rows)
    try:
        return zlib.decompress(AESGCM(key).decrypt(frame.nonce, frame.sealed, aad))
    except (InvalidTag, zlib.error):
        raise FrameError(
            f"{object_name}: frame {frame.position} does not open (wrong key or tampered)"
        ) from None


def frame_records(payload: bytes) -> list[bytes]:
    return payload.split(b"\n") if payload else []
