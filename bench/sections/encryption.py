"""Encryption's cost on the drain: one in-process drainer, ``encrypt_content`` on vs off.

Each repetition runs three variants (their order rotates) on the same workload: every session
belongs to a subject (``subject-<n>``, one per session), so with encryption on every message
is sealed under its subject's data key. Per variant: empty the tables, append the messages
with the drain stopped, then time one ``Drainer.flush`` (a new drainer, cold caches) from the
first read to a zero backlog.

- plain: ``encrypt_content`` off.
- sealed, keys exist: every subject has its data key and the drainer's process has it cached
  (the steady state of a long-running worker).
- sealed, creating every key: an empty key store, so the timed drain also creates (and wraps,
  and inserts) one data key per subject: the worst case, every subject new.

Figures: the throughputs (medians) and each sealed variant's per-repetition ratio to plain.

If sealed / plain falls below 0.85 (encryption costs more than 15% of drain throughput),
``MEMSCRIBE_ENCRYPT_CONTENT`` stays a documented setting with this figure in
docs/encryption.md.
"""

from __future__ import annotations

import base64
import os
import time

import sqlalchemy as sa
from pydantic import SecretStr

from bench import stores
from bench.context import BenchContext, log
from bench.figures import Figure, Samples, Target, summarize
from bench.section import Section
from config.settings import Settings
from core.client import MemoryClient
from core.crypto.vault import keyed_engine, vault_for
from core.log.drainer import Drainer

COST_TARGET = Target(">=", 0.85)
# Messages per append_many call (one Redis round trip each): appending is not what is timed.
_CHUNK = 100
# Random keys for the run: the bench never writes a development secrets file.
_KEK = base64.b64encode(os.urandom(32)).decode()
_HASH_KEY = base64.b64encode(os.urandom(32)).decode()


def _settings(ctx: BenchContext, *, encrypt: bool) -> Settings:
    return ctx.settings.model_copy(
        update={
            "encrypt_content": encrypt,
            "kek": SecretStr(_KEK),
            "kek_id": "bench",
            "hash_key": SecretStr(_HASH_KEY),
        }
    )


def _append(ctx: BenchContext, client: MemoryClient, tenant: str, count: int) -> None:
    workload = ctx.workload
    by_session: dict[str, list[dict[str, str]]] = {}
    for i in range(count):
        by_session.setdefault(workload.session(i), []).append(
            {"role": workload.role(i), "content": workload.content(i)}
        )
    for session, items in by_session.items():
        subject = "subject-" + session.rsplit("-", 1)[-1]
        for first in range(0, len(items), _CHUNK):
            client.append_many(
                session, items[first : first + _CHUNK], tenant=tenant, subject_id=subject
            )


def _subjects(ctx: BenchContext, tenant: str, count: int) -> list[tuple[str, str]]:
    sessions = {ctx.workload.session(i) for i in range(count)}
    return sorted((tenant, "subject-" + session.rsplit("-", 1)[-1]) for session in sessions)


def _drain(ctx: BenchContext, *, variant: str, tenant: str) -> float:
    encrypt = variant != "plain"
    settings = _settings(ctx, encrypt=encrypt)
    count = ctx.config.throughput_messages
    engine = keyed_engine(settings)
    try:
        stores.flush_redis(ctx.redis)
        with engine.begin() as connection:
            connection.execute(sa.text("TRUNCATE messages, sessions, subject_keys"))
        if variant == "warm":
            # The steady state: the subjects have keys and this drainer process cached them.
            vault_for(engine, settings).keystore.keys_for(_subjects(ctx, tenant, count))
        client = MemoryClient(redis=ctx.redis, settings=settings, engine=engine)
        _append(ctx, client, tenant, count)
        drainer = Drainer(redis=ctx.redis, engine=engine, settings=settings, consumer="bench")
        started = time.perf_counter()
        left = drainer.flush(timeout_s=60 + count / 200)
        elapsed = time.perf_counter() - started
        if left:
            raise stores.BenchError(f"encryption: {left} entries left after the drain")
        if (stored := stores.count_rows(engine, tenant)) != count:
            raise stores.BenchError(f"encryption: {stored} rows stored for {count} messages")
        with engine.connect() as connection:
            sealed = connection.execute(
                sa.text("SELECT count(*) FROM messages WHERE key_id IS NOT NULL")
            ).scalar_one()
        if sealed != (count if encrypt else 0):
            raise stores.BenchError(f"encryption={encrypt}: {sealed} of {count} rows sealed")
        return count / elapsed
    finally:
        engine.dispose()


def run(ctx: BenchContext) -> list[Figure]:
    samples = Samples()
    ctx.reset()
    variants = ["plain", "warm", "cold"]
    for repetition in range(ctx.config.repetitions):
        order = variants[repetition % 3 :] + variants[: repetition % 3]
        for variant in order:
            samples.add(variant, _drain(ctx, variant=variant, tenant=f"enc-{variant}-{repetition}"))
        log(
            f"encryption {repetition + 1}/{ctx.config.repetitions}: "
            + ", ".join(f"{v} {samples[v][-1]:,.0f} msg/s" for v in variants)
        )
    ctx.reset()
    return [
        summarize(
            "encryption.drain_plain", "drain, encrypt_content off", "msg/s", samples["plain"]
        ),
        summarize(
            "encryption.drain_sealed",
            "drain, encrypt_content on (keys exist)",
            "msg/s",
            samples["warm"],
        ),
        summarize(
            "encryption.drain_sealed_cold",
            "drain, encrypt_content on (creating every key)",
            "msg/s",
            samples["cold"],
        ),
        summarize(
            "encryption.sealed_vs_plain",
            "sealed (keys exist) / plain",
            "x",
            samples.ratio("warm", "plain"),
            anchor="encryption.drain_plain",
            target=COST_TARGET,
        ),
        summarize(
            "encryption.sealed_cold_vs_plain",
            "sealed (creating every key) / plain",
            "x",
            samples.ratio("cold", "plain"),
            anchor="encryption.drain_plain",
        ),
    ]


SECTION = Section(
    key="encryption",
    title="Encryption's cost on the drain (one in-process drainer, every message a subject's)",
    run=run,
    notes=(
        "All variants in every repetition, order rotating, 1 subject per session. 'Keys "
        "exist': the drainer's process already holds them (steady state). 'Creating every "
        "key': an empty key store, one data key per subject made during the timed drain."
    ),
)
