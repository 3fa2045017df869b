"""The demo's conversation state: a few sessions each get a task stack, context and a counter
updated from 4 threads at once, and hand agent results over; then the demo waits until the
versions are durable and checks that none was lost."""

from __future__ import annotations

import threading
import time

from rich.console import Console
from sqlalchemy import func, select

from core.client import MemoryClient
from core.store.db import sessions, state_history

THREADS = 4
INCREMENTS = 25


def run(client: MemoryClient, console: Console, *, tenant: str, session_ids: list[str]) -> bool:
    """True when every version is durable once and every result was taken exactly once."""
    for session_id in session_ids:
        state = client.state(session_id, tenant=tenant)
        state.subject = "demo conversation"
        task = state.push_task("answer the question", ["understand", "research", "reply"])
        state.set_checkpoint_status(task["id"], "1", "in_progress")
        state.context["lang"] = "en"
        state.save(actor="demo")

    def bump(session_id: str) -> None:
        for _ in range(INCREMENTS):
            client.update_state(
                session_id, lambda d: {**d, "turns": d.get("turns", 0) + 1}, tenant=tenant
            )

    threads = [
        threading.Thread(target=bump, args=(session_id,))
        for session_id in session_ids
        for _ in range(THREADS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    results = {
        client.put_result(session_id, {"step": i}, tenant=tenant)
        for session_id in session_ids
        for i in range(5)
    }
    taken = [
        result.result_id
        for session_id in session_ids
        for result in client.take_unconsumed(session_id, tenant=tenant, limit=50)
    ]
    expected_versions = len(session_ids) * (1 + THREADS * INCREMENTS)
    deadline = time.monotonic() + 120
    durable = 0
    with console.status("waiting for the state versions to be durable"):
        while time.monotonic() < deadline:
            with client.engine.connect() as connection:
                durable = connection.execute(
                    select(func.count()).where(state_history.c.tenant == tenant)
                ).scalar_one()
            if durable >= expected_versions:
                break
            time.sleep(0.25)
    with client.engine.connect() as connection:
        stored_turns = [
            (row.state or {}).get("data", {}).get("turns")
            for row in connection.execute(
                select(sessions.c.state).where(
                    (sessions.c.tenant == tenant) & sessions.c.session_id.in_(session_ids)
                )
            )
        ]
    counts_ok = stored_turns == [THREADS * INCREMENTS] * len(session_ids)
    console.print(
        f"state: {len(session_ids)} sessions, {THREADS} threads x {INCREMENTS} update_state "
        f"each; {durable} of {expected_versions} versions durable; "
        f"{len(taken)} of {len(results)} agent results taken, each once"
    )
    return (
        durable == expected_versions
        and counts_ok
        and sorted(taken) == sorted(results)
        and len(set(taken)) == len(taken)
    )
