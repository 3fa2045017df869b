"""verify, export and the erase / erasure / export commands (run as a subprocess)."""

from __future__ import annotations

import json

import pytest
import redis

from config.settings import Settings
from core.client import MemoryClient
from core.erasure.verify import verify_subject
from core.errors import ValidationError
from core.log.drainer import Drainer
from tests.integration.test_cli import memscribe


def _fill(client: MemoryClient, drainer: Drainer) -> None:
    for i in range(3):
        client.append("a", "user", f"alice says {i}", subject_id="alice")
    client.remember("alice", "alice likes tea")
    client.update_state("a", lambda data: {**data, "mood": "fine"})
    drainer.flush(timeout_s=10)
    client.append("a", "user", "alice undrained", subject_id="alice")


def test_export_holds_every_record_of_the_subject(client: MemoryClient, drainer: Drainer) -> None:
    _fill(client, drainer)
    client.append("b", "user", "bob says hi", subject_id="bob")
    document = json.loads("".join(client.export_subject("alice")))
    assert document["subject_id"] == "alice"
    [session] = document["sessions"]
    assert [m["content"] for m in session["messages"]] == [
        "alice says 0",
        "alice says 1",
        "alice says 2",
        "alice undrained",
    ]
    assert session["state"]["data"] == {"mood": "fine"}
    assert [m["content"] for m in document["memories"]] == ["alice likes tea"]
    assert "bob" not in json.dumps(document)


def test_verify_finds_residue_until_the_job_ran(
    client: MemoryClient, drainer: Drainer, settings: Settings
) -> None:
    _fill(client, drainer)
    with pytest.raises(ValidationError, match="no erasure"):
        verify_subject(
            redis_client=client.redis,
            engine=client.engine,
            settings=settings,
            tenant="default",
            subject_id="alice",
        )
    client._enqueue = lambda _name, _args: None
    client.erase_subject("alice", request_id="r1")
    before = verify_subject(
        redis_client=client.redis,
        engine=client.engine,
        settings=settings,
        tenant="default",
        subject_id="alice",
    )
    # Rows drained before the erasure wait for the job (unreadable once the keys are gone).
    assert not before.clean
    assert before.residue["messages"] == 3
    assert before.residue["wal"] >= 1  # the undrained entry, not trimmed yet


def test_the_commands_erase_verify_status_and_export(
    client: MemoryClient, drainer: Drainer, settings: Settings, redis_client: redis.Redis
) -> None:
    _fill(client, drainer)
    missing = memscribe(settings, "erasure", "verify", "alice")
    assert missing.returncode == 2, missing.stdout + missing.stderr
    exported = memscribe(settings, "export", "subject", "alice")
    assert exported.returncode == 0, exported.stderr
    assert len(json.loads(exported.stdout)["sessions"][0]["messages"]) == 4

    erased = memscribe(settings, "erase", "subject", "alice", "--request-id", "cli-1", "--json")
    assert erased.returncode == 0, erased.stdout + erased.stderr
    receipt = json.loads(erased.stdout)
    assert receipt["status"] == "completed"
    assert "alice" not in erased.stdout

    verified = memscribe(settings, "erasure", "verify", "alice", "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert json.loads(verified.stdout)["clean"] is True
    status = memscribe(settings, "erasure", "status", receipt["receipt_id"])
    assert status.returncode == 0 and "completed" in status.stdout
    bad = memscribe(settings, "erasure", "status", "not a receipt")
    assert bad.returncode == 2 and "receipt_id" in bad.stdout
