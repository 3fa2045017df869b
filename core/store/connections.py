"""The one place memscribe builds a Redis client: a single server, or a Redis Cluster.

Every component (the client, drainers and tasks, the summarizer, budgets, dead letters, the
CLI, the demo and the bench) gets its client here, so ``MEMSCRIBE_REDIS_CLUSTER=true`` switches
all of them at once. The Celery broker is not built here: kombu has no Redis Cluster transport,
so the broker is always a plain server (``MEMSCRIBE_BROKER_URL``).

Why every command is cluster-safe: a session's keys and its shard's streams share the hash tag
``{<shard>}`` (``core/store/keys.py``), so each Lua script and each ``MULTI`` touches one slot; keys
outside a tag (usage counters, budgets, task dead letters) are only ever used one key per
command or in non-transactional pipelines, which ``RedisCluster`` splits per node.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, cast

import redis
import redis.asyncio
from redis.client import NEVER_DECODE
from redis.cluster import RedisCluster

from config.settings import Settings

_log = logging.getLogger(__name__)


def redis_from_url(url: str, *, cluster: bool = False, **kwargs: Any) -> redis.Redis:
    """A client for ``url`` with text replies; ``cluster=True`` treats ``url`` as any one node
    of a Redis Cluster and discovers the rest (slots follow MOVED/ASK redirects)."""
    if cluster:
        # RedisCluster is not a redis.Redis subclass, but it offers every command memscribe
        # sends (tests/cluster runs the whole pipeline on a real cluster). One declared type
        # keeps every signature in core/ unchanged.
        return cast(redis.Redis, RedisCluster.from_url(url, decode_responses=True, **kwargs))
    client: redis.Redis = redis.Redis.from_url(url, decode_responses=True, **kwargs)
    return client


def redis_client(settings: Settings, **kwargs: Any) -> redis.Redis:
    """The configured data Redis (``MEMSCRIBE_REDIS_URL``, ``MEMSCRIBE_REDIS_CLUSTER``)."""
    return redis_from_url(settings.redis_url, cluster=settings.redis_cluster, **kwargs)


def async_redis_client(settings: Settings, **kwargs: Any) -> redis.asyncio.Redis:
    """The configured data Redis on ``redis.asyncio`` (``AsyncMemoryClient``'s request path),
    with text replies like ``redis_client``; a Redis Cluster when configured."""
    if settings.redis_cluster:
        # As above: one declared type for the asyncio cluster client, which offers every
        # command the async request path sends (EVALSHA, SCRIPT LOAD, PING).
        return cast(
            redis.asyncio.Redis,
            redis.asyncio.RedisCluster.from_url(
                settings.redis_url, decode_responses=True, **kwargs
            ),
        )
    client: redis.asyncio.Redis = redis.asyncio.Redis.from_url(
        settings.redis_url, decode_responses=True, **kwargs
    )
    return client


def is_cluster(client: redis.Redis) -> bool:
    return isinstance(client, RedisCluster)


def every_primary(client: redis.Redis) -> dict[str, Any]:
    """Keyword arguments that send a server command such as DBSIZE or INFO to every primary of
    a cluster (redis-py asks one node by default; FLUSHDB and SCRIPT LOAD already go to all of
    them); nothing for a single server."""
    return {"target_nodes": RedisCluster.PRIMARIES} if is_cluster(client) else {}


def raw_command(client: Any, *args: Any) -> Any:
    """Send one command (on a client or a pipeline) and leave its reply undecoded: stream
    entries are read as bytes, so an entry that is not UTF-8 never breaks the reply parser."""
    return client.execute_command(*args, **{NEVER_DECODE: True})


def as_text(value: bytes | str) -> str:
    """A value of a raw reply (entry ids, cursors) as text; already-decoded text unchanged."""
    return value.decode() if isinstance(value, bytes) else value


def answers_ping(client: redis.Redis, *, timeout_s: float) -> bool:
    """True when ``client`` answers a PING within ``timeout_s``; never raises.

    The PING runs on a daemon thread so a Redis that accepts the connection but never answers
    costs the caller ``timeout_s``, not the client's socket timeout (the thread ends then)."""
    answered = threading.Event()

    def ping() -> None:
        try:
            if client.ping():
                answered.set()
        except Exception as exc:  # any failure means "not available"
            _log.info("Redis did not answer PING: %s: %s", type(exc).__name__, exc)

    threading.Thread(target=ping, name="memscribe-ping", daemon=True).start()
    return answered.wait(timeout_s)
