"""Token-triggered summarization: fold a session's oldest unsummarized messages into its rolling
summary, exactly once per crossing, without ever trimming a message the fold did not see.

The invariant (docs/architecture.md, "Summarization"): for every session, with X the meta
hash's ``cov`` (covers_through_seq),

    summary covers seq 1..X  ·  buffer holds seq > X only, oldest first  ·  every seq > X is in
    the buffer or (left by the caps) in the WAL / durable store, and counted in ``utok``

One summarize (``SessionSummarizer.summarize``), under the session's lease:

1. ``summary_begin.lua``: no pending flag -> nothing to do; lease held -> busy; else take the
   lease with a new fencing token and read meta, buffer, config and draft in one call.
2. A summary already made for this step (the draft an earlier attempt left in Redis after
   the LLM answered, starting at X+1) is adopted: a crash, a store outage or a lost lease
   after the LLM answered costs no second call.
3. Plan: keep the newest ``keep_recent_tokens`` of the buffer; fold X+1..F (at most
   ``summary_max_input_tokens``), reading from the store what the caps pushed out of Redis.
   Nothing to fold -> settle the pending flag without calling the LLM.
4. Budget spent (paid backends) -> defer; else call the backend with the previous summary and
   the folded messages. Failures leave everything as it was, except the lease.
5. Draft in Redis, row in the store (idempotent on covers_through_seq, first writer wins), then
   ``summary_commit.lua``: token still ours and newest, X unchanged -> trim exactly the buffered
   prefix <= F, store the summary, lower the totals, clear the pending flag, release the lease.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from sqlalchemy import Engine

from config.settings import Settings
from core.errors import ClearedError, TransientError
from core.models import Message, memory_defaults, micros_to_datetime
from core.retention.policy import RetentionPolicy
from core.store.codec import decode_buffer_item, split_buffer_item
from core.store.keys import Keys, SessionKeys
from core.store.redis_errors import translate
from core.store.scripts import Scripts
from core.store.tokens import TOKENS_PER_MESSAGE, TokenCounter, token_counter
from core.summaries import store as summary_store
from core.summaries.budget import Budgets, next_utc_midnight_ms
from core.summaries.llm import SummaryBackend
from core.summaries.store import SummaryRecord

log = logging.getLogger(__name__)


class SummaryBusy(TransientError):
    """Another summarize holds this session's lease. Retried after the lease would expire, so a
    holder that died mid-call is taken over, and a live one has finished (the retry is then a
    no-op)."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class SummaryFenced(TransientError):
    """Our lease expired (or the summary moved) before the commit. The summary made is kept as
    a draft and in the store, and the retry adopts it without a second LLM call."""


@dataclass(frozen=True, slots=True)
class SummarizeOutcome:
    """What one summarize did. ``status``: summarized, adopted, nothing_to_fold, deferred,
    idle (nothing pending), gone (no such session in Redis) or cleared (during the call)."""

    status: str
    covers_through_seq: int = 0
    folded_messages: int = 0
    trimmed_messages: int = 0
    llm_called: bool = False


def _pairs(flat: list[Any]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


@dataclass(frozen=True, slots=True)
class _Begun:
    keys: SessionKeys
    token: int
    meta: dict[str, str]
    buffer: list[str]
    config: dict[str, str]
    draft: dict[str, str]

    @property
    def covered(self) -> int:
        return int(self.meta.get("cov", 0))

    @property
    def last_seq(self) -> int:
        return int(self.meta.get("seq", 0))


class SessionSummarizer:
    """Runs summarize for any session. One per process; takes its clients as arguments."""

    def __init__(
        self,
        *,
        redis: redis.Redis,
        engine: Engine,
        settings: Settings,
        backend: SummaryBackend,
        tokens: TokenCounter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.engine = engine
        self.settings = settings
        self.retention = RetentionPolicy.of(settings)
        self.backend = backend
        self.tokens = tokens or token_counter(settings.tokenizer, settings.model)
        self.keys = Keys.of(settings)
        self.scripts = Scripts.register(redis)
        self.budgets = Budgets(redis, self.keys, settings)
        self.defaults = memory_defaults(settings)
        self._clock = clock

    def summarize(self, tenant: str, session_id: str) -> SummarizeOutcome:
        """Fold what the session's pending summary asks for. Raises ``TransientError`` (retry:
        LLM unavailable, store behind or down, lease busy or lost) or ``PermanentError`` (the
        LLM refused); either way the session's history is unchanged."""
        keys = self.keys.session(tenant, session_id)
        try:
            reply = self.scripts.summary_begin(
                keys=[
                    keys.meta,
                    keys.buffer,
                    keys.summary_lease,
                    keys.config,
                    keys.summary_pending,
                    keys.summary_draft,
                ],
                args=[int(self.settings.summary_lease_s * 1000), keys.member],
            )
        except redis.RedisError as exc:
            raise translate(exc) from None
        token = int(reply[0])
        if token == 0:
            return SummarizeOutcome(status=str(reply[1]))
        if token < 0:
            left_ms = int(reply[1])
            wait_s = self.settings.summary_lease_s if left_ms < 0 else left_ms / 1000
            raise SummaryBusy(
                "another summarize holds this session", retry_after_s=min(wait_s + 0.05, 600.0)
            )
        begun = _Begun(keys, token, _pairs(reply[1]), reply[2], _pairs(reply[3]), _pairs(reply[4]))
        try:
            return self._run(begun)
        except ClearedError:  # cleared or erased while the LLM answered: the summary goes
            return SummarizeOutcome(status="cleared")
        except BaseException as exc:
            # History stays as it was; the pending flag stays for the retry. Only the lease goes.
            with contextlib.suppress(redis.RedisError):
                self._end(begun, "keep")
            if isinstance(exc, redis.RedisError):
                raise translate(exc) from exc
            raise

    # --- the steps ---------------------------------------------------------------------------

    def _run(self, begun: _Begun) -> SummarizeOutcome:
        adopted = self._adoptable(begun)
        if adopted is not None:
            log.info(
                "adopting the summary through seq %s made by an earlier attempt",
                adopted.covers_through_seq,
            )
            stored = self._stored(
                adopted,
                summary_store.save_summary(
                    self.engine, adopted, usage="if_new", policy=self.retention
                ),
            )
            return self._commit(begun, stored, folded=0, llm_called=False, status="adopted")

        fold = self._plan(begun)
        if not fold:
            self._end(begun, "done")
            return SummarizeOutcome(status="nothing_to_fold", covers_through_seq=begun.covered)

        now_s = self._clock()
        keys = begun.keys
        if self.backend.paid:
            usage = self.budgets.usage(keys.tenant, now_s=now_s)
            if usage.exhausted:
                return self._defer(begun, now_s, usage.spent, usage.budget)

        answer = self.backend.summarize(previous=begun.meta.get("summary"), messages=fold)
        if self.backend.paid:
            self.budgets.record(
                keys.tenant,
                prompt_tokens=answer.prompt_tokens,
                completion_tokens=answer.completion_tokens,
                now_s=now_s,
            )
        record = SummaryRecord(
            tenant=keys.tenant,
            session_id=keys.session_id,
            covers_through_seq=fold[-1].seq,
            from_seq=begun.covered + 1,
            text=answer.text,
            tokens=self.tokens.count_message("system", answer.text),
            folded_tokens=sum(message.tokens for message in fold),
            model=self.backend.name,
            created_at=datetime.fromtimestamp(self._clock(), tz=UTC),
            prompt_tokens=answer.prompt_tokens,
            completion_tokens=answer.completion_tokens,
        )
        # The draft first: if the store or the commit fails now, the retry adopts this text
        # instead of paying for the same summary again.
        self._save_draft(keys, record)
        stored = self._stored(
            record,
            summary_store.save_summary(self.engine, record, usage="always", policy=self.retention),
        )
        return self._commit(begun, stored, folded=len(fold), llm_called=True, status="summarized")

    def _stored(self, record: SummaryRecord, stored: SummaryRecord) -> SummaryRecord:
        """The row to commit: the store's own when it continues the same summary (a retry
        after a failure between the store and the commit), else ours."""
        if stored.from_seq == record.from_seq:
            return stored
        log.warning(
            "the store already has a summary through seq %s of another history (from seq %s, "
            "ours from %s); committing ours in Redis",
            stored.covers_through_seq,
            stored.from_seq,
            record.from_seq,
        )
        return record

    def _adoptable(self, begun: _Begun) -> SummaryRecord | None:
        keys, draft = begun.keys, begun.draft
        start, last = begun.covered + 1, begun.last_seq
        if draft and int(draft["from"]) == start and int(draft["through"]) <= last:
            return SummaryRecord(
                tenant=keys.tenant,
                session_id=keys.session_id,
                covers_through_seq=int(draft["through"]),
                from_seq=start,
                text=draft["text"],
                tokens=int(draft["tokens"]),
                folded_tokens=int(draft["folded"]),
                model=draft["model"],
                created_at=micros_to_datetime(int(draft["at_us"])),
                prompt_tokens=int(draft["prompt"]),
                completion_tokens=int(draft["completion"]),
            )
        return None

    def _plan(self, begun: _Begun) -> list[Message]:
        """The messages to fold: the oldest unsummarized ones, leaving the newest
        ``keep_recent_tokens`` of the buffer, at most ``summary_max_input_tokens``."""
        memory = self.defaults.with_overrides(begun.config)
        covered, last = begun.covered, begun.last_seq
        items = [(*split_buffer_item(item)[:2], item) for item in begun.buffer]
        kept_tokens, keep_from = 0, len(items)
        for index in range(len(items) - 1, -1, -1):
            if kept_tokens + items[index][1] > memory.keep_recent_tokens:
                break
            kept_tokens += items[index][1]
            keep_from = index
        fold_end = items[keep_from][0] - 1 if keep_from < len(items) else last
        if fold_end <= covered:
            return []
        budget = self.settings.summary_max_input_tokens
        head = items[0][0] if items else last + 1
        fold: list[Message] = []
        if head > covered + 1:
            fold = self._from_store(begun, to_seq=min(head - 1, fold_end))
            if fold and fold[-1].seq < head - 1:
                fold_end = fold[-1].seq  # the store is behind: fold its contiguous prefix only
        for seq, _tokens, item in items:
            if seq > fold_end:
                break
            fold.append(decode_buffer_item(item))
        bounded: list[Message] = []
        total = 0
        for message in fold:
            if bounded and total + message.tokens > budget:
                break  # the rest waits for the next crossing
            bounded.append(message)
            total += message.tokens
        return bounded

    def _from_store(self, begun: _Begun, *, to_seq: int) -> list[Message]:
        """Messages the buffer caps pushed out before a summary folded them: from the durable
        store, from right after the summary (empty: all of them were purged)."""
        start = begun.covered + 1
        # No fold can take more messages than this (each costs at least its framing tokens).
        to_seq = min(to_seq, start + self.settings.summary_max_input_tokens // TOKENS_PER_MESSAGE)
        # One past the range too: the drainer writes a session's messages in seq order, so
        # a gap below a stored message is never "not durable yet" but purged by retention (or
        # deleted), and the fold goes on from what the store holds without waiting for them.
        stored = summary_store.load_messages(
            self.engine,
            tenant=begun.keys.tenant,
            session_id=begun.keys.session_id,
            from_seq=start,
            to_seq=to_seq + 1,
        )
        if not stored:
            raise TransientError(
                f"messages from seq {start} are not in the durable store yet; folding later"
            )
        return [message for message in stored if message.seq <= to_seq]

    def _defer(self, begun: _Begun, now_s: float, spent: int, budget: int) -> SummarizeOutcome:
        keys = begun.keys
        now_ms = int(now_s * 1000)
        until_ms = min(
            now_ms + int(self.settings.summary_pending_timeout_s * 1000),
            next_utc_midnight_ms(now_s),
        )
        self._end(begun, "defer", until_ms=until_ms)
        self.budgets.defer(keys.tenant, keys.session_id, now_ms=now_ms)
        log.warning(
            "summary deferred: tenant %s spent %s of its %s daily tokens",
            keys.tenant,
            spent,
            budget,
        )
        return SummarizeOutcome(status="deferred", covers_through_seq=begun.covered)

    def _save_draft(self, keys: SessionKeys, record: SummaryRecord) -> None:
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(keys.summary_draft)
            pipe.hset(
                keys.summary_draft,
                mapping={
                    "from": record.from_seq,
                    "through": record.covers_through_seq,
                    "text": record.text,
                    "tokens": record.tokens,
                    "folded": record.folded_tokens,
                    "model": record.model,
                    "prompt": record.prompt_tokens,
                    "completion": record.completion_tokens,
                    "at_us": int(record.created_at.timestamp() * 1_000_000),
                },
            )
            pipe.pexpire(keys.summary_draft, int(self.settings.summary_pending_timeout_s * 1000))
            pipe.execute()

    def _commit(
        self, begun: _Begun, stored: SummaryRecord, *, folded: int, llm_called: bool, status: str
    ) -> SummarizeOutcome:
        keys = begun.keys
        try:
            trimmed, _buffered, _left = self.scripts.summary_commit(
                keys=[
                    keys.meta,
                    keys.buffer,
                    keys.summary_lease,
                    keys.summary_pending,
                    keys.summary_draft,
                ],
                args=[
                    begun.token,
                    begun.covered,
                    stored.covers_through_seq,
                    stored.folded_tokens,
                    stored.text,
                    stored.tokens,
                    int(stored.created_at.timestamp() * 1000),
                    keys.member,
                ],
            )
        except redis.ResponseError as exc:
            if str(exc).split(" ", 1)[0] in ("FENCED", "STALE", "RANGE"):
                raise SummaryFenced(f"summary not committed: {exc}") from None
            raise
        self.budgets.undefer(keys.tenant, keys.session_id)
        return SummarizeOutcome(
            status=status,
            covers_through_seq=stored.covers_through_seq,
            folded_messages=folded,
            trimmed_messages=int(trimmed),
            llm_called=llm_called,
        )

    def _end(self, begun: _Begun, mode: str, *, until_ms: int = 0) -> None:
        keys = begun.keys
        self.scripts.summary_end(
            keys=[keys.meta, keys.summary_lease, keys.summary_pending],
            args=[begun.token, mode, until_ms, keys.member],
        )
