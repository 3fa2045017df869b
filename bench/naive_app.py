"""The naive design memscribe is measured against: one Celery task per message, INSERT + COMMIT.

Its own Celery app on its own broker database (``MEMSCRIBE_BENCH_NAIVE_BROKER_URL``), so it
shares nothing with memscribe's. Celery's defaults plus JSON, as a typical app would run it.
The message content travels in the task arguments: that is the design under test, and the
reason memscribe does not do it (DESIGN.md P8). It lives here, never in ``tasks/``.

Worker: ``celery -A bench.naive_app worker -Q naive -c 1``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from celery import Celery
from sqlalchemy import Engine, create_engine

from bench.config import Stores
from core.store.db import messages

QUEUE = "naive"
_stores = Stores.from_env(check=False)  # the harness checks them, and says so more politely

app = Celery("memscribe-bench-naive")
app.conf.update(
    broker_url=_stores.naive_broker_url,
    broker_connection_retry_on_startup=True,
    task_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_default_queue=QUEUE,
    worker_hijack_root_logger=False,
)

# Built on first use, so each forked pool child makes its own (an inherited pool is unsafe).
_engine: Engine | None = None


def engine() -> Engine:
    global _engine
    if _engine is None:
        # SQLAlchemy's defaults: no pre-ping, so the naive app pays one round trip less per
        # message than memscribe's make_engine() would charge it (the anchor errs in its favour).
        _engine = create_engine(_stores.database_url)
    return _engine


def save_message(
    target: Engine,
    *,
    message_id: str,
    tenant: str,
    session_id: str,
    seq: int,
    role: str,
    content: str,
    tokens: int,
    created_us: int,
) -> None:
    """What the naive app does per message: one INSERT, one COMMIT, through SQLAlchemy."""
    with target.begin() as connection:
        connection.execute(
            messages.insert().values(
                message_id=message_id,
                tenant=tenant,
                session_id=session_id,
                seq=seq,
                role=role,
                content=content,
                tokens=tokens,
                created_at=datetime.fromtimestamp(created_us / 1_000_000, tz=UTC),
            )
        )


@app.task(name="naive.save")  # type: ignore[untyped-decorator]
def save(**fields: Any) -> None:
    save_message(engine(), **fields)
