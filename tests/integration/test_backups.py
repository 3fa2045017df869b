"""Backups on real PostgreSQL (and SQLite) into a file target: restore drills row by row,
incrementals that carry deletions, erasure that reaches old backups, corruption and missing
objects, prune, and one backup per schedule slot."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from config.settings import Settings
from core.backups import (
    BackupNotFound,
    BackupTargetError,
    LiveKeys,
    Restorer,
    load_catalog,
    open_target,
    run_backup,
    run_prune,
    verify,
)
from core.backups.frames import FrameError, FrameStream, open_frame
from core.backups.keyexport import ExportedKeys, list_exports, prune_exports
from core.backups.keys import unwrap_key
from core.backups.manifest import ROWS, Manifest
from core.backups.target import Target, target_from_settings
from core.client import MemoryClient
from core.crypto.keystore import KeyStore
from core.crypto.secrets import load_secrets
from core.erasure.job import ErasureJob
from core.log.drainer import Drainer
from core.store.db import make_engine, messages, sessions
from tests.conftest import both_backends
from tests.helpers.backup_data import METADATA, differences, seed, table_rows


@pytest.fixture
def settings(make_settings: Callable[..., Settings], database_url: str, tmp_path: Path) -> Settings:
    return make_settings(
        database_url=database_url,
        backup_url=f"file://{tmp_path / 'backups'}",
        backup_batch_rows=100,
        backup_full_every=3,
        backup_keep_full=2,
    )


@pytest.fixture
def fresh_url(database_url: str, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """Empty databases (not migrated) beside the test's own: PostgreSQL or SQLite alike."""
    made: list[str] = []

    def make(name: str) -> str:
        if database_url.startswith("sqlite"):
            return f"sqlite:///{tmp_path / f'{name}.db'}"
        url = make_url(database_url)
        database = f"{url.database}_{name}"
        admin = sa.create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
            connection.execute(sa.text(f'CREATE DATABASE "{database}"'))
        admin.dispose()
        made.append(database)
        return url.set(database=database).render_as_string(hide_password=False)

    yield make


def _restore(settings: Settings, backup_id: str, into: str) -> dict[str, object]:
    keystore = KeyStore.from_settings(settings)
    try:
        report = Restorer(
            target=target_from_settings(settings),
            secrets=keystore.secrets,
            keys=LiveKeys(keystore),
        ).run(backup_id, into=into)
    finally:
        keystore.dispose()
    return report.as_dict()


def _backup(client: MemoryClient, kind: str = "auto") -> dict[str, object]:
    report = run_backup(
        redis=client.redis, engine=client.engine, settings=client.settings, kind=kind
    )
    assert report.ran, report.reason
    return report.backup


def _seeded_backup(client: MemoryClient, drainer: Drainer) -> tuple[Target, Manifest]:
    """The seeded store, backed up (full): the file target and the backup's manifest."""
    seed(client, drainer)
    backup = _backup(client)
    target = open_target(client.settings.backup_url)
    return target, load_catalog(target).get(str(backup["id"]))


@both_backends
def test_restore_drill_reproduces_every_row(
    client: MemoryClient, drainer: Drainer, fresh_url: Callable[[str], str]
) -> None:
    """A full backup restored into a fresh database equals the source, table by table."""
    seed(client, drainer)
    backup = _backup(client)
    source = table_rows(client.settings.database_url)
    restored_url = fresh_url("drill")

    report = _restore(client.settings, str(backup["id"]), restored_url)

    assert backup["kind"] == "full"
    manifest = load_catalog(open_target(client.settings.backup_url)).get(str(backup["id"]))
    assert not {"subject_keys", "key_epochs"} & set(manifest.tables)  # never the key store
    assert (
        sum(len(rows) for name, rows in source.items() if name != "subject_keys")
        == (report["rows"])
    )
    assert differences(source, table_rows(restored_url)) == []
    assert source["messages"] and source["memories"] and source["state_history"]
    assert source["summaries"] and source["llm_usage"] and source["agent_results"]


@both_backends
def test_incremental_chain_carries_inserts_updates_and_deletions(
    client: MemoryClient, drainer: Drainer, fresh_url: Callable[[str], str]
) -> None:
    """An incremental holds only what changed, and its chain restores deletions too."""
    made = seed(client, drainer)
    full = _backup(client)
    # Changes of every kind: new rows, a deleted message, a cleared session, a forgotten
    # memory, a state update.
    client.append(made["sessions"][1], "user", "a later message", subject_id=made["subjects"][0])
    first = made["sessions"][0]
    gone = client.history(first).messages[0]
    assert client.delete_message(gone.message_id, session_id=first)
    doomed = client.history(made["sessions"][2]).messages
    client.clear_session(made["sessions"][2])
    memory = client.recall(made["subjects"][1])[0]
    assert client.forget(memory.memory_id)
    client.update_state(first, lambda data: {**data, "step": 3})
    drainer.drain_all()
    incremental = _backup(client)
    source = table_rows(client.settings.database_url)
    url = fresh_url("chain")

    report = _restore(client.settings, str(incremental["id"]), url)

    assert incremental["kind"] == "incremental" and incremental["parent"] == full["id"]
    assert int(str(incremental["rows"])) < int(str(full["rows"]))
    assert report["chain"] == [full["id"], incremental["id"]]
    assert differences(source, table_rows(url)) == []
    assert doomed  # the cleared session had messages, and none came back
    catalog = load_catalog(open_target(client.settings.backup_url))
    deleted = catalog.get(str(incremental["id"])).tables
    assert deleted["messages"].deleted >= len(doomed) + 1
    assert deleted["memories"].deleted + deleted["memories"].rows >= 1


def test_erased_subject_never_comes_back_from_an_old_backup(
    client: MemoryClient, drainer: Drainer, fresh_url: Callable[[str], str]
) -> None:
    """Backup, erase a subject, restore the old backup: 0 rows of the subject; its frames
    do not open with any key there is."""
    made = seed(client, drainer)
    backup = _backup(client)
    erased = made["subjects"][0]
    client._enqueue = lambda name, args: None  # the job runs here, in-process
    receipt = client.erase_subject(erased, request_id="erase-1")
    ErasureJob(redis=client.redis, engine=client.engine, settings=client.settings).run(
        receipt.receipt_id
    )
    url = fresh_url("erased")

    report = _restore(client.settings, str(backup["id"]), url)

    engine = make_engine(url)
    with engine.connect() as connection:
        erased_sessions = [s for s in made["sessions"] if s.startswith("s-a0-")]
        left = connection.execute(
            sa.select(sa.func.count())
            .select_from(messages)
            .where(messages.c.session_id.in_(erased_sessions))
        ).scalar_one()
        subjects = set(connection.execute(sa.select(sessions.c.subject_id)).scalars())
        memories_left = connection.execute(
            sa.text("SELECT count(*) FROM memories WHERE subject_id = :s"), {"s": erased}
        ).scalar_one()
        # The subject's LangGraph checkpoints (MemscribeSaver subject_key): none come back;
        # the anonymous thread's do.
        checkpoints_left = {
            table: connection.execute(
                sa.text(f"SELECT count(*) FROM {table} WHERE subject_id = :s"), {"s": erased}
            ).scalar_one()
            for table in ("checkpoints", "checkpoint_blobs", "checkpoint_writes")
        }
        anonymous_checkpoints = connection.execute(
            sa.text("SELECT count(*) FROM checkpoints WHERE subject_id IS NULL")
        ).scalar_one()
    engine.dispose()
    assert checkpoints_left == dict.fromkeys(checkpoints_left, 0)
    assert anonymous_checkpoints == 1
    assert left == 0 and memories_left == 0 and erased not in subjects
    assert made["subjects"][1] in subjects  # the others are all there
    assert sum(report["skipped_erased"].values()) > 0  # type: ignore[attr-defined]
    # Directly: every frame under the erased subject's keys fails to open, whatever key the
    # backup or key store can offer.
    target = open_target(client.settings.backup_url)
    manifest = load_catalog(target).get(str(backup["id"]))
    keystore = KeyStore.from_settings(client.settings)
    own = unwrap_key(keystore.secrets, manifest.backup_key)
    offered = [own] + [key.key for key in keystore.get_many(receipt.key_ids).values()]
    assert keystore.get_many(receipt.key_ids) == {}
    keystore.dispose()
    tried = 0
    for entry in manifest.objects:
        if entry.role != ROWS:
            continue
        for frame in FrameStream(target.stream(entry.name), entry.name):
            if frame.key_id in receipt.key_ids:
                for key in offered:
                    with pytest.raises(FrameError):
                        open_frame(frame, key, entry.name)
                tried += 1
    assert tried >= 3  # sessions, messages, memories of the subject


def test_a_flipped_byte_fails_verify_and_names_the_object(
    client: MemoryClient, drainer: Drainer, fresh_url: Callable[[str], str], tmp_path: Path
) -> None:
    """One changed byte: verify fails naming the object; restore refuses and writes nothing."""
    target, manifest = _seeded_backup(client, drainer)
    victim = manifest.objects_of("messages", ROWS)[0].name
    path = tmp_path / "backups" / victim
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    path.write_bytes(bytes(raw))

    [result] = verify(target, load_secrets(client.settings), manifest.id)

    assert not result.ok and any(victim in problem for problem in result.problems)
    url = fresh_url("flipped")
    with pytest.raises(BackupTargetError, match="messages"):
        _restore(client.settings, manifest.id, url)
    assert table_rows(url)["messages"] == []


def test_a_missing_object_fails_verify_and_restore_before_any_write(
    client: MemoryClient, drainer: Drainer, fresh_url: Callable[[str], str], tmp_path: Path
) -> None:
    """A deleted object: verify names it, restore fails at once and the database stays empty."""
    target, manifest = _seeded_backup(client, drainer)
    victim = manifest.objects_of("memories", ROWS)[0].name
    target.delete([victim])

    [result] = verify(target, load_secrets(client.settings), manifest.id)
    url = fresh_url("missing")
    with pytest.raises(BackupTargetError, match="missing"):
        _restore(client.settings, manifest.id, url)

    assert not result.ok and any(victim in problem for problem in result.problems)
    engine = make_engine(url)
    with engine.connect() as connection:
        has_tables = sa.inspect(connection).has_table("messages")
    engine.dispose()
    assert not has_tables  # refused before the migration: nothing at all was written


def test_prune_keeps_the_newest_fulls_and_their_incrementals(
    client: MemoryClient, drainer: Drainer
) -> None:
    """keep_full=2, full every 3rd: prune drops the oldest chain, keeps two whole chains."""
    made = seed(client, drainer, subjects=1, sessions_per_subject=1)
    taken = []
    for n in range(7):  # F I I F I I F
        client.append(made["sessions"][0], "user", f"more {n}", subject_id=made["subjects"][0])
        drainer.drain_all()
        taken.append(_backup(client))
    kinds = [b["kind"] for b in taken]

    report = run_prune(redis=client.redis, settings=client.settings)

    assert kinds == ["full", "incremental", "incremental"] * 2 + ["full"]
    left = load_catalog(open_target(client.settings.backup_url))
    assert sorted(left.manifests) == sorted(str(b["id"]) for b in taken[3:])
    assert sorted(report.deleted) == sorted(str(b["id"]) for b in taken[:3])
    assert left.orphans() == {}


def test_overlapping_scheduled_runs_make_one_backup_per_slot(
    client: MemoryClient, drainer: Drainer
) -> None:
    """Four scheduled runs at once and one more after: a single backup in the slot."""
    seed(client, drainer, subjects=1)
    settings = client.settings.model_copy(update={"backup_interval_s": 3600.0})
    results = []

    def scheduled() -> None:
        results.append(
            run_backup(redis=client.redis, engine=client.engine, settings=settings, scheduled=True)
        )

    threads = [threading.Thread(target=scheduled) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    scheduled()

    assert sum(report.ran for report in results) == 1
    assert len(load_catalog(open_target(settings.backup_url)).manifests) == 1
    assert all("slot" in r.reason or "lease" in r.reason for r in results if not r.ran)


def test_the_restored_database_works_on_its_own(
    client: MemoryClient,
    drainer: Drainer,
    fresh_url: Callable[[str], str],
    make_settings: Callable[..., Settings],
) -> None:
    """Pointed at the restored database (its own key store) with an empty Redis, context()
    reads the sealed messages back, and Redis re-warms."""
    made = seed(client, drainer)
    backup = _backup(client)
    url = fresh_url("alone")
    _restore(client.settings, str(backup["id"]), url)
    client.redis.flushdb()
    restored = MemoryClient(
        redis=client.redis, settings=make_settings(database_url=url, keystore_url=url)
    )
    session = made["sessions"][0]

    context = restored.context(session)
    history = restored.history(session).messages

    subject = made["subjects"][0]
    assert [m.content for m in history] == [f"{subject} says {n}: naïve café ✓" for n in range(4)]
    assert history[0].metadata == METADATA
    assert context.summary == f"{subject} said hello twice"  # the summary through seq 2
    assert [m.content for m in context.messages] == [m.content for m in history[2:]]
    assert restored.context(session).messages == context.messages  # now from Redis
    restored.engine.dispose()


def test_rows_past_their_retention_are_skipped_and_counted(
    client: MemoryClient, drainer: Drainer, fresh_url: Callable[[str], str]
) -> None:
    """A restore two years later skips every message (a year's retention) and says so."""
    seed(client, drainer)
    backup = _backup(client)
    source = table_rows(client.settings.database_url)
    keystore = KeyStore.from_settings(client.settings)
    later = datetime.now(UTC) + timedelta(days=730)
    url = fresh_url("later")

    report = Restorer(
        target=target_from_settings(client.settings),
        secrets=keystore.secrets,
        keys=LiveKeys(keystore),
        now=later,
    ).run(str(backup["id"]), into=url)
    keystore.dispose()

    assert report.expired["messages"] == len(source["messages"]) > 0
    assert report.restored["messages"] == 0
    assert table_rows(url)["messages"] == []
    assert report.restored["memory_lineage"] == len(source["memory_lineage"])


def test_a_key_store_export_restores_when_the_key_store_is_lost(
    client: MemoryClient, drainer: Drainer, fresh_url: Callable[[str], str]
) -> None:
    """Every backup run writes a key-store export; with it, a restore needs no live key store.
    Exports past their retention are pruned."""
    seed(client, drainer)
    report = run_backup(redis=client.redis, engine=client.engine, settings=client.settings)
    source = table_rows(client.settings.database_url)
    target = target_from_settings(client.settings)
    assert report.keystore_export in [body["id"] for body in list_exports(target)]
    keys = ExportedKeys(target, load_secrets(client.settings), str(report.keystore_export))
    url = fresh_url("exported")

    Restorer(target=target, secrets=load_secrets(client.settings), keys=keys).run(
        str(report.backup["id"]), into=url
    )

    assert differences(source, table_rows(url)) == []
    later = datetime.now(UTC) + timedelta(seconds=client.settings.keystore_export_retention_s + 1)
    assert (
        prune_exports(target, retention_s=client.settings.keystore_export_retention_s, now=later)
        == 2
    )
    assert list_exports(target) == []


def test_prune_never_deletes_the_newest_backup_that_verifies(
    client: MemoryClient, drainer: Drainer, make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    """keep_full=1 with the newest full corrupted: the newest one that verifies stays too."""
    seed(client, drainer, subjects=1, sessions_per_subject=1)
    settings = client.settings.model_copy(update={"backup_full_every": 1, "backup_keep_full": 1})
    taken = [
        run_backup(redis=client.redis, engine=client.engine, settings=settings).backup["id"]
        for _ in range(3)
    ]
    target = open_target(settings.backup_url)
    newest = load_catalog(target).get(taken[-1])
    victim = tmp_path / "backups" / newest.objects_of("messages", ROWS)[0].name
    victim.write_bytes(victim.read_bytes()[:-1] + b"\x00")

    report = run_prune(redis=client.redis, settings=settings)

    assert sorted(report.kept) == sorted(taken[1:])
    assert report.deleted == [taken[0]]
    assert set(load_catalog(target).manifests) == set(taken[1:])


def test_a_changed_manifest_is_no_backup_and_fails_verify(
    client: MemoryClient, drainer: Drainer, tmp_path: Path
) -> None:
    """An edited manifest fails its own checksum: not listed, not restorable, a verify failure."""
    target, manifest = _seeded_backup(client, drainer)
    path = tmp_path / "backups" / "backups" / manifest.id / "manifest.json"
    path.write_bytes(path.read_bytes().replace(b'"kind": "full"', b'"kind": "incremental"'))

    catalog = load_catalog(target)
    results = verify(target, load_secrets(client.settings))

    assert catalog.manifests == {} and manifest.id in catalog.broken
    assert [(r.backup_id, r.ok) for r in results] == [(manifest.id, False)]
    assert "checksum" in results[0].problems[0]
    with pytest.raises(BackupNotFound, match="checksum"):
        catalog.chain(manifest.id)
