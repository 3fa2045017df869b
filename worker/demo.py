"""``memscribe demo``: a synthetic chat workload through the real pieces, on embedded defaults.

Starts what is missing (a private redis-server, a worker, beat), appends thousands of messages
from several threads, waits until every one is durable, reports, and stops what it started.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
import uuid
from pathlib import Path
from subprocess import Popen

from rich.console import Console
from rich.progress import Progress
from rich.table import Table
from sqlalchemy import func, select

from config.settings import Settings
from core.client import MemoryClient
from core.store.db import messages, migrate, summaries
from core.store.tokens import token_counter
from core.summaries.status import summarization_status
from worker import demo_backup, demo_erasure, demo_memories, demo_state, processes

console = Console()
DEMO_TRIGGER_TOKENS = 250
DEMO_KEEP_RECENT_TOKENS = 80
TOPICS = ["billing", "a refund", "the API rate limit", "onboarding", "an outage", "pricing"]
USER_LINES = [
    "Hi, I need help with {topic}.",
    "Can you explain how {topic} works for a team of {n}?",
    "That did not work: the dashboard still shows error {n}.",
    "Thanks! One more question about {topic}.",
]
ASSISTANT_LINES = [
    "Sure. For {topic}, open Settings and choose the plan that fits {n} seats.",
    "I checked {topic}: the limit is {n} requests per minute per key.",
    "Sorry about that. I have escalated {topic} as ticket #{n}; you will hear back today.",
]


def _line(index: int, rng: random.Random) -> tuple[str, str]:
    role = "user" if index % 2 == 0 else "assistant"
    lines = USER_LINES if role == "user" else ASSISTANT_LINES
    text = rng.choice(lines).format(topic=rng.choice(TOPICS), n=rng.randint(2, 9999))
    return role, text


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return statistics.quantiles(values, n=1000, method="inclusive")[int(q * 10) - 1]


def run_demo(
    settings: Settings,
    *,
    sessions: int,
    messages_total: int = 0,
    messages: int = 0,
    appenders: int = 4,
) -> int:
    total = messages or messages_total
    started: list[Popen[bytes]] = []
    logs = Path("var/demo")
    logs.mkdir(parents=True, exist_ok=True)
    # Fail before starting anything when the tokenizer cannot load (offline, no cache dir).
    token_counter(settings.tokenizer, settings.model)
    try:
        if not processes.redis_answers(settings.redis_url):
            console.print(f"no Redis at {settings.redis_url}: starting a private redis-server")
            started.append(processes.start_private_redis(settings.redis_url, workdir=logs))
        migrate(settings.database_url)
        console.print(f"durable store: {settings.database_url.split('@')[-1]} (migrated)")
        started.append(
            processes.start(
                # Supervised: restarted if it exits or stops draining (worker/supervisor.py).
                processes.supervised_worker_command(["persist", "llm"], loglevel="WARNING"),
                log_path=logs / "worker.log",
            )
        )
        started.append(
            processes.start(
                processes.supervised_beat_command(loglevel="WARNING"), log_path=logs / "beat.log"
            )
        )
        console.print(f"worker and beat started (logs in {logs}/)")
        return _drive(settings, sessions=sessions, total=total, appenders=appenders)
    finally:
        for process in reversed(started):
            processes.stop(process)


def _wait_until_live(client: MemoryClient, tenant: str, timeout_s: float = 60) -> None:
    """Append one message and wait until a worker has made it durable: the pipeline is up."""
    probe = client.append("warm-up", "system", "is the pipeline live?", tenant=tenant)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with client.engine.connect() as connection:
            found = connection.execute(
                select(func.count()).where(messages.c.message_id == probe.message_id)
            ).scalar_one()
        if found:
            return
        time.sleep(0.1)
    raise RuntimeError(f"no worker made a message durable within {timeout_s:.0f}s (see var/demo/)")


def _drive(settings: Settings, *, sessions: int, total: int, appenders: int) -> int:
    client = MemoryClient.from_settings(settings)
    tenant = f"demo-{uuid.uuid4().hex[:8]}"
    with console.status("waiting for the worker to drain its first message"):
        _wait_until_live(client, f"{tenant}-warmup")
    session_ids = [f"chat-{i:04d}" for i in range(sessions)]
    for session_id in session_ids:
        # A low per-session trigger, so a short demo conversation crosses it and gets a summary.
        client.configure_session(
            session_id,
            tenant=tenant,
            summary_trigger_tokens=DEMO_TRIGGER_TOKENS,
            keep_recent_tokens=DEMO_KEEP_RECENT_TOKENS,
        )
    latencies_ms: list[float] = []
    lock = threading.Lock()

    with Progress(console=console) as progress:
        appending = progress.add_task("appending", total=total)

        def appender(worker_index: int) -> None:
            rng = random.Random(worker_index)
            mine = session_ids[worker_index::appenders]
            count = total // appenders + (1 if worker_index < total % appenders else 0)
            local: list[float] = []
            for i in range(count):
                session_id = mine[i % len(mine)]
                role, text = _line(i // len(mine), rng)
                began = time.perf_counter()
                client.append(session_id, role, text, tenant=tenant)
                local.append((time.perf_counter() - began) * 1000)
                progress.advance(appending)
            with lock:
                latencies_ms.extend(local)

        threads = [threading.Thread(target=appender, args=(i,)) for i in range(appenders)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        durable_task = progress.add_task("durable in the store", total=total)
        deadline = time.monotonic() + 180
        durable = distinct = 0
        while time.monotonic() < deadline:
            with client.engine.connect() as connection:
                durable, distinct = connection.execute(
                    select(func.count(), func.count(func.distinct(messages.c.message_id))).where(
                        messages.c.tenant == tenant
                    )
                ).one()
            progress.update(durable_task, completed=durable)
            if durable >= total:
                break
            time.sleep(0.25)

    with client.engine.connect() as connection:
        rows = connection.execute(
            select(messages.c.created_at, messages.c.persisted_at).where(
                messages.c.tenant == tenant
            )
        ).all()
    lags_ms = [
        (persisted.replace(tzinfo=None) - created.replace(tzinfo=None)).total_seconds() * 1000
        for created, persisted in rows
    ]
    table = Table(title=f"memscribe demo (tenant {tenant})")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_row("sessions", str(sessions))
    table.add_row("appended", str(total))
    table.add_row("durable", str(durable))
    table.add_row("duplicates", str(durable - distinct))
    table.add_row(
        "append p50 / p99 (ms)",
        f"{_percentile(latencies_ms, 50):.3f} / {_percentile(latencies_ms, 99):.3f}",
    )
    table.add_row(
        "append-to-durable lag p50 / p99 (ms)",
        f"{_percentile(lags_ms, 50):.0f} / {_percentile(lags_ms, 99):.0f}",
    )
    console.print(table)
    show_summaries(client, settings, tenant=tenant, session_ids=session_ids)
    users = [f"user-{i:03d}" for i in range(min(sessions, 20))]
    memories_ok = demo_memories.run(client, console, tenant=tenant, subjects=users)
    state_ok = demo_state.run(client, console, tenant=tenant, session_ids=session_ids[:5])
    erasure_ok = demo_erasure.run(client, console, tenant=tenant)
    backup_ok = demo_backup.run(client, console, settings)
    client.close()
    ok = durable == total and distinct == total and memories_ok and state_ok and erasure_ok
    ok = ok and backup_ok
    console.print(
        "[green]every appended message is durable, once[/green]"
        if ok
        else "[red]some messages are not durable[/red]"
    )
    return 0 if ok else 1


def show_summaries(
    client: MemoryClient, settings: Settings, *, tenant: str, session_ids: list[str]
) -> None:
    """Wait for the summaries the run triggered, then show how many and one context()."""
    deadline = time.monotonic() + 120
    status = summarization_status(client.redis, client.keys, settings)
    with console.status("waiting for the summaries the appends triggered"):
        while status["pending"]["sessions"] and time.monotonic() < deadline:
            time.sleep(0.25)
            status = summarization_status(client.redis, client.keys, settings)
    with client.engine.connect() as connection:
        made, summarized = connection.execute(
            select(func.count(), func.count(func.distinct(summaries.c.session_id))).where(
                summaries.c.tenant == tenant
            )
        ).one()
    console.print(
        f"summaries: {made} made for {summarized} of {len(session_ids)} sessions by "
        f"{status['backend']}; {status['pending']['sessions']} still pending "
        f"(trigger {DEMO_TRIGGER_TOKENS} tokens, keeping the newest {DEMO_KEEP_RECENT_TOKENS})"
    )
    sample = next(
        (s for s in session_ids if client.memory_stats(s, tenant=tenant).summary_count), None
    )
    if sample is None:
        return
    context = client.context(sample, tenant=tenant)
    console.print(
        f"context('{sample}'): summary of seq 1..{context.covers_through_seq} "
        f"({context.summary_tokens} tokens), then {len(context.messages)} messages "
        f"(seq {context.messages[0].seq if context.messages else '-'}..), "
        f"{context.tokens} tokens in all"
    )
    console.print(context.summary or "", style="dim", markup=False, highlight=False)
