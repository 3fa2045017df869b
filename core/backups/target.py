"""Where backups are stored: a directory (``file://``) or an S3 bucket (``s3://``, s3.py).

Both hold named objects ("/"-separated, relative to the root). A writer streams into something
unfinished (a hidden tmp file, a multipart upload); only ``close()`` shows the object under its
name, whole. A writer that dies leaves a leftover that ``abort_stale_uploads`` removes.
"""

from __future__ import annotations

import abc
import builtins
import hashlib
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING

from core.errors import MemscribeError, ValidationError

if TYPE_CHECKING:
    from config.settings import Settings

log = logging.getLogger(__name__)

FILE_MIN_BUFFER_BYTES = 64 << 10
PARTIAL_SUFFIX = ".partial"
_NAME = re.compile(r"[A-Za-z0-9._/-]+")
_NOT_FOUND = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
URL_FORMS = (
    "use file://./relative/path (relative to the working directory), file:///absolute/path "
    "or s3://bucket[/prefix]"
)


class BackupTargetError(MemscribeError):
    """A backup target refused or failed an operation; the message names object and target."""


class ObjectMissing(BackupTargetError):
    """The named object does not exist."""


@dataclass(frozen=True, slots=True)
class StoredObject:
    """An object a target holds: its name relative to the root, size, mtime (aware, UTC)."""

    name: str
    size: int
    modified: datetime


@dataclass(frozen=True, slots=True)
class WrittenObject:
    """What a closed writer stored: the name, the size and the sha256 (hex) of the bytes."""

    name: str
    size: int
    sha256: str


def validate_name(name: str, *, field: str = "name") -> str:
    """``name`` if it is a safe object name, else ValidationError(field)."""
    if not name or not _NAME.fullmatch(name):
        raise ValidationError(field, f"{name!r} must be non-empty and use only [A-Za-z0-9._/-]")
    parts = name.split("/")
    if name.startswith("/") or ".." in name or "" in parts or "." in parts:
        raise ValidationError(field, f"{name!r} must be relative, without '..', '.' or '//'")
    if is_partial(parts[-1]):  # it would be hidden from list() and removed as stale
        raise ValidationError(field, f"{name!r} has the form of an unfinished write")
    return name


def check_prefix(prefix: str) -> str:
    """``prefix`` if it can start a valid name ("" means everything), else ValidationError."""
    if prefix:
        validate_name(prefix.rstrip("/"), field="prefix")
    return prefix


def is_partial(basename: str) -> bool:
    """Whether a file name is a file writer's tmp file (``.<basename>.<random>.partial``)."""
    return basename.startswith(".") and basename.endswith(PARTIAL_SUFFIX)


def check_aware(older_than: datetime) -> datetime:
    if older_than.utcoffset() is None:
        raise ValidationError("older_than", "must be a timezone-aware datetime")
    return older_than


def check_chunk(chunk_bytes: int) -> int:
    if chunk_bytes < 1:
        raise ValidationError("chunk_bytes", "must be at least 1")
    return chunk_bytes


class ObjectWriter(abc.ABC):
    """Streams one object into a target; nothing is visible under its name before ``close()``.

    As a context manager an exception aborts, a clean exit closes (unless the block did); a
    failed write or close aborts too. ``parts``: S3 parts stored (1 for a single put, a file).
    """

    def __init__(self, *, target_url: str, name: str) -> None:
        self.name = name
        self.parts = 0
        self.target_url = target_url
        self._sha256 = hashlib.sha256()
        self._size = 0
        self._written: WrittenObject | None = None
        self._finished = False  # closed or aborted: no more writes
        self._discarded = False

    def write(self, data: bytes) -> None:
        """Append ``data``; at most one part (plus this write) is held in memory."""
        if self._finished:
            raise self.error("write", "the writer is already closed or aborted")
        self._sha256.update(data)
        self._size += len(data)
        try:
            self._write(data)
        except BaseException:
            self._abort_quietly()
            raise

    def close(self) -> WrittenObject:
        """Make the object visible under its name, whole. Again: the same result."""
        if self._written is not None:
            return self._written
        if self._finished:
            raise self.error("close", "the writer was aborted")
        self._finished = True
        try:
            self._complete()
        except BaseException:
            self._abort_quietly()
            raise
        self._written = WrittenObject(self.name, self._size, self._sha256.hexdigest())
        return self._written

    def abort(self) -> None:
        """Remove the partial write. Idempotent; after a successful close it does nothing."""
        if self._written is not None or self._discarded:
            return
        self._finished = True
        self._discard()
        self._discarded = True

    def __enter__(self) -> ObjectWriter:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if kind is not None:
            self._abort_quietly()
        elif not self._finished:
            self.close()

    def _abort_quietly(self) -> None:
        # The failure in flight matters more; abort_stale_uploads catches what stays behind.
        try:
            self.abort()
        except BackupTargetError as failure:
            log.warning("left an unfinished backup object behind: %s", failure)

    def error(self, action: str, reason: str) -> BackupTargetError:
        return BackupTargetError(f"{action} {self.name!r} on {self.target_url}: {reason}")

    @abc.abstractmethod
    def _write(self, data: bytes) -> None: ...

    @abc.abstractmethod
    def _complete(self) -> None: ...

    @abc.abstractmethod
    def _discard(self) -> None: ...


class Target(abc.ABC):
    """A place that stores named objects; ``url`` names it (never with credentials)."""

    url: str

    @abc.abstractmethod
    def create(self, name: str) -> ObjectWriter:
        """A writer for ``name``; its object replaces any old one when it closes."""

    def put(self, name: str, data: bytes) -> WrittenObject:
        """Store ``data`` under ``name``."""
        with self.create(name) as writer:
            writer.write(data)
            return writer.close()

    @abc.abstractmethod
    def read(self, name: str) -> bytes:
        """The whole object; ObjectMissing if there is none."""

    @abc.abstractmethod
    def stream(self, name: str, *, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        """The object in chunks of at most ``chunk_bytes``. ObjectMissing comes from this call,
        before any chunk; iterate to the end or close() the iterator."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> builtins.list[StoredObject]:
        """The objects whose names start with ``prefix``, by name; never unfinished writes."""

    @abc.abstractmethod
    def exists(self, name: str) -> bool:
        """Whether an object is stored under ``name``."""

    @abc.abstractmethod
    def delete(self, names: Iterable[str]) -> int:
        """Delete these objects; how many there were. A missing name is not an error."""

    @abc.abstractmethod
    def abort_stale_uploads(self, *, older_than: datetime) -> int:
        """Remove the unfinished writes started before ``older_than`` (aware); how many."""


@contextmanager
def _os_errors(url: str, action: str, name: str, *, missing: bool = True) -> Iterator[None]:
    """OSError -> BackupTargetError naming the object; no such file -> ObjectMissing."""
    try:
        yield
    except OSError as exc:
        if missing and isinstance(exc, _NOT_FOUND):
            raise ObjectMissing(f"{action} {name!r} on {url}: no such object") from exc
        reason = exc.strerror or type(exc).__name__
        raise BackupTargetError(f"{action} {name!r} on {url}: {reason}") from exc


class _FileWriter(ObjectWriter):
    """Writes a hidden tmp file beside the final name; close() fsyncs it and renames it."""

    def __init__(self, target: FileTarget, name: str) -> None:
        super().__init__(target_url=target.url, name=name)
        self._path = path = target.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        # mkstemp: an exclusive random name, mode 0600 (which the rename keeps).
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=PARTIAL_SUFFIX, dir=path.parent)
        self._tmp = Path(tmp)
        self._file: IO[bytes] = os.fdopen(fd, "wb", buffering=target.buffer_bytes)

    def _write(self, data: bytes) -> None:
        with _os_errors(self.target_url, "write", self.name, missing=False):
            self._file.write(data)

    def _complete(self) -> None:
        with _os_errors(self.target_url, "close", self.name, missing=False):
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            # Atomic: readers see the old object or all of the new one, never a part.
            os.replace(self._tmp, self._path)
            # The rename survives a crash only once the directory is on disk too.
            directory = os.open(self._path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)
        self.parts = 1

    def _discard(self) -> None:
        with _os_errors(self.target_url, "abort", self.name, missing=False):
            self._file.close()
            self._tmp.unlink(missing_ok=True)


class FileTarget(Target):
    """Objects are files under ``root``; unfinished writes are hidden ``.*.partial`` files."""

    def __init__(self, root: Path, *, buffer_bytes: int) -> None:
        self.root = root
        self.url = root.as_uri()
        self.buffer_bytes = buffer_bytes

    def create(self, name: str) -> ObjectWriter:
        with _os_errors(self.url, "create", validate_name(name), missing=False):
            with suppress(FileNotFoundError):  # a delete() pruned the new directory: again
                return _FileWriter(self, name)
            return _FileWriter(self, name)

    def read(self, name: str) -> bytes:
        with _os_errors(self.url, "read", validate_name(name)):
            return (self.root / name).read_bytes()

    def stream(self, name: str, *, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        check_chunk(chunk_bytes)
        with _os_errors(self.url, "stream", validate_name(name)):
            file = (self.root / name).open("rb")
        return self._chunks(file, name, chunk_bytes)

    def _chunks(self, file: IO[bytes], name: str, chunk_bytes: int) -> Iterator[bytes]:
        with file, _os_errors(self.url, "stream", name, missing=False):
            while chunk := file.read(chunk_bytes):
                yield chunk

    def list(self, prefix: str = "") -> builtins.list[StoredObject]:
        top = self.root / check_prefix(prefix).rpartition("/")[0]  # the deepest directory named
        found = [
            StoredObject(name, stat.st_size, datetime.fromtimestamp(stat.st_mtime, UTC))
            for name, stat in self._files(top, partial=False)
            if name.startswith(prefix)
        ]
        return sorted(found, key=lambda stored: stored.name)

    def _files(self, top: Path, *, partial: bool) -> Iterator[tuple[str, os.stat_result]]:
        """(name, stat) of the objects (or of the partials) under ``top``, in any order."""

        def fail(exc: OSError) -> None:  # a missing directory holds nothing (yet)
            if not isinstance(exc, _NOT_FOUND):
                raise BackupTargetError(f"list {str(top)!r} on {self.url}: {exc.strerror}") from exc

        for directory, _subdirectories, files in os.walk(top, onerror=fail):
            for basename in files:
                if is_partial(basename) != partial:
                    continue
                path = Path(directory) / basename
                try:
                    stat = path.stat()
                except FileNotFoundError:  # deleted since the walk saw it
                    continue
                yield path.relative_to(self.root).as_posix(), stat

    def exists(self, name: str) -> bool:
        return (self.root / validate_name(name)).is_file()

    def delete(self, names: Iterable[str]) -> int:
        deleted = 0
        for name in [validate_name(name) for name in names]:  # all valid before any goes
            with suppress(ObjectMissing), _os_errors(self.url, "delete", name):
                (self.root / name).unlink()
                deleted += 1
                self._prune((self.root / name).parent)
        return deleted

    def _prune(self, directory: Path) -> None:
        """Remove empty directories from ``directory`` up to (not including) the root."""
        while directory != self.root and self.root in directory.parents:
            try:
                directory.rmdir()
            except OSError:  # not empty, or gone: either way the ones above are not empty
                return
            directory = directory.parent

    def abort_stale_uploads(self, *, older_than: datetime) -> int:
        cutoff = check_aware(older_than).timestamp()
        stale = [
            name for name, stat in self._files(self.root, partial=True) if stat.st_mtime < cutoff
        ]
        for name in stale:
            with _os_errors(self.url, "abort", name, missing=False):
                (self.root / name).unlink(missing_ok=True)
            self._prune((self.root / name).parent)
        return len(stale)


def open_target(
    url: str, *, endpoint_url: str | None = None, part_size_bytes: int = 8 << 20
) -> Target:
    """The target ``url`` names: file://./relative, file:///absolute or s3://bucket[/prefix].
    ``part_size_bytes``: the S3 part size (at least 5 MiB) or the file write buffer (64 KiB)."""
    if url.startswith("file://"):
        if part_size_bytes < FILE_MIN_BUFFER_BYTES:
            raise ValidationError("backup_part_size_bytes", "must be at least 64 KiB")
        return FileTarget(_file_root(url), buffer_bytes=part_size_bytes)
    if url.startswith("s3://"):
        # Imported here: s3.py builds on this module, and only S3 users pay for boto3.
        from core.backups.s3 import S3Target

        return S3Target.from_url(url, endpoint_url=endpoint_url, part_size_bytes=part_size_bytes)
    # The URL itself is never echoed: it might carry credentials.
    raise ValidationError("backup_url", f"unsupported URL; {URL_FORMS}")


def _file_root(url: str) -> Path:
    path = url.removeprefix("file://")
    if not path.startswith("/") and path not in {".", ".."} and not path.startswith(("./", "../")):
        # file://var/backups would name the host "var": say which form was meant.
        raise ValidationError("backup_url", f"a file URL needs a path after file://; {URL_FORMS}")
    return Path(os.path.abspath(path))


def target_from_settings(settings: Settings) -> Target:
    """The backup target the settings name (backup_url, s3_endpoint_url, part size)."""
    return open_target(
        settings.backup_url,
        endpoint_url=settings.s3_endpoint_url or None,
        part_size_bytes=settings.backup_part_size_bytes,
    )
