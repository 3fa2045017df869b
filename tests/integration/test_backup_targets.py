"""Backup targets for real: the file target in tmp_path, the S3 target against moto's server."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from core.backups.target import (
    BackupTargetError,
    FileTarget,
    ObjectMissing,
    Target,
    WrittenObject,
    open_target,
    target_from_settings,
)
from core.errors import ValidationError
from tests.helpers.moto_s3 import moto_s3

BUCKET = "memscribe-backups"
MiB = 1 << 20


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """One moto S3 server for the module, with BUCKET created, and test credentials."""
    with moto_s3(BUCKET) as endpoint:
        yield endpoint


@pytest.fixture
def s3(s3_endpoint: str) -> Any:
    """A plain boto3 client on the moto server, to look behind the target's back."""
    return boto3.client("s3", endpoint_url=s3_endpoint)


def _s3_target(endpoint: str, **options: Any) -> Target:
    # A fresh prefix per test keeps the tests apart in the shared bucket.
    return open_target(f"s3://{BUCKET}/t-{uuid.uuid4().hex[:12]}", endpoint_url=endpoint, **options)


@pytest.fixture(params=["file", "s3"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Target:
    """Each shared test runs on a file target and on an S3 target (5 MiB parts)."""
    if request.param == "file":
        return open_target(f"file://{tmp_path}/backups", part_size_bytes=64 << 10)
    return _s3_target(request.getfixturevalue("s3_endpoint"), part_size_bytes=5 * MiB)


def _unfinished(target: Target, s3: Any | None = None) -> list[str]:
    """The unfinished writes behind the target: partial files, or multipart upload keys."""
    if isinstance(target, FileTarget):
        if not target.root.exists():
            return []
        return sorted(p.name for p in target.root.rglob("*.partial"))
    client = s3 or target.client  # type: ignore[attr-defined]
    uploads = client.list_multipart_uploads(Bucket=BUCKET, Prefix=target.prefix + "/")  # type: ignore[attr-defined]
    return sorted(upload["Key"] for upload in uploads.get("Uploads", []))


def _blob(size: int, seed: int = 0) -> bytes:
    return hashlib.sha256(str(seed).encode()).digest() * (size // 32) + b"x" * (size % 32)


def test_put_read_stream_round_trip(target: Target) -> None:
    """put stores the bytes; read and stream (in bounded chunks) return them unchanged."""
    data = _blob(100_003)
    written = target.put("backups/20261203T101500Z-ab12/messages.0001.msb", data)
    assert written == WrittenObject(
        "backups/20261203T101500Z-ab12/messages.0001.msb",
        len(data),
        hashlib.sha256(data).hexdigest(),
    )
    assert target.read(written.name) == data
    chunks = list(target.stream(written.name, chunk_bytes=7_000))
    assert b"".join(chunks) == data
    assert max(len(chunk) for chunk in chunks) <= 7_000
    assert len(chunks) >= 15


def test_put_replaces_and_empty_objects_work(target: Target) -> None:
    """A second put replaces the object; an empty object round-trips as b""."""
    target.put("a/obj", b"first")
    target.put("a/obj", b"second")
    target.put("a/empty", b"")
    assert target.read("a/obj") == b"second"
    assert target.read("a/empty") == b""
    assert list(target.stream("a/empty")) == []


def test_list_is_sorted_and_filtered_by_prefix(target: Target) -> None:
    """list returns every object sorted by name, with size and an aware UTC mtime."""
    before = datetime.now(UTC) - timedelta(seconds=5)
    for name in ["c", "a/b/2", "a/b/10", "b", "a/a"]:
        target.put(name, name.encode() * 3)
    listed = target.list()
    assert [o.name for o in listed] == ["a/a", "a/b/10", "a/b/2", "b", "c"]
    assert [o.size for o in listed] == [9, 18, 15, 3, 3]
    for stored in listed:
        assert stored.modified.utcoffset() == timedelta(0)
        assert before <= stored.modified <= datetime.now(UTC) + timedelta(seconds=5)
    assert [o.name for o in target.list("a/b/")] == ["a/b/10", "a/b/2"]
    assert [o.name for o in target.list("a/b/1")] == ["a/b/10"]
    assert [o.name for o in target.list("a")] == ["a/a", "a/b/10", "a/b/2"]
    assert target.list("nothing/") == []


def test_list_excludes_unfinished_writes_and_abort_removes_them(target: Target) -> None:
    """A write in progress is neither listed nor exists; abort leaves nothing behind."""
    target.put("done", b"ok")
    writer = target.create("pending/object")
    writer.write(_blob(6 * MiB))  # past one S3 part: a real multipart upload is in progress
    assert [o.name for o in target.list()] == ["done"]
    assert not target.exists("pending/object")
    assert len(_unfinished(target)) == 1
    writer.abort()
    writer.abort()  # idempotent
    assert _unfinished(target) == []
    assert [o.name for o in target.list()] == ["done"]
    with pytest.raises(BackupTargetError, match="closed or aborted"):
        writer.write(b"more")


def test_abort_stale_uploads_removes_only_older_writes(target: Target) -> None:
    """abort_stale_uploads removes unfinished writes started before older_than, and counts."""
    target.put("kept", b"data")
    writer = target.create("stale/object")
    writer.write(_blob(6 * MiB))
    # Before 2010: moto reports every upload as initiated on 2010-11-10 (a fixed value).
    assert target.abort_stale_uploads(older_than=datetime(2000, 1, 1, tzinfo=UTC)) == 0
    assert len(_unfinished(target)) == 1
    assert target.abort_stale_uploads(older_than=datetime.now(UTC) + timedelta(minutes=1)) == 1
    assert _unfinished(target) == []
    writer.abort()  # its writer's own abort finds nothing left, and does not fail
    assert [o.name for o in target.list()] == ["kept"]
    with pytest.raises(ValidationError) as caught:
        target.abort_stale_uploads(older_than=datetime.now())
    assert caught.value.field == "older_than"


def test_delete_counts_existing_and_ignores_missing(target: Target) -> None:
    """delete removes the named objects, returns how many existed, and skips missing ones."""
    for name in ["x/1", "x/2", "y/deep/3", "z"]:
        target.put(name, b"1")
    assert target.delete(["x/1", "y/deep/3", "missing", "x/none", "x/1"]) == 2
    assert [o.name for o in target.list()] == ["x/2", "z"]
    assert target.delete([]) == 0
    assert target.delete(iter(["x/2", "z"])) == 2
    assert target.list() == []
    if isinstance(target, FileTarget):  # empty directories go too, the root stays
        assert list(target.root.iterdir()) == []


def test_exists(target: Target) -> None:
    """exists is true for a stored object only: not for a missing one or a directory."""
    target.put("dir/obj", b"1")
    assert target.exists("dir/obj")
    assert not target.exists("dir/other")
    assert not target.exists("dir")


@pytest.mark.parametrize("call", ["read", "stream"])
def test_missing_object_raises_object_missing(target: Target, call: str) -> None:
    """read and stream of an absent object raise ObjectMissing naming it and the target."""
    target.put("present", b"1")
    with pytest.raises(ObjectMissing) as caught:
        getattr(target, call)("backups/absent.msb")
    assert "backups/absent.msb" in str(caught.value)
    assert target.url in str(caught.value)
    assert isinstance(caught.value, BackupTargetError)


@pytest.mark.parametrize(
    "name",
    ["", "/abs", "a/../b", "..", "a\\b", "a b", "a//b", "a/", "./a", "é", "a/.x.1.partial"],
)
def test_bad_names_are_refused(target: Target, name: str) -> None:
    """An unsafe or malformed name is a ValidationError on 'name', for every operation."""
    calls: list[Callable[[], object]] = [
        lambda: target.put(name, b"1"),
        lambda: target.create(name),
        lambda: target.read(name),
        lambda: target.stream(name),
        lambda: target.exists(name),
        lambda: target.delete(["fine", name]),
    ]
    for call in calls:
        with pytest.raises(ValidationError) as caught:
            call()
        assert caught.value.field == "name"
    assert target.list() == []


def test_bad_list_prefix_is_refused(target: Target) -> None:
    """list refuses a prefix that could leave the root."""
    for prefix in ["../", "/etc", "a/../.."]:
        with pytest.raises(ValidationError) as caught:
            target.list(prefix)
        assert caught.value.field == "prefix"


def test_writer_as_context_manager_aborts_on_exception(target: Target) -> None:
    """An exception in the with block aborts the write; a clean exit closes it."""
    with pytest.raises(RuntimeError), target.create("failed") as writer:
        writer.write(_blob(6 * MiB))
        raise RuntimeError("boom")
    assert not target.exists("failed")
    assert _unfinished(target) == []
    with target.create("closed") as writer:
        writer.write(b"abc")
    assert target.read("closed") == b"abc"
    with target.create("closed-inside") as writer:
        writer.write(b"def")
        first = writer.close()
    assert (
        writer.close()
        == first
        == WrittenObject("closed-inside", 3, hashlib.sha256(b"def").hexdigest())
    )
    assert [o.name for o in target.list()] == ["closed", "closed-inside"]


def test_file_target_is_atomic(tmp_path: Path) -> None:
    """The final name is absent (or the old object) until close; only the partial grows."""
    target = open_target(f"file://{tmp_path}", part_size_bytes=64 << 10)
    final = tmp_path / "backups" / "b1" / "rows.msb"
    writer = target.create("backups/b1/rows.msb")
    writer.write(_blob(300_000))
    assert not final.exists()
    partials = list(final.parent.glob(".rows.msb.*.partial"))
    assert len(partials) == 1
    assert partials[0].stat().st_size >= 300_000 - (64 << 10)
    written = writer.close()
    assert final.read_bytes() == _blob(300_000)
    assert written.sha256 == hashlib.sha256(_blob(300_000)).hexdigest()
    assert writer.parts == 1
    assert not partials[0].exists()
    assert oct(final.stat().st_mode & 0o777) == oct(0o600)
    replacing = target.create("backups/b1/rows.msb")
    replacing.write(b"new")
    assert final.read_bytes() == _blob(300_000)  # the old object, whole, until close
    replacing.close()
    assert final.read_bytes() == b"new"


def test_file_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """file://./x is relative to the working directory at open time; file:///x is absolute."""
    monkeypatch.chdir(tmp_path)
    relative = open_target("file://./var/backups")
    assert relative.url == (tmp_path / "var" / "backups").as_uri()
    relative.put("one", b"1")
    monkeypatch.chdir("/")
    assert (tmp_path / "var" / "backups" / "one").read_bytes() == b"1"
    assert open_target(f"file://{tmp_path}/var/backups").read("one") == b"1"
    assert relative.list()[0].name == "one"


@pytest.mark.parametrize(
    "url",
    [
        "",
        "backups",
        "http://example.com/backups",
        "ftp://host/x",
        "file://",
        "file://var/backups",
        "s3://",
        "s3:///prefix",
        "s3://Bad_Bucket/x",
        "s3://ab",
        "s3://bucket/../x",
        "s3://bucket//x",
        "s3://bucket/a b",
        "s3://AKIDEXAMPLE:supersecret@bucket/x",
    ],
)
def test_bad_urls_are_refused(url: str) -> None:
    """A bad URL is a ValidationError on backup_url naming the accepted forms, never the URL."""
    with pytest.raises(ValidationError) as caught:
        open_target(url, endpoint_url="http://127.0.0.1:1")
    assert caught.value.field == "backup_url"
    message = str(caught.value)
    assert "file://./" in message and "file:///" in message and "s3://bucket" in message
    assert "supersecret" not in message


def test_part_size_limits(tmp_path: Path, s3_endpoint: str) -> None:
    """S3 parts must be at least 5 MiB (S3's minimum); file buffers at least 64 KiB."""
    for url, size in [(f"s3://{BUCKET}", 5 * MiB - 1), (f"file://{tmp_path}", (64 << 10) - 1)]:
        with pytest.raises(ValidationError) as caught:
            open_target(url, endpoint_url=s3_endpoint, part_size_bytes=size)
        assert caught.value.field == "backup_part_size_bytes"
    assert open_target(f"file://{tmp_path}", part_size_bytes=64 << 10).list() == []
    assert (
        open_target(f"s3://{BUCKET}/p", endpoint_url=s3_endpoint, part_size_bytes=5 * MiB).list()
        == []
    )


def test_s3_keys_are_prefix_slash_name(s3_endpoint: str, s3: Any) -> None:
    """Keys are prefix/name, with no double slash; an empty prefix means the name alone."""
    prefixed = open_target(f"s3://{BUCKET}/root/sub/", endpoint_url=s3_endpoint)
    assert prefixed.url == f"s3://{BUCKET}/root/sub"
    prefixed.put("a/b", b"1")
    assert s3.get_object(Bucket=BUCKET, Key="root/sub/a/b")["Body"].read() == b"1"
    s3.create_bucket(Bucket="memscribe-bare")
    bare = open_target("s3://memscribe-bare", endpoint_url=s3_endpoint)
    bare.put("top/obj", b"2")
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket="memscribe-bare")["Contents"]]
    assert keys == ["top/obj"]
    assert [o.name for o in bare.list()] == ["top/obj"]
    assert bare.delete(["top/obj"]) == 1


def test_s3_large_write_is_multipart_and_intact(s3_endpoint: str, s3: Any) -> None:
    """~40 MiB in 1 MiB writes with 5 MiB parts arrives whole, as a multipart upload."""
    target = _s3_target(s3_endpoint, part_size_bytes=5 * MiB)
    expected = hashlib.sha256()
    size = 0
    with target.create("big/object.msb") as writer:
        for i in range(40):
            chunk = _blob(MiB, seed=i)
            writer.write(chunk)
            expected.update(chunk)
            size += len(chunk)
        writer.write(b"tail")
        expected.update(b"tail")
        size += 4
        written = writer.close()
    assert written.size == size
    assert written.sha256 == expected.hexdigest()
    assert writer.parts == 9  # eight full 5 MiB parts, and the rest
    head = s3.head_object(Bucket=BUCKET, Key=f"{target.prefix}/big/object.msb")  # type: ignore[attr-defined]
    assert head["ContentLength"] == size
    assert head["ETag"].strip('"').endswith("-9")  # S3's mark of a 9-part upload
    streamed = hashlib.sha256()
    for chunk in target.stream("big/object.msb", chunk_bytes=MiB):
        assert len(chunk) <= MiB
        streamed.update(chunk)
    assert streamed.hexdigest() == expected.hexdigest()
    assert _unfinished(target) == []


def test_s3_small_write_is_one_put(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """An object under one part is a single put_object, with no multipart upload."""
    target = _s3_target(s3_endpoint)
    client = target.client  # type: ignore[attr-defined]

    def no_multipart(**kwargs: Any) -> Any:
        raise AssertionError("create_multipart_upload called")

    monkeypatch.setattr(client, "create_multipart_upload", no_multipart)
    with target.create("small") as writer:
        writer.write(b"x" * 1000)
    assert writer.parts == 1
    assert target.read("small") == b"x" * 1000


def test_s3_delete_batches_by_1000(
    s3_endpoint: str, s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """delete sends delete_objects in batches of at most 1000 keys."""
    target = _s3_target(s3_endpoint)
    prefix = target.prefix  # type: ignore[attr-defined]
    names = [f"many/{i:04d}" for i in range(1003)]
    for name in names:
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/{name}", Body=b"")
    client = target.client  # type: ignore[attr-defined]
    batches: list[int] = []
    real = client.delete_objects

    def spy(**kwargs: Any) -> Any:
        batches.append(len(kwargs["Delete"]["Objects"]))
        return real(**kwargs)

    monkeypatch.setattr(client, "delete_objects", spy)
    assert target.delete([*names, "many/missing"]) == 1003
    assert batches == [1000, 3]
    assert target.list() == []


def test_s3_errors_name_object_and_target(s3_endpoint: str) -> None:
    """A missing bucket is a BackupTargetError (not ObjectMissing) naming object and target."""
    target = open_target("s3://no-such-bucket-here/p", endpoint_url=s3_endpoint)
    with pytest.raises(BackupTargetError) as caught:
        target.put("obj", b"1")
    assert not isinstance(caught.value, ObjectMissing)
    message = str(caught.value)
    assert "'obj'" in message and "s3://no-such-bucket-here/p" in message
    assert "NoSuchBucket" in message
    assert "testing" not in message  # no credentials
    with pytest.raises(BackupTargetError, match="NoSuchBucket"):
        target.list()


def test_target_from_settings(tmp_path: Path) -> None:
    """target_from_settings opens backup_url with the settings' part size."""
    from config.settings import Settings

    settings = Settings(backup_url=f"file://{tmp_path}/b", backup_part_size_bytes=128 << 10)
    target = target_from_settings(settings)
    assert isinstance(target, FileTarget)
    assert target.root == tmp_path / "b"
    assert target.buffer_bytes == 128 << 10
