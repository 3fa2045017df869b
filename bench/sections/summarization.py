"""5. Summaries (P5): LLM calls per crossing with real workers, the read path against PING, and
what a summarize costs beyond the LLM call.

The LLM is the local fake OpenAI server (``tests/fakes/openai_server.py``), answering at once,
so every figure is memscribe's own cost. Three parts per repetition:

- **Calls per crossing.** A persist worker, beat and an ``llm`` worker (concurrency 2) run;
  ``rounds`` times, every session gets enough ~100-token messages to cross the trigger, then
  the bench waits until no summary is pending. Crossings are counted by the append script
  (meta ``xc``), calls by the fake server's request log. P5 holds when the ratio is 1.
- **context() against PING.** On those sessions (a summary plus buffered turns each), one
  client thread times ``context()`` and ``PING`` in alternating chunks, as section 1 does.
- **Summarize overhead.** With no worker running, ``SessionSummarizer.summarize`` runs in
  process for sessions with a pending summary; the time inside the LLM call is measured
  separately and subtracted: the rest is the lease, the reads, the draft, the PostgreSQL row
  and the commit script (not Celery's dispatch).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import sqlalchemy as sa

from bench import stores
from bench.context import BenchContext, log
from bench.figures import Figure, Samples, Target, percentile, summarize
from bench.pipeline import memscribe_pipeline
from bench.section import Section
from config.settings import Settings
from core.client import MemoryClient
from core.models import Message
from core.summaries.llm import OpenAISummarizer, SummaryText
from core.summaries.summarizer import SessionSummarizer
from tests.fakes.openai_server import FakeOpenAI
from worker import processes

P5_TARGET = Target("<=", 1.0)
TRIGGER_TOKENS = 1000
KEEP_RECENT_TOKENS = 300
ROUNDS = 3
CHUNK = 100


def _settings(ctx: BenchContext, fake: FakeOpenAI) -> Settings:
    return Settings(
        **{
            **ctx.settings.model_dump(),
            "summarizer": "openai",
            "openai_base_url": fake.url,
            "summary_trigger_tokens": TRIGGER_TOKENS,
            "keep_recent_tokens": KEEP_RECENT_TOKENS,
        }
    )


def _env(settings: Settings) -> dict[str, str]:
    names = ("summarizer", "openai_base_url", "summary_trigger_tokens", "keep_recent_tokens")
    return {f"MEMSCRIBE_{name.upper()}": str(getattr(settings, name)) for name in names}


def _sessions(ctx: BenchContext) -> list[str]:
    # 200 sessions in a full run; fewer in quick and tiny runs, which have a time budget.
    wanted = 200 if ctx.config.mode == "full" else 80
    return [f"sum-{i:04d}" for i in range(min(wanted, ctx.config.sessions))]


def _reset(ctx: BenchContext) -> None:
    # ctx.reset() empties messages and sessions; a summary left from an earlier repetition
    # would belong to sessions that no longer exist.
    ctx.reset()
    with ctx.engine.begin() as connection:
        connection.execute(sa.text("TRUNCATE summaries, llm_usage"))


def _pending(ctx: BenchContext) -> int:
    return sum(
        int(ctx.redis.zcard(ctx.keys.summary_pending(shard))) for shard in range(ctx.keys.shards)
    )


def _cross_every_session(ctx: BenchContext, client: MemoryClient, offset: int) -> int:
    """Append to every session until each has crossed once; returns messages sent."""
    sent = 0
    waiting = set(_sessions(ctx))
    while waiting:
        for session in sorted(waiting):
            i = offset + sent
            result = client.append(session, ctx.workload.role(i), ctx.workload.content(i))
            sent += 1
            if result.summary_triggered:
                waiting.discard(session)
    return sent


def _wait_settled(ctx: BenchContext, *, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while ctx.backlog() or _pending(ctx):
        if time.monotonic() > deadline:
            raise stores.BenchError(f"summaries still pending after {timeout_s:.0f}s")
        time.sleep(0.05)


def _calls_per_crossing(
    ctx: BenchContext, settings: Settings, fake: FakeOpenAI, samples: Samples
) -> MemoryClient:
    client = MemoryClient(redis=ctx.redis, settings=settings, engine=ctx.engine)
    env = {**ctx.worker_env(), **_env(settings)}
    llm = processes.start(
        processes.worker_command(["llm"], concurrency=2, name="bench-llm", loglevel="WARNING"),
        env=env,
        log_path=ctx.log_dir / "summarization-llm-worker.log",
    )
    try:
        calls_before = len(fake.requests())
        sent = 0
        with memscribe_pipeline(ctx):
            for _ in range(ROUNDS):
                sent += _cross_every_session(ctx, client, sent)
                _wait_settled(ctx)
    finally:
        processes.stop(llm)
    with ctx.redis.pipeline(transaction=False) as pipe:
        for session in _sessions(ctx):
            pipe.hget(ctx.keys.session("default", session).meta, "xc")
        crossings = sum(int(n or 0) for n in pipe.execute())
    calls = len(fake.requests()) - calls_before
    samples.add("crossings", crossings)
    samples.add("calls", calls)
    samples.add("calls_per_crossing", calls / crossings)
    return client


def timed(call: Callable[[], object], count: int, out: list[int]) -> None:
    clock = time.perf_counter_ns
    for _ in range(count):
        began = clock()
        call()
        out.append(clock() - began)


def _context_vs_ping(ctx: BenchContext, client: MemoryClient, samples: Samples) -> None:
    sessions = _sessions(ctx)
    picks = iter(range(10**9))

    def context() -> object:
        return client.context(sessions[next(picks) % len(sessions)])

    timings: dict[str, list[int]] = {"context": [], "ping": []}
    calls = {"context": context, "ping": ctx.redis.ping}
    for call in calls.values():
        timed(call, 200, [])  # warm-up
    for index in range(0, ctx.config.latency_calls, CHUNK):
        order = list(calls) if (index // CHUNK) % 2 == 0 else list(reversed(calls))
        for name in order:
            timed(calls[name], CHUNK, timings[name])
    for name, values in timings.items():
        ordered = sorted(values)
        samples.add(f"{name}.p50", percentile(ordered, 50) / 1000)
        samples.add(f"{name}.p99", percentile(ordered, 99) / 1000)


class _TimedBackend:
    """The OpenAI backend, with the time spent inside each call recorded."""

    def __init__(self, inner: OpenAISummarizer) -> None:
        self.inner = inner
        self.name = inner.name
        self.paid = inner.paid
        self.spent_ns: list[int] = []

    def describe(self) -> str:
        return self.inner.describe()

    def summarize(self, *, previous: str | None, messages: Sequence[Message]) -> SummaryText:
        began = time.perf_counter_ns()
        try:
            return self.inner.summarize(previous=previous, messages=messages)
        finally:
            self.spent_ns.append(time.perf_counter_ns() - began)


def _overhead(ctx: BenchContext, settings: Settings, fake: FakeOpenAI, samples: Samples) -> None:
    _reset(ctx)
    client = MemoryClient(redis=ctx.redis, settings=settings, engine=ctx.engine)
    _cross_every_session(ctx, client, 0)  # no worker runs: every session stays pending
    backend = _TimedBackend(OpenAISummarizer(api_key="bench", model="bench", base_url=fake.url))
    service = SessionSummarizer(
        redis=ctx.redis, engine=ctx.engine, settings=settings, backend=backend
    )
    totals: list[int] = []
    for session in _sessions(ctx):
        began = time.perf_counter_ns()
        outcome = service.summarize("default", session)
        totals.append(time.perf_counter_ns() - began)
        if not outcome.llm_called:
            raise stores.BenchError(f"summarize of {session} made no LLM call ({outcome.status})")
    overheads = sorted(t - llm for t, llm in zip(totals, backend.spent_ns, strict=True))
    for name, values in (("total", sorted(totals)), ("llm", sorted(backend.spent_ns))):
        samples.add(f"summarize.{name}.p50", percentile(values, 50) / 1e6)
    samples.add("summarize.overhead.p50", percentile(overheads, 50) / 1e6)
    samples.add("summarize.overhead.p99", percentile(overheads, 99) / 1e6)


def run(ctx: BenchContext) -> list[Figure]:
    samples = Samples()
    with FakeOpenAI() as fake:
        settings = _settings(ctx, fake)
        for repetition in range(ctx.config.repetitions):
            _reset(ctx)
            client = _calls_per_crossing(ctx, settings, fake, samples)
            _context_vs_ping(ctx, client, samples)
            _overhead(ctx, settings, fake, samples)
            log(
                f"summaries {repetition + 1}/{ctx.config.repetitions}: "
                f"{samples['calls'][-1]:.0f} LLM calls for {samples['crossings'][-1]:.0f} "
                f"crossings; context p50 {samples['context.p50'][-1]:.0f}us vs PING "
                f"{samples['ping.p50'][-1]:.0f}us; summarize overhead p50 "
                f"{samples['summarize.overhead.p50'][-1]:.1f} ms"
            )
        _reset(ctx)
    return _figures(ctx, samples)


def _figures(ctx: BenchContext, samples: Samples) -> list[Figure]:
    sessions = len(_sessions(ctx))
    return [
        summarize(
            "summaries.calls_per_crossing",
            f"LLM calls per crossing ({sessions} sessions x {ROUNDS} rounds, 2 llm processes)",
            "x",
            samples["calls_per_crossing"],
            target=P5_TARGET,
        ),
        summarize(
            "summaries.crossings",
            "crossings counted by the append script",
            "n",
            samples["crossings"],
        ),
        summarize(
            "summaries.context.p50",
            "context() p50 (summary + buffer, one EVALSHA)",
            "us",
            samples["context.p50"],
        ),
        summarize("summaries.context.p99", "context() p99", "us", samples["context.p99"]),
        summarize("summaries.ping.p50", "Redis PING p50, same pool", "us", samples["ping.p50"]),
        summarize(
            "summaries.context_vs_ping.p50",
            "context() p50 / PING p50",
            "x",
            samples.ratio("context.p50", "ping.p50"),
            anchor="summaries.ping.p50",
        ),
        summarize(
            "summaries.overhead.p50",
            "summarize overhead beyond the LLM call, p50 (instant fake LLM)",
            "ms",
            samples["summarize.overhead.p50"],
        ),
        summarize(
            "summaries.overhead.p99",
            "summarize overhead p99",
            "ms",
            samples["summarize.overhead.p99"],
        ),
        summarize(
            "summaries.llm.p50",
            "the LLM call itself (HTTP to the fake), p50",
            "ms",
            samples["summarize.llm.p50"],
        ),
    ]


SECTION = Section(
    key="summaries",
    title="Summaries (P5): LLM calls per crossing, context() against PING, summarize overhead",
    run=run,
    notes=(
        "The LLM is the local fake OpenAI server answering at once. Overhead is measured in "
        "process (SessionSummarizer.summarize minus the LLM call), without Celery's dispatch."
    ),
)
