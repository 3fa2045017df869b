"""Shared pieces of the fault suite: background appenders and the durability wait."""

from __future__ import annotations

import threading
import time

import redis

from core.client import MemoryClient
from core.errors import TransientError
from core.log.status import shard_status

Appended = dict[str, tuple[str, str, int, str]]


class Appenders:
    """Threads appending until stopped. Only acknowledged appends are recorded: an append that
    raised was never promised to anyone, so it is not part of the set check."""

    def __init__(self, client: MemoryClient, *, threads: int = 3, sessions: int = 60) -> None:
        self.client = client
        self.sessions = sessions
        self.acknowledged: Appended = {}
        self.failed = 0
        self.latencies_s: list[tuple[float, float]] = []  # (when, how long)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._run, args=(index,), daemon=True)
            for index in range(threads)
        ]

    def __enter__(self) -> Appenders:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def count(self) -> int:
        with self._lock:
            return len(self.acknowledged)

    def _run(self, index: int) -> None:
        i = 0
        while not self._stop.is_set():
            session_id = f"chaos-{(i * 7 + index) % self.sessions}"
            content = f"appender {index} message {i} \t\\ ✓"
            began = time.monotonic()
            try:
                result = self.client.append(session_id, "user", content)
            except (TransientError, redis.RedisError):
                with self._lock:
                    self.failed += 1
                time.sleep(0.01)
                continue
            finally:
                i += 1
            with self._lock:
                self.acknowledged[result.message_id] = ("default", session_id, result.seq, content)
                self.latencies_s.append((began, time.monotonic() - began))
            time.sleep(0.001)  # a steady load below capacity, not a flood


def wait_until_durable(client: MemoryClient, *, timeout_s: float) -> int:
    """Wait for every shard's backlog to reach zero; returns what is left at the timeout."""
    deadline = time.monotonic() + timeout_s
    backlog = -1
    while time.monotonic() < deadline:
        try:
            backlog = sum(s.backlog for s in shard_status(client.redis, client.keys))
        except redis.RedisError:
            backlog = -1
        if backlog == 0:
            return 0
        time.sleep(0.2)
    return backlog


def append_concurrently(
    client: MemoryClient,
    *,
    messages: int,
    appenders: int,
    sessions: int,
    prefix: str = "chat",
    content: str = "appender {index} says {i}: ünïcode ✓",
) -> Appended:
    """``messages`` appends from ``appenders`` threads over shared sessions (so seq assignment
    races for real); returns every acknowledged id with its session, seq and content."""
    appended: Appended = {}
    lock = threading.Lock()

    def appender(index: int) -> None:
        mine: Appended = {}
        for i in range(messages // appenders):
            session_id = f"{prefix}-{(i * 7 + index) % sessions}"
            text = content.format(index=index, i=i)
            result = client.append(session_id, "user" if i % 2 else "assistant", text)
            mine[result.message_id] = ("default", session_id, result.seq, text)
        with lock:
            appended.update(mine)

    threads = [threading.Thread(target=appender, args=(i,)) for i in range(appenders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(appended) == messages // appenders * appenders
    return appended
