"""Key shapes, shards and generated ids."""

from __future__ import annotations

import re
import subprocess
import sys
import zlib

from core.models import ID_PATTERN, new_message_id
from core.store.keys import Keys, shard_of
from tests.conftest import ROOT


def test_shard_is_crc32_of_tenant_and_session() -> None:
    """shard = crc32(tenant/session) % shards, the same in every process."""
    assert shard_of("default", "abc", 16) == zlib.crc32(b"default/abc") % 16
    assert {shard_of("t", f"s{i}", 16) for i in range(500)} == set(range(16))


def test_session_keys_share_the_shard_tag() -> None:
    """Session keys and the shard's WAL carry the same {shard} hash tag."""
    keys = Keys("ms", 16).session("acme", "chat-1")
    tag = f"{{{keys.shard}}}"
    assert all(key.startswith(f"ms:{tag}:") for key in keys.all())
    assert keys.wal == f"ms:{tag}:wal"


def test_uuid7_is_valid_and_time_ordered() -> None:
    """Generated message ids are RFC 9562 UUIDv7 strings, sortable by creation time."""
    ids = [new_message_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    pattern = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")
    assert all(pattern.fullmatch(i) and ID_PATTERN.fullmatch(i) for i in ids)
    prefixes = [i[:13] for i in ids]  # the 48-bit millisecond clock
    assert prefixes == sorted(prefixes)


def test_core_imports_no_celery() -> None:
    """core/ stays Celery-free: importing every module loads no celery package."""
    modules = sorted(p.stem for p in (ROOT / "core").glob("*.py") if p.stem != "__init__")
    code = (
        "import sys\n"
        + "".join(f"import core.{m}\n" for m in modules)
        + "loaded = [m for m in sys.modules if m.split('.')[0] in ('celery', 'kombu')]\n"
        + "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
