"""The S3 backup target (AWS, MinIO or any S3-compatible server) on boto3.

An object is the key ``prefix/name``; a writer streams it as a multipart upload, which S3 shows
under its key only once completed, or as one put_object when it stays under a part.
"""

from __future__ import annotations

import builtins
import os
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from core.backups.target import (
    URL_FORMS,
    BackupTargetError,
    ObjectMissing,
    ObjectWriter,
    StoredObject,
    Target,
    check_aware,
    check_chunk,
    check_prefix,
    validate_name,
)
from core.errors import ValidationError

_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchUpload", "NotFound", "404"})
MIN_PART_BYTES = 5 << 20  # S3 refuses smaller parts (but the last)
_MAX_PARTS = 10_000  # S3's limit per multipart upload
_DELETE_BATCH = 1000  # S3's limit per delete_objects


def _reason(exc: Exception) -> str:
    """A short, secret-free reason: the S3 error code and message, or the botocore error's
    class (its text may hold the endpoint or signing details)."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = (
            error.get("Code")
            or f"HTTP {exc.response.get('ResponseMetadata', {}).get('HTTPStatusCode')}"
        )
        message = str(error.get("Message") or "")[:200]
        return f"{code}: {message}" if message else str(code)
    return type(exc).__name__


def _is_missing(exc: Exception) -> bool:
    return (
        isinstance(exc, ClientError) and exc.response.get("Error", {}).get("Code") in _MISSING_CODES
    )


@contextmanager
def _s3_errors(url: str, action: str, name: str, *, missing: bool = True) -> Iterator[None]:
    """boto3's errors -> BackupTargetError naming the object; no such key -> ObjectMissing."""
    try:
        yield
    except (ClientError, BotoCoreError) as exc:
        if missing and _is_missing(exc):
            raise ObjectMissing(f"{action} {name!r} on {url}: no such object") from exc
        raise BackupTargetError(f"{action} {name!r} on {url}: {_reason(exc)}") from exc


class _S3Writer(ObjectWriter):
    """Buffers one part at a time; the first full part starts the multipart upload."""

    def __init__(self, target: S3Target, name: str) -> None:
        super().__init__(target_url=target.url, name=name)
        self._target = target
        self._key = target.key(name)
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: list[dict[str, Any]] = []

    def _write(self, data: bytes) -> None:
        self._buffer += data
        size = self._target.part_size_bytes
        while len(self._buffer) >= size:
            part = self._buffer[:size]
            del self._buffer[:size]  # one part copied out at a time, never the whole object
            self._upload_part(part)

    def _upload_part(self, body: bytearray) -> None:
        client, bucket = self._target.client, self._target.bucket
        number = len(self._parts) + 1
        if number > _MAX_PARTS:
            raise self.error("write", f"over {_MAX_PARTS} parts: raise backup_part_size_bytes")
        with _s3_errors(self.target_url, "write", self.name, missing=False):
            if self._upload_id is None:
                # CRC32 named up front, as s3transfer does: S3 then checks every part and
                # completing must list each part's checksum.
                created = client.create_multipart_upload(
                    Bucket=bucket, Key=self._key, ChecksumAlgorithm="CRC32"
                )
                self._upload_id = str(created["UploadId"])
            uploaded = client.upload_part(
                Bucket=bucket,
                Key=self._key,
                UploadId=self._upload_id,
                PartNumber=number,
                Body=body,
                ChecksumAlgorithm="CRC32",
            )
        part = {"ETag": uploaded["ETag"], "PartNumber": number}
        if "ChecksumCRC32" in uploaded:  # a server without checksums neither sends nor wants it
            part["ChecksumCRC32"] = uploaded["ChecksumCRC32"]
        self._parts.append(part)
        self.parts = number

    def _complete(self) -> None:
        client, bucket = self._target.client, self._target.bucket
        if self._upload_id is None:
            with _s3_errors(self.target_url, "close", self.name, missing=False):
                client.put_object(Bucket=bucket, Key=self._key, Body=bytes(self._buffer))
            self._buffer.clear()
            self.parts = 1
            return
        if self._buffer:
            self._upload_part(self._buffer)
            self._buffer = bytearray()
        with _s3_errors(self.target_url, "close", self.name, missing=False):
            client.complete_multipart_upload(
                Bucket=bucket,
                Key=self._key,
                UploadId=self._upload_id,
                MultipartUpload={"Parts": self._parts},
            )

    def _discard(self) -> None:
        self._buffer.clear()
        if self._upload_id is None:
            return
        try:
            with _s3_errors(self.target_url, "abort", self.name):
                self._target.client.abort_multipart_upload(
                    Bucket=self._target.bucket, Key=self._key, UploadId=self._upload_id
                )
        except ObjectMissing:  # aborted already, by abort_stale_uploads say
            pass


class S3Target(Target):
    """Objects are the keys under ``prefix`` in ``bucket``; one boto3 client per target."""

    def __init__(
        self, *, bucket: str, prefix: str, endpoint_url: str | None, part_size_bytes: int
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix
        self.url = f"s3://{bucket}/{prefix}" if prefix else f"s3://{bucket}"
        self.part_size_bytes = part_size_bytes
        # Credentials and region come from the usual AWS variables and files.
        config = Config(retries={"max_attempts": 5, "mode": "standard"})
        try:
            self.client: Any = boto3.client("s3", endpoint_url=endpoint_url or None, config=config)
        except ValueError:  # the endpoint is not echoed: it might carry credentials
            raise ValidationError("s3_endpoint_url", "is not a valid URL") from None

    @classmethod
    def from_url(cls, url: str, *, endpoint_url: str | None, part_size_bytes: int) -> S3Target:
        """The target of ``s3://bucket[/prefix]``; the URL is never echoed (credentials)."""
        if part_size_bytes < MIN_PART_BYTES:
            raise ValidationError("backup_part_size_bytes", "must be at least 5 MiB for S3")
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not _BUCKET.fullmatch(bucket) or ".." in bucket:
            raise ValidationError("backup_url", f"not a valid S3 bucket name; {URL_FORMS}")
        prefix = prefix.rstrip("/")
        try:
            if prefix:
                validate_name(prefix)
        except ValidationError:
            raise ValidationError("backup_url", f"not a valid S3 prefix; {URL_FORMS}") from None
        return cls(
            bucket=bucket, prefix=prefix, endpoint_url=endpoint_url, part_size_bytes=part_size_bytes
        )

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def create(self, name: str) -> ObjectWriter:
        return _S3Writer(self, validate_name(name))

    def read(self, name: str) -> bytes:
        with _s3_errors(self.url, "read", validate_name(name)):
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(name))
            with response["Body"] as body:
                return bytes(body.read())

    def stream(self, name: str, *, chunk_bytes: int = 1 << 20) -> Iterator[bytes]:
        check_chunk(chunk_bytes)
        with _s3_errors(self.url, "stream", validate_name(name)):
            response = self.client.get_object(Bucket=self.bucket, Key=self.key(name))
        return self._chunks(response["Body"], name, chunk_bytes)

    def _chunks(self, body: Any, name: str, chunk_bytes: int) -> Iterator[bytes]:
        # botocore checks the length at the end: a cut-off body raises, never ends early.
        with body, _s3_errors(self.url, "stream", name, missing=False):
            yield from body.iter_chunks(chunk_bytes)

    def list(self, prefix: str = "") -> builtins.list[StoredObject]:
        root = self.key("")
        found = [
            StoredObject(key[len(root) :], item["Size"], item["LastModified"].astimezone(UTC))
            for key, item in self._keys(root + check_prefix(prefix))
        ]
        return sorted(found, key=lambda stored: stored.name)

    def _keys(self, key_prefix: str) -> Iterator[tuple[str, dict[str, Any]]]:
        """(key, listing entry) of every object whose key starts with ``key_prefix``, sorted."""
        pages = self.client.get_paginator("list_objects_v2")
        with _s3_errors(self.url, "list", key_prefix, missing=False):
            for page in pages.paginate(Bucket=self.bucket, Prefix=key_prefix):
                for item in page.get("Contents", []):
                    yield str(item["Key"]), item

    def exists(self, name: str) -> bool:
        try:
            with _s3_errors(self.url, "exists", validate_name(name)):
                self.client.head_object(Bucket=self.bucket, Key=self.key(name))
        except ObjectMissing:
            return False
        return True

    def delete(self, names: Iterable[str]) -> int:
        keys = sorted({self.key(validate_name(name)) for name in names})
        deleted = 0
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = self._existing(keys[start : start + _DELETE_BATCH])
            if not batch:
                continue
            with _s3_errors(self.url, "delete", batch[0], missing=False):
                response = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": key} for key in batch], "Quiet": True},
                )
            if errors := response.get("Errors"):
                first = errors[0]
                raise BackupTargetError(
                    f"delete {first.get('Key')!r} on {self.url}: {first.get('Code')}"
                    f" ({len(errors)} of {len(batch)} in the batch failed)"
                )
            deleted += len(batch)
        return deleted

    def _existing(self, keys: builtins.list[str]) -> builtins.list[str]:
        """Those of ``keys`` (sorted) that exist. S3 reports a missing key as deleted, so the
        count needs this: one listing under the batch's common prefix, up to its last key."""
        wanted, found = set(keys), []
        for key, _item in self._keys(os.path.commonprefix(keys)):  # noqa: RUF071 (keys, not paths)
            if key > keys[-1]:
                break
            if key in wanted:
                found.append(key)
        return found

    def abort_stale_uploads(self, *, older_than: datetime) -> int:
        cutoff = check_aware(older_than)
        pages = self.client.get_paginator("list_multipart_uploads")
        aborted = 0
        with _s3_errors(self.url, "abort_stale_uploads", self.key(""), missing=False):
            for page in pages.paginate(Bucket=self.bucket, Prefix=self.key("")):
                for upload in page.get("Uploads", []):
                    if upload["Initiated"] >= cutoff:
                        continue
                    try:
                        self.client.abort_multipart_upload(
                            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
                        )
                    except ClientError as exc:
                        if not _is_missing(exc):  # else its writer aborted it meanwhile
                            raise
                        continue
                    aborted += 1
        return aborted
