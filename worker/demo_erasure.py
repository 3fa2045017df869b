"""The demo's erasure: a user with a conversation (half of it still in the WAL), memories and
state is erased while the workers run; the demo then checks, with ``verify``, that no store
holds anything of before, and that a message appended after the erasure is kept."""

from __future__ import annotations

import time

from rich.console import Console
from sqlalchemy import select

from core.client import MemoryClient
from core.erasure.job import ErasureJob
from core.erasure.verify import verify_subject
from core.store.db import messages

SUBJECT = "user-erase-me"
SESSION = "gdpr-demo"


def run(client: MemoryClient, console: Console, *, tenant: str) -> bool:
    """True when verify finds no residue and the message appended afterwards is durable."""
    for i in range(20):
        client.append(
            SESSION, "user", f"my phone number is 555-01{i:02d}", tenant=tenant, subject_id=SUBJECT
        )
    client.remember(SUBJECT, "lives at 12 Example Street", tenant=tenant, priority="HIGH")
    client.update_state(
        SESSION, lambda data: {**data, "address": "12 Example Street"}, tenant=tenant
    )
    eraser = MemoryClient(redis=client.redis, settings=client.settings, enqueue=lambda *_: None)
    receipt = eraser.erase_subject(SUBJECT, tenant=tenant, request_id=f"demo-{time.time_ns()}")
    after = client.append(
        SESSION, "user", "hello again, I am new here", tenant=tenant, subject_id=SUBJECT
    )
    done = ErasureJob(redis=client.redis, engine=client.engine, settings=client.settings).run(
        receipt.receipt_id
    )
    deadline = time.monotonic() + 60
    kept = False
    while time.monotonic() < deadline and not kept:
        with client.engine.connect() as connection:
            stored = connection.execute(
                select(messages.c.seq).where(
                    (messages.c.tenant == tenant) & (messages.c.session_id == SESSION)
                )
            ).scalars()
            kept = list(stored) == [after.seq]  # durable, and alone: nothing of before
        time.sleep(0.2)
    found = verify_subject(
        redis_client=client.redis,
        engine=client.engine,
        settings=client.settings,
        tenant=tenant,
        subject_id=SUBJECT,
    )
    removed = done.counts.get("removed", {})
    console.print(
        f"erasure: receipt {done.receipt_id} {done.status}; removed "
        f"{sum(removed.values())} records ({', '.join(f'{k} {v}' for k, v in removed.items())}); "
        f"verify {'clean' if found.clean else f'RESIDUE {found.residue}'}; the message "
        f"appended after it {'kept' if kept else 'MISSING'}"
    )
    return found.clean and kept
