"""The demo's long-term memories: every demo session's user remembers a few facts (one of
them twice, in other case and spacing), recalls them before any drain, waits until they are
durable, and consolidates (the exact duplicates fold without an LLM)."""

from __future__ import annotations

import time

from rich.console import Console
from sqlalchemy import func, select

from core.client import MemoryClient
from core.memories.consolidate import Consolidator
from core.store.db import memories

FACTS = [
    ("Prefers answers in short bullet points", "HIGH", ["style"]),
    ("Works on the billing team", "MEDIUM", ["work"]),
    ("Is allergic to peanuts", "CRITICAL", ["health"]),
    ("prefers answers in  short bullet points.", "LOW", ["style"]),  # an exact duplicate
]


def run(client: MemoryClient, console: Console, *, tenant: str, subjects: list[str]) -> bool:
    """Remember, recall, wait until durable, consolidate; print what happened. True if every
    memory was recallable at once and durable once, and every duplicate folded."""
    remembered = [
        client.remember(subject, text, tenant=tenant, priority=priority, tags=tags)
        for subject in subjects
        for text, priority, tags in FACTS
    ]
    recalled = sum(
        len(client.recall(subject, tenant=tenant, query="how should answers look?"))
        for subject in subjects
    )
    deadline = time.monotonic() + 120
    durable = 0
    with console.status("waiting for the memories to be durable"):
        while time.monotonic() < deadline:
            with client.engine.connect() as connection:
                durable = connection.execute(
                    select(func.count()).where(memories.c.tenant == tenant)
                ).scalar_one()
            if durable >= len(remembered):
                break
            time.sleep(0.25)
    consolidator = Consolidator(redis=client.redis, engine=client.engine, settings=client.settings)
    report = consolidator.consolidate_due(tenant=tenant)
    live = sum(len(client.recall(subject, tenant=tenant, k=50)) for subject in subjects)
    console.print(
        f"memories: {len(remembered)} remembered for {len(subjects)} users, {recalled} recalled "
        f"before any drain, {durable} durable; consolidation ({consolidator.merger.method}) "
        f"folded {report.exact} exact duplicates, {report.merged - report.exact} near; "
        f"{live} live memories now"
    )
    return (
        recalled == len(remembered)
        and durable == len(remembered)
        and report.exact == len(subjects)
        and live == len(remembered) - len(subjects)
    )
