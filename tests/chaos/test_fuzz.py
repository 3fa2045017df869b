"""Fault: arbitrary input. It appends cleanly and round-trips exactly, or it is refused with
ValidationError and Redis is unchanged; it never touches another session's or tenant's keys."""

from __future__ import annotations

import uuid
from typing import Any

import redis
import sqlalchemy as sa
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from config.settings import Settings
from core.client import MemoryClient
from core.errors import ValidationError
from core.log.drainer import Drainer
from core.models import ROLES
from core.store.db import make_engine, messages
from tests.conftest import BROKER_URL, REDIS_URL

SAFE_ID = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,20}", fullmatch=True)
NASTY = "*?[]\\{}:/ \x00é😀"
IDS = st.one_of(SAFE_ID, st.text(alphabet=NASTY + "ab-", max_size=12), st.text(max_size=140))
ROLE = st.one_of(st.sampled_from(ROLES), st.text(max_size=12))
ANY_TEXT = st.text(alphabet=st.characters(exclude_categories=()), max_size=300)  # surrogates too
CONTENT = st.one_of(ANY_TEXT, st.binary(max_size=40), st.integers())
JSON_LEAF = st.one_of(st.none(), st.booleans(), st.integers(-(2**53), 2**53), st.floats(), ANY_TEXT)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(ANY_TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)
METADATA = st.one_of(
    st.none(),
    st.dictionaries(ANY_TEXT, JSON_VALUE, max_size=5),
    st.dictionaries(st.integers(), st.text(), min_size=1, max_size=2),
    JSON_VALUE,
)
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _client(pg_url: str) -> MemoryClient:
    test_settings = Settings(
        redis_url=REDIS_URL, broker_url=BROKER_URL, database_url=pg_url, shards=4
    )
    return MemoryClient(
        redis=redis.Redis.from_url(REDIS_URL, decode_responses=True), settings=test_settings
    )


def _snapshot(client: MemoryClient) -> dict[bytes, bytes | None]:
    raw = redis.Redis.from_url(REDIS_URL)
    state = {key: raw.dump(key) for key in raw.scan_iter(count=1000)}
    raw.close()
    return state


def _try_append(
    client: MemoryClient, tenant: Any, session_id: Any, role: Any, content: Any, metadata: Any
) -> Any:
    client.redis.flushdb()
    client.append("canary", "user", "another tenant's message", tenant="canary-tenant")
    before = _snapshot(client)
    try:
        result = client.append(session_id, role, content, tenant=tenant, metadata=metadata)
    except ValidationError as refused:
        event(f"refused: {refused.field}")
        assert _snapshot(client) == before
        return None
    event("accepted")
    after = _snapshot(client)
    changed = {key.decode() for key in after if before.get(key) != after[key]}
    assert changed <= set(client.keys.session(tenant, session_id).all()), changed
    return result


@FUZZ
@given(tenant=IDS, session_id=IDS, role=ROLE, content=CONTENT, metadata=METADATA)
def test_any_input_round_trips_or_is_refused_cleanly(
    pg_url: str, tenant: Any, session_id: Any, role: Any, content: Any, metadata: Any
) -> None:
    """Accepted input reads back exactly from context(); refused input changes nothing."""
    client = _client(pg_url)
    result = _try_append(client, tenant, session_id, role, content, metadata)
    if result is not None:
        [message] = client.context(session_id, tenant=tenant).messages
        assert (message.message_id, message.role, message.content, message.metadata) == (
            result.message_id,
            role,
            content,
            metadata,
        )
    client.redis.close()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(session_id=SAFE_ID, role=st.sampled_from(ROLES), content=CONTENT, metadata=METADATA)
def test_accepted_input_is_stored_byte_identical(
    pg_url: str, session_id: Any, role: Any, content: Any, metadata: Any
) -> None:
    """Whatever append accepts, the durable store keeps exactly (content and metadata)."""
    client = _client(pg_url)
    # A fresh tenant per example: Redis is flushed between examples, the durable store is not.
    result = _try_append(client, f"fuzz-{uuid.uuid4().hex}", session_id, role, content, metadata)
    if result is None:
        return
    engine = make_engine(pg_url)
    drainer = Drainer(redis=client.redis, engine=engine, settings=client.settings, consumer="fuzz")
    assert drainer.flush(timeout_s=30) == 0
    with engine.connect() as connection:
        row = connection.execute(
            sa.select(messages.c.role, messages.c.content, messages.c.metadata).where(
                messages.c.message_id == result.message_id
            )
        ).one()
    engine.dispose()
    assert (row.role, row.content, row.metadata) == (role, content, metadata)
    client.redis.close()
